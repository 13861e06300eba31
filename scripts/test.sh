#!/usr/bin/env bash
# `npm test`: installs what the tests need (Debian packages, the Consul agent, Helm, Node.js 24),
# installs and builds the workspace, runs lint, format, type and dependency-direction checks, then
# every test, all on Node.js 24.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
node24_on_path
echo "test: $(node --version) ($(command -v node))"

bash scripts/install-test-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx turbo run build --output-logs=errors-only
npx biome check .
npx depcruise --config .dependency-cruiser.cjs packages test
node scripts/run-tests.mjs "$@"
