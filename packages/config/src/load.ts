// Text or file → SmtpLbConfig, or every error with its path. Stages: YAML syntax (line and
// column), `${VAR}` expansion in scalars, the schema, then resolve.ts (defaults, units, references).
// Errors come back in the order their lines appear in the file.
import { readFileSync } from 'node:fs';
import {
  type Document,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  type Scalar,
} from 'yaml';
import { type Env, expandEnv } from './env.js';
import {
  type ConfigError,
  ConfigInvalidError,
  formatPath,
  type Issue,
  Issues,
  type PathSegment,
  ROOT_PATH,
} from './errors.js';
import type { SmtpLbConfig } from './model.js';
import { type ResolveOptions, resolveConfig } from './resolve.js';
import { validateSchema } from './validate.js';

export interface ParseOptions extends ResolveOptions {
  /** Variables for `${VAR}`; loadConfig passes process.env. */
  env?: Env;
}

export type ConfigResult = { ok: true; config: SmtpLbConfig } | { ok: false; errors: ConfigError[] };

export function parseConfig(text: string, options: ParseOptions = {}): ConfigResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  if (doc.errors.length > 0) return { ok: false, errors: yamlErrors(doc, text, lineCounter) };

  const issues = new Issues();
  if (doc.contents) expandNode(doc.contents, [], options.env ?? {}, issues);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // Unresolved or exponentially nested aliases.
    return { ok: false, errors: [{ path: ROOT_PATH, code: 'EYAML', message: (e as Error).message }] };
  }
  if (raw === null || raw === undefined) {
    return {
      ok: false,
      errors: [{ path: ROOT_PATH, code: 'EREQUIRED', message: 'the file has no settings' }],
    };
  }
  validateSchema(raw, issues);
  const config = resolveConfig(raw, issues, options);
  if (issues.size > 0) return { ok: false, errors: inFileOrder(issues.list(), doc) };
  return { ok: true, config };
}

/** Reads and parses one file (synchronously: start-up and SIGHUP reload both wait for it anyway). */
export function loadConfig(path: string, options: ParseOptions = {}): ConfigResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
    return {
      ok: false,
      errors: [{ path: ROOT_PATH, code: 'EREAD', message: `cannot read ${path}: ${reason}` }],
    };
  }
  return parseConfig(text, { env: process.env, source: path, ...options });
}

/** For start-up: the config, or a ConfigInvalidError listing every error. */
export function loadConfigOrThrow(path: string, options: ParseOptions = {}): SmtpLbConfig {
  const result = loadConfig(path, options);
  if (!result.ok) throw new ConfigInvalidError(result.errors, path);
  return result.config;
}

/**
 * Expands `${VAR}` in every scalar value (keys are left alone). An unquoted value that used a
 * variable takes the type of what it expands to (`port: ${N}` is a number), and one that expands
 * to nothing counts as absent, so `token: ${TOKEN:-}` means "no token unless TOKEN is set".
 */
function expandNode(node: Node, at: PathSegment[], env: Env, issues: Issues): void {
  if (isMap(node)) {
    node.items = node.items.filter((pair) => {
      if (!isPair(pair) || !isScalar(pair.key) || !pair.value) return true;
      const key = String(pair.key.value);
      if (!isScalar(pair.value)) {
        expandNode(pair.value as Node, [...at, key], env, issues);
        return true;
      }
      return expandScalar(pair.value, [...at, key], env, issues) !== 'absent';
    });
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      if (isScalar(item)) expandScalar(item, [...at, i], env, issues);
      else if (isMap(item) || isSeq(item)) expandNode(item, [...at, i], env, issues);
    });
  }
}

function expandScalar(node: Scalar, at: PathSegment[], env: Env, issues: Issues): 'absent' | 'kept' {
  if (typeof node.value !== 'string' || !node.value.includes('$')) return 'kept';
  const result = expandEnv(node.value, env);
  if (!result.ok) {
    issues.add(at, 'EENV', result.message);
    return 'kept';
  }
  const plain = node.type === 'PLAIN' && node.value.includes('${');
  node.value = plain ? retype(result.value) : result.value;
  return plain && result.value === '' ? 'absent' : 'kept';
}

/** The YAML core schema's reading of a plain value, for numbers and booleans only. */
function retype(text: string): string | number | boolean {
  if (/^-?[0-9]+(\.[0-9]+)?$/.test(text)) return Number(text);
  if (text === 'true' || text === 'false') return text === 'true';
  return text;
}

function yamlErrors(doc: Document, text: string, lineCounter: LineCounter): ConfigError[] {
  const lines = text.split('\n');
  const errors: ConfigError[] = [];
  const seenLines = new Set<number>();
  for (const e of doc.errors) {
    const { line, col } = lineCounter.linePos(e.pos[0]);
    // Later errors on the same line are the parser losing its footing after the first one.
    if (seenLines.has(line)) continue;
    seenLines.add(line);
    errors.push({
      path: ROOT_PATH,
      code: 'EYAML',
      message: `YAML syntax error at line ${line}, column ${col}: ${e.message}${hint(lines[line - 1] ?? '')}`,
    });
  }
  return errors;
}

/** `{ address: ${B} }` and `listen: [::1]:25` are the usual ways to trip on YAML's flow syntax. */
function hint(line: string): string {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the operator's `${...}`, not ours
  if (/[[{].*\$\{/.test(line)) return ' (quote values with ${...} inside { } or [ ])';
  if (/\[[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\]/.test(line)) return " (quote IPv6 addresses: '[::1]:25')";
  return '';
}

function inFileOrder(list: Issue[], doc: Document): ConfigError[] {
  const withPos = list.map((issue, order) => ({ issue, order, pos: positionOf(doc, issue.segments) }));
  withPos.sort((a, b) => a.pos - b.pos || a.order - b.order);
  return withPos.map(({ issue }) => ({
    path: formatPath(issue.segments),
    message: issue.message,
    code: issue.code,
  }));
}

/** Offset of the deepest node on the path that exists (a missing key sorts with its parent). */
function positionOf(doc: Document, segments: PathSegment[]): number {
  for (let n = segments.length; n >= 0; n--) {
    const node = doc.getIn(segments.slice(0, n), true) as Node | undefined;
    if (node?.range) return node.range[0];
  }
  return 0;
}
