//! SHOPLINE's sender simulator against the tracking service: signed reports verified, our
//! signed replies accepted, forged or unsigned reports refused with a signed FAIL, one effect
//! for 50 concurrent copies, and a report before its mapping: FAIL, then SUCCESS on a retry.

use std::time::Duration;

use orderbus_shopline::signing::test_keys;
use orderbus_shopline::sim::{AttemptOutcome, Sender, SenderConfig};
use orderbus_shopline::{LogisticsReport, PrivateKey, PublicKey, TrackingInfo, VerifierConfig};
use orderbus_tracking::ShoplineKeys;
use serde_json::json;

use crate::common::*;

async fn world() -> anyhow::Result<(World, String)> {
    let mut w = World::new(fast_sim()).await?;
    let mut s = w.settings("only");
    let public = PublicKey::from_spki_base64(test_keys::PUBLIC_KEY_SPKI_B64)?;
    s.shopline = Some(ShoplineKeys {
        verifier: VerifierConfig::new(public),
        our_key: PrivateKey::from_pkcs8_base64(test_keys::PRIVATE_KEY_PKCS8_B64)?,
    });
    let base = w.start(s).await?;
    Ok((w, base))
}

fn sender(retries: Vec<Duration>) -> anyhow::Result<Sender> {
    Ok(Sender::new(SenderConfig {
        retry_delays: retries,
        ..SenderConfig::default()
    })?)
}

fn report(transaction: &str, waybill: &str, status: &str) -> LogisticsReport {
    LogisticsReport {
        channel_order_transaction_id: transaction.to_owned(),
        tracking_list: vec![TrackingInfo {
            tracking_no: waybill.to_owned(),
            site: "https://tracker.example/".into(),
            handler: Some("warehouse".into()),
            tracking_status: status.to_owned(),
            carrier: "CJ".into(),
        }],
    }
}

async fn map(w: &World, base: &str, transaction: &str, order: i64) -> anyhow::Result<()> {
    let r = w
        .http
        .put(format!("{base}/v1/shopline/transactions/{transaction}"))
        .json(&json!({ "order_code": order, "uid": 77, "express_id": 23 }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "mapping: {}", r.status());
    Ok(())
}

async fn outbox_rows(w: &World, order: i64) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM orderbus_outbox WHERE routing_key = 'order.updateExpressInfo' AND correlation_id = $1",
    )
    .bind(order.to_string())
    .fetch_one(w.db.pool())
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_reports_are_applied_and_our_signed_reply_is_accepted() -> anyhow::Result<()> {
    let (mut w, base) = world().await?;
    let url = format!("{base}/webhooks/shopline/logistics");
    let (order, num, tx) = (order_code(), waybill(), format!("tx-{}", order_code()));
    map(&w, &base, &tx, order).await?;
    let s = sender(vec![])?;
    for status in [
        "SHIPPED",
        "IN_TRANSIT",
        "IN_TRANSIT",
        "DELIVERED",
        "IN_TRANSIT",
    ] {
        let out = s
            .send_report_to(
                &url,
                &report(&tx, &num, status),
                &uuid::Uuid::new_v4().to_string(),
            )
            .await?;
        assert!(out.succeeded(), "{status}: {:?}", out.attempts);
    }
    let (status, stage) = w.shipment_where(order, "delivered", |_, _| true).await?;
    assert_eq!(
        (status.as_str(), stage.as_deref()),
        ("OS03", Some("delivered"))
    );
    // SHIPPED, IN_TRANSIT, DELIVERED published; the resent IN_TRANSIT is one event; the late
    // one after delivery was the same event again (same status), so still three events.
    assert_eq!(outbox_rows(&w, order).await?, 3);
    let body: serde_json::Value = sqlx::query_scalar(
        "SELECT convert_from(body, 'UTF8')::jsonb FROM orderbus_outbox WHERE correlation_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(order.to_string())
    .fetch_one(w.db.pool())
    .await?;
    assert_eq!(body["state"], 3, "delivered is state 3: {body}");
    assert_eq!(
        (
            body["orderCode"].clone(),
            body["waybillCode"].clone(),
            body["uid"].clone()
        ),
        (json!(order), json!(num), json!(77))
    );
    assert_eq!(body["logisticsType"], 23);
    let mut keys: Vec<&str> = body
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "acceptAddress",
            "acceptRemark",
            "businessType",
            "createTime",
            "dealWithCost",
            "id",
            "logisticsType",
            "orderCode",
            "state",
            "uid",
            "uniqueKey",
            "waybillCode"
        ]
    );
    w.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_unsigned_reports_get_401_with_a_signed_fail() -> anyhow::Result<()> {
    let (mut w, base) = world().await?;
    let url = format!("{base}/webhooks/shopline/logistics");
    let (order, tx) = (order_code(), format!("tx-{}", order_code()));
    map(&w, &base, &tx, order).await?;
    let forger_key = PrivateKey::from_pkcs8_base64(include_str!(
        "../../../../shared/shopline/tests/fixtures/other_private_pkcs8.pem"
    ))?;
    let forger = Sender::new(SenderConfig {
        retry_delays: vec![],
        shopline_private_key: forger_key,
        ..SenderConfig::default()
    })?;
    let out = forger
        .send_report_to(&url, &report(&tx, &waybill(), "DELIVERED"), "forged-1")
        .await?;
    assert!(!out.succeeded());
    assert_eq!(
        out.attempts[0].outcome,
        AttemptOutcome::HttpStatus { status: 401 }
    );
    // Unsigned: 401, and the FAIL reply carries our verifiable signature.
    let body = serde_json::to_vec(&report(&tx, &waybill(), "DELIVERED"))?;
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("pay-api-version", "1.0.0")
        .header("pay-api-idempotency-key", "unsigned-1")
        .header(
            "pay-api-timestamp",
            (chrono::Utc::now().timestamp_micros()).to_string(),
        )
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    let sig = r
        .headers()
        .get("pay-api-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no signature on the FAIL reply"))?;
    let reply = r.bytes().await?;
    PublicKey::from_spki_base64(test_keys::PUBLIC_KEY_SPKI_B64)?.verify_body(&reply, &sig)?;
    let v: serde_json::Value = serde_json::from_slice(&reply)?;
    assert_eq!(v["returnCode"], "FAIL", "{v}");
    assert_eq!(outbox_rows(&w, order).await?, 0, "no effect");
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM trk_shipments WHERE order_code = $1")
        .bind(order)
        .fetch_one(w.db.pool())
        .await?;
    assert_eq!(none, 0);
    w.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_copies_are_one_effect() -> anyhow::Result<()> {
    let (mut w, base) = world().await?;
    let url = format!("{base}/webhooks/shopline/logistics");
    let (order, tx) = (order_code(), format!("tx-{}", order_code()));
    map(&w, &base, &tx, order).await?;
    let body = serde_json::to_vec(&report(&tx, &waybill(), "DELIVERED"))?;
    let s = sender(vec![Duration::from_millis(200); 5])?;
    let key = format!("dup-{order}");
    let sends = (0..50).map(|_| s.send_body_to(&url, body.clone(), &key));
    let outs = futures::future::join_all(sends).await;
    let mut replies = std::collections::BTreeSet::new();
    for out in outs {
        let out = out?;
        let reply = out
            .reply
            .ok_or_else(|| anyhow::anyhow!("not SUCCESS: {:?}", out.attempts))?;
        replies.insert(format!("{reply:?}"));
    }
    assert_eq!(
        replies.len(),
        1,
        "the same reply for every copy: {replies:?}"
    );
    assert_eq!(
        outbox_rows(&w, order).await?,
        1,
        "one order.updateExpressInfo"
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM trk_events e JOIN trk_shipments s ON s.id = e.shipment_id WHERE s.order_code = $1",
    )
    .bind(order)
    .fetch_one(w.db.pool())
    .await?;
    assert_eq!(events, 1);
    w.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_before_its_mapping_fails_then_succeeds_on_the_retry() -> anyhow::Result<()> {
    let (mut w, base) = world().await?;
    let url = format!("{base}/webhooks/shopline/logistics");
    let (order, tx) = (order_code(), format!("tx-{}", order_code()));
    let s = sender(vec![Duration::from_millis(300); 40])?;
    let rep = report(&tx, &waybill(), "IN_TRANSIT");
    let send = tokio::spawn(async move { s.send_report_to(&url, &rep, "early-1").await });
    let pool = w.db.pool().clone();
    eventually("a deferred report", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ingress_log WHERE partner = 'shopline' AND outcome = 'deferred'",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (n > 0).then_some(())
    })
    .await?;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("tracking_shopline_unknown_transactions_total"),
        "counted"
    );
    map(&w, &base, &tx, order).await?;
    let out = send.await??;
    assert!(out.succeeded(), "{:?}", out.attempts);
    match &out.attempts[0].outcome {
        AttemptOutcome::NotSuccess { reply } => assert_eq!(reply.return_code, "FAIL"),
        other => anyhow::bail!("first attempt: {other:?}"),
    }
    assert_eq!(outbox_rows(&w, order).await?, 1);
    w.stop_all().await
}
