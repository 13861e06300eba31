// The destination hosts of a recipient domain (RFC 5321 5.1): its MX records by preference (equal
// preferences in random order), each MX host's A then AAAA addresses; a domain without MX records is
// its own MX (the implicit MX, preference 0); a lone "." MX is a null MX (RFC 7505: the domain takes
// no mail). CNAMEs are followed (at most 8, loops detected). Answers are cached for their TTL
// (negative ones for their SOA minimum), failures are not; concurrent lookups of a domain share one.
import { DnsClient, type DnsRecord, type DnsResult, RCODE, type RecordType } from './dns-client.js';

export interface MxAddress {
  /** The MX host name, lower case, without the final dot. */
  host: string;
  preference: number;
  address: string;
}

export type MxLookup =
  | { kind: 'hosts'; addresses: MxAddress[]; implicit: boolean; ttl: number }
  /** RFC 7505: the domain says it accepts no mail. */
  | { kind: 'null-mx'; ttl: number }
  /** NXDOMAIN: the domain does not exist. */
  | { kind: 'no-domain'; ttl: number }
  /** The domain exists but neither it nor its MX hosts have an address. */
  | { kind: 'no-address'; ttl: number; detail: string }
  | { kind: 'error'; reason: DnsFailure; detail: string };

export type DnsFailure = 'timeout' | 'servfail' | 'refused' | 'malformed' | 'network' | 'cname-loop';

export interface MxResolverOptions {
  servers: ConstructorParameters<typeof DnsClient>[0]['servers'];
  timeout: number;
  /** Addresses returned at most (the first by preference). */
  maxHosts: number;
  /** Longest cache time (ms). */
  maxTtl: number;
  /** For tests: the order among equal preferences. */
  random?: () => number;
  now?: () => number;
}

const MAX_CNAME_HOPS = 8;
const DEFAULT_NEGATIVE_TTL_S = 60;
const MAX_CACHE = 10_000;

type Followed =
  | { ok: true; nx: boolean; records: DnsRecord[]; ttl: number }
  | { ok: false; reason: DnsFailure; detail: string };

export class MxResolver {
  readonly #dns: DnsClient;
  readonly #o: MxResolverOptions;
  readonly #cache = new Map<string, { result: MxLookup; expires: number }>();
  readonly #inFlight = new Map<string, Promise<MxLookup>>();

  constructor(options: MxResolverOptions) {
    this.#o = options;
    this.#dns = new DnsClient({ servers: options.servers, timeout: options.timeout });
  }

  /** The destinations of `domain`; never throws. */
  lookup(domain: string): Promise<MxLookup> {
    const key = domain.toLowerCase().replace(/\.$/, '');
    const now = this.#now();
    const cached = this.#cache.get(key);
    if (cached && cached.expires > now) return Promise.resolve(cached.result);
    const running = this.#inFlight.get(key);
    if (running) return running;
    const p = this.#resolve(key)
      .catch((err: Error): MxLookup => ({ kind: 'error', reason: 'malformed', detail: err.message }))
      .then((result) => {
        this.#inFlight.delete(key);
        if (result.kind !== 'error' && result.ttl > 0) {
          if (this.#cache.size >= MAX_CACHE) this.#cache.delete(this.#cache.keys().next().value!);
          this.#cache.set(key, {
            result,
            expires: this.#now() + Math.min(result.ttl * 1000, this.#o.maxTtl),
          });
        }
        return result;
      });
    this.#inFlight.set(key, p);
    return p;
  }

  async #resolve(domain: string): Promise<MxLookup> {
    const mx = await this.#follow(domain, 'MX');
    if (!mx.ok) return { kind: 'error', reason: mx.reason, detail: mx.detail };
    if (mx.nx) return { kind: 'no-domain', ttl: mx.ttl };
    const exchanges = orderMx(mx.records, this.#o.random ?? Math.random);
    if (exchanges === 'null') return { kind: 'null-mx', ttl: mx.ttl };
    const implicit = exchanges.length === 0;
    const targets = implicit ? [{ host: domain, preference: 0 }] : exchanges;
    const addresses: MxAddress[] = [];
    let ttl = mx.ttl;
    let failure: { reason: DnsFailure; detail: string } | undefined;
    for (const t of targets) {
      if (addresses.length >= this.#o.maxHosts) break;
      const found = await Promise.all([this.#follow(t.host, 'A'), this.#follow(t.host, 'AAAA')]);
      for (const f of found) {
        if (!f.ok) {
          failure ??= { reason: f.reason, detail: `${t.host}: ${f.detail}` };
          continue;
        }
        if (f.records.length === 0) continue;
        ttl = Math.min(ttl, f.ttl);
        for (const r of f.records) {
          if (addresses.length < this.#o.maxHosts && typeof r.data === 'string') {
            addresses.push({ host: t.host, preference: t.preference, address: r.data });
          }
        }
      }
    }
    if (addresses.length > 0) return { kind: 'hosts', addresses, implicit, ttl };
    // Nothing to connect to: a DNS failure on the way is temporary; otherwise the domain has no address.
    if (failure) return { kind: 'error', ...failure };
    return {
      kind: 'no-address',
      ttl,
      detail: `no A or AAAA record for ${targets.map((t) => t.host).join(', ')}`,
    };
  }

  /** One question, following CNAMEs inside answers and by new queries, at most MAX_CNAME_HOPS. */
  async #follow(name: string, type: RecordType): Promise<Followed> {
    let current = name.toLowerCase();
    const seen = new Set([current]);
    let ttl = Number.POSITIVE_INFINITY;
    for (let queries = 0; queries <= MAX_CNAME_HOPS; queries++) {
      const res: DnsResult = await this.#dns.query(current, type);
      if (!res.ok) return { ok: false, reason: res.error, detail: res.detail };
      let chased = false;
      for (;;) {
        const cname = res.answers.find((a) => a.type === 'CNAME' && same(a.name, current));
        if (!cname || typeof cname.data !== 'string') break;
        ttl = Math.min(ttl, cname.ttl ?? 0);
        current = bare(cname.data);
        chased = true;
        if (seen.has(current) || seen.size > MAX_CNAME_HOPS) {
          return { ok: false, reason: 'cname-loop', detail: `CNAME loop or chain too long at ${current}` };
        }
        seen.add(current);
      }
      const records = res.answers.filter((a) => a.type === type && same(a.name, current));
      if (records.length > 0) {
        for (const r of records) ttl = Math.min(ttl, r.ttl ?? 0);
        return { ok: true, nx: false, records, ttl };
      }
      // The server stopped at a CNAME whose target it does not serve: ask for the target.
      if (chased && res.rcode === RCODE.NOERROR) continue;
      return {
        ok: true,
        nx: res.rcode === RCODE.NXDOMAIN,
        records: [],
        ttl: Math.min(ttl, negativeTtl(res.authorities)),
      };
    }
    return { ok: false, reason: 'cname-loop', detail: `more than ${MAX_CNAME_HOPS} CNAMEs from ${name}` };
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }
}

/**
 * MX records → exchanges by preference, equal preferences shuffled, duplicates dropped; 'null' for a
 * null MX (RFC 7505 3: a single record whose exchange is "."; a "." among other records is ignored).
 */
export function orderMx(
  records: readonly DnsRecord[],
  random: () => number,
): Array<{ host: string; preference: number }> | 'null' {
  const mx: Array<{ host: string; preference: number; r: number }> = [];
  for (const a of records) {
    if (a.type !== 'MX' || typeof a.data !== 'object' || a.data === null) continue;
    const d = a.data as { preference?: unknown; exchange?: unknown };
    if (typeof d.preference !== 'number' || typeof d.exchange !== 'string') continue;
    mx.push({ host: bare(d.exchange), preference: d.preference, r: random() });
  }
  const real = mx.filter((m) => m.host !== '');
  if (real.length === 0 && mx.length > 0) return 'null';
  real.sort((a, b) => a.preference - b.preference || a.r - b.r);
  const seen = new Set<string>();
  const out: Array<{ host: string; preference: number }> = [];
  for (const m of real) {
    if (seen.has(m.host)) continue;
    seen.add(m.host);
    out.push({ host: m.host, preference: m.preference });
  }
  return out;
}

/** RFC 2308 5: a negative answer is cached for min(SOA TTL, SOA MINIMUM). */
function negativeTtl(authorities: readonly DnsRecord[]): number {
  const soa = authorities.find((a) => a.type === 'SOA');
  if (!soa || typeof soa.data !== 'object' || soa.data === null) return DEFAULT_NEGATIVE_TTL_S;
  const min = (soa.data as { minimum?: unknown }).minimum;
  return Math.min(soa.ttl ?? 0, typeof min === 'number' ? min : DEFAULT_NEGATIVE_TTL_S);
}

function bare(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function same(a: string, b: string): boolean {
  return bare(a) === b;
}
