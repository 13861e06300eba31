// Turns the backend's byte stream into SMTP replies (RFC 5321 4.2): `NNN-text` continuation lines and
// a final `NNN text` line, the same three-digit code on every line. Lines are kept exactly so the
// proxy can relay them verbatim (bytes that are not UTF-8 included, see wire-text.ts; control bytes
// too: what reaches a client is the proxy's call); anything else is a protocol error.
import type { Reply } from './types.js';
import { decodeWire } from './wire-text.js';

/** RFC 5321 4.5.3.1.5 allows 512 octets a reply line; be generous, but never buffer without bound. */
const MAX_LINE = 8192;
const MAX_LINES = 512;
const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const DASH = 0x2d;
const DOT = 0x2e;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)/;
const EMPTY = Buffer.alloc(0);

export class ReplyParseError extends Error {}

// Lines are checked byte by byte in place (no regex, no slice per line): this runs for every reply
// of every message.
export class ReplyParser {
  private partial: Buffer = EMPTY;
  private lines: string[] = [];
  private code = 0;

  /** Returns the replies completed by `chunk`, in order; throws ReplyParseError on garbage. */
  push(chunk: Buffer): Reply[] {
    const out: Reply[] = [];
    const buf = this.partial.length > 0 ? Buffer.concat([this.partial, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const lf = buf.indexOf(LF, start);
      if (lf < 0) break;
      const end = lf > start && buf[lf - 1] === CR ? lf - 1 : lf;
      const reply = this.line(buf, start, end);
      if (reply) out.push(reply);
      start = lf + 1;
    }
    const rest = buf.length - start;
    if (rest > MAX_LINE) throw new ReplyParseError(`reply line longer than ${MAX_LINE} bytes`);
    // Copy the tail so the (possibly large) chunk it came from is not kept alive.
    this.partial = rest === 0 ? EMPTY : Buffer.from(buf.subarray(start));
    return out;
  }

  /** Drops everything buffered (RFC 3207 4.2: nothing read before the TLS handshake survives it). */
  reset(): void {
    this.partial = EMPTY;
    this.lines = [];
    this.code = 0;
  }

  get pending(): boolean {
    return this.partial.length > 0 || this.lines.length > 0;
  }

  /** The line `buf[start, end)`: `NNN`, `NNN text` or `NNN-text` with NNN from 200 to 599. */
  private line(buf: Buffer, start: number, end: number): Reply | undefined {
    const n = end - start;
    if (n > MAX_LINE) throw new ReplyParseError(`reply line longer than ${MAX_LINE} bytes`);
    if (n < 3) garbage(buf, start, end);
    const c0 = buf[start]!;
    const c1 = buf[start + 1]!;
    const c2 = buf[start + 2]!;
    const sep = n > 3 ? buf[start + 3]! : SP;
    if (c0 < 0x32 || c0 > 0x35 || !isDigit(c1) || !isDigit(c2) || (sep !== SP && sep !== DASH)) {
      garbage(buf, start, end);
    }
    // The three digits and the separator are ASCII: the text after them decodes on its own.
    const text = n > 4 ? decodeWire(buf, start + 4, end) : '';
    const code = (c0 - 0x30) * 100 + (c1 - 0x30) * 10 + (c2 - 0x30);
    if (this.lines.length > 0 && code !== this.code) {
      throw new ReplyParseError(`reply code changed from ${this.code} to ${code} within one reply`);
    }
    this.code = code;
    this.lines.push(text);
    if (sep === DASH) {
      if (this.lines.length >= MAX_LINES) throw new ReplyParseError(`reply longer than ${MAX_LINES} lines`);
      return undefined;
    }
    const lines = this.lines;
    this.lines = [];
    const reply: Reply = { code, lines };
    const first = lines[0]!;
    // RFC 3463 2: the class of the enhanced code matches the class of the reply code.
    if (first.charCodeAt(0) === c0 && first.charCodeAt(1) === DOT) {
      const e = ENHANCED.exec(first);
      if (e) reply.enhanced = `${e[1]}.${e[2]}.${e[3]}`;
    }
    return reply;
  }
}

function garbage(buf: Buffer, start: number, end: number): never {
  const text = buf.toString('utf8', start, end);
  throw new ReplyParseError(`not an SMTP reply line: ${JSON.stringify(text.slice(0, 80))}`);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
