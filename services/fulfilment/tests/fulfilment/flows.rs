//! The order flows end to end: COD, Frotel's bank payment (verify 1, verify 0 → continue-pay,
//! a duplicate callback), paid-to-seller after order.payment, virtual and service orders.

use orderbus_testkit::TestQueue;
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn cod_order_is_registered_tracked_and_reported_shipped_then_delivered() -> anyhow::Result<()>
{
    let h = Harness::start().await?;
    let mut q = TestQueue::bind(&["order.erpstatus", "order.updateExpressInfo"]).await?;
    let code = order_code();
    h.submit(&submit_body(
        code,
        h.wh.plain,
        "cash_on_delivery",
        &[(123, 2, "335000.00")],
    ))
    .await?;
    let factor = h.factor(code).await?;
    assert_eq!(
        factor.len(),
        20,
        "factor id is the 20-digit string: {factor}"
    );
    assert!(factor.bytes().all(|b| b.is_ascii_digit()));
    let sim = h.sim_orders_for(code);
    assert_eq!(sim.len(), 1);
    assert_eq!(sim[0].buy_type, 1, "COD is buy_type 1");
    assert_eq!(sim[0].send_type, 1);
    assert_eq!(sim[0].items[0].2, 335_000, "Rial integer price");
    assert_eq!(sim[0].items[0].4, 200, "grams from the warehouse default");

    // COD orders are processing right away: the first poll gives info_received.
    let info = recv_match(&mut q, "order.updateExpressInfo", |v| {
        v["orderCode"] == code
    })
    .await?;
    assert_eq!(info.json()["state"], 101, "info_received");
    assert_eq!(info.json()["waybillCode"], factor.as_str());

    h.sim.advance_order(&factor); // ارسال شده, with a barcode
    let shipped = recv_match(&mut q, "order.erpstatus", |v| {
        v["order_code"] == code && v["status"] == 600
    })
    .await?;
    let barcode = h.sim.order(&factor).map(|o| o.barcode).unwrap_or_default();
    assert_eq!(shipped.json()["data"]["express_number"], barcode.as_str());
    assert_eq!(shipped.json()["data"]["express_id"], 90);
    let transit = recv_match(&mut q, "order.updateExpressInfo", |v| {
        v["orderCode"] == code && v["state"] == 0
    })
    .await?;
    assert_eq!(transit.json()["acceptRemark"], "ارسال شده");

    h.sim.advance_order(&factor); // تحویل شده
    recv_match(&mut q, "order.erpstatus", |v| {
        v["order_code"] == code && v["status"] == 700
    })
    .await?;
    let v = eventually("tracking done", || async {
        let v = h.order(code).await.ok()?;
        (v["tracking_done"] == true).then_some(v)
    })
    .await?;
    assert_eq!(v["stage"], "delivered");
    assert_eq!(
        h.outbox_count("order.erpstatus", code).await?,
        2,
        "600 and 700 once each"
    );
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bank_payment_verified_once_and_continue_pay_after_a_failure() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mut q = TestQueue::bind(&["order.payment"]).await?;

    // verify 1, then the same callback again.
    let code = order_code();
    h.submit(&submit_body(
        code,
        h.wh.plain,
        "partner_bank",
        &[(123, 1, "670000.00")],
    ))
    .await?;
    let factor = h.factor(code).await?;
    let v = h.order(code).await?;
    assert_eq!(v["payment_state"], "awaiting");
    assert_eq!(v["banks"][0]["id"], 1);
    let (callback, status) = h.pay(code, 1, true).await?;
    assert_eq!(status, 200);
    let paid = recv_match(&mut q, "order.payment", |v| v["order_code"] == code).await?;
    let p = paid.json();
    assert_eq!(p["payment_gateway"], "frotel");
    assert_eq!(p["gateway_trade_no"], factor.as_str());
    assert_eq!(p["pay_type"], 3);
    assert_eq!(p["amount"], "700000.00");
    // The browser comes back twice: applied once.
    let again = h.http.get(&callback).send().await?.status().as_u16();
    assert_eq!(again, 200);
    let v = eventually("paid", || async {
        let v = h.order(code).await.ok()?;
        (v["payment_state"] == "paid").then_some(v)
    })
    .await?;
    assert_eq!(v["callbacks"].as_array().map(Vec::len), Some(1));
    assert_eq!(h.outbox_count("order.payment", code).await?, 1);

    // verify 0 → orderPay → continuePay → verify 1.
    let code2 = order_code();
    h.submit(&submit_body(
        code2,
        h.wh.plain,
        "partner_bank",
        &[(123, 1, "670000.00")],
    ))
    .await?;
    h.factor(code2).await?;
    let (_, s) = h.pay(code2, 2, false).await?;
    assert_eq!(s, 200);
    eventually("payment failed", || async {
        let v = h.order(code2).await.ok()?;
        (v["payment_state"] == "failed").then_some(())
    })
    .await?;
    let (s, cont) = h
        .get(&format!("/fulfilment/orders/{code2}/continue"))
        .await?;
    assert_eq!(s, 200, "{cont}");
    assert!(cont["remainder_price"].as_i64().unwrap_or(0) > 0, "{cont}");
    assert!(
        !cont["banks"].as_array().is_none_or(Vec::is_empty),
        "{cont}"
    );
    let (_, s) = h.pay(code2, 1, true).await?;
    assert_eq!(s, 200);
    recv_match(&mut q, "order.payment", |v| v["order_code"] == code2).await?;
    let calls: Vec<String> = sqlx::query_scalar(
        "SELECT operation FROM partner_calls WHERE order_ref = $1 ORDER BY started_at",
    )
    .bind(code2.to_string())
    .fetch_all(h.db.pool())
    .await?;
    assert!(calls.contains(&"continuePay".to_owned()), "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| *c == "checkPay").count(),
        2,
        "checkPay after each callback: {calls:?}"
    );
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn paid_to_seller_orders_wait_for_order_payment_of_themselves_or_their_parent(
) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let parent = order_code();
    let child = order_code();
    let mut body = submit_body(child, h.wh.plain, "gateway", &[(123, 1, "100000.00")]);
    body["parent_order_code"] = json!(parent);
    body.as_object_mut().map(|o| o.remove("payment_channel"));
    h.submit(&body).await?;
    h.wait_state(child, "awaiting_payment").await?;
    assert!(
        h.sim_orders_for(child).is_empty(),
        "not registered before payment"
    );
    let payment = json!({"uid": 5501, "order_code": parent, "amount": "100000.00", "pay_type": 1,
        "payment_gateway": "sinopac_qpay", "gateway_trade_no": "T1", "paid_time": 1764547300});
    h.erp
        .publish("order.payment", payment.to_string().as_bytes())
        .await?;
    h.factor(child).await?;
    assert_eq!(h.sim_orders_for(child)[0].buy_type, 3);

    // order.payment before order.submit: registered at once.
    let early = order_code();
    let payment = json!({"uid": 5501, "order_code": early, "amount": "100000.00", "pay_type": 1,
        "payment_gateway": "sinopac_qpay", "gateway_trade_no": "T2", "paid_time": 1764547300});
    h.erp
        .publish("order.payment", payment.to_string().as_bytes())
        .await?;
    eventually("payment recorded", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM fulfilment_payments_seen WHERE order_code = $1",
        )
        .bind(early)
        .fetch_one(h.db.pool())
        .await
        .ok()?;
        (n == 1).then_some(())
    })
    .await?;
    h.submit(&submit_body(
        early,
        h.wh.plain,
        "gateway",
        &[(123, 1, "100000.00")],
    ))
    .await?;
    h.factor(early).await?;
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn virtual_goods_links_are_stored_after_payment_and_services_register() -> anyhow::Result<()>
{
    let h = Harness::start().await?;
    let code = order_code();
    h.submit(&submit_body(
        code,
        h.wh.plain,
        "partner_bank",
        &[(SKU_VIRTUAL, 1, "150000.00")],
    ))
    .await?;
    let factor = h.factor(code).await?;
    let sim = h
        .sim
        .order(&factor)
        .ok_or_else(|| anyhow::anyhow!("no sim order"))?;
    assert_eq!(sim.kind, orderbus_frotel::sim::OrderKind::Virtual);
    let v = h.order(code).await?;
    assert_eq!(v["kind"], "virtual");
    h.pay(code, 1, true).await?;
    let v = eventually("links", || async {
        let v = h.order(code).await.ok()?;
        (v["download_links"]
            .as_array()
            .is_some_and(|l| !l.is_empty()))
        .then_some(v)
    })
    .await?;
    assert!(v["download_links"][0]["link"]
        .as_str()
        .is_some_and(|l| l.contains("__sim/download/")));
    // Links are shown on the order, never logged: the call log has no link either.
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM partner_calls WHERE error LIKE '%__sim/download%'",
    )
    .fetch_one(h.db.pool())
    .await?;
    assert_eq!(logged, 0);

    let code = order_code();
    h.submit(&submit_body(
        code,
        h.wh.services,
        "partner_bank",
        &[(SKU_SERVICE, 1, "90000.00")],
    ))
    .await?;
    let factor = h.factor(code).await?;
    let sim = h
        .sim
        .order(&factor)
        .ok_or_else(|| anyhow::anyhow!("no sim order"))?;
    assert_eq!(sim.kind, orderbus_frotel::sim::OrderKind::Service);
    h.stop().await
}
