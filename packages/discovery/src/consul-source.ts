// A pool fed by Consul: one watch (the `consul` client's blocking-query loop over
// /v1/health/service/<name>?passing) per pool, keeping the last known set while Consul is unreachable,
// with jittered back-off on errors and every request abortable, so close() returns at once and leaves
// no timer behind. What the client lacks is wrapped here; the package README lists it.
import { readFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import Consul from 'consul';
import { type ConsulHealthEntry, type MetaProblem, sameBackends, toBackends } from './consul-entry.js';
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
  readonly #client: Consul;
  readonly #waitMs: number;
  readonly #retry: { minDelayMs: number; maxDelayMs: number };
  readonly #reported = new Set<string>();
  #watch: ReturnType<Consul['watch']> | undefined;
  #sleeping: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  readonly #loop: Promise<void>;

  constructor(opts: ConsulSourceOptions) {
    this.pool = opts.pool;
    this.#opts = opts;
    this.#waitMs = opts.waitMs ?? 30_000;
    this.#retry = opts.retry ?? { minDelayMs: 250, maxDelayMs: 10_000 };
    let ca: string | undefined;
    if (opts.consul.ca) {
      try {
        ca = readFileSync(opts.consul.ca, 'utf8');
      } catch (cause) {
        throw new DiscoveryError('DISCOVERY_CA_UNREADABLE', `cannot read consul CA file ${opts.consul.ca}`, {
          cause,
        });
      }
    }
    const url = new URL(opts.consul.address);
    const secure = url.protocol === 'https:';
    this.#client = new Consul({
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(url.port || (secure ? 443 : 80)),
      secure,
      // The client takes a private CA only through an agent of our own.
      ...(secure && ca ? { agent: new HttpsAgent({ keepAlive: true, ca }) } : {}),
      ...(opts.consul.token ? { defaults: { token: opts.consul.token } } : {}),
    });
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
    this.#watch?.end();
    if (this.#sleeping) {
      clearTimeout(this.#sleeping.timer);
      this.#sleeping.wake();
    }
    await this.#loop;
    this.#client.destroy();
  }

  /**
   * One watch per period of contact: the first error ends it (maxAttempts 0), and after our back-off a
   * new one starts from index 0, since an index may belong to a Consul that is gone (restart, other
   * server), and its first answer always counts as a change, which is what ends the stale state.
   */
  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      const err = await this.#watchOnce(() => {
        failures = 0;
      });
      if (this.#closed) break;
      failures += 1;
      this.#failed(err, failures);
      await this.#sleep(this.#backoff(failures));
    }
  }

  /** Runs one watch until it fails (resolves with the error) or the source closes. */
  #watchOnce(answered: () => void): Promise<DiscoveryError> {
    return new Promise((resolve) => {
      const options: Record<string, unknown> = {
        service: this.#opts.service,
        passing: true,
        wait: `${Math.ceil(this.#waitMs / 1000)}s`,
        // Consul adds up to wait/16 to a blocking query; past that plus the slack the peer is gone.
        timeout: this.#waitMs + this.#waitMs / 16 + TIMEOUT_SLACK_MS,
      };
      if (this.#opts.tag) options.tag = this.#opts.tag;
      if (this.#opts.datacenter) options.dc = this.#opts.datacenter;
      const watch = this.#client.watch({
        method: this.#query(),
        options: options as Record<string, string>,
        maxAttempts: 0,
      });
      this.#watch = watch;
      let failure: DiscoveryError | undefined;
      watch.on('change', (data: unknown) => {
        if (!Array.isArray(data)) {
          failure = new DiscoveryError('DISCOVERY_CONSUL_BAD_ANSWER', 'health answer is not a list');
          watch.end();
          return;
        }
        answered();
        this.#apply(data as ConsulHealthEntry[]);
      });
      watch.on('error', (err: unknown) => {
        failure ??= consulError(err, this.#opts.consul.address);
      });
      watch.on('end', () => {
        this.#watch = undefined;
        resolve(failure ?? new DiscoveryError('DISCOVERY_CONSUL_UNREACHABLE', 'consul watch ended'));
      });
    });
  }

  /**
   * health.service as the watch calls it, with what the watch lacks: at most one query per
   * MIN_QUERY_INTERVAL_MS (Consul may answer at once, again and again), and a missing or zero
   * X-Consul-Index read as 1, as Consul's guidance says, where the watch would give up. An index that
   * went backwards the watch handles itself: it starts over from 0.
   */
  #query(): (this: unknown, opts: Record<string, unknown>) => Promise<unknown> {
    const health = this.#client.health;
    let last = 0;
    const sleep = (ms: number) => this.#sleep(ms);
    return async function (this: unknown, opts: Record<string, unknown>) {
      await sleep(MIN_QUERY_INTERVAL_MS - (Date.now() - last));
      last = Date.now();
      const answer = (await health.service.call(this, opts as never)) as unknown as [
        { headers: Record<string, string | undefined> },
        unknown,
      ];
      const res = answer[0];
      res.headers['x-consul-index'] = String(nextIndex(0, Number(res.headers['x-consul-index'])));
      return answer;
    };
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

/** The client's (papi's) errors as ours: timeouts, HTTP answers, bad JSON, and the rest unreachable. */
function consulError(err: unknown, address: string): DiscoveryError {
  const e = err as {
    message?: string;
    isTimeout?: boolean;
    isResponse?: boolean;
    isCodec?: boolean;
    statusCode?: number;
  };
  const message = e?.message ?? String(err);
  if (e?.isTimeout)
    return new DiscoveryError('DISCOVERY_CONSUL_TIMEOUT', `no answer from ${address}: ${message}`, {
      cause: err,
    });
  if (e?.isResponse)
    return new DiscoveryError('DISCOVERY_CONSUL_HTTP', `consul answered ${e.statusCode}: ${message}`, {
      cause: err,
      status: e.statusCode,
    });
  if (e?.isCodec)
    return new DiscoveryError('DISCOVERY_CONSUL_BAD_ANSWER', `consul answered with bad JSON: ${message}`, {
      cause: err,
    });
  return new DiscoveryError('DISCOVERY_CONSUL_UNREACHABLE', `${address}: ${message}`, { cause: err });
}
