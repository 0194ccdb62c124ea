#!/usr/bin/env bash
# Makes sure what orderbus needs on this machine is installed and running:
# RabbitMQ (with the management console) and PostgreSQL (trust auth on 127.0.0.1 for `postgres`),
# plus the C libraries the Rust build links against. Idempotent and quiet when all is well.
# Installs from Debian's packages when something is missing (needs root or sudo).
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing $* from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- build prerequisites (reqwest/lapin/sqlx use the system OpenSSL) ---------------------------
missing=()
dpkg -s pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
dpkg -s curl >/dev/null 2>&1 || missing+=(curl)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# --- RabbitMQ ------------------------------------------------------------------------------------
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  apt_install rabbitmq-server
fi
if ! as_root rabbitmqctl -q status >/dev/null 2>&1; then
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached
fi
as_root rabbitmqctl -q await_startup --timeout 120 >/dev/null
if ! as_root rabbitmq-plugins list -q -e -m 2>/dev/null | grep -qx rabbitmq_management; then
  log "enabling the RabbitMQ management console"
  as_root rabbitmq-plugins enable -q rabbitmq_management >/dev/null
fi

# --- PostgreSQL ------------------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  apt_install postgresql
fi
pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL $pg_version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
# Local development and tests connect as `postgres` over TCP without a password.
if ! psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
  log "allowing trust auth for 127.0.0.1 in $hba (local development only)"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
  sleep 1
fi
psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null
