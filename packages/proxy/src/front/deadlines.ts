// Deadlines that bytes trickling in cannot push away. The idle timer is re-armed by every byte, so
// one byte every few seconds would keep a session (and its backend slot) for ever; like Postfix's
// smtpd_per_request_deadline and smtpd_min_data_rate, a command line must be complete within a
// fixed time of its first byte, and DATA must keep up a minimum rate.

/** From the first byte of a command line to its end. */
export class CommandDeadline {
  #timer: NodeJS.Timeout | undefined;
  readonly #ms: number;
  readonly #expired: () => void;

  constructor(ms: number, expired: () => void) {
    this.#ms = ms;
    this.#expired = expired;
  }

  /** Part of a line is in: the clock runs from now, unless it already does. */
  started(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#expired();
    }, this.#ms);
    this.#timer.unref();
  }

  /** The line is complete (or the session is over). */
  done(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Time in hand for DATA (Postfix's rule): it starts at `limitMs`, the time between reads is spent
 * from it, and each read of N bytes earns N / `bytesPerSecond` back, never above `limitMs`. Out of
 * time: `expired`. Time spent while `held()` (we paused the client: the backend is slow) does not
 * count against the client. Per chunk it is a clock read and some arithmetic; the timer is only
 * re-armed when it fires early.
 */
export class DataRate {
  readonly #limit: number;
  readonly #rate: number;
  readonly #expired: () => void;
  readonly #held: () => boolean;
  #timer: NodeJS.Timeout | undefined;
  #budget = 0;
  #last = 0;

  constructor(limitMs: number, bytesPerSecond: number, expired: () => void, held: () => boolean) {
    this.#limit = limitMs;
    this.#rate = bytesPerSecond;
    this.#expired = expired;
    this.#held = held;
  }

  /** 354 went out: the clock starts (not at all with a rate of 0). */
  start(): void {
    if (this.#rate <= 0) return;
    this.#budget = this.#limit;
    this.#last = performance.now();
    this.#arm(this.#limit);
  }

  /** `n` content bytes arrived. */
  bytes(n: number): void {
    if (!this.#timer) return;
    const now = performance.now();
    this.#budget = Math.min(this.#limit, this.#budget - (now - this.#last) + (n * 1000) / this.#rate);
    this.#last = now;
  }

  /** The final dot came (or the session is over). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(ms)));
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    const now = performance.now();
    const left = this.#budget - (now - this.#last);
    if (left > 0) {
      this.#arm(left);
    } else if (this.#held()) {
      this.#budget = this.#limit;
      this.#last = now;
      this.#arm(this.#limit);
    } else {
      this.#timer = undefined;
      this.#expired();
    }
  };
}
