// SMTP text (command lines, reply lines) as JS strings without losing a byte. Valid UTF-8 decodes as
// usual; a byte that is not part of a valid UTF-8 sequence becomes a lone surrogate U+DC80..U+DCFF
// (Python's `surrogateescape`), which no valid UTF-8 decodes to, and encodeWire turns it back into
// that byte. Decoding with toString('utf8') alone would turn such bytes into U+FFFD: the client or
// the backend would get other bytes than were sent, silently.

const ESCAPE = 0xdc00;
/** A lone low surrogate in U+DC80..U+DCFF: an escaped byte (a low surrogate after a high one is half of a pair). */
const ESCAPED = /(?<![\ud800-\udbff])[\udc80-\udcff]/;

/** `buf[start, end)` as text, every byte kept (see above). */
export function decodeWire(buf: Buffer, start = 0, end = buf.length): string {
  const text = buf.toString('utf8', start, end);
  // The common case costs one scan of a short string: no U+FFFD, nothing was replaced.
  if (!text.includes('\ufffd')) return text;
  let out = '';
  let run = start; // start of the pending valid stretch
  let i = start;
  while (i < end) {
    const n = sequenceLength(buf, i, end);
    if (n > 0) {
      i += n;
      continue;
    }
    if (i > run) out += buf.toString('utf8', run, i);
    out += String.fromCharCode(ESCAPE + buf[i]!);
    run = ++i;
  }
  if (end > run) out += buf.toString('utf8', run, end);
  return out;
}

/** True when `text` carries bytes that are not UTF-8 (escaped by decodeWire). */
export function hasRawBytes(text: string): boolean {
  return ESCAPED.test(text);
}

/** The bytes of `text` for the wire: the string itself (written as UTF-8) unless it has escaped bytes. */
export function encodeWire(text: string): string | Buffer {
  if (!ESCAPED.test(text)) return text;
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc80 || c > 0xdcff) continue;
    const prev = i > 0 ? text.charCodeAt(i - 1) : 0;
    if (prev >= 0xd800 && prev <= 0xdbff) continue; // the second half of a pair
    if (i > run) parts.push(Buffer.from(text.slice(run, i), 'utf8'));
    parts.push(Buffer.of(c - ESCAPE));
    run = i + 1;
  }
  if (run < text.length) parts.push(Buffer.from(text.slice(run), 'utf8'));
  return Buffer.concat(parts);
}

/**
 * Length of the well-formed UTF-8 sequence at `i` (Unicode 15, table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when the byte at `i` does not start one.
 */
function sequenceLength(buf: Buffer, i: number, end: number): number {
  const b = buf[i]!;
  if (b < 0x80) return 1;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) n = 2;
  else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    if (b === 0xe0) lo = 0xa0;
    else if (b === 0xed) hi = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    if (b === 0xf0) lo = 0x90;
    else if (b === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + n > end) return 0;
  const second = buf[i + 1]!;
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < n; k++) {
    const c = buf[i + k]!;
    if (c < 0x80 || c > 0xbf) return 0;
  }
  return n;
}
