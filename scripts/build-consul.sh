#!/usr/bin/env bash
# Builds the Consul agent the tests run, from the Go module proxy only, once per machine, into a cache
# folder keyed by version; prints the binary's path. Releases up to 1.16.1 are MPL-2.0, but 1.15+ need
# the envoyextensions/troubleshoot modules (BUSL in later versions), so the line is 1.14. 1.14.5 is the
# newest 1.14 release the proxy serves that compiles against its tagged api/sdk releases (1.14.8's own
# api tree has fields no api tag of that time has; 1.14.6 and 1.14.7 are not served).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CONSUL_VERSION=1.14.5
# Consul's go.mod points these submodules at its own tree (replace => ./api ...). A dependency's
# replace lines do not apply to us, so pin the tagged releases that Consul's go.mod requires.
PINS=(
  'github.com/hashicorp/consul/api v1.18.0'
  'github.com/hashicorp/consul/sdk v0.13.0'
  'github.com/hashicorp/consul/proto-public v0.2.1'
)

tool_cached consul "$CONSUL_VERSION" consul

if ! command -v go >/dev/null 2>&1; then
  echo "build-consul: Go is not installed (no 'go' on PATH); install Go >= 1.20 to build the Consul agent" >&2
  exit 1
fi

go_tool_workdir

{
  echo 'module smtp-lb.local/consul-build'
  echo
  echo 'go 1.20'
  echo
  echo "require github.com/hashicorp/consul v${CONSUL_VERSION}"
  # Required here too, not only replaced: with graph pruning a module's own requirements enter the
  # build only when the main module requires it directly.
  for pin in "${PINS[@]}"; do
    set -- $pin
    echo "require $1 $2"
    echo "replace $1 => $1 $2"
  done
} >go.mod

echo "build-consul: fetching github.com/hashicorp/consul v${CONSUL_VERSION}" >&2
go mod download github.com/hashicorp/consul

# Refuse anything that is not MPL-2.0: the agent and the submodules it is built with.
check_licence() {
  local dir licence
  dir="$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  licence="${dir}/LICENSE"
  if [ -z "$dir" ] || [ ! -f "$licence" ]; then
    echo "build-consul: no LICENSE file for $1; refusing to build" >&2
    exit 1
  fi
  if ! grep -Eqi 'Mozilla Public License,? (version )?2\.0' "$licence" || grep -qi 'Business Source License' "$licence"; then
    echo "build-consul: $1 is not licensed under the Mozilla Public License 2.0 ($licence); refusing to build" >&2
    exit 1
  fi
}
check_licence "github.com/hashicorp/consul@v${CONSUL_VERSION}"
for pin in "${PINS[@]}"; do
  set -- $pin
  check_licence "$1@$2"
done

echo "build-consul: building (several minutes on 2 cores)" >&2
start=$SECONDS
go build -trimpath -ldflags='-s -w' -o "${bin}.tmp.$$" github.com/hashicorp/consul
mv -f "${bin}.tmp.$$" "$bin"
echo "build-consul: built $("$bin" version | head -1) in $((SECONDS - start))s" >&2
echo "$bin"
