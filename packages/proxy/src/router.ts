// Chooses the pool for a recipient: routes in order, first match wins, otherwise the listener's pool.
// A route may match on recipient domain (exact or `*.example.com` for any subdomain), on a recipient
// map (the recipient is in it; the pool is the route's, else the map's value for the recipient),
// sender domain and listener name; every condition given must hold. A map that cannot answer makes
// the recipient unroutable for now (the session answers 451 4.3.0), never routed elsewhere.
import type { RouteConfig } from '@smtp-lb/config';
import type { LookupResult, RecipientMap } from '@smtp-lb/discovery';

interface CompiledRoute {
  recipient?: (domain: string) => boolean;
  map?: string;
  sender?: (domain: string) => boolean;
  listener?: string;
  /** '' with a map: the map's value. */
  pool: string;
}

export type RouteDecision =
  | { pool: string }
  /** A recipient map a route needed did not answer. */
  | { failed: { map: string; reason: string } };

function domainMatcher(pattern: string): (domain: string) => boolean {
  const p = pattern.toLowerCase();
  if (p.startsWith('*.')) {
    const suffix = p.slice(1); // ".example.com"
    return (d) => d.endsWith(suffix) && d.length > suffix.length;
  }
  return (d) => d === p;
}

/** Domain part of an address, lower case; '' for the null sender or an address without one. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/** A recipient map's answer for the recipient of one RCPT. */
export type MapLookup = (map: RecipientMap) => Promise<LookupResult>;

/**
 * Asks each map once for `address`: the listener's recipient check and a `recipientMap` route on
 * the same map share one answer (with `cacheTtl: 0` the source was asked twice per RCPT).
 */
export function rcptLookups(address: string): MapLookup {
  const asked = new Map<RecipientMap, Promise<LookupResult>>();
  return (map) => {
    let answer = asked.get(map);
    if (!answer) {
      answer = map.lookup(address);
      asked.set(map, answer);
    }
    return answer;
  };
}

export class Router {
  readonly #routes: CompiledRoute[];
  readonly #maps: (name: string) => RecipientMap | undefined;

  constructor(
    routes: readonly RouteConfig[],
    maps: (name: string) => RecipientMap | undefined = () => undefined,
  ) {
    this.#maps = maps;
    this.#routes = routes.map((r) => ({
      recipient: r.recipientDomain === undefined ? undefined : domainMatcher(r.recipientDomain),
      map: r.recipientMap,
      sender: r.senderDomain === undefined ? undefined : domainMatcher(r.senderDomain),
      listener: r.listener,
      pool: r.pool,
    }));
  }

  async route(
    listener: { name: string; pool: string },
    sender: string,
    recipient: string,
    lookup: MapLookup = rcptLookups(recipient),
  ): Promise<RouteDecision> {
    const rcptDomain = domainOf(recipient);
    const senderDomain = domainOf(sender);
    for (const r of this.#routes) {
      if (r.listener !== undefined && r.listener !== listener.name) continue;
      if (r.recipient && !r.recipient(rcptDomain)) continue;
      if (r.sender && !r.sender(senderDomain)) continue;
      if (r.map === undefined) return { pool: r.pool };
      const map = this.#maps(r.map);
      if (!map) return { failed: { map: r.map, reason: 'recipient map not loaded' } };
      const found = await lookup(map);
      if (found.status === 'error') return { failed: { map: r.map, reason: found.reason } };
      if (found.status === 'found' && (r.pool !== '' || found.value !== '')) {
        return { pool: r.pool || found.value };
      }
    }
    return { pool: listener.pool };
  }
}
