// Our latency load generator: plain sockets, one SMTP command at a time (no pipelining), an open-loop
// schedule at a fixed rate, and the latency of each transaction measured from the moment it was due
// (not from when a connection was free), so a proxy that falls behind shows its queue in the figures.
// Reused connections: a fixed set of sessions, a transaction is MAIL, RCPT, DATA and the message up
// to its 250. New connections: connect, greeting, EHLO and the same transaction up to its 250.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { percentile } from './stats.js';

export interface LatencyLoad {
  port: number;
  /** Transactions per second. */
  rate: number;
  durationMs: number;
  reuse: boolean;
  /** Sessions kept open when `reuse`. */
  connections: number;
  /** Payload bytes per message (headers not counted, as with smtp-source -l). */
  size: number;
  /** New-connection mode: sessions in flight at most; later ones wait (their wait counts). */
  maxInFlight: number;
}

export interface LatencyRun {
  offered: number;
  completed: number;
  failed: number;
  /** Completed transactions per second over the schedule. */
  achievedRate: number;
  p50Ms: number;
  p99Ms: number;
}

const HOST = '127.0.0.1';
/** A transaction still open this long after the schedule ended is counted as failed. */
const DRAIN_MS = 10_000;
const SOCKET_TIMEOUT_MS = 15_000;

export function message(size: number): Buffer {
  const line = `${'x'.repeat(76)}\r\n`;
  let body = '';
  while (body.length + line.length <= size) body += line;
  body += 'x'.repeat(Math.max(0, size - body.length - 2));
  return Buffer.from(
    `From: <sender@lg.bench.test>\r\nTo: <rcpt@sink.bench.test>\r\nSubject: bench\r\n\r\n${body}\r\n.\r\n`,
  );
}

/** One client session that sends a command and waits for its whole (possibly multi-line) reply. */
export class Session {
  readonly #socket: net.Socket;
  #buffer = '';
  #waiting: ((code: number) => void) | undefined;
  #failed: ((err: Error) => void) | undefined;
  #error: Error | undefined;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.setTimeout(SOCKET_TIMEOUT_MS, () => socket.destroy(new Error('session timed out')));
    socket.on('data', (chunk: Buffer) => this.#receive(chunk.toString('latin1')));
    socket.on('error', (err) => this.#fail(err));
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.#fail(new Error('connection closed'));
        resolve();
      }),
    );
  }

  static open(port: number): Promise<Session> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new Session(socket));
      });
    });
  }

  #receive(text: string): void {
    this.#buffer += text;
    for (;;) {
      const end = this.#buffer.indexOf('\r\n');
      if (end < 0) return;
      const line = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 2);
      if (line.length > 3 && line[3] === '-') continue;
      const done = this.#waiting;
      this.#waiting = undefined;
      this.#failed = undefined;
      done?.(Number.parseInt(line.slice(0, 3), 10));
    }
  }

  #fail(err: Error): void {
    this.#error ??= err;
    const failed = this.#failed;
    this.#waiting = undefined;
    this.#failed = undefined;
    failed?.(err);
  }

  /** Writes `data` (when given) and resolves with the code of the next reply. */
  reply(data?: string | Buffer): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiting = resolve;
      this.#failed = reject;
      if (data !== undefined) this.#socket.write(data);
    });
  }

  async expect(code: number, data?: string | Buffer): Promise<void> {
    const got = await this.reply(data);
    if (got !== code) throw new Error(`expected ${code}, got ${got}`);
  }

  /** Idle sessions are held on purpose: no inactivity timeout. */
  keepIdle(): void {
    this.#socket.setTimeout(0);
  }

  quit(): void {
    this.#socket.end('QUIT\r\n');
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

export async function openReady(port: number): Promise<Session> {
  const s = await Session.open(port);
  try {
    await s.expect(220);
    await s.expect(250, 'EHLO lg.bench.test\r\n');
  } catch (err) {
    s.destroy();
    throw err;
  }
  return s;
}

async function transaction(s: Session, body: Buffer): Promise<void> {
  await s.expect(250, 'MAIL FROM:<sender@lg.bench.test>\r\n');
  await s.expect(250, 'RCPT TO:<rcpt@sink.bench.test>\r\n');
  await s.expect(354, 'DATA\r\n');
  await s.expect(250, body);
}

export async function measureLatency(load: LatencyLoad): Promise<LatencyRun> {
  const body = message(load.size);
  const total = Math.max(1, Math.round((load.rate * load.durationMs) / 1000));
  const latencies: number[] = [];
  let failed = 0;
  const due: number[] = [];
  const idle: Session[] = [];
  const all = new Set<Session>();
  let inFlight = 0;

  if (load.reuse) {
    const sessions = await Promise.all(Array.from({ length: load.connections }, () => openReady(load.port)));
    for (const s of sessions) {
      idle.push(s);
      all.add(s);
    }
  }

  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const settle = (dueAt: number, ok: boolean) => {
    if (ok) latencies.push(performance.now() - dueAt);
    else failed++;
    if (latencies.length + failed === total) finish();
  };

  const runReused = (s: Session, dueAt: number) => {
    transaction(s, body).then(
      () => {
        settle(dueAt, true);
        idle.push(s);
        dispatch();
      },
      () => {
        settle(dueAt, false);
        all.delete(s);
        s.destroy();
        // Keep the pool at its size: a broken session is replaced by a new one.
        openReady(load.port).then(
          (fresh) => {
            all.add(fresh);
            idle.push(fresh);
            dispatch();
          },
          () => {},
        );
      },
    );
  };

  const runNew = async (dueAt: number) => {
    inFlight++;
    let s: Session | undefined;
    try {
      s = await openReady(load.port);
      all.add(s);
      await transaction(s, body);
      settle(dueAt, true);
      s.quit();
      await s.closed;
    } catch {
      settle(dueAt, false);
      s?.destroy();
    } finally {
      if (s) all.delete(s);
      inFlight--;
      dispatch();
    }
  };

  function dispatch(): void {
    if (load.reuse) {
      while (due.length > 0 && idle.length > 0) runReused(idle.shift()!, due.shift()!);
    } else {
      while (due.length > 0 && inFlight < load.maxInFlight) void runNew(due.shift()!);
    }
  }

  const start = performance.now();
  const interval = 1000 / load.rate;
  let issued = 0;
  await new Promise<void>((scheduled) => {
    const tick = () => {
      const upTo = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
      while (issued < upTo) due.push(start + issued++ * interval);
      dispatch();
      if (issued < total) setTimeout(tick, 1);
      else scheduled();
    };
    tick();
  });
  const scheduleMs = performance.now() - start;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_MS)))]);
  clearTimeout(timer);
  const elapsed = Math.max(scheduleMs, performance.now() - start);
  for (const s of all) s.destroy();
  const completed = latencies.length;
  return {
    offered: total,
    completed,
    failed: total - completed,
    achievedRate: completed / (elapsed / 1000),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}
