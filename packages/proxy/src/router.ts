// Chooses the pool for a recipient: routes in order, first match wins, otherwise the listener's pool.
// A route may match on recipient domain (exact or `*.example.com` for any subdomain), sender domain and
// listener name; every condition given must hold.
import type { RouteConfig } from '@smtp-lb/config';

interface CompiledRoute {
  recipient?: (domain: string) => boolean;
  sender?: (domain: string) => boolean;
  listener?: string;
  pool: string;
}

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

export class Router {
  readonly #routes: CompiledRoute[];

  constructor(routes: readonly RouteConfig[]) {
    this.#routes = routes.map((r) => ({
      recipient: r.recipientDomain === undefined ? undefined : domainMatcher(r.recipientDomain),
      sender: r.senderDomain === undefined ? undefined : domainMatcher(r.senderDomain),
      listener: r.listener,
      pool: r.pool,
    }));
  }

  pool(listener: { name: string; pool: string }, sender: string, recipient: string): string {
    const rcptDomain = domainOf(recipient);
    const senderDomain = domainOf(sender);
    for (const r of this.#routes) {
      if (r.listener !== undefined && r.listener !== listener.name) continue;
      if (r.recipient && !r.recipient(rcptDomain)) continue;
      if (r.sender && !r.sender(senderDomain)) continue;
      return r.pool;
    }
    return listener.pool;
  }
}
