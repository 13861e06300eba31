// Text that keeps every byte: any bytes decode to a string that encodes back to the same bytes, valid
// UTF-8 decodes exactly as Node does, and only bytes that are not UTF-8 are marked as raw.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeWire, encodeWire, hasRawBytes } from '../src/wire-text.js';

const RUNS = { seed: 1111, numRuns: 3000 };
const toBytes = (w: string | Buffer) => (typeof w === 'string' ? Buffer.from(w, 'utf8') : w);
// Bytes biased towards what breaks decoders: lead bytes, continuation bytes, surrogate and overlong forms.
const tricky = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        0x80,
        0xbf,
        0xc0,
        0xc1,
        0xc2,
        0xdf,
        0xe0,
        0xed,
        0xef,
        0xf0,
        0xf4,
        0xf5,
        0xff,
        0xa0,
        0x9f,
      ),
      fc.integer({ min: 0, max: 255 }),
    ),
    { maxLength: 48 },
  )
  .map((a) => Buffer.from(a));

describe('wire text', () => {
  it('any bytes: decode then encode gives the same bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), tricky), (bytes) => {
        const b = Buffer.from(bytes);
        assert.deepEqual(toBytes(encodeWire(decodeWire(b))), b);
        assert.equal(hasRawBytes(decodeWire(b)), !Buffer.from(decodeWire(b), 'utf8').equals(b));
      }),
      RUNS,
    );
  });

  it('valid UTF-8 decodes as toString does and has no raw bytes (U+FFFD and astral characters included)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (s) => {
        const b = Buffer.from(s, 'utf8');
        assert.equal(decodeWire(b), b.toString('utf8'));
        assert.equal(hasRawBytes(decodeWire(b)), false);
        assert.equal(encodeWire(decodeWire(b)), decodeWire(b), 'no copy for plain text');
      }),
      RUNS,
    );
    assert.equal(decodeWire(Buffer.from('a\ufffdb💀')), 'a\ufffdb💀');
  });

  it('marks exactly the bytes that are not UTF-8, and a sub-range decodes on its own', () => {
    assert.equal(decodeWire(Buffer.from([0x61, 0xff, 0xc3, 0xa9, 0xc3])), 'a\udcffé\udcc3');
    assert.equal(
      decodeWire(Buffer.from([0xed, 0xa0, 0x80])),
      '\udced\udca0\udc80',
      'a surrogate in UTF-8 form',
    );
    assert.equal(decodeWire(Buffer.from([0xc0, 0xaf])), '\udcc0\udcaf', 'an overlong /');
    assert.equal(decodeWire(Buffer.from('xx\xffyy', 'latin1'), 1, 4), 'x\udcffy');
  });
});
