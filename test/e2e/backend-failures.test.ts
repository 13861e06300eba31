// A backend that dies at any point: the client never sees 250 for a message the backend did not
// accept, the node stays up, and the next session succeeds (DESIGN.md invariants 1 and 7).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CaptureBackend, startCaptureBackend, startWireBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const cleanup = cleanupAfterAll();

async function setup(kill: 'before-greeting' | 'after-rcpt' | 'mid-data' | 'after-dot', extra = '') {
  const bad = await startCaptureBackend({ kill });
  const lb = await startNode(simpleConfig([bad.address], { extraPool: extra }));
  cleanup.push(
    () => lb.stop(),
    () => bad.close(),
  );
  return { bad, lb };
}

async function sendOne(lb: TestNode): Promise<{ codes: number[]; last: string }> {
  const c = await SmtpDialog.open(lb.port);
  const codes: number[] = [];
  let last = '';
  try {
    for (const line of ['', 'EHLO x.test', 'MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.test>', 'DATA']) {
      const r = line ? await c.cmd(line) : await c.read();
      codes.push(r.code);
      last = r.raw;
      if (r.code >= 400) return { codes, last };
    }
    c.write(`Subject: t\r\n\r\n${'body line\r\n'.repeat(2000)}`);
    const r = await c.cmd('.');
    codes.push(r.code);
    last = r.raw;
    return { codes, last };
  } finally {
    c.close();
  }
}

async function nextSessionWorks(lb: TestNode, good: CaptureBackend): Promise<void> {
  const before = good.messages.length;
  const r = await sendOne(lb);
  assert.equal(r.codes.at(-1), 250, r.last);
  await good.waitForMessages(before + 1);
}

describe('backend killed', { timeout: 120_000 }, () => {
  test('before its greeting: another backend of the pool is tried before the client sees anything', async () => {
    const bad = await startCaptureBackend({ kill: 'before-greeting' });
    const good = await startCaptureBackend();
    const lb = await startNode(
      simpleConfig([bad.address, good.address], { extraPool: '    connectRetries: 2' }),
    );
    cleanup.push(
      () => lb.stop(),
      () => bad.close(),
      () => good.close(),
    );
    for (let i = 0; i < 4; i++) {
      const r = await sendOne(lb);
      assert.deepEqual(r.codes, [220, 250, 250, 250, 354, 250], r.last);
    }
    assert.equal(good.messages.length, 4);
  });

  test('before its greeting, with no other backend: 451 4.4.1 at RCPT', async () => {
    const { lb } = await setup('before-greeting');
    const r = await sendOne(lb);
    assert.equal(r.codes.at(-1), 451);
    assert.match(r.last, /^451 4\.4\.1 /);
  });

  for (const kill of ['after-rcpt', 'mid-data', 'after-dot'] as const) {
    test(`${kill}: the client gets 451 4.4.2, never 250, and the node keeps serving`, async () => {
      const { bad, lb } = await setup(kill);
      const r = await sendOne(lb);
      assert.ok(!r.codes.slice(4).includes(250), `no 250 after DATA: ${r.codes}`);
      assert.match(r.last, /^451 4\.4\.2 /);
      // After the dot the backend has the message but never said 250 for it (SMTP's own duplicate
      // window, RFC 1047): the client must not have been told 250 either.
      assert.equal(bad.messages.length, kill === 'after-dot' ? 1 : 0);
      // The node is still up and a new session to a healthy backend works.
      const good = await startCaptureBackend();
      cleanup.push(() => good.close());
      const lb2 = await startNode(simpleConfig([good.address]));
      cleanup.push(() => lb2.stop());
      await nextSessionWorks(lb2, good);
      const again = await SmtpDialog.open(lb.port);
      assert.equal((await again.read()).code, 220, 'the node that lost its backend still greets');
      again.close();
    });
  }

  test('a backend that answers nonsense is a failure, never relayed as success', async () => {
    // Replies no real server gives: the wire recorder.
    const odd = await startWireBackend({
      reply: ({ verb }) => (verb === 'RCPT' ? '354 go ahead' : verb === 'DATA' ? '250 ok' : undefined),
    });
    const lb = await startNode(simpleConfig([odd.address]));
    cleanup.push(
      () => lb.stop(),
      () => odd.close(),
    );
    const c = await SmtpDialog.open(lb.port);
    await c.read();
    await c.cmd('EHLO x.test');
    await c.cmd('MAIL FROM:<a@example.org>');
    const r = await c.cmd('RCPT TO:<b@example.test>');
    assert.equal(r.code, 451, r.raw);
    c.close();
  });

  test('a 250 to DATA (instead of 354) is a failure, never relayed as success', async () => {
    const odd = await startWireBackend({
      reply: ({ verb }) => (verb === 'DATA' ? '250 2.0.0 ok' : undefined),
    });
    const lb = await startNode(simpleConfig([odd.address]));
    cleanup.push(
      () => lb.stop(),
      () => odd.close(),
    );
    const r = await sendOne(lb);
    assert.equal(r.codes.at(-1), 451, r.last);
    assert.equal(odd.messages.length, 0);
  });
});
