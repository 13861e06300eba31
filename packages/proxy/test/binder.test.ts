// The binder against real backends on port 0 (testkit's capture backend) and a port nobody listens
// on: a backend that fails before the client saw it is replaced and penalised, every backend at its
// cap makes the session wait in the FIFO until a release or `queueTimeout` (451 4.3.2), and a
// session that goes while waiting stops waiting.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseConfig, type SmtpLbConfig } from '@smtp-lb/config';
import { createSource } from '@smtp-lb/discovery';
import { MemoryLedger } from '@smtp-lb/ledger';
import { type CaptureBackend, freePort, startCaptureBackend } from '@smtp-lb/testkit';
import type { ClientIdentity } from '@smtp-lb/upstream';
import { Binder, type BoundBackend } from '../src/binder.js';
import { createLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import { PoolRuntime } from '../src/pool-runtime.js';
import { replies } from '../src/replies.js';
import { SlotWaiters } from '../src/slot-waiters.js';

const log = createLogger('silent');
const identity: ClientIdentity = {
  address: '192.0.2.1',
  port: 40000,
  localAddress: '127.0.0.1',
  localPort: 25,
  name: '[UNAVAILABLE]',
  proto: 'ESMTP',
};
let live: CaptureBackend;
let dead: string;

before(async () => {
  live = await startCaptureBackend();
  dead = `127.0.0.1:${await freePort('127.0.0.1')}`;
});
after(() => live.close());

function setup(backends: string, extra = '') {
  const parsed = parseConfig(`
listeners: [{ name: in, listen: 127.0.0.1:0, hostname: mx.test, pool: p }]
pools:
  p:
    static: [${backends}]
    tls: none
    xclient: off
    connectRetries: 2
admission: { queueTimeout: 400ms }
${extra}
`);
  assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.errors));
  const config: SmtpLbConfig = parsed.config;
  const pc = config.pools.p!;
  const source = createSource(pc, undefined, { defaultMaxConnections: 100 });
  const pool = new PoolRuntime('p', pc, source, 'least-connections');
  const ledger = new MemoryLedger();
  const waiters = new SlotWaiters();
  ledger.onRelease((id) => waiters.release(id));
  const metrics = new Metrics();
  const binder = new Binder({
    ledger,
    waiters,
    admission: () => config.admission,
    recheckMs: () => 1000,
    metrics,
  });
  const bind = (signal = new AbortController().signal) =>
    binder.bind(
      pool,
      { key: 'p', backends: () => pool.source.current(), ordered: false },
      identity,
      'node.test',
      log,
      signal,
    );
  return { pool, ledger, bind, metrics };
}

test('a backend that refuses the connection is replaced by another of the pool and penalised', async () => {
  const { pool, bind, ledger } = setup(`{ address: ${dead} }, { address: ${live.address} }`);
  // Another session on the live backend: least-connections picks the dead one first.
  const other = await ledger.tryAcquire(live.address, 100);
  const sessionsBefore = live.sessions.length;
  const res = await bind();
  other?.release();
  assert.ok(res.ok, JSON.stringify(!res.ok && res.reply));
  assert.equal(res.bound.backend.id, live.address, 'bound to the live backend');
  assert.equal(pool.health.factor(dead), 0.5, 'the dead one is penalised');
  assert.equal(ledger.count(dead), 0, 'its slot was given back');
  assert.equal(ledger.count(live.address), 1, 'the live one holds a slot while the connection lives');
  assert.equal(pool.health.factor(live.address), 1);
  assert.equal(live.sessions.length, sessionsBefore + 1);
  await res.bound.conn.quit();
  for (let i = 0; i < 50 && ledger.count(live.address) > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(ledger.count(live.address), 0, 'the slot goes with the connection');
});

test('only dead backends: 451 4.4.1 after the retries', async () => {
  const { bind } = setup(`{ address: ${dead} }`);
  const res = await bind();
  assert.ok(!res.ok);
  assert.deepEqual(res.reply, replies.noBackend());
});

test('every backend at its cap: the session waits, a release wakes it, and queueTimeout ends the wait with 451 4.3.2', async () => {
  const { bind } = setup(`{ address: ${live.address}, maxConnections: 1 }`);
  const first = await bind();
  assert.ok(first.ok);
  // A second session waits for the slot; the first one's QUIT releases it.
  const waiting = bind();
  await new Promise((r) => setTimeout(r, 100));
  const t0 = Date.now();
  await first.bound.conn.quit();
  const second = await waiting;
  assert.ok(second.ok, 'woken by the release');
  assert.ok(Date.now() - t0 < 300, 'by the release, not by a re-check');
  // A third finds it full again and gives up after queueTimeout.
  const t1 = Date.now();
  const third = await bind();
  assert.ok(!third.ok);
  assert.deepEqual(third.reply, replies.noSlot());
  assert.ok(Date.now() - t1 >= 350, 'it waited for queueTimeout');
  await (second as { bound: BoundBackend }).bound.conn.quit();
});

test('a session that goes while it waits stops waiting and takes no slot', async () => {
  const { bind, ledger } = setup(`{ address: ${live.address}, maxConnections: 1 }`);
  const first = await bind();
  assert.ok(first.ok);
  const abort = new AbortController();
  const waiting = bind(abort.signal);
  await new Promise((r) => setTimeout(r, 50));
  abort.abort(new Error('client gone'));
  const res = await waiting;
  assert.ok(!res.ok);
  assert.equal(ledger.count(live.address), 1, 'only the first session holds a slot');
  await first.bound.conn.quit();
});
