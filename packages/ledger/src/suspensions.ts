// Suspended senders (authenticated users), cluster-wide: a user over its limit with
// `senders.onExceed: suspend` is refused on every node until an operator lifts it. In memory for
// one node; in Redis (one HASH, Lua in ./lua/senders, versioned names) for the cluster. The per-user
// counters themselves are the client-limit machinery's (client-limits.ts), keyed by user.

/**
 * Who was suspended, when (ms since the epoch), why, and by which node. `user` is whatever the kind
 * of suspension names: a user, or a client host for the outbound lock-outs (kind 'hosts').
 */
export interface Suspension {
  user: string;
  since: number;
  reason: string;
  node: string;
  /** Ends by itself at this time (ms since the epoch); absent: until lifted. */
  until?: number;
}

/** A suspension with an `until` in the past is over. */
export function inForce(s: Suspension | undefined, now = Date.now()): s is Suspension {
  return s !== undefined && (s.until === undefined || s.until > now);
}

export interface Suspensions {
  readonly mode: 'memory' | 'redis';
  /** True when the user was not suspended before (the first record is kept). */
  suspend(s: Suspension): Promise<boolean>;
  /**
   * The user's suspension, if any. With Redis unreachable the answer is what this node last saw
   * (its own suspensions included): a suspended account stays refused here during an outage.
   */
  get(user: string): Promise<Suspension | undefined>;
  /** Throws a LedgerError when Redis is unreachable (the admin API says 503). */
  list(): Promise<Suspension[]>;
  /** True when the user was suspended. Throws a LedgerError when Redis is unreachable. */
  lift(user: string): Promise<boolean>;
  close(): Promise<void>;
}

export class MemorySuspensions implements Suspensions {
  readonly mode = 'memory' as const;
  readonly #byUser = new Map<string, Suspension>();

  async suspend(s: Suspension): Promise<boolean> {
    if (inForce(this.#byUser.get(s.user))) return false;
    this.#byUser.set(s.user, { ...s });
    return true;
  }

  async get(user: string): Promise<Suspension | undefined> {
    const s = this.#byUser.get(user);
    return inForce(s) ? s : undefined;
  }

  async list(): Promise<Suspension[]> {
    return [...this.#byUser.values()].filter((s) => inForce(s)).sort((a, b) => a.since - b.since);
  }

  async lift(user: string): Promise<boolean> {
    return this.#byUser.delete(user);
  }

  async close(): Promise<void> {}
}
