// SASL for AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN mechanisms as a small state machine the
// front drives one client line at a time. It only decodes; who may log in is the verifier's call.
// Strict base64 (RFC 4954 4: a response that is not valid base64 is refused with 501).

export type SaslMechanism = 'PLAIN' | 'LOGIN';

export interface SaslCredentials {
  mechanism: SaslMechanism;
  /** PLAIN's authorization identity ('' when the client gave none). */
  authzid: string;
  user: string;
  password: string;
}

export type SaslStep =
  /** Send `334 <challenge>` and feed the client's next line. */
  | { kind: 'challenge'; challenge: string; next: SaslState }
  | { kind: 'done'; credentials: SaslCredentials }
  /** `*`: the client gave up (501 5.0.0). */
  | { kind: 'cancelled' }
  /** Not base64, or not what the mechanism expects (501 5.5.2). */
  | { kind: 'malformed'; why: string };

export type SaslState = { mechanism: 'PLAIN' } | { mechanism: 'LOGIN'; user?: string };

export const MECHANISMS: readonly SaslMechanism[] = ['PLAIN', 'LOGIN'];
const USERNAME = Buffer.from('Username:').toString('base64');
const PASSWORD = Buffer.from('Password:').toString('base64');
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Bytes a user name or a password may have: a whole 16 KiB line is no credential. */
const MAX_FIELD = 1024;

/** Strict base64 to UTF-8 text; undefined for anything else (also invalid UTF-8). */
export function decodeBase64(text: string): string | undefined {
  if (!BASE64.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  const decoded = bytes.toString('utf8');
  // A round trip tells invalid UTF-8 (replaced by U+FFFD) from a real U+FFFD.
  if (!Buffer.from(decoded, 'utf8').equals(bytes)) return undefined;
  return decoded;
}

/** `AUTH <mechanism> [initial-response]`: the first step. `initial` undefined: none was given. */
export function saslStart(mechanism: SaslMechanism, initial: string | undefined): SaslStep {
  if (initial === undefined) {
    return mechanism === 'PLAIN'
      ? { kind: 'challenge', challenge: '', next: { mechanism: 'PLAIN' } }
      : { kind: 'challenge', challenge: USERNAME, next: { mechanism: 'LOGIN' } };
  }
  // RFC 4954 4: "=" is an initial response of zero length.
  return saslContinue(mechanism === 'PLAIN' ? { mechanism } : { mechanism }, initial === '=' ? '' : initial);
}

/** A client line in answer to our 334. */
export function saslContinue(state: SaslState, line: string): SaslStep {
  if (line === '*') return { kind: 'cancelled' };
  const text = decodeBase64(line);
  if (text === undefined) return { kind: 'malformed', why: 'not base64' };
  if (state.mechanism === 'PLAIN') return plain(text);
  if (state.user === undefined) {
    if (!field(text)) return { kind: 'malformed', why: 'bad user name' };
    return { kind: 'challenge', challenge: PASSWORD, next: { mechanism: 'LOGIN', user: text } };
  }
  if (!field(text, true)) return { kind: 'malformed', why: 'bad password' };
  return { kind: 'done', credentials: { mechanism: 'LOGIN', authzid: '', user: state.user, password: text } };
}

/** RFC 4616 2: `[authzid] NUL authcid NUL passwd`, no NUL inside a field, authcid and passwd non-empty. */
function plain(text: string): SaslStep {
  const parts = text.split('\0');
  if (parts.length !== 3) return { kind: 'malformed', why: 'PLAIN needs authzid NUL authcid NUL password' };
  const [authzid, user, password] = parts as [string, string, string];
  if (!field(user) || !field(password, true) || authzid.length > MAX_FIELD)
    return { kind: 'malformed', why: 'PLAIN field empty or too long' };
  return { kind: 'done', credentials: { mechanism: 'PLAIN', authzid, user, password } };
}

/** Non-empty, bounded, and (for names) free of control characters. */
function field(value: string, password = false): boolean {
  if (value.length === 0 || value.length > MAX_FIELD) return false;
  return password ? !value.includes('\0') : !/[\x00-\x1f\x7f]/.test(value);
}
