// `node dist/src/emit-reference.js README.md`: rewrites the generated configuration reference in
// the package README after a change to schema.ts (a test fails while they differ).
import { readFileSync, writeFileSync } from 'node:fs';
import { updateReadme } from './reference-table.js';

const [path, ...rest] = process.argv.slice(2);
if (path === undefined || rest.length > 0) {
  process.stderr.write('usage: emit-reference README.md\n');
  process.exitCode = 2;
} else {
  writeFileSync(path, updateReadme(readFileSync(path, 'utf8')));
}
