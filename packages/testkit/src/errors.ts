// Errors of the testkit carry a stable `code` and enough of the program's own output to see why a
// server did not come up, so a failing test explains itself without a rerun.

export type TestkitErrorCode =
  | 'TESTKIT_SPAWN' // the program could not be started (not installed, not executable)
  | 'TESTKIT_EXITED' // the program ended while we waited for it to become ready
  | 'TESTKIT_TIMEOUT' // a wait (port, log line, command) ran past its bound
  | 'TESTKIT_COMMAND' // a helper command (redis-cli, postqueue, getent...) failed
  | 'TESTKIT_OPTION'; // an option the helper cannot honour

export class TestkitError extends Error {
  readonly code: TestkitErrorCode;

  constructor(code: TestkitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = 'TestkitError';
    this.code = code;
  }
}

/** The last lines of a program's output, for error messages. */
export function tail(text: string, lines = 20): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
