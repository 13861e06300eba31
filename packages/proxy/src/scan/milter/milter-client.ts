// The MTA side of one milter connection: connect, option negotiation (version 6), then commands one
// at a time, each answered (unless the milter asked for no reply to that step) by one final reply;
// `p` (progress) only extends the wait, and modification requests before the final reply of end of
// body are collected. Every wait has a deadline; any failure destroys the connection.
import net from 'node:net';
import { ScanError } from '../scanner.js';
import {
  ACTIONS_ALL,
  MILTER_VERSION,
  MilterProtocolError,
  MODIFICATIONS,
  type Negotiated,
  optneg,
  type Packet,
  PacketDecoder,
  PROTO_ALL,
  parseOptneg,
  Rep,
} from './packets.js';

/** A final reply to a command. */
export interface MilterAnswer {
  code: string;
  data: Buffer;
  /** Modification requests that came before it (only at end of body). */
  modifications: string[];
}

interface Waiting {
  resolve(a: MilterAnswer): void;
  reject(e: Error): void;
  modifications: string[];
  timer: NodeJS.Timeout;
  ms: number;
}

export interface MilterClientOptions {
  host: string;
  port: number;
  /** Connect and each reply. */
  timeout: number;
}

export class MilterConnection {
  readonly #socket: net.Socket;
  readonly #decoder = new PacketDecoder();
  #waiting: Waiting | undefined;
  #error: Error | undefined;
  #negotiated: Negotiated = { version: 0, actions: 0, protocol: 0 };
  readonly #timeout: number;

  private constructor(socket: net.Socket, timeout: number) {
    this.#socket = socket;
    this.#timeout = timeout;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) =>
      this.#fail(new ScanError('ECLOSED', `milter connection failed: ${err.message}`)),
    );
    socket.on('close', () => this.#fail(new ScanError('ECLOSED', 'milter closed the connection')));
  }

  /** Connects and negotiates; the milter's flags are in `negotiated`. */
  static async open(opts: MilterClientOptions): Promise<MilterConnection> {
    const socket = net.connect({ host: opts.host, port: opts.port });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ScanError('ETIMEOUT', `milter connect to ${opts.host}:${opts.port} timed out`));
      }, opts.timeout);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(
          new ScanError('ECONNECT', `cannot connect to milter ${opts.host}:${opts.port}: ${err.message}`),
        );
      });
    });
    const conn = new MilterConnection(socket, opts.timeout);
    try {
      const answer = await conn.#request(optneg(MILTER_VERSION, ACTIONS_ALL, PROTO_ALL), true);
      const n = parseOptneg({ code: answer.code, data: answer.data });
      if (n.version < 2 || n.version > MILTER_VERSION)
        throw new ScanError('EPROTOCOL', `milter speaks version ${n.version}, we speak ${MILTER_VERSION}`);
      // It may ask only for what we offered.
      conn.#negotiated = {
        version: n.version,
        actions: n.actions & ACTIONS_ALL,
        protocol: n.protocol & PROTO_ALL,
      };
    } catch (err) {
      conn.destroy();
      throw err instanceof MilterProtocolError ? new ScanError('EPROTOCOL', err.message) : err;
    }
    return conn;
  }

  get negotiated(): Negotiated {
    return this.#negotiated;
  }

  get closed(): boolean {
    return this.#error !== undefined;
  }

  /** Whether the milter asked us to leave out a step, or not to wait for its reply. */
  has(flag: number): boolean {
    return (this.#negotiated.protocol & flag) !== 0;
  }

  /** Sends `packet`; with `reply`, resolves with the milter's final answer to it. */
  request(packet: Buffer, reply: boolean): Promise<MilterAnswer | undefined> {
    return reply ? this.#request(packet, false) : this.#send(packet);
  }

  /** A command without a reply (macros, abort, quit): resolves once the socket has taken it. */
  #send(packet: Buffer): Promise<undefined> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      if (this.#socket.write(packet)) resolve(undefined);
      else {
        const done = () => {
          this.#socket.off('close', done);
          this.#socket.off('drain', done);
          if (this.#error) reject(this.#error);
          else resolve(undefined);
        };
        this.#socket.once('drain', done);
        this.#socket.once('close', done);
      }
    });
  }

  #request(packet: Buffer, optnegReply: boolean): Promise<MilterAnswer> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#waiting) return Promise.reject(new Error('milter: a command is already waiting for its reply'));
    return new Promise((resolve, reject) => {
      const ms = this.#timeout;
      const w: Waiting = {
        resolve,
        reject,
        modifications: [],
        ms,
        timer: setTimeout(() => this.#fail(new ScanError('ETIMEOUT', `no milter reply within ${ms} ms`)), ms),
      };
      this.#waiting = w;
      this.#optneg = optnegReply;
      this.#socket.write(packet);
    });
  }

  #optneg = false;

  #onData(chunk: Buffer): void {
    let packets: Packet[];
    try {
      packets = this.#decoder.push(chunk);
    } catch (err) {
      this.#fail(new ScanError('EPROTOCOL', (err as Error).message));
      return;
    }
    for (const p of packets) {
      if (this.#error) return;
      this.#packet(p);
    }
  }

  #packet(p: Packet): void {
    const w = this.#waiting;
    if (!w) {
      this.#fail(new ScanError('EPROTOCOL', `unsolicited milter packet '${printable(p.code)}'`));
      return;
    }
    if (this.#optneg) {
      this.#settle(w, { code: p.code, data: p.data, modifications: [] });
      return;
    }
    if (p.code === Rep.progress) {
      clearTimeout(w.timer);
      w.timer = setTimeout(
        () => this.#fail(new ScanError('ETIMEOUT', `no milter reply within ${w.ms} ms`)),
        w.ms,
      );
      return;
    }
    if (MODIFICATIONS.has(p.code)) {
      w.modifications.push(p.code);
      return;
    }
    switch (p.code) {
      case Rep.accept:
      case Rep.continue:
      case Rep.reject:
      case Rep.tempfail:
      case Rep.discard:
      case Rep.replyCode:
      case Rep.skip:
      case Rep.connectionFail:
      case Rep.shutdown:
        this.#settle(w, { code: p.code, data: p.data, modifications: w.modifications });
        return;
      default:
        this.#fail(new ScanError('EPROTOCOL', `unknown milter reply '${printable(p.code)}'`));
    }
  }

  #settle(w: Waiting, a: MilterAnswer): void {
    clearTimeout(w.timer);
    this.#waiting = undefined;
    w.resolve(a);
  }

  #fail(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    const w = this.#waiting;
    this.#waiting = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.#socket.destroy();
  }

  destroy(): void {
    this.#fail(new ScanError('EABORTED', 'milter connection closed by us'));
  }
}

function printable(code: string): string {
  return /^[\x21-\x7e]$/.test(code) ? code : `0x${code.charCodeAt(0).toString(16)}`;
}
