// Connection accounting: who holds how many connections to which backend. MemoryLedger counts for
// one node; RedisLedger counts for the whole cluster. The proxy takes a lease before it connects to
// a backend and releases it when the backend connection ends.

export interface Lease {
  readonly backendId: string;
  /** Idempotent: a second call does nothing. */
  release(): void;
}

export type LedgerMode = 'memory' | 'redis' | 'degraded';

export interface Ledger {
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
