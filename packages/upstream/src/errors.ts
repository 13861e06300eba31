// The one error type of the upstream client: a stable `code`, the `stage` it happened in and, when
// the backend said something, its reply in nodemailer's shape (responseCode, enhancedCode, response).
import type { AbortReason, Reply, Stage, UpstreamErrorCode } from './types.js';

export class UpstreamError extends Error {
  override name = 'UpstreamError';
  readonly code: UpstreamErrorCode;
  readonly stage: Stage;
  readonly reply?: Reply;
  /** The command line that got no (or a bad) reply, without CRLF. */
  readonly command?: string;
  readonly responseCode?: number;
  readonly enhancedCode?: string;
  /** The reply as the backend sent it, lines joined by `\n`. */
  readonly response?: string;
  readonly abortReason?: AbortReason;

  constructor(
    code: UpstreamErrorCode,
    stage: Stage,
    message: string,
    extra: { reply?: Reply; command?: string; abortReason?: AbortReason; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.code = code;
    this.stage = stage;
    if (extra.command !== undefined) this.command = extra.command;
    if (extra.abortReason !== undefined) this.abortReason = extra.abortReason;
    if (extra.reply) {
      this.reply = extra.reply;
      this.responseCode = extra.reply.code;
      if (extra.reply.enhanced !== undefined) this.enhancedCode = extra.reply.enhanced;
      this.response = replyText(extra.reply);
    }
  }
}

/** `250-first\n250 last`: a reply as it was on the wire, without CRLFs. */
export function replyText(reply: Reply): string {
  const last = reply.lines.length - 1;
  return reply.lines.map((l, i) => `${reply.code}${i === last ? ' ' : '-'}${l}`).join('\n');
}
