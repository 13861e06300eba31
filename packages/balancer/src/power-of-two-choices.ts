// Power of two choices: sample two distinct candidates, keep the one with less load per weight.
// Without replacement, so with two hosts it always takes the idler one (with replacement it would
// take the busier one a quarter of the time, Envoy's note on its least-request balancer).
import type { BalancingPolicy, RandomSource } from './types.js';

export function powerOfTwoChoices(random: RandomSource): BalancingPolicy {
  const index = (n: number): number => Math.min(n - 1, Math.floor(random() * n));
  return {
    name: 'power-of-two-choices',
    pick(candidates) {
      const n = candidates.length;
      if (n <= 1) return candidates[0];
      const i = index(n);
      let j = index(n - 1);
      if (j >= i) j += 1;
      const a = candidates[i]!;
      const b = candidates[j]!;
      // count/weight compared by cross-multiplying. On a tie `a` wins: it is already a uniformly
      // random member of a random pair, so no second coin is needed.
      return b.count * a.weight < a.count * b.weight ? b : a;
    },
  };
}
