// Sessions waiting for a free backend slot. A FIFO per node, woken by a release (local, or a remote
// one the ledger relays), never by polling the ledger in a loop (STYLE.md: undici pool-base).
export interface Waiter {
  readonly ids: ReadonlySet<string>;
  wake(): void;
}

export class SlotWaiters {
  readonly #queue: Waiter[] = [];

  /**
   * `watch` is told which backends a session waits for, until the function it returns is called (the
   * Redis ledger listens for other nodes' releases of a backend only while someone waits on it).
   */
  constructor(readonly watch: (backendId: string) => () => void = () => () => {}) {}

  get size(): number {
    return this.#queue.length;
  }

  /** Waits until one of `ids` may have a free slot, `timeoutMs` passes or `signal` aborts. */
  wait(
    ids: ReadonlySet<string>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<'woken' | 'timeout' | 'aborted'> {
    return new Promise((resolve) => {
      const unwatch = [...ids].map((id) => this.watch(id));
      const finish = (how: 'woken' | 'timeout' | 'aborted') => {
        clearTimeout(timer);
        for (const u of unwatch.splice(0)) u();
        signal?.removeEventListener('abort', onAbort);
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        resolve(how);
      };
      const onAbort = () => finish('aborted');
      const waiter: Waiter = { ids, wake: () => finish('woken') };
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** A slot of `id` may be free: wake the longest-waiting session that can use it. */
  release(id: string): void {
    const waiter = this.#queue.find((w) => w.ids.has(id));
    waiter?.wake();
  }

  /** The backend set changed (or a timed re-check): let everyone look again. */
  wakeAll(): void {
    for (const w of [...this.#queue]) w.wake();
  }
}
