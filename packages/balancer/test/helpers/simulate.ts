// Drives a policy the way the proxy does: each pick opens a connection on the chosen backend,
// which closes after a random lifetime, and the next pick sees the live counts. Returns each
// backend's share of all picks.
import assert from 'node:assert/strict';
import type { BalancingPolicy, Candidate, RandomSource } from '../../src/types.js';

export interface Backend {
  id: string;
  weight: number;
}

export interface SimulationOptions {
  picks?: number;
  /** Lifetimes are uniform in 1..maxLifetime picks; the mean concurrency is about half of it. */
  maxLifetime?: number;
  /** Connections each backend holds from elsewhere for the whole run (another node's load). */
  fixedLoad?: Record<string, number>;
}

export function simulate(
  policy: BalancingPolicy,
  backends: readonly Backend[],
  random: RandomSource,
  opts: SimulationOptions = {},
): Map<string, number> {
  const picks = opts.picks ?? 100_000;
  const maxLifetime = opts.maxLifetime ?? 400;
  const n = backends.length;
  const counts = backends.map((b) => opts.fixedLoad?.[b.id] ?? 0);
  // closing[t % ring][i]: connections on backend i that close at step t.
  const ring = maxLifetime + 1;
  const closing = Array.from({ length: ring }, () => new Int32Array(n));
  const picked = new Array<number>(n).fill(0);
  const index = new Map(backends.map((b, i) => [b.id, i]));
  for (let t = 0; t < picks; t++) {
    const due = closing[t % ring]!;
    for (let i = 0; i < n; i++) {
      counts[i]! -= due[i]!;
      due[i] = 0;
    }
    const candidates: Candidate[] = backends.map((b, i) => ({
      id: b.id,
      weight: b.weight,
      count: counts[i]!,
    }));
    const choice = policy.pick(candidates);
    assert.ok(choice, 'a non-empty set must yield a pick');
    const i = index.get(choice.id)!;
    picked[i]! += 1;
    counts[i]! += 1;
    const lifetime = 1 + Math.floor(random() * maxLifetime);
    closing[(t + lifetime) % ring]![i]! += 1;
  }
  return new Map(backends.map((b, i) => [b.id, picked[i]! / picks]));
}

/** Asserts every share is within `tolerance` (absolute, fraction of all picks) of the expected one. */
export function assertShares(
  shares: Map<string, number>,
  expected: Record<string, number>,
  tolerance = 0.01,
): void {
  for (const [id, want] of Object.entries(expected)) {
    const got = shares.get(id) ?? 0;
    assert.ok(
      Math.abs(got - want) <= tolerance,
      `${id}: share ${got.toFixed(4)}, expected ${want.toFixed(4)} ± ${tolerance}`,
    );
  }
}

export function countPicks(policy: BalancingPolicy, candidates: readonly Candidate[], times: number) {
  const seen = new Map<string, number>();
  for (let k = 0; k < times; k++) {
    const c = policy.pick(candidates);
    assert.ok(c);
    seen.set(c.id, (seen.get(c.id) ?? 0) + 1);
  }
  return seen;
}
