//! SHOPLINE SHA1withRSA: the shopline crate's signing sender against our route; signed replies.

use chrono::{Duration as ChronoDuration, Utc};
use orderbus_ingress::{
    effect_fn, Applied, EffectError, IngressConfig, ShoplineReplies, ShoplineVerifier, Webhook,
};
use orderbus_shopline::signing::test_keys;
use orderbus_shopline::sim::{AttemptOutcome, Sender, SenderConfig};
use orderbus_shopline::webhook::{
    decode_logistics_report, default_datetime_offset, format_timestamp, TimestampFormat,
    HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_VERSION,
};
use orderbus_shopline::{LogisticsReport, PrivateKey, PublicKey, TrackingInfo, VerifierConfig};

use crate::common::{self, App};

const ROUTE: &str = "/webhooks/shopline/logistics";

fn test_key() -> anyhow::Result<PrivateKey> {
    Ok(PrivateKey::from_pkcs8_base64(
        test_keys::PRIVATE_KEY_PKCS8_B64,
    )?)
}

fn other_key() -> anyhow::Result<PrivateKey> {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shopline/tests/fixtures/other_private_pkcs8.pem"
    ))?;
    Ok(PrivateKey::from_pkcs8_base64(&pem)?)
}

/// SHOPLINE and our app share the shopline crate's test key pair here: SHOPLINE signs with it,
/// we sign our replies with it, each side verifies with its public half.
async fn shopline_app() -> anyhow::Result<App> {
    let key = test_key()?;
    let verifier = ShoplineVerifier::new(VerifierConfig::new(key.public_key()));
    common::start(IngressConfig::default(), move |ingress| {
        ingress.webhook(Webhook::new(
            "shopline",
            ROUTE,
            verifier,
            ShoplineReplies::new(key),
            effect_fn(|tx, request| {
                Box::pin(async move {
                    let report =
                        decode_logistics_report(request.body()).map_err(EffectError::bad_body)?;
                    sqlx::query(
                        "INSERT INTO test_effects (order_ref, dedupe_key, trace_id) VALUES ($1, $2, $3)",
                    )
                    .bind(&report.channel_order_transaction_id)
                    .bind(&request.dedupe_key)
                    .bind(request.trace_id())
                    .execute(&mut *tx)
                    .await?;
                    Ok(Applied::accepted().for_order(report.channel_order_transaction_id))
                })
            }),
        ))
    })
    .await
}

fn report(order: &str) -> LogisticsReport {
    LogisticsReport {
        channel_order_transaction_id: order.into(),
        tracking_list: vec![TrackingInfo {
            tracking_no: "TN123".into(),
            site: "https://track.example".into(),
            handler: None,
            tracking_status: "SHIPPED".into(),
            carrier: "blackcat".into(),
        }],
    }
}

fn sender(app: &App, shopline_key: PrivateKey) -> anyhow::Result<Sender> {
    Ok(Sender::new(SenderConfig {
        target_url: app.url(ROUTE),
        retry_delays: Vec::new(),
        shopline_private_key: shopline_key,
        app_public_key: test_key()?.public_key(),
        ..SenderConfig::default()
    })?)
}

#[tokio::test]
async fn shopline_signed_report_is_applied_and_gets_a_verified_signed_reply() -> anyhow::Result<()>
{
    let app = shopline_app().await?;
    let sender = sender(&app, test_key()?)?;
    let outcome = sender
        .send_report_to(&app.url(ROUTE), &report("TX-1"), "idem-1")
        .await?;
    assert!(outcome.succeeded(), "{:?}", outcome.attempts);
    assert_eq!(app.effects().await?, 1);
    // SHOPLINE retries with the same key: same signed reply, no second effect.
    let again = sender
        .send_report_to(&app.url(ROUTE), &report("TX-1"), "idem-1")
        .await?;
    assert!(again.succeeded());
    assert_eq!(again.reply, outcome.reply);
    assert_eq!(app.effects().await?, 1);
    let (key, order): (String, Option<String>) =
        sqlx::query_as("SELECT dedupe_key, order_ref FROM ingress_dedupe")
            .fetch_one(app.db.pool())
            .await?;
    assert_eq!(key, "idem-1");
    assert_eq!(order.as_deref(), Some("TX-1"));
    Ok(())
}

#[tokio::test]
async fn shopline_signature_by_another_key_is_refused_with_a_signed_401() -> anyhow::Result<()> {
    let app = shopline_app().await?;
    let outcome = sender(&app, other_key()?)?
        .send_report_to(&app.url(ROUTE), &report("TX-2"), "idem-2")
        .await?;
    assert!(!outcome.succeeded());
    assert_eq!(
        outcome.last_failure(),
        Some(&AttemptOutcome::HttpStatus { status: 401 })
    );
    assert_eq!(app.effects().await?, 0);
    let verdict: String = sqlx::query_scalar("SELECT verification FROM ingress_log")
        .fetch_one(app.db.pool())
        .await?;
    assert_eq!(verdict, "invalid");
    Ok(())
}

/// Posts a report with hand-made headers and returns (status, verified reply body).
async fn post_raw(
    app: &App,
    body: &[u8],
    signature: Option<String>,
    timestamp: String,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut req = app
        .http
        .post(app.url(ROUTE))
        .header("content-type", "application/json")
        .header(HEADER_VERSION, "1.0.0")
        .header(HEADER_IDEMPOTENCY_KEY, "idem-raw")
        .header(HEADER_TIMESTAMP, timestamp)
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header(HEADER_SIGNATURE, sig);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let reply_signature = resp
        .headers()
        .get(HEADER_SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("reply is not signed"))?;
    let bytes = resp.bytes().await?;
    let ours: PublicKey = test_key()?.public_key();
    ours.verify_body(&bytes, &reply_signature)?;
    Ok((status, serde_json::from_slice(&bytes)?))
}

fn now_micros() -> String {
    format_timestamp(
        Utc::now(),
        TimestampFormat::Micros,
        default_datetime_offset(),
    )
}

#[tokio::test]
async fn shopline_missing_signature_is_refused_with_a_signed_fail() -> anyhow::Result<()> {
    let app = shopline_app().await?;
    let body = serde_json::to_vec(&report("TX-3"))?;
    let (status, reply) = post_raw(&app, &body, None, now_micros()).await?;
    assert_eq!(status, 401);
    assert_eq!(reply["returnCode"], "FAIL");
    assert_eq!(app.effects().await?, 0);
    let verdict: String = sqlx::query_scalar("SELECT verification FROM ingress_log")
        .fetch_one(app.db.pool())
        .await?;
    assert_eq!(verdict, "missing");
    Ok(())
}

#[tokio::test]
async fn shopline_stale_timestamp_and_broken_body_are_refused_with_400() -> anyhow::Result<()> {
    let app = shopline_app().await?;
    let key = test_key()?;
    let body = serde_json::to_vec(&report("TX-4"))?;
    let stale = format_timestamp(
        Utc::now() - ChronoDuration::hours(30),
        TimestampFormat::Micros,
        default_datetime_offset(),
    );
    let (status, reply) = post_raw(&app, &body, Some(key.sign_body(&body)?), stale).await?;
    assert_eq!(status, 400);
    assert_eq!(reply["returnCode"], "FAIL");
    // Not JSON: cannot even be canonicalised, so it is refused before the signature check.
    let (status, _) = post_raw(&app, b"{not json", Some("AAAA".into()), now_micros()).await?;
    assert_eq!(status, 400);
    // Signed, but not a logistics report: verification passes, the effect refuses to parse it.
    let odd = br#"{"something":"else"}"#;
    let (status, reply) = post_raw(&app, odd, Some(key.sign_body(odd)?), now_micros()).await?;
    assert_eq!(status, 400);
    assert_eq!(reply["returnCode"], "FAIL");
    assert_eq!(app.effects().await?, 0);
    let verdicts: Vec<String> =
        sqlx::query_scalar("SELECT verification FROM ingress_log ORDER BY id")
            .fetch_all(app.db.pool())
            .await?;
    assert_eq!(verdicts, ["stale", "malformed", "passed"]);
    Ok(())
}
