// The replies smtp-lb makes itself (DESIGN.md "Replies the proxy makes itself"). Everything else a
// client sees after MAIL is the backend's reply, relayed verbatim.
import type { Reply } from '@smtp-lb/upstream';

/** A reply of our own: one line, its enhanced code first. */
export function reply(code: number, enhanced: string, text: string): Reply {
  return { code, enhanced, lines: [`${enhanced} ${text}`] };
}

export const replies = {
  mailAccepted: () => reply(250, '2.1.0', 'Accepted'),
  draining: () => reply(421, '4.3.2', 'Service shutting down, try again later'),
  noSlot: () => reply(451, '4.3.2', 'All backends are busy, try again later'),
  noBackend: () => reply(451, '4.4.1', 'No backend reachable, try again later'),
  backendLost: () => reply(451, '4.4.2', 'Connection to the backend lost, try again later'),
  otherRoute: () => reply(452, '4.5.3', 'Recipient belongs to another route, send it in a new transaction'),
  tooManyRecipients: () => reply(452, '4.5.3', 'Too many recipients, send the rest in a new transaction'),
  tooBig: (max: number) => reply(552, '5.3.4', `Message exceeds the maximum size of ${max} bytes`),
  bareNewline: () =>
    reply(
      550,
      '5.6.0',
      'Message contains a bare CR or LF, only CRLF line endings are allowed (RFC 5321 2.3.8)',
    ),
  nulByte: () => reply(550, '5.6.0', 'Message contains a NUL byte, which is not allowed in SMTP content'),
  utf8NotAllowed: () =>
    reply(553, '5.6.7', 'Non-ASCII address requires the SMTPUTF8 parameter on MAIL FROM (RFC 6531)'),
  utf8Unsupported: () => reply(553, '5.6.7', 'The backend does not support SMTPUTF8 for this address'),
  xclientForbidden: () => reply(550, '5.7.0', 'XCLIENT is not allowed'),
  unknownRecipient: (address: string) =>
    reply(550, '5.1.1', `<${address}>: Recipient address rejected: User unknown`),
  recipientLookupFailed: (address: string) =>
    reply(451, '4.3.0', `<${address}>: Temporary recipient lookup failure, try again later`),
  // AUTH (RFC 4954 6) and the rules about authenticated senders.
  authSucceeded: () => reply(235, '2.7.0', 'Authentication successful'),
  authFailed: () => reply(535, '5.7.8', 'Authentication credentials invalid'),
  authzidRefused: () => reply(535, '5.7.8', 'Authenticating as one user to act as another is not allowed'),
  authUnavailable: () => reply(454, '4.7.0', 'Temporary authentication failure, try again later'),
  authRequired: () => reply(530, '5.7.0', 'Authentication required'),
  authNeedsTls: () => reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'),
  authCancelled: () => reply(501, '5.0.0', 'Authentication cancelled'),
  authMalformed: () => reply(501, '5.5.2', 'Cannot decode the authentication response'),
  authMechanism: () => reply(504, '5.5.4', 'Unrecognized authentication type'),
  authTwice: () => reply(503, '5.5.1', 'Already authenticated'),
  authInTransaction: () => reply(503, '5.5.1', 'AUTH not permitted during a mail transaction'),
  authTooManyFailures: () => reply(421, '4.7.0', 'Too many failed authentications, try again later'),
  userSessions: () => reply(454, '4.7.0', 'Too many sessions for this user, try again later'),
  senderNotOwned: (address: string) =>
    reply(553, '5.7.1', `<${address}>: Sender address not owned by the authenticated user`),
  senderOverLimit: () => reply(450, '4.7.1', 'Sender over its limit, try again later'),
  senderSuspended: () => reply(554, '5.7.1', 'Account suspended, contact the postmaster'),
  // Destination pools (mx, originalDestination): the node looks up or takes the destination itself.
  nullMx: () => reply(556, '5.1.10', 'Recipient domain accepts no mail (null MX, RFC 7505)'),
  noSuchDomain: () => reply(550, '5.1.2', 'Recipient domain does not exist'),
  noMailHost: () => reply(550, '5.4.4', 'Recipient domain has no mail host address'),
  dnsFailure: () => reply(451, '4.4.3', 'DNS lookup of the recipient domain failed, try again later'),
  noOriginalDestination: () =>
    reply(451, '4.3.0', 'Original destination unknown for this connection, try again later'),
  destinationDenied: () => reply(554, '5.7.1', 'Destination not allowed'),
  scanReject: (text?: string) => reply(554, '5.7.1', text ?? 'Message rejected as spam'),
  scanDefer: (text?: string) =>
    reply(450, '4.7.1', text ?? 'Message deferred by the content filter, try again later'),
  scanDiscard: () => reply(554, '5.7.1', 'Message refused by the content filter'),
  scanUnavailable: () => reply(451, '4.3.5', 'Content filter unavailable, try again later'),
  scanFailedReject: () => reply(554, '5.7.1', 'Message could not be scanned'),
};

export function isPositive(r: Reply): boolean {
  return r.code >= 200 && r.code < 300;
}

/** The wire form of a reply: `NNN-line` for all but the last line, `NNN line` for the last. */
export function wireReply(r: Reply): string {
  const n = r.lines.length;
  if (n <= 1) return `${r.code} ${r.lines[0] ?? ''}\r\n`;
  let out = '';
  for (let i = 0; i < n; i++) out += `${r.code}${i < n - 1 ? '-' : ' '}${r.lines[i]}\r\n`;
  return out;
}

export function formatReply(r: Reply): string {
  return `${r.code} ${r.lines.join(' / ')}`;
}
