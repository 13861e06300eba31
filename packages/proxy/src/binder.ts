// Binds a client session to a backend of a pool: pick with the pool's policy among backends below
// their cap, take a slot in the ledger, connect. A backend that fails before the client has seen
// anything of it (connect, greeting, EHLO, TLS, XCLIENT) is penalised and another one is tried, up to
// the pool's connectRetries (HAProxy's redispatch). When every backend is at its cap the session waits
// in the node's FIFO for a release, up to admission.queueTimeout.

import type { Candidate } from '@smtp-lb/balancer';
import type { AdmissionConfig } from '@smtp-lb/config';
import type { DiscoveredBackend } from '@smtp-lb/discovery';
import type { Lease, Ledger } from '@smtp-lb/ledger';
import {
  type ClientIdentity,
  connectUpstream,
  type Reply,
  type UpstreamConnection,
  type UpstreamError,
  type UpstreamOptions,
} from '@smtp-lb/upstream';
import type { Logger } from 'pino';
import type { BindTargets } from './destinations.js';
import type { Metrics } from './metrics.js';
import type { PoolRuntime } from './pool-runtime.js';
import { replies } from './replies.js';
import type { SlotWaiters } from './slot-waiters.js';

export interface BoundBackend {
  readonly pool: string;
  /** The targets' key: a kept connection serves a later transaction with the same key. */
  readonly target: string;
  readonly backend: DiscoveredBackend;
  readonly conn: UpstreamConnection;
}

export type BindResult = { ok: true; bound: BoundBackend } | { ok: false; reply: Reply };

export interface BinderDeps {
  ledger: Ledger;
  waiters: SlotWaiters;
  admission: () => AdmissionConfig;
  /**
   * How often a waiter looks again without a wake-up. Releases wake waiters, but a dead node's lease
   * expires without any event, and a release published while the Redis subscriber reconnects is
   * lost: a bounded re-check makes either cost at most this long, not the whole queueTimeout.
   */
  recheckMs: () => number;
  metrics: Metrics;
}

export class Binder {
  readonly #d: BinderDeps;

  constructor(deps: BinderDeps) {
    this.#d = deps;
  }

  /**
   * `targets` are the pool's discovered backends, or a destination pool's hosts for this transaction;
   * ordered targets are tried in their order (MX preference), each of them, not by the policy.
   */
  async bind(
    pool: PoolRuntime,
    targets: BindTargets,
    identity: ClientIdentity,
    heloName: string,
    log: Logger,
    signal: AbortSignal,
  ): Promise<BindResult> {
    const { ledger, waiters, metrics } = this.#d;
    const admission = this.#d.admission();
    const deadline = Date.now() + admission.queueTimeout;
    // Made only once a backend failed: most binds succeed at the first try, and this runs per session.
    let tried: Set<string> | undefined;
    let attempts = 0;
    let waitedSince: number | undefined;

    while (!signal.aborted) {
      // Ejected backends (outlier detection) get no new sessions; the ordered kinds have none.
      const all = targets.ordered ? targets.backends() : pool.usable(targets.backends());
      const skip = tried;
      const open = skip ? all.filter((b) => !skip.has(b.id)) : all;
      if (open.length === 0 || (!targets.ordered && attempts > pool.config.connectRetries)) {
        return { ok: false, reply: replies.noBackend() };
      }
      const free = belowCap(open, ledger);
      const lease =
        free.length === 0
          ? undefined
          : targets.ordered
            ? await this.#acquireInOrder(free)
            : await this.#acquire(pool, free);
      if (!lease) {
        // Every open backend is at its cap: wait for a release, bounded in time and in count.
        const left = deadline - Date.now();
        if (left <= 0 || waiters.size >= admission.maxWaiting) {
          metrics.admissionRejections.inc({ pool: pool.name, reason: left <= 0 ? 'timeout' : 'queue-full' });
          log.info({ pool: pool.name, waiting: waiters.size }, 'no free backend slot');
          return { ok: false, reply: replies.noSlot() };
        }
        waitedSince ??= Date.now();
        const ids = new Set(open.map((b) => b.id));
        const how = await waiters.wait(ids, Math.min(left, this.#d.recheckMs()), signal);
        if (how === 'aborted') break;
        continue;
      }
      if (waitedSince !== undefined) {
        metrics.admissionWait.observe({ pool: pool.name }, (Date.now() - waitedSince) / 1000);
        waitedSince = undefined;
      }
      const backend = open.find((b) => b.id === lease.backendId)!;
      attempts++;
      const started = performance.now();
      try {
        const conn = await connectUpstream(this.#options(pool, backend, heloName), identity, signal);
        metrics.backendConnect.observe({ backend: backend.id }, (performance.now() - started) / 1000);
        pool.connected(backend.id);
        // The slot is held exactly as long as the backend connection exists.
        const free = () => {
          lease.release();
          waiters.release(backend.id);
        };
        if (conn.closed) {
          free();
          tried ??= new Set();
          tried.add(backend.id);
          continue;
        }
        conn.once('close', free);
        return { ok: true, bound: { pool: pool.name, target: targets.key, backend, conn } };
      } catch (err) {
        lease.release();
        waiters.release(backend.id);
        tried ??= new Set();
        tried.add(backend.id);
        const e = err as UpstreamError;
        // The client going away is no fault of the backend's.
        if (e.code !== 'EABORTED') pool.connectFailed(backend.id);
        metrics.backendReplies.inc({
          backend: backend.id,
          command: e.stage ?? 'connect',
          code: String(e.reply?.code ?? e.code ?? 'error'),
        });
        log.warn(
          { backend: backend.id, err: { code: e.code, stage: e.stage, message: e.message } },
          'backend failed before the session reached it; trying another',
        );
      }
    }
    return { ok: false, reply: replies.noBackend() };
  }

  /**
   * Whether the bound backend is at its cap in the ledger's view (cluster-wide with Redis): a
   * session between transactions then gives its connection back rather than keep it.
   */
  atCap(bound: BoundBackend): boolean {
    return this.#d.ledger.count(bound.backend.id) >= bound.backend.maxConnections;
  }

  /** Picks among `free` and takes a slot; a backend found full on the way is dropped from the round. */
  async #acquire(pool: PoolRuntime, free: readonly DiscoveredBackend[]): Promise<Lease | undefined> {
    const { ledger } = this.#d;
    let left = free;
    while (left.length > 0) {
      const candidates: Candidate[] = left.map((b) => ({
        id: b.id,
        weight: pool.effectiveWeight(b.id, b.weight),
        count: ledger.count(b.id),
      }));
      const pick = pool.policy.pick(candidates);
      if (!pick) return undefined;
      const backend = left.find((b) => b.id === pick.id)!;
      const lease = await ledger.tryAcquire(backend.id, backend.maxConnections);
      if (lease) return lease;
      left = left.filter((b) => b !== backend);
    }
    return undefined;
  }

  /** The first of `free` that has a slot. */
  async #acquireInOrder(free: readonly DiscoveredBackend[]): Promise<Lease | undefined> {
    for (const b of free) {
      const lease = await this.#d.ledger.tryAcquire(b.id, b.maxConnections);
      if (lease) return lease;
    }
    return undefined;
  }

  #options(pool: PoolRuntime, b: DiscoveredBackend, heloName: string): UpstreamOptions {
    const c = pool.config;
    return {
      host: b.host,
      port: b.port,
      heloName: c.heloName ?? heloName,
      tls: {
        mode: b.tls ?? c.tls.mode,
        verify: c.tls.verify,
        ca: pool.caPem,
        servername: c.tls.servername ?? b.name,
      },
      xclient: b.xclient ?? c.xclient,
      proxyProtocol: b.proxyProtocol ?? c.proxyProtocol,
      timeouts: c.timeouts,
    };
  }
}

/** The backends below their cap: `open` itself when that is all of them (the usual case). */
function belowCap(open: readonly DiscoveredBackend[], ledger: Ledger): readonly DiscoveredBackend[] {
  for (const b of open) {
    if (ledger.count(b.id) >= b.maxConnections)
      return open.filter((o) => ledger.count(o.id) < o.maxConnections);
  }
  return open;
}
