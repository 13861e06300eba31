// The contract of our SMTP client for backends. The proxy drives one UpstreamConnection per client
// session; every failure is an UpstreamError that says where it happened and what the backend said.
import type { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';

export type TlsMode = 'none' | 'opportunistic' | 'required';
export type ProxyHeaderVersion = 'off' | 'v1' | 'v2';

/** One SMTP reply as the backend sent it. */
export interface Reply {
  code: number;
  /** RFC 3463 enhanced status code of the first line, when the backend gave one (e.g. `5.1.1`). */
  enhanced?: string;
  /** Text of each line after `NNN-`/`NNN `, enhanced code included, exactly as received. */
  lines: string[];
}

export interface UpstreamTimeouts {
  connect: number;
  greeting: number;
  command: number;
  dataStart: number;
  dataDone: number;
  /** Longest wait for the backend to take more content while streaming DATA (socket drain); default dataStart. */
  dataBlock?: number;
}

export interface UpstreamOptions {
  host: string;
  port: number;
  /** Name we send in EHLO/HELO. */
  heloName: string;
  tls: { mode: TlsMode; verify: boolean; ca?: string | Buffer; servername?: string };
  /** auto: send XCLIENT when the backend offers it; off: never. */
  xclient: 'auto' | 'off';
  proxyProtocol: ProxyHeaderVersion;
  timeouts: UpstreamTimeouts;
}

/** Who the real client is: goes to the backend by XCLIENT or a PROXY header. */
export interface ClientIdentity {
  address: string;
  port: number;
  /** Address and port the client connected to (our listener). */
  localAddress: string;
  localPort: number;
  helo?: string;
  /** Reverse DNS name; `[UNAVAILABLE]` when not looked up. */
  name?: string;
  login?: string;
  /** SMTP or ESMTP. */
  proto?: 'SMTP' | 'ESMTP';
}

export interface MailCommand {
  address: string;
  /** Parameters as given by the client, e.g. { SIZE: '1234', BODY: '8BITMIME', SMTPUTF8: true }. */
  params: Record<string, string | true>;
}

export type UpstreamErrorCode =
  | 'ECONNECT' // TCP connect failed or timed out
  | 'EGREETING' // no 220, or a bad greeting
  | 'EEHLO' // EHLO and HELO both refused
  | 'ETLS' // STARTTLS refused or handshake failed (and tls required)
  | 'EXCLIENT' // XCLIENT refused (not authorised): fail closed
  | 'ETIMEOUT' // a reply did not come within its phase's timeout
  | 'ECLOSED' // the backend closed or reset the connection
  | 'EPROTOCOL' // a reply that makes no sense at that point (no code, 354 to RCPT, 250 to DATA)
  | 'EABORTED'; // we aborted (e.g. message too big, bare newline rejected)

export type Stage =
  | 'connect'
  | 'greeting'
  | 'ehlo'
  | 'starttls'
  | 'xclient'
  | 'auth'
  | 'mail'
  | 'rcpt'
  | 'data'
  | 'dataDone'
  | 'rset'
  | 'quit';

/** Why we aborted (EABORTED): content too big, a bare CR/LF, a NUL or a line over 998 octets under
 * `reject`, the body stream failed, or the caller gave up (destroy(), or the AbortSignal while
 * connecting). */
export type AbortReason = 'size' | 'bare-newline' | 'nul' | 'long-line' | 'source' | 'caller';

/** Options of one DATA transfer. */
export interface DataOptions {
  bareNewlines: 'normalize' | 'reject';
  /** NUL in the content: abort with EABORTED 'nul' (the default), or remove it before framing. */
  nulBytes?: 'reject' | 'strip';
  /**
   * A content line over 998 octets (RFC 5322 2.1.1, the stuffed dot not counted): abort with
   * EABORTED 'long-line' (the default), or send it as it is.
   */
  longLines?: 'reject' | 'pass';
  /** Content bytes (as read from the body) allowed; one more aborts with EABORTED 'size'. */
  maxBytes?: number;
}

/** One established backend connection; emits 'close' once when its socket is gone. */
export interface UpstreamConnection extends EventEmitter {
  readonly greeting: Reply;
  /** EHLO keyword (upper case) -> its parameters ('' when none), from the last EHLO. */
  readonly capabilities: ReadonlyMap<string, string>;
  readonly secure: boolean;
  readonly xclientSent: boolean;
  readonly closed: boolean;
  envelope(mail: MailCommand | undefined, rcpts: MailCommand[]): Promise<{ mail?: Reply; rcpts: Reply[] }>;
  data(body: Readable, opts: DataOptions): Promise<Reply>;
  rset(): Promise<Reply>;
  /**
   * AUTH PLAIN with an initial response (RFC 4954, RFC 4616): the backend's reply (235 on success,
   * 535 for bad credentials, 4xx for a temporary failure). Only between transactions.
   */
  authenticate(user: string, password: string): Promise<Reply>;
  quit(): Promise<void>;
  destroy(): void;
}
