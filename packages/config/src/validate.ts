// Checks a parsed file against the schema and turns TypeBox's errors into short messages at
// readable paths: `unknown key (did you mean "weight"?)` rather than `Unexpected property`.
import type { TSchema } from '@sinclair/typebox';
import { Errors, type ValueError, ValueErrorType } from '@sinclair/typebox/errors';
import type { Issues, PathSegment } from './errors.js';
import { ConfigFileSchema, isObjectSchema, NAME_HINT } from './schema.js';
import { show } from './units.js';

export function validateSchema(value: unknown, issues: Issues): void {
  for (const error of Errors(ConfigFileSchema, value)) report(error, value, issues);
}

function report(error: ValueError, root: unknown, issues: Issues): void {
  const segments = pointerToSegments(error.path, root);
  const schema = error.schema;
  if (error.type === ValueErrorType.Union) {
    // A map given where a mode string or a map is allowed (pool tls): explain the map's own errors.
    const objectBranch = (schema.anyOf as TSchema[]).findIndex(isObjectSchema);
    if (isPlainObject(error.value) && objectBranch >= 0) {
      for (const inner of error.errors[objectBranch] ?? []) report(inner, root, issues);
      return;
    }
    issues.add(segments, 'EVALUE', `${unionHint(schema)}, ${got(error.value)}`);
    return;
  }
  if (error.type === ValueErrorType.ObjectRequiredProperty) {
    issues.add(segments, 'EREQUIRED', 'required');
    return;
  }
  if (error.type === ValueErrorType.ObjectAdditionalProperties) {
    const key = String(segments[segments.length - 1]);
    if (schema.patternProperties) issues.add(segments, 'EVALUE', `invalid name: ${NAME_HINT}`);
    else issues.add(segments, 'EUNKNOWN', unknownKey(key, Object.keys(schema.properties ?? {})));
    return;
  }
  const custom = schema.errorMessage as string | undefined;
  issues.add(segments, 'EVALUE', custom ? `${custom}, ${got(error.value)}` : message(error));
}

function message(error: ValueError): string {
  const s = error.schema;
  switch (error.type) {
    case ValueErrorType.Object:
      return `expected a map of keys, ${got(error.value)}`;
    case ValueErrorType.Array:
      return `expected a list, ${got(error.value)}`;
    case ValueErrorType.ArrayMinItems:
    case ValueErrorType.ObjectMinProperties:
      return 'must not be empty';
    case ValueErrorType.String:
      return `expected a string, ${got(error.value)}`;
    case ValueErrorType.StringMinLength:
      return 'must not be empty';
    case ValueErrorType.StringMaxLength:
      return `too long (at most ${s.maxLength} characters)`;
    case ValueErrorType.Integer:
      return `expected a whole number, ${got(error.value)}`;
    case ValueErrorType.Number:
      return `expected a number, ${got(error.value)}`;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be at least ${s.minimum}, ${got(error.value)}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be at most ${s.maximum}, ${got(error.value)}`;
    case ValueErrorType.NumberExclusiveMinimum:
      return `must be greater than ${s.exclusiveMinimum}, ${got(error.value)}`;
    case ValueErrorType.Boolean:
      return `expected true or false, ${got(error.value)}`;
    default:
      return `invalid value, ${got(error.value)}`;
  }
}

function unionHint(schema: TSchema): string {
  if (typeof schema.errorMessage === 'string') return schema.errorMessage;
  const literals: string[] = [];
  for (const branch of schema.anyOf as TSchema[]) {
    if (branch.const !== undefined) literals.push(String(branch.const));
    else if (branch.anyOf) literals.push(...(branch.anyOf as TSchema[]).map((b) => String(b.const)));
  }
  return `expected one of ${literals.join(', ')}`;
}

function got(value: unknown): string {
  if (value === null || value === undefined) return 'got nothing';
  if (isPlainObject(value)) return 'got a map';
  if (Array.isArray(value)) return 'got a list';
  return `got ${show(value)}`;
}

function unknownKey(key: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best ? `unknown key (did you mean "${best}"?)` : `unknown key (known: ${known.join(', ')})`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** `/pools/default/static/1` → ['pools', 'default', 'static', 1]: indexes where the value is a list. */
function pointerToSegments(pointer: string, root: unknown): PathSegment[] {
  const segments: PathSegment[] = [];
  let node: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      segments.push(Number(key));
      node = node[Number(key)];
    } else {
      segments.push(key);
      node = isPlainObject(node) ? node[key] : undefined;
    }
  }
  return segments;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
