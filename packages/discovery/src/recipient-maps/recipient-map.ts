// What every driver shares: the lookup order (lookup-keys.ts), a per-node cache of answers with a
// TTL (shorter for "unknown"; failures are never cached), one lookup in flight per address, and a
// timeout. A failed or slow lookup is an error, never "unknown": the caller answers 4xx, not 550.
import { lookupKeys } from './lookup-keys.js';
import type { LookupResult, MapDriver, MapHit, MapLogger, RecipientMapStatus } from './types.js';

export type LookupOutcome = 'found' | 'unknown' | 'error' | 'cache_found' | 'cache_unknown';

export interface RecipientMapOptions {
  name: string;
  driver: MapDriver;
  cacheTtlMs: number;
  negativeCacheTtlMs: number;
  cacheSize: number;
  /** Characters that start an address extension; '' is none. */
  recipientDelimiter: string;
  timeoutMs: number;
  logger?: MapLogger;
  /** Every lookup; `seconds` only for those that asked the source. */
  onLookup?: (outcome: LookupOutcome, seconds?: number) => void;
  /** Milliseconds clock for the cache (tests pin it). */
  now?: () => number;
}

interface CacheEntry {
  expires: number;
  hit: MapHit | undefined;
}

/** One warn line per this interval at most while a map keeps failing (an attack would flood the log). */
const FAILURE_LOG_INTERVAL_MS = 1000;

export class RecipientMap {
  readonly name: string;
  readonly #opts: RecipientMapOptions;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<LookupResult>>();
  readonly #now: () => number;
  #asked = false;
  #lastError: { at: number; reason: string } | undefined;
  #failing = false;
  #lastFailureLog = 0;
  #suppressed = 0;

  constructor(opts: RecipientMapOptions) {
    this.name = opts.name;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  get kind(): MapDriver['kind'] {
    return this.#opts.driver.kind;
  }

  lookup(address: string): Promise<LookupResult> {
    const keys = lookupKeys(address, this.#opts.recipientDelimiter);
    const id = keys[0];
    if (id === undefined) return Promise.resolve({ status: 'unknown', cached: false });
    const cached = this.#cache.get(id);
    if (cached && cached.expires > this.#now()) {
      this.#opts.onLookup?.(cached.hit ? 'cache_found' : 'cache_unknown');
      return Promise.resolve(
        cached.hit
          ? { status: 'found', key: cached.hit.key, value: cached.hit.value, cached: true }
          : { status: 'unknown', cached: true },
      );
    }
    if (cached) this.#cache.delete(id);
    let running = this.#inflight.get(id);
    if (!running) {
      running = this.#ask(id, keys).finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, running);
    }
    return running;
  }

  async #ask(id: string, keys: string[]): Promise<LookupResult> {
    this.#asked = true;
    const started = performance.now();
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`no answer within ${this.#opts.timeoutMs} ms`);
        ac.abort(err);
        reject(err);
      }, this.#opts.timeoutMs);
    });
    try {
      const hit = await Promise.race([this.#opts.driver.lookup(keys, ac.signal), timeout]);
      this.#opts.onLookup?.(hit ? 'found' : 'unknown', (performance.now() - started) / 1000);
      this.#remember(id, hit);
      this.#failing = false;
      return hit
        ? { status: 'found', key: hit.key, value: hit.value, cached: false }
        : { status: 'unknown', cached: false };
    } catch (err) {
      const reason = describe(err);
      this.#opts.onLookup?.('error', (performance.now() - started) / 1000);
      this.#failed(reason);
      return { status: 'error', reason };
    } finally {
      clearTimeout(timer);
    }
  }

  #remember(id: string, hit: MapHit | undefined): void {
    const ttl = hit ? this.#opts.cacheTtlMs : this.#opts.negativeCacheTtlMs;
    if (ttl <= 0 || this.#opts.cacheSize <= 0) return;
    // Oldest first: a Map iterates in insertion order.
    while (this.#cache.size >= this.#opts.cacheSize) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
    this.#cache.set(id, { expires: this.#now() + ttl, hit });
  }

  #failed(reason: string): void {
    const now = Date.now();
    this.#lastError = { at: now, reason };
    this.#failing = true;
    if (now - this.#lastFailureLog < FAILURE_LOG_INTERVAL_MS) {
      this.#suppressed++;
      return;
    }
    this.#opts.logger?.warn(
      {
        map: this.name,
        kind: this.kind,
        reason,
        ...(this.#suppressed ? { alsoFailed: this.#suppressed } : {}),
      },
      'recipient lookup failed',
    );
    this.#lastFailureLog = now;
    this.#suppressed = 0;
  }

  /** Forget every cached answer (the source changed). */
  clearCache(): void {
    this.#cache.clear();
  }

  status(): RecipientMapStatus {
    const driver = this.#opts.driver.state();
    const state =
      !driver.up || this.#failing ? 'failing' : this.#asked || driver.entries !== undefined ? 'ok' : 'idle';
    const detail = this.#failing && this.#lastError ? this.#lastError.reason : driver.detail;
    return {
      name: this.name,
      kind: this.kind,
      state,
      ...(detail === undefined ? {} : { detail }),
      ...(driver.entries === undefined ? {} : { entries: driver.entries }),
      cached: this.#cache.size,
      ...(this.#lastError ? { lastError: new Date(this.#lastError.at).toISOString() } : {}),
    };
  }

  /** SIGHUP: drivers with a source to re-read do so; the cache is cleared either way. */
  async reload(): Promise<void> {
    await this.#opts.driver.reload?.();
    this.clearCache();
  }

  close(): Promise<void> {
    return this.#opts.driver.close();
  }
}

/** ldapts errors say little in `message` (" Code: 0x31"); their name says what happened. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const message = err.message.trim();
  if (err.name === 'Error' || err.name === '') return message;
  return message === '' ? err.name : `${err.name}: ${message}`;
}
