// Per-client counters for traffic shaping (the proxy's admission step): concurrent sessions per
// client address and per network prefix, and sliding-window rates (connections, messages) per
// address. MemoryClientLimits counts for one node; RedisClientLimits (client-limits-redis.ts)
// for the whole cluster, with session entries that expire when their node stops renewing them.
import { once } from './types.js';

/** One counted session; release it when the session ends. Idempotent. */
export interface ClientSlot {
  release(): void;
}

export interface SessionCaps {
  /** Concurrent sessions of one address; 0 is no cap. */
  perAddress: number;
  /** Concurrent sessions of one prefix (/24, /64); 0 is no cap. */
  perPrefix: number;
}

export type OpenSessionResult =
  | { ok: true; slot: ClientSlot; address: number; prefix: number }
  | { ok: false; limit: 'address' | 'prefix'; address: number; prefix: number };

export interface RateResult {
  /** False when the count, this event included, is over the limit. */
  ok: boolean;
  /** Events in the sliding window, this one included (rounded down). */
  count: number;
}

export interface ClientLimits {
  readonly mode: 'memory' | 'redis';
  /**
   * Counts a session of `address` (inside network `prefix`) when both counts are below their caps.
   * A refused session is not counted. Without Redis reachable the answer is ok (fail open).
   */
  openSession(address: string, prefix: string, caps: SessionCaps): Promise<OpenSessionResult>;
  /**
   * Counts one event of `kind` (e.g. 'conn', 'msg') for `key` in a sliding window of `windowMs`
   * (two fixed windows, the older one weighted by how much of it still overlaps: memory O(1) per
   * key, error bounded by the rate change between the two windows). Refused events count too, as
   * Postfix's anvil counts refused connections: a client has to slow down to get back in.
   */
  hit(kind: string, key: string, limit: number, windowMs: number): Promise<RateResult>;
  /** Whether one more event of `kind` for `key` would be over `limit`, without counting one. */
  peek(kind: string, key: string, limit: number, windowMs: number): Promise<RateResult>;
  /** Forgets the events of `kind` for `key` (a lifted suspension starts afresh). */
  reset(kind: string, key: string): Promise<void>;
  close(): Promise<void>;
}

/** The sliding-window estimate shared by both implementations (and mirrored in rate-hit-1.lua). */
export class SlidingWindow {
  window = -1;
  current = 0;
  previous = 0;

  /** Counts one event; the estimate of events in the sliding window (fractional, not rounded). */
  hit(now: number, windowMs: number): number {
    const idx = Math.floor(now / windowMs);
    if (idx !== this.window) {
      this.previous = idx === this.window + 1 ? this.current : 0;
      this.current = 0;
      this.window = idx;
    }
    this.current += 1;
    return this.estimate(now, windowMs);
  }

  /** The estimate at `now` without counting an event. */
  peek(now: number, windowMs: number): number {
    const idx = Math.floor(now / windowMs);
    if (idx === this.window) return this.estimate(now, windowMs);
    const previous = idx === this.window + 1 ? this.current : 0;
    return (previous * (windowMs - (now - idx * windowMs))) / windowMs;
  }

  private estimate(now: number, windowMs: number): number {
    const idx = Math.floor(now / windowMs);
    const elapsed = now - idx * windowMs;
    return (this.previous * (windowMs - elapsed)) / windowMs + this.current;
  }
}

export class MemoryClientLimits implements ClientLimits {
  readonly mode = 'memory' as const;
  readonly #addresses = new Map<string, number>();
  readonly #prefixes = new Map<string, number>();
  readonly #rates = new Map<string, { w: SlidingWindow; expires: number }>();
  readonly #now: () => number;
  #hits = 0;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  async openSession(address: string, prefix: string, caps: SessionCaps): Promise<OpenSessionResult> {
    const a = this.#addresses.get(address) ?? 0;
    const p = this.#prefixes.get(prefix) ?? 0;
    if (caps.perAddress > 0 && a >= caps.perAddress)
      return { ok: false, limit: 'address', address: a, prefix: p };
    if (caps.perPrefix > 0 && p >= caps.perPrefix)
      return { ok: false, limit: 'prefix', address: a, prefix: p };
    this.#addresses.set(address, a + 1);
    this.#prefixes.set(prefix, p + 1);
    const slot: ClientSlot = {
      release: once(() => {
        decrement(this.#addresses, address);
        decrement(this.#prefixes, prefix);
      }),
    };
    return { ok: true, slot, address: a + 1, prefix: p + 1 };
  }

  async hit(kind: string, key: string, limit: number, windowMs: number): Promise<RateResult> {
    const now = this.#now();
    const id = `${kind}\u0000${key}`;
    let entry = this.#rates.get(id);
    if (!entry) {
      entry = { w: new SlidingWindow(), expires: 0 };
      this.#rates.set(id, entry);
    }
    entry.expires = now + 2 * windowMs;
    const estimate = entry.w.hit(now, windowMs);
    const count = Math.floor(estimate);
    // Keys of clients gone for two windows count nothing: sweep now and then, not per call.
    if (++this.#hits % 1024 === 0)
      for (const [k, e] of this.#rates) if (e.expires <= now) this.#rates.delete(k);
    // Decided on the unrounded estimate: four quick events across a window edge are still four.
    return { ok: estimate <= limit, count };
  }

  async peek(kind: string, key: string, limit: number, windowMs: number): Promise<RateResult> {
    const entry = this.#rates.get(`${kind}\u0000${key}`);
    const estimate = entry ? entry.w.peek(this.#now(), windowMs) : 0;
    return { ok: estimate + 1 <= limit, count: Math.floor(estimate) };
  }

  async reset(kind: string, key: string): Promise<void> {
    this.#rates.delete(`${kind}\u0000${key}`);
  }

  async close(): Promise<void> {
    this.#rates.clear();
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}
