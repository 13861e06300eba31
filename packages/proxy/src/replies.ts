// Every reply smtp-lb makes itself, named by what happened (DESIGN.md "Replies the proxy makes
// itself"); everything else a client sees after MAIL is the backend's reply, relayed verbatim. The
// README's table "Replies smtp-lb makes itself" lists each entry by name, and test/replies.test.ts
// fails when one of the two changes alone or when an entry has no test that makes it happen.
import type { Reply } from '@smtp-lb/upstream';

/** A reply of our own: one line, its enhanced code first. */
export function reply(code: number, enhanced: string, text: string): Reply {
  return { code, enhanced, lines: [`${enhanced} ${text}`] };
}

export const replies = {
  // ---- the node, the session and the backend
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
  longLine: () =>
    reply(550, '5.6.0', 'Message contains a line longer than 998 octets (RFC 5322 2.1.1), not relayed'),
  addressNotUtf8: () => reply(553, '5.6.7', 'Address is neither ASCII nor UTF-8 (RFC 6531)'),
  utf8NotAllowed: () =>
    reply(553, '5.6.7', 'Non-ASCII address requires the SMTPUTF8 parameter on MAIL FROM (RFC 6531)'),
  requireTlsUnsupported: () =>
    reply(550, '5.7.30', 'REQUIRETLS support required, and the backend for this recipient cannot give it'),
  eightBitUnsupported: () =>
    reply(
      550,
      '5.6.3',
      'Conversion required but not supported: the backend for this recipient lacks 8BITMIME',
    ),
  utf8Unsupported: () => reply(553, '5.6.7', 'The backend does not support SMTPUTF8 for this address'),
  /** NOTIFY=NEVER or SUCCESS to a backend without DSN. RFC 5321 4.1.1.11: 555; RFC 3461 gives none. */
  dsnUnsupported: (param: string) =>
    reply(555, '5.5.4', `Unsupported option: ${param}, the backend for this recipient does not offer DSN`),

  // ---- recipient maps (the listener's `recipients`)
  unknownRecipient: (address: string) =>
    reply(550, '5.1.1', `<${address}>: Recipient address rejected: User unknown`),
  recipientLookupFailed: (address: string) =>
    reply(451, '4.3.0', `<${address}>: Temporary recipient lookup failure, try again later`),

  // ---- AUTH (RFC 4954 6) and the rules about authenticated senders
  /** A step of the SASL exchange: the challenge (base64), or empty. */
  authChallenge: (challenge: string): Reply => ({ code: 334, lines: [challenge] }),
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

  // ---- destination pools (mx, originalDestination): the node looks up or takes the destination
  nullMx: () => reply(556, '5.1.10', 'Recipient domain accepts no mail (null MX, RFC 7505)'),
  noSuchDomain: () => reply(550, '5.1.2', 'Recipient domain does not exist'),
  noMailHost: () => reply(550, '5.4.4', 'Recipient domain has no mail host address'),
  dnsFailure: () => reply(451, '4.4.3', 'DNS lookup of the recipient domain failed, try again later'),
  noOriginalDestination: () =>
    reply(451, '4.3.0', 'Original destination unknown for this connection, try again later'),
  destinationDenied: () => reply(554, '5.7.1', 'Destination not allowed'),

  // ---- content scanners (the final dot waits for their verdicts)
  scanReject: (text?: string) => reply(554, '5.7.1', text ?? 'Message rejected as spam'),
  scanDefer: (text?: string) =>
    reply(450, '4.7.1', text ?? 'Message deferred by the content filter, try again later'),
  scanDiscard: () => reply(554, '5.7.1', 'Message refused by the content filter'),
  scanUnavailable: () => reply(451, '4.3.5', 'Content filter unavailable, try again later'),
  scanFailedReject: () => reply(554, '5.7.1', 'Message could not be scanned'),

  // ---- shaping: before the greeting and in the session (RFC 5321 3.1: 554 or 421 instead of 220)
  tooManyClients: (name: string) =>
    reply(421, '4.7.0', `${name} Too many connected clients, try again in a moment`),
  tooManySessions: () => reply(421, '4.7.0', 'Too many connections from your address, try again later'),
  tooManyFromNetwork: () => reply(421, '4.7.0', 'Too many connections from your network, try again later'),
  connectionRate: () => reply(421, '4.7.0', 'Connection rate limit exceeded, try again later'),
  messageRate: () => reply(421, '4.7.0', 'Message rate limit exceeded, try again later'),
  tarpitFull: () => reply(421, '4.7.0', 'Too many suspect connections, try again later'),
  earlyTalker: () => reply(554, '5.5.1', 'Protocol error: you talked before the greeting'),
  hostLockedOut: () => reply(554, '5.7.1', 'Host locked out for abuse, contact the postmaster'),
  hostOverLimit: () => reply(450, '4.7.1', 'Host over its sending limit, try again later'),
  notAClient: (hostname: string) =>
    reply(554, '5.7.1', `${hostname} Relaying through this host is for its own network only`),
  dnsbl: (address: string) =>
    reply(554, '5.7.1', `Service unavailable; client [${address}] blocked using DNSBL`),
  /** The policy service's REJECT (554 5.7.1), DEFER (450 4.7.1) or own code, with its text or ours. */
  policyRefused: (code: number, enhanced: string, context: string, text: string) =>
    reply(code, enhanced, `${context}: ${text}`),
  policyUnavailable: () => reply(451, '4.3.5', 'Server configuration problem, try again later'),

  // ---- the SMTP front: the protocol itself
  greeting: (name: string): Reply => ({ code: 220, lines: [`${name} ESMTP`] }),
  hello: (name: string, address: string, keywords: readonly string[]): Reply => ({
    code: 250,
    lines: [`${name} Nice to meet you, [${address}]`, ...keywords],
  }),
  sendData: (): Reply => ({ code: 354, lines: ['End data with <CR><LF>.<CR><LF>'] }),
  reset: () => reply(250, '2.0.0', 'Flushed'),
  noop: () => reply(250, '2.0.0', 'OK'),
  bye: () => reply(221, '2.0.0', 'Bye'),
  vrfy: () => reply(252, '2.5.0', 'Send some mail, I will try my best'),
  help: () => reply(214, '2.0.0', 'See https://tools.ietf.org/html/rfc5321 for details'),
  startTls: () => reply(220, '2.0.0', 'Ready to start TLS'),
  idleTimeout: (name: string) => reply(421, '4.4.2', `${name} Timeout - closing connection`),
  commandTimeout: (ms: number) =>
    reply(421, '4.4.2', `Command not complete within ${ms / 1000} s, closing connection`),
  dataTooSlow: (bytesPerSecond: number) =>
    reply(451, '4.4.2', `Message data arrived slower than ${bytesPerSecond} bytes/s, try again later`),
  lineTooLong: () => reply(500, '5.5.2', 'Line too long'),
  unrecognized: () => reply(500, '5.5.1', 'Command not recognized'),
  httpRequest: () => reply(421, '4.7.0', 'HTTP requests not allowed'),
  tooManyUnrecognized: () => reply(421, '4.7.0', 'Too many unrecognized commands'),
  /** XCLIENT or XFORWARD from a client: only we say who the client is. */
  identityCommand: (verb: string) => reply(550, '5.7.0', `${verb} is not allowed`),
  helloSyntax: (verb: string) => reply(501, '5.5.4', `Syntax: ${verb} hostname`),
  helloName: () => reply(501, '5.5.4', 'Bad hostname syntax'),
  helloFirst: () => reply(503, '5.5.1', 'Error: send HELO/EHLO first'),
  /** A MAIL FROM path that does not parse: the parser's reason. */
  pathSyntax: (reason: string) => reply(501, '5.5.4', reason),
  nestedMail: () => reply(503, '5.5.1', 'Error: nested MAIL command'),
  sizeSyntax: () => reply(501, '5.5.4', 'Bad SIZE parameter'),
  bodySyntax: () => reply(501, '5.5.4', 'BODY must be 7BIT or 8BITMIME'),
  smtputf8Syntax: () => reply(501, '5.5.4', 'SMTPUTF8 takes no value'),
  retSyntax: () => reply(501, '5.5.4', 'RET must be FULL or HDRS'),
  requireTlsWithoutTls: () => reply(530, '5.7.10', 'REQUIRETLS needs a TLS session'),
  recipientSyntax: () => reply(501, '5.1.3', 'Bad recipient address syntax'),
  needMail: () => reply(503, '5.5.1', 'Error: need MAIL command'),
  notifySyntax: () => reply(501, '5.5.4', 'NOTIFY must be NEVER, SUCCESS, FAILURE or DELAY'),
  notifyNeverCombined: () => reply(501, '5.5.4', 'NOTIFY=NEVER cannot be combined with other values'),
  orcptSyntax: () => reply(501, '5.5.4', 'Bad ORCPT parameter syntax'),
  /** The listener does not offer DSN (`dsn: false`): its parameters are refused (Postfix: 501 5.7.1). */
  dsnNotOffered: (param: string) => reply(555, '5.5.4', `Unsupported option: ${param}`),
  dataSyntax: () => reply(501, '5.5.4', 'Syntax: DATA'),
  needRcpt: () => reply(503, '5.5.1', 'Error: need RCPT command'),
  tlsActive: () => reply(503, '5.5.1', 'Error: TLS already active'),
  startTlsSyntax: () => reply(501, '5.5.4', 'Syntax: STARTTLS'),
  /** A session step failed in a way nothing else covers (a bug): never a 250. */
  internalError: () => reply(451, '4.3.0', 'Error: internal server error'),
};

export type ReplyName = keyof typeof replies;

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
