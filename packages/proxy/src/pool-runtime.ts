// A pool at run time: its settings, where its backends come from, its policy instance (policies such
// as smooth weighted round robin keep state per pool) and its passive-health penalties; for the
// outbound kinds (mx, originalDestination) the destinations of each transaction.
import { readFileSync } from 'node:fs';
import { type BalancingPolicy, createPolicy, HealthPenalty } from '@smtp-lb/balancer';
import type { BalancingPolicyName, PoolConfig } from '@smtp-lb/config';
import type { BackendSource } from '@smtp-lb/discovery';
import type { Destinations } from './destinations.js';

export class PoolRuntime {
  readonly policy: BalancingPolicy;
  readonly health = new HealthPenalty();
  readonly caPem: Buffer | undefined;
  /** Detaches the node's listener from the source. */
  unsubscribe: () => void = () => {};

  constructor(
    readonly name: string,
    readonly config: PoolConfig,
    readonly source: BackendSource,
    readonly policyName: BalancingPolicyName,
    /** For `mx` and `originalDestination` pools: where each transaction goes. */
    readonly destinations?: Destinations,
  ) {
    this.policy = createPolicy(policyName);
    this.caPem = config.tls.ca ? readFileSync(config.tls.ca) : undefined;
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.source.close();
  }
}
