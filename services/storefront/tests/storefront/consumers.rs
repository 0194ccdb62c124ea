//! Consumers: each routing key applies its effect; duplicates and out-of-order events are on the
//! timeline as not applied; unknown orders and hostile bodies are parked with a reason while the
//! consumer keeps going.

use orderbus_testkit::{unique_suffix, ErpPublisher};
use serde_json::{json, Value};

use crate::common::*;

pub(crate) fn rand_id() -> i64 {
    (u64::from_str_radix(&unique_suffix()[..10], 16).unwrap_or(7) % 4_000_000_000_000) as i64 + 1
}

pub(crate) fn not_applied(entries: &[Value], event: &str) -> Vec<Value> {
    entries
        .iter()
        .filter(|e| e["event"] == event && e["applied"] == false)
        .cloned()
        .collect()
}

pub(crate) async fn pay(
    erp: &ErpPublisher,
    uid: i64,
    code: i64,
    amount: &str,
) -> anyhow::Result<()> {
    let body = json!({
        "uid": uid, "order_code": code, "amount": amount, "pay_type": 1,
        "payment_gateway": "sinopac_qpay", "gateway_trade_no": "TN1", "paid_time": 1700000000
    });
    erp.publish("order.payment", body.to_string().as_bytes())
        .await?;
    Ok(())
}

pub(crate) async fn erpstatus(
    erp: &ErpPublisher,
    uid: i64,
    code: i64,
    status: i64,
) -> anyhow::Result<()> {
    let mut body = json!({ "uid": uid, "order_code": code, "status": status });
    if status == 600 {
        body["data"] = json!({ "express_id": 23, "express_number": format!("WB{code}") });
    }
    erp.publish("order.erpstatus", body.to_string().as_bytes())
        .await?;
    Ok(())
}

#[tokio::test]
async fn payment_then_erp_progress_with_late_and_duplicate_events() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(31).await?;
    pay(&erp, 31, code, "186.00").await?;
    h.wait_entry(code, "order.payment", "payment").await?;
    assert_eq!(h.status(code).await?, "paid");
    assert_eq!(h.order(code).await?["paid_amount"], "186.00");
    // The payment service retries with a new message id: recorded as a duplicate, not applied.
    pay(&erp, 31, code, "186.00").await?;
    eventually("duplicate payment recorded", || async {
        let t = h.timeline(code).await.ok()?;
        (t.iter().filter(|e| e["event"] == "payment").count() == 2).then_some(())
    })
    .await?;
    erpstatus(&erp, 31, code, 100).await?;
    h.wait_entry(code, "order.erpstatus", "erp_100_audited")
        .await?;
    erpstatus(&erp, 31, code, 200).await?;
    h.wait_entry(code, "order.erpstatus", "erp_200_stocked")
        .await?;
    // 700 before 600: delivered first, the 600 is late (its waybill is still recorded).
    erpstatus(&erp, 31, code, 700).await?;
    h.wait_entry(code, "order.erpstatus", "erp_700_delivered")
        .await?;
    erpstatus(&erp, 31, code, 600).await?;
    let late = h
        .wait_entry(code, "order.erpstatus", "erp_600_shipped")
        .await?;
    assert_eq!(late["applied"], false);
    assert_eq!(late["reason"], "late");
    assert_eq!(late["status_after"], "delivered");
    erpstatus(&erp, 31, code, 100).await?;
    let order = eventually("second 100 recorded", || async {
        let o = h.order(code).await.ok()?;
        let n = o["timeline"]
            .as_array()?
            .iter()
            .filter(|e| e["event"] == "erp_100_audited")
            .count();
        (n == 2).then_some(o)
    })
    .await?;
    let t = order["timeline"].as_array().cloned().unwrap_or_default();
    assert_eq!(order["status"], "delivered", "nothing moved it backwards");
    assert_eq!(order["korean_status"], "OS03");
    assert_eq!(order["shipments"][0]["express_number"], format!("WB{code}"));
    assert_eq!(not_applied(&t, "payment")[0]["reason"], "duplicate");
    assert_eq!(not_applied(&t, "erp_100_audited")[0]["reason"], "late");
    let (_, metrics) = (0, h.http.get(h.url("/metrics")).send().await?.text().await?);
    assert!(
        metrics.contains("storefront_events_not_applied_total"),
        "metric exported"
    );
    h.stop().await
}

#[tokio::test]
async fn payment_of_a_split_parent_pays_the_children_and_cancel_codes_apply() -> anyhow::Result<()>
{
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let (_, v) = h.post("/orders", &order_body(32, &[1, 2])).await?;
    let parent = v["order_code"].as_i64().unwrap_or_default();
    let children: Vec<i64> = v["child_order_codes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    pay(&erp, 32, parent, "362.00").await?;
    h.wait_entry(parent, "order.payment", "payment").await?;
    for c in &children {
        assert_eq!(h.status(*c).await?, "paid");
    }
    // CS cancel (901) on one child, ERP auto-cancel (906) on the other after it shipped = late.
    erpstatus(&erp, 32, children[0], 901).await?;
    h.wait_entry(children[0], "order.erpstatus", "erp_901_cs_cancel")
        .await?;
    assert_eq!(h.status(children[0]).await?, "cancelled_by_cs");
    erpstatus(&erp, 32, children[1], 600).await?;
    h.wait_entry(children[1], "order.erpstatus", "erp_600_shipped")
        .await?;
    erpstatus(&erp, 32, children[1], 906).await?;
    let e = h
        .wait_entry(children[1], "order.erpstatus", "erp_906_auto_cancel")
        .await?;
    assert_eq!(
        (e["applied"].clone(), e["reason"].clone()),
        (json!(false), json!("late"))
    );
    // Pre-sale: 40 after the deposit, then the balance payment (together the order amount).
    let pre = h.create_order(32).await?;
    pay(&erp, 32, pre, "86.00").await?;
    h.wait_entry(pre, "order.payment", "payment").await?;
    erpstatus(&erp, 32, pre, 40).await?;
    h.wait_entry(pre, "order.erpstatus", "erp_40_presale_balance_due")
        .await?;
    assert_eq!(h.status(pre).await?, "balance_due");
    pay(&erp, 32, pre, "100.00").await?;
    eventually("balance paid", || async {
        (h.status(pre).await.ok()? == "balance_paid").then_some(())
    })
    .await?;
    assert_eq!(
        h.order(pre).await?["paid_amount"],
        "186.00",
        "deposit + balance"
    );
    h.stop().await
}

#[tokio::test]
async fn unknown_orders_and_hostile_bodies_are_parked_and_the_consumer_keeps_going(
) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(33).await?;
    let ghost = rand_id();
    erpstatus(&erp, 33, ghost, 100).await?;
    let p = wait_parked(&h, |p| p.body["order_code"] == ghost).await?;
    assert_eq!(p.reason, format!("unknown order {ghost}"));
    assert_eq!(p.routing_key, "order.erpstatus");

    let marker = unique_suffix();
    erp.publish(
        "order.erpstatus",
        format!("{{\"marker\":\"{marker}\",\"uid\":").as_bytes(),
    )
    .await?;
    let p = wait_parked(&h, |p| p.body.as_str().is_some_and(|s| s.contains(&marker))).await?;
    assert!(p.reason.contains("malformed JSON"), "{}", p.reason);

    let wrong = json!({ "marker": marker, "uid": "abc", "order_code": code, "status": 100 });
    erp.publish("order.erpstatus", wrong.to_string().as_bytes())
        .await?;
    let p = wait_parked(&h, |p| {
        p.body["uid"] == "abc" && p.body["marker"] == marker.as_str()
    })
    .await?;
    assert!(p.reason.contains("uid"), "names the field: {}", p.reason);

    let unknown_code = json!({ "marker": marker, "uid": 33, "order_code": code, "status": 601 });
    erp.publish("order.erpstatus", unknown_code.to_string().as_bytes())
        .await?;
    let p = wait_parked(&h, |p| {
        p.body["status"] == 601 && p.body["marker"] == marker.as_str()
    })
    .await?;
    assert!(
        p.reason.contains("status") && p.reason.contains("601"),
        "{}",
        p.reason
    );

    let no_waybill = json!({ "marker": marker, "uid": 33, "order_code": code, "status": 600 });
    erp.publish("order.erpstatus", no_waybill.to_string().as_bytes())
        .await?;
    let p = wait_parked(&h, |p| {
        p.body["status"] == 600 && p.body["marker"] == marker.as_str()
    })
    .await?;
    assert!(p.reason.contains("data"), "{}", p.reason);

    let stranger = json!({ "uid": 999, "order_code": code, "status": 100 });
    erp.publish("order.erpstatus", stranger.to_string().as_bytes())
        .await?;
    let p = wait_parked(&h, |p| p.body["uid"] == 999 && p.body["order_code"] == code).await?;
    assert!(p.reason.contains("does not own"), "{}", p.reason);

    // Still consuming: a good message applies.
    erpstatus(&erp, 33, code, 100).await?;
    h.wait_entry(code, "order.erpstatus", "erp_100_audited")
        .await?;
    assert_eq!(h.status(code).await?, "audited");
    h.stop().await
}

#[tokio::test]
async fn exchange_approved_shipped_completed() -> anyhow::Result<()> {
    let mut q = orderbus_testkit::TestQueue::bind(&[
        "order.createChangeOrder",
        "order.updateChangeRefundOrderExpressInfo",
        "order.changeRefundCancel",
    ])
    .await?;
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(34).await?;
    let path = format!("/orders/{code}/exchanges");
    let body = json!({ "goods": [{ "product_sku": 892152, "product_skc": 279434, "new_product_sku": 892153,
        "new_product_skc": 279434, "new_goods_id": 354687, "exchange_reason": "3" }], "remark": "用户换货" });
    let (s, v) = h.post(&path, &body).await?;
    assert_eq!(
        (s, v["current_status"].clone()),
        (409, json!("pending_payment")),
        "not delivered yet"
    );
    h.force_status(code, "delivered").await?;
    let mut wrong = body.clone();
    wrong["goods"][0]["product_sku"] = json!(1);
    let (s, v) = h.post(&path, &wrong).await?;
    assert_eq!(
        (s, v["field"].clone()),
        (400, json!("goods[0].product_sku"))
    );
    let (s, v) = h.post(&path, &body).await?;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_i64().unwrap_or_default();
    let m = recv_match(&mut q, "order.createChangeOrder", |b| b["id"] == id).await?;
    assert_schema(&m);
    assert_eq!(m.json()["order_code"], code);
    assert_eq!(m.json()["goods"][0]["last_price"], "88.00");
    assert_eq!(m.json()["zip_code"], "315700");
    // Before the ERP's answer: no waybill, no cancel.
    let (s, _) = h
        .post(&format!("/exchanges/{id}/cancel"), &json!({}))
        .await?;
    assert_eq!(s, 409);

    let (erp_id, new_order) = (rand_id(), rand_id());
    let created = json!({ "code": 200, "message": "ok", "data": { "id": id, "init_order_code": code.to_string(),
        "source_order_code": code, "new_order_code": new_order, "exchange_id": erp_id, "returned_id": erp_id + 1,
        "exchange_status": 10, "returned_status": 10 } });
    erp.publish("erp.createChangeOrder", created.to_string().as_bytes())
        .await?;
    h.wait_entry(code, "erp.createChangeOrder", "erp_10_approved")
        .await?;
    let x = &h.order(code).await?["exchanges"][0];
    assert_eq!(
        (x["status"].clone(), x["erp_exchange_id"].clone()),
        (json!("approved"), json!(erp_id))
    );

    let (s, v) = h
        .post(
            &format!("/exchanges/{id}/waybill"),
            &json!({ "express_id": 23, "express_name": "顺丰", "express_number": "603596395359" }),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    let m = recv_match(&mut q, "order.updateChangeRefundOrderExpressInfo", |b| {
        b["id"] == id
    })
    .await?;
    assert_schema(&m);
    assert_eq!(m.json()["type"], "change");
    assert_eq!(m.json()["apply_id"], erp_id);

    let status = |s: i64| json!({ "id": erp_id, "status": s, "type": "change" }).to_string();
    erp.publish("erp.updateChangeRefundOrderStatus", status(30).as_bytes())
        .await?;
    h.wait_entry(
        code,
        "erp.updateChangeRefundOrderStatus",
        "erp_30_goods_received",
    )
    .await?;
    assert_eq!(
        h.order(code).await?["exchanges"][0]["korean_status"],
        "OS30"
    );
    // The replacement order exists and ships (OS30 on the order itself).
    erpstatus(&erp, 34, new_order, 600).await?;
    h.wait_entry(new_order, "order.erpstatus", "erp_600_shipped")
        .await?;
    let replacement = h.order(new_order).await?;
    assert_eq!(
        (
            replacement["kind"].clone(),
            replacement["korean_status"].clone()
        ),
        (json!("exchange"), json!("OS30"))
    );
    assert_eq!(replacement["shipments"][0]["kind"], "exchange_redelivery");
    erp.publish("erp.updateChangeRefundOrderStatus", status(50).as_bytes())
        .await?;
    h.wait_entry(
        code,
        "erp.updateChangeRefundOrderStatus",
        "erp_50_completed",
    )
    .await?;
    // Late 10 after 50: not applied.
    erp.publish("erp.updateChangeRefundOrderStatus", status(10).as_bytes())
        .await?;
    let e = h
        .wait_entry(code, "erp.updateChangeRefundOrderStatus", "erp_10_approved")
        .await?;
    assert_eq!(
        (e["applied"].clone(), e["reason"].clone()),
        (json!(false), json!("terminal"))
    );
    let x = &h.order(code).await?["exchanges"][0];
    assert_eq!(
        (x["status"].clone(), x["korean_status"].clone()),
        (json!("completed"), json!("OS31"))
    );
    h.stop().await
}

#[tokio::test]
async fn exchange_rejected_by_customer_service() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(35).await?;
    h.force_status(code, "receipt_confirmed").await?;
    let body = json!({ "goods": [{ "product_sku": 892152, "product_skc": 1, "new_product_sku": 2,
        "new_product_skc": 3, "new_goods_id": 4, "exchange_reason": "size" }] });
    let (_, v) = h.post(&format!("/orders/{code}/exchanges"), &body).await?;
    let id = v["id"].as_i64().unwrap_or_default();
    let erp_id = rand_id();
    let rejected = json!({ "code": 500, "message": "error", "data": { "id": id, "init_order_code": code.to_string(),
        "source_order_code": code, "new_order_code": 0, "exchange_id": erp_id, "returned_id": erp_id,
        "exchange_status": 91, "returned_status": 91 } });
    erp.publish("erp.createChangeOrder", rejected.to_string().as_bytes())
        .await?;
    h.wait_entry(code, "erp.createChangeOrder", "erp_91_rejected")
        .await?;
    assert_eq!(h.order(code).await?["exchanges"][0]["status"], "rejected");
    let (s, v) = h
        .post(&format!("/exchanges/{id}/cancel"), &json!({}))
        .await?;
    assert_eq!((s, v["current_status"].clone()), (409, json!("rejected")));
    // A status update for an ERP id nobody told us about: retried through the tiers, then parked.
    let ghost = rand_id();
    erp.publish(
        "erp.updateChangeRefundOrderStatus",
        json!({ "id": ghost, "status": 10, "type": "change" })
            .to_string()
            .as_bytes(),
    )
    .await?;
    let p = wait_parked(&h, |p| p.body["id"] == ghost).await?;
    assert!(
        p.reason.contains("retries exhausted") && p.reason.contains("unknown ERP exchange id"),
        "{}",
        p.reason
    );
    h.stop().await
}

#[tokio::test]
async fn return_refunded_with_amount_and_another_cancelled() -> anyhow::Result<()> {
    let mut q = orderbus_testkit::TestQueue::bind(&[
        "order.createRefundOrder",
        "order.updateChangeRefundOrderExpressInfo",
        "order.changeRefundCancel",
    ])
    .await?;
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(36).await?;
    h.force_status(code, "delivered").await?;
    let body = json!({ "goods": [{ "product_sku": 892152, "returned_reason": "1", "remark": "尺寸不合适" }],
        "return_amount_mode": "2", "payee_name": "张璐", "bank_card": "6228480605428963215", "bank_id": "5",
        "head_bank_name": "中国银行", "bank_name": "xx支行", "province": "江苏省", "city": "南京市" });
    let mut bad = body.clone();
    bad["return_amount_mode"] = json!("");
    let (s, v) = h.post(&format!("/orders/{code}/returns"), &bad).await?;
    assert_eq!((s, v["field"].clone()), (400, json!("return_amount_mode")));
    let (s, v) = h.post(&format!("/orders/{code}/returns"), &body).await?;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_i64().unwrap_or_default();
    let m = recv_match(&mut q, "order.createRefundOrder", |b| {
        b["order_returned_id"] == id
    })
    .await?;
    assert_schema(&m);
    assert_eq!(
        m.json()["order_code"],
        code.to_string(),
        "a string in this message"
    );
    assert_eq!(m.json()["returned_goods_list"][0]["product_sku"], "892152");

    let erp_id = rand_id();
    let created = json!({ "code": 200, "message": "ok", "data": { "id": id, "returned_id": erp_id, "returned_status": 10 } });
    erp.publish("erp.createRefundOrder", created.to_string().as_bytes())
        .await?;
    h.wait_entry(code, "erp.createRefundOrder", "erp_10_approved")
        .await?;
    let (s, _) = h
        .post(
            &format!("/returns/{id}/waybill"),
            &json!({ "express_id": 23, "express_name": "顺丰", "express_number": "603596395359" }),
        )
        .await?;
    assert_eq!(s, 200);
    let m = recv_match(&mut q, "order.updateChangeRefundOrderExpressInfo", |b| {
        b["order_returned_id"] == id
    })
    .await?;
    assert_schema(&m);
    assert_eq!(
        (m.json()["type"].clone(), m.json()["apply_id"].clone()),
        (json!("refund"), json!(erp_id))
    );
    for s in [20, 30] {
        erp.publish(
            "erp.updateChangeRefundOrderStatus",
            json!({ "id": erp_id, "status": s, "type": "refund" })
                .to_string()
                .as_bytes(),
        )
        .await?;
    }
    h.wait_entry(
        code,
        "erp.updateChangeRefundOrderStatus",
        "erp_30_goods_received",
    )
    .await?;
    let refunded = json!({ "id": erp_id, "status": 40, "type": "refund", "real_returned_amount": 100, "is_return_coupon": "N", "return_yoho_coin": 11111 });
    erp.publish(
        "erp.updateChangeRefundOrderStatus",
        refunded.to_string().as_bytes(),
    )
    .await?;
    h.wait_entry(code, "erp.updateChangeRefundOrderStatus", "erp_40_refunded")
        .await?;
    let r = &h.order(code).await?["returns"][0];
    assert_eq!(r["status"], "refunded");
    assert_eq!(r["real_returned_amount"], json!(100.00));
    assert_eq!(r["return_yoho_coin"], 11111);
    assert_eq!(r["bank_card_last4"], "3215");
    assert!(
        r.get("bank_card").is_none(),
        "the card number is not served back"
    );

    // A second return, cancelled by the customer once the ERP approved it.
    let (_, v) = h.post(&format!("/orders/{code}/returns"), &body).await?;
    let id2 = v["id"].as_i64().unwrap_or_default();
    let erp_id2 = rand_id();
    let created = json!({ "code": 200, "message": "ok", "data": { "id": id2, "returned_id": erp_id2, "returned_status": 10 } });
    erp.publish("erp.createRefundOrder", created.to_string().as_bytes())
        .await?;
    eventually("second return approved", || async {
        let o = h.order(code).await.ok()?;
        (o["returns"][1]["status"] == "approved").then_some(())
    })
    .await?;
    let (s, v) = h
        .post(&format!("/returns/{id2}/cancel"), &json!({}))
        .await?;
    assert_eq!((s, v["status"].clone()), (200, json!("cancelled")));
    let m = recv_match(&mut q, "order.changeRefundCancel", |b| b["id"] == erp_id2).await?;
    assert_schema(&m);
    assert_eq!(m.json(), json!({ "id": erp_id2, "status": 900, "type": 1 }));
    h.stop().await
}

#[tokio::test]
async fn address_invoice_and_tracking_messages() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(37).await?;
    let addr = json!([{ "address": "靖南大街688-10号2楼", "address_id": 61, "area_code": 330225, "city": "宁波市",
        "district": "象山县", "email": "canvas220@sina.com", "mobile": "15258109727", "order_code": code,
        "parent_order_code": 0, "phone": "057465772167", "province": "浙江省", "user_name": "客服改", "zip_code": 315700 }]);
    erp.publish("erp.deliveryAddressUpdate", addr.to_string().as_bytes())
        .await?;
    h.wait_entry(code, "erp.deliveryAddressUpdate", "erp_address_update")
        .await?;
    assert_eq!(
        h.order(code).await?["delivery_address"]["user_name"],
        "客服改"
    );

    let invoice = |t: &str, url: &str| {
        json!({ "uid": 37, "orderCode": code, "pdfUrl": url, "invoiceType": t }).to_string()
    };
    erp.publish(
        "erp.updateInvoicePdfUrl",
        invoice("0", "https://inv/blue.pdf").as_bytes(),
    )
    .await?;
    h.wait_entry(code, "erp.updateInvoicePdfUrl", "invoice_blue")
        .await?;
    erp.publish(
        "erp.updateInvoicePdfUrl",
        invoice("1", "https://inv/red.pdf").as_bytes(),
    )
    .await?;
    h.wait_entry(code, "erp.updateInvoicePdfUrl", "invoice_red")
        .await?;
    erp.publish(
        "erp.updateInvoicePdfUrl",
        invoice("1", "https://inv/red.pdf").as_bytes(),
    )
    .await?;
    let o = eventually("duplicate red recorded", || async {
        let o = h.order(code).await.ok()?;
        let n = o["timeline"]
            .as_array()?
            .iter()
            .filter(|e| e["event"] == "invoice_red")
            .count();
        (n == 2).then_some(o)
    })
    .await?;
    assert_eq!(
        o["invoice"],
        json!({ "invoice_type": "red", "pdf_url": "https://inv/red.pdf" })
    );
    assert_eq!(o["invoices"].as_array().map(Vec::len), Some(2));
    let t = o["timeline"].as_array().cloned().unwrap_or_default();
    assert_eq!(not_applied(&t, "invoice_red")[0]["reason"], "duplicate");

    let track = json!({ "uid": 37, "acceptAddress": "郑州市", "acceptRemark": "快件在 郑州总集散中心", "businessType": 1,
        "createTime": 1483387378, "dealWithCost": 0, "id": 26827984, "logisticsType": 23, "orderCode": code,
        "state": 0, "uniqueKey": format!("uk-{code}"), "waybillCode": "612037714591" });
    erp.publish("order.updateExpressInfo", track.to_string().as_bytes())
        .await?;
    erp.publish("order.updateExpressInfo", track.to_string().as_bytes())
        .await?;
    let o = eventually("two tracking entries", || async {
        let o = h.order(code).await.ok()?;
        let n = o["timeline"]
            .as_array()?
            .iter()
            .filter(|e| e["event"] == "tracking_event")
            .count();
        (n == 2).then_some(o)
    })
    .await?;
    assert_eq!(o["tracking"].as_array().map(Vec::len), Some(1));
    assert_eq!(o["tracking"][0]["waybill_code"], "612037714591");
    h.stop().await
}

#[tokio::test]
async fn exchange_cancelled_by_the_customer_after_approval() -> anyhow::Result<()> {
    let mut q = orderbus_testkit::TestQueue::bind(&["order.changeRefundCancel"]).await?;
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(38).await?;
    h.force_status(code, "delivered").await?;
    let body = json!({ "goods": [{ "product_sku": 892152, "product_skc": 1, "new_product_sku": 2,
        "new_product_skc": 3, "new_goods_id": 4, "exchange_reason": "colour" }] });
    let (_, v) = h.post(&format!("/orders/{code}/exchanges"), &body).await?;
    let id = v["id"].as_i64().unwrap_or_default();
    let erp_id = rand_id();
    let created = json!({ "code": 200, "message": "ok", "data": { "id": id, "init_order_code": code.to_string(),
        "source_order_code": code, "new_order_code": 0, "exchange_id": erp_id, "returned_id": erp_id,
        "exchange_status": 10, "returned_status": 10 } });
    erp.publish("erp.createChangeOrder", created.to_string().as_bytes())
        .await?;
    h.wait_entry(code, "erp.createChangeOrder", "erp_10_approved")
        .await?;
    let (s, v) = h
        .post(&format!("/exchanges/{id}/cancel"), &json!({}))
        .await?;
    assert_eq!((s, v["status"].clone()), (200, json!("cancelled")), "{v}");
    let m = recv_match(&mut q, "order.changeRefundCancel", |b| b["id"] == erp_id).await?;
    assert_schema(&m);
    assert_eq!(m.json(), json!({ "id": erp_id, "status": 900, "type": 2 }));
    // The ERP's goods-received arrives after the cancel: recorded, not applied.
    erp.publish(
        "erp.updateChangeRefundOrderStatus",
        json!({ "id": erp_id, "status": 30, "type": "change" })
            .to_string()
            .as_bytes(),
    )
    .await?;
    let e = h
        .wait_entry(
            code,
            "erp.updateChangeRefundOrderStatus",
            "erp_30_goods_received",
        )
        .await?;
    assert_eq!(
        (e["applied"].clone(), e["reason"].clone()),
        (json!(false), json!("terminal"))
    );
    let (s, v) = h
        .post(
            &format!("/exchanges/{id}/waybill"),
            &json!({ "express_id": 1, "express_name": "x", "express_number": "1" }),
        )
        .await?;
    assert_eq!((s, v["current_status"].clone()), (409, json!("cancelled")));
    h.stop().await
}

#[tokio::test]
async fn a_redelivered_message_id_is_applied_once() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let erp = ErpPublisher::connect().await?;
    let code = h.create_order(39).await?;
    let body = json!({ "uid": 39, "order_code": code, "status": 100 }).to_string();
    let props = orderbus_testkit::erp_properties();
    erp.publish_with("order.erpstatus", body.as_bytes(), props.clone())
        .await?;
    erp.publish_with("order.erpstatus", body.as_bytes(), props)
        .await?;
    // A marker message after both: once it is applied, both copies have been consumed.
    erpstatus(&erp, 39, code, 200).await?;
    h.wait_entry(code, "order.erpstatus", "erp_200_stocked")
        .await?;
    let t = h.timeline(code).await?;
    let audits = t.iter().filter(|e| e["event"] == "erp_100_audited").count();
    assert_eq!(
        audits, 1,
        "the inbox dropped the copy with the same message id: {t:?}"
    );
    h.stop().await
}
