// DSN (RFC 3461) through the node, against backends we did not write: NOTIFY, ORCPT, RET and ENVID
// reach a backend that offers DSN exactly as given. To one that does not, what would change what
// the sender gets (NOTIFY=NEVER, SUCCESS) is refused at the RCPT (555 5.5.4), the rest (ORCPT,
// ENVID, RET, NOTIFY=FAILURE[,DELAY]: what it does anyway) left out. With
// `dsn: false` the node leaves DSN out of its EHLO reply, and a sending Postfix then does DSN itself.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { replies, wireReply } from '@smtp-lb/proxy';
import { startCaptureBackend, startPostfix, startSmtpServerBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

/** EHLO done on a new session to the node on `port`. */
async function session(port: number): Promise<SmtpDialog> {
  const c = await SmtpDialog.open(port);
  await c.read();
  await c.cmd('EHLO client.test');
  return c;
}

async function send(c: SmtpDialog, subject: string): Promise<number> {
  assert.equal((await c.cmd('DATA')).code, 354);
  return (await c.cmd(`Subject: ${subject}\r\n\r\nbody\r\n.`)).code;
}

describe('DSN parameters through the node: passed on, left out only where that changes nothing, or refused', {
  timeout: 180_000,
}, () => {
  const cleanup = cleanupAfterAll();

  test('Postfix with DSN gets NOTIFY, ORCPT, RET and ENVID as given (its next hop sees them again)', async () => {
    const sink = await startCaptureBackend({ dsn: true });
    cleanup.push(() => sink.close());
    const postfix = await startPostfix({ relayTo: sink.address });
    cleanup.push(() => postfix.stop());
    const lb = await startNode(simpleConfig([postfix.address]));
    cleanup.push(() => lb.stop());

    const c = await session(lb.port);
    assert.equal((await c.cmd('MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159')).code, 250);
    const b = await c.cmd('RCPT TO:<b@example.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@example.test');
    assert.equal(b.code, 250, b.raw);
    const never = await c.cmd('RCPT TO:<c@example.test> NOTIFY=NEVER');
    assert.equal(never.code, 250, never.raw);
    assert.equal(await send(c, 'dsn on'), 250);
    await c.cmd('QUIT');
    c.close();

    // What Postfix stored of them shows in what its smtp client sends the next hop (which offers DSN).
    const [msg] = await sink.waitForMessages(1, 30_000);
    const lines = sink.sessions.find((s) => s.id === msg!.sessionId)!.lines;
    assert.match(
      lines.find((l) => /^MAIL /.test(l))!,
      /^MAIL FROM:<a@example\.org>.* ENVID=QQ314159 RET=HDRS$/,
    );
    assert.equal(
      lines.find((l) => /^RCPT TO:<b@/.test(l)),
      'RCPT TO:<b@example.test> ORCPT=rfc822;b@example.test NOTIFY=SUCCESS,DELAY',
    );
    assert.match(lines.find((l) => /^RCPT TO:<c@/.test(l))!, /NOTIFY=NEVER/);
  });

  test('Postfix without DSN (smtpd_discard_ehlo_keywords = dsn): NOTIFY=NEVER and SUCCESS get 555 5.5.4, the rest is left out', async () => {
    const sink = await startCaptureBackend();
    cleanup.push(() => sink.close());
    const postfix = await startPostfix({
      relayTo: sink.address,
      mainCf: { smtpd_discard_ehlo_keywords: 'dsn' },
    });
    cleanup.push(() => postfix.stop());
    const lb = await startNode(simpleConfig([postfix.address]));
    cleanup.push(() => lb.stop());

    // Postfix's own answer to the parameter it no longer offers is a permanent refusal too (501
    // 5.7.1; the node gives RFC 5321 4.1.1.11's 555 5.5.4).
    const direct = await session(postfix.port);
    assert.equal((await direct.cmd('MAIL FROM:<a@example.org>')).code, 250);
    const own = await direct.cmd('RCPT TO:<b@example.test> NOTIFY=NEVER');
    assert.equal(own.raw, '501 5.7.1 DSN support is disabled\r\n');
    await direct.cmd('QUIT');
    direct.close();

    const c = await session(lb.port);
    assert.equal((await c.cmd('MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159')).code, 250);
    const never = await c.cmd('RCPT TO:<b@example.test> NOTIFY=NEVER');
    assert.equal(never.raw, wireReply(replies.dsnUnsupported('NOTIFY=NEVER')));
    const success = await c.cmd('RCPT TO:<c@example.test> NOTIFY=success,failure');
    assert.equal(success.raw, wireReply(replies.dsnUnsupported('NOTIFY=SUCCESS,FAILURE')));
    // What it does anyway, or only shapes a DSN it never writes: left out, and the RCPT accepted.
    const failure = await c.cmd('RCPT TO:<d@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;d@example.test');
    assert.equal(failure.code, 250, failure.raw);
    assert.equal(await send(c, 'no dsn'), 250);
    await c.cmd('QUIT');
    c.close();

    const [msg] = await sink.waitForMessages(1, 30_000);
    assert.deepEqual(msg!.rcptTo, ['d@example.test']);
    assert.ok(
      lb.logs.some(
        (l) => l.msg === 'the backend cannot honour a parameter' && /NOTIFY=NEVER/.test(String(l.reply)),
      ),
      'a log line',
    );
    // Postfix's count of the node's session: MAIL and one RCPT, both accepted, so none carried a DSN
    // parameter (it refuses them with 501 5.7.1, counted as mail=0/1 or rcpt=0/1).
    await postfix.waitForLog(/disconnect from [^\n]* mail=1 rcpt=1 data=1 /, 10_000);
  });

  test('smtp-server without DSN (its default): NOTIFY=SUCCESS 555 5.5.4, the rest left out; with DSN its envelope holds them as given', async () => {
    const plain = await startSmtpServerBackend();
    cleanup.push(() => plain.close());
    const dsn = await startSmtpServerBackend({ dsn: true });
    cleanup.push(() => dsn.close());
    const toPlain = await startNode(simpleConfig([plain.address]));
    cleanup.push(() => toPlain.stop());
    const toDsn = await startNode(simpleConfig([dsn.address]));
    cleanup.push(() => toDsn.stop());

    for (const lb of [toPlain, toDsn]) {
      const c = await session(lb.port);
      assert.equal((await c.cmd('MAIL FROM:<a@example.org> ENVID=abc+2Bdef')).code, 250);
      const b = await c.cmd('RCPT TO:<b@example.test> NOTIFY=FAILURE ORCPT=rfc822;b+2Bx@example.test');
      assert.equal(b.code, 250, b.raw);
      const c2 = await c.cmd('RCPT TO:<c@example.test> NOTIFY=SUCCESS');
      // smtp-server without DSN would take NOTIFY=SUCCESS and ignore it: the node refuses it.
      if (lb === toPlain) assert.equal(c2.raw, wireReply(replies.dsnUnsupported('NOTIFY=SUCCESS')));
      else assert.equal(c2.code, 250, c2.raw);
      assert.equal(await send(c, 'smtp-server'), 250);
      await c.cmd('QUIT');
      c.close();
    }
    const [without] = await plain.waitForMessages(1);
    assert.deepEqual([without!.mailArgs, without!.rcptArgs], [{}, [{}]]);
    const [withDsn] = await dsn.waitForMessages(1);
    assert.deepEqual(withDsn!.dsn, {
      ret: null,
      // xtext as sent (abc+2Bdef), decoded by smtp-server
      envid: 'abc+def',
      rcpts: [{ notify: ['FAILURE'], orcpt: 'rfc822;b+x@example.test' }, { notify: ['SUCCESS'] }],
    });
  });

  test('dsn: false: no DSN in the EHLO reply, its parameters refused at once; a sending Postfix then sends the "relayed" notice itself', async () => {
    const backend = await startSmtpServerBackend();
    cleanup.push(() => backend.close());
    const lb = await startNode(simpleConfig([backend.address], { extraListener: '    dsn: false' }));
    cleanup.push(() => lb.stop());

    const c = await SmtpDialog.open(lb.port);
    await c.read();
    const ehlo = await c.cmd('EHLO client.test');
    assert.equal(ehlo.code, 250);
    assert.ok(!ehlo.lines.includes('DSN'), ehlo.raw);
    assert.equal(
      (await c.cmd('MAIL FROM:<a@example.org> RET=FULL')).raw,
      wireReply(replies.dsnNotOffered('RET')),
    );
    assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
    const r = await c.cmd('RCPT TO:<b@example.test> NOTIFY=SUCCESS');
    assert.equal(r.raw, wireReply(replies.dsnNotOffered('NOTIFY')));
    await c.cmd('QUIT');
    c.close();

    // A Postfix relaying through the node: asked for NOTIFY=SUCCESS, it meets a server without DSN,
    // delivers, and tells the sender itself (RFC 3461 4.1 "relayed"); the notice goes the same way.
    const sender = await startPostfix({ relayTo: `127.0.0.1:${lb.port}` });
    cleanup.push(() => sender.stop());
    const viaPostfix = await session(sender.port);
    assert.equal((await viaPostfix.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await viaPostfix.cmd('RCPT TO:<b@example.test> NOTIFY=SUCCESS')).code, 250);
    assert.equal(await send(viaPostfix, 'relayed'), 250);
    await viaPostfix.cmd('QUIT');
    viaPostfix.close();
    await sender.waitForLog(/status=sent/, 30_000);
    await sender.waitForLog(/sender delivery status notification/, 30_000);
    const msgs = await backend.waitForMessages(2, 30_000);
    assert.deepEqual(
      msgs.map((m) => m.rcptTo),
      [['b@example.test'], ['a@example.org']],
    );
    assert.match(msgs[1]!.data.toString('utf8'), /relayed/i);
  });
});
