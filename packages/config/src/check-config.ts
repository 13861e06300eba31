// `smtp-lb check-config FILE`: validates a file and prints every error as `path: message`, one per
// line. runCheckConfig is the whole command behind a small interface, so the proxy's CLI wires it
// in one line and tests drive it without a process.
import type { ConfigError } from './errors.js';
import { loadConfig, type ParseOptions } from './load.js';
import type { SmtpLbConfig } from './model.js';

export interface CheckResult {
  ok: boolean;
  errors: ConfigError[];
  /** What check-config prints: the error lines, or a one-line summary of a valid file. */
  text: string;
  config?: SmtpLbConfig;
}

export interface TextSink {
  write(chunk: string): unknown;
}

export const CHECK_CONFIG_USAGE = 'usage: smtp-lb check-config FILE\n';

export function formatErrors(errors: readonly ConfigError[]): string {
  return errors.map((e) => `${e.path}: ${e.message}\n`).join('');
}

export function checkConfigFile(path: string, options: ParseOptions = {}): CheckResult {
  const result = loadConfig(path, options);
  if (!result.ok) return { ok: false, errors: result.errors, text: formatErrors(result.errors) };
  const c = result.config;
  const counts = [
    plural(c.listeners.length, 'listener'),
    plural(Object.keys(c.pools).length, 'pool'),
    plural(c.routes.length, 'route'),
  ];
  return { ok: true, errors: [], text: `${path}: OK (${counts.join(', ')})\n`, config: c };
}

/** `argv` is what follows `check-config`. Exit code: 0 valid, 1 invalid, 2 usage. */
export function runCheckConfig(argv: readonly string[], out: TextSink, err: TextSink): number {
  const [file, ...rest] = argv;
  if (file === '--help' || file === '-h') {
    out.write(CHECK_CONFIG_USAGE);
    return 0;
  }
  if (file === undefined || file.startsWith('-') || rest.length > 0) {
    err.write(CHECK_CONFIG_USAGE);
    return 2;
  }
  const result = checkConfigFile(file);
  if (result.ok) {
    out.write(result.text);
    return 0;
  }
  err.write(result.text);
  err.write(`${file}: ${plural(result.errors.length, 'error')}\n`);
  return 1;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
