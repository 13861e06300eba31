// Connection accounting: who holds how many connections to which backend. MemoryLedger counts for
// one node; RedisLedger counts for the whole cluster. The proxy takes a lease before it connects to
// a backend and releases it when the backend connection ends.

export interface Lease {
  readonly backendId: string;
  /** Idempotent: a second call does nothing. */
  release(): void;
}

/** `release` wrapped so that only its first call does anything (leases and client slots). */
export function once(release: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    release();
  };
}

export type LedgerMode = 'memory' | 'redis' | 'degraded';

export interface Ledger extends LedgerEvents {
  readonly mode: LedgerMode;
  /**
   * Takes a slot on `backendId` only if the count there is below `cap` (cluster-wide for Redis).
   * Resolves undefined when the backend is full. Never rejects for a full backend.
   */
  tryAcquire(backendId: string, cap: number): Promise<Lease | undefined>;
  /** Connections to the backend as last known (cluster-wide for Redis); synchronous, may lag. */
  count(backendId: string): number;
  /** Connections this node holds to the backend. */
  nodeCount(backendId: string): number;
  /** Called when a slot of `backendId` may have become free (here or on another node). */
  onRelease(listener: (backendId: string) => void): () => void;
  close(): Promise<void>;
}

/**
 * Optional hooks (added after the first contract). RedisLedger has them; MemoryLedger never changes
 * mode nor talks to anything, so it has none. The proxy uses them for the `smtp_lb_ledger_degraded`
 * gauge, `smtp_lb_ledger_errors_total` and log lines.
 */
export interface LedgerEvents {
  /** Called with the new mode when it changes ('redis' <-> 'degraded'). */
  onModeChange?(listener: (mode: LedgerMode) => void): () => void;
  /** Called for each failed Redis operation (the ledger carries on: degraded, or resynced). */
  onError?(listener: (err: Error & { code: string }) => void): () => void;
  /**
   * A session of this node waits for a slot of `backendId` until the returned function is called:
   * a cluster-wide ledger then hears other nodes' releases of it (RedisLedger listens on a backend's
   * release channel only while it has waiters there or is near the cap).
   */
  watch?(backendId: string): () => void;
  /**
   * The mode for one backend: a cluster-wide ledger on a Redis Cluster degrades only the backends
   * whose keys are on a master it cannot reach ('degraded' there, 'redis' elsewhere).
   */
  backendMode?(backendId: string): LedgerMode;
  /** Live nodes as last seen, this one included: the divisor of the local share. */
  readonly liveNodes?: number;
}
