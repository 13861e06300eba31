// Config errors: where (a path like `pools.default.static[1].address`), what, and a stable code.
// Every stage adds to one Issues list, so one run reports every mistake in the file at once.

export type ConfigErrorCode =
  | 'EREAD' // the file cannot be read
  | 'EYAML' // YAML syntax
  | 'EENV' // `${VAR}` unset or malformed
  | 'EUNKNOWN' // a key the schema does not have
  | 'EREQUIRED' // a required key is missing
  | 'EVALUE' // wrong type, syntax or range
  | 'EREF' // names a pool or listener that is not defined
  | 'ECONFLICT'; // two settings that cannot both hold

export interface ConfigError {
  /** `(root)` for the whole file. */
  path: string;
  message: string;
  code: ConfigErrorCode;
}

export type PathSegment = string | number;

export const ROOT_PATH = '(root)';

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (!PLAIN_KEY.test(s)) out += `[${JSON.stringify(s)}]`;
    else out += out === '' ? s : `.${s}`;
  }
  return out === '' ? ROOT_PATH : out;
}

export interface Issue {
  segments: PathSegment[];
  code: ConfigErrorCode;
  message: string;
}

/** Collects issues; the first one at a path wins, so a later stage never repeats an earlier one. */
export class Issues {
  private readonly byPath = new Map<string, Issue>();

  add(segments: readonly PathSegment[], code: ConfigErrorCode, message: string): void {
    const key = formatPath(segments);
    if (!this.byPath.has(key)) this.byPath.set(key, { segments: [...segments], code, message });
  }

  get size(): number {
    return this.byPath.size;
  }

  list(): Issue[] {
    return [...this.byPath.values()];
  }
}

/** Thrown by loadConfigOrThrow: start-up fails fast with every error listed. */
export class ConfigInvalidError extends Error {
  readonly code = 'ECONFIG';

  constructor(
    readonly errors: readonly ConfigError[],
    readonly source: string,
  ) {
    super(`invalid config ${source}:\n${errors.map((e) => `  ${e.path}: ${e.message}`).join('\n')}`);
    this.name = 'ConfigInvalidError';
  }
}
