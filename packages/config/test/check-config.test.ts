// check-config as operators run it: a child process per file, exit code 0/1/2 and one
// `path: message` line per error; and the same command in-process through runCheckConfig.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigInvalidError, checkConfigFile, loadConfigOrThrow, runCheckConfig } from '../src/index.js';
import { fixture, PACKAGE_DIR } from './helpers.js';

const T = { timeout: 15_000 };
const MAIN = join(PACKAGE_DIR, 'dist/src/check-config-main.js');

function run(...args: string[]) {
  const env = { ...process.env };
  delete env.LEASE_TTL_UNSET_FOR_TEST;
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env, timeout: 10_000 });
}

test('a valid file: exit 0 and a summary', T, () => {
  const r = run(fixture('minimal.yaml'));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `${fixture('minimal.yaml')}: OK (1 listener, 1 pool, 0 routes)\n`);
  assert.equal(r.stderr, '');
});

test('an invalid file: exit 1 and every error on its own line', T, () => {
  const file = fixture('bad-many.yaml');
  const r = run(file);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.deepEqual(
    lines.map((l) => l.slice(0, l.indexOf(': '))),
    [
      'listeners[0].listen',
      'listeners[0].pool',
      'pools.default.static[0].wieght',
      'pools.default.timeouts.connect',
      'ledger.leaseTtl',
      file,
    ],
  );
  assert.equal(lines.at(-1), `${file}: 5 errors`);
});

test('a YAML syntax error: exit 1 with line and column', T, () => {
  const r = run(fixture('bad-syntax.txt'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^\(root\): YAML syntax error at line 4, column 1: /);
});

test('a missing file and bad usage', T, () => {
  const missing = run('/nonexistent/smtp-lb.yaml');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^\(root\): cannot read \/nonexistent\/smtp-lb\.yaml: no such file\n/);
  const usage = run();
  assert.equal(usage.status, 2);
  assert.equal(usage.stderr, 'usage: smtp-lb check-config FILE\n');
});

test('runCheckConfig and checkConfigFile in-process', T, () => {
  let out = '';
  let err = '';
  const sinkOut = { write: (s: string) => (out += s) };
  const sinkErr = { write: (s: string) => (err += s) };
  assert.equal(runCheckConfig([fixture('full.yaml')], sinkOut, sinkErr), 0, err);
  assert.match(out, /: OK \(2 listeners, 2 pools, 2 routes\)\n$/);
  assert.equal(runCheckConfig([fixture('bad-syntax.txt'), 'extra'], sinkOut, sinkErr), 2);

  const checked = checkConfigFile(fixture('bad-many.yaml'), { env: {} });
  assert.equal(checked.ok, false);
  assert.equal(checked.errors.length, 5);
  assert.equal(checked.text.split('\n').filter(Boolean).length, 5);
  assert.match(
    checked.text,
    /^pools\.default\.static\[0\]\.wieght: unknown key \(did you mean "weight"\?\)$/m,
  );
});

test('loadConfigOrThrow: the config, or one error that lists every problem', T, () => {
  assert.equal(loadConfigOrThrow(fixture('minimal.yaml')).listeners[0]?.name, 'smtp');
  const file = fixture('bad-many.yaml');
  assert.throws(
    () => loadConfigOrThrow(file, { env: {} }),
    (e: unknown) =>
      e instanceof ConfigInvalidError &&
      e.code === 'ECONFIG' &&
      e.errors.length === 5 &&
      e.message.startsWith(`invalid config ${file}:\n  listeners[0].listen: expected host:port`),
  );
});
