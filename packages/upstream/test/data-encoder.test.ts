// The DATA encoder against a byte-by-byte reference, over every way of cutting small inputs into
// chunks and over random inputs: chunk boundaries must never change what the backend receives, and
// nothing in the output may end the message before its own final dot.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DataEncoder, MAX_CONTENT_LINE } from '../src/data-encoder.js';

type Mode = 'normalize' | 'reject';
type Nul = 'reject' | 'strip';

/** The obvious per-byte definition: drop or refuse NUL, fix newlines, stuff dots, terminate. */
function reference(raw: Buffer, mode: Mode, nul: Nul = 'reject'): Buffer | 'bare-newline' | 'nul' {
  if (raw.includes(0) && nul === 'reject') return 'nul';
  const input = Buffer.from([...raw].filter((b) => b !== 0));
  const norm: number[] = [];
  for (let i = 0; i < input.length; i++) {
    const b = input[i]!;
    if (b === 13 && input[i + 1] === 10) {
      norm.push(13, 10);
      i++;
    } else if (b === 13 || b === 10) {
      if (mode === 'reject') return 'bare-newline';
      norm.push(13, 10);
    } else norm.push(b);
  }
  const out: number[] = [];
  let lineStart = true;
  for (let i = 0; i < norm.length; i++) {
    if (lineStart && norm[i] === 46) out.push(46);
    out.push(norm[i]!);
    lineStart = norm[i] === 10;
  }
  if (out.length > 0 && !lineStart) out.push(13, 10);
  out.push(46, 13, 10);
  return Buffer.from(out);
}

function encode(
  chunks: Buffer[],
  mode: Mode,
  maxBytes?: number,
  nul: Nul = 'reject',
  longLines: 'reject' | 'pass' = 'reject',
): Buffer | string {
  const enc = new DataEncoder({ bareNewlines: mode, nulBytes: nul, maxBytes, longLines });
  const out: Buffer[] = [];
  for (const c of chunks) {
    const r = enc.encode(c);
    if (!Buffer.isBuffer(r)) return r.abort;
    out.push(r);
  }
  const end = enc.finish();
  if (!Buffer.isBuffer(end)) return end.abort;
  out.push(end);
  return Buffer.concat(out);
}

/** Where a strict server (CRLF.CRLF, or `.` CRLF first) would see the end of the message. */
function endOfData(wire: Buffer): number {
  if (wire.subarray(0, 3).toString() === '.\r\n') return 3;
  const i = wire.indexOf('\r\n.\r\n');
  return i < 0 ? -1 : i + 5;
}

function splits(input: Buffer): Buffer[][] {
  const out: Buffer[][] = [[input]];
  for (let i = 0; i <= input.length; i++) {
    for (let j = i; j <= input.length; j++) {
      out.push([input.subarray(0, i), input.subarray(i, j), input.subarray(j)]);
    }
  }
  out.push([...input].map((b) => Buffer.from([b])));
  return out;
}

/** Under reject for both, a body with a NUL and a bare newline is refused for whichever the encoder met first. */
function assertSame(got: Buffer | string, want: Buffer | string, what: string): void {
  if (typeof got === 'string' && typeof want === 'string' && got !== want) {
    assert.deepEqual([got, want].sort(), ['bare-newline', 'nul'], what);
  } else assert.deepEqual(got, want, what);
}

const samples = [
  '',
  '.',
  '..',
  '.\r\n',
  '.x\r\n..\r\n.\r\n',
  'a\r\n.\r\nb',
  'a\n.\nb',
  'a\r.\rb',
  '\r\n.\r\n',
  '\r\r\n\n.',
  'line\r',
  'x\r\n\r\n.',
  '\n',
  '\r',
  'abc',
  '\x00',
  '\r\n\x00.\r\n',
  '\n\x00.\n',
  '\r\x00.\r',
  '\x00.\r\n',
  '\r\n\x00\x00.\r\n',
  '\r\x00\n.\r\n',
];

describe('DataEncoder', () => {
  for (const mode of ['normalize', 'reject'] as const) {
    for (const nul of ['reject', 'strip'] as const) {
      it(`matches the reference for every chunking of the samples (${mode}, NUL ${nul})`, () => {
        for (const s of samples) {
          const input = Buffer.from(s, 'latin1');
          const want = reference(input, mode, nul);
          for (const chunks of splits(input)) {
            const got = encode(chunks, mode, undefined, nul);
            assertSame(got, want, `${JSON.stringify(s)} cut as ${JSON.stringify(chunks.map(String))}`);
          }
        }
      });
    }
  }

  it('matches the reference on random inputs cut at random, and never ends the message early', () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const alphabet = [46, 13, 10, 97, 0xe9, 0];
    for (let t = 0; t < 3000; t++) {
      const input = Buffer.from(Array.from({ length: rnd(24) }, () => alphabet[rnd(alphabet.length)]!));
      const chunks: Buffer[] = [];
      for (let i = 0; i < input.length; ) {
        const n = 1 + rnd(5);
        chunks.push(input.subarray(i, i + n));
        i += n;
      }
      for (const mode of ['normalize', 'reject'] as const) {
        for (const nul of ['reject', 'strip'] as const) {
          const want = reference(input, mode, nul);
          const got = encode(chunks, mode, undefined, nul);
          assertSame(got, want, JSON.stringify(input.toString('latin1')));
          if (Buffer.isBuffer(got)) {
            assert.equal(endOfData(got), got.length, 'the only end is the final dot');
            assert.equal(got.indexOf(0), -1, 'no NUL on the wire');
          }
        }
      }
    }
  });

  it('stuffs the first line and the line after a chunk boundary', () => {
    assert.equal(
      String(encode([Buffer.from('.a\r\n'), Buffer.from('.b\r\n')], 'normalize')),
      '..a\r\n..b\r\n.\r\n',
    );
    assert.equal(String(encode([Buffer.from('x\r'), Buffer.from('\n.y')], 'normalize')), 'x\r\n..y\r\n.\r\n');
  });

  it('turns the smuggling sequences into content', () => {
    assert.equal(
      String(encode([Buffer.from('a\n.\nMAIL FROM:<x>\n')], 'normalize')),
      'a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n',
    );
    assert.equal(
      String(encode([Buffer.from('a\r\n.\r'), Buffer.from('\r\n')], 'normalize')),
      'a\r\n..\r\n\r\n.\r\n',
    );
    assert.equal(encode([Buffer.from('a\n.\n')], 'reject'), 'bare-newline');
  });

  it('refuses NUL by default and strips it before stuffing with nulBytes: strip', () => {
    assert.equal(encode([Buffer.from('a\r\n\x00.\r\nMAIL FROM:<x>\r\n')], 'normalize'), 'nul');
    assert.equal(
      String(
        encode(
          [Buffer.from('a\r\n\x00'), Buffer.from('.\r\nMAIL FROM:<x>\r\n')],
          'normalize',
          undefined,
          'strip',
        ),
      ),
      'a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n',
    );
    assert.equal(
      String(encode([Buffer.from('\x00'), Buffer.from('\x00')], 'reject', undefined, 'strip')),
      '.\r\n',
    );
  });

  it('aborts past maxBytes, counting content as given', () => {
    const four = Buffer.from('abcd');
    assert.equal(encode([four, four, four], 'normalize', 10), 'size');
    assert.equal(String(encode([four, Buffer.from('ef\r\n')], 'normalize', 8)), 'abcdef\r\n.\r\n');
    assert.equal(encode([Buffer.from('abcdefgh\r\n'), Buffer.from('x')], 'normalize', 10), 'size');
  });

  it('passes a chunk that needs no change through without copying it', () => {
    const enc = new DataEncoder({ bareNewlines: 'reject' });
    const chunk = Buffer.from('Subject: x\r\n\r\nhello\r\n');
    const out = enc.encode(chunk);
    assert.ok(Buffer.isBuffer(out));
    assert.equal(out.buffer, chunk.buffer);
    assert.equal(out.byteOffset, chunk.byteOffset);
    assert.equal(out.length, chunk.length);
    assert.equal(enc.size, chunk.length);
  });

  it('refuses a line over 998 octets (NUL removed, CRLF and the stuffed dot not counted) wherever the chunks are cut', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const ends = ['\r\n', '\n', '\r', ''];
    for (let t = 0; t < 600; t++) {
      const len = MAX_CONTENT_LINE - 2 + rnd(5); // 996 ... 1000
      const lead = rnd(3) === 0 ? '.' : 'a';
      const line = `${lead}${'x'.repeat(len - 1)}`;
      const withNul = rnd(2) === 0;
      const text = `short\r\n${withNul ? `${line.slice(0, 10)}\x00${line.slice(10)}` : line}${ends[rnd(4)]}next\r\n`;
      const input = Buffer.from(text, 'latin1');
      const cuts: Buffer[] = [];
      for (let i = 0; i < input.length; ) {
        const n = 1 + rnd(rnd(2) === 0 ? 8 : 1200);
        cuts.push(input.subarray(i, i + n));
        i += n;
      }
      const got = encode(cuts, 'normalize', undefined, 'strip');
      const what = `a line of ${len} octets${withNul ? ' and a NUL' : ''}, cut ${cuts.length} times`;
      if (len > MAX_CONTENT_LINE) assert.equal(got, 'long-line', what);
      else {
        assert.ok(Buffer.isBuffer(got), `${what}: ${String(got)}`);
        assert.deepEqual(got, reference(input, 'normalize', 'strip'), what);
      }
      const passed = encode(cuts, 'normalize', undefined, 'strip', 'pass');
      assert.deepEqual(passed, reference(input, 'normalize', 'strip'), `${what}, longLines: pass`);
    }
  });

  it('counts a long line while it is still arriving: a 1 MB line without an end aborts at its 999th octet', () => {
    const enc = new DataEncoder({ bareNewlines: 'normalize' });
    assert.ok(Buffer.isBuffer(enc.encode(Buffer.alloc(MAX_CONTENT_LINE, 0x61))));
    assert.deepEqual(enc.encode(Buffer.from('a')), { abort: 'long-line' });
  });
});
