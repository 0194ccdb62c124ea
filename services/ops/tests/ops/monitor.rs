//! The monitoring intake: reports recorded with a verdict, answered at once; a reported
//! message that never reaches the bus is missing after the window, one that does is matched.

use std::time::Duration;

use serde_json::json;

use crate::common::{eventually, order_code, props, trace_id, Ops, Publisher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_reconciled_with_the_bus() -> anyhow::Result<()> {
    let ops = Ops::start(|s| s.monitor_window = Duration::from_secs(2)).await?;
    let erp = reqwest::Client::new();
    let intake = ops.url("/erp/order/publishRabbitmqSentEvent");
    let erp_key = ops.erp_key.clone();
    let report = |body: serde_json::Value| {
        let (erp, intake, key) = (erp.clone(), intake.clone(), erp_key.clone());
        async move {
            let r = erp
                .post(&intake)
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await?;
            let s = r.status().as_u16();
            Ok::<_, anyhow::Error>((s, r.json::<serde_json::Value>().await.unwrap_or_default()))
        }
    };
    let seen = order_code()?;
    let lost = order_code()?;
    let seen_body = format!(r#"{{"uid":1111,"order_code":{seen},"status":901}}"#);
    let lost_body = format!(r#"{{"uid":1111,"order_code":{lost},"status":901}}"#);
    let (s, v) = report(json!({"topic": "order.erpstatus", "body": seen_body})).await?;
    assert_eq!((s, v["verdict"].as_str()), (200, Some("ok")), "{v}");
    // The same message on the bus, re-serialised by the sender (spaces): still matched.
    let publisher = Publisher::to(&ops.exchange).await?;
    publisher
        .publish(
            "order.erpstatus",
            format!(r#"{{ "uid": 1111, "order_code": {seen}, "status": 901 }}"#).as_bytes(),
            props(&trace_id()),
        )
        .await?;
    let (s, _) = report(json!({"topic": "order.erpstatus", "body": lost_body})).await?;
    assert_eq!(s, 200);
    // Malformed reports: recorded with their verdict, never a 5xx.
    let bad = [
        (
            json!({"topic": "order.nope", "body": "{}"}),
            "unknown_topic",
        ),
        (
            json!({"topic": "order.erpstatus", "body": "{\"status\":1}"}),
            "undecodable",
        ),
        (json!({"topic": "order.erpstatus"}), "malformed"),
        (json!(["not", "an", "object"]), "malformed"),
    ];
    for (body, verdict) in &bad {
        let (s, v) = report(body.clone()).await?;
        assert_eq!(
            (s, v["verdict"].as_str()),
            (200, Some(*verdict)),
            "{body}: {v}"
        );
    }
    let form = erp
        .post(&intake)
        .bearer_auth(&ops.erp_key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"topic=order.erpstatus&body=%00%ff".to_vec())
        .send()
        .await?;
    assert_eq!(form.status().as_u16(), 200);
    // Without the ops:report scope: refused, not a 5xx.
    let (s, _) = ops
        .post(
            "/erp/order/publishRabbitmqSentEvent",
            &json!({"topic": "x", "body": "y"}),
        )
        .await?;
    assert_eq!(s, 403);

    let states = || async {
        let (_, v) = ops.get("/monitor/reports").await.ok()?;
        let rows = v["reports"].as_array()?.clone();
        let state_of = |code: i64| {
            rows.iter()
                .find(|r| {
                    r["order_codes"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!(code)))
                })
                .and_then(|r| r["state"].as_str().map(str::to_owned))
        };
        match (state_of(seen), state_of(lost)) {
            (Some(a), Some(b)) if a == "matched" && b == "missing" => Some(rows),
            _ => None,
        }
    };
    let rows = eventually("matched and missing", states).await?;
    assert_eq!(
        rows.iter().filter(|r| r["state"] == "invalid").count(),
        2,
        "malformed reports recorded"
    );
    assert_eq!(rows.len(), 2 + bad.len() + 1);
    // The missing message is on its order's timeline.
    let (_, t) = ops.get(&format!("/orders/{lost}/timeline")).await?;
    let entries = t["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "monitor_report" && e["detail"]["state"] == "missing"),
        "{t}"
    );
    Ok(())
}
