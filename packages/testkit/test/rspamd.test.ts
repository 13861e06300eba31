// The private rspamd: its own GTUBE patterns and the soft-reject rule give their actions over HTTP,
// every task's envelope is logged, pause() makes it hang and resume() brings it back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  RSPAMD_GTUBE,
  RSPAMD_SOFT_REJECT_MESSAGE,
  RSPAMD_SOFT_REJECT_SUBJECT,
  type RspamdInstance,
  startRspamd,
  waitForPort,
} from '../src/index.js';

function message(subject: string, body: string): string {
  return [
    'From: Alice Example <alice@example.org>',
    'To: Bob Example <bob@example.test>',
    `Subject: ${subject}`,
    'Date: Tue, 01 Dec 2026 10:00:00 +0000',
    'Message-ID: <testkit-1@example.org>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    body,
    '',
  ].join('\r\n');
}

async function check(r: RspamdInstance, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${r.url}/checkv2`, {
    method: 'POST',
    body,
    headers,
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 200);
  return (await res.json()) as { action: string; messages?: { smtp_message?: string } };
}

describe('startRspamd', { timeout: 120_000 }, () => {
  let r: RspamdInstance;
  before(async () => {
    r = await startRspamd();
  });
  after(() => r?.stop());

  test('GTUBE is rejected with its message, a plain message gets no action', async () => {
    const spam = await check(r, message('hello', RSPAMD_GTUBE.reject));
    assert.equal(spam.action, 'reject');
    assert.equal(spam.messages?.smtp_message, 'Gtube pattern');
    const clean = await check(r, message('lunch on friday', 'Shall we meet at noon?'), {
      IP: '127.0.0.1',
      From: 'alice@example.org',
      Rcpt: 'bob@example.test',
    });
    assert.equal(clean.action, 'no action');
  });

  test('the soft-reject subject gives soft reject with the rule message', async () => {
    const v = await check(r, message(`x ${RSPAMD_SOFT_REJECT_SUBJECT} y`, 'hi'));
    assert.equal(v.action, 'soft reject');
    assert.equal(v.messages?.smtp_message, RSPAMD_SOFT_REJECT_MESSAGE);
  });

  test('the envelope of a task is logged', async () => {
    await check(r, message('envelope', 'hi'), {
      IP: '192.0.2.7',
      Helo: 'client.example.org',
      Hostname: 'mail.example.org',
      From: 'alice@example.org',
      Rcpt: 'bob@example.test',
      'Queue-Id': 'testkit-q1',
      User: 'alice',
    });
    await r.waitForLog(/qid=<testkit-q1>/);
    const env = (await r.envelopes()).find((e) => e.queueId === 'testkit-q1');
    assert.deepEqual(env, {
      ip: '192.0.2.7',
      helo: 'client.example.org',
      hostname: 'mail.example.org',
      from: 'alice@example.org',
      rcpt: ['bob@example.test'],
      user: 'alice',
      queueId: 'testkit-q1',
    });
  });

  test('pause() hangs the workers, resume() brings them back', async () => {
    r.pause();
    try {
      await assert.rejects(
        fetch(`${r.url}/checkv2`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(1000) }),
      );
    } finally {
      r.resume();
    }
    await waitForPort(r.milterPort);
    assert.equal((await check(r, message('back', 'hi'))).action, 'no action');
  });
});
