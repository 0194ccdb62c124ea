//! The storefront's API requires bearer keys: 401 (JSON, `WWW-Authenticate: Bearer`) without or
//! with a wrong key, 403 without the scope, 2xx with it; `/openapi.json` and the ops routes stay
//! open.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use orderbus_runtime::auth::{mint_key, ORDERS_READ, ORDERS_WRITE};
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Secret};
use orderbus_storefront::Settings;
use orderbus_testkit::{unique_suffix, TestDb};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_api_requires_keys_with_scopes() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let settings = Settings {
        service_name: format!("storefront-{}", unique_suffix()),
        sweep_interval: None,
        ..Settings::default()
    };
    let reader = mint_key("reader", &[ORDERS_READ.into()])?;
    let writer = mint_key("writer", &[ORDERS_READ.into(), ORDERS_WRITE.into()])?;
    let mut config = Config::local(&settings.service_name);
    config.database_url = Secret::new(db.url());
    config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    config.shutdown_grace = Duration::from_secs(5);
    // Only the API is under test: no relay (nothing is published), no consumers' effects.
    config.run_relay = false;
    config.auth = AuthSettings::keys(ApiKeys::parse(&format!(
        "{}|{}",
        reader.entry, writer.entry
    ))?);
    let topology = orderbus_storefront::topology(&settings);
    let shutdown = CancellationToken::new();
    let running = orderbus_storefront::start(config, settings, shutdown.clone()).await?;
    let base = format!("http://{}", running.addr());
    let http = reqwest::Client::new();
    let body = json!({ "uid": 1, "items": [], "shipping_cost": "0" });

    let outcome = async {
        let r = http.get(format!("{base}/orders/1")).send().await?;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await?;
        assert_eq!(v["error"], "unauthorized", "{v}");

        let r = http
            .get(format!("{base}/orders/1"))
            .bearer_auth("obk_wrong")
            .send()
            .await?;
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await?["error"], "unauthorized");

        let r = http
            .post(format!("{base}/orders"))
            .bearer_auth(&reader.key)
            .json(&body)
            .send()
            .await?;
        assert_eq!(r.status(), 403);
        let v: Value = r.json().await?;
        assert_eq!(v["error"], "forbidden", "{v}");

        // Past authentication the API answers as before: unknown order 404, invalid body 400.
        let r = http
            .get(format!("{base}/orders/1"))
            .bearer_auth(&reader.key)
            .send()
            .await?;
        assert_eq!(r.status(), 404);
        let r = http
            .post(format!("{base}/orders"))
            .bearer_auth(&writer.key)
            .json(&body)
            .send()
            .await?;
        assert_eq!(r.status(), 400);
        let r = http
            .get(format!("{base}/orders?uid=1"))
            .bearer_auth(&reader.key)
            .send()
            .await?;
        assert!(r.status().is_success(), "{}", r.status());

        assert_eq!(
            http.get(format!("{base}/openapi.json"))
                .send()
                .await?
                .status(),
            200
        );
        assert_eq!(
            http.get(format!("{base}/healthz")).send().await?.status(),
            200
        );
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    let stopped = running.wait().await;
    if let Ok(conn) = orderbus_testkit::connect_amqp().await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = topology.remove(&ch, Duration::from_millis(500)).await;
        }
        let _ = conn.close(200, "done".into()).await;
    }
    outcome?;
    stopped?;
    Ok(())
}
