// The one interface every content scanner driver implements (rspamd.ts, milter.ts): a scanner opens a
// session per client session (a milter keeps one connection for it), a session begins one job per
// message, the job takes the message's content as it streams (push resolves when the scanner has
// taken the chunk: that is the backpressure) and end() gives the verdict. The scan stage
// (scan-stage.ts) adds the timeout, `maxSize`, `onError`, metrics and the log line.
import type { Reply } from '@smtp-lb/upstream';

/** What the scan stage knows about the message and its client when a job begins. */
export interface ScanEnvelope {
  /** The session id (`sid`). */
  sessionId: string;
  /** `<sid>.<n>`: rspamd's Queue-Id, the milter's `i` macro. */
  queueId: string;
  clientAddress: string;
  clientPort: number;
  /** The client's HELO/EHLO name ('' when it gave none). */
  helo: string;
  /** Our listener's host name (the milter's `j` macro). */
  localHostname: string;
  /** The SASL-authenticated user, when there is one. */
  user: string | undefined;
  from: string;
  /** MAIL parameters as the client wrote them. */
  mailArgs: Record<string, string | true>;
  rcpts: string[];
  secure: boolean;
}

export type VerdictAction = 'accept' | 'reject' | 'defer' | 'discard';

export interface ScanVerdict {
  action: VerdictAction;
  /** What the scanner said, in its own terms: rspamd's action, the milter's reply. */
  said: string;
  /** The scanner's text for the client (rspamd's `messages.smtp_message`), put after our code. */
  text?: string;
  /** A whole reply of the scanner's own (a milter's SMFIR_REPLYCODE), given as it is. */
  reply?: Reply;
  score?: number;
  requiredScore?: number;
  /** The highest-scoring symbols, best first (rspamd). */
  symbols?: string[];
  /** Changes the scanner asked for, which streaming cannot apply (`add header`, milter `h`, `m`...). */
  modifications: string[];
}

export interface ScanJob {
  /** Resolves when the scanner has taken `chunk` (content bytes, un-stuffed, as the client sent them). */
  push(chunk: Buffer): Promise<void>;
  /** The client's final dot: resolves with the verdict; rejects with a ScanError. */
  end(): Promise<ScanVerdict>;
  /** The message is gone (client left, too big, timeout): stop, free what the job holds. */
  abort(): void;
}

export interface ScannerSession {
  begin(envelope: ScanEnvelope): ScanJob;
  /** The client session ended. */
  close(): void;
}

export interface Scanner {
  readonly name: string;
  /** What this driver is, for logs (`rspamd`, `milter`). */
  readonly kind: string;
  open(sessionId: string): ScannerSession;
  /** The node stops: close pools and connections. */
  close(): Promise<void>;
}

export type ScanErrorCode = 'ECONNECT' | 'ETIMEOUT' | 'EPROTOCOL' | 'EHTTP' | 'ECLOSED' | 'EABORTED';

export class ScanError extends Error {
  readonly code: ScanErrorCode;
  constructor(code: ScanErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = 'ScanError';
    this.code = code;
  }
}

/** Printable ASCII only, one line, bounded: a scanner's text must not smuggle anything into a reply. */
export function safeReplyText(text: string, max = 400): string {
  return text
    .replace(/[^\x20-\x7e]+/g, ' ')
    .trim()
    .slice(0, max);
}
