// One client session: answers MAIL locally, binds a backend at the first RCPT (routing needs the
// recipient), replays MAIL with that RCPT, streams DATA, and keeps the backend for the client's next
// transaction. Nothing here throws past the session: every failure becomes a reply, a log line and a
// counter. The client sees 250 for a message only when the backend said 2xx to that message.
import type { Readable } from 'node:stream';
import type { ListenerConfig } from '@smtp-lb/config';
import type {
  ClientIdentity,
  MailCommand,
  Reply,
  UpstreamConnection,
  UpstreamError,
} from '@smtp-lb/upstream';
import type { Binder, BoundBackend } from './binder.js';
import type { SmtpAddress, SmtpFront } from './front/smtp-front.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { PoolRuntime } from './pool-runtime.js';
import { isPositive, replies } from './replies.js';
import type { Router } from './router.js';
import { plainAddress } from './shaping/cidr.js';

export interface SessionDeps {
  router: () => Router;
  pool: (name: string) => PoolRuntime | undefined;
  binder: Binder;
  metrics: Metrics;
}

interface Transaction {
  mail: MailCommand;
  /** The backend has accepted this transaction's MAIL. */
  mailAtBackend: boolean;
  /** Pool bound by this transaction's first accepted recipient. */
  pool?: string;
  recipients: number;
}

// Parameters we may pass on, and the EHLO keyword a backend must offer for each.
const MAIL_PARAM_NEEDS: Record<string, string> = {
  SIZE: 'SIZE',
  BODY: '8BITMIME',
  SMTPUTF8: 'SMTPUTF8',
  RET: 'DSN',
  ENVID: 'DSN',
  NOTIFY: 'DSN',
  ORCPT: 'DSN',
  REQUIRETLS: 'REQUIRETLS',
};

const NON_ASCII = /[^\x00-\x7f]/;

// One reason for every aborted session: abort() without one builds a DOMException each time.
const CLIENT_GONE = new Error('client session ended');

function params(args: SmtpAddress['args'], conn: UpstreamConnection): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (const key in args) {
    const needs = MAIL_PARAM_NEEDS[key];
    if (needs && conn.capabilities.has(needs)) out[key] = args[key]!;
  }
  return out;
}

export class ProxySession {
  readonly log: Logger;
  readonly #front: SmtpFront;
  readonly #listener: ListenerConfig;
  readonly #d: SessionDeps;
  /** Aborts the bind in flight, if any, when the client goes. */
  #abort: AbortController | undefined;
  #closed = false;
  #bound: BoundBackend | undefined;
  /** The bound backend has an open transaction (MAIL accepted, not finished by DATA). */
  #dirty = false;
  #inData = false;
  #inRcpt = false;
  #tx: Transaction | undefined;
  #mailArgs: SmtpAddress['args'] = {};

  constructor(front: SmtpFront, listener: ListenerConfig, deps: SessionDeps, log: Logger) {
    this.#front = front;
    this.#listener = listener;
    this.#d = deps;
    this.log = log;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** MAIL FROM is answered here; undefined means accept (the front says 250). */
  mailFrom(from: SmtpAddress): Reply | undefined {
    const utf8 = from.args.SMTPUTF8 === true;
    if (!utf8 && NON_ASCII.test(from.address)) return replies.utf8NotAllowed();
    this.#tx = { mail: { address: from.address, params: {} }, mailAtBackend: false, recipients: 0 };
    this.#mailArgs = from.args;
    return undefined;
  }

  /** RSET, HELO/EHLO or STARTTLS: the transaction is gone; a kept backend gets RSET before the next. */
  reset(): void {
    this.#tx = undefined;
  }

  async rcptTo(to: SmtpAddress): Promise<Reply> {
    this.#inRcpt = true;
    try {
      return await this.#rcptTo(to);
    } finally {
      this.#inRcpt = false;
    }
  }

  async #rcptTo(to: SmtpAddress): Promise<Reply> {
    const tx = this.#tx;
    if (!tx) return replies.backendLost();
    const utf8 = this.#mailArgs.SMTPUTF8 === true;
    if (!utf8 && NON_ASCII.test(to.address)) return replies.utf8NotAllowed();
    if (tx.recipients >= this.#listener.maxRecipients) return replies.tooManyRecipients();

    const poolName = this.#d.router().pool(this.#listener, tx.mail.address, to.address);
    if (tx.pool !== undefined && tx.pool !== poolName) return replies.otherRoute();

    // A kept connection may have died while idle; a transaction that has sent nothing to it yet
    // simply binds again.
    for (let attempt = 0; ; attempt++) {
      const bound = await this.#ensureBound(poolName, !tx.mailAtBackend);
      if ('code' in bound) return bound;
      try {
        if (this.#dirty && !tx.mailAtBackend) {
          await bound.conn.rset();
          this.#dirty = false;
        }
        const rcpt: MailCommand = { address: to.address, params: params(to.args, bound.conn) };
        const mail = tx.mailAtBackend
          ? undefined
          : { address: tx.mail.address, params: params(this.#mailArgs, bound.conn) };
        if (mail && utf8 && mail.params.SMTPUTF8 === undefined) return replies.utf8Unsupported();
        const res = await bound.conn.envelope(mail, [rcpt]);
        if (res.mail) {
          this.#count(bound, 'MAIL', res.mail);
          if (!isPositive(res.mail)) return res.mail; // the backend refused MAIL: its reply answers this RCPT
          tx.mailAtBackend = true;
          this.#dirty = true;
        }
        const reply = res.rcpts[0]!;
        this.#count(bound, 'RCPT', reply);
        if (isPositive(reply)) {
          tx.pool = poolName;
          tx.recipients++;
        }
        return reply;
      } catch (err) {
        const sentNothing = !tx.mailAtBackend;
        this.#backendFailed(err as UpstreamError, 'rcpt');
        if (sentNothing && attempt === 0 && !this.closed) continue;
        return replies.backendLost();
      }
    }
  }

  async data(body: Readable): Promise<Reply> {
    const bound = this.#bound;
    const tx = this.#tx;
    const drain = () => {
      body.unpipe();
      body.resume();
    };
    if (!bound || !tx?.mailAtBackend) {
      drain();
      return replies.backendLost();
    }
    const pool = tx.pool ?? bound.pool;
    const started = process.hrtime.bigint();
    this.#inData = true;
    try {
      const reply = await bound.conn.data(body, {
        bareNewlines: this.#listener.bareNewlines,
        nulBytes: this.#listener.nulBytes,
        maxBytes: this.#listener.maxMessageSize,
      });
      drain(); // the backend may have refused DATA itself without reading the body
      this.#count(bound, 'DATA', reply);
      if (isPositive(reply)) this.#dirty = false;
      const result = isPositive(reply) ? 'accepted' : reply.code < 500 ? 'deferred' : 'rejected';
      this.#d.metrics.transactionsTotal.inc({ pool, backend: bound.backend.id, result });
      this.log.info(
        { backend: bound.backend.id, pool, rcpts: tx.recipients, reply: reply.lines[0], code: reply.code },
        'message relayed',
      );
      return reply;
    } catch (err) {
      drain();
      const e = err as UpstreamError;
      this.#backendFailed(e, 'data');
      const reply =
        e.code === 'EABORTED' && e.abortReason === 'size'
          ? replies.tooBig(this.#listener.maxMessageSize)
          : e.code === 'EABORTED' && e.abortReason === 'bare-newline'
            ? replies.bareNewline()
            : e.code === 'EABORTED' && e.abortReason === 'nul'
              ? replies.nulByte()
              : replies.backendLost();
      this.#d.metrics.transactionsTotal.inc({ pool, backend: bound.backend.id, result: `failed-${e.code}` });
      return reply;
    } finally {
      this.#inData = false;
      this.#tx = undefined;
      this.#d.metrics.transactionDuration.observe({ pool }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /** The client went away (QUIT, close, timeout): release the backend. */
  close(): void {
    if (this.closed) return;
    this.#closed = true;
    this.#abort?.abort(CLIENT_GONE);
    const bound = this.#bound;
    this.#bound = undefined;
    if (!bound) return;
    // Mid-DATA the backend must never see a final dot: cut the connection instead of QUIT.
    if (this.#inData) bound.conn.destroy();
    else void bound.conn.quit();
  }

  /** Between transactions, with no command in flight: a drain may close it with 421. */
  get idle(): boolean {
    return !this.#inData && !this.#inRcpt && this.#tx === undefined;
  }

  /**
   * The session's backend for `poolName`. A kept connection serves a new transaction only while its
   * backend is still in the pool's set: one that turned critical or left gets no new transactions.
   */
  async #ensureBound(poolName: string, newTransaction: boolean): Promise<BoundBackend | Reply> {
    const kept = this.#bound;
    if (
      kept &&
      kept.pool === poolName &&
      !kept.conn.closed &&
      (!newTransaction ||
        this.#d
          .pool(poolName)
          ?.source.current()
          .some((b) => b.id === kept.backend.id))
    ) {
      return kept;
    }
    if (kept) {
      this.#bound = undefined;
      this.#dirty = false;
      void kept.conn.quit();
    }
    const pool = this.#d.pool(poolName);
    if (!pool) {
      this.log.error({ pool: poolName }, 'route points at an unknown pool');
      return replies.noBackend();
    }
    // The controller only matters while a bind is in flight: abort() builds and dispatches an event,
    // which a close between transactions need not pay for.
    const abort = new AbortController();
    this.#abort = abort;
    let res: Awaited<ReturnType<Binder['bind']>>;
    try {
      res = await this.#d.binder.bind(
        pool,
        this.#identity(),
        this.#listener.hostname,
        this.log,
        abort.signal,
      );
    } finally {
      this.#abort = undefined;
    }
    if (!res.ok) return res.reply;
    if (this.closed) {
      void res.bound.conn.quit();
      return replies.draining();
    }
    this.#bound = res.bound;
    this.#dirty = false;
    res.bound.conn.once('close', () => {
      if (this.#bound === res.bound) {
        this.#bound = undefined;
        this.#dirty = false;
        if (!this.closed)
          this.log.info({ backend: res.bound.backend.id }, 'backend closed the kept connection');
      }
    });
    this.log.debug({ backend: res.bound.backend.id, pool: poolName }, 'bound to backend');
    return res.bound;
  }

  #identity(): ClientIdentity {
    const f = this.#front;
    return {
      address: plainAddress(f.remoteAddress),
      port: f.remotePort,
      localAddress: plainAddress(f.localAddress),
      localPort: f.localPort,
      helo: f.helo || undefined,
      name: '[UNAVAILABLE]',
      proto: f.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP',
    };
  }

  #backendFailed(e: UpstreamError, command: string): void {
    const bound = this.#bound;
    this.#bound = undefined;
    this.#dirty = false;
    if (!bound) return;
    bound.conn.destroy();
    this.#d.metrics.backendReplies.inc({ backend: bound.backend.id, command, code: e.code ?? 'error' });
    this.log.warn(
      { backend: bound.backend.id, err: { code: e.code, stage: e.stage, message: e.message } },
      'backend failed during the transaction',
    );
  }

  #count(bound: BoundBackend, command: string, reply: Reply): void {
    this.#d.metrics.backendReplies.inc({ backend: bound.backend.id, command, code: String(reply.code) });
  }
}
