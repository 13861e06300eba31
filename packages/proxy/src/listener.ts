// One listener: its own TCP server, a front door per accepted socket (PROXY header, admission,
// implicit TLS, greeting delay; shaping/front-door.ts), then our SMTP front (front/smtp-front.ts)
// whose hooks go to a ProxySession per client. The front does the command parsing, STARTTLS and
// the end-of-DATA detection; the session decides every reply after MAIL. No reverse DNS on the hot
// path; CHUNKING is never advertised (no BDAT).

import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ListenerConfig } from '@smtp-lb/config';
import type { Reply } from '@smtp-lb/upstream';
import { type FrontHooks, type FrontOptions, type SmtpAddress, SmtpFront } from './front/smtp-front.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { isPositive, replies, reply } from './replies.js';
import { ProxySession, type SessionDeps } from './session.js';
import type { ClientState } from './shaping/client-state.js';
import { FrontDoor } from './shaping/front-door.js';
import type { PolicyVerdict } from './shaping/policy-client.js';
import { shapingReplies } from './shaping/shaping-replies.js';
import type { ShapingRuntime } from './shaping/shaping-runtime.js';

interface Live {
  front: SmtpFront;
  session: ProxySession;
  client: ClientState;
}

export class Listener {
  #config: ListenerConfig;
  readonly #net: Server;
  readonly #door: FrontDoor;
  readonly #shaping: ShapingRuntime;
  readonly #deps: SessionDeps;
  /** Every session with a front, by front. */
  readonly #live = new Map<SmtpFront, Live>();
  /** Sockets still in the front door. */
  readonly #pending = new Set<Socket>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  /** For implicit TLS (the front door) and STARTTLS (the front). */
  #secure: SecureContext | undefined;
  #frontOptions!: FrontOptions;
  #draining = false;
  /** Sessions already sent their 421 during a drain. */
  readonly #told = new WeakSet<SmtpFront>();
  readonly #hooks: FrontHooks;

  constructor(config: ListenerConfig, deps: SessionDeps, log: Logger, shaping: ShapingRuntime) {
    this.#config = config;
    this.#deps = deps;
    this.#log = log.child({ listener: config.name });
    this.#metrics = deps.metrics;
    this.#shaping = shaping;
    this.#configure(config);
    this.#hooks = {
      mailFrom: (front, from) => this.#onMail(front, from),
      rcptTo: (front, to) => this.#onRcpt(front, to),
      data: (front, body) => this.#onData(front, body),
      reset: (front) => this.#live.get(front)?.session.reset(),
      close: (front) => this.#closed(front),
      problem: (front, what, detail) => {
        const log = this.#live.get(front)?.session.log ?? this.#log;
        log.info(detail ?? {}, what);
      },
    };
    this.#door = new FrontDoor({
      listener: () => this.#config,
      shaping,
      log: this.#log,
      metrics: this.#metrics,
      secureContext: () => this.#secure,
      draining: () => this.#draining,
    });
    // Paused: nothing is read until the front door asks for it (the PROXY header first).
    this.#net = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket));
  }

  /** Settings for new sessions (a session keeps those it started with, across a reload). */
  #configure(config: ListenerConfig): void {
    const tls = config.tls;
    this.#secure = tls
      ? createSecureContext({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) })
      : undefined;
    const starttls = tls && !tls.implicit ? this.#secure : undefined;
    this.#frontOptions = {
      name: config.hostname,
      maxMessageSize: config.maxMessageSize,
      idleTimeout: config.timeouts.idle,
      secure: tls?.implicit ?? false,
      starttls: starttls ? () => starttls : undefined,
    };
  }

  #accept(socket: Socket): void {
    if (this.#draining) {
      socket.destroy();
      return;
    }
    this.#pending.add(socket);
    this.#door.admit(socket).then(
      (admitted) => {
        this.#pending.delete(socket);
        if (!admitted) return;
        if (this.#draining || admitted.socket.destroyed) {
          admitted.socket.destroy();
          return;
        }
        const front = new SmtpFront(
          admitted.socket,
          {
            id: admitted.id,
            remoteAddress: admitted.remoteAddress,
            remotePort: admitted.remotePort,
            localAddress: socket.localAddress ?? '',
            localPort: socket.localPort ?? 0,
          },
          this.#frontOptions,
          this.#hooks,
        );
        if (this.#live.size >= this.#config.maxSessions) {
          admitted.client.release();
          this.#metrics.sessionsTotal.inc({ listener: this.#config.name, outcome: 'refused-max-sessions' });
          admitted.log.warn({ max: this.#config.maxSessions }, 'too many sessions on this listener');
          front.start(
            reply(421, '4.7.0', `${this.#config.hostname} Too many connected clients, try again in a moment`),
          );
          return;
        }
        const session = new ProxySession(front, this.#config, this.#deps, admitted.log);
        this.#live.set(front, { front, session, client: admitted.client });
        this.#metrics.sessionsActive.inc();
        admitted.log.debug({ tarpit: admitted.client.ticket?.reason }, 'session opened');
        front.start();
      },
      (err: unknown) => {
        this.#pending.delete(socket);
        this.#log.error({ err }, 'front door failed unexpectedly');
        socket.destroy();
      },
    );
  }

  async #onMail(front: SmtpFront, from: SmtpAddress): Promise<Reply | undefined> {
    const live = this.#live.get(front);
    if (!live) return replies.backendLost();
    if (this.#draining) return this.#answer(live, replies.draining());
    return this.#answer(live, await this.#mailFrom(live, from));
  }

  async #onRcpt(front: SmtpFront, to: SmtpAddress): Promise<Reply> {
    const live = this.#live.get(front);
    if (!live) return replies.backendLost();
    const r = await this.#rcptTo(live, to);
    if (!isPositive(r)) live.session.log.info({ to: to.address, code: r.code }, 'RCPT refused');
    this.#countRejected(live, r);
    return (await this.#answer(live, r)) ?? r;
  }

  async #onData(front: SmtpFront, stream: Readable): Promise<Reply> {
    const live = this.#live.get(front);
    if (!live) {
      stream.resume();
      return replies.backendLost();
    }
    const s = live.session;
    // A client that vanishes mid-DATA destroys the stream with an error; the session handles it.
    stream.on('error', () => {});
    const gate = this.#policyGate(live);
    const body = gate ? stream.pipe(gate.transform) : stream;
    if (gate) stream.on('error', (err) => gate.transform.destroy(err));
    const r = await s.data(body);
    const refused = gate?.refusal();
    if (refused) {
      s.log.info({ code: refused.code, reply: refused.lines[0] }, 'message refused by the policy service');
    }
    const final = refused ?? r;
    return (await this.#answer(live, final)) ?? final;
  }

  /** `reply`, after the tarpit delay when the session was tarpitted midway. */
  #answer<T extends Reply | undefined>(live: Live, r: T): T | Promise<T> {
    const client = live.client;
    // A tarpit set at admission is in the socket (every reply); one set midway delays the hooks' replies.
    if (!client.tarpitted || client.wrapped) return r;
    return new Promise((resolve) => setTimeout(() => resolve(r), this.#shaping.config.tarpit.delay));
  }

  async #mailFrom(live: Live, from: SmtpAddress): Promise<Reply | undefined> {
    const { client, session: s } = live;
    const rate = this.#shaping.config.limits.messageRate;
    if (!client.allowed && rate.limit > 0) {
      const hit = await this.#shaping.limits.hit('msg', client.address, rate.limit, rate.window);
      if (!hit.ok) {
        const action = this.#shaping.config.limits.action;
        s.log.info(
          { count: hit.count, limit: rate.limit, windowMs: rate.window, action },
          'client over its message rate',
        );
        if (action === 'reject') {
          this.#metrics.sessionsTotal.inc({ listener: this.#config.name, outcome: 'refused-message-rate' });
          return shapingReplies.messageRate();
        }
        this.#tarpitMidway(client, 'message-rate', s.log);
      }
    }
    const r = s.mailFrom(from);
    if (r) s.log.info({ from: from.address, code: r.code }, 'MAIL refused');
    return r;
  }

  async #rcptTo(live: Live, to: SmtpAddress): Promise<Reply> {
    const policy = this.#shaping.policy;
    const s = live.session;
    if (policy?.config.at.includes('rcpt')) {
      const verdict = await policy.check(
        this.#policyRequest(live.front, 'RCPT', to.address),
        `<${to.address}>: Recipient address rejected`,
      );
      const r = this.#verdictReply(s, verdict, 'RCPT');
      if (r) return r;
    }
    return s.rcptTo(to);
  }

  #verdictReply(s: ProxySession, verdict: PolicyVerdict, stage: string): Reply | undefined {
    if (verdict.kind === 'reply') {
      s.log.info({ stage, action: verdict.action, code: verdict.reply.code }, 'policy service refused');
      return verdict.reply;
    }
    if (verdict.kind === 'error') {
      const defer = this.#shaping.policy?.config.onError === 'defer';
      s.log.warn(
        { stage, reason: verdict.reason, onError: defer ? 'defer' : 'accept' },
        'policy service failed',
      );
      if (defer)
        return {
          code: 451,
          enhanced: '4.3.5',
          lines: ['4.3.5 Server configuration problem, try again later'],
        };
      return undefined;
    }
    s.log.debug({ stage, action: verdict.action }, 'policy service answered');
    return undefined;
  }

  #policyRequest(front: SmtpFront, state: string, recipient: string): Record<string, string | number> {
    const mail = front.mailFrom;
    const size = mail?.args.SIZE;
    return {
      request: 'smtpd_access_policy',
      protocol_state: state,
      protocol_name: front.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP',
      client_address: front.remoteAddress,
      client_name: 'unknown',
      reverse_client_name: 'unknown',
      helo_name: front.helo,
      sender: mail?.address ?? '',
      recipient,
      recipient_count: front.recipients,
      queue_id: '',
      instance: `${front.id}.${front.transaction}`,
      size: typeof size === 'string' ? size : 0,
    };
  }

  /**
   * With the policy service asked at the end of DATA: the message streams to the backend as usual,
   * but its end waits for the answer; a refusal fails the stream, so the backend never gets the
   * final dot (the transaction is aborted there) and the client gets the policy's reply.
   */
  #policyGate(live: Live): { transform: Transform; refusal: () => Reply | undefined } | undefined {
    const policy = this.#shaping.policy;
    if (!policy?.config.at.includes('data')) return undefined;
    let refused: Reply | undefined;
    let size = 0;
    const transform = new Transform({
      transform(chunk: Buffer, _enc, done: TransformCallback) {
        size += chunk.length;
        done(null, chunk);
      },
      flush: (done: TransformCallback) => {
        const request = { ...this.#policyRequest(live.front, 'END-OF-MESSAGE', ''), size };
        void policy.check(request, 'Message rejected').then((verdict) => {
          refused = this.#verdictReply(live.session, verdict, 'END-OF-MESSAGE');
          done(
            refused ? Object.assign(new Error('refused by the policy service'), { code: 'EPOLICY' }) : null,
          );
        });
      },
    });
    return { transform, refusal: () => refused };
  }

  /** RCPT replies >= 400 count; at the configured number the session is tarpitted. */
  #countRejected(live: Live, r: Reply): void {
    const { client, session: s } = live;
    const max = this.#shaping.config.tarpit.rejectedRecipients;
    if (client.allowed || r.code < 400) return;
    client.rejectedRecipients++;
    if (max > 0 && client.rejectedRecipients >= max && !client.tarpitted) {
      s.log.info({ rejected: client.rejectedRecipients, max }, 'too many rejected recipients');
      this.#tarpitMidway(client, 'rejected-recipients', s.log);
    }
  }

  #tarpitMidway(client: ClientState, reason: string, log: Logger): void {
    if (client.tarpitted) return;
    const tarpit = this.#shaping.config.tarpit;
    client.ticket = this.#shaping.tarpit.enter(reason, tarpit.maxSessions);
    if (client.ticket) log.info({ reason, delayMs: tarpit.delay }, 'session tarpitted');
    else log.warn({ reason, max: tarpit.maxSessions }, 'tarpit full; session goes on untarpitted');
  }

  #closed(front: SmtpFront): void {
    const live = this.#live.get(front);
    if (!live) return;
    this.#live.delete(front);
    live.client.release();
    live.session.close();
    this.#metrics.sessionsActive.dec();
    this.#metrics.sessionsTotal.inc({ listener: this.#config.name, outcome: 'closed' });
    live.session.log.debug('session closed');
  }

  get config(): ListenerConfig {
    return this.#config;
  }

  get sessions(): number {
    return this.#live.size;
  }

  /** Reload: new sessions use `config`; a new certificate applies to the next handshake. */
  update(config: ListenerConfig): void {
    this.#config = config;
    this.#configure(config);
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#net.once('error', onError);
      this.#net.listen(this.#config.listen.port, this.#config.listen.host, () => {
        this.#net.off('error', onError);
        this.#net.on('error', (err) => this.#log.error({ err: { message: err.message } }, 'listener error'));
        const addr = this.#net.address();
        if (addr && typeof addr === 'object') resolve({ host: addr.address, port: addr.port });
        else reject(new Error('listener has no address'));
      });
    });
  }

  /**
   * Stops accepting at once. Sessions between transactions get 421 4.3.2 as soon as they are idle;
   * a transaction in flight finishes. After `timeoutMs` whatever is left gets 421 and is closed.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    // Resolves once every accepted socket is gone (sessions and those still in the front door).
    const closed = new Promise<void>((resolve) => this.#net.close(() => resolve()));
    for (const socket of this.#pending) socket.destroy();
    // Replies held by the tarpit go out now: a drain does not wait on them.
    this.#shaping.tarpit.hurryAll();
    this.#closeIdle();
    const tick = setInterval(() => this.#closeIdle(), 100);
    const deadline = setTimeout(
      () => {
        this.#shaping.tarpit.hurryAll();
        for (const { front } of this.#live.values()) front.shutdown(replies.draining());
      },
      Math.max(timeoutMs, 1),
    );
    await closed;
    clearInterval(tick);
    clearTimeout(deadline);
  }

  #closeIdle(): void {
    for (const { front, session } of this.#live.values()) {
      if (!front.idle || !session.idle || this.#told.has(front)) continue;
      this.#told.add(front);
      front.shutdown(replies.draining());
    }
  }
}
