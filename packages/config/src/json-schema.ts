// The JSON Schema of the raw config file, for editors and for the Helm chart (values.schema.json).
// It is ConfigFileSchema without TypeBox's symbols and without our own annotation keywords, so
// strict validators (Helm's, ajv's) see only standard draft-07 keywords.
import { writeFileSync } from 'node:fs';
import { ConfigFileSchema, CUSTOM_KEYWORDS } from './schema.js';

export function configJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'smtp-lb configuration',
    ...(strip(ConfigFileSchema, false) as Record<string, unknown>),
  };
}

export function writeConfigJsonSchema(path: string): void {
  writeFileSync(path, `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
}

const custom = new Set<string>(CUSTOM_KEYWORDS);
/** Keywords whose keys are property names, not keywords: nothing in them is stripped. */
const NAME_MAPS = new Set(['properties', 'patternProperties']);

/** Copies plain data only: symbol keys (TypeBox's Kind) are not own enumerable string keys. */
function strip(value: unknown, namesOnly: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => strip(v, false));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (namesOnly || !custom.has(key)) out[key] = strip(v, !namesOnly && NAME_MAPS.has(key));
  }
  return out;
}
