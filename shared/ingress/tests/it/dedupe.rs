//! Dedupe in the effect's transaction: sequential and concurrent duplicates.

use std::time::Duration;

use futures::future::join_all;
use orderbus_ingress::{IngressConfig, Unsigned, Webhook};

use crate::common::{self, hmac_app, post_signed};

#[tokio::test]
async fn fifty_concurrent_duplicates_apply_once_and_get_identical_replies() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig {
        duplicate_wait: Duration::from_secs(20),
        request_timeout: Duration::from_secs(30),
        ..IngressConfig::default()
    })
    .await?;
    // The first request holds its transaction open, so the others arrive while it is running.
    let body = br#"{"order":"OB-50","hold_ms":300}"#;
    let replies = join_all((0..50).map(|_| async {
        let resp = post_signed(&app, body, Some("evt-50")).await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await?;
        anyhow::Ok((status, content_type, bytes))
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(replies.len(), 50);
    let first = &replies[0];
    assert_eq!(first.0, 200, "{:?}", String::from_utf8_lossy(&first.2));
    for r in &replies {
        assert_eq!(r, first);
    }
    assert_eq!(app.effects().await?, 1);
    assert_eq!(app.outbox_rows().await?, 1);
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT outcome, dedupe, count(*) FROM ingress_log GROUP BY outcome, dedupe ORDER BY outcome",
    )
    .fetch_all(app.db.pool())
    .await?;
    assert_eq!(
        rows,
        vec![
            ("accepted".to_owned(), Some("first".to_owned()), 1),
            ("replayed".to_owned(), Some("duplicate".to_owned()), 49),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_duplicate_waiting_longer_than_allowed_gets_a_retryable_409() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig {
        duplicate_wait: Duration::from_millis(50),
        ..IngressConfig::default()
    })
    .await?;
    let body = br#"{"order":"OB-409","hold_ms":3000}"#;
    let slow = post_signed(&app, body, Some("evt-409"));
    let eager = async {
        // Wait until the first request sits in its effect with the key claimed: its
        // transaction stays idle while the effect holds it open.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND state = 'idle in transaction' AND now() - state_change > interval '100 ms'",
            )
            .fetch_one(app.db.pool())
            .await?;
            if waiting > 0 || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        post_signed(&app, body, Some("evt-409")).await
    };
    let (slow, eager) = tokio::join!(slow, eager);
    let (slow, eager) = (slow?, eager?);
    assert_eq!(slow.status().as_u16(), 200);
    assert_eq!(eager.status().as_u16(), 409);
    assert_eq!(
        eager
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let (_, reply) = common::json(eager).await?;
    assert_eq!(reply["error"]["code"], "in_progress");
    assert_eq!(app.effects().await?, 1);
    // The retry after the first committed replays its reply.
    let again = post_signed(&app, body, Some("evt-409")).await?;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(app.effects().await?, 1);
    Ok(())
}

#[tokio::test]
async fn without_an_idempotency_key_the_body_hash_dedupes() -> anyhow::Result<()> {
    let app = common::start(IngressConfig::default(), |ingress| {
        ingress.webhook(Webhook::new(
            "sinopac",
            "/webhooks/sinopac",
            Unsigned,
            orderbus_ingress::SinopacReplies,
            common::recording_effect(),
        ))
    })
    .await?;
    let post = |body: &'static str| {
        app.http
            .post(app.url("/webhooks/sinopac"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for _ in 0..3 {
        let resp = post(r#"{"order":"OB-7"}"#).await?;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await?, r#"{"Status":"S"}"#);
    }
    post(r#"{"order":"OB-8"}"#).await?;
    assert_eq!(app.effects().await?, 2);
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT dedupe_key FROM ingress_dedupe ORDER BY created_at")
            .fetch_all(app.db.pool())
            .await?;
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .all(|k| k.starts_with("sha256:") && k.len() == 7 + 64));
    let verdicts: Vec<String> = sqlx::query_scalar("SELECT DISTINCT verification FROM ingress_log")
        .fetch_all(app.db.pool())
        .await?;
    assert_eq!(verdicts, ["unsigned"]);
    Ok(())
}

#[tokio::test]
async fn a_failed_effect_stores_nothing_and_the_retry_applies() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    // Make the effect's insert fail (a transient failure: the table is gone for a moment).
    sqlx::query("ALTER TABLE test_effects RENAME TO test_effects_away")
        .execute(app.db.pool())
        .await?;
    let body = br#"{"order":"OB-503"}"#;
    let resp = post_signed(&app, body, Some("evt-503")).await?;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    sqlx::query("ALTER TABLE test_effects_away RENAME TO test_effects")
        .execute(app.db.pool())
        .await?;
    assert_eq!(app.outbox_rows().await?, 0);
    let resp = post_signed(&app, body, Some("evt-503")).await?;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(app.effects().await?, 1);
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM ingress_log ORDER BY id")
        .fetch_all(app.db.pool())
        .await?;
    assert_eq!(outcomes, ["failed", "accepted"]);
    Ok(())
}
