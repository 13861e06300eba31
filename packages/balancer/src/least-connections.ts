// Least-connections: the candidate holding the fewest connections wins, ties at random. The sets
// a pool holds are small (tens of backends), so a full scan is cheaper than keeping a heap in sync.
import { pickLowest } from './lowest.js';
import type { BalancingPolicy, Candidate, RandomSource } from './types.js';

export function leastConnections(random: RandomSource): BalancingPolicy {
  const byCount = (a: Candidate, b: Candidate): number => a.count - b.count;
  return {
    name: 'least-connections',
    pick: (candidates) => pickLowest(candidates, byCount, random),
  };
}
