// The README's configuration reference, rendered from the schema so the table cannot drift from
// what the loader accepts: key, type, default and meaning of every documented setting.
import type { TSchema } from '@sinclair/typebox';
import { ConfigFileSchema, isObjectSchema } from './schema.js';

export interface ReferenceRow {
  key: string;
  type: string;
  /** As shown in the table. */
  default: string;
  /** The schema's `default`, when the default is a value rather than a rule. */
  defaultValue?: unknown;
  meaning: string;
}

export const REFERENCE_BEGIN = '<!-- reference:begin (generated from src/schema.ts) -->';
export const REFERENCE_END = '<!-- reference:end -->';

export function referenceRows(): ReferenceRow[] {
  const rows: ReferenceRow[] = [];
  walkObject(ConfigFileSchema, '', rows);
  return rows;
}

export function referenceTable(): string {
  const lines = ['| key | type | default | meaning |', '|---|---|---|---|'];
  for (const r of referenceRows()) lines.push(`| \`${r.key}\` | ${r.type} | ${r.default} | ${r.meaning} |`);
  return `${lines.join('\n')}\n`;
}

/** Replaces the generated block of a README text with the current table. */
export function updateReadme(readme: string): string {
  const begin = readme.indexOf(REFERENCE_BEGIN);
  const end = readme.indexOf(REFERENCE_END);
  if (begin < 0 || end < begin)
    throw new Error(`README has no ${REFERENCE_BEGIN} ... ${REFERENCE_END} block`);
  return `${readme.slice(0, begin)}${REFERENCE_BEGIN}\n${referenceTable()}${readme.slice(end)}`;
}

function walkObject(schema: TSchema, prefix: string, rows: ReferenceRow[]): void {
  const required: string[] = schema.required ?? [];
  for (const [key, child] of Object.entries(schema.properties as Record<string, TSchema>)) {
    visit(child, prefix === '' ? key : `${prefix}.${key}`, required.includes(key), rows);
  }
}

function visit(schema: TSchema, key: string, required: boolean, rows: ReferenceRow[]): void {
  if (schema.description) {
    rows.push({
      key,
      type: typeOf(schema),
      default: defaultOf(schema, required),
      ...(schema.default === undefined ? {} : { defaultValue: schema.default }),
      meaning: schema.description,
    });
  }
  if (isObjectSchema(schema)) walkObject(schema, key, rows);
  else if (schema.type === 'array' && isObjectSchema(schema.items))
    walkObject(schema.items, `${key}[]`, rows);
  else if (schema.patternProperties) {
    for (const value of Object.values(schema.patternProperties as Record<string, TSchema>)) {
      walkObject(value, `${key}.<name>`, rows);
    }
  } else if (schema.anyOf) {
    for (const branch of schema.anyOf as TSchema[]) if (isObjectSchema(branch)) walkObject(branch, key, rows);
  }
}

function typeOf(schema: TSchema): string {
  if (schema.syntax) return schema.syntax;
  if (schema.anyOf) {
    const branches = schema.anyOf as TSchema[];
    const literals = branches.flatMap((b) =>
      b.const !== undefined ? [b.const] : (b.anyOf ?? []).map((x: TSchema) => x.const),
    );
    const suffix = branches.some(isObjectSchema) ? ' or map' : '';
    return `${literals.map((l) => `\`${l}\``).join(' \\| ')}${suffix}`;
  }
  if (schema.type === 'array')
    return isObjectSchema(schema.items) ? 'list' : `list of ${typeOf(schema.items)}`;
  if (schema.patternProperties) return 'map of name → pool';
  if (schema.type === 'integer') return 'whole number';
  return String(schema.type);
}

function defaultOf(schema: TSchema, required: boolean): string {
  if (required) return 'required';
  if (schema.default !== undefined) {
    return `\`${typeof schema.default === 'string' ? schema.default : JSON.stringify(schema.default)}\``;
  }
  return schema.defaultText ?? '—';
}
