// Shared full scan for the "fewest connections wins" policies: finds the candidates with the
// lowest score and picks one of the tied ones at random, so equal backends share the load evenly
// instead of the first one in the list taking every tie.
import type { Candidate, RandomSource } from './types.js';

/** Negative when `a` is better (lower) than `b`, 0 on a tie. */
export type Compare = (a: Candidate, b: Candidate) => number;

export function pickLowest(
  candidates: readonly Candidate[],
  compare: Compare,
  random: RandomSource,
): Candidate | undefined {
  let best: Candidate | undefined;
  let ties = 0;
  for (const c of candidates) {
    const order = best === undefined ? -1 : compare(c, best);
    if (order < 0) {
      best = c;
      ties = 1;
    } else if (order === 0) {
      // Reservoir sampling over the ties: the k-th tie replaces the choice with probability 1/k,
      // which leaves every tied candidate equally likely without collecting them in an array.
      ties += 1;
      if (random() * ties < 1) best = c;
    }
  }
  return best;
}
