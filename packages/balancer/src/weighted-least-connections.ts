// Weighted least-connections with HAProxy's key (src/lb_fwlc.c, fwlc_queue_srv): an idle server
// scores 0, a busy one (count + 1) / weight. The "+ 1" ranks servers by the load they would carry
// after taking this connection, so a heavy server is not starved while it holds a few.
import { pickLowest } from './lowest.js';
import type { BalancingPolicy, Candidate, RandomSource } from './types.js';

/** Compares (count + 1) / weight by cross-multiplying, so equal loads tie exactly (no float noise). */
function byWeightedLoad(a: Candidate, b: Candidate): number {
  if (a.count === 0 || b.count === 0) return (a.count === 0 ? 0 : 1) - (b.count === 0 ? 0 : 1);
  return (a.count + 1) * b.weight - (b.count + 1) * a.weight;
}

export function weightedLeastConnections(random: RandomSource): BalancingPolicy {
  return {
    name: 'weighted-least-connections',
    pick: (candidates) => pickLowest(candidates, byWeightedLoad, random),
  };
}
