#!/usr/bin/env bash
# Installs the real programs the tests drive (Redis with Sentinel, Postfix, Dovecot, rspamd, OpenLDAP,
# swaks, HAProxy, OpenSSL, htpasswd from Debian;
# Consul and Helm built from source by their own scripts). Idempotent: checks first, and touches apt
# only when something is missing. Tests start private instances on free ports, never the system's.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# package -> a file it installs; dpkg-query tells whether the package is installed at all.
declare -A probe=(
  [redis-server]=/usr/bin/redis-server
  [redis-tools]=/usr/bin/redis-cli
  [postfix]=/usr/sbin/postfix
  [swaks]=/usr/bin/swaks
  [haproxy]=/usr/sbin/haproxy
  [openssl]=/usr/bin/openssl
  [dnsmasq]=/usr/sbin/dnsmasq
  [postgrey]=/usr/sbin/postgrey
  [redis-sentinel]=/usr/bin/redis-sentinel
  [dovecot-core]=/usr/sbin/dovecot
  [rspamd]=/usr/bin/rspamd
  [slapd]=/usr/sbin/slapd
  [ldap-utils]=/usr/bin/ldapadd
  [apache2-utils]=/usr/bin/htpasswd
)
order=(redis-server redis-tools postfix swaks haproxy openssl dnsmasq postgrey redis-sentinel dovecot-core
  rspamd slapd ldap-utils apache2-utils)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' && [ -x "${probe[$1]}" ]
}

missing=()
for pkg in "${order[@]}"; do
  if installed "$pkg"; then
    echo "test-deps: $pkg ok ($(dpkg-query -W -f='${Version}' "$pkg"))"
  else
    echo "test-deps: $pkg missing"
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: installing ${missing[*]} needs root; run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # "No configuration": Debian then writes no /etc/postfix/main.cf, so the system Postfix never
  # listens on port 25; tests write their own config directories.
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  # Likewise slapd: no database of its own; the LDAP tests write a private config and database.
  echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
  no_service_starts install-test-deps.sh
  apt-get update
  apt-get install -y "${missing[@]}"
  # Services we just installed stay off, now and after a reboot, so nothing holds their default ports.
  for pkg in "${missing[@]}"; do
    case "$pkg" in redis-server | postfix | haproxy | dnsmasq | postgrey | redis-sentinel | dovecot-core | rspamd | slapd) ;;
    *) continue ;;
    esac
    if [ -d /run/systemd/system ]; then
      systemctl disable --now "$pkg" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$pkg" ]; then
      "/etc/init.d/$pkg" stop >/dev/null 2>&1 || true
    fi
    echo "test-deps: $pkg system service left stopped"
  done
  for pkg in "${missing[@]}"; do
    installed "$pkg" || { echo "test-deps: $pkg still missing after apt-get install" >&2; exit 1; }
  done
fi

# Tools Debian does not ship, built once into a cache by their own scripts (one line per tool):
bash scripts/build-consul.sh >/dev/null
bash scripts/build-helm.sh >/dev/null
bash scripts/install-promtool.sh
