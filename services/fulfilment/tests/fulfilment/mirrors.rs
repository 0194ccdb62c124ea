//! Mirror faults: one and two mirrors down, all three down (quotes fall back, registration waits
//! and retries), garbage, and a timeout after sending a registration (outcome unknown, not sent
//! twice, resolved by ops with a hyphenated factor id).

use orderbus_frotel::sim::Fault;
use serde_json::{json, Value};

use crate::common::*;

fn quote_body() -> Value {
    json!({"des_city": 301, "price": 670000, "weight": 200, "send_types": [1, 2], "buy_types": [1, 2]})
}

#[tokio::test(flavor = "multi_thread")]
async fn quotes_and_registrations_go_through_the_remaining_mirrors() -> anyhow::Result<()> {
    let h = Harness::start_with(|s| s.quote_cache_ttl = std::time::Duration::ZERO).await?;

    // Seed 003's numbers for 200 g, all mirrors up.
    let (s, q) = h.post("/fulfilment/quotes", &quote_body()).await?;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["source"], "frotel");
    let line = |bt: i64, st: i64| {
        q["quotes"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|l| l["buy_type"] == bt && l["send_type"] == st)
            })
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(line(2, 1)["post"], 52000);
    assert_eq!(line(2, 1)["tax"], 4680);
    assert_eq!(line(2, 1)["total"], 52000 + 4680 + 2000);
    assert_eq!(line(1, 2)["total"], 36000 + 3240 + 2000);

    for down in [vec![0usize], vec![0, 1]] {
        h.sim.clear_faults();
        for m in &down {
            h.sim.set_fault(*m, Fault::Down);
        }
        let third = h.sim.hits(2);
        let (s, q) = h.post("/fulfilment/quotes", &quote_body()).await?;
        assert_eq!(s, 200, "mirrors {down:?} down: {q}");
        assert_eq!(q["source"], "frotel");
        let code = order_code();
        h.submit(&submit_body(
            code,
            h.wh.plain,
            "cash_on_delivery",
            &[(123, 1, "1000.00")],
        ))
        .await?;
        h.factor(code).await?;
        assert_eq!(h.sim_orders_for(code).len(), 1);
        if down.len() == 2 {
            assert!(h.sim.hits(2) >= third + 2, "the third mirror answered both");
        }
        let (_, m) = h.get("/fulfilment/mirrors").await?;
        assert_eq!(m["status"], "degraded", "{m}");
    }
    h.sim.clear_faults();
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn all_mirrors_down_quotes_fall_back_and_registration_waits() -> anyhow::Result<()> {
    let h = Harness::start_with(|s| s.default_shipping_price = Some(80000)).await?;
    for m in 0..3 {
        h.sim.set_fault(m, Fault::Down);
    }
    let (s, q) = h.post("/fulfilment/quotes", &quote_body()).await?;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["source"], "default");
    assert_eq!(q["quotes"].as_array().map(Vec::len), Some(4));
    assert_eq!(q["quotes"][0]["total"], 80000);

    let code = order_code();
    h.submit(&submit_body(
        code,
        h.wh.plain,
        "cash_on_delivery",
        &[(123, 1, "1000.00")],
    ))
    .await?;
    let v = eventually("registration retried", || async {
        let v = h.order(code).await.ok()?;
        (v["state"] == "ready" && v["attempts"].as_i64() >= Some(2)).then_some(v)
    })
    .await?;
    assert!(v["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("nothing reached Frotel")));
    h.sim.clear_faults();
    h.factor(code).await?;
    assert_eq!(h.sim_orders_for(code).len(), 1);

    // Garbage from every mirror: quotes fall back too.
    for m in 0..3 {
        h.sim.set_fault(m, Fault::Garbage);
    }
    let mut body = quote_body();
    body["weight"] = json!(900);
    let (s, q) = h.post("/fulfilment/quotes", &body).await?;
    assert_eq!((s, q["source"].clone()), (200, json!("default")), "{q}");
    h.sim.clear_faults();
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn no_default_price_is_a_clear_503() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    for m in 0..3 {
        h.sim.set_fault(m, Fault::Down);
    }
    let (s, q) = h.post("/fulfilment/quotes", &quote_body()).await?;
    assert_eq!(s, 503, "{q}");
    assert_eq!(q["error"]["code"], "frotel_unavailable");
    h.sim.clear_faults();
    h.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_lost_after_sending_is_outcome_unknown_and_never_sent_again(
) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    h.sim.set_fault(0, Fault::DropAfterProcessing);
    let code = order_code();
    h.submit(&submit_body(
        code,
        h.wh.plain,
        "cash_on_delivery",
        &[(123, 1, "1000.00")],
    ))
    .await?;
    let v = h.wait_state(code, "outcome_unknown").await?;
    assert!(v["what_to_check"]
        .as_str()
        .is_some_and(|t| t.contains("shop_barcode")));
    h.sim.clear_faults();
    // The worker keeps working (a later order registers) and the first is not re-sent.
    let later = order_code();
    h.submit(&submit_body(
        later,
        h.wh.plain,
        "cash_on_delivery",
        &[(123, 1, "1000.00")],
    ))
    .await?;
    h.factor(later).await?;
    let at_frotel = h.sim_orders_for(code);
    assert_eq!(at_frotel.len(), 1, "Frotel has it once");
    assert_eq!(h.order(code).await?["state"], "outcome_unknown");
    let (_, attention) = h.get("/fulfilment/ops/attention").await?;
    assert!(attention["orders"]
        .as_array()
        .is_some_and(|a| a.iter().any(|o| o["order_code"] == code)));

    // Ops found it in the panel, shown hyphenated.
    let hyphenated = orderbus_frotel::FactorId::parse(&at_frotel[0].factor)?.hyphenated();
    assert!(hyphenated.contains('-'));
    let (s, v) = h
        .post(
            &format!("/fulfilment/ops/orders/{code}/resolve"),
            &json!({"factor_id": hyphenated}),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "registered");
    assert_eq!(v["factor_id"], at_frotel[0].factor.as_str());
    let (s, _) = h
        .post(
            &format!("/fulfilment/ops/orders/{code}/resolve"),
            &json!({"factor_id": "22-x"}),
        )
        .await?;
    assert_eq!(s, 400);
    h.stop().await
}
