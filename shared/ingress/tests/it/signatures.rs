//! HMAC-SHA256: good, bad and missing signatures; malformed bodies; refusals.

use orderbus_ingress::IngressConfig;

use crate::common::{self, hmac_app, json, post_signed, HMAC_HEADER};

#[tokio::test]
async fn hmac_good_signature_applies_the_effect_once() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    let (status, body) =
        json(post_signed(&app, br#"{"order":"OB-1"}"#, Some("evt-1")).await?).await?;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "accepted");
    assert_eq!(app.effects().await?, 1);
    assert_eq!(app.outbox_rows().await?, 1);
    Ok(())
}

#[tokio::test]
async fn hmac_bad_signature_is_refused_with_401_and_no_effect() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    let body = br#"{"order":"OB-1"}"#;
    let mut signature = common::hmac_verifier().sign(body);
    // Flip the last hex digit: a valid-looking signature that does not match.
    let last = signature.pop().unwrap_or('0');
    signature.push(if last == '0' { '1' } else { '0' });
    for sig in [signature.as_str(), "sha256=zz", "md5=abc", ""] {
        let resp = app
            .http
            .post(app.url("/webhooks/acme"))
            .header(HMAC_HEADER, sig)
            .body(body.to_vec())
            .send()
            .await?;
        let (status, reply) = json(resp).await?;
        assert_eq!(status, 401, "signature {sig:?}");
        assert_eq!(reply["error"]["code"], "unauthorized", "signature {sig:?}");
    }
    // A signature over another body.
    let resp = app
        .http
        .post(app.url("/webhooks/acme"))
        .header(HMAC_HEADER, common::hmac_verifier().sign(b"{}"))
        .body(body.to_vec())
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(app.effects().await?, 0);
    let verdicts: Vec<String> =
        sqlx::query_scalar("SELECT verification FROM ingress_log ORDER BY id")
            .fetch_all(app.db.pool())
            .await?;
    assert_eq!(verdicts, vec!["invalid"; 5]);
    Ok(())
}

#[tokio::test]
async fn hmac_missing_signature_is_refused_with_401() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    let resp = app
        .http
        .post(app.url("/webhooks/acme"))
        .body(r#"{"order":"OB-1"}"#)
        .send()
        .await?;
    let (status, reply) = json(resp).await?;
    assert_eq!(status, 401);
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains(HMAC_HEADER));
    assert_eq!(app.effects().await?, 0);
    let verdict: String = sqlx::query_scalar("SELECT verification FROM ingress_log")
        .fetch_one(app.db.pool())
        .await?;
    assert_eq!(verdict, "missing");
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_get_a_clear_400_json_error() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    let bodies: [&[u8]; 6] = [
        b"",
        b"not json",
        b"{\"order\":",
        b"{\"order\":42}",
        b"[1,2,3]",
        &[0xff, 0xfe, 0x00, 0x7b],
    ];
    for body in bodies {
        let (status, reply) = json(post_signed(&app, body, None).await?).await?;
        assert_eq!(status, 400, "body {body:?}");
        assert_eq!(reply["error"]["code"], "bad_request", "body {body:?}");
        assert!(!reply["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    assert_eq!(app.effects().await?, 0);
    // Nothing was stored under their keys: a corrected retry is applied.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ingress_dedupe")
        .fetch_one(app.db.pool())
        .await?;
    assert_eq!(stored, 0);
    Ok(())
}

#[tokio::test]
async fn a_refusal_is_committed_and_replayed() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    let body = br#"{"order":"OB-404","refuse":true}"#;
    let first = json(post_signed(&app, body, Some("evt-r")).await?).await?;
    let second = json(post_signed(&app, body, Some("evt-r")).await?).await?;
    assert_eq!(first.0, 200);
    assert_eq!(first.1["status"], "refused");
    assert_eq!(first.1["code"], "UNKNOWN_ORDER");
    assert_eq!(first, second);
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM ingress_log ORDER BY id")
        .fetch_all(app.db.pool())
        .await?;
    assert_eq!(outcomes, ["refused", "replayed"]);
    Ok(())
}
