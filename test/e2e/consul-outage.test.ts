// Consul stopped under a running node: sessions keep going to the last known instances and the node
// stays ready; Consul started again on the same port: the watch resumes and a newly registered
// instance gets sessions. Each capture backend tags its RCPT reply, which the node relays verbatim.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CaptureBackend, type ConsulAgent, startConsul } from '@smtp-lb/testkit';
import { taggedBackend } from '../helpers/backends.js';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { consulConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const cleanup = cleanupAfterAll();

const tagged = (name: string) => taggedBackend(name, cleanup);

/** Sends `n` one-message sessions in a row; returns how many each backend took. */
async function sessions(lb: TestNode, n: number, prefix: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const c = await SmtpDialog.open(lb.port);
    try {
      await c.read(5_000);
      await c.cmd('EHLO client.test', 5_000);
      await c.cmd('MAIL FROM:<sender@client.test>', 5_000);
      const rcpt = await c.cmd(`RCPT TO:<${prefix}${i}@mta.test>`, 10_000);
      assert.equal(rcpt.code, 250, `${prefix}${i}: ${rcpt.raw}`);
      assert.equal((await c.cmd('DATA', 5_000)).code, 354);
      const end = await c.cmd('Subject: outage\r\n\r\nhello\r\n.', 5_000);
      assert.equal(end.code, 250, end.raw);
      await c.cmd('QUIT', 5_000);
      const by = /taken by (\w+)/.exec(end.raw)?.[1] ?? '?';
      counts[by] = (counts[by] ?? 0) + 1;
    } finally {
      c.close();
    }
  }
  return counts;
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('Consul stopped: the last known set keeps serving; Consul back: a new instance gets sessions', {
  timeout: 60_000,
}, async () => {
  const consul: ConsulAgent = await startConsul();
  cleanup.push(() => consul.stop());
  const [a, b, c] = [await tagged('A'), await tagged('B'), await tagged('C')];
  const register = (name: string, backend: CaptureBackend) =>
    consul.register({ id: `outage-${name}`, name: 'outage', address: backend.host, port: backend.port });
  await register('A', a);
  await register('B', b);
  const lb = await startNode(
    consulConfig({
      id: 'outage-e2e',
      service: 'outage',
      consul: consul.address,
      policy: 'weighted-round-robin',
    }),
  );
  cleanup.push(() => lb.stop());
  const seen = () => lb.node.status().pools[0]!.backends.map((x) => x.id);
  await until('node sees A and B', () => seen().length === 2, 5_000);
  assert.deepEqual(await sessions(lb, 4, 'before'), { A: 2, B: 2 });

  await consul.kill();
  await until(
    'node logs that Consul is unreachable',
    () => lb.logs.some((l) => l.msg === 'discovery unreachable, keeping the last set' && l.stale === true),
    10_000,
  );
  assert.deepEqual(await sessions(lb, 8, 'during'), { A: 4, B: 4 });
  assert.deepEqual(seen(), [a.address, b.address].sort());
  assert.equal(lb.node.ready, true);
  assert.ok(
    lb.logs.filter((l) => l.component === 'discovery' && l.level === 40).length >= 2,
    'each failed query is logged',
  );

  await consul.start();
  // Dev-mode TTL checks come back critical after a restart, as real ones do until their MTA reports.
  await consul.passCheck('outage-A');
  await consul.passCheck('outage-B');
  await register('C', c);
  await until('node sees A, B and C', () => seen().length === 3, 20_000);
  assert.ok(lb.logs.some((l) => l.msg === 'discovery back' && l.stale === false));
  assert.deepEqual(await sessions(lb, 6, 'after'), { A: 2, B: 2, C: 2 });
  assert.equal(c.messages.length, 2);
});

test('a Consul outage shows in /metrics while it lasts (issue 4: "metric and log")', {
  timeout: 30_000,
}, async () => {
  const consul: ConsulAgent = await startConsul();
  cleanup.push(() => consul.stop());
  const a = await tagged('A');
  await consul.register({ id: 'metric-A', name: 'metric', address: a.host, port: a.port });
  const lb = await startNode(
    consulConfig({ id: 'outage-metric-e2e', service: 'metric', consul: consul.address }),
  );
  cleanup.push(() => lb.stop());
  const admin = lb.node.adminAddress!;
  const metrics = async () => (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
  const sample = (text: string, name: string) =>
    Number(new RegExp(`^${name}\\{[^}]*pool="mta"[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  await until('node sees A', () => lb.node.ready, 5_000);
  assert.equal(sample(await metrics(), 'smtp_lb_discovery_stale'), 0);

  await consul.kill();
  await until(
    'node logs that Consul is unreachable',
    () => lb.logs.some((l) => l.msg === 'discovery unreachable, keeping the last set'),
    10_000,
  );
  const during = await metrics();
  assert.equal(sample(during, 'smtp_lb_discovery_stale'), 1, during);
  assert.ok(sample(during, 'smtp_lb_discovery_errors_total') >= 1, during);

  await consul.start();
  await consul.passCheck('metric-A');
  await until('node logs that Consul is back', () => lb.logs.some((l) => l.msg === 'discovery back'), 20_000);
  assert.equal(sample(await metrics(), 'smtp_lb_discovery_stale'), 0);
});
