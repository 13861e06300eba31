// A pool at run time: its settings, where its backends come from, its policy instance (policies such
// as smooth weighted round robin keep state per pool) and its passive-health penalties.
import { readFileSync } from 'node:fs';
import { type BalancingPolicy, createPolicy, HealthPenalty } from '@smtp-lb/balancer';
import type { BalancingPolicyName, PoolConfig } from '@smtp-lb/config';
import type { BackendSource } from '@smtp-lb/discovery';

export class PoolRuntime {
  readonly policy: BalancingPolicy;
  readonly health = new HealthPenalty();
  readonly caPem: Buffer | undefined;

  constructor(
    readonly name: string,
    readonly config: PoolConfig,
    readonly source: BackendSource,
    policy: BalancingPolicyName,
  ) {
    this.policy = createPolicy(policy);
    this.caPem = config.tls.ca ? readFileSync(config.tls.ca) : undefined;
  }
}
