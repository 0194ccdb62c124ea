//! One order's timeline across the storefront and ops: the bus messages from the journal
//! (on the real amq.topic), the storefront's transitions through its timeline endpoint, in
//! time order, with the trace id linking them.

use std::time::Duration;

use orderbus_testkit::unique_suffix;
use serde_json::{json, Value};

use crate::common::{eventually, props, trace_id, Ops, Publisher, Storefront};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_one_story_across_services() -> anyhow::Result<()> {
    let sf = Storefront::start().await?;
    let peer = orderbus_timeline::Peer {
        name: "storefront".into(),
        base_url: sf.base.clone(),
    };
    let key = sf.key.clone();
    let db = orderbus_testkit::TestDb::create().await?;
    let sfx = unique_suffix();
    let mut settings = orderbus_ops::Settings::local(&orderbus_testkit::amqp_url());
    settings.journal.keys = vec!["order.submit".into(), "order.erpstatus".into()];
    settings.journal.journal_queue = format!("ops-test-{sfx}.journal");
    settings.journal.unrouted_exchange = format!("ops-test-{sfx}.unrouted");
    settings.journal.unrouted_queue = format!("ops-test-{sfx}.unrouted");
    settings.parking_services = Vec::new();
    settings.peers = vec![
        peer,
        // A service that is not running: reported, never fails the timeline.
        orderbus_timeline::Peer {
            name: "payments".into(),
            base_url: "http://127.0.0.1:9".into(),
        },
    ];
    settings.peer_api_key = Some(key);
    settings.peer_timeout = Duration::from_secs(5);
    let ops = Ops::start_with(db, settings).await?;

    let trace = trace_id();
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let code = sf.create_order(8041518, Some(&traceparent)).await?;
    let erp = Publisher::to("amq.topic").await?;
    let erp_trace = trace_id();
    for status in [100, 200] {
        let body = format!(r#"{{"uid":8041518,"order_code":{code},"status":{status}}}"#);
        erp.publish("order.erpstatus", body.as_bytes(), props(&erp_trace))
            .await?;
    }
    eventually("stocked", || async {
        (sf.events(code, "erp_200_stocked").await.ok()? == 1).then_some(())
    })
    .await?;
    let t: Value = eventually("the whole story", || async {
        let (_, t) = ops
            .get(&format!("/orders/{code}/timeline?raw=true"))
            .await
            .ok()?;
        let entries = t["entries"].as_array()?;
        let bus = entries
            .iter()
            .filter(|e| e["kind"] == "bus_message")
            .count();
        let transitions = entries.iter().filter(|e| e["kind"] == "transition").count();
        (bus >= 3 && transitions >= 3).then_some(t)
    })
    .await?;
    let entries = t["entries"].as_array().cloned().unwrap_or_default();
    let at: Vec<&str> = entries.iter().filter_map(|e| e["at"].as_str()).collect();
    let mut sorted: Vec<chrono::DateTime<chrono::Utc>> =
        at.iter().filter_map(|a| a.parse().ok()).collect();
    let original = sorted.clone();
    sorted.sort();
    assert_eq!(original, sorted, "in time order");
    let submit = entries
        .iter()
        .find(|e| e["kind"] == "bus_message" && e["detail"]["routing_key"] == "order.submit")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        submit["trace_id"],
        json!(trace),
        "the storefront's order.submit carries the request's trace: {t}"
    );
    assert_eq!(submit["raw"]["body"]["order_code"], json!(code));
    let audited = entries
        .iter()
        .find(|e| e["kind"] == "transition" && e["detail"]["event"] == "erp_100_audited")
        .cloned()
        .unwrap_or_default();
    assert_eq!(audited["applied"], json!(true), "{t}");
    assert_eq!(audited["service"], json!("storefront"));
    let trace_ids = t["trace_ids"].as_array().cloned().unwrap_or_default();
    assert!(
        trace_ids.contains(&json!(trace)) && trace_ids.contains(&json!(erp_trace)),
        "{t}"
    );
    let services = t["services"].as_array().cloned().unwrap_or_default();
    assert!(
        services
            .iter()
            .any(|s| s["service"] == "storefront" && s["status"] == "ok"),
        "{t}"
    );
    assert!(services.iter().any(|s| s["service"] == "payments"
        && s["status"]
            .as_str()
            .is_some_and(|x| x.starts_with("unreachable"))));
    // The CLI's text rendering of the same answer.
    let parsed: orderbus_ops::timeline::Timeline = serde_json::from_value(t.clone())?;
    let text = orderbus_ops::timeline::render(&parsed, false);
    assert!(
        text.contains("order.submit") && text.contains("erp_100_audited"),
        "{text}"
    );
    // The storefront's endpoint needs ops:read.
    let anon = reqwest::get(format!("{}/timeline/orders/{code}", sf.base)).await?;
    assert_eq!(anon.status().as_u16(), 401);
    Ok(())
}
