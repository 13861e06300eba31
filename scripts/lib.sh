# Shared by the install and build scripts: source it (`. "$(dirname "$0")/lib.sh"`), do not run it.
# shellcheck shell=bash

# Keeps apt's maintainer scripts from starting the services being installed (Redis on 6379, nginx on
# 80, Prometheus on 9090...). An existing policy-rc.d (container images ship one) is left as it is;
# ours goes when the calling script exits. $1: the calling script, named in the file.
no_service_starts() {
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# smtp-lb %s: no service starts during install\nexit 101\n' "$1" >"$policy"
    chmod 755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
}

# A tool cached per machine by version: sets `cache_dir` and `bin`
# ($SMTP_LB_CACHE or ~/.cache/smtp-lb, then NAME/VERSION/BINARY), and when the binary is already
# there prints its path and exits. Usage: tool_cached NAME VERSION BINARY
tool_cached() {
  cache_dir="${SMTP_LB_CACHE:-$HOME/.cache/smtp-lb}/$1/$2"
  bin="${cache_dir}/$3"
  if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
  fi
}

# Before fetching or building: takes the cache's lock (two test runs starting at once must not both
# build, nor race on the final rename), prints and exits if the other run made it meanwhile, then
# enters a fresh work folder (`work`, removed on exit).
tool_workdir() {
  mkdir -p "$cache_dir"
  exec 9>"${cache_dir}/.lock"
  flock 9
  if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cd "$work"
}

# tool_workdir, with Go set to use the module proxy and the local toolchain.
go_tool_workdir() {
  tool_workdir
  export GOFLAGS='-mod=mod -buildvcs=false'
  export GOTOOLCHAIN=local
  export CGO_ENABLED=0
}

# Puts Node.js 24 first on PATH (for npm, npx and every node the scripts and tests start) unless the
# machine's own node is already 24.x; scripts/fetch-node.sh fetches it once per machine.
# Call it from the repository root.
node24_on_path() {
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" != 24 ]; then
    local node_bin
    node_bin="$(bash scripts/fetch-node.sh)"
    PATH="$(dirname "$node_bin"):$PATH"
    export PATH
  fi
}
