//! Test server: the ingress with the bus's and its own migrations, and a recording effect that
//! writes a business row and an outbox row in the ingress's transaction.

use std::net::SocketAddr;
use std::time::Duration;

use orderbus_bus::Outbox;
use orderbus_ingress::{effect_fn, Applied, Effect, EffectError, Ingress, IngressConfig};
use orderbus_testkit::TestDb;
use serde::Deserialize;
use tokio::task::JoinHandle;

pub const HMAC_SECRET: &[u8] = b"test-hmac-secret";
pub const HMAC_HEADER: &str = "x-signature";
pub const IDEMPOTENCY_HEADER: &str = "x-event-id";

/// A running ingress.
pub struct App {
    pub db: TestDb,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn effects(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM test_effects")
            .fetch_one(self.db.pool())
            .await?)
    }

    pub async fn outbox_rows(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM orderbus_outbox")
            .fetch_one(self.db.pool())
            .await?)
    }

    pub async fn log_rows(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM ingress_log")
            .fetch_one(self.db.pool())
            .await?)
    }
}

/// A fresh database, migrated, with the `test_effects` table.
pub async fn database() -> anyhow::Result<TestDb> {
    let db = TestDb::create().await?;
    orderbus_bus::merged_migrator(&orderbus_ingress::MIGRATOR)
        .run(db.pool())
        .await?;
    sqlx::query(
        "CREATE TABLE test_effects (id BIGSERIAL PRIMARY KEY, order_ref TEXT NOT NULL, \
         dedupe_key TEXT NOT NULL, trace_id TEXT NOT NULL)",
    )
    .execute(db.pool())
    .await?;
    Ok(db)
}

/// Starts the routes `build` adds, on 127.0.0.1:0.
pub async fn start(
    config: IngressConfig,
    build: impl FnOnce(Ingress) -> Ingress,
) -> anyhow::Result<App> {
    let db = database().await?;
    let router = build(Ingress::new(db.pool().clone(), config)).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    Ok(App {
        db,
        addr,
        http,
        server,
    })
}

/// The JSON body the recording effect understands.
#[derive(Debug, Deserialize)]
struct TestBody {
    order: String,
    #[serde(default)]
    refuse: bool,
    #[serde(default)]
    hold_ms: u64,
}

/// Parses `{"order", "refuse"?, "hold_ms"?}`; writes a `test_effects` row and an outbox row in
/// the ingress's transaction; holds the transaction open `hold_ms` (to make duplicates overlap).
pub fn recording_effect() -> impl Effect {
    effect_fn(|tx, request| {
        Box::pin(async move {
            let body: TestBody =
                serde_json::from_slice(request.body()).map_err(EffectError::bad_body)?;
            if body.refuse {
                return Ok(Applied::refused("UNKNOWN_ORDER", "no such order").for_order(body.order));
            }
            if body.hold_ms > 0 {
                tokio::time::sleep(Duration::from_millis(body.hold_ms)).await;
            }
            sqlx::query(
                "INSERT INTO test_effects (order_ref, dedupe_key, trace_id) VALUES ($1, $2, $3)",
            )
            .bind(&body.order)
            .bind(&request.dedupe_key)
            .bind(request.trace_id())
            .execute(&mut *tx)
            .await?;
            Outbox::new()
                .enqueue(
                    &mut *tx,
                    "test.ingress.applied",
                    &serde_json::json!({"order": body.order}),
                )
                .await?;
            Ok(Applied::accepted().for_order(body.order))
        })
    })
}

/// The HMAC verifier the tests' partner uses.
pub fn hmac_verifier() -> orderbus_ingress::HmacSha256Verifier {
    orderbus_ingress::HmacSha256Verifier::new(HMAC_HEADER, HMAC_SECRET)
        .prefix("sha256=")
        .idempotency_header(IDEMPOTENCY_HEADER)
}

/// An ingress with one HMAC route at `/webhooks/acme`.
pub async fn hmac_app(config: IngressConfig) -> anyhow::Result<App> {
    start(config, |ingress| {
        ingress.webhook(orderbus_ingress::Webhook::new(
            "acme",
            "/webhooks/acme",
            hmac_verifier(),
            orderbus_ingress::JsonReplies,
            recording_effect(),
        ))
    })
    .await
}

/// Posts `body` signed with the test secret.
pub async fn post_signed(
    app: &App,
    body: &[u8],
    event_id: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let mut req = app
        .http
        .post(app.url("/webhooks/acme"))
        .header("content-type", "application/json")
        .header(HMAC_HEADER, hmac_verifier().sign(body))
        .body(body.to_vec());
    if let Some(id) = event_id {
        req = req.header(IDEMPOTENCY_HEADER, id);
    }
    Ok(req.send().await?)
}

/// Reads a JSON reply.
pub async fn json(resp: reqwest::Response) -> anyhow::Result<(u16, serde_json::Value)> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "reply is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    Ok((status, value))
}
