// The session with the node's real parts (router, binder, in-memory ledger, session checks) and real
// backends on port 0 (testkit's capture backend): MAIL is answered locally and replayed with the
// first RCPT, the transaction object says what happened, DATA streams to the backend, the backend's
// replies come back verbatim (its refusal of MAIL answers the RCPT), the connection is kept for the
// next transaction (RSET first when one was left open), a recipient of another pool gets
// 452 4.5.3, and a session that goes mid-DATA never lets the backend see the final dot.
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
import { replies } from '../src/replies.js';
import { Router } from '../src/router.js';
import { ScanRuntime } from '../src/scan/scan-runtime.js';
import { ProxySession } from '../src/session.js';
import { ClientState } from '../src/shaping/client-state.js';
import { SessionChecks } from '../src/shaping/session-checks.js';
import { ShapingRuntime } from '../src/shaping/shaping-runtime.js';
import { SlotWaiters } from '../src/slot-waiters.js';
import { senderPolicy } from './wiring.js';

const log = createLogger('silent');
let main: CaptureBackend;
let sales: CaptureBackend;
let refusing: CaptureBackend;
let config: SmtpLbConfig;
let shaping: ShapingRuntime;
let pools: Map<string, PoolRuntime>;
let metrics: Metrics;
let binder: Binder;

before(async () => {
  [main, sales, refusing] = await Promise.all([
    startCaptureBackend(),
    startCaptureBackend(),
    startCaptureBackend({
      reply: (ctx) => (ctx.verb === 'MAIL' ? '550 5.7.1 Sender refused by policy' : undefined),
    }),
  ]);
  const parsed = parseConfig(`
listeners: [{ name: in, listen: 127.0.0.1:0, hostname: mx.test, pool: main, maxRecipients: 100 }]
pools:
  main: { static: [{ address: ${main.address} }], tls: none, xclient: off }
  sales: { static: [{ address: ${sales.address} }], tls: none, xclient: off }
  refusing: { static: [{ address: ${refusing.address} }], tls: none, xclient: off }
routes:
  - { recipientDomain: sales.test, pool: sales }
  - { recipientDomain: refusing.test, pool: refusing }
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
  await Promise.all([main.close(), sales.close(), refusing.close()]);
});

let sid = 0;
function session(): ProxySession {
  const listener = config.listeners[0]!;
  const state = new ClientState('192.0.2.5', false);
  const senders = senderPolicy(config, shaping.limits, metrics);
  const checks = new SessionChecks(
    { shaping, metrics, listener, recipientMap: () => undefined, senders },
    state,
    log,
  );
  const s = new ProxySession(
    {
      client: {
        id: `t${++sid}`,
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

const addr = (address: string, args: Record<string, string | true> = {}) => ({ address, args });

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), what);
}

test('MAIL is ours; the first RCPT binds and replays it; DATA streams; the transaction says so', async () => {
  const s = session();
  const before = main.sessions.length;
  assert.deepEqual(await s.mail(addr('alice@example.org', { BODY: '8BITMIME' })), replies.mailAccepted());
  assert.equal(main.sessions.length, before, 'no backend before the first RCPT');
  assert.deepEqual(s.transaction?.mail, addr('alice@example.org', { BODY: '8BITMIME' }));
  assert.equal(s.transaction?.pool, undefined);

  const rcpt = await s.rcpt(addr('bob@example.test'));
  assert.equal(rcpt.code, 250, rcpt.lines.join());
  const tx = s.transaction!;
  assert.equal(tx.pool, 'main');
  assert.equal(tx.backend, main.address);
  assert.equal(tx.mailAtBackend, true);
  assert.deepEqual(tx.recipients, [{ address: 'bob@example.test', args: {}, pool: 'main' }]);
  assert.equal(tx.client.helo, 'client.test');

  const reply = await s.data(Readable.from([Buffer.from('Subject: t\r\n\r\nhello\r\n')]));
  assert.equal(reply.code, 250);
  const [msg] = await main.waitForMessages(1);
  assert.equal(msg!.mailFrom, 'alice@example.org');
  assert.deepEqual(msg!.rcptTo, ['bob@example.test']);
  assert.equal(msg!.data.toString(), 'Subject: t\r\n\r\nhello\r\n');
  assert.equal(reply.lines[0], `${msg!.reply!.slice(4)}`, 'the backend reply, verbatim');
  assert.equal(s.transaction, undefined, 'the transaction ended with DATA');
  s.close();
});

test('the connection is kept for the next transaction; one left open gets RSET first', async () => {
  const s = session();
  const sessionsBefore = main.sessions.length;
  await s.mail(addr('a@example.org'));
  assert.equal((await s.rcpt(addr('x@example.test'))).code, 250);
  s.reset(); // RSET after the backend accepted MAIL
  await s.mail(addr('b@example.org'));
  assert.equal((await s.rcpt(addr('y@example.test'))).code, 250);
  assert.equal((await s.data(Readable.from([Buffer.from('x\r\n')]))).code, 250);
  await s.mail(addr('c@example.org'));
  assert.equal((await s.rcpt(addr('z@example.test'))).code, 250);
  assert.equal((await s.data(Readable.from([Buffer.from('y\r\n')]))).code, 250);
  assert.equal(main.sessions.length, sessionsBefore + 1, 'one backend connection for all three');
  const lines = main.sessions.at(-1)!.lines;
  assert.deepEqual(
    lines.filter((l) => /^(MAIL|RCPT|RSET|DATA)/.test(l)),
    [
      'MAIL FROM:<a@example.org>',
      'RCPT TO:<x@example.test>',
      'RSET',
      'MAIL FROM:<b@example.org>',
      'RCPT TO:<y@example.test>',
      'DATA',
      'MAIL FROM:<c@example.org>',
      'RCPT TO:<z@example.test>',
      'DATA',
    ],
  );
  s.close();
});

test("the backend's refusal of MAIL is the answer to the RCPT, verbatim", async () => {
  const s = session();
  await s.mail(addr('a@example.org'));
  const r = await s.rcpt(addr('x@refusing.test'));
  // smtp-server puts its own enhanced code for a 550 in front of the text.
  assert.deepEqual(r, { code: 550, enhanced: '5.1.1', lines: ['5.1.1 Sender refused by policy'] });
  assert.deepEqual(s.transaction?.recipients, []);
  s.close();
});

test('a recipient of another pool gets 452 4.5.3, and the one over maxRecipients (100) too', async () => {
  const s = session();
  await s.mail(addr('a@example.org'));
  assert.equal((await s.rcpt(addr('x@example.test'))).code, 250);
  assert.deepEqual(await s.rcpt(addr('y@sales.test')), replies.otherRoute());
  for (let i = 1; i < 100; i++) assert.equal((await s.rcpt(addr(`r${i}@example.test`))).code, 250);
  assert.deepEqual(await s.rcpt(addr('one-too-many@example.test')), replies.tooManyRecipients());
  assert.equal(s.transaction?.recipients.length, 100);
  assert.equal(sales.sessions.length, 0, 'the other pool was never contacted');
  s.close();
});

test('a session that goes mid-DATA: the backend never gets the final dot', async () => {
  const s = session();
  const messagesBefore = main.messages.length;
  await s.mail(addr('a@example.org'));
  assert.equal((await s.rcpt(addr('x@example.test'))).code, 250);
  const body = new Readable({ read() {} });
  const reply = s.data(body);
  body.push(Buffer.from('Subject: half\r\n\r\npart one\r\n'));
  const conn = main.sessions.at(-1)!;
  await waitFor(() => conn.bytes().includes('part one'), 'the content reached the backend');
  s.close();
  body.destroy(new Error('client went away during DATA'));
  assert.equal((await reply).code, 451);
  await waitFor(() => conn.closedBy !== undefined, 'the backend connection is closed');
  assert.equal(main.messages.length, messagesBefore, 'no message at the backend');
  assert.ok(!conn.bytes().includes('\r\n.\r\n'), 'no final dot');
});
