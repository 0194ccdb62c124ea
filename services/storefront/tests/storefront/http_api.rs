//! HTTP API: every endpoint's happy path, 4xx naming the field, 409 with the current state,
//! Idempotency-Key (sequential and concurrent), and what lands on the bus (schema-validated).

use orderbus_testkit::TestQueue;
use serde_json::{json, Value};

use crate::common::*;

fn code_of(v: &Value) -> i64 {
    v["order_code"].as_i64().unwrap_or_default()
}

#[tokio::test]
async fn create_single_warehouse_order_publishes_one_submit() -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.submit"]).await?;
    let h = Harness::start().await?;
    let (s, v) = h.post("/orders", &order_body(8041518, &[7])).await?;
    assert_eq!(s, 201, "{v}");
    let code = code_of(&v);
    assert_eq!(v["status"], "pending_payment");
    assert_eq!(v["child_order_codes"], json!([]));
    let m = recv_match(&mut q, "order.submit", |b| b["order_code"] == code).await?;
    assert_schema(&m);
    let b = m.json();
    assert_eq!(b["uid"], 8041518);
    assert_eq!(b["order_amount"], "186.00");
    assert_eq!(b["shipping_cost"], "10.00");
    assert!(b.get("parent_order_code").is_none());
    assert_eq!(
        m.properties
            .correlation_id()
            .as_ref()
            .map(|c| c.to_string()),
        Some(code.to_string())
    );

    let order = h.order(code).await?;
    assert_eq!(order["items"][0]["unit_price"], "88.00");
    assert_eq!(order["timeline"][0]["event"], "created");
    h.stop().await
}

#[tokio::test]
async fn jit_split_publishes_parent_and_children_with_parent_code() -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.submit"]).await?;
    let h = Harness::start().await?;
    let (s, v) = h.post("/orders", &order_body(42, &[3, 1, 3])).await?;
    assert_eq!(s, 201, "{v}");
    let parent = code_of(&v);
    let children: Vec<i64> = v["child_order_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    assert_eq!(children.len(), 2, "two warehouses → two children");
    let p = recv_match(&mut q, "order.submit", |b| b["order_code"] == parent).await?;
    assert_schema(&p);
    assert_eq!(p.json()["goods"].as_array().map(Vec::len), Some(3));
    assert_eq!(p.json()["order_amount"], "538.00");
    let mut total = 0i64;
    for child in &children {
        let m = recv_match(&mut q, "order.submit", |b| b["order_code"] == *child).await?;
        assert_schema(&m);
        assert_eq!(m.json()["parent_order_code"], parent);
        let amount =
            orderbus_contracts::Decimal::parse(m.json()["order_amount"].as_str().unwrap_or("x"))
                .and_then(|d| d.to_cents())
                .unwrap_or_default();
        total += amount;
    }
    assert_eq!(total, 53800, "children add up to the parent");
    // First child = lowest warehouse id (1), which carries the shipping.
    let first = h.order(children[0]).await?;
    assert_eq!(first["items"][0]["warehouse_id"], 1);
    assert_eq!(first["shipping_cost"], "10.00");
    assert_eq!(h.order(parent).await?["child_order_codes"], json!(children));
    h.stop().await
}

#[tokio::test]
async fn bad_input_names_the_field() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mut body = order_body(1, &[1]);
    body["items"][0]["quantity"] = json!("two");
    let (s, v) = h.post("/orders", &body).await?;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "invalid_request");
    assert_eq!(v["field"], "items[0].quantity");

    let mut body = order_body(1, &[1]);
    body["items"][0]["unit_price"] = json!("8.123");
    let (s, v) = h.post("/orders", &body).await?;
    assert_eq!((s, v["field"].clone()), (400, json!("items[0].unit_price")));

    let mut body = order_body(1, &[1]);
    body["delivery_address"]["mobile"] = json!("");
    let (s, v) = h.post("/orders", &body).await?;
    assert_eq!(
        (s, v["field"].clone()),
        (400, json!("delivery_address.mobile"))
    );

    let mut body = order_body(1, &[1]);
    body["items"] = json!([]);
    let (s, v) = h.post("/orders", &body).await?;
    assert_eq!((s, v["field"].clone()), (400, json!("items")));

    let mut body = order_body(1, &[1]);
    body["surprise"] = json!(1);
    let (s, v) = h.post("/orders", &body).await?;
    assert_eq!((s, v["field"].clone()), (400, json!("surprise")), "{v}");

    // Not JSON at all, wrong content type, too large, bad path and query.
    let r = h
        .http
        .post(h.url("/orders"))
        .header("content-type", "application/json")
        .body("{\"uid\":")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await?["field"], "body");
    let r = h
        .http
        .post(h.url("/orders"))
        .header("content-type", "text/plain")
        .body("uid=1")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 415);
    let big = json!({ "uid": 1, "remark": "x".repeat(100_000) });
    let (s, v) = h.post("/orders", &big).await?;
    assert_eq!((s, v["error"].clone()), (413, json!("payload_too_large")));
    let (s, v) = h.get("/orders/abc").await?;
    assert_eq!((s, v["field"].clone()), (400, json!("order_code")));
    let (s, v) = h.get("/orders/999").await?;
    assert_eq!((s, v["error"].clone()), (404, json!("not_found")));
    let (s, v) = h.get("/orders").await?;
    assert_eq!((s, v["field"].clone()), (400, json!("uid")));
    let (s, v) = h.get("/orders?uid=1&status=flying").await?;
    assert_eq!((s, v["field"].clone()), (400, json!("status")));
    let r = h
        .http
        .post(h.url("/orders"))
        .header("Idempotency-Key", "")
        .json(&order_body(1, &[1]))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await?["field"], "Idempotency-Key");
    assert_eq!(
        h.outbox_count("order.submit").await?,
        0,
        "no bad request created anything"
    );
    h.stop().await
}

#[tokio::test]
async fn list_by_uid_and_status() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let a = h.create_order(77).await?;
    let b = h.create_order(77).await?;
    h.create_order(78).await?;
    h.force_status(a, "shipped").await?;
    let (s, v) = h.get("/orders?uid=77").await?;
    assert_eq!(s, 200);
    let codes: Vec<i64> = v
        .as_array()
        .map(|a| a.iter().map(code_of).collect())
        .unwrap_or_default();
    assert_eq!(codes, vec![b, a], "newest first, only uid 77");
    let (_, v) = h.get("/orders?uid=77&status=shipped").await?;
    assert_eq!(
        v.as_array()
            .map(|a| a.iter().map(code_of).collect::<Vec<_>>()),
        Some(vec![a])
    );
    h.stop().await
}

#[tokio::test]
async fn confirm_receipt_and_cancel_follow_the_machine() -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.orderStatus"]).await?;
    let h = Harness::start().await?;
    let code = h.create_order(5).await?;

    // Receipt of an unshipped order: 409 with the current state.
    let (s, v) = h
        .post(&format!("/orders/{code}/confirm-receipt"), &json!({}))
        .await?;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "illegal_transition");
    assert_eq!(v["current_status"], "pending_payment");
    // The refusal is on the timeline, and a keyed retry replays the same 409.
    let t = h.timeline(code).await?;
    let refusal = t
        .iter()
        .find(|e| e["source"] == "http" && e["applied"] == false);
    assert_eq!(
        refusal.map(|e| (e["event"].clone(), e["reason"].clone())),
        Some((json!("storefront_700_receipt_confirmed"), json!("illegal")))
    );
    let path = format!("/orders/{code}/confirm-receipt");
    let first = h.post_key(&path, "refused-once", &json!({})).await?;
    let again = h.post_key(&path, "refused-once", &json!({})).await?;
    assert_eq!((first.0, &first.1), (409, &again.1));

    h.force_status(code, "delivered").await?;
    let r = h
        .http
        .post(h.url(&format!("/orders/{code}/confirm-receipt")))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200, "an empty body is accepted");
    assert_eq!(r.json::<Value>().await?["status"], "receipt_confirmed");
    let m = recv_match(&mut q, "order.orderStatus", |b| b["orderCode"] == code).await?;
    assert_schema(&m);
    assert_eq!(m.json(), json!({ "orderCode": code, "status": 700 }));
    let (s, v) = h
        .post(&format!("/orders/{code}/cancel"), &json!({}))
        .await?;
    assert_eq!(
        (s, v["current_status"].clone()),
        (409, json!("receipt_confirmed"))
    );

    // Cancel a split order: the parent and both children get 900.
    let (_, v) = h.post("/orders", &order_body(5, &[1, 2])).await?;
    let parent = code_of(&v);
    let (s, v) = h
        .post(
            &format!("/orders/{parent}/cancel"),
            &json!({ "remark": "changed my mind" }),
        )
        .await?;
    assert_eq!((s, v["status"].clone()), (200, json!("cancelled_by_user")));
    for code in std::iter::once(parent).chain(
        h.order(parent).await?["child_order_codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64),
    ) {
        let m = recv_match(&mut q, "order.orderStatus", |b| b["orderCode"] == code).await?;
        assert_schema(&m);
        assert_eq!(m.json()["status"], 900);
        assert_eq!(h.status(code).await?, "cancelled_by_user");
    }
    // Shipped: too late to cancel.
    let late = h.create_order(5).await?;
    h.force_status(late, "shipped").await?;
    let (s, v) = h
        .post(&format!("/orders/{late}/cancel"), &json!({}))
        .await?;
    assert_eq!((s, v["current_status"].clone()), (409, json!("shipped")));
    h.stop().await
}

#[tokio::test]
async fn address_change_only_before_shipping() -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.deliveryAddress"]).await?;
    let h = Harness::start().await?;
    let code = h.create_order(9).await?;
    let mut addr = order_body(9, &[1])["delivery_address"].clone();
    addr["address"] = json!("新地址 1 号");
    let (s, v) = h
        .post(
            &format!("/orders/{code}/address"),
            &json!({ "delivery_address": addr }),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    let m = recv_match(&mut q, "order.deliveryAddress", |b| {
        b[0]["order_code"] == code
    })
    .await?;
    assert_schema(&m);
    assert_eq!(m.json()[0]["address"], "新地址 1 号");
    assert_eq!(m.json()[0]["zip_code"], 315700);
    assert_eq!(m.json()[0]["parent_order_code"], 0);
    assert_eq!(
        h.order(code).await?["delivery_address"]["address"],
        "新地址 1 号"
    );

    let mut bad = addr.clone();
    bad["zip_code"] = json!("31-57");
    let (s, v) = h
        .post(
            &format!("/orders/{code}/address"),
            &json!({ "delivery_address": bad }),
        )
        .await?;
    assert_eq!(
        (s, v["field"].clone()),
        (400, json!("delivery_address.zip_code"))
    );

    h.force_status(code, "shipped").await?;
    let (s, v) = h
        .post(
            &format!("/orders/{code}/address"),
            &json!({ "delivery_address": addr }),
        )
        .await?;
    assert_eq!((s, v["current_status"].clone()), (409, json!("shipped")));
    h.stop().await
}

#[tokio::test]
async fn idempotency_key_sequential_replay_and_mismatch() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let body = order_body(11, &[1]);
    let (s1, v1) = h.post_key("/orders", "key-1", &body).await?;
    let (s2, v2) = h.post_key("/orders", "key-1", &body).await?;
    assert_eq!((s1, &v1), (s2, &v2), "same key → same status and body");
    assert_eq!(s1, 201);
    let r = h
        .http
        .post(h.url("/orders"))
        .header("Idempotency-Key", "key-1")
        .json(&body)
        .send()
        .await?;
    assert_eq!(
        r.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(h.outbox_count("order.submit").await?, 1);

    let mut other = body.clone();
    other["uid"] = json!(12);
    let (s, v) = h.post_key("/orders", "key-1", &other).await?;
    assert_eq!(
        (s, v["error"].clone()),
        (422, json!("idempotency_key_reused"))
    );
    // The key also guards the other POSTs.
    let code = code_of(&v1);
    let (a, av) = h
        .post_key(&format!("/orders/{code}/cancel"), "key-2", &json!({}))
        .await?;
    let (b, bv) = h
        .post_key(&format!("/orders/{code}/cancel"), "key-2", &json!({}))
        .await?;
    assert_eq!((a, &av), (200, &bv));
    assert_eq!(b, 200, "the replay is the stored 200, not a 409");
    assert_eq!(h.outbox_count("order.orderStatus").await?, 1);
    h.stop().await
}

#[tokio::test]
async fn twenty_concurrent_duplicates_make_one_order() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let body = order_body(13, &[1]);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = h.http.clone();
        let url = h.url("/orders");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("Idempotency-Key", "same")
                .json(&body)
                .send()
                .await?;
            let s = r.status().as_u16();
            Ok::<_, anyhow::Error>((s, r.json::<Value>().await?))
        }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await??);
    }
    let first = replies[0].clone();
    assert_eq!(first.0, 201, "{first:?}");
    assert!(
        replies.iter().all(|r| *r == first),
        "all 20 replies equal: {replies:?}"
    );
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(h.db.pool())
        .await?;
    assert_eq!(orders, 1);
    assert_eq!(h.outbox_count("order.submit").await?, 1);
    h.stop().await
}

#[tokio::test]
async fn openapi_document_lists_every_route() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let (s, doc) = h.get("/openapi.json").await?;
    assert_eq!(s, 200);
    for path in [
        "/orders",
        "/orders/{order_code}",
        "/orders/{order_code}/confirm-receipt",
        "/orders/{order_code}/cancel",
        "/orders/{order_code}/address",
        "/orders/{order_code}/exchanges",
        "/orders/{order_code}/returns",
        "/exchanges/{id}/waybill",
        "/exchanges/{id}/cancel",
        "/returns/{id}/waybill",
        "/returns/{id}/cancel",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
    assert!(doc["components"]["schemas"].get("CreateOrder").is_some());
    h.stop().await
}
