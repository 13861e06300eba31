#!/usr/bin/env bash
# Installs promtool (Debian's `prometheus` package) for the alert-rule tests, and makes sure the
# package's Prometheus server is not left running: it would hold :9090, smtp-lb's default admin port.
# Idempotent: does nothing when promtool is on PATH.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-promtool: installing Debian's prometheus package needs root; run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
no_service_starts install-promtool.sh
if ! apt-cache show prometheus >/dev/null 2>&1; then
  apt-get update >/dev/null
fi
# No recommends: prometheus-node-exporter would be one more daemon.
apt-get install -y --no-install-recommends prometheus >/dev/null
if [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
  /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi
if pgrep -x prometheus >/dev/null 2>&1; then
  echo "install-promtool: a prometheus server is still running; stop it, it holds :9090" >&2
  exit 1
fi
command -v promtool >/dev/null 2>&1 || { echo "install-promtool: promtool still missing" >&2; exit 1; }
echo "install-promtool: $(promtool --version 2>&1 | head -1)" >&2
