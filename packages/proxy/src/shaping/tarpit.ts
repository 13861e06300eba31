// The tarpit: a suspect session has every reply held for a while, by timers, never by blocking the
// event loop. TarpitSocket sits between the client's socket and the SMTP front; each reply is written
// `delay` after the front wrote it, in order, and while one is held the stream reports that it
// needs a drain, so the front reads the client's next command only after the reply went out
// (pipelining gains nothing). Tarpit counts the sessions of a node against a cap (and the gauge).

import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Gauge } from 'prom-client';

export interface TarpitTicket {
  readonly reason: string;
  /** Idempotent. */
  leave(): void;
}

export class Tarpit {
  #active = 0;
  readonly #gauge: Gauge;
  readonly #sockets = new Set<TarpitSocket>();

  constructor(gauge: Gauge) {
    this.#gauge = gauge;
  }

  get active(): number {
    return this.#active;
  }

  /** A place in the tarpit, or undefined when `max` sessions are in it already. */
  enter(reason: string, max: number): TarpitTicket | undefined {
    if (this.#active >= max) return undefined;
    this.#active++;
    this.#gauge.inc();
    let left = false;
    return {
      reason,
      leave: () => {
        if (left) return;
        left = true;
        this.#active--;
        this.#gauge.dec();
      },
    };
  }

  /** Wraps `socket`; the wrapper is what the SMTP front gets. */
  wrap(socket: Socket | TLSSocket, delayMs: number): TarpitSocket {
    const t = new TarpitSocket(socket, delayMs);
    this.#sockets.add(t);
    // On the socket underneath: the front stops listening to the wrapper at STARTTLS.
    socket.once('close', () => this.#sockets.delete(t));
    return t;
  }

  /** Drain: whatever is held goes out now, and later writes are not delayed. */
  hurryAll(): void {
    for (const t of this.#sockets) t.hurry();
  }
}

interface Held {
  chunk: Buffer;
  due: number;
  done: (err?: Error | null) => void;
}

export class TarpitSocket extends Duplex {
  readonly #socket: Socket | TLSSocket;
  #delay: number;
  #held: Held[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(socket: Socket | TLSSocket, delayMs: number) {
    // A high-water mark of one byte: any reply held makes write() return false (needs a drain).
    super({ writableHighWaterMark: 1, allowHalfOpen: true });
    this.#socket = socket;
    this.#delay = delayMs;
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    socket.on('timeout', () => this.emit('timeout'));
  }

  // The parts of net.Socket the front (and TLSSocket at STARTTLS) use.
  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.#socket.remotePort;
  }
  get localAddress(): string | undefined {
    return this.#socket.localAddress;
  }
  get localPort(): number | undefined {
    return this.#socket.localPort;
  }
  get readyState(): string {
    return this.destroyed ? 'closed' : this.#socket.readyState;
  }
  get servername(): string | false | null | undefined {
    return (this.#socket as TLSSocket).servername;
  }
  get encrypted(): boolean {
    return (this.#socket as TLSSocket).encrypted === true;
  }
  getCipher(): ReturnType<TLSSocket['getCipher']> | undefined {
    return (this.#socket as TLSSocket).getCipher?.();
  }
  setTimeout(ms: number, callback?: () => void): this {
    this.#socket.setTimeout(ms);
    if (callback) {
      if (ms === 0) this.removeListener('timeout', callback);
      else this.once('timeout', callback);
    }
    return this;
  }
  setNoDelay(noDelay?: boolean): this {
    this.#socket.setNoDelay(noDelay);
    return this;
  }
  setKeepAlive(enable?: boolean, delay?: number): this {
    this.#socket.setKeepAlive(enable, delay);
    return this;
  }

  /** Writes what is held now and stops delaying (drain, shutdown). */
  hurry(): void {
    this.#delay = 0;
    for (const h of this.#held) h.due = 0;
    this.#flush();
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    // In order: a reply is never due before the one held ahead of it.
    const last = this.#held[this.#held.length - 1];
    const due = Math.max(Date.now() + this.#delay, last?.due ?? 0);
    this.#held.push({ chunk, due, done });
    this.#arm();
  }

  /** Writes queued while one was held (a TLS flight) wait once, together. */
  override _writev(
    chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>,
    done: (err?: Error | null) => void,
  ): void {
    this._write(Buffer.concat(chunks.map((c) => c.chunk)), 'latin1', done);
  }

  override _final(done: (err?: Error | null) => void): void {
    // Every write has gone out by now (Writable calls _final after them): close our side.
    this.#socket.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#held = [];
    this.#socket.destroy();
    done(err);
  }

  #arm(): void {
    if (this.#timer || this.#held.length === 0) return;
    const wait = Math.max(0, this.#held[0]!.due - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, wait);
  }

  #flush(): void {
    const now = Date.now();
    while (this.#held.length > 0 && this.#held[0]!.due <= now) {
      const h = this.#held.shift()!;
      if (this.#socket.destroyed) {
        h.done(new Error('socket closed'));
        return;
      }
      this.#socket.write(h.chunk);
      h.done();
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#arm();
  }
}
