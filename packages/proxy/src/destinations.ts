// Where a transaction goes when its pool is one of the outbound kinds (DESIGN.md "Placements"):
// `mx`, the recipient domain's MX hosts in order of preference, or `originalDestination`, the
// address the intercepted client dialled (the trusted PROXY v2 header's destination). Either way a
// destination in `denyDestinations` or on one of the node's own listeners is never connected to:
// no SSRF into the operator's networks through the node, no loops back into it.
import { networkInterfaces } from 'node:os';
import type { DestinationLimits, PoolConfig } from '@smtp-lb/config';
import { backendId, type DiscoveredBackend, type MxLookup, MxResolver } from '@smtp-lb/discovery';
import type { Reply } from '@smtp-lb/upstream';
import type { Logger } from './logger.js';
import { replies } from './replies.js';
import { CidrList, plainAddress } from './shaping/cidr.js';
import type { Client, Endpoint } from './transaction.js';

/** What the binder may connect to for one transaction. */
export interface BindTargets {
  /** The same key means the same destinations: a kept connection may serve it again. */
  readonly key: string;
  /** Read again on every try (a pool's discovered set may change while a session waits). */
  backends(): readonly DiscoveredBackend[];
  /** Try them in this order (MX preference) rather than by the pool's policy. */
  readonly ordered: boolean;
}

export type TargetsResult = { ok: true; targets: BindTargets } | { ok: false; reply: Reply };

/** The node's own sockets (listeners and admin), bound addresses. */
export type OwnEndpoints = () => readonly Endpoint[];

const WILDCARD = new Set(['0.0.0.0', '::', '']);
const LOOPBACK = new CidrList(['127.0.0.0/8', '::1/128']);

export class Destinations {
  readonly #pool: PoolConfig;
  readonly #limits: DestinationLimits;
  readonly #deny: CidrList;
  readonly #own: OwnEndpoints;
  readonly #mx: MxResolver | undefined;
  readonly #caps: Map<string, number>;

  constructor(pool: PoolConfig, own: OwnEndpoints) {
    const limits = pool.mx ?? pool.originalDestination;
    if (!limits) throw new Error(`pool ${pool.name} is not a destination pool`);
    this.#pool = pool;
    this.#limits = limits;
    this.#own = own;
    this.#deny = new CidrList(limits.denyDestinations);
    this.#caps = new Map(limits.hosts.map((h) => [h.host, h.maxConnections]));
    this.#mx = pool.mx
      ? new MxResolver({
          servers: pool.mx.resolvers,
          timeout: pool.mx.timeout,
          maxHosts: pool.mx.maxHosts,
          maxTtl: pool.mx.maxTtl,
        })
      : undefined;
  }

  static of(pool: PoolConfig): boolean {
    return pool.mx !== undefined || pool.originalDestination !== undefined;
  }

  /** MX pools bind per recipient domain; an original-destination pool per session. */
  get perDomain(): boolean {
    return this.#mx !== undefined;
  }

  async targets(domain: string, client: Client, log: Logger): Promise<TargetsResult> {
    return this.#mx ? this.#mxTargets(this.#mx, domain, log) : this.#originalTargets(client, log);
  }

  async #mxTargets(mx: MxResolver, domain: string, log: Logger): Promise<TargetsResult> {
    const pool = this.#pool.name;
    if (domain === '') return { ok: false, reply: replies.noSuchDomain() };
    const found: MxLookup = await mx.lookup(domain);
    switch (found.kind) {
      case 'null-mx':
        log.info({ pool, domain }, 'recipient domain has a null MX');
        return { ok: false, reply: replies.nullMx() };
      case 'no-domain':
        log.info({ pool, domain }, 'recipient domain does not exist');
        return { ok: false, reply: replies.noSuchDomain() };
      case 'no-address':
        log.info({ pool, domain, detail: found.detail }, 'recipient domain has no mail host address');
        return { ok: false, reply: replies.noMailHost() };
      case 'error':
        log.warn(
          { pool, domain, reason: found.reason, detail: found.detail },
          'DNS lookup of the recipient domain failed',
        );
        return { ok: false, reply: replies.dnsFailure() };
    }
    const port = this.#pool.mx!.port;
    const backends: DiscoveredBackend[] = [];
    for (const a of found.addresses) {
      const why = this.#refusal(a.address, port);
      if (why) {
        log.warn({ pool, domain, mx: a.host, address: a.address, why }, 'MX host address refused');
        continue;
      }
      backends.push(this.#backend(a.address, port, a.host));
    }
    if (backends.length === 0) return { ok: false, reply: replies.destinationDenied() };
    const frozen = Object.freeze(backends);
    return { ok: true, targets: { key: `${pool}/${domain}`, backends: () => frozen, ordered: true } };
  }

  async #originalTargets(client: Client, log: Logger): Promise<TargetsResult> {
    const pool = this.#pool.name;
    if (!client.proxied) {
      log.warn({ pool }, 'no original destination: the session did not come with a trusted PROXY header');
      return { ok: false, reply: replies.noOriginalDestination() };
    }
    const { address, port } = client.destination;
    const why = this.#refusal(address, port);
    if (why) {
      log.warn({ pool, destination: backendId(address, port), why }, 'original destination refused');
      return { ok: false, reply: replies.destinationDenied() };
    }
    const only = Object.freeze([this.#backend(address, port, undefined)]);
    return { ok: true, targets: { key: `${pool}/${only[0]!.id}`, backends: () => only, ordered: true } };
  }

  /** Why `address:port` may not be connected to, or undefined. */
  #refusal(address: string, port: number): string | undefined {
    const a = plainAddress(address);
    if (this.#deny.has(a)) return 'denyDestinations';
    if (this.#isOwn(a, port)) return 'one of our own listeners';
    return undefined;
  }

  #isOwn(address: string, port: number): boolean {
    for (const e of this.#own()) {
      if (e.port !== port) continue;
      if (plainAddress(e.address) === address) return true;
      // A wildcard listener also answers every loopback address, not only those of the interfaces.
      if (WILDCARD.has(e.address) && (LOOPBACK.has(address) || localAddresses().has(address))) return true;
    }
    return false;
  }

  #backend(address: string, port: number, name: string | undefined): DiscoveredBackend {
    const cap =
      this.#caps.get(address) ?? (name ? this.#caps.get(name) : undefined) ?? this.#limits.maxConnections;
    const b: DiscoveredBackend = {
      id: backendId(address, port),
      host: address,
      port,
      weight: 1,
      maxConnections: cap,
    };
    if (name !== undefined) b.name = name;
    return b;
  }
}

/** Addresses of this machine's interfaces (a wildcard listener is on each of them). */
function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces()))
    for (const i of list ?? []) out.add(plainAddress(i.address));
  return out;
}
