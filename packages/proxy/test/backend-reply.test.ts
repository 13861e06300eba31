// A backend's reply as a client gets it (backend-reply.ts), by property (fast-check, seeded): from any
// bytes of reply text, every line the client gets fits 512 octets with its code and CRLF and has no
// control byte, all the text is there (control bytes made `?`, long lines split), bytes that are not
// UTF-8 arrive exactly, and what needed nothing is the very same reply.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeWire, encodeWire, type Reply } from '@smtp-lb/upstream';
import fc from 'fast-check';
import { forClient, MAX_REPLY_LINE } from '../src/backend-reply.js';

const bytesOf = (s: string) => {
  const w = encodeWire(s);
  return typeof w === 'string' ? Buffer.from(w, 'utf8') : w;
};
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

// Reply text as the parser gives it: any bytes but LF (the line end), biased towards controls,
// 8-bit bytes and spaces, sometimes long.
const textBytes = fc
  .array(
    fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
      { weight: 1, arbitrary: fc.constantFrom(0x00, 0x0d, 0x1b, 0x7f, 0x09, 0x20) },
      { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
      { weight: 1, arbitrary: fc.constantFrom(0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x92, 0x80) },
    ),
    { maxLength: 1600 },
  )
  .map((a) => Buffer.from(a));

test('any reply text: lines within 512 octets, no control byte, every byte of the text kept (property)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(250, 451, 550),
      fc.boolean(),
      fc.array(textBytes, { minLength: 1, maxLength: 3 }),
      (code, withEnhanced, raw) => {
        const enhanced = withEnhanced ? `${String(code)[0]}.1.1` : undefined;
        const lines = raw.map((b, i) => (i === 0 && enhanced ? `${enhanced} ` : '') + decodeWire(b));
        const r: Reply = enhanced ? { code, enhanced, lines } : { code, lines };
        const out = forClient(r);
        const { reply, defects } = out ?? { reply: r, defects: [] };
        assert.equal(reply.code, code);
        assert.equal(reply.enhanced, enhanced);
        const sanitized = lines.map((l) => bytesOf(l.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '?')));
        for (const line of reply.lines) {
          assert.ok(bytesOf(line).length + 6 <= MAX_REPLY_LINE, `${bytesOf(line).length} octets`);
          assert.ok(!CONTROL.test(line), JSON.stringify(line));
        }
        // The text, the continuation prefixes taken off, is the sanitised text.
        const prefix = enhanced ? Buffer.from(`${enhanced} `) : Buffer.alloc(0);
        let k = 0;
        for (const want of sanitized) {
          const parts: Buffer[] = [bytesOf(reply.lines[k++]!)];
          while (Buffer.concat(parts).length < want.length)
            parts.push(bytesOf(reply.lines[k++]!).subarray(prefix.length));
          assert.deepEqual(Buffer.concat(parts), want);
        }
        assert.equal(k, reply.lines.length);
        assert.equal(
          defects.includes('control-bytes'),
          lines.some((l) => CONTROL.test(l)),
        );
        assert.equal(
          defects.includes('long-line'),
          sanitized.some((b) => b.length + 6 > MAX_REPLY_LINE),
        );
        assert.equal(
          defects.includes('not-utf8'),
          lines.some((l) => !bytesOf(l).equals(Buffer.from(l, 'utf8'))),
        );
        if (defects.length === 0) assert.equal(out, undefined, 'nothing to repair: undefined');
      },
    ),
    { seed: 5321, numRuns: 1500 },
  );
});

test('a 5 KiB line is split after spaces, each piece with the enhanced code; NUL and CR become ?', () => {
  const words = Array.from({ length: 600 }, (_, i) => `word${i}`).join(' ');
  const { reply, defects } = forClient({ code: 550, enhanced: '5.7.1', lines: [`5.7.1 ${words}`] })!;
  assert.deepEqual(defects, ['long-line']);
  assert.ok(reply.lines.length >= 10);
  assert.ok(reply.lines.every((l) => l.startsWith('5.7.1 ')));
  assert.ok(
    reply.lines.slice(0, -1).every((l) => l.endsWith(' ')),
    'cut after a space',
  );
  assert.deepEqual(forClient({ code: 250, lines: ['2.0.0 a\x00b\rc\x1b[31m'] })?.reply.lines, [
    '2.0.0 a?b?c?[31m',
  ]);
});
