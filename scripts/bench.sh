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
# target/bench/storefront.json). Takes its own flags: see its --help.
cargo run --release -q -p orderbus-e2e --bin orderbus-storefront-bench
cargo run --release -q -p orderbus-e2e --bin orderbus-tracking-bench
