// `verify: backend`: the credentials are checked by a backend MTA's own SASL (Postfix with Dovecot,
// any MTA with AUTH). The session binds a backend of its listener's pool as it would at the first
// RCPT (slot, XCLIENT, STARTTLS) and sends AUTH PLAIN on that connection: 235 is a success and the
// connection stays bound for the session's transactions (the backend knows who authenticated), 5xx
// is bad credentials, anything else a temporary failure.
import type { Reply } from '@smtp-lb/upstream';
import type { AuthRequest, AuthResult, Verifier } from './verifier.js';

/** Binds a backend for the session that asks (the session's own binder call). */
export type BindForAuth = NonNullable<AuthRequest['bind']>;

export class BackendVerifier implements Verifier {
  readonly name = 'backend';

  async verify(req: AuthRequest, signal: AbortSignal): Promise<AuthResult> {
    if (!req.bind) return { kind: 'error', reason: 'no backend to ask' };
    const bound = await req.bind(signal);
    if ('code' in bound) return { kind: 'error', reason: `no backend for the check: ${bound.code}` };
    const conn = bound.conn;
    if (!conn.capabilities.has('AUTH')) {
      void conn.quit();
      return { kind: 'error', reason: `backend ${bound.backend.id} offers no AUTH` };
    }
    let r: Reply;
    try {
      r = await conn.authenticate(req.user, req.password);
    } catch (err) {
      conn.destroy();
      return { kind: 'error', reason: `backend ${bound.backend.id}: ${(err as Error).message}` };
    }
    if (signal.aborted) {
      void conn.quit();
      return { kind: 'error', reason: 'too late' };
    }
    if (r.code === 235) return { kind: 'ok', user: req.user, bound };
    void conn.quit();
    if (r.code >= 500) return { kind: 'fail' };
    return { kind: 'error', reason: `backend ${bound.backend.id} answered AUTH with ${r.code}` };
  }

  close(): void {}
}
