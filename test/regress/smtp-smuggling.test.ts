// SMTP smuggling (SEC Consult, 2023): end-of-data sequences that some servers accept ("\n.\n",
// "\r.\r", ...) must not end the message at the backend. The backend receives exactly one message
// per message the client sent, and never a command the client hid inside DATA (DESIGN.md invariant 4).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const ENDINGS = ['\n.\n', '\n.\r\n', '\r.\r', '\r\n.\r', '\r\n\x00.\r\n', '\r.\r\n', '\n..\n'];

function smuggled(ending: string): string {
  return (
    `Subject: smuggle\r\n\r\nhello${ending}` +
    'MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n' +
    'Subject: smuggled\r\n\r\nI should not exist\r\n'
  );
}

describe('SMTP smuggling through the node', { timeout: 60_000 }, () => {
  for (const mode of ['normalize', 'reject'] as const) {
    describe(`bareNewlines: ${mode}`, () => {
      let backend: CaptureBackend;
      let lb: TestNode;
      before(async () => {
        backend = await startCaptureBackend();
        lb = await startNode(simpleConfig([backend.address], { extraListener: `    bareNewlines: ${mode}` }));
      });
      after(async () => {
        await lb?.stop();
        await backend?.close();
      });

      for (const ending of ENDINGS) {
        test(`ending ${JSON.stringify(ending)}`, async () => {
          const msgsBefore = backend.messages.length;
          const sessionsBefore = backend.sessions.length;
          const c = await SmtpDialog.open(lb.port);
          await c.read();
          await c.cmd('EHLO x.test');
          await c.cmd('MAIL FROM:<a@example.org>');
          assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
          assert.equal((await c.cmd('DATA')).code, 354);
          c.write(smuggled(ending));
          const r = await c.cmd('.');
          assert.equal((await c.cmd('QUIT')).code, 221);
          c.close();
          // Let the backend see everything the node might still send.
          await new Promise((res) => setTimeout(res, 200));
          const mails = backend.sessions
            .slice(sessionsBefore)
            .flatMap((s) => s.lines.filter((l) => /^MAIL FROM/i.test(l)));
          assert.deepEqual(
            mails,
            ['MAIL FROM:<a@example.org>'],
            'exactly one MAIL command reached the backend',
          );
          const got = backend.messages.slice(msgsBefore);
          const bare = /\r(?!\n)|(?<!\r)\n/.test(ending);
          // NUL is refused by default (nulBytes: reject); nul-smuggling.test.ts covers both modes.
          if ((mode === 'reject' && bare) || ending.includes('\x00')) {
            assert.equal(r.code, 550, r.raw);
            assert.match(r.raw, /^550 5\.6\.0 /);
            assert.equal(got.length, 0, 'a rejected message never completes at the backend');
          } else {
            assert.equal(r.code, 250, r.raw);
            assert.equal(got.length, 1, 'exactly one message');
            const data = got[0]!.data.toString('latin1');
            assert.match(data, /I should not exist/, 'the smuggled text stayed inside the one message');
            assert.doesNotMatch(data.replace(/\r\n/g, ''), /[\r\n]/, 'no bare CR or LF reached the backend');
          }
        });
      }
    });
  }
});
