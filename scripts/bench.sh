#!/usr/bin/env bash
# `make bench`: performance ratios of the delivery chain against bare lapin baselines, measured
# in one run against the local broker and database (see shared/bench once it exists).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f shared/bench/Cargo.toml ]; then
  echo "make bench: the delivery-chain benchmark (shared/bench) does not exist yet." >&2
  exit 2
fi
cargo run --release -q -p orderbus-bench -- "$@"
# The storefront's order.erpstatus consumer with real order rows vs bare consume+ack (issue 4;
# target/bench/storefront.json). Takes its own flags: see its --help. It also starts the release
# storefront binary (built here, found beside the bench binary) for the real process's RSS/CPU.
cargo build --release -q -p orderbus-storefront
cargo run --release -q -p orderbus-e2e --bin orderbus-storefront-bench
# The payments service's BackendURL path (ingress → OrderPayQuery against the Sinopac simulator →
# outbox) vs a bare axum handler (issue 10; target/bench/payments.json).
cargo run --release -q -p orderbus-e2e --bin orderbus-payments-bench
# Frotel quotes with all mirrors up and the first down, and the fulfilment registration round
# trip, against bare baselines (issue 12).
cargo run --release -q -p orderbus-e2e --bin orderbus-fulfilment-bench
# The ops journal ingest vs bare consume+ack and the timeline latency among 1M rows (issue 13).
cargo run --release -q -p orderbus-e2e --bin orderbus-ops-bench
# Webhook ingest: SweetTracker callbacks and SHOPLINE reports (RSA verify + dedupe + outbox +
# signed reply) under Debian's `wrk` load generator, vs a bare axum handler (issue 11;
# target/bench/tracking.json). wrk is installed from Debian's packages when missing.
if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk (the HTTP load generator) from Debian's packages"
  if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo); fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo run --release -q -p orderbus-e2e --bin orderbus-tracking-bench
