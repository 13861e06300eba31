#!/usr/bin/env bash
# `npm start`: installs and builds on a fresh clone, then runs one node on examples/smtp-lb.yaml in
# front of two demo backends, and sends one message through it so you can see it arrive.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx turbo run build --output-logs=errors-only
exec node scripts/start.mjs "$@"
