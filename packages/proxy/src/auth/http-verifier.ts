// `verify: http`: an HTTP(S) auth service in the spirit of nginx's mail `auth_http`, so that an
// existing nginx auth service answers us unchanged. Request: `GET <url>` with the headers below
// (user and password percent-encoded, as nginx does). Answer: HTTP 200 with `Auth-Status: OK`
// (optionally `Auth-User: <canonical name>` and our own `Auth-Addresses: a@x, b@y`, the addresses
// the user may send from), or `Auth-Status: <reason>` for bad credentials with an optional
// `Auth-Wait: <seconds>`. Anything else (another status, no Auth-Status, a reset, a timeout) is a
// temporary failure: 454 4.7.0, never a success.
import type { AuthRequest, AuthResult, Verifier } from './verifier.js';

const MAX_WAIT_S = 60;

export function requestHeaders(req: AuthRequest): Record<string, string> {
  return {
    'Auth-Method': req.mechanism === 'LOGIN' ? 'login' : 'plain',
    'Auth-User': encodeURIComponent(req.user),
    'Auth-Pass': encodeURIComponent(req.password),
    'Auth-Protocol': 'smtp',
    'Auth-Login-Attempt': String(req.attempt + 1),
    'Auth-SMTP-Helo': encodeURIComponent(req.helo),
    'Auth-Listener': req.listener,
    'Client-IP': req.clientAddress,
    'Client-Port': String(req.clientPort),
  };
}

/** The service's answer; exported for the property test (any header values give some result). */
export function answerOf(status: number, header: (name: string) => string | null, user: string): AuthResult {
  if (status !== 200) return { kind: 'error', reason: `auth service answered HTTP ${status}` };
  const verdict = header('auth-status');
  if (verdict === null || verdict.trim() === '')
    return { kind: 'error', reason: 'auth service sent no Auth-Status' };
  if (verdict.trim().toUpperCase() === 'OK') {
    const canonical = header('auth-user')?.trim();
    let name = user;
    if (canonical) {
      try {
        name = decodeURIComponent(canonical);
      } catch {
        return { kind: 'error', reason: 'auth service sent a malformed Auth-User' };
      }
    }
    const list = header('auth-addresses');
    const addresses = list
      ?.split(',')
      .map((a) => a.trim().toLowerCase())
      .filter((a) => a !== '');
    return addresses && addresses.length > 0
      ? { kind: 'ok', user: name, addresses }
      : { kind: 'ok', user: name };
  }
  const wait = Number(header('auth-wait'));
  return Number.isFinite(wait) && wait > 0
    ? { kind: 'fail', waitMs: Math.min(wait, MAX_WAIT_S) * 1000 }
    : { kind: 'fail' };
}

export class HttpVerifier implements Verifier {
  readonly name = 'http';
  readonly #url: string;

  constructor(url: string) {
    this.#url = url;
  }

  async verify(req: AuthRequest, signal: AbortSignal): Promise<AuthResult> {
    const res = await fetch(this.#url, {
      method: 'GET',
      headers: requestHeaders(req),
      signal,
      redirect: 'error',
    });
    // The body means nothing to us; do not let it hold the connection.
    await res.body?.cancel().catch(() => {});
    return answerOf(res.status, (n) => res.headers.get(n), req.user);
  }

  close(): void {}
}
