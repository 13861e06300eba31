// The tarpit and early talkers: a suspect session has every reply held (by timers), still delivers
// its mail if it waits, shows in smtp_lb_tarpit_sessions_active, and the node's cap on tarpitted
// sessions turns the next suspect away with 421 4.7.0. Too many rejected recipients tarpit a session
// midway; a client that talks before the greeting gets 554 5.5.1, or the tarpit.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import type { TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';
import { fromClient, metric, sleep, startShapingNode, waitForLog } from './shaping-helpers.js';

// Long enough that an untarpitted reply on a busy CI machine stays well under it.
const DELAY = 1000;

async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  const v = await p;
  return [v, Date.now() - t0];
}

describe('tarpit and early talkers', { timeout: 60_000 }, () => {
  let backend: CaptureBackend;
  const nodes: TestNode[] = [];
  before(async () => {
    backend = await startCaptureBackend({
      reply: ({ verb, arg }) =>
        verb === 'RCPT' && /nobody/.test(arg) ? '550 5.1.1 User unknown' : undefined,
    });
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    await backend?.close();
  });
  const start = async (shaping: string) => {
    const n = await startShapingNode({ backend: backend.address, shaping });
    nodes.push(n);
    return n;
  };

  test('over the connection rate with action tarpit: every reply is held, the mail still goes through', async () => {
    const lb = await start(`  limits: { connectionRate: { limit: 1, window: 1m }, action: tarpit }
  tarpit: { delay: ${DELAY}ms, maxSessions: 1 }
`);
    const fast = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.2');
    const [g1, t1] = await timed(fast.read());
    assert.equal(g1.code, 220);
    assert.ok(t1 < DELAY, `the first session is not slowed (${t1} ms)`);
    fast.close();

    const slow = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.2');
    const [g2, t2] = await timed(slow.read());
    assert.equal(g2.code, 220);
    assert.ok(t2 >= DELAY - 50, `greeting held ${t2} ms`);
    const line = await waitForLog(lb, 'session tarpitted', fromClient('127.0.0.2'));
    assert.equal(line.reason, 'connection-rate');
    assert.equal(await metric(lb, 'smtp_lb_tarpit_sessions_active'), 1);

    // The node's tarpit holds one session: the next suspect is turned away.
    const third = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.2');
    const full = await third.read();
    assert.equal(full.code, 421);
    assert.match(full.raw, /^421 4\.7\.0 Too many suspect connections/);
    await waitForLog(lb, 'tarpit full; refusing the session', fromClient('127.0.0.2'));

    // Pipelining gains nothing: each reply waits for the one before it.
    const before = backend.messages.length;
    const [replies, t3] = await timed(
      (async () => [
        await slow.cmd('EHLO c.test'),
        await slow.cmd('MAIL FROM:<a@example.org>'),
        await slow.cmd('RCPT TO:<b@example.test>'),
      ])(),
    );
    assert.deepEqual(
      replies.map((r) => r.code),
      [250, 250, 250],
    );
    assert.ok(t3 >= 3 * (DELAY - 50), `three replies took ${t3} ms`);
    assert.equal((await slow.cmd('DATA')).code, 354);
    const done = await slow.cmd('Subject: slow\r\n\r\nstill delivered\r\n.');
    assert.equal(done.code, 250, done.raw);
    assert.equal(backend.messages.length, before + 1);
    assert.equal((await slow.cmd('QUIT')).code, 221);
    await slow.waitClosed(5000);
    for (let i = 0; i < 50 && (await metric(lb, 'smtp_lb_tarpit_sessions_active')) !== 0; i++)
      await sleep(50);
    assert.equal(await metric(lb, 'smtp_lb_tarpit_sessions_active'), 0);
  });

  test('too many rejected recipients tarpit the session midway', async () => {
    const lb = await start(`  tarpit: { delay: ${DELAY}ms, rejectedRecipients: 2 }
`);
    const c = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.3');
    await c.read();
    await c.cmd('EHLO c.test');
    await c.cmd('MAIL FROM:<a@example.org>');
    const [r1, t1] = await timed(c.cmd('RCPT TO:<nobody1@example.test>'));
    assert.equal(r1.code, 550);
    assert.ok(t1 < DELAY, `first rejection answered at once (${t1} ms)`);
    const [r2, t2] = await timed(c.cmd('RCPT TO:<nobody2@example.test>'));
    assert.equal(r2.code, 550);
    assert.ok(t2 >= DELAY - 50, `the rejection that reaches the limit is held (${t2} ms)`);
    const line = await waitForLog(lb, 'session tarpitted', fromClient('127.0.0.3'));
    assert.equal(line.reason, 'rejected-recipients');
    const [r3, t3] = await timed(c.cmd('RCPT TO:<b@example.test>'));
    assert.equal(r3.code, 250);
    assert.ok(t3 >= DELAY - 50, `later replies are held too (${t3} ms)`);
    assert.equal(await metric(lb, 'smtp_lb_tarpit_sessions_active'), 1);
    c.close();
    // Another session of the same client starts clean.
    const d = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.3');
    const [g, tg] = await timed(d.read());
    assert.equal(g.code, 220);
    assert.ok(tg < DELAY);
    d.close();
  });

  test('early talkers: 554 5.5.1 before the greeting; a client that waits is greeted', async () => {
    const lb = await start(`  greeting: { delay: 400ms, earlyTalker: reject }
`);
    const rude = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.4');
    rude.write('EHLO rude.test\r\n');
    const r = await rude.read();
    assert.equal(r.code, 554);
    assert.match(r.raw, /^554 5\.5\.1 /);
    await rude.waitClosed(5000);
    const line = await waitForLog(
      lb,
      'early talker: the client spoke before the greeting',
      fromClient('127.0.0.4'),
    );
    assert.equal(line.action, 'reject');
    assert.equal(line.bytes, 16);
    assert.equal(backend.sessions.filter((s) => s.xclient.ADDR === '127.0.0.4').length, 0);

    const polite = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.4');
    const [g, t] = await timed(polite.read());
    assert.equal(g.code, 220);
    assert.ok(t >= 350, `greeting after the delay (${t} ms)`);
    assert.equal((await polite.cmd('EHLO polite.test')).code, 250);
    polite.close();
  });

  test('early talkers with action tarpit: greeted late, what they said early is dropped', async () => {
    const lb = await start(`  greeting: { delay: 300ms, earlyTalker: tarpit }
  tarpit: { delay: ${DELAY}ms }
`);
    const rude = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.5');
    rude.write('EHLO rude.test\r\n');
    const [g, t] = await timed(rude.read());
    assert.equal(g.code, 220);
    assert.ok(t >= DELAY - 50, `greeting held by the tarpit (${t} ms)`);
    const line = await waitForLog(lb, 'session tarpitted', fromClient('127.0.0.5'));
    assert.equal(line.reason, 'early-talker');
    const [e, te] = await timed(rude.cmd('EHLO rude.test'));
    assert.equal(e.code, 250, 'the early EHLO was dropped; this one is answered');
    assert.ok(te >= DELAY - 50);
    rude.close();
  });
});
