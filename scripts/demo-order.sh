#!/usr/bin/env bash
# Creates one order through the storefront API, pays it by card through the payments service
# and the Sinopac simulator (the real payment path: no auto-pay), and follows it until the ERP
# (stand-in) has shipped it and SweetTracker's simulator, through the tracking service, has
# delivered it. Run while `make run` is up.
set -euo pipefail
api="${STOREFRONT_URL:-http://127.0.0.1:8080}"
payments="${PAYMENTS_URL:-http://127.0.0.1:8081}"
bank="${SINOPAC_SIM_URL:-http://127.0.0.1:7102}"
method="${DEMO_PAY_METHOD:-card}"
# The API key: ORDERBUS_API_KEY, else the one `make run` wrote.
key_file="${XDG_RUNTIME_DIR:-${CARGO_TARGET_DIR:-target}}/orderbus/api-key"
key="${ORDERBUS_API_KEY:-}"
if [ -z "$key" ] && [ -r "$key_file" ]; then
  key=$(cat "$key_file")
fi
if [ -z "$key" ]; then
  echo "no API key: set ORDERBUS_API_KEY or start the stack with make run (writes $key_file)" >&2
  exit 1
fi
auth="Authorization: Bearer $key"

echo "+ curl -X POST $api/orders"
created=$(curl -sS -X POST "$api/orders" \
  -H "$auth" \
  -H 'Content-Type: application/json' \
  -H "Idempotency-Key: demo-$(date +%s%N)" \
  -d '{"uid": 8041518,
       "items": [{"product_sku": 892152, "product_skn": 51152761, "warehouse_id": 1,
                  "quantity": 2, "unit_price": "88.00"}],
       "shipping_cost": "10.00",
       "delivery_address": {"user_name": "Demo", "mobile": "13776693005", "province": "江苏省",
                            "city": "南京市", "district": "江宁区", "address": "苏源大道87号",
                            "zip_code": "211100"}}')
echo "$created"
code=$(printf '%s' "$created" | sed -n 's/.*"order_code":\([0-9]*\).*/\1/p' | head -n 1)
if [ -z "$code" ]; then
  echo "no order_code in the reply; is the storefront running (make run)?" >&2
  exit 1
fi

echo
echo "paying order $code by $method (payments service -> Sinopac simulator):"
for _ in $(seq 1 30); do
  if curl -sS -o /dev/null -w '%{http_code}' -H "$auth" "$payments/payments/$code" | grep -q 200; then
    break
  fi
  sleep 0.5
done
echo "+ curl -X POST $payments/payments/$code -d '{\"method\":\"$method\"}'"
chosen=$(curl -sS -X POST "$payments/payments/$code" -H "$auth" \
  -H 'Content-Type: application/json' -d "{\"method\":\"$method\"}")
order_no=$(printf '%s' "$chosen" | sed -n 's/.*"current":{"order_no":"\([^"]*\)".*/\1/p')
if [ -z "$order_no" ]; then
  echo "$chosen"
  echo "could not start the payment: is orderbus-payments running (make run)? For ATM, the" >&2
  echo "auto-cancel must be raised (see make run's INFO); DEMO_PAY_METHOD=card always works." >&2
  exit 1
fi
for field in card_pay_url bank_code virtual_account web_atm_url expires_at; do
  value=$(printf '%s' "$chosen" | sed -n "s/.*\"current\":{.*\"$field\":\"\([^\"]*\)\".*/\1/p")
  if [ -n "$value" ]; then echo "  $field: $value"; fi
done
echo "  Sinopac OrderNo $order_no; the simulated customer pays:"
echo "+ curl -X POST $bank/__sim/orders/$order_no/pay"
# 204 = paid now; 409 = the simulator had already paid it by itself (it does after a few s).
curl -sS -o /dev/null -w '  simulator answered %{http_code}\n' -X POST "$bank/__sim/orders/$order_no/pay" || true
echo "  the bank now notifies BackendURL/ReturnURL; payments asks OrderPayQuery and publishes order.payment"
echo "  (curl -H 'Authorization: Bearer <key>' $payments/payments/$code shows how it was settled)"

echo
echo "following order $code (curl $api/orders/$code):"
last=""
# Delivery comes from the carrier callbacks (~40 s after payment under make run).
for _ in $(seq 1 120); do
  status=$(curl -sS -H "$auth" "$api/orders/$code" | sed -n 's/^{[^{]*"status":"\([a-z_]*\)".*/\1/p')
  if [ "$status" != "$last" ]; then
    echo "  $(date +%T)  $status"
    last=$status
  fi
  case "$status" in delivered|receipt_confirmed|cancelled_*) break ;; esac
  sleep 1
done
echo
echo "full order with its timeline: curl -H 'Authorization: Bearer <key>' $api/orders/$code"
echo "its story across every service:"
echo "  ORDERBUS_OPS_API_KEY=\$(cat $key_file) ${CARGO_TARGET_DIR:-target}/debug/orderbus-ops timeline $code"
