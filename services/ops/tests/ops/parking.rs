//! Parking across services with the real storefront: poison parked → taken in by ops →
//! listed by reason → dry run changes nothing → the fix (the orders now exist) → replay,
//! stopped half way, with the crash window between a confirm and its record reproduced, and
//! resumed → every message applied exactly once, the audit says who, why and which ids.

use serde_json::json;

use crate::common::{eventually, order_code, props, trace_id, Ops, Publisher, Storefront};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parked_messages_are_replayed_exactly_once() -> anyhow::Result<()> {
    let sf = Storefront::start().await?;
    let svc = sf.settings.service_name.clone();
    let ops = Ops::start(|s| {
        s.parking_services = vec![svc.clone()];
        s.replay_tier_overrides.insert(svc.clone(), "200ms".into());
    })
    .await?;
    let first = order_code()? * 10;
    sf.codes_from(first).await?;
    let codes: Vec<i64> = (first..first + 5).collect();
    // The storefront consumes every order.erpstatus on the shared broker (other tests' too):
    // select this test's messages by their reason, which names the code.
    let mine = format!("unknown%20order%20{}", first / 10);
    let mine_text = format!("unknown order {}", first / 10);
    let uid = 8041518;
    let erp = Publisher::to("amq.topic").await?;
    for c in &codes {
        let body = format!(r#"{{"uid":{uid},"order_code":{c},"status":100}}"#);
        erp.publish("order.erpstatus", body.as_bytes(), props(&trace_id()))
            .await?;
    }
    // Parked by the storefront (unknown orders), taken in by ops.
    let listed = eventually("5 parked messages taken in", || async {
        let (_, v) = ops
            .get(&format!("/parking?service={svc}&reason={mine}"))
            .await
            .ok()?;
        (v["total"] == json!(5)).then_some(v)
    })
    .await?;
    let groups = listed["groups"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 1, "one reason: {listed}");
    assert_eq!(groups[0]["count"], json!(5));
    assert_eq!(groups[0]["reason"], json!("unknown order N"));
    assert_eq!(groups[0]["routing_key"], json!("order.erpstatus"));
    // Selectors: by order code, by reason class, by a reason that does not match.
    let (_, one) = ops
        .get(&format!("/parking?service={svc}&order_code={}", codes[2]))
        .await?;
    assert_eq!(one["total"], json!(1));
    let (_, none) = ops
        .get(&format!("/parking?service={svc}&reason=timeout"))
        .await?;
    assert_eq!(none["total"], json!(0));

    // A replay needs a reason.
    let (s, _) = ops
        .post(
            "/parking/replay",
            &json!({"selector": {"service": svc, "reason": mine_text}, "reason": ""}),
        )
        .await?;
    assert_eq!(s, 400);
    // Dry run: counts and a sample, nothing sent, nothing changed.
    let (s, dry) = ops
        .post("/parking/replay", &json!({"selector": {"service": svc, "reason": mine_text}, "reason": "check first", "dry_run": true, "os_user": "tester"}))
        .await?;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["matched"], json!(5));
    assert_eq!(dry["sample"].as_array().map(Vec::len), Some(5));
    let (_, after_dry) = ops
        .get(&format!("/parking?service={svc}&reason={mine}"))
        .await?;
    assert_eq!(after_dry["total"], json!(5), "a dry run changes nothing");
    let (_, dry_audit) = ops.get(&format!("/audit/{}", dry["audit_id"])).await?;
    assert_eq!(dry_audit["audit"]["dry_run"], json!(true));
    assert_eq!(dry_audit["items"], json!([]));

    // The fix: the orders now exist.
    for c in &codes {
        assert_eq!(sf.create_order(uid, None).await?, *c);
    }
    // Replay slowly, stop after two.
    let (s, started) = ops
        .post("/parking/replay", &json!({"selector": {"service": svc, "reason": mine_text}, "reason": "orders created after the ERP's audit", "rate": 2.0, "os_user": "tester"}))
        .await?;
    assert_eq!(s, 202, "{started}");
    let audit_id = started["audit_id"].as_i64().unwrap_or_default();
    eventually("two sent", || async {
        let (_, v) = ops.get(&format!("/audit/{audit_id}")).await.ok()?;
        (v["audit"]["done"].as_i64()? >= 2).then_some(())
    })
    .await?;
    let (_, stop) = ops
        .post(&format!("/audit/{audit_id}/stop"), &json!({}))
        .await?;
    assert_eq!(stop["stopping"], json!(true));
    let interrupted = eventually("interrupted", || async {
        let (_, v) = ops.get(&format!("/audit/{audit_id}")).await.ok()?;
        (v["audit"]["state"] == json!("interrupted")).then_some(v)
    })
    .await?;
    let sent_before = interrupted["audit"]["done"].as_i64().unwrap_or_default();
    assert!(
        (2..5).contains(&sent_before),
        "stopped half way: {interrupted}"
    );
    // The crash window: the first message was published and confirmed but its record was
    // lost; resuming sends it again, with the same message id.
    sqlx::query("UPDATE audit_items SET sent_at = NULL WHERE audit_id = $1 AND seq = 0")
        .bind(audit_id)
        .execute(ops.pool())
        .await?;
    sqlx::query("UPDATE audit SET done = done - 1 WHERE id = $1")
        .bind(audit_id)
        .execute(ops.pool())
        .await?;
    let (s, resumed) = ops
        .post(&format!("/audit/{audit_id}/resume?rate=20"), &json!({}))
        .await?;
    assert_eq!(s, 200, "{resumed}");
    let done = eventually("replay done", || async {
        let (_, v) = ops.get(&format!("/audit/{audit_id}")).await.ok()?;
        (v["audit"]["state"] == json!("done")).then_some(v)
    })
    .await?;
    for c in &codes {
        eventually("audited", || async {
            (sf.events(*c, "erp_100_audited").await.ok()? >= 1).then_some(())
        })
        .await?;
    }
    // Exactly once per order, the duplicate absorbed by the storefront's inbox. To know the
    // duplicate was consumed: once the tier queue is empty it is in (or through) the work
    // queue; a sentinel for the same order published now lands behind it, in the same
    // partition (keyed by order code), so when the sentinel is applied the duplicate was seen.
    let tier = format!("{svc}.retry.200ms");
    eventually("tier queue empty", || async {
        (crate::common::depth(&tier).await.ok()? == 0).then_some(())
    })
    .await?;
    let sentinel = format!(r#"{{"uid":{uid},"order_code":{},"status":200}}"#, codes[0]);
    erp.publish("order.erpstatus", sentinel.as_bytes(), props(&trace_id()))
        .await?;
    eventually("sentinel applied", || async {
        (sf.events(codes[0], "erp_200_stocked").await.ok()? == 1).then_some(())
    })
    .await?;
    for c in &codes {
        assert_eq!(
            sf.events(*c, "erp_100_audited").await?,
            1,
            "order {c} audited once"
        );
    }
    // The audit: who, why, what, the ids before and after.
    assert_eq!(done["audit"]["actor"], json!("ops-admin"));
    assert_eq!(done["audit"]["os_user"], json!("tester"));
    assert_eq!(done["audit"]["matched"], json!(5));
    assert_eq!(done["audit"]["done"], json!(5));
    let items = done["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 5);
    assert!(items
        .iter()
        .all(|i| i["message_id_before"] == i["message_id_after"] && i["sent_at"].is_string()));
    let (_, left) = ops
        .get(&format!("/parking?service={svc}&reason={mine}"))
        .await?;
    assert_eq!(left["total"], json!(0), "nothing left parked: {left}");
    let (_, replayed) = ops
        .get(&format!(
            "/parking?service={svc}&reason={mine}&state=replayed"
        ))
        .await?;
    assert_eq!(replayed["total"], json!(5));
    // Purge: audited, with a dry run first.
    let (_, purge) = ops
        .post("/parking/purge", &json!({"selector": {"service": svc, "reason": mine_text, "state": "replayed"}, "reason": "cleanup test", "dry_run": true}))
        .await?;
    assert_eq!(purge["matched"], json!(5));
    assert_eq!(purge["purged"], json!(0));
    Ok(())
}
