// What the session tells outlier detection: one vote per transaction, for the backend that had it,
// deferred only when the backend deferred MAIL, every RCPT it was given, or DATA, or lost the
// connection. A capture backend answers by recipient (defer@ 450, reject@ 550) and by content
// (a body "defer" gets 451 after the dot); the pool's detector shows the votes in its counts.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { parseConfig, type SmtpLbConfig } from '@smtp-lb/config';
import { createSource } from '@smtp-lb/discovery';
import { MemoryLedger } from '@smtp-lb/ledger';
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import { Binder } from '../src/binder.js';
import { createLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import { PoolRuntime } from '../src/pool-runtime.js';
import { Router } from '../src/router.js';
import { ScanRuntime } from '../src/scan/scan-runtime.js';
import { ProxySession } from '../src/session.js';
import { ClientState } from '../src/shaping/client-state.js';
import { SessionChecks } from '../src/shaping/session-checks.js';
import { ShapingRuntime } from '../src/shaping/shaping-runtime.js';
import { SlotWaiters } from '../src/slot-waiters.js';
import { senderPolicy } from './wiring.js';

const log = createLogger('silent');
let backend: CaptureBackend;
let dying: CaptureBackend;
let config: SmtpLbConfig;
let shaping: ShapingRuntime;
let pools: Map<string, PoolRuntime>;
let metrics: Metrics;
let binder: Binder;

before(async () => {
  [backend, dying] = await Promise.all([
    startCaptureBackend({
      reply: (ctx) =>
        ctx.verb === 'RCPT' && ctx.arg.includes('defer@')
          ? '450 4.2.0 Greylisted'
          : ctx.verb === 'RCPT' && ctx.arg.includes('reject@')
            ? '550 5.1.1 No such user'
            : undefined,
      dataReply: (msg) =>
        msg.data.toString().includes('defer') ? '451 4.3.0 Queue file write error' : undefined,
    }),
    startCaptureBackend({ kill: 'mid-data' }),
  ]);
  const parsed = parseConfig(`
listeners: [{ name: in, listen: 127.0.0.1:0, hostname: mx.test, pool: main }]
pools:
  main: { static: [{ address: ${backend.address} }], tls: none, xclient: off, outlierDetection: {} }
  dying: { static: [{ address: ${dying.address} }], tls: none, xclient: off, outlierDetection: {} }
routes:
  - { recipientDomain: dying.test, pool: dying }
`);
  assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.errors));
  config = parsed.config;
  metrics = new Metrics();
  shaping = await ShapingRuntime.create(config, log, metrics);
  pools = new Map(
    Object.entries(config.pools).map(([name, pc]) => [
      name,
      new PoolRuntime(
        name,
        pc,
        createSource(pc, undefined, { defaultMaxConnections: 10 }),
        'least-connections',
      ),
    ]),
  );
  const ledger = new MemoryLedger();
  const waiters = new SlotWaiters();
  ledger.onRelease((id) => waiters.release(id));
  binder = new Binder({ ledger, waiters, admission: () => config.admission, recheckMs: () => 1000, metrics });
});
after(async () => {
  await shaping.close();
  await Promise.all([backend.close(), dying.close()]);
});

let sid = 0;
function session(): ProxySession {
  const listener = config.listeners[0]!;
  const state = new ClientState('192.0.2.5', false);
  const checks = new SessionChecks(
    {
      shaping,
      metrics,
      listener,
      recipientMap: () => undefined,
      senders: senderPolicy(config, shaping.limits, metrics),
    },
    state,
    log,
  );
  const s = new ProxySession(
    {
      client: {
        id: `v${++sid}`,
        address: '192.0.2.5',
        port: 40000,
        destination: { address: '127.0.0.1', port: 25 },
        proxied: false,
        secure: false,
      },
      listener,
      checks,
      draining: () => false,
      log,
    },
    {
      router: () => new Router(config.routes),
      pool: (name) => pools.get(name),
      recipientMap: () => undefined,
      binder,
      metrics,
      scanners: new ScanRuntime(config.scanners, metrics),
    },
  );
  s.hello('ESMTP', 'client.test');
  return s;
}

const addr = (address: string) => ({ address, args: {} });
const body = (text: string) => Readable.from([Buffer.from(`Subject: t\r\n\r\n${text}\r\n`)]);

/** [transactions, deferred] the pool's detector counts for its one backend. */
function votes(pool: string): [number, number] {
  const p = pools.get(pool)!;
  const s = p.outliers!.state(p.source.current()[0]!.id, Date.now());
  return [s.transactions, s.deferred];
}

test('three greylisted RCPTs in one transaction are one deferred vote, cast when it ends', async () => {
  const s = session();
  const [t0, d0] = votes('main');
  await s.mail(addr('alice@example.org'));
  for (const to of ['defer@a.test', 'defer@b.test', 'defer@c.test'])
    assert.equal((await s.rcpt(addr(to))).code, 450);
  assert.deepEqual(votes('main'), [t0, d0], 'nothing before the transaction ends');
  s.reset();
  assert.deepEqual(votes('main'), [t0 + 1, d0 + 1]);
  s.close();
});

test('one recipient accepted among deferred ones, then 250 at the end of DATA: an answered vote', async () => {
  const s = session();
  const [t0, d0] = votes('main');
  await s.mail(addr('alice@example.org'));
  assert.equal((await s.rcpt(addr('defer@a.test'))).code, 450);
  assert.equal((await s.rcpt(addr('bob@example.test'))).code, 250);
  assert.equal((await s.data(body('hello'))).code, 250);
  assert.deepEqual(votes('main'), [t0 + 1, d0]);
  s.close();
  assert.deepEqual(votes('main'), [t0 + 1, d0], 'no second vote at the close');
});

test('451 at the end of DATA is a deferred vote; 550 to every RCPT is an answer, not a deferral', async () => {
  const s = session();
  const [t0, d0] = votes('main');
  await s.mail(addr('alice@example.org'));
  assert.equal((await s.rcpt(addr('bob@example.test'))).code, 250);
  assert.equal((await s.data(body('defer'))).code, 451);
  assert.deepEqual(votes('main'), [t0 + 1, d0 + 1]);
  await s.mail(addr('alice@example.org'));
  assert.equal((await s.rcpt(addr('reject@example.test'))).code, 550);
  s.close();
  assert.deepEqual(votes('main'), [t0 + 2, d0 + 1]);
});

test('a backend lost in the middle of DATA is a deferred vote', async () => {
  const s = session();
  await s.mail(addr('alice@example.org'));
  assert.equal((await s.rcpt(addr('bob@dying.test'))).code, 250);
  assert.equal((await s.data(body('hello'))).code, 451);
  assert.deepEqual(votes('dying'), [1, 1]);
  s.close();
  assert.deepEqual(votes('dying'), [1, 1]);
});
