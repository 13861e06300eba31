// A pool at run time: its settings, where its backends come from, its policy instance (policies such
// as smooth weighted round robin keep state per pool), its passive-health penalties and, with
// `outlierDetection`, its ejections; for the outbound kinds (mx, originalDestination) the
// destinations of each transaction.
import { readFileSync } from 'node:fs';
import {
  type BalancingPolicy,
  createPolicy,
  HealthPenalty,
  type OutlierDecision,
  OutlierDetector,
} from '@smtp-lb/balancer';
import type { BalancingPolicyName, PoolConfig } from '@smtp-lb/config';
import type { BackendSource } from '@smtp-lb/discovery';
import type { Destinations } from './destinations.js';

export class PoolRuntime {
  readonly policy: BalancingPolicy;
  readonly health = new HealthPenalty();
  /** Reply-aware ejections (`outlierDetection`); absent when the pool has none. */
  readonly outliers: OutlierDetector | undefined;
  readonly caPem: Buffer | undefined;
  /** Detaches the node's listener from the source. */
  unsubscribe: () => void = () => {};
  /** Hears each ejection the detector decides (or would, but for maxEjectedPercent): logs, metrics. */
  onOutlier: (decision: OutlierDecision) => void = () => {};
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
    this.outliers = config.outlierDetection ? new OutlierDetector(config.outlierDetection) : undefined;
    this.outliers?.setBackends(this.#known);
  }

  /** Discovery gave a new set: penalties of backends that left are dropped (else they stay forever). */
  backendsChanged(backends: readonly { id: string }[]): void {
    const now = new Set(backends.map((b) => b.id));
    for (const id of this.#known) if (!now.has(id)) this.health.forget(id);
    this.#known = now;
    this.outliers?.setBackends(now);
  }

  /** The weight the policy sees: the configured one, cut by connect penalties and deferrals. */
  effectiveWeight(id: string, weight: number, now = Date.now()): number {
    return this.health.effectiveWeight(id, weight) * (this.outliers?.factor(id, now) ?? 1);
  }

  isEjected(id: string, now = Date.now()): boolean {
    return this.outliers?.isEjected(id, now) ?? false;
  }

  /**
   * `backends` without the ejected ones; all of them when every one is ejected (the set shrank
   * under the ejections): a backend that may be failing beats none (Envoy's panic mode).
   */
  usable<T extends { id: string }>(backends: readonly T[]): readonly T[] {
    const o = this.outliers;
    if (!o) return backends;
    const now = Date.now();
    if (!backends.some((b) => o.isEjected(b.id, now))) return backends;
    const kept = backends.filter((b) => !o.isEjected(b.id, now));
    return kept.length > 0 ? kept : backends;
  }

  /** A connection reached the session (220, EHLO and the rest went well). */
  connected(id: string): void {
    this.health.reward(id);
    this.outliers?.connected(id);
  }

  /** A connection failed before the client saw anything of it. */
  connectFailed(id: string): void {
    this.health.penalize(id);
    const decision = this.outliers?.connectFailed(id, Date.now());
    if (decision) this.onOutlier(decision);
  }

  /** One transaction's vote for outlier detection: `deferred` when the backend deferred or lost it. */
  transactionEnded(id: string, deferred: boolean): void {
    const decision = this.outliers?.transaction(id, deferred, Date.now());
    if (decision) this.onOutlier(decision);
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.source.close();
  }
}
