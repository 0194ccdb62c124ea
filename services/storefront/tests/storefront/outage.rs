//! A database outage answers 503 with `Retry-After`, not 500: the API's pool goes through a
//! fault proxy that is cut and then refuses connections, and comes back when it passes again.

use std::net::SocketAddr;
use std::time::Duration;

use orderbus_testkit::proxy::{rewrite_url, FaultProxy};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

use crate::common::*;

fn postgres_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5432))
}

struct ProxiedApi {
    base: String,
    http: reqwest::Client,
    proxy: FaultProxy,
    server: tokio::task::JoinHandle<()>,
}

impl ProxiedApi {
    /// The storefront's router on a pool that reaches the harness's database through a proxy.
    async fn start(h: &Harness) -> anyhow::Result<ProxiedApi> {
        let proxy = FaultProxy::start(postgres_addr()).await?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(2))
            .connect(&rewrite_url(h.db.url(), postgres_addr(), proxy.addr()))
            .await?;
        let app = orderbus_storefront::http::router(pool, 64 * 1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ProxiedApi {
            base,
            http: reqwest::Client::new(),
            proxy,
            server,
        })
    }

    async fn post_order(&self) -> anyhow::Result<(u16, Option<String>, Value)> {
        let r = self
            .http
            .post(format!("{}/orders", self.base))
            .json(&order_body(31, &[1, 2]))
            .send()
            .await?;
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, retry_after, r.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Option<String>)> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((r.status().as_u16(), retry_after))
    }
}

impl Drop for ProxiedApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[tokio::test]
async fn database_outage_answers_503_with_retry_after() -> anyhow::Result<()> {
    orderbus_testkit::init_logging();
    let h = Harness::start().await?;
    let api = ProxiedApi::start(&h).await?;
    let (s, _, v) = api.post_order().await?;
    assert_eq!(s, 201, "{v}");
    let code = v["order_code"].as_i64().unwrap_or_default();

    // Open connections die mid-flight, new ones are refused.
    api.proxy.refuse();
    let (s, retry_after, v) = api.post_order().await?;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "unavailable");
    assert_eq!(retry_after.as_deref(), Some("5"));
    let (s, retry_after) = api.get(&format!("/orders/{code}")).await?;
    assert_eq!((s, retry_after.as_deref()), (503, Some("5")));
    let (s, _) = api.get("/orders?uid=31").await?;
    assert_eq!(s, 503);

    // Back: the pool reconnects and requests succeed again.
    api.proxy.pass();
    eventually("the API answers again", || async {
        let (s, _) = api.get(&format!("/orders/{code}")).await.ok()?;
        (s == 200).then_some(())
    })
    .await?;
    let (s, _, v) = api.post_order().await?;
    assert_eq!(s, 201, "{v}");
    h.stop().await
}
