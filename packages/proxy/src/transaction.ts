// Who the client is and the envelope of its current transaction: one object each, owned and written
// by the session (session.ts) alone; the SMTP front and the session checks read them (Haraka's
// connection and transaction). Nothing else keeps a copy of the sender, the recipients or the
// bound backend.

/** An address and port. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** A MAIL FROM or RCPT TO path as the client wrote it. */
export interface SmtpAddress {
  address: string;
  /** Parameters as sent, keys upper-cased; a keyword without a value is `true`. */
  args: Record<string, string | true>;
}

/** The client of one session, fixed at admission except for what the session learns on the way. */
export interface Client {
  /** The session id (`sid` in every log line). */
  readonly id: string;
  /** The client: the PROXY header's source when a trusted balancer sent one, else the peer. */
  readonly address: string;
  readonly port: number;
  /**
   * The address the client dialled: the PROXY header's destination (an interceptor hands over the
   * original destination this way; DESIGN.md "outbound"), else our listener's own address. It goes to
   * the backend as XCLIENT DESTADDR/DESTPORT and as the destination of a PROXY header.
   */
  readonly destination: Endpoint;
  /** `address` and `destination` come from a trusted PROXY header (not from the socket). */
  readonly proxied: boolean;
  /** The HELO/EHLO name, lower-cased; '' until the client introduced itself (again after STARTTLS). */
  readonly helo: string;
  /** ESMTP after EHLO, SMTP after HELO, '' before either. */
  readonly proto: 'ESMTP' | 'SMTP' | '';
  /** The session is encrypted (implicit TLS or STARTTLS). */
  readonly secure: boolean;
  /** The SASL-authenticated user (AUTH in the front); undefined until then. */
  readonly user: string | undefined;
  /** Sender addresses the verifier listed for the user (`senders.ownAddresses`), lower-cased. */
  readonly userAddresses: readonly string[] | undefined;
}

/** An accepted recipient and the pool its route gave. */
export interface Recipient extends SmtpAddress {
  readonly pool: string;
}

/** One transaction: from an accepted MAIL to the end of DATA, RSET, a new EHLO/HELO or STARTTLS. */
export interface Transaction {
  readonly client: Client;
  /** `<sid>.<n>`, the n-th transaction of the session (the policy service's `instance`). */
  readonly id: string;
  /** The sender and its parameters, as written. */
  readonly mail: Readonly<SmtpAddress>;
  /** Recipients the backend accepted, in order. */
  readonly recipients: readonly Recipient[];
  /** Pool bound by the first accepted recipient; every later one must route to the same. */
  readonly pool: string | undefined;
  /** Id of the backend the transaction is on, once bound. */
  readonly backend: string | undefined;
  /** The backend has accepted MAIL for this transaction (it was replayed with the first RCPT). */
  readonly mailAtBackend: boolean;
}

/** What the owner may change. */
export type Writable<T> = { -readonly [K in keyof T]: T[K] };
