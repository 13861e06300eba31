// Smooth weighted round robin (nginx ngx_http_upstream_get_peer): each pick adds every
// candidate's weight to its running `current`, takes the largest, and subtracts the total from it.
// Picks interleave (5,1,1 gives a a b a c a a) instead of bursting; connection counts are ignored.
import type { BalancingPolicy } from './types.js';

export function weightedRoundRobin(): BalancingPolicy {
  // Running `current` per backend id. Candidates change between calls (discovery, caps, retries):
  // ids that are absent from a call are forgotten and a new id starts at 0, as nginx does when
  // its peer list is rebuilt.
  let current = new Map<string, number>();
  return {
    name: 'weighted-round-robin',
    pick(candidates) {
      const next = new Map<string, number>();
      let total = 0;
      let best: (typeof candidates)[number] | undefined;
      let bestCurrent = Number.NEGATIVE_INFINITY;
      for (const c of candidates) {
        const value = (current.get(c.id) ?? 0) + c.weight;
        next.set(c.id, value);
        total += c.weight;
        // Strictly greater: on a tie the earlier candidate wins, which is what makes the
        // documented nginx sequence reproducible.
        if (value > bestCurrent) {
          best = c;
          bestCurrent = value;
        }
      }
      if (best !== undefined) next.set(best.id, bestCurrent - total);
      current = next;
      return best;
    },
  };
}
