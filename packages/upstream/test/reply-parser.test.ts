// Reply parsing: lines kept exactly as the backend sent them, enhanced codes, replies split over reads
// or packed into one, and garbage refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '@smtp-lb/testkit';
import fc from 'fast-check';
import { ReplyParseError, ReplyParser } from '../src/reply-parser.js';
import type { Reply } from '../src/types.js';
import { encodeWire } from '../src/wire-text.js';

const push = (p: ReplyParser, s: string) => p.push(Buffer.from(s));

describe('ReplyParser', () => {
  it('keeps multi-line replies verbatim, enhanced code included', () => {
    const p = new ReplyParser();
    assert.deepEqual(push(p, '550-5.1.1 <x@y>: Recipient address rejected\r\n550 5.1.1  two  spaces \r\n'), [
      {
        code: 550,
        enhanced: '5.1.1',
        lines: ['5.1.1 <x@y>: Recipient address rejected', '5.1.1  two  spaces '],
      },
    ]);
  });

  it('assembles replies split at any byte and splits replies sharing a read', () => {
    const wire = '220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n451 4.3.0 try later\r\n';
    const whole = push(new ReplyParser(), wire);
    assert.equal(whole.length, 3);
    for (let cut = 0; cut <= wire.length; cut++) {
      const p = new ReplyParser();
      const got = [...push(p, wire.slice(0, cut)), ...push(p, wire.slice(cut))];
      assert.deepEqual(got, whole, `cut at ${cut}`);
    }
    assert.deepEqual(whole[1]!.lines, ['mx', 'PIPELINING', 'SIZE 10']);
    assert.equal(whole[2]!.enhanced, '4.3.0');
  });

  it('accepts a bare code, a bare LF line end and UTF-8 text', () => {
    const p = new ReplyParser();
    assert.deepEqual(push(p, '250\n'), [{ code: 250, lines: [''] }]);
    assert.deepEqual(push(p, '250 2.0.0 übel\r\n'), [
      { code: 250, enhanced: '2.0.0', lines: ['2.0.0 übel'] },
    ]);
  });

  it('takes no enhanced code whose class differs from the reply or that is not one', () => {
    const p = new ReplyParser();
    assert.equal(push(p, '550 4.1.1 odd\r\n')[0]!.enhanced, undefined);
    assert.equal(push(p, '250 2.0.0x\r\n')[0]!.enhanced, undefined);
    assert.equal(push(p, '250 1.2.3.4 up\r\n')[0]!.enhanced, undefined);
  });

  it('refuses lines without a code, changing codes and endless lines', () => {
    assert.throws(() => push(new ReplyParser(), 'hello there\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '25 short\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '250x\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '600 no such class\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '250-a\r\n251 b\r\n'), /changed from 250 to 251/);
    assert.throws(() => push(new ReplyParser(), `250 ${'x'.repeat(9000)}`), /longer than/);
  });

  it('keeps bytes that are not UTF-8, NUL and other control bytes exactly (the proxy decides what a client gets)', () => {
    const wire = Buffer.concat([
      Buffer.from('550 5.7.1 caf'),
      Buffer.from([0xe9, 0x00, 0x07, 0x0d, 0xff]),
      Buffer.from(' x\r\n'),
    ]);
    const [r] = new ReplyParser().push(wire);
    assert.equal(r!.enhanced, '5.7.1');
    assert.deepEqual(Buffer.from(encodeWire(r!.lines[0]!) as Buffer), wire.subarray(4, wire.length - 2));
  });

  it('any bytes, cut anywhere: well-formed replies or a ReplyParseError, never another failure (property)', () => {
    const chunk = fc.oneof(
      fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
      fc
        .tuple(
          fc.constantFrom('250', '550', '451', '220', '600', '25', '2x0'),
          fc.constantFrom(' ', '-', '', 'x'),
          fc.uint8Array({ maxLength: 30 }),
          fc.constantFrom('\r\n', '\n', '\r', ''),
        )
        .map(([c, sep, text, end]) =>
          Buffer.concat([Buffer.from(c + sep), Buffer.from(text), Buffer.from(end)]),
        ),
      fc.integer({ min: 8180, max: 8200 }).map((n) => Buffer.from(`250 ${'y'.repeat(n)}\r\n`)),
    );
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 12 }), (chunks) => {
        const p = new ReplyParser();
        try {
          for (const c of chunks) {
            for (const r of p.push(c)) {
              assert.ok(Number.isInteger(r.code) && r.code >= 200 && r.code <= 599, `code ${r.code}`);
              assert.ok(r.lines.length >= 1 && r.lines.length <= 512);
              for (const line of r.lines) {
                assert.equal(typeof line, 'string');
                assert.ok(!line.includes('\n'), 'no LF inside a line');
                assert.ok(Buffer.byteLength(line) <= 3 * 8192);
              }
              if (r.enhanced) assert.match(r.enhanced, /^[245]\.\d{1,3}\.\d{1,3}$/);
            }
          }
        } catch (err) {
          if (!(err instanceof ReplyParseError)) throw err;
        }
      }),
      { seed: 5321, numRuns: 2000 },
    );
  });

  it('forgets everything on reset (nothing read before a TLS handshake survives it)', () => {
    const p = new ReplyParser();
    assert.deepEqual(push(p, '250-injected\r\n250 also'), []);
    p.reset();
    assert.deepEqual(push(p, '220 fresh\r\n'), [{ code: 220, lines: ['fresh'] }]);
  });

  it('parses like the plain regex reference on random input cut at random (the byte checks)', () => {
    const random = mulberry32(7);
    const pieces = [
      '2',
      '3',
      '5',
      '1',
      '6',
      '0',
      '9',
      ' ',
      '-',
      '.',
      'x',
      'ü',
      '\r',
      '\n',
      '\r\n',
      '2.0.0 ',
      '5.1.1',
    ];
    for (let round = 0; round < 3000; round++) {
      let wire = '';
      const lines = 1 + Math.floor(random() * 4);
      for (let l = 0; l < lines; l++) {
        // Mostly well-formed lines, so the parse gets past the first one often.
        if (random() < 0.7) wire += ['250', '451', '550', '220', '354'][Math.floor(random() * 5)]!;
        if (random() < 0.7) wire += random() < 0.5 ? ' ' : '-';
        const len = Math.floor(random() * 8);
        for (let i = 0; i < len; i++) wire += pieces[Math.floor(random() * pieces.length)]!;
        wire += random() < 0.8 ? '\r\n' : '\n';
      }
      const bytes = Buffer.from(wire);
      const cut = Math.floor(random() * (bytes.length + 1));
      const got = outcome(() => {
        const p = new ReplyParser();
        return [...p.push(bytes.subarray(0, cut)), ...p.push(bytes.subarray(cut))];
      });
      assert.deepEqual(
        got,
        outcome(() => referenceParse(bytes)),
        JSON.stringify(wire),
      );
    }
  });
});

function outcome(run: () => Reply[]): Reply[] | string {
  try {
    return run();
  } catch (err) {
    assert.ok(err instanceof ReplyParseError);
    return err.message;
  }
}

/** The parser as first written: one regex per line over the decoded text. */
function referenceParse(wire: Buffer): Reply[] {
  const out: Reply[] = [];
  let lines: string[] = [];
  let code = 0;
  let buf = wire;
  for (let lf = buf.indexOf(0x0a); lf >= 0; lf = buf.indexOf(0x0a)) {
    const text = buf.toString('utf8', 0, lf > 0 && buf[lf - 1] === 0x0d ? lf - 1 : lf);
    buf = buf.subarray(lf + 1);
    const m = /^([2-5]\d\d)(?:([ -])(.*))?$/s.exec(text);
    if (!m) throw new ReplyParseError(`not an SMTP reply line: ${JSON.stringify(text.slice(0, 80))}`);
    const c = Number(m[1]);
    if (lines.length > 0 && c !== code) {
      throw new ReplyParseError(`reply code changed from ${code} to ${c} within one reply`);
    }
    code = c;
    lines.push(m[3] ?? '');
    if (m[2] === '-') continue;
    const reply: Reply = { code, lines };
    lines = [];
    const e = /^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)/.exec(reply.lines[0]!);
    if (e && e[1] === m[1]![0]) reply.enhanced = `${e[1]}.${e[2]}.${e[3]}`;
    out.push(reply);
  }
  return out;
}
