// The front door of a listener: every accepted socket passes here before the SMTP front sees it.
// 1. PROXY v1/v2 header, required from trusted peers and refused from everyone else; the address
//    in it is the client from then on. 2. Admission: allow list, connection rate, concurrent
//    sessions per address and prefix (cluster-wide), DNSBL score. 3. Implicit TLS handshake.
// 4. Greeting delay, watching for early talkers. Each step may refuse (a reply and a close, or just
// a close for PROXY trouble, with a log line), tarpit the session, or let it through; the bytes
// read on the way are put back so the SMTP front reads them.
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { ListenerConfig, ShapingAction } from '@smtp-lb/config';
import type { Reply } from '@smtp-lb/upstream';
import { sessionId } from '../front/smtp-front.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { replies, wireReply } from '../replies.js';
import { CidrList, plainAddress } from './cidr.js';
import { ClientState } from './client-state.js';
import { Intake } from './intake.js';
import {
  type Endpoint,
  PROXY_V1_PREFIX,
  PROXY_V2_SIGNATURE,
  type ProxyParse,
  parseProxyHeader,
  startsWithProxySignature,
} from './proxy-header.js';
import type { ShapingRuntime } from './shaping-runtime.js';
import type { TarpitSocket } from './tarpit.js';

export interface Admission {
  /** What the SMTP front gets: the socket, its TLS wrap, or the tarpit around either. */
  socket: Socket | TLSSocket | TarpitSocket;
  id: string;
  remoteAddress: string;
  remotePort: number;
  /** The PROXY header's destination (the address the client dialled), when one said so. */
  destination: Endpoint | undefined;
  client: ClientState;
  log: Logger;
}

export interface FrontDoorDeps {
  listener: () => ListenerConfig;
  shaping: ShapingRuntime;
  log: Logger;
  metrics: Metrics;
  /** For implicit TLS listeners. */
  secureContext: () => SecureContext | undefined;
  draining: () => boolean;
}

type Verdict = { tarpit?: string; refuse?: Reply; why?: string };

export class FrontDoor {
  readonly #d: FrontDoorDeps;
  #trusted: { source: ListenerConfig['proxyProtocol']; list: CidrList } | undefined;
  #clients: { source: readonly string[]; list: CidrList } | undefined;

  constructor(deps: FrontDoorDeps) {
    this.#d = deps;
  }

  #trustedList(lc: ListenerConfig): CidrList | undefined {
    if (!lc.proxyProtocol) return undefined;
    if (this.#trusted?.source !== lc.proxyProtocol) {
      this.#trusted = { source: lc.proxyProtocol, list: new CidrList(lc.proxyProtocol.trusted) };
    }
    return this.#trusted.list;
  }

  #clientList(lc: ListenerConfig): CidrList | undefined {
    if (!lc.clients) return undefined;
    if (this.#clients?.source !== lc.clients)
      this.#clients = { source: lc.clients, list: new CidrList(lc.clients) };
    return this.#clients.list;
  }

  /** Resolves with the admitted session, or undefined when the socket was refused (and closed). */
  async admit(raw: Socket): Promise<Admission | undefined> {
    const lc = this.#d.listener();
    const sh = this.#d.shaping;
    const id = sessionId();
    const peer = plainAddress(raw.remoteAddress ?? '');
    let address = peer;
    let port = raw.remotePort ?? 0;
    let destination: Endpoint | undefined;
    let log = this.#d.log.child({ sid: id, client: `${peer}:${port}` });
    raw.on('error', (err) =>
      log.debug({ err: { message: err.message } }, 'client socket error before the session'),
    );
    let intake = new Intake(raw);
    const count = (outcome: string) => this.#d.metrics.sessionsTotal.inc({ listener: lc.name, outcome });
    const drop = (outcome: string) => {
      count(outcome);
      intake.discard();
      raw.destroy();
      return undefined;
    };

    const trusted = this.#trustedList(lc)?.has(peer) === true;
    if (trusted) {
      let parsed: ProxyParse = { state: 'more' };
      const got = await intake.wait(lc.proxyProtocol!.timeout, (buf) => {
        parsed = parseProxyHeader(buf);
        return parsed.state !== 'more';
      });
      if (got === 'closed') return drop('closed');
      if (got === 'timeout') {
        log.warn(
          { timeoutMs: lc.proxyProtocol!.timeout, bytes: intake.buffered.length },
          'no complete PROXY header from a trusted peer in time; disconnected',
        );
        return drop('refused-proxy');
      }
      const p = parsed as ProxyParse;
      if (p.state === 'error') {
        log.warn({ code: p.code, reason: p.reason }, 'bad PROXY header; disconnected');
        return drop('refused-proxy');
      }
      if (p.state === 'done') {
        intake.consume(p.length);
        if (p.source) {
          address = plainAddress(p.source.address);
          port = p.source.port;
        }
        if (p.destination) {
          destination = { address: plainAddress(p.destination.address), port: p.destination.port };
        }
        log = this.#d.log.child({ sid: id, client: `${address}:${port}`, via: peer });
        log.debug({ version: p.version }, 'PROXY header read');
      }
    }
    const untrustedHeader = () => {
      if (trusted || !startsWithProxySignature(intake.buffered)) return false;
      log.warn('PROXY header from a peer not in proxyProtocol.trusted; disconnected');
      return true;
    };

    let socket: Socket | TLSSocket = raw;
    const client = new ClientState(address, sh.allowed(address));
    raw.once('close', () => client.release());
    let encrypted = false;
    const finish = (reply: Reply, outcome: string) => {
      // Before an implicit TLS handshake there is no way to say anything the client could read.
      if (lc.tls?.implicit && !encrypted) return drop(outcome);
      count(outcome);
      intake.discard();
      client.release();
      (socket.destroyed ? raw : socket).end(wireReply(reply));
      // A client that never reads would keep the socket: it goes when the reply is out or soon after.
      setTimeout(() => raw.destroy(), 5000).unref();
      return undefined;
    };

    // An outbound listener relays for the operator's own hosts only: it must never be an open relay.
    const clients = this.#clientList(lc);
    if (clients && !clients.has(address)) {
      log.warn({ listener: lc.name }, "client not in the outbound listener's clients; refused");
      return finish(replies.notAClient(lc.hostname), 'refused-not-a-client');
    }
    if (!client.allowed) {
      const v = await this.#admission(client, log);
      if (raw.destroyed || intake.closed) return drop('closed');
      if (untrustedHeader()) return drop('refused-proxy');
      if (v.refuse) return finish(v.refuse, `refused-${v.why}`);
      if (v.tarpit && !this.#enterTarpit(client, v.tarpit, log))
        return finish(replies.tarpitFull(), 'refused-tarpit-full');
    }
    if (this.#d.draining()) return finish(replies.draining(), 'refused-draining');

    if (lc.tls?.implicit) {
      intake.release();
      const tls = await this.#handshake(raw, lc, log);
      if (!tls) return drop('closed');
      socket = tls;
      encrypted = true;
      intake = new Intake(tls);
    }

    const greeting = sh.config.greeting;
    if (!client.allowed && greeting.delay > 0) {
      const got = await intake.wait(greeting.delay, (buf) => buf.length > 0);
      if (got === 'closed') return drop('closed');
      if (got === 'ok') {
        if (untrustedHeader()) return drop('refused-proxy');
        const bytes = intake.buffered.length;
        log.info(
          { bytes, action: greeting.earlyTalker, delayMs: greeting.delay },
          'early talker: the client spoke before the greeting',
        );
        if (greeting.earlyTalker === 'reject') return finish(replies.earlyTalker(), 'refused-early-talker');
        // What it said was not an answer to anything: it is dropped, not replayed.
        intake.discard();
        if (!client.tarpitted && !this.#enterTarpit(client, 'early-talker', log)) {
          return finish(replies.tarpitFull(), 'refused-tarpit-full');
        }
      }
    }
    if (untrustedHeader()) return drop('refused-proxy');
    if (!trusted && !encrypted)
      this.#watchFirstBytes(raw, () => {
        count('refused-proxy');
        log.warn('PROXY header from a peer not in proxyProtocol.trusted; disconnected');
      });
    intake.release();
    // A client that shut down its sending side before the greeting has nothing left to say.
    if (socket.destroyed || intake.closed) return drop('closed');
    let out: Socket | TLSSocket | TarpitSocket = socket;
    if (client.tarpitted) {
      out = sh.tarpit.wrap(socket, sh.config.tarpit.delay);
      client.wrapped = true;
    }
    return { socket: out, id, remoteAddress: address, remotePort: port, destination, client, log };
  }

  /**
   * A PROXY header that arrives after the hand-over (no greeting delay to catch it before) is
   * still seen first: this listener runs ahead of the front's on the same chunk, and a destroyed
   * socket gets no reply from the front. It looks at the first 12 bytes only, then goes.
   */
  #watchFirstBytes(socket: Socket, refused: () => void): void {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk.subarray(0, 12 - head.length)]);
      if (startsWithProxySignature(head)) {
        socket.off('data', onData);
        refused();
        socket.destroy();
        return;
      }
      const prefixOf = (sig: Buffer) => head.equals(sig.subarray(0, head.length));
      if (head.length >= 12 || !(prefixOf(PROXY_V1_PREFIX) || prefixOf(PROXY_V2_SIGNATURE))) {
        socket.off('data', onData);
      }
    };
    socket.prependListener('data', onData);
  }

  #enterTarpit(client: ClientState, reason: string, log: Logger): boolean {
    const sh = this.#d.shaping;
    if (sh.enterTarpit(client, reason, log)) return true;
    log.warn({ reason, max: sh.config.tarpit.maxSessions }, 'tarpit full; refusing the session');
    return false;
  }

  async #admission(client: ClientState, log: Logger): Promise<Verdict> {
    const sh = this.#d.shaping;
    const { limits, dnsbl } = sh.config;
    const act = (action: ShapingAction, reason: string, reply: Reply): Verdict =>
      action === 'reject' ? { refuse: reply, why: reason } : { tarpit: reason };
    // One Redis round trip for the counters: the session is counted at the same time as the
    // connection rate is asked. A session refused below still holds its count until finish() or
    // the close releases it (client.release()), a moment later.
    const [rate, score, open] = await Promise.all([
      limits.connectionRate.limit > 0
        ? sh.limits.hit('conn', client.address, limits.connectionRate.limit, limits.connectionRate.window)
        : undefined,
      dnsbl && sh.dnsbl ? sh.dnsbl.score(client.address) : undefined,
      limits.sessionsPerAddress > 0 || limits.sessionsPerPrefix > 0
        ? sh.limits.openSession(client.address, client.prefix, {
            perAddress: limits.sessionsPerAddress,
            perPrefix: limits.sessionsPerPrefix,
          })
        : undefined,
    ]);
    if (open?.ok) client.hold(open.slot);
    let tarpit: string | undefined;
    if (rate && !rate.ok) {
      log.info(
        {
          count: rate.count,
          limit: limits.connectionRate.limit,
          windowMs: limits.connectionRate.window,
          action: limits.action,
        },
        'client over its connection rate',
      );
      const v = act(limits.action, 'connection-rate', replies.connectionRate());
      if (v.refuse) return v;
      tarpit ??= v.tarpit;
    }
    if (score) {
      const zones = score.zones
        .filter((z) => z.status !== 'clean')
        .map((z) => ({ zone: z.zone, status: z.status, answers: z.answers, weight: z.weight }));
      if (score.listed) {
        log.info(
          { score: score.score, threshold: dnsbl!.threshold, zones, action: dnsbl!.action },
          'client listed by DNSBL',
        );
        const v = act(dnsbl!.action, 'dnsbl', replies.dnsbl(client.address));
        if (v.refuse) return v;
        tarpit ??= v.tarpit;
      } else if (zones.length > 0) {
        log.debug({ score: score.score, zones }, 'DNSBL score below the threshold');
      }
    }
    if (open && !open.ok) {
      const perAddress = open.limit === 'address';
      log.info(
        {
          limit: perAddress ? 'sessionsPerAddress' : 'sessionsPerPrefix',
          prefix: client.prefix,
          count: perAddress ? open.address : open.prefix,
          max: perAddress ? limits.sessionsPerAddress : limits.sessionsPerPrefix,
          action: limits.action,
        },
        'client over its concurrent session limit',
      );
      const reply = perAddress ? replies.tooManySessions() : replies.tooManyFromNetwork();
      const v = act(limits.action, perAddress ? 'sessions-per-address' : 'sessions-per-prefix', reply);
      if (v.refuse) return v;
      tarpit ??= v.tarpit;
    }
    return tarpit ? { tarpit } : {};
  }

  #handshake(raw: Socket, lc: ListenerConfig, log: Logger): Promise<TLSSocket | undefined> {
    return new Promise((resolve) => {
      const tls = new TLSSocket(raw, { isServer: true, secureContext: this.#d.secureContext() });
      const timer = setTimeout(() => tls.destroy(new Error('TLS handshake timeout')), lc.timeouts.idle);
      const failed = (err?: Error) => {
        clearTimeout(timer);
        log.info({ err: { message: err?.message ?? 'closed' } }, 'implicit TLS handshake failed');
        tls.destroy();
        raw.destroy();
        resolve(undefined);
      };
      const closed = () => failed();
      tls.once('error', failed);
      tls.once('close', closed);
      tls.once('secure', () => {
        clearTimeout(timer);
        tls.off('error', failed);
        tls.off('close', closed);
        tls.pause();
        resolve(tls);
      });
    });
  }
}
