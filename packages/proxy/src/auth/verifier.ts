// What every credential verifier (file, http, backend; one file each) answers, and the wrapper the
// front uses around one: a deadline (a verifier that is slow or hangs is a temporary failure, 454
// 4.7.0, never a success) and a short cache of successes keyed by a hash of the credentials.
import { createHash, randomBytes } from 'node:crypto';
import type { Reply } from '@smtp-lb/upstream';
import type { BoundBackend } from '../binder.js';

/** One AUTH attempt, as a verifier sees it. The password never goes into a log line. */
export interface AuthRequest {
  user: string;
  password: string;
  /** The client's address and port (the PROXY header's, when a trusted balancer sent one). */
  clientAddress: string;
  clientPort: number;
  helo: string;
  listener: string;
  /** The SASL mechanism the client used (PLAIN, LOGIN). */
  mechanism: string;
  /** Failed attempts of this session so far. */
  attempt: number;
  /** The session id, for the verifier's own log lines. */
  sid: string;
  /** `verify: backend`: binds a backend of the listener's pool for the session (its binder call). */
  bind?: (signal: AbortSignal) => Promise<BoundBackend | Reply>;
}

export type AuthResult =
  /**
   * `user` is the canonical name to use from now on; `addresses` may be sent from (ownAddresses);
   * `bound`: the backend connection a `verify: backend` success was made on, kept by the session.
   */
  | { kind: 'ok'; user: string; addresses?: string[]; bound?: BoundBackend }
  /** Bad credentials (535 5.7.8); `waitMs` the service asked the client to wait. */
  | { kind: 'fail'; waitMs?: number }
  /** The verifier could not decide (down, slow, garbage): 454 4.7.0. `reason` is for the log. */
  | { kind: 'error'; reason: string };

export interface Verifier {
  readonly name: string;
  verify(req: AuthRequest, signal: AbortSignal): Promise<AuthResult>;
  /** SIGHUP: re-read what the verifier reads (the htpasswd file). */
  reload?(): void;
  close(): void;
}

/** Runs `v` within `timeoutMs`; anything thrown or late is an error result, never a success. */
export async function verifyWithin(v: Verifier, req: AuthRequest, timeoutMs: number): Promise<AuthResult> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<AuthResult>((resolve) => {
    timer = setTimeout(() => {
      abort.abort();
      resolve({ kind: 'error', reason: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
  });
  try {
    return await Promise.race([
      v
        .verify(req, abort.signal)
        .catch(
          (err: unknown): AuthResult => ({ kind: 'error', reason: (err as Error)?.message ?? String(err) }),
        ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Successful verifications for `ttlMs`, keyed by a salted SHA-256 of user and password (the salt is
 * per process, so the keys mean nothing elsewhere). Failures are never cached: a user who fixes a
 * typo gets in at once, and a guesser gains nothing.
 */
export class SuccessCache {
  readonly #salt = randomBytes(16);
  readonly #entries = new Map<string, { result: AuthResult; expires: number }>();
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(ttlMs: number, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  #key(user: string, password: string): string {
    return createHash('sha256')
      .update(this.#salt)
      .update(user)
      .update('\0')
      .update(password)
      .digest('base64');
  }

  get(user: string, password: string): AuthResult | undefined {
    if (this.#ttlMs <= 0) return undefined;
    const key = this.#key(user, password);
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.result;
  }

  set(user: string, password: string, result: AuthResult): void {
    if (this.#ttlMs <= 0 || result.kind !== 'ok') return;
    const now = this.#now();
    if (this.#entries.size >= 10_000) {
      for (const [k, e] of this.#entries) if (e.expires <= now) this.#entries.delete(k);
      if (this.#entries.size >= 10_000) this.#entries.clear();
    }
    this.#entries.set(this.#key(user, password), { result, expires: now + this.#ttlMs });
  }
}
