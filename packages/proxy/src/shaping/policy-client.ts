// A client of Postfix's policy delegation protocol (SMTPD_POLICY_README): a request is `name=value`
// lines and a blank line, the answer `action=...` and a blank line. Connections are kept and reused
// (a few, each carrying one request at a time, as Postfix's smtpd does); a request that gets no
// answer in time, or a broken connection, gives `onError` (fail open by default) and that
// connection is dropped, since its stream can no longer be trusted.
import { connect, type Socket } from 'node:net';
import type { PolicyConfig } from '@smtp-lb/config';
import type { Reply } from '@smtp-lb/upstream';
import type { Logger } from '../logger.js';
import { replies } from '../replies.js';

/** Connections open at once per node; more requests wait for one. */
const MAX_CONNECTIONS = 8;
/** An answer longer than this is not a policy answer. */
const MAX_ANSWER = 8192;

export type PolicyVerdict =
  | { kind: 'continue'; action: string }
  | { kind: 'reply'; action: string; reply: Reply }
  | { kind: 'error'; reason: string };

interface Conn {
  socket: Socket;
  buf: string;
  busy: boolean;
  broken: boolean;
  onAnswer?: (answer: Record<string, string> | Error) => void;
}

/** Values may not carry a line break (it would end the attribute early). */
function clean(v: string): string {
  return v.replace(/[\r\n]/g, ' ');
}

export function encodeRequest(attrs: Record<string, string | number | undefined>): string {
  let out = '';
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) out += `${k}=${clean(String(v))}\n`;
  return `${out}\n`;
}

/** `action` → what the client sees; `context` like "<bob@example.com>: Recipient address rejected". */
export function verdictOf(action: string, context: string): PolicyVerdict {
  const m = /^(\S+)\s*(.*)$/s.exec(action.trim());
  const word = (m?.[1] ?? '').toUpperCase();
  const text = m?.[2] ?? '';
  const make = (code: number, dfltEnhanced: string, t: string, dfltText: string): PolicyVerdict => {
    const e = /^([245]\.\d{1,3}\.\d{1,3})\s+(.*)$/s.exec(t);
    const enhanced = e?.[1] ?? dfltEnhanced;
    const body = (e ? e[2] : t) || dfltText;
    return { kind: 'reply', action, reply: replies.policyRefused(code, enhanced, context, body) };
  };
  if (/^[45]\d\d$/.test(word)) {
    const code = Number(word);
    return make(code, `${word[0]}.7.1`, text, 'Access denied');
  }
  switch (word) {
    case 'REJECT':
      return make(554, '5.7.1', text, 'Access denied');
    case 'DEFER':
    case 'DEFER_IF_PERMIT':
      // DEFER_IF_PERMIT: defer unless a later restriction rejects; the backend's checks come
      // later and cannot turn a deferral into acceptance, so deferring now is what Postfix ends at.
      return make(450, '4.7.1', text, 'Service unavailable');
    default:
      // OK, DUNNO, DEFER_IF_REJECT, PREPEND, WARN, INFO and the queue actions: the backend decides.
      return { kind: 'continue', action };
  }
}

export class PolicyClient {
  readonly #config: PolicyConfig;
  readonly #log: Logger;
  readonly #conns = new Set<Conn>();
  readonly #waiting: Array<(c: Conn | undefined) => void> = [];
  #closed = false;

  constructor(config: PolicyConfig, log: Logger) {
    this.#config = config;
    this.#log = log;
  }

  get config(): PolicyConfig {
    return this.#config;
  }

  /** Asks the policy server; never rejects. */
  async check(attrs: Record<string, string | number | undefined>, context: string): Promise<PolicyVerdict> {
    const deadline = Date.now() + this.#config.timeout;
    let conn: Conn | undefined;
    try {
      conn = await this.#take(deadline);
      if (!conn) return { kind: 'error', reason: 'no connection to the policy server within the timeout' };
      const answer = await this.#ask(conn, encodeRequest(attrs), deadline - Date.now());
      const action = answer.action;
      if (action === undefined) return { kind: 'error', reason: 'answer without an action' };
      return verdictOf(action, context);
    } catch (err) {
      if (conn) conn.broken = true;
      return { kind: 'error', reason: (err as Error).message };
    } finally {
      if (conn) this.#give(conn);
    }
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#conns) c.socket.destroy();
    this.#conns.clear();
    for (const w of this.#waiting.splice(0)) w(undefined);
  }

  async #take(deadline: number): Promise<Conn | undefined> {
    if (this.#closed) return undefined;
    for (const c of this.#conns) {
      if (!c.busy && !c.broken) {
        c.busy = true;
        return c;
      }
    }
    if (this.#conns.size < MAX_CONNECTIONS) return this.#open(deadline);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.#waiting.indexOf(handoff);
        if (i >= 0) this.#waiting.splice(i, 1);
        resolve(undefined);
      }, deadline - Date.now());
      const handoff = (c: Conn | undefined) => {
        clearTimeout(timer);
        resolve(c);
      };
      this.#waiting.push(handoff);
    });
  }

  #give(c: Conn): void {
    c.busy = false;
    if (c.broken) {
      this.#conns.delete(c);
      c.socket.destroy();
    }
    const next = this.#waiting.shift();
    if (!next) return;
    if (!c.broken) {
      c.busy = true;
      next(c);
    } else {
      void this.#open(Date.now() + this.#config.timeout).then(next, () => next(undefined));
    }
  }

  #open(deadline: number): Promise<Conn> {
    const { host, port } = this.#config.address;
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      const c: Conn = { socket, buf: '', busy: true, broken: false };
      this.#conns.add(c);
      const timer = setTimeout(
        () => socket.destroy(new Error('connect timeout')),
        Math.max(1, deadline - Date.now()),
      );
      socket.setEncoding('utf8');
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(c);
      });
      socket.on('data', (d: string) => {
        c.buf += d;
        if (c.buf.length > MAX_ANSWER) return socket.destroy(new Error('answer too long'));
        const end = c.buf.indexOf('\n\n');
        if (end < 0) return;
        const text = c.buf.slice(0, end);
        c.buf = c.buf.slice(end + 2);
        const answer: Record<string, string> = {};
        for (const line of text.split('\n')) {
          const eq = line.indexOf('=');
          if (eq > 0) answer[line.slice(0, eq)] = line.slice(eq + 1);
        }
        const cb = c.onAnswer;
        c.onAnswer = undefined;
        // An answer nobody asked for: the stream is out of step.
        if (!cb) c.broken = true;
        cb?.(answer);
      });
      const gone = (err?: Error) => {
        clearTimeout(timer);
        c.broken = true;
        this.#conns.delete(c);
        const cb = c.onAnswer;
        c.onAnswer = undefined;
        cb?.(err ?? new Error('policy server closed the connection'));
        reject(err ?? new Error('policy server closed the connection'));
      };
      socket.on('error', (err) => {
        this.#log.debug({ err: { message: err.message } }, 'policy server connection failed');
        gone(err);
      });
      socket.on('close', () => gone());
    });
  }

  #ask(c: Conn, request: string, ms: number): Promise<Record<string, string>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          c.onAnswer = undefined;
          reject(new Error(`no answer within ${this.#config.timeout} ms`));
        },
        Math.max(1, ms),
      );
      c.onAnswer = (a) => {
        clearTimeout(timer);
        if (a instanceof Error) reject(a);
        else resolve(a);
      };
      c.socket.write(request);
    });
  }
}
