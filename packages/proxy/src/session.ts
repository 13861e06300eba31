// One client session: owns the client's identity and its transaction (transaction.ts) and decides
// every reply after the greeting that is not about syntax: MAIL is answered locally and replayed with
// the first RCPT, where the backend is bound (routing needs the recipient); DATA streams to it; the
// backend is kept for the client's next transaction, unless it is at its cap: then its connection
// goes at the end of the transaction, so the slot serves the sessions waiting for it. The session checks (shaping/session-checks.ts)
// run at each stage. Nothing here throws past the session: every failure becomes a reply, a log line
// and a counter. The client sees 250 for a message only when the backend said 2xx to that message.
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import type { ListenerConfig } from '@smtp-lb/config';
import type { RecipientMap } from '@smtp-lb/discovery';
import type { ClientSlot } from '@smtp-lb/ledger';
import type {
  ClientIdentity,
  MailCommand,
  Reply,
  UpstreamConnection,
  UpstreamError,
} from '@smtp-lb/upstream';
import { forClient } from './backend-reply.js';
import type { Binder, BoundBackend } from './binder.js';
import type { BindTargets } from './destinations.js';
import type { SaslCredentials } from './front/sasl.js';
import type { FrontSession } from './front/smtp-front.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { PoolRuntime } from './pool-runtime.js';
import { isPositive, replies } from './replies.js';
import { domainOf, type Router, rcptLookups } from './router.js';
import type { ScanRuntime } from './scan/scan-runtime.js';
import type { MessageScan, SessionScan } from './scan/scan-stage.js';
import type { SessionChecks } from './shaping/session-checks.js';
import type { Client, Recipient, SmtpAddress, Transaction, Writable } from './transaction.js';
export interface SessionDeps {
  router: () => Router;
  pool: (name: string) => PoolRuntime | undefined;
  recipientMap: (name: string) => RecipientMap | undefined;
  binder: Binder;
  metrics: Metrics;
  /** The node's content scanners (`scanners:`). */
  scanners: ScanRuntime;
}

/** What a listener hands a new session. */
export interface SessionSetup {
  client: Pick<Client, 'id' | 'address' | 'port' | 'destination' | 'proxied' | 'secure'>;
  listener: ListenerConfig;
  checks: SessionChecks;
  /** The listener's content scanners (scan/); absent when it has none. */
  scan?: SessionScan;
  /** The listener is draining: a new transaction gets 421 4.3.2. */
  draining: () => boolean;
  log: Logger;
}

type OpenTransaction = Writable<Transaction> & { recipients: Recipient[] };

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

// NOTIFY values a backend without DSN does by itself (a bounce on failure, perhaps delay warnings):
// left out for it, like ORCPT, ENVID and RET, which only shape a DSN it never writes.
const NOTIFY_AS_WITHOUT_DSN = /^FAILURE(,DELAY)?$|^DELAY,FAILURE$/i;

const NON_ASCII = /[^\x00-\x7f]/;

// One reason for every aborted session: abort() without one builds a DOMException each time.
const CLIENT_GONE = new Error('client session ended');

const ignore = () => {};

/** A backend's answers in one transaction (outlier detection counts the transaction once). */
interface Answers {
  pool: PoolRuntime;
  backend: string;
  answered: number;
  deferred: number;
}

const isDeferral = (r: Reply): boolean => r.code >= 400 && r.code < 500;

function params(args: SmtpAddress['args'], conn: UpstreamConnection): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (const key in args) {
    const needs = MAIL_PARAM_NEEDS[key];
    if (needs && conn.capabilities.has(needs)) out[key] = args[key]!;
  }
  return out;
}

export class ProxySession implements FrontSession {
  readonly log: Logger;
  readonly #client: Writable<Client>;
  readonly #listener: ListenerConfig;
  readonly #d: SessionDeps;
  readonly #checks: SessionChecks;
  readonly #scan: SessionScan | undefined;
  readonly #draining: () => boolean;
  /** Aborts the bind in flight, if any, when the client goes. */
  #abort: AbortController | undefined;
  #closed = false;
  #bound: BoundBackend | undefined;
  /** The bound backend has an open transaction (MAIL accepted, not finished by DATA). */
  #dirty = false;
  #inData = false;
  #tx: OpenTransaction | undefined;
  /** Transactions begun (numbers their ids). */
  #begun = 0;
  /**
   * The backend's answers in this transaction, for its pool's outlier detection: at the end the
   * transaction is one vote, deferred when the backend deferred MAIL or every RCPT, or DATA.
   */
  #answers: Answers | undefined;
  /** Failed AUTH attempts in this session. */
  #authFailures = 0;
  /** The user's place among its concurrent sessions (`senders.limits.sessions`). */
  #userSlot: ClientSlot | undefined;
  /**
   * `verify: backend` only: the credentials, to replay AUTH on a backend connection made later in
   * the session without XCLIENT (the one AUTH was checked on already knows the user).
   */
  #replay: { user: string; password: string } | undefined;

  constructor(setup: SessionSetup, deps: SessionDeps) {
    this.#client = { ...setup.client, helo: '', proto: '', user: undefined, userAddresses: undefined };
    this.#listener = setup.listener;
    this.#checks = setup.checks;
    this.#scan = setup.scan;
    this.#draining = setup.draining;
    this.#d = deps;
    this.log = setup.log;
  }

  get client(): Client {
    return this.#client;
  }

  get transaction(): Transaction | undefined {
    return this.#tx;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** EHLO/HELO: the client introduced itself (again); any transaction is gone. */
  hello(proto: 'ESMTP' | 'SMTP', name: string): void {
    this.#endTransaction();
    this.#client.helo = name;
    this.#client.proto = proto;
  }

  /**
   * STARTTLS done: the session starts over inside TLS (RFC 3207 4.2), the HELO name and any AUTH
   * made in plaintext forgotten.
   */
  secured(): void {
    this.#endTransaction();
    this.#client.secure = true;
    this.#client.helo = '';
    this.#client.proto = '';
    this.#forgetUser();
  }

  /** AUTH decoded by the front (not authenticated yet, no transaction): the checks decide. */
  async auth(creds: SaslCredentials): Promise<Reply> {
    const out = await this.#checks.atAuth(this.#client, creds, this.#authFailures, (signal) =>
      this.#bindForAuth(signal),
    );
    const result = out.result;
    if (result?.kind !== 'ok') {
      if (out.reply.code === 535) this.#authFailures++;
      return this.#checks.pace(out.reply);
    }
    const slot = await this.#checks.userSession(result.user);
    if (!slot || this.closed) {
      slot?.release();
      if (result.bound) void result.bound.conn.quit();
      return slot ? replies.draining() : replies.userSessions();
    }
    this.#userSlot = slot;
    this.#client.user = result.user;
    this.#client.userAddresses = result.addresses;
    if (result.bound) {
      this.#adopt(result.bound);
      this.#replay = { user: creds.user, password: creds.password };
    }
    return this.#checks.pace(out.reply);
  }

  /** `verify: backend`: a backend of the listener's pool, bound as at the first RCPT. */
  async #bindForAuth(signal: AbortSignal): Promise<BoundBackend | Reply> {
    const pool = this.#d.pool(this.#listener.pool);
    if (!pool) return replies.noBackend();
    const targets: BindTargets = { key: pool.name, backends: () => pool.source.current(), ordered: false };
    const res = await this.#d.binder.bind(
      pool,
      targets,
      this.#identity(),
      this.#listener.hostname,
      this.log,
      signal,
    );
    return res.ok ? res.bound : res.reply;
  }

  #forgetUser(): void {
    this.#client.user = undefined;
    this.#client.userAddresses = undefined;
    this.#replay = undefined;
    this.#userSlot?.release();
    this.#userSlot = undefined;
  }

  /** RSET: the transaction is gone; a kept backend gets RSET before the next. */
  reset(): void {
    this.#endTransaction();
  }

  /** A protocol problem the front met (line too long, unknown command flood, TLS failure...). */
  problem(what: string, detail?: Record<string, unknown>): void {
    this.log.info(detail ?? {}, what);
  }

  /** MAIL FROM, syntax checked by the front: answered here, replayed to the backend with the first RCPT. */
  async mail(from: SmtpAddress): Promise<Reply> {
    if (this.#draining()) return replies.draining();
    let r: Reply | undefined;
    if (from.args.SMTPUTF8 !== true && NON_ASCII.test(from.address)) r = replies.utf8NotAllowed();
    else {
      const check = this.#checks.atMail(this.#client, from);
      if (check) r = await check;
    }
    if (r) {
      this.log.info({ from: from.address, code: r.code }, 'MAIL refused');
      return this.#checks.pace(r);
    }
    this.#endTransaction();
    this.#tx = {
      client: this.#client,
      id: `${this.#client.id}.${++this.#begun}`,
      mail: from,
      recipients: [],
      pool: undefined,
      backend: undefined,
      mailAtBackend: false,
    };
    return this.#checks.pace(replies.mailAccepted());
  }

  /** RCPT TO inside a transaction (the front makes sure there is one). */
  async rcpt(to: SmtpAddress): Promise<Reply> {
    const tx = this.#tx;
    if (!tx) throw new Error('RCPT without a transaction');
    const r = await this.#rcpt(tx, to);
    if (!isPositive(r)) this.log.info({ to: to.address, code: r.code }, 'RCPT refused');
    this.#checks.afterRcptReply(tx, r);
    return this.#checks.pace(r);
  }

  async #rcpt(tx: OpenTransaction, to: SmtpAddress): Promise<Reply> {
    const utf8 = tx.mail.args.SMTPUTF8 === true;
    if (!utf8 && NON_ASCII.test(to.address)) return replies.utf8NotAllowed();
    if (tx.recipients.length >= this.#listener.maxRecipients) return replies.tooManyRecipients();
    const lookup = rcptLookups(to.address);
    const check = this.#checks.atRcpt(tx, to, lookup);
    const refused = check && (await check);
    if (refused) return refused;

    const route = await this.#d.router().route(this.#listener, tx.mail.address, to.address, lookup);
    if ('failed' in route) {
      this.log.warn({ to: to.address, ...route.failed }, 'recipient map failed; cannot route');
      return replies.recipientLookupFailed(to.address);
    }
    const poolName = route.pool;
    if (tx.pool !== undefined && tx.pool !== poolName) return replies.otherRoute();
    // An MX pool binds per recipient domain: another domain is another destination.
    const domain = domainOf(to.address);
    const perDomain = this.#d.pool(poolName)?.destinations?.perDomain === true;
    if (perDomain && tx.pool !== undefined && domainOf(tx.recipients[0]!.address) !== domain) {
      return replies.otherRoute();
    }

    // A kept connection may have died while idle; a transaction that has sent nothing to it yet
    // simply binds again.
    for (let attempt = 0; ; attempt++) {
      const bound = await this.#ensureBound(poolName, domain, !tx.mailAtBackend);
      if ('code' in bound) return bound;
      try {
        if (this.#dirty && !tx.mailAtBackend) {
          await bound.conn.rset();
          this.#dirty = false;
        }
        const rcpt: MailCommand = { address: to.address, params: params(to.args, bound.conn) };
        const mail = tx.mailAtBackend
          ? undefined
          : { address: tx.mail.address, params: params(tx.mail.args, bound.conn) };
        const unhonoured = this.#unhonoured(mail && tx.mail.args, to.args, bound.conn);
        if (unhonoured) {
          this.log.info(
            { backend: bound.backend.id, reply: unhonoured.lines[0] },
            'the backend cannot honour a parameter',
          );
          return unhonoured;
        }
        const res = await bound.conn.envelope(mail, [rcpt]);
        if (res.mail) {
          const refusal = this.#relayed(bound, 'MAIL', res.mail);
          if (!isPositive(refusal)) {
            this.#answered(bound, refusal);
            return refusal; // the backend refused MAIL: its reply answers this RCPT
          }
          tx.mailAtBackend = true;
          tx.backend = bound.backend.id;
          this.#dirty = true;
        }
        const reply = this.#relayed(bound, 'RCPT', res.rcpts[0]!);
        this.#answered(bound, reply);
        if (isPositive(reply)) {
          tx.pool = poolName;
          tx.recipients.push({ address: to.address, args: to.args, pool: poolName });
        }
        return reply;
      } catch (err) {
        const retry = !tx.mailAtBackend && attempt === 0 && !this.closed;
        // A kept connection that died while idle (the backend's idle timeout) lost nothing.
        if (!retry) this.#lost(bound, err as UpstreamError);
        this.#backendFailed(err as UpstreamError, 'rcpt');
        if (retry) continue;
        return replies.backendLost();
      }
    }
  }

  /** DATA after 354: the body streams to the backend; the reply waits for the backend and every check. */
  async data(body: Readable): Promise<Reply> {
    const tx = this.#tx;
    if (!tx) throw new Error('DATA without a transaction');
    // A client that vanishes mid-DATA destroys the stream with an error; the relay sees it.
    body.on('error', ignore);
    const scan = this.#scan?.begin(tx, this.#client);
    const held = this.#checks.holdsFinalDot || scan ? this.#holdFinalDot(body, tx, scan) : undefined;
    try {
      const relayed = await this.#relay(held?.stream ?? body, tx);
      const r = held?.refusal() ?? relayed;
      this.#checks.afterDataReply(tx, r);
      this.#yieldAtCap();
      return this.#checks.pace(r);
    } finally {
      // The backend or the client failed mid-message: nothing more is scanned (no-op after the verdict).
      scan?.abort();
    }
  }

  /**
   * The message streams to the backend as usual, but its end (our final dot) waits for the checks at
   * the client's final dot (`atData`) and the content scanners' verdicts; a refusal fails the stream,
   * so the backend never gets the final dot (the transaction is aborted there) and the client gets
   * the refusal. Each chunk goes on to the backend only once every scanner has taken it.
   */
  #holdFinalDot(
    body: Readable,
    tx: Transaction,
    scan: MessageScan | undefined,
  ): { stream: Readable; refusal: () => Reply | undefined } {
    let refused: Reply | undefined;
    let size = 0;
    const checks = this.#checks;
    const stream = new Transform({
      transform(chunk: Buffer, _enc, done: TransformCallback) {
        size += chunk.length;
        const taken = scan?.push(chunk);
        if (taken) taken.then(() => done(null, chunk));
        else done(null, chunk);
      },
      flush(done: TransformCallback) {
        Promise.all([checks.atData(tx, size), scan?.end()]).then(
          ([policy, verdict]) => {
            refused = policy ?? verdict;
            done(
              refused ? Object.assign(new Error('refused at the end of DATA'), { code: 'EREFUSED' }) : null,
            );
          },
          (err: Error) => done(err),
        );
      },
    });
    // A refusal can come before the backend's 354, while nothing of upstream listens yet: it sees
    // the stream's error (readable.errored) when it starts; unhandled, it would crash the process.
    stream.on('error', ignore);
    body.on('error', (err) => stream.destroy(err));
    body.pipe(stream);
    return { stream, refusal: () => refused };
  }

  async #relay(body: Readable, tx: OpenTransaction): Promise<Reply> {
    const bound = this.#bound;
    const drain = () => {
      body.unpipe();
      body.resume();
    };
    if (!bound || !tx.mailAtBackend) {
      drain();
      return replies.backendLost();
    }
    const pool = tx.pool ?? bound.pool;
    const started = process.hrtime.bigint();
    this.#inData = true;
    try {
      const got = await bound.conn.data(body, {
        bareNewlines: this.#listener.bareNewlines,
        nulBytes: this.#listener.nulBytes,
        longLines: this.#listener.longLines,
        maxBytes: this.#listener.maxMessageSize,
      });
      drain(); // the backend may have refused DATA itself without reading the body
      const reply = this.#relayed(bound, 'DATA', got);
      this.#answered(bound, reply);
      this.#vote(isDeferral(reply));
      if (isPositive(reply)) this.#dirty = false;
      const result = isPositive(reply) ? 'accepted' : reply.code < 500 ? 'deferred' : 'rejected';
      this.#d.metrics.transactionsTotal.inc({ pool, backend: bound.backend.id, result });
      this.log.info(
        {
          backend: bound.backend.id,
          pool,
          rcpts: tx.recipients.length,
          reply: reply.lines[0],
          code: reply.code,
        },
        'message relayed',
      );
      return reply;
    } catch (err) {
      drain();
      const e = err as UpstreamError;
      if (e.code === 'EABORTED' && (e.cause as { code?: string } | undefined)?.code === 'EREFUSED') {
        // A check or a scanner refused the message: we cut the backend's transaction ourselves.
        this.#dropBackend('refused before our final dot: backend transaction dropped');
        this.#d.metrics.transactionsTotal.inc({ pool, backend: bound.backend.id, result: 'refused' });
        return replies.backendLost();
      }
      this.#lost(bound, e);
      this.#backendFailed(e, 'data');
      const reply =
        e.code === 'EABORTED' && e.abortReason === 'size'
          ? replies.tooBig(this.#listener.maxMessageSize)
          : e.code === 'EABORTED' && e.abortReason === 'bare-newline'
            ? replies.bareNewline()
            : e.code === 'EABORTED' && e.abortReason === 'nul'
              ? replies.nulByte()
              : e.code === 'EABORTED' && e.abortReason === 'long-line'
                ? replies.longLine()
                : replies.backendLost();
      this.#d.metrics.transactionsTotal.inc({ pool, backend: bound.backend.id, result: `failed-${e.code}` });
      return reply;
    } finally {
      this.#inData = false;
      this.#endTransaction();
      this.#d.metrics.transactionDuration.observe({ pool }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /**
   * What the bound backend cannot honour of the parameters is refused, not dropped (MAIL's when
   * MAIL is about to be replayed, the RCPT's own every time): a message that asked for REQUIRETLS
   * never travels in plaintext or to a backend that does not promise it onwards (RFC 8689 5); an
   * SMTPUTF8 message or an 8-bit body never goes to a backend without SMTPUTF8 or 8BITMIME (we do
   * not downgrade or convert). A backend without DSN: ORCPT, ENVID and RET are left out (they only
   * shape a DSN, which it never writes; Postfix as a client sends ORCPT with every RCPT), and so is
   * NOTIFY=FAILURE[,DELAY] (what it does anyway); any other NOTIFY is refused: dropped, NEVER would
   * become a bounce the sender asked not to get, SUCCESS silence where RFC 3461 4.1 wants at least a
   * "relayed" notice (which only the client can send, when the listener does not offer DSN).
   */
  #unhonoured(
    mail: SmtpAddress['args'] | undefined,
    rcpt: SmtpAddress['args'],
    conn: UpstreamConnection,
  ): Reply | undefined {
    const has = (keyword: string) => conn.capabilities.has(keyword);
    if (mail) {
      if (mail.SMTPUTF8 !== undefined && !has('SMTPUTF8')) return replies.utf8Unsupported();
      if (mail.REQUIRETLS !== undefined && !(conn.secure && has('REQUIRETLS')))
        return replies.requireTlsUnsupported();
      const body = mail.BODY;
      if (typeof body === 'string' && body.toUpperCase() === '8BITMIME' && !has('8BITMIME'))
        return replies.eightBitUnsupported();
    }
    const notify = rcpt.NOTIFY;
    if (typeof notify === 'string' && !has('DSN') && !NOTIFY_AS_WITHOUT_DSN.test(notify))
      return replies.dsnUnsupported(`NOTIFY=${notify.toUpperCase()}`);
    return undefined;
  }

  /**
   * The transaction is over; a backend at its cap gets QUIT now (its slot is free once the
   * connection has closed) instead of staying with this session until the client's QUIT: a slow
   * sender that pauses before QUIT or its next MAIL would otherwise hold a slot others wait for.
   * The next transaction of this session binds again. Below the cap the connection is kept.
   */
  #yieldAtCap(): void {
    const bound = this.#bound;
    if (!bound || !this.#d.binder.atCap(bound)) return;
    this.#bound = undefined;
    this.#dirty = false;
    void bound.conn.quit();
    this.log.debug({ backend: bound.backend.id }, 'backend at its cap: connection given back after DATA');
  }

  /** The client went away (QUIT, close, timeout): release the backend. */
  close(): void {
    if (this.closed) return;
    this.#closed = true;
    this.#endTransaction();
    this.#forgetUser();
    this.#scan?.close();
    this.#abort?.abort(CLIENT_GONE);
    const bound = this.#bound;
    this.#bound = undefined;
    if (!bound) return;
    // Mid-DATA the backend must never see a final dot: cut the connection instead of QUIT.
    if (this.#inData) bound.conn.destroy();
    else void bound.conn.quit();
  }

  /**
   * The session's backend for `poolName` (and, for an MX pool, `domain`). A kept connection serves a
   * new transaction only while its backend is still in the pool's set and not ejected: one that
   * turned critical, left or was ejected gets no new transactions. A destination pool's kept connection serves the same destination.
   */
  async #ensureBound(
    poolName: string,
    domain: string,
    newTransaction: boolean,
  ): Promise<BoundBackend | Reply> {
    const kept = this.#bound;
    const pool = this.#d.pool(poolName);
    const destinations = pool?.destinations;
    const key = destinations?.perDomain ? `${poolName}/${domain}` : undefined;
    if (
      kept &&
      kept.pool === poolName &&
      (key === undefined || kept.target === key) &&
      !kept.conn.closed &&
      (!newTransaction ||
        destinations !== undefined ||
        (pool?.source.current().some((b) => b.id === kept.backend.id) && !pool.isEjected(kept.backend.id)))
    ) {
      return kept;
    }
    if (kept) {
      this.#bound = undefined;
      this.#dirty = false;
      void kept.conn.quit();
    }
    if (!pool) {
      this.log.error({ pool: poolName }, 'route points at an unknown pool');
      return replies.noBackend();
    }
    let targets: BindTargets = { key: poolName, backends: () => pool.source.current(), ordered: false };
    if (destinations) {
      const found = await destinations.targets(domain, this.#client, this.log);
      if (!found.ok) return found.reply;
      targets = found.targets;
    }
    if (this.closed) return replies.draining();
    // The controller only matters while a bind is in flight: abort() builds and dispatches an event,
    // which a close between transactions need not pay for.
    const abort = new AbortController();
    this.#abort = abort;
    let res: Awaited<ReturnType<Binder['bind']>>;
    try {
      res = await this.#d.binder.bind(
        pool,
        targets,
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
    const replayed = await this.#replayAuth(res.bound);
    if (replayed) return replayed;
    this.#adopt(res.bound);
    this.log.debug({ backend: res.bound.backend.id, pool: poolName }, 'bound to backend');
    return res.bound;
  }

  /** `bound` becomes the session's backend connection (kept for its transactions). */
  #adopt(bound: BoundBackend): void {
    const old = this.#bound;
    if (old && old !== bound) void old.conn.quit();
    this.#bound = bound;
    this.#dirty = false;
    bound.conn.once('close', () => {
      if (this.#bound === bound) {
        this.#bound = undefined;
        this.#dirty = false;
        if (!this.closed) this.log.info({ backend: bound.backend.id }, 'backend closed the kept connection');
      }
    });
  }

  /**
   * A user checked by a backend's SASL, on a new backend connection without XCLIENT (which would
   * have carried LOGIN=): AUTH again there, so this backend knows who sends too.
   */
  async #replayAuth(bound: BoundBackend): Promise<Reply | undefined> {
    const creds = this.#replay;
    if (!creds || bound.conn.xclientSent) return undefined;
    try {
      const r = await bound.conn.authenticate(creds.user, creds.password);
      if (isPositive(r)) return undefined;
      this.log.warn({ backend: bound.backend.id, code: r.code }, 'backend refused the replayed AUTH');
    } catch (err) {
      this.log.warn(
        { backend: bound.backend.id, err: { message: (err as Error).message } },
        'replayed AUTH failed',
      );
    }
    bound.conn.destroy();
    return replies.authUnavailable();
  }

  #identity(): ClientIdentity {
    const c = this.#client;
    return {
      address: c.address,
      port: c.port,
      localAddress: c.destination.address,
      localPort: c.destination.port,
      helo: c.helo || undefined,
      name: '[UNAVAILABLE]',
      login: c.user,
      proto: c.proto === 'ESMTP' ? 'ESMTP' : 'SMTP',
    };
  }

  /** Closes the bound connection mid-transaction (no final dot ever reaches it). */
  #dropBackend(why: string): void {
    const bound = this.#bound;
    this.#bound = undefined;
    this.#dirty = false;
    if (!bound) return;
    bound.conn.destroy();
    this.log.info({ backend: bound.backend.id }, why);
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

  /**
   * The backend failed in this transaction: a deferred vote. One we cut (size, bare LF, NUL) is no
   * fault of the backend's. `bound` is the caller's: the close may have unbound it already.
   */
  #lost(bound: BoundBackend, e: UpstreamError): void {
    if (e.code === 'EABORTED') return;
    if (this.#answers?.backend !== bound.backend.id) {
      if (this.#answers) this.#vote();
      this.#answers = this.#answersFor(bound);
    }
    this.#vote(true);
  }

  /** The transaction is over (RSET, a new MAIL, EHLO, STARTTLS, the client gone). */
  #endTransaction(): void {
    this.#tx = undefined;
    if (this.#answers) this.#vote();
  }

  #answersFor(bound: BoundBackend): Answers | undefined {
    const pool = this.#d.pool(bound.pool);
    if (!pool?.outliers) return undefined;
    return { pool, backend: bound.backend.id, answered: 0, deferred: 0 };
  }

  /** A reply of the backend to MAIL, RCPT or DATA of this transaction. */
  #answered(bound: BoundBackend, reply: Reply): void {
    let a = this.#answers;
    if (a && a.backend !== bound.backend.id) {
      // Re-bound mid-transaction (a kept connection found dead): the first backend's vote first.
      this.#vote();
      a = undefined;
    }
    a ??= this.#answers = this.#answersFor(bound);
    if (!a) return;
    a.answered++;
    if (isDeferral(reply)) a.deferred++;
  }

  /** Casts the transaction's one vote: `deferred` as given (DATA, a lost backend) or from the RCPTs. */
  #vote(deferred?: boolean): void {
    const a = this.#answers;
    this.#answers = undefined;
    if (!a || (deferred === undefined && a.answered === 0)) return;
    a.pool.transactionEnded(a.backend, deferred ?? a.deferred === a.answered);
  }

  /** A backend's reply on its way to the client: counted, and made safe for it (backend-reply.ts). */
  #relayed(bound: BoundBackend, command: string, reply: Reply): Reply {
    const backend = bound.backend.id;
    this.#d.metrics.backendReplies.inc({ backend, command, code: String(reply.code) });
    const out = forClient(reply);
    if (!out) return reply;
    for (const defect of out.defects) this.#d.metrics.backendReplyDefects.inc({ backend, defect });
    const detail = {
      backend,
      command,
      code: reply.code,
      defects: out.defects,
      reply: reply.lines[0]?.slice(0, 200),
    };
    // Text that is not UTF-8 passes unchanged (an old backend may send it with every reply): info.
    if (out.defects.every((d) => d === 'not-utf8'))
      this.log.info(detail, 'backend reply text is not UTF-8: relayed as it came');
    else this.log.warn(detail, 'backend reply repaired for the client');
    return out.reply;
  }
}
