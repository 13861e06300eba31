// DATA through the node, by property (fast-check, seeded, bounded in time; issue 11): for client
// bodies biased towards CR, LF, NUL and dots, cut into TCP segments at random, what a strict backend
// (the testkit's recording one) and a lax one (test/helpers/lax-backend.ts: drops NUL, ends DATA on
// any `\n.\n`-family marker) receive is exactly one message whose bytes are the client's body as
// the front frames it, NUL removed and newlines made CRLF — or, under `nulBytes: reject`, the client
// got 550 5.6.0 and the backend has nothing. No backend ever sees a sender the client did not give.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { observedBackend } from '../helpers/lax-backend.js';
import { simpleConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const LONG = process.env.SMTP_LB_FUZZ_LONG === '1';
const RUNS = { seed: 1105, numRuns: LONG ? 2000 : 40, interruptAfterTimeLimit: LONG ? 600_000 : 15_000 };

const FRAGMENTS = [
  '\r',
  '\n',
  '\r\n',
  '\x00',
  '.',
  '..',
  'a',
  ' ',
  '\xe9',
  'MAIL FROM:<evil@attacker.test>\r\n',
];
const body = fc
  .array(fc.constantFrom(...FRAGMENTS), { maxLength: 40 })
  .map((parts) => parts.join(''))
  .filter((b) => frame(`${b}\r\n.\r\n`).ended === b.length + 5);

/**
 * What our front makes of the bytes after 354 (its rules, written per byte): a line starts at the
 * data start or after any LF; there `..` loses a dot, and `.` CRLF ends the data when the line
 * before ended with CRLF (or there was none). `ended` is the offset just past the end.
 */
function frame(wire: string): { content: string; ended: number } {
  let content = '';
  let i = 0;
  let afterCRLF = true;
  while (i < wire.length) {
    if (wire.startsWith('.\r\n', i) && afterCRLF) return { content, ended: i + 3 };
    if (wire.startsWith('..', i)) i++;
    const lf = wire.indexOf('\n', i);
    const end = lf < 0 ? wire.length : lf + 1;
    content += wire.slice(i, end);
    afterCRLF = lf > 0 && wire[lf - 1] === '\r';
    i = end;
  }
  return { content, ended: -1 };
}

/** What the backend must hold: NUL removed, bare CR/LF made CRLF (bareNewlines: normalize). */
const expected = (content: string) => content.replaceAll('\x00', '').replace(/\r\n|\r|\n/g, '\r\n');

describe('DATA framing, by property, through the node', { timeout: LONG ? 3_600_000 : 240_000 }, () => {
  const cleanup = cleanupAfterAll();
  for (const kind of ['strict', 'lax'] as const) {
    for (const nul of ['reject', 'strip'] as const) {
      test(`${kind} backend, nulBytes: ${nul}`, async () => {
        const { address, mails, messages } = await observedBackend(kind, cleanup);
        const lb = await startNode(simpleConfig([address], { extraListener: `    nulBytes: ${nul}` }));
        cleanup.push(() => lb.stop());
        let accepted = 0;

        await fc.assert(
          fc.asyncProperty(body, fc.array(fc.nat(), { maxLength: 4 }), async (b, cuts) => {
            const wire = `${b}\r\n.\r\n`;
            const content = frame(wire).content;
            const before = messages().length;
            const c = (await SmtpDialog.open(lb.port)).noDelay();
            try {
              await c.read();
              await c.cmd('EHLO client.test');
              await c.cmd('MAIL FROM:<a@example.org>');
              assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
              assert.equal((await c.cmd('DATA')).code, 354);
              const at = [...new Set(cuts.map((n) => n % (wire.length + 1)))].sort((x, y) => x - y);
              let from = 0;
              for (const k of [...at, wire.length]) {
                if (k <= from) continue;
                c.write(wire.slice(from, k));
                from = k;
                await sleep(1);
              }
              const r = await c.read();
              if (nul === 'reject' && content.includes('\x00')) {
                assert.match(r.raw, /^550 5\.6\.0 /, r.raw);
                assert.equal(messages().length, before, 'a refused message is not at the backend');
              } else {
                assert.match(r.raw, /^250 /, r.raw);
                accepted++;
                const got = messages().slice(before);
                assert.equal(got.length, 1, 'exactly one message');
                assert.equal(got[0], expected(content));
              }
              await c.cmd('QUIT');
            } finally {
              c.close();
            }
          }),
          RUNS,
        );
        await sleep(200);
        assert.equal(messages().length, accepted, 'nothing reached the backend after a refusal either');
        assert.deepEqual([...new Set(mails())], ['MAIL FROM:<a@example.org>'], 'never a forged sender');
      });
    }
  }
});
