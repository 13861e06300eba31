// The one small interface every balancing policy implements. Policies are pure: they see a set of
// candidates with their current connection counts and weights, and pick one. No I/O.

/** A backend as a policy sees it. */
export interface Candidate {
  /** Stable backend id (`host:port`). */
  readonly id: string;
  /** Relative weight, > 0. */
  readonly weight: number;
  /** Connections it holds now (cluster-wide when the ledger knows them). */
  readonly count: number;
}

/** Uniform in [0, 1); injected so tests and simulations are reproducible. */
export type RandomSource = () => number;

export interface BalancingPolicy {
  readonly name: string;
  /**
   * Picks one of `candidates` (already filtered: healthy, below their cap, not yet tried for this
   * session). Returns undefined only when `candidates` is empty.
   */
  pick(candidates: readonly Candidate[]): Candidate | undefined;
}
