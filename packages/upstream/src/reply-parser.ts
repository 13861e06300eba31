// Turns the backend's byte stream into SMTP replies (RFC 5321 4.2): `NNN-text` continuation lines and
// a final `NNN text` line, the same three-digit code on every line. Lines are kept exactly so the
// proxy can relay them verbatim; anything else is a protocol error.
import type { Reply } from './types.js';

/** RFC 5321 4.5.3.1.5 allows 512 octets a reply line; be generous, but never buffer without bound. */
const MAX_LINE = 8192;
const MAX_LINES = 512;
const LF = 0x0a;
const CR = 0x0d;
const LINE = /^([2-5]\d\d)(?:([ -])(.*))?$/s;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)/;

export class ReplyParseError extends Error {}

export class ReplyParser {
  private partial: Buffer = Buffer.alloc(0);
  private lines: string[] = [];
  private code = 0;

  /** Returns the replies completed by `chunk`, in order; throws ReplyParseError on garbage. */
  push(chunk: Buffer): Reply[] {
    const out: Reply[] = [];
    let buf = this.partial.length > 0 ? Buffer.concat([this.partial, chunk]) : chunk;
    for (;;) {
      const lf = buf.indexOf(LF);
      if (lf < 0) break;
      const end = lf > 0 && buf[lf - 1] === CR ? lf - 1 : lf;
      const reply = this.line(buf.toString('utf8', 0, end));
      if (reply) out.push(reply);
      buf = buf.subarray(lf + 1);
    }
    if (buf.length > MAX_LINE) throw new ReplyParseError(`reply line longer than ${MAX_LINE} bytes`);
    // Copy the tail so the (possibly large) chunk it came from is not kept alive.
    this.partial = Buffer.from(buf);
    return out;
  }

  /** Drops everything buffered (RFC 3207 4.2: nothing read before the TLS handshake survives it). */
  reset(): void {
    this.partial = Buffer.alloc(0);
    this.lines = [];
    this.code = 0;
  }

  get pending(): boolean {
    return this.partial.length > 0 || this.lines.length > 0;
  }

  private line(text: string): Reply | undefined {
    if (text.length > MAX_LINE) throw new ReplyParseError(`reply line longer than ${MAX_LINE} bytes`);
    const m = LINE.exec(text);
    if (!m) throw new ReplyParseError(`not an SMTP reply line: ${JSON.stringify(text.slice(0, 80))}`);
    const code = Number(m[1]);
    if (this.lines.length > 0 && code !== this.code) {
      throw new ReplyParseError(`reply code changed from ${this.code} to ${code} within one reply`);
    }
    this.code = code;
    this.lines.push(m[3] ?? '');
    if (m[2] === '-') {
      if (this.lines.length >= MAX_LINES) throw new ReplyParseError(`reply longer than ${MAX_LINES} lines`);
      return undefined;
    }
    const lines = this.lines;
    this.lines = [];
    const reply: Reply = { code, lines };
    const e = ENHANCED.exec(lines[0]!);
    // RFC 3463 2: the class of the enhanced code matches the class of the reply code.
    if (e && e[1] === m[1]![0]) reply.enhanced = `${e[1]}.${e[2]}.${e[3]}`;
    return reply;
  }
}
