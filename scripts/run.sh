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
# ORDERBUS_API_KEYS, which the storefront and the payments service both read), written where
# scripts/demo-order.sh finds it.
key_dir="${XDG_RUNTIME_DIR:-${CARGO_TARGET_DIR:-target}}/orderbus"
key_file="$key_dir/api-key"
api_key=""
if [ -x "$target/orderbus-storefront" ] && [ -z "${ORDERBUS_API_KEYS:-}${ORDERBUS_API_KEYS_FILE:-}" ]; then
  minted=$("$target/orderbus-storefront" api-key --client make-run --scopes orders:read,orders:write,payments:write,ops:read,ops:replay,ops:report,tracking:read,tracking:write --shell)
  api_key=$(printf '%s\n' "$minted" | sed -n 's/^ORDERBUS_API_KEY=//p')
  export ORDERBUS_API_KEYS
  ORDERBUS_API_KEYS=$(printf '%s\n' "$minted" | sed -n 's/^ORDERBUS_API_KEYS_ENTRY=//p')
  mkdir -p "$key_dir"
  (umask 077 && printf '%s\n' "$api_key" >"$key_file")
fi
# ops asks every service for its timeline entries with the same local key (ops:read), and
# the orderbus-ops CLI finds it there too.
if [ -n "$api_key" ]; then
  export ORDERBUS_OPS_PEER_API_KEY="$api_key" ORDERBUS_OPS_API_KEY="$api_key"
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
payments|orderbus-payments|--create-database --sinopac-demo-keys
erp-sim|orderbus-erp-sim|run --create-database --deliver-delay 10m
fulfilment|orderbus-fulfilment|--create-database --frotel-api-key sim-api-key --frotel-mirrors http://127.0.0.1:7103/,http://127.0.0.1:7104/,http://127.0.0.1:7105/ --mapping-file services/fulfilment/config/sandbox.toml --tracking-interval-secs 5 --default-shipping-price 60000
ops|orderbus-ops|--create-database
tracking|orderbus-tracking|--create-database --sweettracker-url http://127.0.0.1:7101 --shopline-sandbox-keys
SERVICES

cat <<INFO

orderbus local stack
  storefront API     http://127.0.0.1:8080/orders        (OpenAPI: http://127.0.0.1:8080/openapi.json)
                     API key (orders:read/write, payments:write, tracking:read/write, ops:read/replay/report): ${api_key:-(from your ORDERBUS_API_KEYS)}
                       curl -H "Authorization: Bearer \$(cat $key_file)" http://127.0.0.1:8080/orders?uid=8041518
                     health http://127.0.0.1:8080/readyz, metrics http://127.0.0.1:8080/metrics
  RabbitMQ console   http://localhost:15672   (guest / guest) — Queues tab:
                     storefront.order.erpstatus   ERP status updates the storefront applies
                     storefront.parking           messages refused with a reason (see headers)
                     storefront.retry.*           delay tiers for transient failures
                     erp-sim.order.submit         what the ERP stand-in receives
                     payments.order.submit        orders the payments service will collect
  PostgreSQL         psql -h 127.0.0.1 -U postgres storefront   (or payments, tracking, fulfilment, ops)
  payments API       http://127.0.0.1:8081/payments/{order_code}   (OpenAPI: http://127.0.0.1:8081/openapi.json)
                     Sinopac QPay against the sandbox simulator (public DEMO shop NA0249_001, demo keys).
                     Pay an order: POST /payments/{code} {"method":"card"} (or "atm"), then the simulator
                     pays it (by itself after 5 s for card / 10 s for ATM, or at once with
                       curl -X POST http://127.0.0.1:7102/__sim/orders/{order_no}/pay ),
                     the bank's BackendURL/ReturnURL reach /sinopac/backend and /sinopac/return,
                     the payments service asks the bank (OrderPayQuery) and publishes order.payment.
                     ATM needs the auto-cancel raised (an ATM account lives to the end of the bank day):
                       STOREFRONT_AUTO_CANCEL_AFTER_SECS=259200 PAYMENTS_STOREFRONT_AUTO_CANCEL_AFTER_SECS=259200 make run
                     health http://127.0.0.1:8081/readyz   database payments   simulator state http://127.0.0.1:7102/__sim/orders
  erp-sim            DEV/TEST STAND-IN for the ERP (not the ERP, never deployed), auto-pay OFF:
                     payments come from the payments service (order.payment); then it walks each
                     paid order 100 -> 200 -> 600 (~10 s); its own 700 only after 10 min,
                     so delivery comes from SweetTracker's callbacks through the tracking service.
                     health http://127.0.0.1:8099/readyz   database orderbus_erp_sim
                     send any spec message: orderbus-erp-sim publish <routing-key> FILE|-
  fulfilment         Frotel: http://127.0.0.1:8083  quotes POST /fulfilment/quotes, order GET
                     /fulfilment/orders/{code}, ops GET /fulfilment/ops/attention, mirrors
                     /fulfilment/mirrors; Frotel warehouses 9001 (COD/online), 9002 (Cheetah),
                     9003 (virtual); database fulfilment. Try: scripts/demo-frotel.sh
                     (a COD order and a Frotel bank payment, followed to the end)
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
  ops                http://127.0.0.1:8084   journal, timelines, parking replay, monitoring intake
                     (same API key: ops:read, ops:replay, ops:report), database ops
                       $target/orderbus-ops timeline <order_code>     the order's whole story
                       $target/orderbus-ops parking list              what was refused, grouped by reason
                       $target/orderbus-ops parking replay --service storefront --reason "..." --dry-run
                       $target/orderbus-ops queues                    every queue: purpose, depth, consumers
                     ops.journal / ops.unrouted in the console: the journal's copy, unroutable messages
  sandbox            partner simulators (dev/test only): SweetTracker :7101, Sinopac :7102,
                     Frotel mirrors :7103-7105, SHOPLINE sender :7106

Try it (in another terminal): scripts/demo-order.sh
  creates an order with curl, pays it by card through the payments service and the Sinopac
  simulator, and prints its status every second until it is delivered.
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
