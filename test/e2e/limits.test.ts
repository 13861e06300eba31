// Limits the node enforces itself: message size while streaming (552 5.3.4, the backend never gets
// the final dot), per-backend caps (451 4.3.2 when every backend is full; a release wakes a waiter; a
// backend at its cap is given back at the end of each DATA, below it kept) and the listener's
// maxSessions (421 4.7.0).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const cleanup = cleanupAfterAll();

async function openTransaction(port: number): Promise<SmtpDialog> {
  const c = await SmtpDialog.open(port);
  await c.read();
  await c.cmd('EHLO x.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  return c;
}

describe('limits', { timeout: 120_000 }, () => {
  test('a message over maxMessageSize gets 552 5.3.4 and never completes at the backend', async () => {
    const backend = await startCaptureBackend();
    const lb = await startNode(
      simpleConfig([backend.address], { extraListener: '    maxMessageSize: 100KB' }),
    );
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const c = await openTransaction(lb.port);
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(`Subject: big\r\n\r\n${'y'.repeat(76)}\r\n`.repeat(3000));
    const r = await c.cmd('.');
    assert.equal(r.code, 552, r.raw);
    assert.match(r.raw, /^552 5\.3\.4 /);
    assert.equal(backend.messages.length, 0);
    // The session goes on with a new transaction (and a new backend connection).
    assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal((await c.cmd('Subject: small\r\n\r\nok\r\n.')).code, 250);
    assert.equal(backend.messages.length, 1);
    c.close();
  });

  test('every backend at its cap: 451 4.3.2 after queueTimeout, and a release wakes a waiter', async () => {
    const backend = await startCaptureBackend();
    const lb = await startNode(
      simpleConfig([{ address: backend.address, maxConnections: 1 }], {
        extraTop: 'admission: { queueTimeout: 700ms }',
      }),
    );
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const holder = await openTransaction(lb.port);
    assert.equal((await holder.cmd('RCPT TO:<b@example.test>')).code, 250);

    const late = await openTransaction(lb.port);
    const started = Date.now();
    const r = await late.cmd('RCPT TO:<c@example.test>');
    assert.equal(r.code, 451, r.raw);
    assert.match(r.raw, /^451 4\.3\.2 /);
    assert.ok(Date.now() - started >= 600, 'it waited for a slot first');

    // A waiter is woken by the release when the holder quits.
    const waiter = late.cmd('RCPT TO:<d@example.test>');
    await new Promise((res) => setTimeout(res, 150));
    assert.equal((await holder.cmd('QUIT')).code, 221);
    assert.equal((await waiter).code, 250);
    assert.equal(backend.maxConcurrent, 1, 'the backend never saw more connections than its cap');
    holder.close();
    late.close();
  });

  test('a backend at its cap: its connection goes at the end of DATA, so a waiter gets the slot while the sender is still connected', async () => {
    const backend = await startCaptureBackend();
    const lb = await startNode(
      simpleConfig([{ address: backend.address, maxConnections: 1 }], {
        extraTop: 'admission: { queueTimeout: 20s }',
      }),
    );
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const first = await openTransaction(lb.port);
    assert.equal((await first.cmd('RCPT TO:<b@example.test>')).code, 250);
    const second = await openTransaction(lb.port);
    // Waits for the slot: the first session holds the one connection the backend allows.
    const waiting = second.cmd('RCPT TO:<c@example.test>', 30_000);
    assert.equal((await first.cmd('DATA')).code, 354);
    assert.equal((await first.cmd('Subject: one\r\n\r\nfirst\r\n.')).code, 250);
    // The first client stays connected and says nothing; the second gets the slot all the same.
    assert.equal((await waiting).code, 250);
    assert.equal((await second.cmd('DATA')).code, 354);
    assert.equal((await second.cmd('Subject: two\r\n\r\nsecond\r\n.')).code, 250);
    // The first session's next transaction binds again (the second's connection went after its DATA).
    assert.equal((await first.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await first.cmd('RCPT TO:<d@example.test>', 30_000)).code, 250);
    assert.equal((await first.cmd('DATA')).code, 354);
    assert.equal((await first.cmd('Subject: three\r\n\r\nthird\r\n.')).code, 250);
    assert.equal(backend.messages.length, 3);
    assert.equal(backend.maxConcurrent, 1, 'the backend never saw more connections than its cap');
    assert.equal(backend.sessions.length, 3, 'a backend connection per transaction at the cap');
    first.close();
    second.close();
  });

  test('below its cap the backend connection is kept for the next transaction', async () => {
    const backend = await startCaptureBackend();
    const lb = await startNode(simpleConfig([{ address: backend.address, maxConnections: 2 }]));
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const c = await openTransaction(lb.port);
    for (const n of [1, 2]) {
      if (n > 1) assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
      assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
      assert.equal((await c.cmd('DATA')).code, 354);
      assert.equal((await c.cmd(`Subject: ${n}\r\n\r\nx\r\n.`)).code, 250);
    }
    assert.equal(backend.messages.length, 2);
    assert.equal(backend.sessions.length, 1, 'one backend connection for both transactions');
    c.close();
  });

  test('listener maxSessions: the next client gets 421 4.7.0 and is closed; a freed place is taken again', async () => {
    const backend = await startCaptureBackend();
    const lb = await startNode(simpleConfig([backend.address], { extraListener: '    maxSessions: 2' }));
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const first = await SmtpDialog.open(lb.port);
    assert.equal((await first.read()).code, 220);
    const second = await SmtpDialog.open(lb.port);
    assert.equal((await second.read()).code, 220);
    const third = await SmtpDialog.open(lb.port);
    const refused = await third.read();
    assert.equal(refused.code, 421, refused.raw);
    assert.match(refused.raw, /^421 4\.7\.0 mx\.test Too many connected clients/);
    for (let i = 0; i < 100 && !third.closed; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(third.closed, 'the refused client is disconnected');
    // The two admitted sessions are unaffected.
    assert.equal((await second.cmd('EHLO x.test')).code, 250);
    assert.equal((await first.cmd('QUIT')).code, 221);
    let again: Awaited<ReturnType<SmtpDialog['read']>> | undefined;
    for (let i = 0; i < 50; i++) {
      const c = await SmtpDialog.open(lb.port);
      again = await c.read();
      c.close();
      if (again.code === 220) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(again?.code, 220, 'a place freed by QUIT is taken again');
    second.close();
  });
});
