#!/usr/bin/env bash
# `npm run bench`: installs what the benchmarks drive (Postfix's smtp-source/smtp-sink, HAProxy,
# Redis, nginx with its mail module) and Node.js 24, raises the open-files limit for the idle-sessions
# run, builds the workspace and runs test/bench, which writes BENCHMARKS.md. Loopback traffic only;
# every process it starts is stopped at the end, also on failure (testkit kills its process groups on
# exit).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
node24_on_path

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# Postfix, HAProxy and Redis come with the test dependencies.
if ! command -v smtp-source >/dev/null || ! command -v haproxy >/dev/null || ! command -v redis-server >/dev/null; then
  bash scripts/install-test-deps.sh
fi

NGINX_MAIL_MODULE=/usr/lib/nginx/modules/ngx_mail_module.so

# Stops a system nginx (the Debian service listens on port 80); ours runs on a free port of its own.
stop_system_nginx() {
  if [ -d /run/systemd/system ]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/nginx ]; then
    /etc/init.d/nginx stop >/dev/null 2>&1 || true
  fi
  if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    kill "$(cat /run/nginx.pid)" || true
  fi
}

if ! command -v nginx >/dev/null || [ ! -f "$NGINX_MAIL_MODULE" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench: nginx-light and libnginx-mod-mail are missing; installing them needs root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  no_service_starts bench.sh
  apt-get update
  apt-get install -y nginx-light libnginx-mod-mail
  stop_system_nginx
  [ -f "$NGINX_MAIL_MODULE" ] || { echo "bench: $NGINX_MAIL_MODULE still missing" >&2; exit 1; }
fi
stop_system_nginx

# 10 000 idle sessions need as many descriptors in the node and in the client holding them.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
npx tsc -b test

export NGINX_MAIL_MODULE
node --enable-source-maps test/dist/bench/run-bench.js "$@"
