// The ledger of a single node: per-backend counts in memory. Synchronous inside; the Promise in
// tryAcquire is the shared Ledger contract (RedisLedger needs a round trip).
import { LedgerError } from './errors.js';
import { type Lease, type Ledger, type LedgerMode, once } from './types.js';

export function checkCap(cap: number): void {
  if (!Number.isInteger(cap) || cap < 0) {
    throw new LedgerError(
      'LEDGER_BAD_ARGUMENT',
      `cap must be a non-negative integer, got ${cap}`,
      'tryAcquire',
    );
  }
}

export class MemoryLedger implements Ledger {
  readonly mode: LedgerMode = 'memory';
  private readonly counts = new Map<string, number>();
  private readonly listeners = new Set<(backendId: string) => void>();

  async tryAcquire(backendId: string, cap: number): Promise<Lease | undefined> {
    checkCap(cap);
    const n = this.counts.get(backendId) ?? 0;
    if (n >= cap) return undefined;
    this.counts.set(backendId, n + 1);
    return {
      backendId,
      release: once(() => {
        const left = (this.counts.get(backendId) ?? 1) - 1;
        if (left > 0) this.counts.set(backendId, left);
        else this.counts.delete(backendId);
        for (const l of [...this.listeners]) l(backendId);
      }),
    };
  }

  count(backendId: string): number {
    return this.counts.get(backendId) ?? 0;
  }

  nodeCount(backendId: string): number {
    return this.count(backendId);
  }

  onRelease(listener: (backendId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
