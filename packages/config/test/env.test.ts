// `${VAR}` expansion: defaults, escapes, errors, and that a variable can never add YAML structure.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${VAR}` is the config syntax under test
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expandEnv } from '../src/env.js';
import { configOf, errorAt, errorsOf, withBase } from './helpers.js';

const T = { timeout: 5_000 };

test('expandEnv: set, default, empty, escape', T, () => {
  const env = { A: 'alpha', EMPTY: '' };
  assert.deepEqual(expandEnv('x-${A}-y', env), { ok: true, value: 'x-alpha-y' });
  assert.deepEqual(expandEnv('${B:-beta}', env), { ok: true, value: 'beta' });
  assert.deepEqual(
    expandEnv('${EMPTY:-fallback}', env),
    { ok: true, value: 'fallback' },
    ':- also covers empty',
  );
  assert.deepEqual(expandEnv('${EMPTY}', env), { ok: true, value: '' });
  assert.deepEqual(expandEnv('${B:-}', env), { ok: true, value: '' });
  assert.deepEqual(expandEnv('cost $${A} $5', env), { ok: true, value: 'cost ${A} $5' });
});

test('expandEnv: unset and malformed references are errors', T, () => {
  assert.deepEqual(expandEnv('${A}${B}', {}), { ok: false, message: 'environment variables A, B not set' });
  assert.deepEqual(expandEnv('${A', {}), {
    ok: false,
    message: 'unclosed "${" (write "$${" for a literal "${")',
  });
  assert.deepEqual(expandEnv('${1X}', {}), { ok: false, message: 'invalid variable name in "${1X}"' });
});

test('variables expand in values at any depth, with defaults', T, () => {
  const text = `node:
  id: \${POD_NAME}
listeners:
  - name: smtp
    listen: \${LISTEN_HOST:-0.0.0.0}:\${LISTEN_PORT:-25}
    hostname: mx.\${DOMAIN}
pools:
  default:
    static:
      - address: \${BACKEND}
ledger:
  redis: redis://\${REDIS_HOST:-127.0.0.1}:6379/0
`;
  const c = configOf(text, {
    env: { POD_NAME: 'smtp-lb-0', DOMAIN: 'example.com', BACKEND: '10.0.0.9:2525' },
  });
  assert.equal(c.node.id, 'smtp-lb-0');
  assert.deepEqual(c.listeners[0]?.listen, { host: '0.0.0.0', port: 25 });
  assert.equal(c.listeners[0]?.hostname, 'mx.example.com');
  assert.deepEqual(c.pools.default?.static?.[0]?.address, { host: '10.0.0.9', port: 2525 });
  assert.equal(c.ledger.redis, 'redis://127.0.0.1:6379/0');
});

test('an unquoted variable takes the type of its value; a quoted one stays a string', T, () => {
  const text = withBase(`balancing:
  defaultMaxConnections: \${MAX_CONN}
`);
  assert.equal(configOf(text, { env: { MAX_CONN: '250' } }).balancing.defaultMaxConnections, 250);
  const quoted = withBase(`balancing:
  defaultMaxConnections: "\${MAX_CONN}"
`);
  const err = errorAt(errorsOf(quoted, { env: { MAX_CONN: '250' } }), 'balancing.defaultMaxConnections');
  assert.equal(err.message, 'expected a whole number, got "250"');
});

test('an unquoted value that expands to nothing counts as absent', T, () => {
  const text = withBase(`admin:
  token: \${ADMIN_TOKEN:-}
`);
  assert.equal('token' in configOf(text).admin, false);
  assert.equal(configOf(text, { env: { ADMIN_TOKEN: 's3cret' } }).admin.token, 's3cret');
});

test('a variable cannot inject YAML structure', T, () => {
  const text = withBase(`node:
  id: \${ID}
`);
  const injected = 'x\nlog: { level: trace }';
  const c = configOf(text, { env: { ID: injected } });
  assert.equal(c.node.id, injected);
  assert.equal(c.log.level, 'info');
});

test('an unset variable without default is an error at its path', T, () => {
  const errors = errorsOf(
    withBase(`ledger:
  redis: redis://\${REDIS_HOST}:6379
`),
  );
  assert.deepEqual(errorAt(errors, 'ledger.redis'), {
    path: 'ledger.redis',
    code: 'EENV',
    message: 'environment variable REDIS_HOST not set',
  });
});
