#!/usr/bin/env node
// The `smtp-lb` command as npm links it (node_modules/.bin/smtp-lb, so `npx smtp-lb` at the repository
// root). It is a file in git, not in dist/: `npm ci` on a fresh clone links only bins that exist, and
// tsc writes its output without the executable bit. The program itself is dist/src/cli.js.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('smtp-lb: packages/proxy is not built yet; run `npm run build` first\n');
  process.exit(1);
}
await import(cli.href);
