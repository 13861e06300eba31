// One listener: an smtp-server in front, its hooks handed to a ProxySession per client. smtp-server
// does the command parsing, STARTTLS and the end-of-DATA detection; the session decides every reply
// after MAIL. No reverse DNS on the hot path; CHUNKING is never advertised (smtp-server has no BDAT).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ListenerConfig } from '@smtp-lb/config';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { isPositive, replies } from './replies.js';
import { queueRelay } from './reply-relay.js';
import { ProxySession, type SessionDeps } from './session.js';

export class Listener {
  #config: ListenerConfig;
  readonly #server: SMTPServer;
  readonly #sessions = new Map<string, ProxySession>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  #draining = false;
  /** Connections already sent their 421 during a drain. */
  readonly #told = new WeakSet<object>();

  constructor(config: ListenerConfig, deps: SessionDeps, log: Logger) {
    this.#config = config;
    this.#log = log.child({ listener: config.name });
    this.#metrics = deps.metrics;
    const tls = config.tls;
    const options: SMTPServerOptions = {
      name: config.hostname,
      secure: tls?.implicit ?? false,
      ...(tls ? { key: readFileSync(tls.key), cert: readFileSync(tls.cert) } : {}),
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
        const id = session.id || randomBytes(8).toString('hex');
        const log = this.#log.child({ sid: id, client: `${session.remoteAddress}:${session.remotePort}` });
        // A session keeps the listener settings it started with, across a reload.
        this.#sessions.set(session.id, new ProxySession(session, this.#config, deps, log));
        this.#metrics.sessionsActive.inc();
        log.debug('session opened');
        cb();
      },
      onMailFrom: (address, session, cb) => {
        const s = this.#sessions.get(session.id);
        if (!s) return cb(queueRelay(session, replies.backendLost()));
        if (this.#draining) return cb(queueRelay(session, replies.draining()));
        const reply = s.mailFrom(address);
        if (reply) {
          s.log.info({ from: address.address, code: reply.code }, 'MAIL refused');
          return cb(queueRelay(session, reply));
        }
        cb();
      },
      onRcptTo: (address, session, cb) => {
        const s = this.#sessions.get(session.id);
        if (!s) return cb(queueRelay(session, replies.backendLost()));
        s.rcptTo(address).then(
          (reply) => {
            const err = queueRelay(session, reply);
            if (!isPositive(reply)) s.log.info({ to: address.address, code: reply.code }, 'RCPT refused');
            cb(isPositive(reply) ? undefined : err);
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
        s.data(stream).then(
          (reply) => {
            const err = queueRelay(session, reply);
            cb(isPositive(reply) ? null : err, isPositive(reply) ? reply.lines.join(' ') : undefined);
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
  }

  #closed(session: SMTPServerSession): void {
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
      this.#server.updateSecureContext({
        key: readFileSync(config.tls.key),
        cert: readFileSync(config.tls.cert),
      });
    }
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.server.once('error', onError);
      this.#server.listen(this.#config.listen.port, this.#config.listen.host, () => {
        this.#server.server.off('error', onError);
        const addr = this.#server.server.address();
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
    this.#server.options.closeTimeout = Math.max(timeoutMs, 1);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#closeIdle();
    const tick = setInterval(() => this.#closeIdle(), 100);
    await closed;
    clearInterval(tick);
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
}
