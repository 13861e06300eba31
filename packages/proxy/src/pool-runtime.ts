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
  /** Backend ids of the last set seen, to tell which ones left. */
  #known: Set<string>;

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
    this.#known = new Set(source.current().map((b) => b.id));
  }

  /** Discovery gave a new set: penalties of backends that left are dropped (else they stay forever). */
  backendsChanged(backends: readonly { id: string }[]): void {
    const now = new Set(backends.map((b) => b.id));
    for (const id of this.#known) if (!now.has(id)) this.health.forget(id);
    this.#known = now;
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.source.close();
  }
}
