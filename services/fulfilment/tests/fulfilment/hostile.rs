//! Unknown Persian statuses, garbage bodies, hyphenated factor ids and bad requests: handled
//! without panics, recorded, never guessed.

use orderbus_frotel::sim::Fault;
use orderbus_testkit::TestQueue;
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_statuses_are_recorded_and_counted_and_garbage_backs_off() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let mut q = TestQueue::bind(&["order.erpstatus"]).await?;
    let code = order_code();
    h.submit(&submit_body(
        code,
        h.wh.plain,
        "cash_on_delivery",
        &[(123, 1, "1000.00")],
    ))
    .await?;
    let factor = h.factor(code).await?;
    eventually("first poll", || async {
        let v = h.order(code).await.ok()?;
        (v["stage"] == "info_received").then_some(())
    })
    .await?;

    // A status nobody mapped, written with Arabic yeh and a zero-width non-joiner.
    let odd = "در انتظار\u{200c}بررسي انبار";
    assert!(h.sim.set_status(&factor, odd, None));
    let (_, attention) = eventually("unmapped recorded", || async {
        let (s, v) = h.get("/fulfilment/ops/attention").await.ok()?;
        let seen = v["unmapped_statuses"]
            .as_array()?
            .iter()
            .any(|u| u["status"] == odd && u["last_order_code"] == code);
        (s == 200 && seen).then_some(((), v))
    })
    .await?;
    assert!(attention["unmapped_statuses"].is_array());
    let v = h.order(code).await?;
    assert_eq!(v["stage"], "info_received", "not guessed: the stage stays");
    assert!(v["tracking_events"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e["progress"] == "unmapped")));

    // Garbage from every mirror: the poll fails and backs off, nothing panics.
    for m in 0..3 {
        h.sim.set_fault(m, Fault::Garbage);
    }
    eventually("poll failures", || async {
        let n: i32 =
            sqlx::query_scalar("SELECT poll_failures FROM fulfilment_orders WHERE order_code = $1")
                .bind(code)
                .fetch_one(h.db.pool())
                .await
                .ok()?;
        (n >= 1).then_some(())
    })
    .await?;
    h.sim.clear_faults();

    // A known status maps again and the shipment moves on: shipped is reported.
    assert!(h
        .sim
        .set_status(&factor, "ارسال شده", Some("SIM-0001-7788")));
    let shipped = recv_match(&mut q, "order.erpstatus", |v| {
        v["order_code"] == code && v["status"] == 600
    })
    .await?;
    assert_eq!(shipped.json()["data"]["express_number"], "SIM-0001-7788");
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let cases = [
        (
            json!({"des_city": 301, "price": 1, "weight": 1, "send_types": [9], "buy_types": [1]}),
            "send_types",
        ),
        (
            json!({"des_city": 301, "price": 1, "weight": 1, "send_types": [1], "buy_types": [3]}),
            "buy_types",
        ),
        (
            json!({"des_city": 0, "price": 1, "weight": 1, "send_types": [1], "buy_types": [1]}),
            "des_city",
        ),
        (
            json!({"des_city": 301, "price": -5, "weight": 1, "send_types": [1], "buy_types": [1]}),
            "price",
        ),
        (
            json!({"des_city": 301, "price": 1, "weight": 1, "send_types": [1], "buy_types": [1], "x": 1}),
            "body",
        ),
        (json!("not an object"), "body"),
    ];
    let hits = h.sim.total_hits();
    for (body, field) in cases {
        let (s, v) = h.post("/fulfilment/quotes", &body).await?;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    assert_eq!(h.sim.total_hits(), hits, "refused before any call");

    let r = h
        .http
        .post(h.url("/fulfilment/quotes"))
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);

    let (s, _) = h.get("/fulfilment/orders/abc").await?;
    assert_eq!(s, 400);
    let (s, _) = h.get("/fulfilment/orders/42").await?;
    assert_eq!(s, 404);
    let (s, _) = h.get("/fulfilment/orders/42/pay?bank=x").await?;
    assert_eq!(s, 400);
    // A callback without _i/sb, for an unknown order, with garbage: refused, no panic.
    let s = h
        .http
        .get(h.url("/webhooks/frotel/bank/42"))
        .send()
        .await?
        .status()
        .as_u16();
    assert_eq!(s, 400);
    let s = h
        .http
        .get(h.url("/webhooks/frotel/bank/42?_i=1&sb=x"))
        .send()
        .await?
        .status()
        .as_u16();
    assert_eq!(s, 200, "refused for good (an unknown order), answered 200");
    let s = h
        .http
        .get(h.url("/webhooks/frotel/bank/notanumber?_i=1&sb=x"))
        .send()
        .await?
        .status()
        .as_u16();
    assert_eq!(s, 400);
    // Without a key: 401.
    let s = reqwest::Client::new()
        .post(h.url("/fulfilment/quotes"))
        .json(&json!({}))
        .send()
        .await?
        .status()
        .as_u16();
    assert_eq!(s, 401);
    h.stop().await
}
