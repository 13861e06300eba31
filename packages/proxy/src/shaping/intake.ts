// What a client sent before the SMTP session took over its socket: the PROXY header, then anything
// it said before the greeting. Bounded (a client flooding us before the greeting is paused, not
// buffered), and handed back to the socket with unshift() so the SMTP front reads it as if fresh.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** More than a PROXY header and an early command line; past it reading pauses. */
const MAX_BUFFERED = 4096;

export class Intake {
  readonly #socket: Socket | TLSSocket;
  #buf: Buffer = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  #closed = false;
  readonly #onData = (chunk: Buffer) => {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    if (this.#buf.length >= MAX_BUFFERED) this.#socket.pause();
    this.#wake?.();
  };
  readonly #onEnd = () => {
    this.#closed = true;
    this.#wake?.();
  };

  constructor(socket: Socket | TLSSocket) {
    this.#socket = socket;
    socket.on('data', this.#onData);
    socket.once('end', this.#onEnd);
    socket.once('close', this.#onEnd);
    socket.resume();
  }

  get buffered(): Buffer {
    return this.#buf;
  }

  /** The client sent EOF or the connection is gone. */
  get closed(): boolean {
    return this.#closed || this.#socket.destroyed;
  }

  /** Drops the first `n` bytes (a PROXY header that was read). */
  consume(n: number): void {
    this.#buf = this.#buf.subarray(n);
  }

  /** Drops everything (what an early talker said is not replayed). */
  discard(): void {
    this.#buf = Buffer.alloc(0);
  }

  /**
   * Resolves when `done(buffered)` holds ('ok'), after `ms` ('timeout'), or when the client went
   * away ('closed'). `done` is also checked at once.
   */
  wait(ms: number, done: (buf: Buffer) => boolean): Promise<'ok' | 'timeout' | 'closed'> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const check = () => {
        let result: 'ok' | 'closed' | undefined;
        if (done(this.#buf)) result = 'ok';
        else if (this.closed) result = 'closed';
        if (!result) return;
        clearTimeout(timer);
        this.#wake = undefined;
        resolve(result);
      };
      this.#wake = check;
      timer = setTimeout(() => {
        this.#wake = undefined;
        resolve('timeout');
      }, ms);
      check();
    });
  }

  /** Stops watching; what is buffered goes back into the socket for the next reader. */
  release(): void {
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.off('close', this.#onEnd);
    this.#socket.pause();
    if (this.#buf.length > 0) this.#socket.unshift(this.#buf);
    this.#buf = Buffer.alloc(0);
  }
}
