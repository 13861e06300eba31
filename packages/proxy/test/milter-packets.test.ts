// The milter packet decoder and the header splitter, by property (fast-check, seeded, bounded):
// whatever way the bytes are cut, the same packets and the same header fields and body come out;
// garbage gives a protocol error or nothing, never a crash or an unbounded buffer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type HeaderField, HeaderSplitter } from '../src/scan/milter/headers.js';
import {
  encodePacket,
  MilterProtocolError,
  type Packet,
  PacketDecoder,
  parseReplyCode,
} from '../src/scan/milter/packets.js';

const RUNS = { seed: 15, numRuns: 300, interruptAfterTimeLimit: 10_000 };
const T = { timeout: 30_000 };

/** `data` cut at the given (sorted, deduplicated) offsets. */
function cut(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(data.subarray(prev, p));
    prev = p;
  }
  out.push(data.subarray(prev));
  return out;
}

const packet = fc.record({
  code: fc.constantFrom(...'ABCDEHKLMNOQRTUacdehimprsty+-'.split('')),
  data: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
});

test('packets come out whole and in order however the stream is cut', T, () => {
  fc.assert(
    fc.property(
      fc.array(packet, { maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (packets, cuts) => {
        const wire = Buffer.concat(packets.map((p) => encodePacket(p.code, p.data)));
        const d = new PacketDecoder();
        const got: Packet[] = [];
        for (const piece of cut(wire, cuts)) got.push(...d.push(piece));
        assert.equal(d.pending, 0);
        assert.deepEqual(
          got.map((p) => [p.code, p.data.toString('hex')]),
          packets.map((p) => [p.code, p.data.toString('hex')]),
        );
      },
    ),
    RUNS,
  );
});

test('garbage: a protocol error or incomplete packets, never more buffered than the bound', T, () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
      const d = new PacketDecoder(1024);
      try {
        for (const piece of cut(Buffer.from(bytes), cuts)) {
          for (const p of d.push(piece)) assert.ok(p.data.length < 1024);
          assert.ok(d.pending <= 1024 + 4);
        }
      } catch (err) {
        assert.ok(err instanceof MilterProtocolError, String(err));
      }
    }),
    RUNS,
  );
});

test('a length of 0 or above the bound is refused before anything is buffered', T, () => {
  assert.throws(() => new PacketDecoder().push(Buffer.from([0, 0, 0, 0])), MilterProtocolError);
  assert.throws(() => new PacketDecoder(100).push(Buffer.from([0, 0, 0, 101, 0x61])), /101 bytes/);
});

const NAME = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/);
const VALUE = fc.stringMatching(/^[ -~]{0,40}$/).map((v) => v.trimEnd());
const field = fc.record({
  name: NAME,
  value: VALUE,
  continuations: fc.array(fc.stringMatching(/^[ \t][!-~][ -~]{0,20}$/), { maxLength: 2 }),
});

test('header fields, folded lines and the body survive any cutting of the stream', T, () => {
  fc.assert(
    fc.property(
      fc.array(field, { maxLength: 12 }),
      fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
      fc.array(fc.nat(), { maxLength: 20 }),
      (fields, body, cuts) => {
        const head = fields
          .map((f) => [`${f.name}: ${f.value}`, ...f.continuations].join('\r\n'))
          .map((l) => `${l}\r\n`)
          .join('');
        const message = Buffer.concat([Buffer.from(`${head}\r\n`), body]);
        const s = new HeaderSplitter();
        const got: HeaderField[] = [];
        const bodyOut: Buffer[] = [];
        let eohs = 0;
        for (const piece of cut(message, cuts)) {
          const r = s.push(piece);
          got.push(...r.fields);
          bodyOut.push(...r.body);
          if (r.eoh) eohs++;
        }
        const r = s.end();
        got.push(...r.fields);
        bodyOut.push(...r.body);
        if (r.eoh) eohs++;
        assert.equal(eohs, 1);
        assert.deepEqual(
          got,
          fields.map((f) => ({ name: f.name, value: [` ${f.value}`, ...f.continuations].join('\r\n') })),
        );
        assert.equal(Buffer.concat(bodyOut).toString('hex'), body.toString('hex'));
      },
    ),
    RUNS,
  );
});

test('a line that is no header field ends the section and starts the body', T, () => {
  const s = new HeaderSplitter();
  const r = s.push(Buffer.from('Subject: hi\r\nthis is not a header\r\nmore\r\n'));
  assert.deepEqual(r.fields, [{ name: 'Subject', value: ' hi' }]);
  assert.equal(r.eoh, true);
  assert.equal(Buffer.concat(r.body).toString(), 'this is not a header\r\nmore\r\n');
});

test('a header line longer than the bound goes on as body, nothing more is buffered', T, () => {
  const s = new HeaderSplitter({ maxLine: 100 });
  const r = s.push(Buffer.from(`X-Long: ${'a'.repeat(200)}`));
  assert.equal(r.eoh, true);
  assert.equal(Buffer.concat(r.body).length, 208);
  assert.equal(s.inHeaders, false);
});

test('custom replies: 4xx/5xx with their enhanced code, multi-line, or refused', T, () => {
  assert.deepEqual(parseReplyCode(Buffer.from('554 5.7.1 Gtube pattern\0')), {
    code: 554,
    enhanced: '5.7.1',
    lines: ['5.7.1 Gtube pattern'],
  });
  assert.deepEqual(parseReplyCode(Buffer.from('451-4.7.1 a\r\n451 4.7.1 b')), {
    code: 451,
    enhanced: '4.7.1',
    lines: ['4.7.1 a', '4.7.1 b'],
  });
  assert.equal(parseReplyCode(Buffer.from('250 ok')), undefined);
  assert.equal(parseReplyCode(Buffer.from('554 a\r\n451 b')), undefined);
  assert.equal(parseReplyCode(Buffer.from('hello')), undefined);
});

test('custom replies from arbitrary bytes: undefined, or a 4xx/5xx whose lines carry no CR or LF', T, () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
        fc
          .array(fc.tuple(fc.integer({ min: 200, max: 599 }), fc.stringMatching(/^[ -~]{0,30}$/)), {
            minLength: 1,
            maxLength: 4,
          })
          .map((ls) => Buffer.from(`${ls.map(([c, t]) => `${c} ${t}`).join('\r\n')}\0`)),
      ),
      (data) => {
        const r = parseReplyCode(data);
        if (r === undefined) return;
        assert.ok(r.code >= 400 && r.code < 600);
        assert.ok(r.lines.length > 0 && r.lines.every((l) => !/[\r\n]/.test(l)));
      },
    ),
    RUNS,
  );
});
