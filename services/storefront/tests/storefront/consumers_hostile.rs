//! Consumers under hostile input: money the order does not owe, fulfilment events for a JIT
//! split parent, fields that break the storefront's rules (parked, naming the field), bodies
//! whose unknown fields must never be stored, ERP id clashes, tracking keys per order.

use orderbus_testkit::{unique_suffix, ErpPublisher};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

use crate::common::*;
use crate::consumers::{erpstatus, not_applied, pay, rand_id};

/// Waits until the order's timeline has `n` entries for `event` from `source`; returns them.
async fn entries(
    h: &Harness,
    code: i64,
    source: &str,
    event: &str,
    n: usize,
) -> anyhow::Result<Vec<Value>> {
    eventually(&format!("{n} × {event} on {code}"), || async {
        let found: Vec<Value> = h
            .timeline(code)
            .await
            .ok()?
            .into_iter()
            .filter(|e| e["source"] == source && e["event"] == event)
            .collect();
        (found.len() >= n).then_some(found)
    })
    .await
}

async fn metrics(h: &Harness) -> anyhow::Result<String> {
    Ok(h.http.get(h.url("/metrics")).send().await?.text().await?)
}

#[tokio::test]
async fn a_payment_the_order_does_not_owe_is_refused_and_the_correct_one_pays() -> anyhow::Result<()>
{
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(41).await?;
    // Not a positive amount in cents: the contract refuses it at decode, so it is parked with
    // the field named and never reaches the order (no timeline entry).
    for amount in ["-5.00", "0.00", "1.001"] {
        pay(&erp, 41, code, amount).await?;
    }
    // A well-formed amount the order does not owe: recorded as not applied. Same queue, same
    // order, so once its entry exists the three above have been handled.
    pay(&erp, 41, code, "186.01").await?;
    let e = entries(&h, code, "order.payment", "payment", 1).await?;
    assert_eq!(
        e.len(),
        1,
        "the decode-refused payments left no entry: {e:?}"
    );
    assert_eq!(
        (e[0]["applied"].clone(), e[0]["reason"].clone()),
        (json!(false), json!("amount_exceeds_order"))
    );
    assert_eq!(e[0]["detail"]["amount"], "186.01");
    let o = h.order(code).await?;
    assert_eq!(o["status"], "pending_payment");
    assert_eq!(
        o["paid_amount"],
        Value::Null,
        "nothing of a refused payment is stored"
    );
    let m = metrics(&h).await?;
    assert!(
        m.contains("storefront_payments_refused_total{reason=\"amount_exceeds_order\"}"),
        "metric exported"
    );

    // The correct payment still pays, and the order ships.
    pay(&erp, 41, code, "186.00").await?;
    let e = entries(&h, code, "order.payment", "payment", 2).await?;
    assert_eq!(e[1]["applied"], true);
    assert_eq!(e[1]["detail"]["share"], "whole");
    erpstatus(&erp, 41, code, 600).await?;
    h.wait_entry(code, "order.erpstatus", "erp_600_shipped")
        .await?;
    let o = h.order(code).await?;
    assert_eq!(
        (o["status"].clone(), o["paid_amount"].clone()),
        (json!("shipped"), json!("186.00"))
    );

    // Pre-sale: a deposit, the ERP's 40, then only the exact balance pays.
    let pre = h.create_order(41).await?;
    pay(&erp, 41, pre, "86.00").await?;
    let e = h.wait_entry(pre, "order.payment", "payment").await?;
    assert_eq!(
        (
            e["detail"]["share"].clone(),
            e["detail"]["outstanding"].clone()
        ),
        (json!("deposit"), json!("100.00"))
    );
    erpstatus(&erp, 41, pre, 40).await?;
    h.wait_entry(pre, "order.erpstatus", "erp_40_presale_balance_due")
        .await?;
    pay(&erp, 41, pre, "50.00").await?;
    let e = entries(&h, pre, "order.payment", "payment", 2).await?;
    assert_eq!(e[1]["reason"], "balance_mismatch");
    assert_eq!(h.status(pre).await?, "balance_due");
    pay(&erp, 41, pre, "100.00").await?;
    entries(&h, pre, "order.payment", "payment", 3).await?;
    let o = h.order(pre).await?;
    assert_eq!(
        (o["status"].clone(), o["paid_amount"].clone()),
        (json!("balance_paid"), json!("186.00"))
    );
    h.stop().await
}

#[tokio::test]
async fn a_split_parent_follows_payment_and_cancellation_only() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let (_, v) = h.post("/orders", &order_body(42, &[1, 2])).await?;
    let parent = v["order_code"].as_i64().unwrap_or_default();
    let child = v["child_order_codes"][0].as_i64().unwrap_or_default();
    pay(&erp, 42, parent, "362.00").await?;
    h.wait_entry(parent, "order.payment", "payment").await?;
    for status in [100, 200, 600, 700] {
        erpstatus(&erp, 42, parent, status).await?;
    }
    erp.publish(
        "erp.updateInvoicePdfUrl",
        json!({ "uid": 42, "orderCode": parent, "pdfUrl": "https://inv/p.pdf", "invoiceType": "0" })
            .to_string()
            .as_bytes(),
    )
    .await?;
    let track = json!({ "uid": 42, "acceptAddress": "郑州市", "acceptRemark": "r", "businessType": 1,
        "createTime": 1483387378, "dealWithCost": 0, "id": 1, "logisticsType": 23, "orderCode": parent,
        "state": 0, "uniqueKey": "k1", "waybillCode": "612037714591" });
    erp.publish("order.updateExpressInfo", track.to_string().as_bytes())
        .await?;
    let o = eventually("every event recorded", || async {
        let o = h.order(parent).await.ok()?;
        let refused = o["timeline"]
            .as_array()?
            .iter()
            .filter(|e| e["reason"] == "split_parent")
            .count();
        (refused == 6).then_some(o)
    })
    .await?;
    let t = o["timeline"].as_array().cloned().unwrap_or_default();
    for event in [
        "erp_100_audited",
        "erp_200_stocked",
        "erp_600_shipped",
        "erp_700_delivered",
        "invoice_blue",
        "tracking_event",
    ] {
        assert_eq!(not_applied(&t, event).len(), 1, "{event} not applied");
    }
    assert_eq!(o["status"], "paid");
    assert_eq!(o["shipments"], json!([]), "no waybill on a parent");
    assert_eq!(o["invoices"], json!([]));
    assert_eq!(o["tracking"], json!([]));
    assert_eq!(h.status(child).await?, "paid", "the children are untouched");
    // Cancellation still applies to the parent.
    erpstatus(&erp, 42, parent, 901).await?;
    h.wait_entry(parent, "order.erpstatus", "erp_901_cs_cancel")
        .await?;
    assert_eq!(h.status(parent).await?, "cancelled_by_cs");
    h.stop().await
}

/// Publishes `body` and waits for it to be parked (matched by its marker); returns the reason.
async fn parked_reason(
    h: &Harness,
    erp: &ErpPublisher,
    routing_key: &str,
    body: Value,
) -> anyhow::Result<String> {
    let marker = unique_suffix();
    let mut body = body;
    let tagged = match &mut body {
        Value::Array(items) => items.first_mut(),
        other => Some(other),
    };
    if let Some(Value::Object(o)) = tagged {
        o.insert("marker".into(), json!(marker));
    }
    erp.publish(routing_key, body.to_string().as_bytes())
        .await?;
    let p = wait_parked(h, |p| {
        let b = match &p.body {
            Value::Array(items) => items.first().cloned().unwrap_or_default(),
            other => other.clone(),
        };
        b["marker"] == marker.as_str()
    })
    .await?;
    Ok(p.reason)
}

#[tokio::test]
async fn fields_that_break_the_rules_are_parked_naming_the_field() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(43).await?;
    let big = "x".repeat(1_000_000);
    let track = |key: &str, time: i64, remark: &str| {
        json!({ "uid": 43, "acceptAddress": "a", "acceptRemark": remark, "businessType": 1,
            "createTime": time, "dealWithCost": 0, "id": 1, "logisticsType": 23, "orderCode": code,
            "state": 0, "uniqueKey": key, "waybillCode": "612037714591" })
    };
    let payment = |gateway: &str, time: i64| {
        json!({ "uid": 43, "order_code": code, "amount": "186.00", "pay_type": 1,
            "payment_gateway": gateway, "gateway_trade_no": "T", "paid_time": time })
    };
    let address = |user_name: &str, street: &str| {
        json!([{ "address": street, "address_id": 1, "area_code": 330225, "city": "宁波市",
            "district": "象山县", "email": "", "mobile": "15258109727", "order_code": code,
            "parent_order_code": 0, "phone": "", "province": "浙江省", "user_name": user_name, "zip_code": 315700 }])
    };
    let invoice =
        |url: &str| json!({ "uid": 43, "orderCode": code, "pdfUrl": url, "invoiceType": "0" });
    let cases = [
        (
            "order.updateExpressInfo",
            track("k", 1_000_000_000_000_000, "r"),
            "createTime",
        ),
        (
            "order.updateExpressInfo",
            track("k", -1_000_000_000_000, "r"),
            "createTime",
        ),
        (
            "order.updateExpressInfo",
            track("", 1483387378, "r"),
            "uniqueKey",
        ),
        (
            "order.updateExpressInfo",
            track("k", 1483387378, "a\u{0}b"),
            "acceptRemark",
        ),
        (
            "order.payment",
            payment("sinopac_qpay", 1_000_000_000_000_000),
            "paid_time",
        ),
        (
            "order.payment",
            payment(&big, 1700000000),
            "payment_gateway",
        ),
        (
            "erp.deliveryAddressUpdate",
            address("", "街"),
            "[0].user_name",
        ),
        (
            "erp.deliveryAddressUpdate",
            address("朱", &big),
            "[0].address",
        ),
        ("erp.updateInvoicePdfUrl", invoice(""), "pdfUrl"),
        (
            "erp.updateInvoicePdfUrl",
            invoice("javascript:alert(1)"),
            "pdfUrl",
        ),
    ];
    for (key, body, field) in cases {
        let reason = parked_reason(&h, &erp, key, body).await?;
        assert!(
            reason.contains(&format!("{key}: {field}:")),
            "{key} names {field}: {reason}"
        );
    }
    // Nothing of it was stored; the consumer goes on.
    let o = h.order(code).await?;
    assert_eq!(
        (
            o["tracking"].clone(),
            o["invoices"].clone(),
            o["paid_amount"].clone()
        ),
        (json!([]), json!([]), Value::Null)
    );
    assert_eq!(o["delivery_address"]["user_name"], "朱倩倩");
    erpstatus(&erp, 43, code, 100).await?;
    h.wait_entry(code, "order.erpstatus", "erp_100_audited")
        .await?;
    h.stop().await
}

/// Unknown fields (NUL, huge strings, nesting) never reach the database: a valid message
/// applies whatever else it carries, and the order served back holds only known fields.
#[tokio::test]
async fn unknown_fields_are_never_stored_or_served_back() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(44).await?;
    let mut runner = TestRunner::deterministic();
    let extras = proptest::collection::btree_map(
        "[a-z]{1,8}",
        proptest::prop_oneof!["(\\PC|\\x00){0,40}", "\\x00{1,5}"],
        1..4,
    );
    let mut sent = 0;
    for _ in 0..6 {
        let fields = extras
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .current();
        let mut body = json!({ "uid": 44, "order_code": code, "status": 100 });
        for (k, v) in fields {
            body[format!("x_{k}")] = json!(v);
        }
        erp.publish("order.erpstatus", body.to_string().as_bytes())
            .await?;
        sent += 1;
    }
    // And one with a 1 MB unknown field.
    let huge = json!({ "uid": 44, "order_code": code, "status": 200, "blob": "\u{0}".repeat(16) + &"y".repeat(1_000_000) });
    erp.publish("order.erpstatus", huge.to_string().as_bytes())
        .await?;
    let audits = entries(&h, code, "order.erpstatus", "erp_100_audited", sent).await?;
    h.wait_entry(code, "order.erpstatus", "erp_200_stocked")
        .await?;
    assert_eq!(
        audits[0]["applied"], true,
        "a NUL in an ignored field does not stop it"
    );
    for e in h.timeline(code).await? {
        if e["source"] == "order.erpstatus" {
            assert_eq!(
                e["detail"],
                json!({ "status": e["detail"]["status"].clone() }),
                "known fields only: {e}"
            );
        }
    }
    let text = h
        .http
        .get(h.url(&format!("/orders/{code}")))
        .send()
        .await?
        .text()
        .await?;
    assert!(text.len() < 20_000, "served {} bytes", text.len());
    assert_eq!(h.status(code).await?, "stocked");
    h.stop().await
}

#[tokio::test]
async fn an_erp_id_that_belongs_to_another_exchange_or_return_is_parked() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(45).await?;
    h.force_status(code, "delivered").await?;
    let exchange = json!({ "goods": [{ "product_sku": 892152, "product_skc": 1, "new_product_sku": 2,
        "new_product_skc": 3, "new_goods_id": 4, "exchange_reason": "size" }] });
    let ret = json!({ "goods": [{ "product_sku": 892152, "returned_reason": "1" }], "return_amount_mode": "2" });
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (_, x) = h
            .post(&format!("/orders/{code}/exchanges"), &exchange)
            .await?;
        let (_, r) = h.post(&format!("/orders/{code}/returns"), &ret).await?;
        ids.push((
            x["id"].as_i64().unwrap_or_default(),
            r["id"].as_i64().unwrap_or_default(),
        ));
    }
    let (erp_x, erp_r) = (rand_id(), rand_id());
    let created_x = |id: i64| {
        json!({ "code": 200, "message": "ok", "data": { "id": id, "init_order_code": code.to_string(),
            "source_order_code": code, "new_order_code": 0, "exchange_id": erp_x, "returned_id": erp_x,
            "exchange_status": 10, "returned_status": 10 } })
    };
    let created_r = |id: i64| json!({ "code": 200, "message": "ok", "data": { "id": id, "returned_id": erp_r, "returned_status": 10 } });
    erp.publish(
        "erp.createChangeOrder",
        created_x(ids[0].0).to_string().as_bytes(),
    )
    .await?;
    erp.publish(
        "erp.createRefundOrder",
        created_r(ids[0].1).to_string().as_bytes(),
    )
    .await?;
    entries(&h, code, "erp.createChangeOrder", "erp_10_approved", 1).await?;
    entries(&h, code, "erp.createRefundOrder", "erp_10_approved", 1).await?;
    let reason = parked_reason(&h, &erp, "erp.createChangeOrder", created_x(ids[1].0)).await?;
    assert!(
        reason.contains(&format!(
            "ERP exchange id {erp_x} already belongs to exchange {}",
            ids[0].0
        )),
        "{reason}"
    );
    let reason = parked_reason(&h, &erp, "erp.createRefundOrder", created_r(ids[1].1)).await?;
    assert!(
        reason.contains(&format!(
            "ERP return id {erp_r} already belongs to return {}",
            ids[0].1
        )),
        "{reason}"
    );
    let o = h.order(code).await?;
    assert_eq!(o["exchanges"][1]["erp_exchange_id"], Value::Null);
    assert_eq!(o["returns"][1]["erp_returned_id"], Value::Null);
    h.stop().await
}

#[tokio::test]
async fn tracking_events_are_deduplicated_per_order_and_waybill() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let (a, b) = (h.create_order(46).await?, h.create_order(46).await?);
    let key = format!("uk-{}", unique_suffix());
    let track = |code: i64, waybill: &str| {
        json!({ "uid": 46, "acceptAddress": "郑州市", "acceptRemark": "快件在 郑州总集散中心", "businessType": 1,
            "createTime": 1483387378, "dealWithCost": 0, "id": 26827984, "logisticsType": 23, "orderCode": code,
            "state": 0, "uniqueKey": key, "waybillCode": waybill })
    };
    for (code, waybill) in [(a, "W1"), (b, "W1"), (a, "W2"), (a, "W1")] {
        erp.publish(
            "order.updateExpressInfo",
            track(code, waybill).to_string().as_bytes(),
        )
        .await?;
    }
    let on_a = entries(&h, a, "order.updateExpressInfo", "tracking_event", 3).await?;
    let on_b = entries(&h, b, "order.updateExpressInfo", "tracking_event", 1).await?;
    assert_eq!(
        on_b[0]["applied"], true,
        "the same key on another order is its own event"
    );
    let refused: Vec<&Value> = on_a.iter().filter(|e| e["applied"] == false).collect();
    assert_eq!(refused.len(), 1, "{on_a:?}");
    assert_eq!(refused[0]["reason"], "duplicate");
    assert_eq!(refused[0]["detail"]["waybill_code"], "W1");
    assert_eq!(
        h.order(a).await?["tracking"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        h.order(b).await?["tracking"].as_array().map(Vec::len),
        Some(1)
    );
    h.stop().await
}
