//! The ingress log row: content, redaction, bounds, retention.

use std::time::Duration;

use orderbus_ingress::{prune_dedupe, prune_log, IngressConfig};
use sha2::{Digest, Sha256};

use crate::common::{hmac_app, hmac_verifier, post_signed, HMAC_HEADER, IDEMPOTENCY_HEADER};

#[derive(sqlx::FromRow)]
struct LogRow {
    partner: String,
    route: String,
    trace_id: String,
    headers: serde_json::Value,
    body: Vec<u8>,
    body_len: i64,
    body_truncated: bool,
    body_sha256: Option<String>,
    verification: String,
    dedupe: Option<String>,
    dedupe_key: Option<String>,
    outcome: String,
    status: i16,
    order_ref: Option<String>,
    duration_ms: f64,
}

#[tokio::test]
async fn log_row_records_the_request_its_verdicts_and_its_order() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    let body = br#"{"order":"OB-LOG"}"#;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = app
        .http
        .post(app.url("/webhooks/acme?secret=hunter2"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer do-not-store")
        .header("traceparent", traceparent)
        .header(HMAC_HEADER, hmac_verifier().sign(body))
        .header(IDEMPOTENCY_HEADER, "evt-log")
        .body(body.to_vec())
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let row: LogRow = sqlx::query_as(
        "SELECT partner, route, trace_id, headers, body, body_len, body_truncated, body_sha256, \
         verification, dedupe, dedupe_key, outcome, status, order_ref, duration_ms FROM ingress_log",
    )
    .fetch_one(app.db.pool())
    .await?;
    let LogRow {
        partner,
        route,
        trace_id,
        headers,
        body: stored,
        body_len: len,
        body_truncated: truncated,
        body_sha256: sha,
        verification,
        dedupe,
        dedupe_key: key,
        outcome,
        status,
        order_ref: order,
        duration_ms: ms,
    } = row;
    assert_eq!(partner, "acme");
    assert_eq!(route, "/webhooks/acme");
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(stored, body);
    assert_eq!(len, body.len() as i64);
    assert!(!truncated);
    assert_eq!(
        sha.as_deref(),
        Some(hex::encode(Sha256::digest(body)).as_str())
    );
    assert_eq!(verification, "passed");
    assert_eq!(dedupe.as_deref(), Some("first"));
    assert_eq!(key.as_deref(), Some("evt-log"));
    assert_eq!(outcome, "accepted");
    assert_eq!(status, 200);
    assert_eq!(order.as_deref(), Some("OB-LOG"));
    assert!(ms >= 0.0);
    let pairs: Vec<(String, String)> = serde_json::from_value(headers)?;
    let get = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("content-type"), Some("application/json"));
    assert_eq!(get("traceparent"), Some(traceparent));
    assert_eq!(get(IDEMPOTENCY_HEADER), Some("evt-log"));
    // The signature is recorded as sent, not its value (with the body it would be replayable).
    assert_eq!(get(HMAC_HEADER), Some("[redacted]"));
    // Authorization is not among the logged headers; the query string is never stored.
    let text: String = sqlx::query_scalar("SELECT row_to_json(l)::text FROM ingress_log l")
        .fetch_one(app.db.pool())
        .await?;
    assert!(
        !text.contains("do-not-store") && !text.contains("hunter2"),
        "{text}"
    );
    let signature = hmac_verifier().sign(body);
    assert!(!text.contains(signature.trim_start_matches("sha256=")));
    // The effect ran in the request's trace.
    let effect_trace: String = sqlx::query_scalar("SELECT trace_id FROM test_effects")
        .fetch_one(app.db.pool())
        .await?;
    assert_eq!(effect_trace, trace_id);
    // ...and the outbox message it wrote continues that trace.
    let outbox_traceparent: String =
        sqlx::query_scalar("SELECT headers->>'traceparent' FROM orderbus_outbox")
            .fetch_one(app.db.pool())
            .await?;
    assert!(
        outbox_traceparent.starts_with(&format!("00-{trace_id}-")),
        "{outbox_traceparent}"
    );
    Ok(())
}

#[tokio::test]
async fn logged_credentials_are_redacted_and_bodies_bounded() -> anyhow::Result<()> {
    let mut config = IngressConfig {
        log_body_limit: 16,
        ..IngressConfig::default()
    };
    config
        .logged_headers
        .push(axum::http::HeaderName::from_static("authorization"));
    let app = hmac_app(config).await?;
    let body = br#"{"order":"OB-LONG-ORDER-REFERENCE"}"#;
    let resp = app
        .http
        .post(app.url("/webhooks/acme"))
        .header("authorization", "Bearer do-not-store")
        .header(HMAC_HEADER, hmac_verifier().sign(body))
        .body(body.to_vec())
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let (headers, stored, len, truncated, sha): (
        serde_json::Value,
        Vec<u8>,
        i64,
        bool,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT headers, body, body_len, body_truncated, body_sha256 FROM ingress_log",
    )
    .fetch_one(app.db.pool())
    .await?;
    let pairs: Vec<(String, String)> = serde_json::from_value(headers)?;
    assert!(pairs.contains(&("authorization".to_owned(), "[redacted]".to_owned())));
    assert_eq!(stored, body[..16]);
    assert_eq!(len, body.len() as i64);
    assert!(truncated);
    assert_eq!(
        sha.as_deref(),
        Some(hex::encode(Sha256::digest(body)).as_str())
    );
    Ok(())
}

#[tokio::test]
async fn retention_prunes_old_rows_in_batches() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    for i in 0..5 {
        let body = format!(r#"{{"order":"OB-{i}"}}"#);
        post_signed(&app, body.as_bytes(), None).await?;
    }
    assert_eq!(app.log_rows().await?, 5);
    sqlx::query("UPDATE ingress_log SET received_at = now() - interval '40 days' WHERE id IN (SELECT id FROM ingress_log ORDER BY id LIMIT 3)")
        .execute(app.db.pool())
        .await?;
    sqlx::query("UPDATE ingress_dedupe SET created_at = now() - interval '40 days'")
        .execute(app.db.pool())
        .await?;
    let month = Duration::from_secs(30 * 24 * 3600);
    assert_eq!(prune_log(app.db.pool(), month, 2).await?, 3);
    assert_eq!(app.log_rows().await?, 2);
    assert_eq!(prune_log(app.db.pool(), month, 2).await?, 0);
    assert_eq!(prune_dedupe(app.db.pool(), month, 2).await?, 5);
    Ok(())
}

/// The reply, the log row and the effect commit together: when the commit itself fails (here a
/// deferred constraint the effect's row violates), the partner gets a retryable 503, nothing of
/// the effect or its dedupe claim remains, and the log row (written on its own) says so. The
/// partner's retry then applies it once.
#[tokio::test]
async fn a_failed_commit_leaves_no_effect_and_is_logged_as_failed() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.order_ref = 'OB-POISON' THEN RAISE EXCEPTION 'poisoned at commit'; END IF; \
           RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER refuse_poison AFTER INSERT ON test_effects \
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(app.db.pool())
    .await?;
    let body = br#"{"order":"OB-POISON"}"#;
    let resp = post_signed(&app, body, Some("evt-poison")).await?;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(app.effects().await?, 0);
    assert_eq!(app.outbox_rows().await?, 0);
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM ingress_dedupe")
        .fetch_one(app.db.pool())
        .await?;
    assert_eq!(claims, 0, "the dedupe claim rolled back with the effect");
    let (outcome, status, error): (String, i16, Option<String>) =
        sqlx::query_as("SELECT outcome, status, error FROM ingress_log")
            .fetch_one(app.db.pool())
            .await?;
    assert_eq!((outcome.as_str(), status), ("failed", 503));
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("poisoned at commit")),
        "error: {error:?}"
    );

    sqlx::raw_sql("DROP TRIGGER refuse_poison ON test_effects")
        .execute(app.db.pool())
        .await?;
    let retry = post_signed(&app, body, Some("evt-poison")).await?;
    assert_eq!(retry.status().as_u16(), 200);
    assert_eq!(app.effects().await?, 1);
    assert_eq!(app.log_rows().await?, 2);
    Ok(())
}

/// A lock wait inside the webhook's transaction (the effect's own row locks, not only a
/// duplicate's dedupe row) gives up after `duplicate_wait`: the partner gets a retryable 503
/// instead of the request holding its connection until the overall deadline.
#[tokio::test]
async fn a_lock_wait_in_the_effect_is_bounded_by_the_duplicate_wait() -> anyhow::Result<()> {
    let config = IngressConfig {
        duplicate_wait: Duration::from_millis(300),
        ..IngressConfig::default()
    };
    let app = hmac_app(config).await?;
    sqlx::raw_sql("CREATE UNIQUE INDEX test_effects_one_per_order ON test_effects (order_ref)")
        .execute(app.db.pool())
        .await?;
    // Another transaction inserted the same order and has not committed: the effect's insert
    // waits on its unique-index entry.
    let mut holder = app.db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO test_effects (order_ref, dedupe_key, trace_id) VALUES ('OB-HELD', 'x', 'x')",
    )
    .execute(&mut *holder)
    .await?;
    let resp = post_signed(&app, br#"{"order":"OB-HELD"}"#, Some("evt-held")).await?;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    // PostgreSQL's lock_timeout ended the wait, not the request deadline.
    let error: Option<String> = sqlx::query_scalar("SELECT error FROM ingress_log")
        .fetch_one(app.db.pool())
        .await?;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("lock timeout")),
        "error: {error:?}"
    );
    holder.rollback().await?;
    let retry = post_signed(&app, br#"{"order":"OB-HELD"}"#, Some("evt-held")).await?;
    assert_eq!(retry.status().as_u16(), 200);
    assert_eq!(app.effects().await?, 1);
    Ok(())
}
