// Builds a policy from its configured name. The random source is injected so tests and
// simulations are reproducible; production uses Math.random.
import { leastConnections } from './least-connections.js';
import { powerOfTwoChoices } from './power-of-two-choices.js';
import type { BalancingPolicy, RandomSource } from './types.js';
import { weightedLeastConnections } from './weighted-least-connections.js';
import { weightedRoundRobin } from './weighted-round-robin.js';

export type PolicyName =
  | 'least-connections'
  | 'weighted-least-connections'
  | 'weighted-round-robin'
  | 'power-of-two-choices';

export const policyNames: readonly PolicyName[] = [
  'least-connections',
  'weighted-least-connections',
  'weighted-round-robin',
  'power-of-two-choices',
];

export class UnknownPolicyError extends Error {
  readonly code = 'BALANCER_UNKNOWN_POLICY';
  constructor(readonly policy: string) {
    super(`unknown balancing policy "${policy}" (known: ${policyNames.join(', ')})`);
    this.name = 'UnknownPolicyError';
  }
}

export function createPolicy(name: PolicyName, opts: { random?: RandomSource } = {}): BalancingPolicy {
  const random = opts.random ?? Math.random;
  switch (name) {
    case 'least-connections':
      return leastConnections(random);
    case 'weighted-least-connections':
      return weightedLeastConnections(random);
    case 'weighted-round-robin':
      return weightedRoundRobin();
    case 'power-of-two-choices':
      return powerOfTwoChoices(random);
    default:
      // Names come from validated config, but a JS caller or a stale config can still pass junk.
      throw new UnknownPolicyError(String(name));
  }
}
