// One listener: its TCP server, its drain and the wiring of each accepted socket. `maxSessions` is
// checked first (it costs nothing), then the front door screens the socket (shaping/front-door.ts:
// PROXY header, admission, implicit TLS, greeting delay), then our SMTP front
// (front/smtp-front.ts) speaks SMTP for a ProxySession (session.ts) with its session checks
// (shaping/session-checks.ts). No reverse DNS on the hot path; CHUNKING is never advertised.

import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ListenerConfig } from '@smtp-lb/config';
import { Authenticator } from './auth/authenticator.js';
import type { SenderPolicy } from './auth/sender-policy.js';
import { type FrontOptions, SmtpFront, sessionId } from './front/smtp-front.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { replies, wireReply } from './replies.js';
import { ProxySession, type SessionDeps } from './session.js';
import { plainAddress } from './shaping/cidr.js';
import { FrontDoor } from './shaping/front-door.js';
import type { HostPolicy } from './shaping/host-policy.js';
import { SessionChecks, type SessionChecksDeps } from './shaping/session-checks.js';
import type { ShapingRuntime } from './shaping/shaping-runtime.js';

export class Listener {
  #config: ListenerConfig;
  readonly #net: Server;
  readonly #door: FrontDoor;
  readonly #shaping: ShapingRuntime;
  readonly #deps: SessionDeps;
  /** Every session past the front door. */
  readonly #live = new Set<SmtpFront>();
  /** Sockets still in the front door. */
  readonly #pending = new Set<Socket>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  /** For implicit TLS (the front door) and STARTTLS (the front). */
  #secure: SecureContext | undefined;
  #frontOptions!: FrontOptions;
  #checkDeps!: SessionChecksDeps;
  /** The listener's AUTH verifier; a reload makes a new one (and re-reads an htpasswd file). */
  #auth: Authenticator | undefined;
  readonly #senders: SenderPolicy;
  readonly #hosts: HostPolicy | undefined;
  #draining = false;
  readonly #isDraining = () => this.#draining;
  /** Sessions already sent their 421 during a drain. */
  readonly #told = new WeakSet<SmtpFront>();

  constructor(
    config: ListenerConfig,
    deps: SessionDeps,
    log: Logger,
    shaping: ShapingRuntime,
    senders: SenderPolicy,
    hosts?: HostPolicy,
  ) {
    this.#config = config;
    this.#senders = senders;
    this.#hosts = hosts;
    this.#deps = deps;
    this.#log = log.child({ listener: config.name });
    this.#metrics = deps.metrics;
    this.#shaping = shaping;
    this.#configure(config);
    this.#door = new FrontDoor({
      listener: () => this.#config,
      shaping,
      log: this.#log,
      metrics: this.#metrics,
      secureContext: () => this.#secure,
      draining: this.#isDraining,
    });
    // Paused: nothing is read until the front door asks for it (the PROXY header first). Half-open:
    // a client that shuts down its sending side still gets the replies to what it sent.
    this.#net = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => this.#accept(socket));
  }

  /** Settings for new sessions (a session keeps those it started with, across a reload). */
  #configure(config: ListenerConfig): void {
    const tls = config.tls;
    this.#secure = tls
      ? createSecureContext({ key: readFileSync(tls.key), cert: readFileSync(tls.cert) })
      : undefined;
    const starttls = tls && !tls.implicit ? this.#secure : undefined;
    this.#auth?.close();
    this.#auth = config.auth && new Authenticator(config.auth, this.#log);
    this.#frontOptions = {
      name: config.hostname,
      maxMessageSize: config.maxMessageSize,
      idleTimeout: config.timeouts.idle,
      commandTimeout: config.timeouts.command,
      minDataRate: config.timeouts.minDataRate,
      starttls: starttls ? () => starttls : undefined,
      auth: config.auth && { plaintext: config.auth.allowPlaintext },
      dsn: config.dsn,
    };
    this.#checkDeps = {
      shaping: this.#shaping,
      metrics: this.#metrics,
      listener: config,
      auth: this.#auth,
      senders: this.#senders,
      ...(this.#hosts ? { hosts: this.#hosts } : {}),
      recipientMap: this.#deps.recipientMap,
    };
  }

  #accept(socket: Socket): void {
    if (this.#draining) {
      socket.destroy();
      return;
    }
    // The cheapest check first: a client refused for it costs no DNSBL lookup, no Redis call and no
    // greeting delay (sessions still in the front door count: they hold those already).
    if (this.#live.size + this.#pending.size >= this.#config.maxSessions) {
      this.#refuseFull(socket);
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
        const config = this.#config;
        const session = new ProxySession(
          {
            client: {
              id: admitted.id,
              address: admitted.remoteAddress,
              port: admitted.remotePort,
              destination: admitted.destination ?? {
                address: plainAddress(socket.localAddress ?? ''),
                port: socket.localPort ?? 0,
              },
              proxied: admitted.destination !== undefined,
              secure: config.tls?.implicit ?? false,
            },
            listener: config,
            checks: new SessionChecks(this.#checkDeps, admitted.client, admitted.log),
            scan: this.#deps.scanners.forSession(config, admitted.id, admitted.log),
            draining: this.#isDraining,
            log: admitted.log,
          },
          this.#deps,
        );
        const front = new SmtpFront(admitted.socket, session, this.#frontOptions);
        this.#live.add(front);
        this.#metrics.sessionsActive.inc();
        socket.once('close', () => {
          this.#live.delete(front);
          this.#metrics.sessionsActive.dec();
          this.#metrics.sessionsTotal.inc({ listener: config.name, outcome: 'closed' });
          session.log.debug('session closed');
        });
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

  /** `maxSessions` reached: 421 and close, before anything else is spent on the socket. */
  #refuseFull(socket: Socket): void {
    const config = this.#config;
    this.#metrics.sessionsTotal.inc({ listener: config.name, outcome: 'refused-max-sessions' });
    this.#log.warn(
      {
        sid: sessionId(),
        client: `${plainAddress(socket.remoteAddress ?? '')}:${socket.remotePort}`,
        max: config.maxSessions,
      },
      'too many sessions on this listener',
    );
    socket.on('error', () => socket.destroy());
    // Before an implicit TLS handshake nothing we could say would be read.
    if (config.tls?.implicit) {
      socket.destroy();
      return;
    }
    socket.end(wireReply(replies.tooManyClients(config.hostname)));
    // A client that never reads would keep the socket: it goes when the reply is out or soon after.
    setTimeout(() => socket.destroy(), 5000).unref();
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
        for (const front of this.#live) front.shutdown(replies.draining());
      },
      Math.max(timeoutMs, 1),
    );
    await closed;
    this.#auth?.close();
    clearInterval(tick);
    clearTimeout(deadline);
  }

  #closeIdle(): void {
    for (const front of this.#live) {
      if (!front.idle || this.#told.has(front)) continue;
      this.#told.add(front);
      front.shutdown(replies.draining());
    }
  }
}
