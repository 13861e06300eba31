// How fast a node obeys Consul (DESIGN.md invariant 6), over 20 runs: from the registration API call to
// the first session routed to the new instance, and from its check turning critical to the first
// session after which it gets none. The baseline, measured in the same run, is Consul's own
// propagation: a blocking health query on the same service, from the same API call to its answer.
// Run: npx tsc -b test && node test/dist/bench/discovery-latency.js [runs]
import { get as httpGet } from 'node:http';
import { startConsul, startWireBackend, type WireBackend } from '@smtp-lb/testkit';
import { startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const RUNS = Number(process.argv[2] ?? 20);
const SERVICE = 'bench';
// A routing decision is made at RCPT; one is sent this often, on sessions already past MAIL.
const RCPT_EVERY_MS = 10;
const WARM_SESSIONS = 16;
const OBSERVE_MS = 1_500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Routed {
  sentAt: number;
  by: string | undefined;
}

/**
 * Sends a RCPT on a fresh session every RCPT_EVERY_MS. The sessions are opened ahead (greeting,
 * EHLO, MAIL), so that only the RCPT (where the backend is chosen) is timed.
 */
class Prober {
  readonly routed: Routed[] = [];
  #ready: SmtpDialog[] = [];
  #warming = 0;
  #running = true;
  readonly #done: Promise<void>;

  constructor(readonly port: number) {
    this.#done = this.#loop();
  }

  async #warm(): Promise<void> {
    this.#warming++;
    try {
      const c = await SmtpDialog.open(this.port);
      await c.read(5_000);
      await c.cmd('EHLO bench.test', 5_000);
      await c.cmd('MAIL FROM:<bench@client.test>', 5_000);
      this.#ready.push(c);
    } finally {
      this.#warming--;
    }
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      while (this.#ready.length + this.#warming < WARM_SESSIONS) void this.#warm();
      const c = this.#ready.shift();
      if (!c) {
        await sleep(1);
        continue;
      }
      const sentAt = performance.now();
      void c
        .cmd('RCPT TO:<probe@bench.test>', 10_000)
        .then((r) => {
          this.routed.push({ sentAt, by: r.code === 250 ? /taken by (\w+)/.exec(r.raw)?.[1] : undefined });
          return c.cmd('QUIT', 5_000);
        })
        .catch(() => {})
        .finally(() => c.close());
      await sleep(RCPT_EVERY_MS);
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
    while (this.#warming > 0) await sleep(5);
    for (const c of this.#ready.splice(0)) c.close();
  }
}

/** GET with node:http, as the node's Consul source does (fetch adds its own latency under load). */
function get(url: string): Promise<{ body: unknown; index: number }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
          index: Number(res.headers['x-consul-index']),
        }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('consul did not answer')));
    req.on('error', reject);
  });
}

/** Consul's own view: a blocking query that returns when the passing set satisfies `ok`. */
async function consulSees(address: string, ok: (ids: string[]) => boolean): Promise<number> {
  let index = 0;
  for (;;) {
    const answer = await get(
      `${address}/v1/health/service/${SERVICE}?passing=true${index ? `&index=${index}&wait=10s` : ''}`,
    );
    if (ok((answer.body as Array<{ Service: { ID: string } }>).map((e) => e.Service.ID))) {
      return performance.now();
    }
    index = answer.index;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function stats(xs: number[]): string {
  return `median ${median(xs).toFixed(1).padStart(6)} ms   max ${Math.max(...xs)
    .toFixed(1)
    .padStart(6)} ms`;
}

async function tagged(name: string): Promise<WireBackend> {
  // The wire recorder as the sink: no smtp-server greeting wait (100 ms) in the figures, as in earlier runs.
  return startWireBackend({
    reply: (ctx) => (ctx.verb === 'RCPT' ? `250 2.1.5 Ok, taken by ${name}` : undefined),
    keepData: false,
  });
}

async function main(): Promise<void> {
  const consul = await startConsul();
  const a = await tagged('A');
  const n = await tagged('N');
  await consul.register({ id: 'bench-A', name: SERVICE, address: a.host, port: a.port });
  const lb = await startNode(`
node: { id: bench }
listeners:
  - { name: inbound, listen: 127.0.0.1:0, hostname: mx.test, pool: mta }
pools:
  mta:
    consul: { service: ${SERVICE} }
    tls: none
balancing: { policy: weighted-round-robin }
consul: { address: ${consul.address} }
log: { level: warn }
admin: { listen: 127.0.0.1:0 }
`);
  const sees = (count: number) => lb.node.status().pools[0]!.backends.length === count;
  while (!sees(1)) await sleep(10);
  const prober = new Prober(lb.port);
  const appear = { consul: [] as number[], node: [] as number[] };
  const vanish = { consul: [] as number[], node: [] as number[] };
  try {
    for (let run = 0; run < RUNS; run++) {
      // N weighs 100 against A's 1, so smooth WRR sends nearly every session to N while it is listed.
      const watchUp = consulSees(consul.address, (ids) => ids.includes('bench-N'));
      await sleep(20);
      const t0 = performance.now();
      await consul.register({
        id: 'bench-N',
        name: SERVICE,
        address: n.host,
        port: n.port,
        weights: { passing: 100, warning: 1 },
      });
      appear.consul.push((await watchUp) - t0);
      await sleep(OBSERVE_MS);
      const first = prober.routed.find((r) => r.sentAt >= t0 && r.by === 'N');
      if (!first) throw new Error(`run ${run}: no session reached N within ${OBSERVE_MS} ms`);
      appear.node.push(first.sentAt - t0);

      const watchDown = consulSees(consul.address, (ids) => !ids.includes('bench-N'));
      await sleep(20);
      const t1 = performance.now();
      await consul.failCheck('bench-N');
      vanish.consul.push((await watchDown) - t1);
      await sleep(OBSERVE_MS);
      const after = prober.routed.filter((r) => r.sentAt >= t1).sort((x, y) => x.sentAt - y.sentAt);
      const lastOnN = after.findLastIndex((r) => r.by === 'N');
      const firstClean = after[lastOnN + 1];
      if (!firstClean)
        throw new Error(`run ${run}: N still got sessions ${OBSERVE_MS} ms after going critical`);
      vanish.node.push(firstClean.sentAt - t1);

      await consul.deregister('bench-N');
      while (!sees(1)) await sleep(10);
    }
  } finally {
    await prober.stop();
    await lb.stop();
    await a.close();
    await n.close();
    await consul.stop();
  }
  const routed = prober.routed.length;
  const failed = prober.routed.filter((r) => r.by === undefined).length;
  console.log(`discovery latency over ${RUNS} runs (a RCPT on a fresh session every ${RCPT_EVERY_MS} ms)`);
  console.log(`registration -> Consul answers (baseline)        ${stats(appear.consul)}`);
  console.log(`registration -> first session routed to it      ${stats(appear.node)}`);
  console.log(`check critical -> Consul answers (baseline)      ${stats(vanish.consul)}`);
  console.log(`check critical -> no new sessions to it          ${stats(vanish.node)}`);
  console.log(
    `median ratio node/baseline: registration ${(median(appear.node) / median(appear.consul)).toFixed(1)}x, ` +
      `critical ${(median(vanish.node) / median(vanish.consul)).toFixed(1)}x`,
  );
  console.log(`${routed} RCPTs answered, ${failed} not accepted`);
}

await main();
