// The header section of a message, parsed out of the DATA stream for a milter (which gets headers as
// `L name\0value\0` packets, then end of headers, then the body). RFC 5322 2.2: a field is a name of
// printable characters but colon, a colon, a value; lines that start with a space or tab continue it.
// The section ends at the first empty line; a line that is neither a field nor a continuation also
// ends it and starts the body (as Postfix does). Every buffer is bounded.

export interface HeaderField {
  name: string;
  /** Everything after the colon, as written (leading space included), continuation lines joined by CRLF. */
  value: string;
}

export interface SplitResult {
  /** Fields completed by this chunk, in order. */
  fields: HeaderField[];
  /** True once, in the result that ends the header section. */
  eoh: boolean;
  /** Body bytes of this chunk (after the end of the header section). */
  body: Buffer[];
}

const FIELD = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)$/s;
const LF = 0x0a;

export class HeaderSplitter {
  #inHeaders = true;
  #buf: Buffer = Buffer.alloc(0);
  #current: HeaderField | undefined;
  #fields = 0;
  #sectionBytes = 0;
  readonly #maxLine: number;
  readonly #maxFields: number;
  readonly #maxSection: number;

  constructor(limits: { maxLine?: number; maxFields?: number; maxSection?: number } = {}) {
    this.#maxLine = limits.maxLine ?? 64 * 1024;
    this.#maxFields = limits.maxFields ?? 2000;
    this.#maxSection = limits.maxSection ?? 1024 * 1024;
  }

  get inHeaders(): boolean {
    return this.#inHeaders;
  }

  push(chunk: Buffer): SplitResult {
    const res: SplitResult = { fields: [], eoh: false, body: [] };
    if (!this.#inHeaders) {
      if (chunk.length > 0) res.body.push(chunk);
      return res;
    }
    const buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    let start = 0;
    for (;;) {
      const lf = buf.indexOf(LF, start);
      if (lf < 0) break;
      const line = lineText(buf, start, lf);
      const next = lf + 1;
      if (line === '') {
        this.#endHeaders(res);
        if (next < buf.length) res.body.push(buf.subarray(next));
        return res;
      }
      if (!this.#line(line, res)) {
        this.#endHeaders(res);
        res.body.push(buf.subarray(start));
        return res;
      }
      this.#sectionBytes += next - start;
      start = next;
      if (this.#sectionBytes > this.#maxSection || this.#fields > this.#maxFields) {
        // A header section this large is not one a scanner should parse: the rest goes as body.
        this.#endHeaders(res);
        if (start < buf.length) res.body.push(buf.subarray(start));
        return res;
      }
    }
    const rest = buf.subarray(start);
    if (rest.length > this.#maxLine) {
      this.#endHeaders(res);
      res.body.push(rest);
      return res;
    }
    this.#buf = Buffer.from(rest);
    return res;
  }

  /** The end of the message: a last unterminated line and the end of headers if still in them. */
  end(): SplitResult {
    const res: SplitResult = { fields: [], eoh: false, body: [] };
    if (!this.#inHeaders) return res;
    const rest = this.#buf;
    if (rest.length > 0) {
      const line = lineText(rest, 0, rest.length);
      if (!this.#line(line, res)) {
        this.#endHeaders(res);
        res.body.push(rest);
        return res;
      }
    }
    this.#endHeaders(res);
    return res;
  }

  /** One header line; false when it is no header line at all. */
  #line(line: string, res: SplitResult): boolean {
    if ((line[0] === ' ' || line[0] === '\t') && this.#current) {
      this.#current.value += `\r\n${line}`;
      return true;
    }
    const m = FIELD.exec(line);
    if (!m) return false;
    if (this.#current) res.fields.push(this.#current);
    this.#current = { name: m[1]!, value: m[2]! };
    this.#fields++;
    return true;
  }

  #endHeaders(res: SplitResult): void {
    if (this.#current) res.fields.push(this.#current);
    this.#current = undefined;
    this.#inHeaders = false;
    this.#buf = Buffer.alloc(0);
    res.eoh = true;
  }
}

function lineText(buf: Buffer, start: number, lf: number): string {
  const end = lf > start && buf[lf - 1] === 0x0d ? lf - 1 : lf;
  return buf.toString('utf8', start, end);
}
