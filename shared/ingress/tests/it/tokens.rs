//! URL-token verification (SweetTracker): issued tokens, missing / wrong / revoked tokens, and
//! the SweetTracker simulator delivering real callbacks to a tokenised URL.

use std::time::Duration;

use orderbus_ingress::{
    effect_fn, Applied, CallbackTokens, EffectError, IngressConfig, SweetTrackerReplies,
    TokenLocation, UrlTokenVerifier, Webhook,
};
use orderbus_sweettracker::callback::decode;
use orderbus_sweettracker::{
    AddInvoice, CallbackType, Carrier, Client, ClientConfig, SimConfig, Simulator,
};

use crate::common::{self, json, App};

const PATH_ROUTE: &str = "/webhooks/sweettracker/{token}";
const QUERY_ROUTE: &str = "/webhooks/sweettracker-q";

fn sweettracker_effect() -> impl orderbus_ingress::Effect {
    effect_fn(|tx, request| {
        Box::pin(async move {
            let callback = decode(request.request.content_type().as_deref(), request.body())
                .map_err(EffectError::bad_body)?;
            // The token names the order; a callback for another one is refused.
            if let Some(order) = &request.verified.order {
                if !callback.fid.ends_with(order.as_str()) {
                    return Ok(Applied::refused("FAIL", "invalid fid"));
                }
            }
            sqlx::query(
                "INSERT INTO test_effects (order_ref, dedupe_key, trace_id) VALUES ($1, $2, $3)",
            )
            .bind(&callback.fid)
            .bind(&request.dedupe_key)
            .bind(request.trace_id())
            .execute(&mut *tx)
            .await?;
            Ok(Applied::accepted())
        })
    })
}

async fn app() -> anyhow::Result<App> {
    common::start(IngressConfig::default(), |ingress| {
        ingress
            .webhook(Webhook::new(
                "sweettracker",
                PATH_ROUTE,
                UrlTokenVerifier::new("sweettracker", TokenLocation::Path("token")),
                SweetTrackerReplies,
                sweettracker_effect(),
            ))
            .webhook(Webhook::new(
                "sweettracker",
                QUERY_ROUTE,
                UrlTokenVerifier::new("sweettracker", TokenLocation::Query("t")),
                SweetTrackerReplies,
                sweettracker_effect(),
            ))
    })
    .await
}

async fn issue(app: &App, order: &str) -> anyhow::Result<String> {
    let mut conn = app.db.pool().acquire().await?;
    Ok(
        CallbackTokens::issue(&mut conn, "sweettracker", Some(order))
            .await?
            .as_str()
            .to_owned(),
    )
}

const FORM: &str = "secret_value=yqzaciv0zlw5rtjt&fid=OS02%3AOB-9&courier_code=04&invoice_no=692637908420&level=6&time_trans=2016-05-05+20%3A59%3A45";

async fn post_form(app: &App, url: String) -> anyhow::Result<(u16, serde_json::Value)> {
    json(
        app.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(FORM)
            .send()
            .await?,
    )
    .await
}

#[tokio::test]
async fn url_token_issued_for_the_order_is_accepted() -> anyhow::Result<()> {
    let app = app().await?;
    let token = issue(&app, "OB-9").await?;
    assert_eq!(token.len(), 43, "32 random bytes, URL-safe base64");
    let (status, reply) =
        post_form(&app, app.url(&format!("/webhooks/sweettracker/{token}"))).await?;
    assert_eq!(
        (status, reply),
        (200, serde_json::json!({"code": true, "message": "success"}))
    );
    assert_eq!(app.effects().await?, 1);
    // Only the hash is stored, and the token appears nowhere in the log.
    let stored: String = sqlx::query_scalar("SELECT token_sha256 FROM ingress_callback_tokens")
        .fetch_one(app.db.pool())
        .await?;
    assert_ne!(stored, token);
    let (route, order): (String, Option<String>) =
        sqlx::query_as("SELECT route, order_ref FROM ingress_log")
            .fetch_one(app.db.pool())
            .await?;
    assert_eq!(route, PATH_ROUTE);
    assert_eq!(order.as_deref(), Some("OB-9"), "the token names the order");
    let log_text: String = sqlx::query_scalar("SELECT row_to_json(l)::text FROM ingress_log l")
        .fetch_one(app.db.pool())
        .await?;
    assert!(!log_text.contains(&token));
    Ok(())
}

#[tokio::test]
async fn url_token_missing_wrong_or_revoked_is_refused() -> anyhow::Result<()> {
    let app = app().await?;
    let token = issue(&app, "OB-9").await?;
    // Missing (query form), empty, wrong, issued for nobody.
    for url in [
        app.url(QUERY_ROUTE),
        app.url(&format!("{QUERY_ROUTE}?t=")),
        app.url(&format!("{QUERY_ROUTE}?t={}x", &token[..42])),
        app.url("/webhooks/sweettracker/not-a-token"),
    ] {
        let (status, reply) = post_form(&app, url.clone()).await?;
        assert_eq!(status, 401, "{url}");
        assert_eq!(reply["code"], false, "{url}");
    }
    // The right token in the query form works.
    let (status, _) = post_form(&app, app.url(&format!("{QUERY_ROUTE}?t={token}"))).await?;
    assert_eq!(status, 200);
    // Revoked.
    let mut conn = app.db.pool().acquire().await?;
    assert_eq!(
        CallbackTokens::revoke_for_order(&mut conn, "sweettracker", "OB-9").await?,
        1
    );
    drop(conn);
    let (status, reply) =
        post_form(&app, app.url(&format!("/webhooks/sweettracker/{token}"))).await?;
    assert_eq!(status, 401);
    assert!(reply["message"].as_str().unwrap_or("").contains("revoked"));
    assert_eq!(app.effects().await?, 1);
    let verdicts: Vec<String> =
        sqlx::query_scalar("SELECT verification FROM ingress_log ORDER BY id")
            .fetch_all(app.db.pool())
            .await?;
    assert_eq!(
        verdicts,
        ["missing", "missing", "invalid", "invalid", "passed", "invalid"]
    );
    Ok(())
}

#[tokio::test]
async fn sweettracker_simulator_callbacks_through_a_token_url_apply_once_each() -> anyhow::Result<()>
{
    let app = app().await?;
    let sim = Simulator::new(SimConfig {
        step_interval: Duration::from_millis(5),
        retry_delays: vec![Duration::from_millis(20); 3],
        faults: orderbus_sweettracker::Faults {
            duplicates: true,
            ..Default::default()
        },
        ..SimConfig::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = listener.local_addr()?;
    let router = sim.router();
    let sim_server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let token = issue(&app, "OB-77").await?;
    let client = Client::new(ClientConfig {
        base_url: format!("http://{sim_addr}/"),
        ..ClientConfig::dev()
    })?;
    client
        .add_invoice(&AddInvoice {
            num: "1000000077".into(),
            carrier: Carrier::CjLogistics,
            fid: "OS02:OB-77".into(),
            callback_url: app.url(&format!("/webhooks/sweettracker/{token}")),
            callback_type: CallbackType::Json,
        })
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let registration = loop {
        match sim.registration("1000000077", "04") {
            Some(r) if r.finished => break r,
            _ if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("simulator did not finish")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    sim_server.abort();
    assert!(
        registration.deliveries.iter().all(|d| d.acknowledged),
        "{:?}",
        registration.deliveries
    );
    let copies = registration
        .deliveries
        .iter()
        .filter(|d| d.duplicate)
        .count();
    assert!(copies > 0, "the duplicates fault sent copies");
    // Every distinct event applied once; every copy replayed.
    let distinct = (registration.planned_events - copies) as i64;
    assert_eq!(app.effects().await?, distinct);
    let replayed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ingress_log WHERE outcome = 'replayed'")
            .fetch_one(app.db.pool())
            .await?;
    assert_eq!(replayed, copies as i64);
    Ok(())
}
