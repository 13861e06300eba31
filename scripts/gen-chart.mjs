#!/usr/bin/env node
// Writes the Helm chart's derived files: values.schema.json (the chart's values, typed from
// values.yaml and its "# --" comments, with the config package's JSON Schema under `config`), the
// README's values table, and files/smtp-lb-alerts.yaml (a copy of deploy/'s alert rules).
// `--check` writes nothing and exits 1 when a file is stale. Needs packages/config built.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { isMap, isScalar, isSeq, parseDocument } from 'yaml';

const root = resolve(import.meta.dirname, '..');
const chart = join(root, 'helm/smtp-lb');
const ALERTS_SOURCE = join(root, 'deploy/prometheus/smtp-lb-alerts.yaml');
const TABLE_START = '<!-- values-table:start (scripts/gen-chart.mjs) -->';
const TABLE_END = '<!-- values-table:end -->';
/** Defaults longer than this are shown as "see values.yaml" in the table. */
const MAX_DEFAULT_WIDTH = 48;
const TYPE_NAMES = {
  int: 'integer',
  integer: 'integer',
  number: 'number',
  string: 'string',
  bool: 'boolean',
  boolean: 'boolean',
  object: 'object',
  array: 'array',
  list: 'array',
  null: 'null',
};

class GenError extends Error {
  code = 'EGENCHART';
}

/** The "# --" part of a comment block: the description and an optional "(type|type)" prefix. */
function docComment(comment) {
  if (!comment) return undefined;
  const lines = comment.split('\n').map((l) => l.replace(/^ ?/, ''));
  const start = lines.findLastIndex((l) => l.startsWith('-- '));
  if (start < 0) return undefined;
  let text = [lines[start].slice(3), ...lines.slice(start + 1)]
    .map((l) => l.trim())
    .join(' ')
    .trim();
  let types;
  const m = /^\(([a-z|]+)\)\s*/.exec(text);
  if (m) {
    types = m[1].split('|').map((t) => {
      const name = TYPE_NAMES[t];
      if (!name) throw new GenError(`values.yaml: unknown type "${t}" in "(${m[1]})"`);
      return name;
    });
    text = text.slice(m[0].length);
  }
  return { text, types };
}

function inferType(value) {
  if (value === null) return undefined;
  if (Array.isArray(value)) return ['array'];
  if (typeof value === 'number') return [Number.isInteger(value) ? 'integer' : 'number'];
  return [typeof value];
}

/**
 * Walks a values map. A documented key is one table row and a schema of its type (maps under it are
 * free-form: annotations, resources). An undocumented key must be a map whose keys are documented;
 * it becomes a closed object, so a misspelt key fails `helm install` instead of being ignored.
 */
function walkMap(map, prefix, rows, configSchema) {
  const properties = {};
  map.items.forEach((pair, i) => {
    const key = String(pair.key.value);
    const path = prefix ? `${prefix}.${key}` : key;
    const comment = pair.key.commentBefore ?? (i === 0 ? map.commentBefore : undefined);
    const doc = docComment(comment);
    const value = pair.value;
    const js = value === null || value === undefined ? null : value.toJSON();
    if (doc) {
      const types = doc.types ?? inferType(js);
      rows.push({ path, types, value: js, text: doc.text });
      const schema = { description: doc.text, default: js };
      if (types) schema.type = types.length === 1 ? types[0] : types;
      properties[key] = path === 'config' ? { ...configSchema, description: doc.text } : schema;
    } else if (isMap(value)) {
      properties[key] = walkMap(value, path, rows, configSchema);
    } else {
      const kind = isSeq(value) ? 'list' : isScalar(value) ? 'value' : 'key';
      throw new GenError(`values.yaml: ${kind} ${path} has no "# --" comment; document it`);
    }
  });
  return { type: 'object', additionalProperties: false, properties };
}

async function configJsonSchema() {
  const modulePath = join(root, 'packages/config/dist/src/json-schema.js');
  let mod;
  try {
    mod = await import(modulePath);
  } catch (e) {
    throw new GenError(
      `cannot load ${relative(root, modulePath)} (build it: npx tsc -b packages/config): ${e.message}`,
    );
  }
  const { $schema: _drop, ...schema } = mod.configJsonSchema();
  return allowEnvReferences(schema);
}

/** A string holding a `${VAR}` or `${VAR:-default}` reference, which the node expands at load. */
const ENV_REFERENCE = { type: 'string', pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}' };

/**
 * The node expands `${VAR}` before it validates, so a value like `hostname: ${MX_NAME}` is valid in
 * the file; the chart validates before any expansion. Every string with a syntax (pattern, const,
 * enum) therefore also accepts a `${VAR}` reference; check-config judges the expanded value at start.
 */
function allowEnvReferences(schema) {
  if (Array.isArray(schema)) return schema.map(allowEnvReferences);
  if (typeof schema !== 'object' || schema === null) return schema;
  // A choice of words (`policy: least-connections | ...`): one more alternative, not one per word.
  if (schema.anyOf?.every((s) => typeof s.const === 'string'))
    return { ...schema, anyOf: [...schema.anyOf, ENV_REFERENCE] };
  const out = {};
  for (const [key, value] of Object.entries(schema)) out[key] = allowEnvReferences(value);
  const constrained = out.pattern !== undefined || out.const !== undefined || out.enum !== undefined;
  if (out.type !== 'string' || !constrained) return out;
  const { description, default: dflt, ...syntax } = out;
  return {
    ...(description === undefined ? {} : { description }),
    ...(dflt === undefined ? {} : { default: dflt }),
    anyOf: [syntax, ENV_REFERENCE],
  };
}

function valuesSchema(rowsOut, configSchema) {
  const doc = parseDocument(readFileSync(join(chart, 'values.yaml'), 'utf8'));
  if (doc.errors.length > 0) throw new GenError(`values.yaml: ${doc.errors[0].message}`);
  const top = walkMap(doc.contents, '', rowsOut, configSchema);
  // Helm passes `global` to every chart; it is not ours to describe.
  top.properties.global = { type: 'object', description: 'Values shared with subcharts (Helm).' };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'smtp-lb Helm chart values',
    ...top,
  };
}

function cell(text) {
  return text.replaceAll('|', '\\|');
}

function valuesTable(rows) {
  const lines = ['| Key | Type | Default | Description |', '|---|---|---|---|'];
  for (const r of rows) {
    const shown = JSON.stringify(r.value);
    const dflt = shown.length > MAX_DEFAULT_WIDTH ? 'see values.yaml' : `\`${cell(shown)}\``;
    lines.push(`| \`${r.path}\` | ${(r.types ?? ['any']).join(' \\| ')} | ${dflt} | ${cell(r.text)} |`);
  }
  return lines.join('\n');
}

function readme(table) {
  const path = join(chart, 'README.md');
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf(TABLE_START);
  const end = text.indexOf(TABLE_END);
  if (start < 0 || end < start)
    throw new GenError(`${relative(root, path)} has no "${TABLE_START}" ... "${TABLE_END}"`);
  return `${text.slice(0, start + TABLE_START.length)}\n${table}\n${text.slice(end)}`;
}

async function main(argv) {
  const check = argv.includes('--check');
  const rows = [];
  const schema = valuesSchema(rows, await configJsonSchema());
  const outputs = [
    [join(chart, 'values.schema.json'), `${JSON.stringify(schema, null, 2)}\n`],
    [join(chart, 'README.md'), readme(valuesTable(rows))],
    [join(chart, 'files/smtp-lb-alerts.yaml'), readFileSync(ALERTS_SOURCE, 'utf8')],
  ];
  const stale = [];
  for (const [path, text] of outputs) {
    let current = null;
    try {
      current = readFileSync(path, 'utf8');
    } catch {}
    if (current === text) continue;
    stale.push(relative(root, path));
    if (!check) writeFileSync(path, text);
  }
  if (check && stale.length > 0) {
    process.stderr.write(`gen-chart: stale: ${stale.join(', ')}; run node scripts/gen-chart.mjs\n`);
    return 1;
  }
  process.stderr.write(
    `gen-chart: ${check ? 'up to date' : stale.length ? `wrote ${stale.join(', ')}` : 'nothing to do'}\n`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`gen-chart: ${e instanceof GenError ? e.message : (e.stack ?? e)}\n`);
    process.exitCode = 1;
  },
);
