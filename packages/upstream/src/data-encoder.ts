// Encodes message content for the wire, chunk by chunk with constant state, so DATA can stream with
// backpressure: NUL aborts or is removed first, bare CR/LF become CRLF or abort (RFC 5321 2.3.8), a
// leading dot is doubled (4.5.2), a line longer than 998 octets aborts (unless passed), content is
// counted against a limit, and the end gets CRLF (if missing) and the final `.` line. NUL goes before the rest because several MTAs drop it before they
// look for the end of data: `\r\n\x00.\r\n` must reach them as a stuffed `..` line, never as `.`.
// Lines are scanned with indexOf over whole Buffers; a chunk that needs no change is passed through.

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from('\r\n');
const DOT_BUF = Buffer.from('.');
const END = Buffer.from('.\r\n');
const EMPTY = Buffer.alloc(0);

/**
 * RFC 5322 2.1.1 and RFC 5321 4.5.3.1.6: a line is at most 998 octets before its CRLF (the dot added
 * by stuffing not counted). A backend that reads fixed 1000-byte records cuts a longer line, and a
 * piece that starts with `.` CRLF ends its DATA there: the rest of the line is read as commands.
 */
export const MAX_CONTENT_LINE = 998;

export type EncoderAbort = { abort: 'size' | 'bare-newline' | 'nul' | 'long-line' };

export class DataEncoder {
  private readonly reject: boolean;
  private readonly stripNul: boolean;
  private readonly maxBytes: number;
  private readonly maxLine: number;
  /** Content octets of the line not ended yet, from earlier chunks. */
  private lineLength = 0;
  /** The previous chunk ended with CR: whether it was a line end depends on the next byte. */
  private pendingCR = false;
  /** The next content byte starts a line (true at the start: the first line is stuffed too). */
  private lineStart = true;
  private bytes = 0;

  constructor(opts: {
    bareNewlines: 'normalize' | 'reject';
    /** Default `reject`: a NUL anywhere in the content aborts the transfer. */
    nulBytes?: 'reject' | 'strip' | undefined;
    maxBytes?: number | undefined;
    /** Default `reject`: a line over MAX_CONTENT_LINE octets aborts the transfer; `pass` sends it. */
    longLines?: 'reject' | 'pass' | undefined;
  }) {
    this.reject = opts.bareNewlines === 'reject';
    this.stripNul = opts.nulBytes === 'strip';
    this.maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY;
    this.maxLine = opts.longLines === 'pass' ? Number.POSITIVE_INFINITY : MAX_CONTENT_LINE;
  }

  /** Content bytes seen so far (as given, before encoding). */
  get size(): number {
    return this.bytes;
  }

  /** The wire bytes for `input`, or why the transfer must be aborted (nothing of `input` is sent then). */
  encode(input: Buffer): Buffer | EncoderAbort {
    if (input.length === 0) return EMPTY;
    this.bytes += input.length;
    if (this.bytes > this.maxBytes) return { abort: 'size' };
    let chunk = input;
    if (input.indexOf(0) >= 0) {
      if (!this.stripNul) return { abort: 'nul' };
      chunk = withoutNul(input);
    }
    const n = chunk.length;
    if (n === 0) return EMPTY;
    const out: Buffer[] = [];
    let seg = 0; // start of the pending pass-through segment
    let i = 0;
    let begin = 0; // where the current line's content starts in this chunk
    const max = this.maxLine;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (chunk[0] === LF) i = 1;
      else if (this.reject) return { abort: 'bare-newline' };
      out.push(CRLF);
      seg = begin = i;
      this.lineLength = 0;
      this.lineStart = true;
    }
    let nextCR = chunk.indexOf(CR, i);
    let nextLF = chunk.indexOf(LF, i);
    while (i < n) {
      if (this.lineStart) {
        this.lineStart = false;
        if (chunk[i] === DOT) {
          if (i > seg) out.push(chunk.subarray(seg, i));
          out.push(DOT_BUF);
          seg = i;
        }
      }
      if (nextCR >= 0 && nextCR < i) nextCR = chunk.indexOf(CR, i);
      if (nextLF >= 0 && nextLF < i) nextLF = chunk.indexOf(LF, i);
      if (nextCR < 0 && nextLF < 0) break;
      const p = nextCR >= 0 && (nextLF < 0 || nextCR < nextLF) ? nextCR : nextLF;
      if (this.lineLength + p - begin > max) return { abort: 'long-line' };
      if (p === nextCR) {
        if (p + 1 === n) {
          // Decided by the next chunk: hold the CR back.
          if (p > seg) out.push(chunk.subarray(seg, p));
          this.lineLength += p - begin;
          this.pendingCR = true;
          return join(out);
        }
        if (chunk[p + 1] === LF) {
          i = p + 2;
        } else {
          if (this.reject) return { abort: 'bare-newline' };
          if (p > seg) out.push(chunk.subarray(seg, p));
          out.push(CRLF);
          seg = i = p + 1;
        }
      } else {
        if (this.reject) return { abort: 'bare-newline' };
        if (p > seg) out.push(chunk.subarray(seg, p));
        out.push(CRLF);
        seg = i = p + 1;
      }
      this.lineLength = 0;
      begin = i;
      this.lineStart = true;
    }
    // A line without its end yet counts now: a 10 MB line aborts at its 999th octet, not at its end.
    if (this.lineLength + n - begin > max) return { abort: 'long-line' };
    this.lineLength += n - begin;
    if (seg < n) out.push(chunk.subarray(seg, n));
    return join(out);
  }

  /** The bytes that end the transfer: CRLF when the content did not end with one, then `.` CRLF. */
  finish(): Buffer | EncoderAbort {
    if (this.pendingCR) {
      // A CR as the very last content byte is a bare CR.
      if (this.reject) return { abort: 'bare-newline' };
      return Buffer.concat([CRLF, END]);
    }
    return this.lineStart ? END : Buffer.concat([CRLF, END]);
  }
}

function withoutNul(chunk: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let z = chunk.indexOf(0); z >= 0; z = chunk.indexOf(0, from)) {
    if (z > from) parts.push(chunk.subarray(from, z));
    from = z + 1;
  }
  if (from < chunk.length) parts.push(chunk.subarray(from));
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** A chunk that needed no change goes out as one slice of itself, without a copy. */
function join(out: Buffer[]): Buffer {
  return out.length === 1 ? out[0]! : Buffer.concat(out);
}
