// Typed ledger errors with stable codes. The Lua scripts never raise Lua errors: they return a
// numeric code, and `scriptError` is the one place that turns a code into an error.

export type LedgerErrorCode =
  | 'LEDGER_BAD_ARGUMENT'
  | 'LEDGER_WRONG_TYPE'
  | 'LEDGER_UNKNOWN_REPLY'
  | 'LEDGER_UNAVAILABLE'
  | 'LEDGER_TIMEOUT';

export class LedgerError extends Error {
  constructor(
    readonly code: LedgerErrorCode,
    message: string,
    /** The script or operation that failed. */
    readonly command?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LedgerError';
  }
}

/** Reply codes shared by every script (first element of the reply array). */
export const ReplyCode = {
  ok: 1,
  full: 2,
  badArgument: -1,
  wrongType: -2,
} as const;

/**
 * Validates a script reply: an array of integers whose first element is a success code.
 * Anything else becomes a LedgerError; these are bugs or foreign data, not outages.
 */
export function checkReply(command: string, reply: unknown): number[] {
  if (!Array.isArray(reply) || reply.length === 0 || !reply.every((v) => typeof v === 'number')) {
    throw new LedgerError(
      'LEDGER_UNKNOWN_REPLY',
      `${command}: unexpected reply ${JSON.stringify(reply)}`,
      command,
    );
  }
  const code = reply[0] as number;
  if (code === ReplyCode.ok || code === ReplyCode.full) return reply as number[];
  throw scriptError(command, code);
}

export function scriptError(command: string, code: number): LedgerError {
  switch (code) {
    case ReplyCode.badArgument:
      return new LedgerError(
        'LEDGER_BAD_ARGUMENT',
        `${command}: Redis script refused its arguments`,
        command,
      );
    case ReplyCode.wrongType:
      return new LedgerError(
        'LEDGER_WRONG_TYPE',
        `${command}: a ledger key holds another type of value (key prefix shared with other data?)`,
        command,
      );
    default:
      return new LedgerError('LEDGER_UNKNOWN_REPLY', `${command}: unknown reply code ${code}`, command);
  }
}
