// One listener: its own TCP server, a front door per accepted socket (PROXY header, admission,
// implicit TLS, greeting delay; shaping/front-door.ts), then an smtp-server in front, its hooks
// handed to a ProxySession per client. smtp-server does the command parsing, STARTTLS and the
// end-of-DATA detection; the session decides every reply after MAIL. No reverse DNS on the hot
// path; CHUNKING is never advertised (smtp-server has no BDAT).

import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ListenerConfig } from '@smtp-lb/config';
import type { Reply } from '@smtp-lb/upstream';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerOptions,
  type SMTPServerSession,
} from 'smtp-server';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { isPositive, replies } from './replies.js';
import { queueRelay } from './reply-relay.js';
import { ProxySession, type SessionDeps } from './session.js';
import type { ClientState } from './shaping/client-state.js';
import { FrontDoor } from './shaping/front-door.js';
import type { PolicyVerdict } from './shaping/policy-client.js';
import { shapingReplies } from './shaping/shaping-replies.js';
import type { ShapingRuntime } from './shaping/shaping-runtime.js';

export class Listener {
  #config: ListenerConfig;
  readonly #server: SMTPServer;
  readonly #net: Server;
  readonly #door: FrontDoor;
  readonly #shaping: ShapingRuntime;
  readonly #sessions = new Map<string, ProxySession>();
  /** Shaping state of each session smtp-server has, by session id. */
  readonly #clients = new Map<string, ClientState>();
  /** Sockets still in the front door. */
  readonly #pending = new Set<Socket>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  #secure: SecureContext | undefined;
  #draining = false;
  /** Connections already sent their 421 during a drain. */
  readonly #told = new WeakSet<object>();

  constructor(config: ListenerConfig, deps: SessionDeps, log: Logger, shaping: ShapingRuntime) {
    this.#config = config;
    this.#log = log.child({ listener: config.name });
    this.#metrics = deps.metrics;
    this.#shaping = shaping;
    const tls = config.tls;
    const pem = tls ? { key: readFileSync(tls.key), cert: readFileSync(tls.cert) } : undefined;
    this.#secure = tls?.implicit && pem ? createSecureContext(pem) : undefined;
    const options: SMTPServerOptions = {
      name: config.hostname,
      // Implicit TLS is done by the front door; smtp-server is told the session is secure.
      secure: tls?.implicit ?? false,
      ...(pem ?? {}),
      hideSTARTTLS: !tls || tls.implicit,
      size: config.maxMessageSize,
      hideSize: false,
      hidePIPELINING: false,
      hide8BITMIME: false,
      hideSMTPUTF8: false,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: false,
      disabledCommands: ['AUTH'],
      authOptional: true,
      disableReverseLookup: true,
      useXClient: false,
      useXForward: false,
      socketTimeout: config.timeouts.idle,
      maxClients: config.maxSessions,
      logger: false,
      onConnect: (session, cb) => {
        if (this.#draining) {
          const err = queueRelay(session, replies.draining());
          return cb(err);
        }
        const client = this.#clients.get(session.id);
        const log = this.#log.child({
          sid: session.id,
          client: `${session.remoteAddress}:${session.remotePort}`,
        });
        // A session keeps the listener settings it started with, across a reload.
        this.#sessions.set(session.id, new ProxySession(session, this.#config, deps, log));
        this.#metrics.sessionsActive.inc();
        log.debug({ tarpit: client?.ticket?.reason }, 'session opened');
        cb();
      },
      onMailFrom: (address, session, cb) => {
        const s = this.#sessions.get(session.id);
        if (!s) return cb(queueRelay(session, replies.backendLost()));
        if (this.#draining) return cb(queueRelay(session, replies.draining()));
        this.#mailFrom(s, session, address).then(
          (reply) => this.#answer(session, reply, cb),
          (err: unknown) => {
            s.log.error({ err }, 'MAIL failed unexpectedly');
            cb(queueRelay(session, replies.backendLost()));
          },
        );
      },
      onRcptTo: (address, session, cb) => {
        const s = this.#sessions.get(session.id);
        if (!s) return cb(queueRelay(session, replies.backendLost()));
        this.#rcptTo(s, session, address).then(
          (reply) => {
            if (!isPositive(reply)) s.log.info({ to: address.address, code: reply.code }, 'RCPT refused');
            this.#countRejected(session, reply);
            this.#answer(session, reply, cb);
          },
          (err: unknown) => {
            s.log.error({ err }, 'RCPT failed unexpectedly');
            cb(queueRelay(session, replies.backendLost()));
          },
        );
      },
      onData: (stream, session, cb) => {
        const s = this.#sessions.get(session.id);
        if (!s) {
          stream.resume();
          return cb(queueRelay(session, replies.backendLost()));
        }
        // A client that vanishes mid-DATA destroys the stream with an error; the session handles it.
        stream.on('error', () => {});
        const gate = this.#policyGate(s, session);
        const body = gate ? stream.pipe(gate.transform) : stream;
        if (gate) stream.on('error', (err) => gate.transform.destroy(err));
        s.data(body).then(
          (reply) => {
            const refused = gate?.refusal();
            if (refused) {
              s.log.info(
                { code: refused.code, reply: refused.lines[0] },
                'message refused by the policy service',
              );
            }
            const final = refused ?? reply;
            this.#answer(session, final, (err) =>
              cb(err ?? null, isPositive(final) ? final.lines.join(' ') : undefined),
            );
          },
          (err: unknown) => {
            s.log.error({ err }, 'DATA failed unexpectedly');
            stream.resume();
            cb(queueRelay(session, replies.backendLost()));
          },
        );
      },
      onClose: (session) => this.#closed(session),
    };
    this.#server = new SMTPServer(options);
    this.#server.on('error', (err) =>
      this.#log.warn({ err: { message: err.message } }, 'client connection error'),
    );
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
        this.#clients.set(admitted.id, admitted.client);
        admitted.socket.once('close', () => this.#clients.delete(admitted.id));
        this.#server.connect(
          admitted.socket as Socket,
          {
            id: admitted.id,
            remoteAddress: admitted.remoteAddress,
            remotePort: admitted.remotePort,
          } as unknown as Parameters<SMTPServer['connect']>[1],
        );
      },
      (err: unknown) => {
        this.#pending.delete(socket);
        this.#log.error({ err }, 'front door failed unexpectedly');
        socket.destroy();
      },
    );
  }

  /** Hands `reply` to smtp-server, after the tarpit delay when the session was tarpitted midway. */
  #answer(session: SMTPServerSession, reply: Reply | undefined, cb: (err?: Error | null) => void): void {
    const client = this.#clients.get(session.id);
    const send = () => {
      if (reply === undefined) return cb();
      const err = queueRelay(session, reply);
      cb(isPositive(reply) ? undefined : err);
    };
    // A tarpit set at admission is in the socket (every reply); one set midway delays the hooks' replies.
    if (client?.tarpitted && !client.wrapped) setTimeout(send, this.#shaping.config.tarpit.delay);
    else send();
  }

  async #mailFrom(
    s: ProxySession,
    session: SMTPServerSession,
    from: SMTPServerAddress,
  ): Promise<Reply | undefined> {
    const client = this.#clients.get(session.id);
    const rate = this.#shaping.config.limits.messageRate;
    if (client && !client.allowed && rate.limit > 0) {
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
    const reply = s.mailFrom(from);
    if (reply) s.log.info({ from: from.address, code: reply.code }, 'MAIL refused');
    return reply;
  }

  async #rcptTo(s: ProxySession, session: SMTPServerSession, to: SMTPServerAddress): Promise<Reply> {
    const policy = this.#shaping.policy;
    if (policy?.config.at.includes('rcpt')) {
      const verdict = await policy.check(
        this.#policyRequest(session, 'RCPT', to.address),
        `<${to.address}>: Recipient address rejected`,
      );
      const reply = this.#verdictReply(s, verdict, 'RCPT');
      if (reply) return reply;
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

  #policyRequest(
    session: SMTPServerSession,
    state: string,
    recipient: string,
  ): Record<string, string | number> {
    const env = session.envelope;
    const mail = env.mailFrom || undefined;
    const size = mail?.args ? (mail.args as Record<string, string>).SIZE : undefined;
    return {
      request: 'smtpd_access_policy',
      protocol_state: state,
      protocol_name: session.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP',
      client_address: session.remoteAddress,
      client_name: 'unknown',
      reverse_client_name: 'unknown',
      helo_name: session.hostNameAppearsAs || '',
      sender: mail?.address ?? '',
      recipient,
      recipient_count: env.rcptTo.length,
      queue_id: '',
      instance: `${session.id}.${session.transaction}`,
      size: size ?? 0,
    };
  }

  /**
   * With the policy service asked at the end of DATA: the message streams to the backend as usual,
   * but its end waits for the answer; a refusal fails the stream, so the backend never gets the
   * final dot (the transaction is aborted there) and the client gets the policy's reply.
   */
  #policyGate(
    s: ProxySession,
    session: SMTPServerSession,
  ): { transform: Transform; refusal: () => Reply | undefined } | undefined {
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
        const request = { ...this.#policyRequest(session, 'END-OF-MESSAGE', ''), size };
        void policy.check(request, 'Message rejected').then((verdict) => {
          refused = this.#verdictReply(s, verdict, 'END-OF-MESSAGE');
          done(
            refused ? Object.assign(new Error('refused by the policy service'), { code: 'EPOLICY' }) : null,
          );
        });
      },
    });
    return { transform, refusal: () => refused };
  }

  /** RCPT replies >= 400 count; at the configured number the session is tarpitted. */
  #countRejected(session: SMTPServerSession, reply: Reply): void {
    const client = this.#clients.get(session.id);
    const max = this.#shaping.config.tarpit.rejectedRecipients;
    if (!client || client.allowed || reply.code < 400) return;
    client.rejectedRecipients++;
    const s = this.#sessions.get(session.id);
    if (max > 0 && client.rejectedRecipients >= max && !client.tarpitted && s) {
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

  #closed(session: SMTPServerSession): void {
    this.#clients.get(session.id)?.release();
    this.#clients.delete(session.id);
    const s = this.#sessions.get(session.id);
    if (!s) return;
    this.#sessions.delete(session.id);
    s.close();
    this.#metrics.sessionsActive.dec();
    this.#metrics.sessionsTotal.inc({ listener: this.#config.name, outcome: 'closed' });
    s.log.debug('session closed');
  }

  get config(): ListenerConfig {
    return this.#config;
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  /** Reload: new sessions use `config`; a new certificate applies to the next handshake. */
  update(config: ListenerConfig): void {
    this.#config = config;
    this.#server.options.size = config.maxMessageSize;
    this.#server.options.socketTimeout = config.timeouts.idle;
    this.#server.options.maxClients = config.maxSessions;
    if (config.tls) {
      const pem = { key: readFileSync(config.tls.key), cert: readFileSync(config.tls.cert) };
      this.#server.updateSecureContext(pem);
      if (config.tls.implicit) this.#secure = createSecureContext(pem);
    }
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
        for (const conn of this.#server.connections as Set<SmtpConnection>) {
          queueRelay(conn.session, replies.draining());
          conn.send(421, 'Server shutting down');
          conn.close();
        }
      },
      Math.max(timeoutMs, 1),
    );
    await closed;
    clearInterval(tick);
    clearTimeout(deadline);
  }

  #closeIdle(): void {
    for (const conn of this.#server.connections as Set<SmtpConnection>) {
      const s = this.#sessions.get(conn.session.id);
      if ((s && !s.idle) || this.#told.has(conn)) continue;
      this.#told.add(conn);
      queueRelay(conn.session, replies.draining());
      conn.send(421, 'draining');
    }
  }
}

/** The parts of smtp-server's per-client connection a drain needs. */
interface SmtpConnection {
  session: SMTPServerSession;
  send(code: number, text: string): void;
  close(): void;
}
