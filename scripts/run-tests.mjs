#!/usr/bin/env node
// Runs every compiled test file (dist/**/*.test.js) under the given roots in one `node --test`
// run, so there is one summary (and the bench/ folders are skipped, which a glob cannot say).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const args = process.argv.slice(2);
const roots = args.filter((a) => !a.startsWith('--'));
const passthrough = args.filter((a) => a.startsWith('--'));
const here = resolve(import.meta.dirname, '..');
const starts = roots.length > 0 ? roots.map((r) => resolve(r)) : [join(here, 'packages'), join(here, 'test')];

function walk(dir, inDist, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name === 'bench') continue; // benchmarks run with `npm run bench`, not as tests
      walk(p, inDist || name === 'dist', out);
    } else if (inDist && name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = starts.flatMap((s) => walk(s, s.split('/').includes('dist'), [])).sort();
if (files.length === 0) {
  console.error('run-tests: no compiled test files found; run the build first');
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? '3';
const r = spawnSync(
  process.execPath,
  ['--enable-source-maps', '--test', `--test-concurrency=${concurrency}`, ...passthrough, ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
