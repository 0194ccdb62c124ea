//! Delivery learned from the tracking service's `order.updateExpressInfo`: a delivered `state`
//! (read through the tracking vocabulary) for the order's own waybill → `delivered` (OS03); for
//! an exchange's re-delivery waybill → the exchange completes (OS31). The ERP's own 700 / 50
//! are absorbed whether they arrive before or after.

use orderbus_testkit::ErpPublisher;
use serde_json::{json, Value};

use crate::common::*;
use crate::consumers::{erpstatus, rand_id};

/// The `state` the tracking service publishes for `delivered` (and for `in_transit`).
fn delivered_state() -> i64 {
    let v = orderbus_tracking_vocabulary::Vocabulary::builtin().expect("built-in vocabulary");
    v.express_state(orderbus_tracking_vocabulary::Stage::Delivered)
}

async fn express(
    erp: &ErpPublisher,
    uid: i64,
    code: i64,
    waybill: &str,
    state: i64,
    key: &str,
) -> anyhow::Result<()> {
    let body = json!({ "uid": uid, "acceptAddress": "충남천안청당", "acceptRemark": "배달완료",
        "businessType": 1, "createTime": 1764547200, "dealWithCost": 0, "id": 1, "logisticsType": 23,
        "orderCode": code, "state": state, "uniqueKey": key, "waybillCode": waybill });
    erp.publish("order.updateExpressInfo", body.to_string().as_bytes())
        .await?;
    Ok(())
}

fn applied(entries: &[Value], event: &str) -> Vec<Value> {
    entries
        .iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
}

#[tokio::test]
async fn carrier_delivery_moves_shipped_to_delivered_and_absorbs_the_erps_700_either_way(
) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let delivered = delivered_state();

    // Tracking first, then the ERP's 700.
    let a = h.create_order(41).await?;
    erpstatus(&erp, 41, a, 600).await?;
    h.wait_entry(a, "order.erpstatus", "erp_600_shipped")
        .await?;
    // An in-transit event moves nothing; the waybill as the carrier writes it (with a dash).
    express(&erp, 41, a, &format!("WB-{a}"), 0, "k-transit").await?;
    h.wait_entry(a, "order.updateExpressInfo", "tracking_event")
        .await?;
    assert_eq!(h.status(a).await?, "shipped");
    express(&erp, 41, a, &format!("WB-{a}"), delivered, "k-delivered").await?;
    let e = h
        .wait_entry(a, "order.updateExpressInfo", "tracking_delivered")
        .await?;
    assert_eq!(e["applied"], true, "{e}");
    assert_eq!(h.status(a).await?, "delivered");
    assert_eq!(h.order(a).await?["korean_status"], "OS03");
    erpstatus(&erp, 41, a, 700).await?;
    let late = h
        .wait_entry(a, "order.erpstatus", "erp_700_delivered")
        .await?;
    assert_eq!(
        (late["applied"].clone(), late["reason"].clone()),
        (json!(false), json!("duplicate"))
    );
    assert_eq!(h.status(a).await?, "delivered");

    // The ERP's 700 first, then tracking's delivered event: a duplicate.
    let b = h.create_order(41).await?;
    erpstatus(&erp, 41, b, 600).await?;
    h.wait_entry(b, "order.erpstatus", "erp_600_shipped")
        .await?;
    erpstatus(&erp, 41, b, 700).await?;
    h.wait_entry(b, "order.erpstatus", "erp_700_delivered")
        .await?;
    express(&erp, 41, b, &format!("WB{b}"), delivered, "k-b").await?;
    let e = h
        .wait_entry(b, "order.updateExpressInfo", "tracking_delivered")
        .await?;
    assert_eq!(
        (e["applied"].clone(), e["reason"].clone()),
        (json!(false), json!("duplicate"))
    );
    assert_eq!(h.status(b).await?, "delivered");

    // A delivered event for a waybill that is not the order's: recorded, nothing moves.
    let c = h.create_order(41).await?;
    erpstatus(&erp, 41, c, 600).await?;
    h.wait_entry(c, "order.erpstatus", "erp_600_shipped")
        .await?;
    express(&erp, 41, c, "999999999999", delivered, "k-c").await?;
    let e = h
        .wait_entry(c, "order.updateExpressInfo", "tracking_delivered")
        .await?;
    assert_eq!(
        (e["applied"].clone(), e["reason"].clone()),
        (json!(false), json!("other_waybill"))
    );
    assert_eq!(h.status(c).await?, "shipped");
    // The same delivered event again (same uniqueKey): the tracking event is a duplicate and
    // nothing else happens.
    express(&erp, 41, a, &format!("WB-{a}"), delivered, "k-delivered").await?;
    eventually("duplicate tracking event", || async {
        let t = h.timeline(a).await.ok()?;
        (t.iter().filter(|e| e["event"] == "tracking_event").count() == 3).then_some(())
    })
    .await?;
    assert_eq!(
        applied(&h.timeline(a).await?, "tracking_delivered").len(),
        1
    );
    h.stop().await
}

/// Creates an exchange on a delivered order and lets the ERP approve it; returns
/// `(order, exchange id, ERP exchange id, replacement order)`.
async fn approved_exchange(
    h: &Harness,
    erp: &ErpPublisher,
    uid: i64,
) -> anyhow::Result<(i64, i64, i64, i64)> {
    let code = h.create_order(uid).await?;
    h.force_status(code, "delivered").await?;
    let body = json!({ "goods": [{ "product_sku": 892152, "product_skc": 279434, "new_product_sku": 892153,
        "new_product_skc": 279434, "new_goods_id": 354687, "exchange_reason": "3" }], "remark": "用户换货" });
    let (s, v) = h.post(&format!("/orders/{code}/exchanges"), &body).await?;
    anyhow::ensure!(s == 201, "exchange: {s} {v}");
    let id = v["id"].as_i64().unwrap_or_default();
    let (erp_id, new_order) = (rand_id(), rand_id());
    let created = json!({ "code": 200, "message": "ok", "data": { "id": id, "init_order_code": code.to_string(),
        "source_order_code": code, "new_order_code": new_order, "exchange_id": erp_id, "returned_id": erp_id + 1,
        "exchange_status": 10, "returned_status": 10 } });
    erp.publish("erp.createChangeOrder", created.to_string().as_bytes())
        .await?;
    h.wait_entry(code, "erp.createChangeOrder", "erp_10_approved")
        .await?;
    Ok((code, id, erp_id, new_order))
}

#[tokio::test]
async fn a_redelivery_delivered_completes_the_exchange_and_absorbs_the_erps_50_either_way(
) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let delivered = delivered_state();
    let status =
        |erp_id: i64, s: i64| json!({ "id": erp_id, "status": s, "type": "change" }).to_string();

    // Tracking first (the ERP's 30 has not even arrived), then the ERP's 50.
    let (code, _, erp_id, new_order) = approved_exchange(&h, &erp, 42).await?;
    erpstatus(&erp, 42, new_order, 600).await?;
    h.wait_entry(new_order, "order.erpstatus", "erp_600_shipped")
        .await?;
    express(
        &erp,
        42,
        new_order,
        &format!("WB{new_order}"),
        delivered,
        "x-1",
    )
    .await?;
    let e = h
        .wait_entry(code, "order.updateExpressInfo", "tracking_redelivered")
        .await?;
    assert_eq!(e["applied"], true, "{e}");
    let x = &h.order(code).await?["exchanges"][0];
    assert_eq!(
        (x["status"].clone(), x["korean_status"].clone()),
        (json!("completed"), json!("OS31"))
    );
    assert_eq!(h.status(new_order).await?, "delivered");
    erp.publish(
        "erp.updateChangeRefundOrderStatus",
        status(erp_id, 50).as_bytes(),
    )
    .await?;
    let late = h
        .wait_entry(
            code,
            "erp.updateChangeRefundOrderStatus",
            "erp_50_completed",
        )
        .await?;
    assert_eq!(
        (late["applied"].clone(), late["reason"].clone()),
        (json!(false), json!("duplicate"))
    );

    // The ERP's 30 and 50 first, then tracking's delivered event: a duplicate.
    let (code, _, erp_id, new_order) = approved_exchange(&h, &erp, 42).await?;
    erp.publish(
        "erp.updateChangeRefundOrderStatus",
        status(erp_id, 30).as_bytes(),
    )
    .await?;
    h.wait_entry(
        code,
        "erp.updateChangeRefundOrderStatus",
        "erp_30_goods_received",
    )
    .await?;
    erpstatus(&erp, 42, new_order, 600).await?;
    h.wait_entry(new_order, "order.erpstatus", "erp_600_shipped")
        .await?;
    erp.publish(
        "erp.updateChangeRefundOrderStatus",
        status(erp_id, 50).as_bytes(),
    )
    .await?;
    h.wait_entry(
        code,
        "erp.updateChangeRefundOrderStatus",
        "erp_50_completed",
    )
    .await?;
    express(
        &erp,
        42,
        new_order,
        &format!("WB{new_order}"),
        delivered,
        "x-2",
    )
    .await?;
    let e = h
        .wait_entry(code, "order.updateExpressInfo", "tracking_redelivered")
        .await?;
    assert_eq!(
        (e["applied"].clone(), e["reason"].clone()),
        (json!(false), json!("duplicate"))
    );
    assert_eq!(h.order(code).await?["exchanges"][0]["status"], "completed");
    h.stop().await
}

#[tokio::test]
async fn a_delivered_event_before_the_600_waits_for_it() -> anyhow::Result<()> {
    let h = Harness::start_with(|s| {
        s.retry_tiers = [1, 2, 4, 8].map(std::time::Duration::from_secs).to_vec();
    })
    .await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(43).await?;
    // The tracking service's message overtakes the ERP's 600 (another queue): retried.
    express(
        &erp,
        43,
        code,
        &format!("WB{code}"),
        delivered_state(),
        "early",
    )
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    erpstatus(&erp, 43, code, 600).await?;
    let e = h
        .wait_entry(code, "order.updateExpressInfo", "tracking_delivered")
        .await?;
    assert_eq!(e["applied"], true, "{e}");
    assert_eq!(h.status(code).await?, "delivered");
    h.stop().await
}
