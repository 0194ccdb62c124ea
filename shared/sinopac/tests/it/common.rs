//! Shared helpers: a simulator and a client over real sockets on 127.0.0.1.

use std::future::Future;
use std::time::Duration;

use orderbus_sinopac::sim::{SimConfig, Simulator};
use orderbus_sinopac::{Client, ClientConfig, HashId};

pub const SHOP: &str = "NA0249_001";
pub const KEY_ID: &str = "b5e6986d-8636-4aa0-8c93-441ad14b2098";

/// Serves `router` on an ephemeral port; returns `http://127.0.0.1:PORT`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A simulator mounted under `/api` (as the bank's base path) and a client for the demo shop.
pub async fn setup(cfg: SimConfig) -> (Simulator, String, Client) {
    let sim = Simulator::new(cfg);
    let root = serve(axum::Router::new().nest("/api", sim.router())).await;
    let base = format!("{root}/api");
    let client = client_for(&base);
    (sim, base, client)
}

pub fn client_for(base: &str) -> Client {
    let cfg = ClientConfig::new(base, SHOP, HashId::demo_na0249()).with_key_id(KEY_ID);
    Client::new(cfg).expect("client")
}

/// Config with everything automatic switched off (tests drive payments explicitly).
pub fn manual_config() -> SimConfig {
    SimConfig {
        atm_pay_delay: Duration::from_secs(3600),
        card_pay_delay: None,
        push_retry_interval: Duration::from_millis(30),
        push_max_retries: 5,
        push_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    }
}

/// Polls `check` until it yields `Some`, or fails the test after 10 s (an upper bound only).
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
