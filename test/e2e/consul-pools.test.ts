// A node whose pool comes from a real Consul agent, in front of smtp-server backends registered as
// service instances with their real ports. Each session's recipient is unique, so the instance whose
// smtp-server read that RCPT is the one that got the session. Every test has its own service.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { type CaptureBackend, type ConsulAgent, startCaptureBackend, startConsul } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { consulConfig, startNode, type TestNode } from '../helpers/node.js';
import { type RawReply, SmtpDialog } from '../helpers/smtp-dialog.js';

let consul: ConsulAgent;
const cleanup = cleanupAfterAll();

before(async () => {
  consul = await startConsul();
  cleanup.push(() => consul.stop());
});

interface Mta {
  name: string;
  /** Consul service instance id. */
  id: string;
  service: string;
  backend: CaptureBackend;
}

async function mta(service: string, name: string): Promise<Mta> {
  const backend = await startCaptureBackend();
  cleanup.push(() => backend.close());
  const m = { name, id: `${service}-${name}`, service, backend };
  mtas.push(m);
  return m;
}

function register(m: Mta, weight: number, meta: Record<string, string> = {}): Promise<void> {
  return consul.register({
    id: m.id,
    name: m.service,
    address: m.backend.host,
    port: m.backend.port,
    weights: { passing: weight, warning: 1 },
    meta,
  });
}

async function consulNode(service: string, policy: string, extraTop = ''): Promise<TestNode> {
  const lb = await startNode(
    consulConfig({ id: 'consul-e2e', service, consul: consul.address, policy, extraTop }),
  );
  cleanup.push(() => lb.stop());
  return lb;
}

type StatusBackend = ReturnType<TestNode['node']['status']>['pools'][number]['backends'][number];

/** Waits until the node's own view of the pool (what /status shows) satisfies `ok`. */
async function nodeSees(lb: TestNode, ok: (backends: StatusBackend[]) => boolean, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const backends = lb.node.status().pools.find((p) => p.name === 'mta')?.backends ?? [];
    if (ok(backends)) return backends;
    if (Date.now() > deadline)
      throw new Error(`node never saw the expected set: ${JSON.stringify(backends)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const portOf = (m: Mta) => (b: StatusBackend) => b.id === m.backend.address;

const mtas: Mta[] = [];

/** The instance whose smtp-server read the RCPT of `tag` (tags are unique over the file). */
function takenBy(tag: string): string | undefined {
  const rcpt = `<${tag}@mta.test>`;
  return mtas.find((m) => m.backend.sessions.some((s) => s.lines.some((l) => l.includes(rcpt))))?.name;
}

interface Outcome {
  by: string | undefined;
  rcpt: RawReply;
  data?: RawReply;
}

/** One whole session: a message to one recipient, then QUIT. */
async function deliver(port: number, tag: string): Promise<Outcome> {
  const c = await SmtpDialog.open(port);
  try {
    await c.read(5_000);
    await c.cmd('EHLO client.test', 5_000);
    await c.cmd('MAIL FROM:<sender@client.test>', 5_000);
    const rcpt = await c.cmd(`RCPT TO:<${tag}@mta.test>`, 10_000);
    if (rcpt.code !== 250) return { by: undefined, rcpt };
    assert.equal((await c.cmd('DATA', 5_000)).code, 354);
    const data = await c.cmd(`Subject: ${tag}\r\n\r\nhello\r\n.`, 5_000);
    await c.cmd('QUIT', 5_000);
    return { by: takenBy(tag), rcpt, data };
  } finally {
    c.close();
  }
}

/** A session left open right after its RCPT: it holds its backend connection. */
async function hold(port: number, tag: string): Promise<{ c: SmtpDialog; rcpt: RawReply; by?: string }> {
  const c = await SmtpDialog.open(port);
  cleanup.push(async () => c.close());
  await c.read(5_000);
  await c.cmd('EHLO client.test', 5_000);
  await c.cmd('MAIL FROM:<sender@client.test>', 5_000);
  const rcpt = await c.cmd(`RCPT TO:<${tag}@mta.test>`, 10_000);
  return { c, rcpt, by: rcpt.code === 250 ? takenBy(tag) : undefined };
}

async function countSequential(port: number, n: number, prefix: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const o = await deliver(port, `${prefix}${i}`);
    assert.equal(o.data?.code, 250, `session ${i}: ${o.rcpt.raw}${o.data?.raw ?? ''}`);
    counts.set(o.by ?? '?', (counts.get(o.by ?? '?') ?? 0) + 1);
  }
  return counts;
}

describe('a pool from Consul', { timeout: 60_000 }, () => {
  test('weights 3 and 1, weighted round robin: 40 sessions go 30 and 10', async () => {
    const a = await mta('wrr', 'A');
    const b = await mta('wrr', 'B');
    await register(a, 3);
    await register(b, 1);
    const lb = await consulNode('wrr', 'weighted-round-robin');
    await nodeSees(lb, (s) => s.length === 2);
    const counts = await countSequential(lb.port, 40, 'wrr');
    assert.deepEqual(Object.fromEntries(counts), { A: 30, B: 10 });
    assert.equal(a.backend.messages.length, 30);
    assert.equal(b.backend.messages.length, 10);
  });

  test('weights 3 and 1, weighted least connections: 12 held sessions sit 9 and 3', async () => {
    const a = await mta('wlc', 'A');
    const b = await mta('wlc', 'B');
    await register(a, 3);
    await register(b, 1);
    const lb = await consulNode('wlc', 'weighted-least-connections');
    await nodeSees(lb, (s) => s.length === 2);
    const held = [];
    for (let i = 0; i < 12; i++) held.push(await hold(lb.port, `wlc${i}`));
    assert.ok(
      held.every((h) => h.rcpt.code === 250),
      held.map((h) => h.rcpt.raw).join(''),
    );
    assert.deepEqual(
      { A: held.filter((h) => h.by === 'A').length, B: held.filter((h) => h.by === 'B').length },
      { A: 9, B: 3 },
    );
    assert.deepEqual({ A: a.backend.current, B: b.backend.current }, { A: 9, B: 3 });
    for (const h of held) h.c.close();
  });

  for (const how of ['maintenance mode', 'a failing TTL check'] as const) {
    test(`an instance put in ${how} gets no new session after 1 s; its transaction in flight ends with 250`, async (t) => {
      const service = how === 'maintenance mode' ? 'maint' : 'ttl';
      const a = await mta(service, 'A');
      const b = await mta(service, 'B');
      // A weighs more, so it would keep getting most new sessions if the node missed the change.
      await register(a, 3);
      await register(b, 1);
      const lb = await consulNode(service, 'weighted-round-robin');
      await nodeSees(lb, (s) => s.length === 2);

      // Smooth WRR with 3:1 picks A first: this client stops between RCPT and the end of DATA.
      const inflight = await hold(lb.port, `${service}-inflight`);
      assert.equal(inflight.by, 'A', inflight.rcpt.raw);
      assert.equal((await inflight.c.cmd('DATA')).code, 354);
      inflight.c.write('Subject: in flight\r\n\r\nfirst half\r\n');

      const t0 = performance.now();
      if (how === 'maintenance mode') await consul.maintenance(a.id, true);
      else await consul.failCheck(a.id);
      const sessions: Array<Promise<Outcome & { startedMs: number }>> = [];
      while (performance.now() - t0 < 1_800) {
        const startedMs = performance.now() - t0;
        sessions.push(deliver(lb.port, `${service}${sessions.length}`).then((o) => ({ ...o, startedMs })));
        await new Promise((r) => setTimeout(r, 50));
      }
      const outcomes = await Promise.all(sessions);
      for (const o of outcomes) assert.equal(o.data?.code, 250, `${o.rcpt.raw}${o.data?.raw ?? ''}`);
      const late = outcomes.filter((o) => o.startedMs >= 1_000);
      assert.ok(late.length >= 8, `only ${late.length} sessions after 1 s`);
      assert.deepEqual(
        late.filter((o) => o.by !== 'B').map((o) => `${Math.round(o.startedMs)} ms: ${o.by}`),
        [],
      );
      const lastOnA = outcomes.filter((o) => o.by === 'A').at(-1);
      t.diagnostic(
        `${outcomes.length} sessions; last one started on A at ${lastOnA ? `${Math.round(lastOnA.startedMs)} ms` : 'none'} after the API call`,
      );

      inflight.c.write('second half\r\n');
      const end = await inflight.c.cmd('.');
      assert.equal(end.code, 250, end.raw);
      const mine = a.backend.messages.find((m) => m.data.includes('Subject: in flight'));
      assert.match(mine?.data.toString() ?? '', /first half\r\nsecond half\r\n$/);
      inflight.c.close();
    });
  }

  test('a weight change re-balances new sessions without a restart', async () => {
    const a = await mta('reweigh', 'A');
    const b = await mta('reweigh', 'B');
    await register(a, 1);
    await register(b, 1);
    const lb = await consulNode('reweigh', 'weighted-round-robin');
    await nodeSees(lb, (s) => s.length === 2);
    assert.deepEqual(Object.fromEntries(await countSequential(lb.port, 8, 'even')), { A: 4, B: 4 });
    await register(b, 3);
    await nodeSees(lb, (s) => s.find(portOf(b))?.weight === 3);
    assert.deepEqual(Object.fromEntries(await countSequential(lb.port, 16, 'heavy')), { A: 4, B: 12 });
  });

  test('a smtp-lb-max-connections change applies to waiting and new sessions without a restart', async () => {
    const a = await mta('cap', 'A');
    const cap = (n: number) => register(a, 1, { 'smtp-lb-max-connections': String(n) });
    await cap(1);
    const lb = await consulNode('cap', 'least-connections', 'admission: { queueTimeout: 2s }');
    await nodeSees(lb, (s) => s[0]?.maxConnections === 1);

    const first = await hold(lb.port, 'first');
    assert.equal(first.rcpt.code, 250, first.rcpt.raw);
    const refused = await hold(lb.port, 'refused');
    assert.equal(refused.rcpt.code, 451, refused.rcpt.raw);
    assert.match(refused.rcpt.raw, /^451 4\.3\.2 /);

    // This one is waiting for a slot when the cap goes up; the raise must wake it before its timeout.
    const waiting = await SmtpDialog.open(lb.port);
    cleanup.push(async () => waiting.close());
    await waiting.read();
    await waiting.cmd('EHLO client.test');
    await waiting.cmd('MAIL FROM:<sender@client.test>');
    waiting.write('RCPT TO:<waiting@mta.test>\r\n');
    await assert.rejects(waiting.read(300), /no reply within/);
    await cap(3);
    const woken = await waiting.read(1_500);
    assert.equal(woken.code, 250, woken.raw);
    const third = await hold(lb.port, 'third');
    assert.equal(third.rcpt.code, 250, third.rcpt.raw);
    assert.equal(a.backend.current, 3);

    await cap(1);
    await nodeSees(lb, (s) => s[0]?.maxConnections === 1);
    await waiting.cmd('QUIT');
    await third.c.cmd('QUIT');
    const deadline = Date.now() + 5_000;
    while (a.backend.current > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const over = await hold(lb.port, 'over');
    assert.match(over.rcpt.raw, /^451 4\.3\.2 /);
    assert.equal(a.backend.maxConcurrent, 3);
    first.c.close();
  });
});
