#!/usr/bin/env bash
# Two Frotel orders through the fulfilment service while `make run` is up: a cash-on-delivery
# order (registered, shipped, delivered: order.erpstatus 600/700) and an order paid through
# Frotel's bank (pay form, the simulated bank, our callback, checkPay → order.payment).
# The order.submit messages are published the way the storefront's checkout would publish them
# with `payment_channel` set (the storefront's own checkout sends `gateway` only, for now).
set -euo pipefail
target="${CARGO_TARGET_DIR:-target}/debug"
ful="${FULFILMENT_URL:-http://127.0.0.1:8083}"
mirror="${FROTEL_MIRROR:-http://127.0.0.1:7103}"
key_file="${XDG_RUNTIME_DIR:-${CARGO_TARGET_DIR:-target}}/orderbus/api-key"
key="${ORDERBUS_API_KEY:-}"
if [ -z "$key" ] && [ -r "$key_file" ]; then key=$(cat "$key_file"); fi
[ -n "$key" ] || { echo "no API key: set ORDERBUS_API_KEY or start the stack with make run" >&2; exit 1; }
auth="Authorization: Bearer $key"

submit() { # code channel
  cat <<JSON | "$target/orderbus-erp-sim" publish order.submit -
{"uid": 8041518, "order_code": $1, "create_time": $(date +%s), "order_amount": "730000.00",
 "shipping_cost": "60000.00",
 "delivery_address": {"user_name": "Ali Rezaei", "mobile": "09121234567", "province": "Tehran",
   "city": "تهران", "district": "", "address": "خیابان آزادی ۱۲", "zip_code": "1234567890", "email": ""},
 "goods": [{"product_sku": 900101, "product_skn": 9001010, "warehouse_id": 9001, "buy_number": 1,
   "last_price": "670000.00"}],
 "payment_channel": "$2"}
JSON
}
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1; }
order() { curl -sS -H "$auth" "$ful/fulfilment/orders/$1"; }
wait_for() { # code field value
  for _ in $(seq 1 60); do
    [ "$(order "$1" | field "$2")" = "$3" ] && return 0
    sleep 1
  done
  echo "order $1: $2 never became $3" >&2; order "$1" >&2; exit 1
}

base=$(( $(date +%s) * 10 ))
cod=$(( 7000000000000 + base )); bank=$(( cod + 1 ))
echo "==> order.submit $cod (cash_on_delivery) and $bank (partner_bank), warehouse 9001"
submit "$cod" cash_on_delivery
submit "$bank" partner_bank
wait_for "$cod" state registered
wait_for "$bank" state registered
factor=$(order "$cod" | field factor_id)
echo "    registered at Frotel: $cod → factor $factor; $bank → factor $(order "$bank" | field factor_id)"

echo "==> $bank: the customer pays through Frotel's bank"
html=$(curl -sS "$ful/fulfilment/orders/$bank/pay?bank=1")
action=$(printf '%s' "$html" | sed -n 's/.*action="\([^"]*\)".*/\1/p')
payment=$(printf '%s' "$html" | sed -n 's/.*name="payment" value="\([^"]*\)".*/\1/p')
echo "    bank form → $action"
back=$(curl -sS -o /dev/null -w '%{redirect_url}' -X POST "$action" -d "payment=$payment&outcome=success")
echo "    the bank sends the customer back to $back"
curl -sS "$back"; echo
wait_for "$bank" payment_state paid
echo "    checkPay verify 1 → payment_state paid → order.payment (payment_gateway frotel) published"

echo "==> $cod: Frotel ships and delivers (sandbox: POST $mirror/__sim/orders/$factor/advance)"
for step in shipped delivered; do
  curl -sS -X POST "$mirror/__sim/orders/$factor/advance" >/dev/null
  want=$([ "$step" = shipped ] && echo in_transit || echo delivered)
  wait_for "$cod" stage "$want"
  echo "    stage $want → $([ "$step" = shipped ] && echo 'order.erpstatus 600 + order.updateExpressInfo' || echo 'order.erpstatus 700')"
done
echo
echo "full orders: curl -H 'Authorization: Bearer <key>' $ful/fulfilment/orders/$cod"
echo "ops view:    curl -H 'Authorization: Bearer <key>' $ful/fulfilment/ops/attention"
