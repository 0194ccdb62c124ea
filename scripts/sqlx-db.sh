#!/usr/bin/env bash
# Creates (or recreates) the database the sqlx query macros check against: every migration of
# every crate (shared building blocks and services), applied in version order. The services'
# tables do not clash by name, so one database describes all of them.
# Prints the database URL on stdout; `make sqlx-prepare` / `make sqlx-check` use it.
set -euo pipefail
cd "$(dirname "$0")/.."
db="${ORDERBUS_SQLX_DB:-orderbus_sqlx}"
psql_() { PGOPTIONS="-c client_min_messages=warning" psql -w -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
psql_ -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
psql_ -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
# <version>_<name>.sql, sorted by the numeric version across all crates (as the runtime merges
# them).
find shared services -path '*/migrations/*.sql' -not -path '*/tests/*' -printf '%f\t%p\n' \
  | awk -F'\t' '{split($1, v, "_"); printf "%020d\t%s\n", v[1], $2}' \
  | sort | cut -f2 \
  | while read -r file; do
      psql_ -d "$db" -f "$file" >/dev/null 2>&1 || { echo "sqlx-db: $file failed" >&2; psql_ -d "$db" -f "$file"; exit 1; }
    done
echo "postgres://postgres@127.0.0.1:5432/$db"
