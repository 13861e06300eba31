// Reply-aware outlier detection (after Envoy's outlier detection): a backend that fails connections in
// a row (refused, timed out, a 421 greeting) or defers far more of its transactions than the other
// backends of its pool is ejected for a base time that grows with each ejection, never more than a share of the
// pool at once; below the ejection threshold its weight is cut in proportion. Pure: time is passed in.
//
// A transaction is one vote (deferred or not), not one per RCPT: one greylisted message to 500
// recipients must not outweigh 499 healthy sessions. Shares are judged against the healthiest other
// backend, so greylisting, or a destination every backend defers alike, ejects nobody.

export interface OutlierDetectionOptions {
  /** Sliding window of the transaction counts (ms). */
  window: number;
  /** Transactions a backend must have had in the window before its deferral share is judged. */
  minimumVolume: number;
  /**
   * Percentage points of deferred transactions above the healthiest backend of the pool at which a
   * backend is ejected; from a fifth of it on its weight is cut, linearly down to 1/16 at it.
   */
  deferralPercent: number;
  /** Failed connections in a row (connect, greeting, EHLO, TLS) that eject a backend; 0 is off. */
  consecutiveFailures: number;
  /** The first ejection lasts this long (ms); the n-th n times as long. */
  baseEjectionTime: number;
  /** No ejection lasts longer (ms). */
  maxEjectionTime: number;
  /** Ejected backends of a pool at once, in percent of its backends: at least one, never all. */
  maxEjectedPercent: number;
}

export type EjectionReason = 'failures' | 'deferrals';

/** What `connectFailed` or `transaction` decided. */
export interface OutlierDecision {
  readonly id: string;
  readonly reason: EjectionReason;
  /** false: it would have been ejected, but maxEjectedPercent of the pool already is. */
  readonly ejected: boolean;
  /** When the ejection ends (ms, the clock of the calls); only when ejected. */
  readonly until?: number;
  /** Ejections counted for its duration (the multiplier), this one included. */
  readonly ejections: number;
}

export interface OutlierState {
  readonly ejected: boolean;
  readonly ejectedUntil?: number;
  readonly reason?: EjectionReason;
  /** The current multiplier: ejections not yet forgiven. */
  readonly ejections: number;
  /** Transactions and deferred ones in the window. */
  readonly transactions: number;
  readonly deferred: number;
  /** Fraction of its weight the backend gets now, in [1/16, 1]. */
  readonly factor: number;
}

/** Buckets of the sliding window: counts leave it a sixth of a window at a time. */
const BUCKETS = 6;
/** The newest buckets, a third of the window, are judged on their own as well. */
const RECENT = 2;
/** Lowest weight fraction of a backend that defers more than the others (as HealthPenalty's). */
const FLOOR = 1 / 16;
/** Epoch of a bucket that holds nothing (older than any window). */
const NEVER = Number.MIN_SAFE_INTEGER;

interface Backend {
  /** Per bucket: its epoch (time / bucket length) and the counts of that epoch. */
  epochs: number[];
  totals: number[];
  deferrals: number[];
  consecutive: number;
  ejections: number;
  ejectedUntil: number;
  reason: EjectionReason | undefined;
}

export class OutlierDetector {
  readonly #o: OutlierDetectionOptions;
  readonly #bucketMs: number;
  readonly #backends = new Map<string, Backend>();
  /** Weight factors computed from the counts; dropped on every change of the counts or the epoch. */
  #factors: Map<string, number> | undefined;
  #factorsEpoch = -1;

  constructor(options: OutlierDetectionOptions) {
    const o = options;
    if (!(o.window > 0)) throw new RangeError('window must be > 0');
    if (!(o.deferralPercent > 0 && o.deferralPercent <= 100))
      throw new RangeError('deferralPercent must be in (0, 100]');
    if (!(o.maxEjectedPercent >= 0 && o.maxEjectedPercent <= 100))
      throw new RangeError('maxEjectedPercent must be in [0, 100]');
    if (!(o.baseEjectionTime > 0 && o.maxEjectionTime >= o.baseEjectionTime))
      throw new RangeError('need 0 < baseEjectionTime <= maxEjectionTime');
    this.#o = { ...o, minimumVolume: Math.max(1, o.minimumVolume) };
    this.#bucketMs = o.window / BUCKETS;
  }

  /** The pool's backends now: counts of those that left are dropped, new ones start clean. */
  setBackends(ids: Iterable<string>): void {
    const now = new Set(ids);
    for (const id of this.#backends.keys()) if (!now.has(id)) this.#backends.delete(id);
    for (const id of now) if (!this.#backends.has(id)) this.#backends.set(id, fresh());
    this.#factors = undefined;
  }

  /** A connection reached the backend's session (greeting 220, EHLO, TLS, XCLIENT done). */
  connected(id: string): void {
    const b = this.#backends.get(id);
    if (b) b.consecutive = 0;
  }

  /** A connection failed before the client saw anything of it (connect, greeting 421, EHLO...). */
  connectFailed(id: string, now: number): OutlierDecision | undefined {
    const b = this.#backends.get(id);
    if (!b || this.#o.consecutiveFailures === 0 || this.#isEjected(b, now)) return undefined;
    b.consecutive += 1;
    if (b.consecutive < this.#o.consecutiveFailures) return undefined;
    return this.#eject(id, b, 'failures', now);
  }

  /**
   * One transaction's vote: `deferred` when the backend answered it with 4xx (MAIL, every RCPT, or
   * DATA) or lost it; otherwise it counts as answered.
   */
  transaction(id: string, deferred: boolean, now: number): OutlierDecision | undefined {
    const b = this.#backends.get(id);
    if (!b || this.#isEjected(b, now)) return undefined;
    const epoch = Math.floor(now / this.#bucketMs);
    const i = epoch % BUCKETS;
    if (b.epochs[i] !== epoch) {
      b.epochs[i] = epoch;
      b.totals[i] = 0;
      b.deferrals[i] = 0;
    }
    b.totals[i]! += 1;
    if (deferred) b.deferrals[i]! += 1;
    this.#factors = undefined;
    if (!deferred) return undefined;
    const excess = this.#excess(id, epoch);
    if (excess === undefined || excess * 100 < this.#o.deferralPercent) return undefined;
    return this.#eject(id, b, 'deferrals', now);
  }

  isEjected(id: string, now: number): boolean {
    const b = this.#backends.get(id);
    return b !== undefined && this.#isEjected(b, now);
  }

  /** The fraction of its weight a backend that is not ejected gets now, in [1/16, 1]. */
  factor(id: string, now: number): number {
    const epoch = Math.floor(now / this.#bucketMs);
    if (!this.#factors || this.#factorsEpoch !== epoch) {
      this.#factors = this.#computeFactors(epoch);
      this.#factorsEpoch = epoch;
    }
    return this.#factors.get(id) ?? 1;
  }

  state(id: string, now: number): OutlierState {
    const b = this.#backends.get(id);
    const factor = this.factor(id, now);
    if (!b) return { ejected: false, ejections: 0, transactions: 0, deferred: 0, factor };
    const epoch = Math.floor(now / this.#bucketMs);
    const [transactions, deferred] = sums(b, epoch);
    const ejected = this.#isEjected(b, now);
    return {
      ejected,
      ...(ejected ? { ejectedUntil: b.ejectedUntil, reason: b.reason! } : {}),
      ejections: this.#multiplier(b, now),
      transactions,
      deferred,
      factor,
    };
  }

  #isEjected(b: Backend, now: number): boolean {
    return b.ejectedUntil > now;
  }

  /**
   * The ejection count, forgiven one for each base ejection time spent in the pool since the last
   * one ended (Envoy lowers its multiplier while a host stays healthy).
   */
  #multiplier(b: Backend, now: number): number {
    if (b.ejections === 0 || this.#isEjected(b, now)) return b.ejections;
    const healthyFor = now - b.ejectedUntil;
    return Math.max(0, b.ejections - Math.floor(healthyFor / this.#o.baseEjectionTime));
  }

  #eject(id: string, b: Backend, reason: EjectionReason, now: number): OutlierDecision {
    const multiplier = this.#multiplier(b, now) + 1;
    let ejectedNow = 0;
    for (const other of this.#backends.values()) if (this.#isEjected(other, now)) ejectedNow++;
    const n = this.#backends.size;
    const allowed = Math.min(n - 1, Math.max(1, Math.floor((n * this.#o.maxEjectedPercent) / 100)));
    if (this.#o.maxEjectedPercent === 0 || ejectedNow >= allowed) {
      return { id, reason, ejected: false, ejections: multiplier - 1 };
    }
    const duration = Math.min(this.#o.maxEjectionTime, this.#o.baseEjectionTime * multiplier);
    b.ejections = multiplier;
    b.ejectedUntil = now + duration;
    b.reason = reason;
    // It comes back with a clean slate: judged again on what it does after its return.
    b.consecutive = 0;
    b.epochs.fill(NEVER);
    this.#factors = undefined;
    return { id, reason, ejected: true, until: b.ejectedUntil, ejections: multiplier };
  }

  /**
   * By how much (a fraction) `id` defers more than the best of the rest; undefined: too few. Judged
   * over the whole window and over its newest third, whichever says more: a backend that was fine
   * for a minute and now defers everything stands out within seconds, not once its good minute has
   * left the window; the minimum volume still holds for the shorter span.
   */
  #excess(id: string, epoch: number): number | undefined {
    return worse(
      excessOf(id, this.#shares(epoch, BUCKETS), this.#o.minimumVolume),
      excessOf(id, this.#shares(epoch, RECENT), this.#o.minimumVolume),
    );
  }

  /** [transactions, deferred] of every backend in the newest `buckets` of the window. */
  #shares(epoch: number, buckets: number): Map<string, [number, number]> {
    const all = new Map<string, [number, number]>();
    for (const [id, b] of this.#backends) all.set(id, sums(b, epoch, buckets));
    return all;
  }

  #computeFactors(epoch: number): Map<string, number> {
    const whole = this.#shares(epoch, BUCKETS);
    const recent = this.#shares(epoch, RECENT);
    const threshold = this.#o.deferralPercent / 100;
    const from = threshold / 5;
    const out = new Map<string, number>();
    for (const id of whole.keys()) {
      const excess = worse(
        excessOf(id, whole, this.#o.minimumVolume),
        excessOf(id, recent, this.#o.minimumVolume),
      );
      if (excess === undefined || excess <= from) continue;
      out.set(id, Math.max(FLOOR, 1 - ((1 - FLOOR) * (excess - from)) / (threshold - from)));
    }
    return out;
  }
}

function fresh(): Backend {
  return {
    epochs: new Array<number>(BUCKETS).fill(NEVER),
    totals: new Array<number>(BUCKETS).fill(0),
    deferrals: new Array<number>(BUCKETS).fill(0),
    consecutive: 0,
    ejections: 0,
    ejectedUntil: 0,
    reason: undefined,
  };
}

function worse(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}

/** [transactions, deferred] of the newest `buckets` buckets (the current one included). */
function sums(b: Backend, epoch: number, buckets = BUCKETS): [number, number] {
  let t = 0;
  let d = 0;
  for (let i = 0; i < BUCKETS; i++) {
    if (b.epochs[i]! > epoch - buckets) {
      t += b.totals[i]!;
      d += b.deferrals[i]!;
    }
  }
  return [t, d];
}

/**
 * The backend's deferral share minus the lowest share among the other backends with enough volume
 * of their own (the healthiest one). Against the best rather than the average, so that most of a
 * pool failing still stands out from the one that works; when all defer alike (greylisting, a
 * destination down behind every backend) nobody does. Without another backend to compare with (a
 * pool of one, a node just started, the others idle) nothing is judged: a burst of greylisting
 * would look like a failing backend.
 */
function excessOf(
  id: string,
  all: ReadonlyMap<string, [number, number]>,
  minimumVolume: number,
): number | undefined {
  const own = all.get(id);
  if (!own || own[0] < minimumVolume) return undefined;
  let baseline: number | undefined;
  for (const [other, [t, d]] of all) {
    if (other !== id && t >= minimumVolume) baseline = Math.min(baseline ?? 1, d / t);
  }
  return baseline === undefined ? undefined : own[1] / own[0] - baseline;
}
