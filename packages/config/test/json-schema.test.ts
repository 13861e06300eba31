// The emitted JSON Schema, checked by an independent validator (ajv, strict draft-07) the way
// Helm's values.schema.json check would: it compiles, accepts the example, refuses unknown keys.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { configJsonSchema } from '../src/index.js';
import { fixture, PACKAGE_DIR } from './helpers.js';

const T = { timeout: 10_000 };

function validator() {
  return new Ajv({ strict: true, allErrors: true }).compile(configJsonSchema());
}

test('strict ajv compiles the schema and accepts the example and the minimal file', T, () => {
  const validate = validator();
  for (const name of ['full.yaml', 'minimal.yaml']) {
    const ok = validate(parse(readFileSync(fixture(name), 'utf8')));
    assert.equal(ok, true, `${name}: ${JSON.stringify(validate.errors)}`);
  }
});

test('the JSON Schema refuses an unknown key at depth, a bad duration and a bad address', T, () => {
  const validate = validator();
  const doc = parse(readFileSync(fixture('minimal.yaml'), 'utf8'));
  doc.pools.default.static[0].maxConection = 5;
  doc.admission = { queueTimeout: '30 seconds' };
  doc.listeners[0].listen = 'localhost';
  assert.equal(validate(doc), false);
  const errors = validate.errors ?? [];
  assert.ok(
    errors.some(
      (e) => e.instancePath === '/pools/default/static/0' && e.params.additionalProperty === 'maxConection',
    ),
    JSON.stringify(errors),
  );
  assert.ok(errors.some((e) => e.instancePath === '/admission/queueTimeout'));
  assert.ok(errors.some((e) => e.instancePath === '/listeners/0/listen'));
});

test('the JSON Schema carries descriptions and defaults, and none of our own keywords', T, () => {
  const text = JSON.stringify(configJsonSchema());
  assert.doesNotMatch(text, /"(errorMessage|syntax|defaultText)"/);
  const schema = configJsonSchema() as {
    properties: { admission: { properties: { queueTimeout: { default: string; description: string } } } };
  };
  assert.equal(schema.properties.admission.properties.queueTimeout.default, '30s');
  assert.match(schema.properties.admission.properties.queueTimeout.description, /451 4\.3\.2/);
});

test('emit-json-schema writes the schema to the given path', T, () => {
  const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-schema-'));
  try {
    const out = join(dir, 'values.schema.json');
    execFileSync(process.execPath, [join(PACKAGE_DIR, 'dist/src/emit-json-schema.js'), out]);
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), configJsonSchema());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
