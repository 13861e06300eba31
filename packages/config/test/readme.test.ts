// The README's reference table is generated from the schema: it must be up to date, document
// every key, and every default it shows must be the value the loader really applies.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TSchema } from '@sinclair/typebox';
import { REFERENCE_BEGIN, REFERENCE_END, referenceRows, referenceTable } from '../src/reference-table.js';
import { ConfigFileSchema, isObjectSchema } from '../src/schema.js';
import { parseDuration, parseHostPort, parseSize } from '../src/units.js';
import { configOf, PACKAGE_DIR } from './helpers.js';

const T = { timeout: 5_000 };

/** Cells of each table row, trimmed: the formatter pads markdown tables, which changes no content. */
function tableCells(markdown: string): string[][] {
  return markdown
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) =>
      line
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((cell) => cell.trim().replace(/^-+$/, '---')),
    );
}

test('README reference table is the one the schema generates', T, () => {
  const readme = readFileSync(join(PACKAGE_DIR, 'README.md'), 'utf8');
  const block = readme.slice(readme.indexOf(REFERENCE_BEGIN), readme.indexOf(REFERENCE_END));
  assert.ok(block.length > 0, 'README has no reference block');
  assert.deepEqual(
    tableCells(block),
    tableCells(referenceTable()),
    'out of date: run `node packages/config/dist/src/emit-reference.js packages/config/README.md`',
  );
});

function leafKeys(schema: TSchema, prefix: string, out: string[]): string[] {
  for (const [key, child] of Object.entries(schema.properties as Record<string, TSchema>)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    if (isObjectSchema(child)) leafKeys(child, path, out);
    else if (child.type === 'array' && isObjectSchema(child.items)) leafKeys(child.items, `${path}[]`, out);
    else if (child.patternProperties) {
      for (const v of Object.values(child.patternProperties as Record<string, TSchema>))
        leafKeys(v, `${path}.<name>`, out);
    } else {
      out.push(path);
      for (const branch of child.anyOf ?? []) if (isObjectSchema(branch)) leafKeys(branch, path, out);
    }
  }
  return out;
}

test('every setting has a row in the reference', T, () => {
  const documented = new Set(referenceRows().map((r) => r.key));
  const missing = leafKeys(ConfigFileSchema, '', []).filter((k) => !documented.has(k));
  assert.deepEqual(missing, []);
  assert.ok(documented.size >= 60, `only ${documented.size} rows`);
});

test('every default in the table is what the loader applies', T, () => {
  const c = configOf(`listeners:
  - name: smtp
    listen: 127.0.0.1:2525
    pool: default
    tls: { cert: /c.pem, key: /k.pem }
    proxyProtocol: { trusted: [10.0.0.0/8] }
    recipients: { map: default }
  - name: submission
    listen: 127.0.0.1:2587
    pool: default
    role: submission
    tls: { cert: /c.pem, key: /k.pem }
    auth: { verify: http, http: { url: http://127.0.0.1:8080/auth } }
pools:
  default:
    static: [{ address: 127.0.0.1:25 }]
    tls: {}
    outlierDetection: {}
  other:
    consul: { service: mta }
  internet:
    mx: {}
  intercepted:
    originalDestination: {}
shaping:
  dnsbl: { zones: [{ zone: bl.example }] }
  policy: { address: 127.0.0.1:10023 }
recipientMaps:
  default: { ldap: { url: ldap://127.0.0.1, base: dc=example } }
  inRedis: { redis: { sentinel: { sentinels: [127.0.0.1:26379], masterName: m } } }
scanners:
  default: { rspamd: { url: http://127.0.0.1:11333 } }

ledger: { redisSentinel: { sentinels: [127.0.0.1:26379], masterName: m } }
`);
  const resolved = c as unknown as Record<string, unknown>;
  let checked = 0;
  for (const row of referenceRows()) {
    if (row.defaultValue === undefined) continue;
    // The first listener is inbound (role's default); AUTH settings are the submission listener's.
    const index = row.key.startsWith('listeners[].auth.') ? '.1' : '.0';
    // Keys of a pool kind are read from the pool of that kind.
    const pool = row.key.startsWith('pools.<name>.mx.')
      ? 'internet'
      : row.key.startsWith('pools.<name>.originalDestination.')
        ? 'intercepted'
        : row.key.startsWith('recipientMaps.<name>.redis.')
          ? 'inRedis'
          : 'default';
    const path = row.key.replace(/\[\]/g, index).replace('<name>', pool).split('.');
    let actual: unknown = resolved;
    for (const p of path) actual = (actual as Record<string, unknown>)[p];
    // `pools.<name>.tls` is a mode or a map; the default is the mode of the resolved map.
    if (row.key === 'pools.<name>.tls') actual = (actual as { mode: unknown }).mode;
    const shown = row.defaultValue;
    const expected =
      row.type === 'duration'
        ? parseDuration(shown)
        : row.type === 'size'
          ? parseSize(shown)
          : row.type === 'host:port'
            ? parseHostPort(shown, true)
            : { ok: true, value: shown };
    assert.deepEqual({ ok: true, value: actual }, expected, row.key);
    checked++;
  }
  assert.ok(checked >= 30, `only ${checked} defaults checked`);
});
