// A pool fed by Consul: one health blocking query loop per pool (/v1/health/service/<name>?passing),
// keeping the last known set while Consul is unreachable, with jittered back-off on errors and every
// request abortable, so close() returns at once and leaves no timer behind.
import { readFileSync } from 'node:fs';
import { type ConsulHealthEntry, type MetaProblem, sameBackends, toBackends } from './consul-entry.js';
import { type ConsulHttpOptions, consulGet } from './consul-http.js';
import { DiscoveryError } from './errors.js';
import type { BackendSource, DiscoveredBackend, DiscoveryLogger } from './types.js';

export interface ConsulSourceOptions {
  pool: string;
  service: string;
  tag?: string;
  datacenter?: string;
  /** `ca` is the path of a PEM file of extra CAs, read once here. */
  consul: { address: string; token?: string; ca?: string };
  defaultMaxConnections: number;
  logger?: DiscoveryLogger;
  /** Every failed query (the source retries by itself). */
  onError?: (err: DiscoveryError) => void;
  /** The source went stale (Consul unreachable, last set kept) or fresh again. */
  onStaleChange?: (stale: boolean) => void;
  /** Longest a blocking query waits for a change (default 30 s; Consul caps it at 10 min). */
  waitMs?: number;
  /** Back-off after failed queries: doubles from min to max, with jitter (default 250 ms .. 10 s). */
  retry?: { minDelayMs: number; maxDelayMs: number };
}

// Consul adds up to wait/16 of jitter to a blocking query; past that plus this slack the peer is gone.
const TIMEOUT_SLACK_MS = 5_000;
// Rate limit (Consul's blocking-query guidance): never more than one query per this interval, even if
// Consul keeps answering at once.
const MIN_QUERY_INTERVAL_MS = 50;

export class ConsulSource implements BackendSource {
  readonly pool: string;
  #ready = false;
  #stale = false;
  #closed = false;
  #backends: readonly DiscoveredBackend[] = Object.freeze([]);
  readonly #listeners = new Set<(backends: readonly DiscoveredBackend[]) => void>();
  readonly #opts: ConsulSourceOptions;
  readonly #http: ConsulHttpOptions;
  readonly #waitMs: number;
  readonly #retry: { minDelayMs: number; maxDelayMs: number };
  readonly #reported = new Set<string>();
  #inflight: AbortController | undefined;
  #sleeping: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  readonly #loop: Promise<void>;

  constructor(opts: ConsulSourceOptions) {
    this.pool = opts.pool;
    this.#opts = opts;
    this.#waitMs = opts.waitMs ?? 30_000;
    this.#retry = opts.retry ?? { minDelayMs: 250, maxDelayMs: 10_000 };
    this.#http = { address: opts.consul.address };
    if (opts.consul.token) this.#http.token = opts.consul.token;
    if (opts.consul.ca) {
      try {
        this.#http.ca = readFileSync(opts.consul.ca, 'utf8');
      } catch (cause) {
        throw new DiscoveryError('DISCOVERY_CA_UNREADABLE', `cannot read consul CA file ${opts.consul.ca}`, {
          cause,
        });
      }
    }
    this.#loop = this.#run();
  }

  get ready(): boolean {
    return this.#ready;
  }

  get stale(): boolean {
    return this.#stale;
  }

  current(): readonly DiscoveredBackend[] {
    return this.#backends;
  }

  onChange(listener: (backends: readonly DiscoveredBackend[]) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#inflight?.abort();
    if (this.#sleeping) {
      clearTimeout(this.#sleeping.timer);
      this.#sleeping.wake();
    }
    await this.#loop;
  }

  #path(index: number): string {
    const q = new URLSearchParams({ passing: 'true' });
    if (this.#opts.tag) q.set('tag', this.#opts.tag);
    if (this.#opts.datacenter) q.set('dc', this.#opts.datacenter);
    if (index > 0) {
      q.set('index', String(index));
      q.set('wait', `${Math.ceil(this.#waitMs / 1000)}s`);
    }
    return `v1/health/service/${encodeURIComponent(this.#opts.service)}?${q}`;
  }

  async #run(): Promise<void> {
    let index = 0;
    let failures = 0;
    while (!this.#closed) {
      const started = Date.now();
      const ac = new AbortController();
      this.#inflight = ac;
      try {
        const timeout =
          index > 0 ? this.#waitMs + this.#waitMs / 16 + TIMEOUT_SLACK_MS : TIMEOUT_SLACK_MS * 2;
        const answer = await consulGet(this.#http, this.#path(index), ac.signal, timeout);
        if (this.#closed) break;
        if (!Array.isArray(answer.body)) {
          throw new DiscoveryError('DISCOVERY_CONSUL_BAD_ANSWER', 'health answer is not a list');
        }
        index = nextIndex(index, answer.index);
        failures = 0;
        this.#apply(answer.body as ConsulHealthEntry[]);
      } catch (err) {
        if (this.#closed) break;
        failures += 1;
        // After a failure the index may belong to a Consul that is gone (restart, other server): start over.
        index = 0;
        this.#failed(
          err instanceof DiscoveryError
            ? err
            : new DiscoveryError('DISCOVERY_CONSUL_BAD_ANSWER', String(err), { cause: err }),
          failures,
        );
        await this.#sleep(this.#backoff(failures));
        continue;
      } finally {
        this.#inflight = undefined;
      }
      await this.#sleep(MIN_QUERY_INTERVAL_MS - (Date.now() - started));
    }
  }

  #apply(entries: readonly ConsulHealthEntry[]): void {
    const problems: MetaProblem[] = [];
    const next = toBackends(entries, this.#opts.defaultMaxConnections, problems);
    for (const p of problems) {
      // A blocking query re-reads the same bad value at every change; one line per value is enough.
      const key = `${p.serviceId}\0${p.key}\0${p.value}`;
      if (this.#reported.has(key)) continue;
      this.#reported.add(key);
      this.#opts.logger?.warn(
        { pool: this.pool, service: this.#opts.service, serviceId: p.serviceId, key: p.key, value: p.value },
        `consul service meta ignored: ${p.reason}`,
      );
    }
    if (this.#stale) {
      this.#stale = false;
      this.#opts.logger?.info({ pool: this.pool, service: this.#opts.service }, 'consul reachable again');
      this.#opts.onStaleChange?.(false);
    }
    const first = !this.#ready;
    this.#ready = true;
    if (!first && sameBackends(this.#backends, next)) return;
    this.#backends = Object.freeze(next.map((b) => Object.freeze(b)));
    for (const listener of this.#listeners) {
      try {
        listener(this.#backends);
      } catch (err) {
        this.#opts.logger?.warn({ pool: this.pool, err }, 'discovery change listener threw');
      }
    }
  }

  #failed(err: DiscoveryError, failures: number): void {
    this.#opts.onError?.(err);
    this.#opts.logger?.warn(
      {
        pool: this.pool,
        service: this.#opts.service,
        code: err.code,
        failures,
        backends: this.#backends.length,
      },
      `consul query failed, keeping last known backends: ${err.message}`,
    );
    if (!this.#stale) {
      this.#stale = true;
      this.#opts.onStaleChange?.(true);
    }
  }

  #backoff(failures: number): number {
    const { minDelayMs, maxDelayMs } = this.#retry;
    const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(failures - 1, 30));
    // Jitter in [ceiling/2, ceiling): nodes that lost Consul together do not come back in lockstep.
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.#closed) return Promise.resolve();
    return new Promise((wake) => {
      const timer = setTimeout(() => {
        this.#sleeping = undefined;
        wake();
      }, ms);
      this.#sleeping = { timer, wake };
    });
  }
}

/**
 * Consul's blocking-query rules: an index that went backwards means the state was rebuilt (restart,
 * snapshot restore), so start over from 0; an index of 0 or a missing one must not be sent back as 0,
 * which would answer at once forever, so use 1.
 */
export function nextIndex(previous: number, answered: number): number {
  if (!Number.isFinite(answered) || answered <= 0) return 1;
  if (answered < previous) return 0;
  return answered;
}
