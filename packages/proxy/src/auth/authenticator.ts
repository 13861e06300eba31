// One listener's AUTH: its verifier (file, http or backend), the deadline around it and the short
// cache of successes. It answers what the verifier said; counting failures (brute force) and the
// rules about the user are the session checks' (shaping/session-checks.ts, auth/sender-policy.ts).
import type { ListenerAuthConfig } from '@smtp-lb/config';
import type { Logger } from '../logger.js';
import { BackendVerifier, type BindForAuth } from './backend-verifier.js';
import { FileVerifier } from './file-verifier.js';
import { HttpVerifier } from './http-verifier.js';
import { type AuthRequest, type AuthResult, SuccessCache, type Verifier, verifyWithin } from './verifier.js';

export function createVerifier(config: ListenerAuthConfig, log: Logger): Verifier {
  switch (config.verify) {
    case 'file':
      return new FileVerifier(config.file ?? '', log);
    case 'http':
      return new HttpVerifier(config.http?.url ?? '');
    case 'backend':
      return new BackendVerifier();
  }
}

export class Authenticator {
  readonly config: ListenerAuthConfig;
  readonly #verifier: Verifier;
  readonly #cache: SuccessCache;

  constructor(config: ListenerAuthConfig, log: Logger) {
    this.config = config;
    this.#verifier = createVerifier(config, log.child({ component: 'auth', verify: config.verify }));
    this.#cache = new SuccessCache(config.verify === 'backend' ? 0 : config.cacheTtl);
  }

  get verify(): ListenerAuthConfig['verify'] {
    return this.config.verify;
  }

  /** Never rejects; a verifier that throws, hangs or talks nonsense is an error result. */
  async check(req: AuthRequest, bind?: BindForAuth): Promise<AuthResult> {
    const cached = this.#cache.get(req.user, req.password);
    if (cached) return cached;
    const timeout = this.config.verify === 'http' ? (this.config.http?.timeout ?? 2000) : this.config.timeout;
    const result = await verifyWithin(this.#verifier, { ...req, bind }, timeout);
    this.#cache.set(req.user, req.password, result);
    return result;
  }

  reload(): void {
    this.#verifier.reload?.();
  }

  close(): void {
    this.#verifier.close();
  }
}
