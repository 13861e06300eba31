// Passive health as a weight penalty (undici balanced-pool): each connect error halves a
// backend's effective weight down to a floor, each success doubles it back towards the full
// weight. A flaky backend keeps a trickle of traffic, so it can prove it has recovered.
export interface HealthPenaltyOptions {
  /** Lowest fraction of the configured weight a backend can fall to; default 1/16. */
  floor?: number;
}

export class HealthPenalty {
  /** Current weight factor of penalised backends; an absent id has factor 1. */
  private readonly factors = new Map<string, number>();
  private readonly floor: number;

  constructor(opts: HealthPenaltyOptions = {}) {
    this.floor = opts.floor ?? 1 / 16;
    if (!(this.floor > 0 && this.floor <= 1)) throw new RangeError('floor must be in (0, 1]');
  }

  /** A connect (or greeting) error: halve the backend's weight, not below the floor. */
  penalize(id: string): void {
    this.factors.set(id, Math.max(this.floor, this.factor(id) / 2));
  }

  /** A success: double the weight back, up to the full weight (then the id is forgotten). */
  reward(id: string): void {
    const f = this.factors.get(id);
    if (f === undefined) return;
    if (f * 2 >= 1) this.factors.delete(id);
    else this.factors.set(id, f * 2);
  }

  /** The fraction of its weight the backend gets now, in [floor, 1]. */
  factor(id: string): number {
    return this.factors.get(id) ?? 1;
  }

  effectiveWeight(id: string, weight: number): number {
    return weight * this.factor(id);
  }

  /** Drops state of a backend that left the pool, so the map does not grow with churn. */
  forget(id: string): void {
    this.factors.delete(id);
  }
}
