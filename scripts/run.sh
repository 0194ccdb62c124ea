#!/usr/bin/env bash
# `make run`: starts every orderbus service that exists in this checkout against the local
# RabbitMQ and PostgreSQL, prints where to look, and stops them all on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/debug"

pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo; echo "==> stopping ${#pids[@]} process(es)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop INT TERM EXIT

# A local API key for this run: minted by the storefront binary (only its SHA-256 goes into
# the storefront's ORDERBUS_API_KEYS), written where scripts/demo-order.sh finds it.
key_dir="${XDG_RUNTIME_DIR:-${CARGO_TARGET_DIR:-target}}/orderbus"
key_file="$key_dir/api-key"
api_key=""
if [ -x "$target/orderbus-storefront" ] && [ -z "${ORDERBUS_API_KEYS:-}${ORDERBUS_API_KEYS_FILE:-}" ]; then
  minted=$("$target/orderbus-storefront" api-key --client make-run --scopes orders:read,orders:write,tracking:read,tracking:write --shell)
  api_key=$(printf '%s\n' "$minted" | sed -n 's/^ORDERBUS_API_KEY=//p')
  export ORDERBUS_API_KEYS
  ORDERBUS_API_KEYS=$(printf '%s\n' "$minted" | sed -n 's/^ORDERBUS_API_KEYS_ENTRY=//p')
  mkdir -p "$key_dir"
  (umask 077 && printf '%s\n' "$api_key" >"$key_file")
fi

# The tracking service registers shipments with the sandbox's SweetTracker every 10 s instead of
# daily at 12:00 Asia/Seoul, so a shipped order is tracked (and delivered) within a minute.
export TRACKING_REGISTRATION_CRON="${TRACKING_REGISTRATION_CRON:-*/10 * * * * *}"
# The sandbox's SweetTracker sends one scan every 2 s (7 scans to delivery).
export SANDBOX_SWEETTRACKER_STEP_SECS="${SANDBOX_SWEETTRACKER_STEP_SECS:-2}"

started=()
# name | binary | arguments — started only if the binary was built (the service exists).
while IFS='|' read -r name bin args; do
  [ -n "$name" ] || continue
  if [ -x "$target/$bin" ]; then
    # shellcheck disable=SC2086
    "$target/$bin" $args &
    pids+=($!)
    started+=("$name")
  fi
done <<'SERVICES'
sandbox|orderbus-sandbox|--shopline-target http://127.0.0.1:8082/webhooks/shopline/logistics
storefront|orderbus-storefront|--create-database
erp-sim|orderbus-erp-sim|run --create-database --auto-pay --deliver-delay 10m
tracking|orderbus-tracking|--create-database --sweettracker-url http://127.0.0.1:7101 --shopline-sandbox-keys
SERVICES

cat <<INFO

orderbus local stack
  storefront API     http://127.0.0.1:8080/orders        (OpenAPI: http://127.0.0.1:8080/openapi.json)
                     API key (orders:read, orders:write): ${api_key:-(from your ORDERBUS_API_KEYS)}
                       curl -H "Authorization: Bearer \$(cat $key_file)" http://127.0.0.1:8080/orders?uid=8041518
                     health http://127.0.0.1:8080/readyz, metrics http://127.0.0.1:8080/metrics
  RabbitMQ console   http://localhost:15672   (guest / guest) — Queues tab:
                     storefront.order.erpstatus   ERP status updates the storefront applies
                     storefront.parking           messages refused with a reason (see headers)
                     storefront.retry.*           delay tiers for transient failures
                     erp-sim.order.submit         what the ERP stand-in receives
  PostgreSQL         psql -h 127.0.0.1 -U postgres storefront
  erp-sim            DEV/TEST STAND-IN for the ERP (not the ERP, never deployed), with AUTO-PAY on:
                     it publishes order.payment for every order.submit (no payments service yet)
                     and walks each order 100 -> 200 -> 600 (~10 s); its own 700 only after 10 min,
                     so delivery comes from SweetTracker's callbacks through the tracking service.
                     health http://127.0.0.1:8099/readyz   database orderbus_erp_sim
                     send any spec message: orderbus-erp-sim publish <routing-key> FILE|-
  tracking           http://127.0.0.1:8082   shipments from each 600; registers them with the sandbox's
                     SweetTracker every 10 s (TRACKING_REGISTRATION_CRON; production: 12:00 Seoul),
                     whose callbacks (levels 1..6, one per 2 s) come back to
                     /delivery/tracking_receive?token=... and are published as order.updateExpressInfo;
                     the storefront then moves the order shipped -> delivered (OS03). Watch it:
                       curl -H "Authorization: Bearer \$(cat $key_file)" http://127.0.0.1:8082/v1/orders/CODE/shipments
                       curl http://127.0.0.1:7101/__sim/registrations   (what SweetTracker was asked and sent)
                     SHOPLINE reports: POST /webhooks/shopline/logistics (sandbox test keys); map a
                     transaction first: PUT /v1/shopline/transactions/ID {"order_code":..,"uid":..}
                     database: psql -h 127.0.0.1 -U postgres tracking (trk_shipments, trk_events)
  sandbox            partner simulators (dev/test only): SweetTracker :7101, Sinopac :7102,
                     Frotel mirrors :7103-7105, SHOPLINE sender :7106

Try it (in another terminal): scripts/demo-order.sh
  creates an order with curl and prints its status every second until it is delivered.
INFO
if [ ${#started[@]} -eq 0 ]; then
  cat <<'INFO'

  No service exists in services/ yet: the broker and the database are up and everything is
  built, but there is nothing else to start. `make run` grows with every service.
INFO
  exit 0
fi
echo "  started: ${started[*]}"
echo
echo "Ctrl-C stops everything."
wait -n "${pids[@]}" || true
