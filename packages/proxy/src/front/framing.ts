// The SMTP front's byte framing, apart from what the commands mean (smtp-server keeps smtp-stream.js
// beside smtp-connection.js for the same reason): command lines cut at LF under a cap, and DATA
// content un-stuffed up to the CRLF.CRLF that ends it, streamed to the session at the client's
// pace (a body the session does not read pauses the client's socket).
import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';
import { decodeWire } from '@smtp-lb/upstream';

/** RFC 5321 4.5.3.1.4 says 512; smtp-server allowed 16 KiB (long ORCPT/ENVID); so do we. */
export const MAX_LINE = 16 * 1024;
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const EMPTY = Buffer.alloc(0);

/** What `CommandLines.next()` says of a line longer than MAX_LINE. */
export const TOO_LONG = Symbol('line too long');

/** Command input: lines end at LF (a CR before it is dropped), each at most MAX_LINE bytes. */
export class CommandLines {
  #buf: Buffer = EMPTY;

  /** Bytes waiting to be taken as lines. */
  get size(): number {
    return this.#buf.length;
  }

  push(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
  }

  /**
   * The next complete line (without its line end), undefined until one is complete. UTF-8, every byte
   * kept: a byte that is not UTF-8 stays recognisable (hasRawBytes) instead of becoming U+FFFD.
   */
  next(): string | undefined | typeof TOO_LONG {
    const buf = this.#buf;
    const lf = buf.indexOf(LF);
    if (lf < 0) return buf.length > MAX_LINE ? TOO_LONG : undefined;
    if (lf > MAX_LINE) return TOO_LONG;
    const end = lf > 0 && buf[lf - 1] === CR ? lf - 1 : lf;
    const text = decodeWire(buf, 0, end);
    this.#buf = lf + 1 === buf.length ? EMPTY : buf.subarray(lf + 1);
    return text;
  }

  /** Everything not taken as lines yet (the first bytes of DATA content); empties the buffer. */
  take(): Buffer {
    const rest = this.#buf;
    this.#buf = EMPTY;
    return rest;
  }

  /** Forgets what is buffered (STARTTLS: RFC 3207 4.2; the session's end). */
  clear(): void {
    this.#buf = EMPTY;
  }
}

/**
 * DATA content of one message at a time: un-stuffs a dot that starts a line (after any LF, as
 * smtp-server did) and ends at CRLF.CRLF only (a dot line after a bare LF or CR is content); what
 * follows the final dot is the next command. Bare CR/LF and NUL pass as content for the upstream
 * encoder to normalise, strip or reject.
 */
export class DotReader {
  #body: Readable | undefined;
  #socket: Duplex | undefined;
  #ended = false;
  /** The reader is done early: content is dropped until the final dot. */
  #dropping = false;
  /** A dot at a line start whose meaning needs the next bytes. */
  #tail: Buffer = EMPTY;
  #atLineStart = true;
  /** The line that just ended ended with CRLF (data start counts as one). */
  #afterCRLF = true;
  /** The last content byte seen was a CR (for an LF at the start of the next chunk). */
  #lastCR = false;

  /** A message is being read and its final dot has not come yet. */
  get reading(): boolean {
    return this.#body !== undefined && !this.#ended;
  }

  /** A new message from `socket`: the body the session reads (its read() resumes the socket). */
  begin(socket: Duplex): Readable {
    const body = new Readable({ read: () => socket.resume() });
    this.#body = body;
    this.#socket = socket;
    this.#ended = false;
    this.#dropping = false;
    this.#tail = EMPTY;
    this.#atLineStart = true;
    this.#afterCRLF = true;
    this.#lastCR = false;
    return body;
  }

  /** Content bytes; returns what follows the final dot once it came (the next commands), else undefined. */
  feed(input: Buffer): Buffer | undefined {
    const chunk = this.#tail.length > 0 ? Buffer.concat([this.#tail, input]) : input;
    this.#tail = EMPTY;
    const n = chunk.length;
    let start = 0;
    let i = 0;
    for (;;) {
      if (this.#atLineStart) {
        if (i >= n) break;
        if (chunk[i] === DOT) {
          if (n - i < 3) {
            // ".\r\n" or not: decided when more bytes are in.
            if (i > start) this.#push(chunk.subarray(start, i));
            this.#tail = chunk.subarray(i);
            return undefined;
          }
          if (this.#afterCRLF && chunk[i + 1] === CR && chunk[i + 2] === LF) {
            if (i > start) this.#push(chunk.subarray(start, i));
            this.#ended = true;
            this.#body?.push(null);
            return chunk.subarray(i + 3);
          }
          if (chunk[i + 1] === DOT) {
            if (i > start) this.#push(chunk.subarray(start, i));
            start = i + 1;
          }
        }
        this.#atLineStart = false;
      }
      const lf = chunk.indexOf(LF, i);
      if (lf < 0) break;
      this.#afterCRLF = lf > 0 ? chunk[lf - 1] === CR : this.#lastCR;
      this.#atLineStart = true;
      i = lf + 1;
    }
    if (start < n) this.#push(chunk.subarray(start));
    if (n > 0) this.#lastCR = chunk[n - 1] === CR;
    return undefined;
  }

  /** The session stopped reading (it answered before the final dot): the rest is dropped. */
  drop(): void {
    this.#dropping = true;
    this.#body?.removeAllListeners('data');
    this.#body?.resume();
  }

  /** The message is over (its reply is out). */
  finish(): void {
    this.#body = undefined;
    this.#socket = undefined;
  }

  /** The client or the session went before the final dot: the body fails with `reason`. */
  fail(reason: string): void {
    if (this.reading) this.#body?.destroy(new Error(reason));
  }

  #push(part: Buffer): void {
    if (this.#dropping) return;
    // Backpressure: a body the session does not read stops the client's socket.
    if (!this.#body!.push(part)) this.#socket?.pause();
  }
}
