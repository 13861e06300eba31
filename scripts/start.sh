#!/usr/bin/env bash
# `npm start`: installs and builds on a fresh clone, then runs one node on examples/smtp-lb.yaml in
# front of two demo backends, and sends one message through it so you can see it arrive. Runs on
# Node.js 24, fetched once into the cache folder when the machine's node is another version.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
node24_on_path
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx turbo run build --output-logs=errors-only
exec node scripts/start.mjs "$@"
