// DNSBL / DNSWL scoring like Postfix's postscreen: each zone that lists the client (optionally only
// with certain answers, `127.0.0.[2..11]`) adds its weight, negative for allow lists; a score at or
// above the threshold marks the client. Answers are cached for their TTL ("not listed" for
// negativeTtl). A zone that errs or does not answer within the timeout counts 0: fail open.
import { Resolver } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import type { DnsblConfig, DnsblZone } from '@smtp-lb/config';
import { expandIPv6, plainAddress } from './cidr.js';

export interface ZoneResult {
  zone: string;
  weight: number;
  /** The A records the zone answered with (empty: not listed, or not counted by the filter). */
  answers: string[];
  /** 'error' when the zone failed or timed out (it counted 0). */
  status: 'listed' | 'clean' | 'error';
}

export interface DnsblScore {
  score: number;
  listed: boolean;
  zones: ZoneResult[];
}

type Octet = Array<[number, number]>;

/** `127.0.0.[2..11]` → per octet, a list of inclusive ranges (syntax checked by the config). */
export function compileCode(pattern: string): (address: string) => boolean {
  const octets: Octet[] = (pattern.match(/\[[^\]]*\]|[^.]+/g) ?? []).map((part) =>
    (part.startsWith('[') ? part.slice(1, -1).split(';') : [part]).map((item) => {
      const [lo, hi] = item.split('..');
      return [Number(lo), Number(hi ?? lo)] as [number, number];
    }),
  );
  return (address) => {
    const parts = address.split('.').map(Number);
    return parts.length === 4 && parts.every((n, i) => octets[i]!.some(([lo, hi]) => n >= lo && n <= hi));
  };
}

/** The name to look up: reversed octets (IPv4) or nibbles (IPv6), then the zone. */
export function queryName(address: string, zone: string): string {
  const a = plainAddress(address);
  if (isIPv4(a)) return `${a.split('.').reverse().join('.')}.${zone}`;
  const nibbles = expandIPv6(a)
    .map((g) => g.padStart(4, '0'))
    .join('')
    .split('')
    .reverse();
  return `${nibbles.join('.')}.${zone}`;
}

interface Cached {
  answers: string[];
  expires: number;
}

const MAX_CACHE = 100_000;
const NOT_LISTED = new Set(['ENOTFOUND', 'ENODATA']);

export class DnsblChecker {
  readonly #config: DnsblConfig;
  readonly #resolver: Resolver;
  readonly #filters: Map<DnsblZone, ((a: string) => boolean)[]>;
  readonly #cache = new Map<string, Cached>();

  constructor(config: DnsblConfig) {
    this.#config = config;
    this.#resolver = new Resolver({ timeout: config.timeout, tries: 1 });
    if (config.resolvers.length > 0) {
      this.#resolver.setServers(
        config.resolvers.map((r) => (r.host.includes(':') ? `[${r.host}]:${r.port}` : `${r.host}:${r.port}`)),
      );
    }
    this.#filters = new Map(config.zones.map((z) => [z, z.codes.map(compileCode)]));
  }

  get config(): DnsblConfig {
    return this.#config;
  }

  async score(address: string): Promise<DnsblScore> {
    const zones = await Promise.all(this.#config.zones.map((z) => this.#zone(z, address)));
    const score = zones.reduce((sum, z) => sum + (z.status === 'listed' ? z.weight : 0), 0);
    return { score, listed: score >= this.#config.threshold, zones };
  }

  /** Stops answering lookups in flight (they count 0). */
  close(): void {
    this.#resolver.cancel();
  }

  async #zone(zone: DnsblZone, address: string): Promise<ZoneResult> {
    const name = queryName(address, zone.zone);
    let answers: string[];
    try {
      answers = await this.#lookup(name);
    } catch {
      return { zone: zone.zone, weight: zone.weight, answers: [], status: 'error' };
    }
    const filters = this.#filters.get(zone) ?? [];
    const counted = filters.length === 0 ? answers : answers.filter((a) => filters.some((f) => f(a)));
    return {
      zone: zone.zone,
      weight: zone.weight,
      answers: counted,
      status: counted.length > 0 ? 'listed' : 'clean',
    };
  }

  async #lookup(name: string): Promise<string[]> {
    const now = Date.now();
    const hit = this.#cache.get(name);
    if (hit && hit.expires > now) return hit.answers;
    if (hit) this.#cache.delete(name);
    let answers: string[];
    let ttl: number;
    try {
      const records = await this.#withTimeout(this.#resolver.resolve4(name, { ttl: true }));
      answers = records.map((r) => r.address);
      ttl = Math.min(...records.map((r) => r.ttl)) * 1000;
    } catch (err) {
      if (!NOT_LISTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      answers = [];
      ttl = this.#config.negativeTtl;
    }
    if (ttl > 0) {
      // Oldest first out: a Map iterates in insertion order.
      if (this.#cache.size >= MAX_CACHE) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(name, { answers, expires: now + ttl });
    }
    return answers;
  }

  /** c-ares has its own timeout; this bound also covers a resolver that never answers at all. */
  #withTimeout<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(Object.assign(new Error('DNSBL timeout'), { code: 'ETIMEOUT' })),
        this.#config.timeout,
      );
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  }
}
