//! The service runtime end to end: migrations (bus + service), /healthz, /readyz, /metrics,
//! an HTTP route enqueueing through the outbox, and a graceful drain under load.

use std::time::{Duration, Instant};

use axum::{extract::State, routing::post, Router};
use orderbus_bus::{Delivery, Handler, HandlerFuture, Outbox, Subscription, Topology};
use orderbus_runtime::{CancellationToken, Config, Service};
use orderbus_testkit::{amqp_url, unique_suffix, ErpPublisher, TestDb, TestQueue};
use sqlx::{migrate::Migrator, PgConnection, PgPool};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

static MIGRATIONS: Migrator = sqlx::migrate!("tests/migrations");

struct Slow;
impl Handler for Slow {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            let v: serde_json::Value = d.json()?;
            tokio::time::sleep(Duration::from_millis(10)).await;
            sqlx::query("INSERT INTO effects (key, message_id) VALUES ($1, $2)")
                .bind(v["key"].as_str().unwrap_or_default())
                .bind(&d.message_id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }
}

async fn emit(State((pool, key)): State<(PgPool, String)>) -> Result<&'static str, String> {
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    Outbox::new()
        .enqueue(&mut tx, &key, &serde_json::json!({"from": "http"}))
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok("queued")
}

fn service(name: &str, key: &str, out_key: &str, db: &TestDb) -> Service {
    let mut config = Config::local(name);
    config.database_url = orderbus_runtime::Secret::new(db.url());
    config.amqp_url = orderbus_runtime::Secret::new(amqp_url());
    config.http_addr = "127.0.0.1:0".parse().unwrap_or(config.http_addr);
    config.shutdown_grace = Duration::from_secs(10);
    let topology = Topology::new(name)
        .retry_tiers([Duration::from_millis(200)])
        .subscribe(Subscription::new(key, std::sync::Arc::new(Slow)).prefetch(20));
    let out_key = out_key.to_owned();
    Service::new(name, topology)
        .migrations(&MIGRATIONS)
        .config(config)
        .routes(move |pool| {
            Router::new()
                .route("/emit", post(emit))
                .with_state((pool, out_key))
        })
}

async fn effects(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as("SELECT count(*), count(DISTINCT key) FROM effects")
        .fetch_one(pool)
        .await
}

async fn wait_for<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn cleanup(t: &Topology) {
    if let Ok(conn) = orderbus_testkit::connect_amqp().await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = t.remove(&ch, Duration::from_millis(200)).await;
        }
        let _ = conn.close(200, "cleanup".into()).await;
    }
}

/// Runs the service, checks its ops endpoints and HTTP → outbox → relay path, then triggers the
/// shutdown under load: it exits within the grace period, and a second instance finishes the
/// rest: 0 lost, 0 duplicate effects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_gracefully_under_load() -> TestResult {
    let db = TestDb::create().await?;
    let name = format!("rt{}", unique_suffix());
    let key = format!("{name}.work");
    let out_key = format!("{name}.out");
    let mut sink = TestQueue::bind(&[&out_key]).await?;
    let topo_for_cleanup = Topology::new(name.clone())
        .retry_tiers([Duration::from_millis(200)])
        .subscribe(Subscription::new(&key, std::sync::Arc::new(Slow)));

    let shutdown = CancellationToken::new();
    let running = service(&name, &key, &out_key, &db)
        .start(shutdown.clone())
        .await?;
    let base = format!("http://{}", running.addr());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/healthz")).send().await?.status(),
        200
    );
    let ready = wait_for(Duration::from_secs(10), || async {
        matches!(http.get(format!("{base}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(ready, "service never became ready");

    // HTTP handler → outbox (same transaction) → relay → broker.
    assert_eq!(
        http.post(format!("{base}/emit")).send().await?.status(),
        200
    );
    let got = sink.recv(Duration::from_secs(10)).await?;
    assert_eq!(got.json()["from"], "http");

    const N: i64 = 300;
    let erp = ErpPublisher::connect().await?;
    for i in 0..N {
        erp.publish(&key, format!(r#"{{"key":"k{i}"}}"#).as_bytes())
            .await?;
    }
    let started = wait_for(Duration::from_secs(20), || async {
        matches!(effects(db.pool()).await, Ok((n, _)) if n >= 30)
    })
    .await;
    assert!(started, "no progress");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("orderbus_messages_consumed_total"),
        "{metrics}"
    );
    assert!(metrics.contains("orderbus_handler_duration_seconds"));

    let t0 = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), running.wait()).await??;
    let drain = t0.elapsed();
    let (after_first, distinct) = effects(db.pool()).await?;
    assert_eq!(after_first, distinct, "duplicate effects after the drain");

    // A second instance picks up whatever the first left in the queue.
    let shutdown2 = CancellationToken::new();
    let second = service(&name, &key, &out_key, &db)
        .start(shutdown2.clone())
        .await?;
    let done = wait_for(Duration::from_secs(30), || async {
        matches!(effects(db.pool()).await, Ok((n, _)) if n >= N)
    })
    .await;
    shutdown2.cancel();
    tokio::time::timeout(Duration::from_secs(15), second.wait()).await??;
    cleanup(&topo_for_cleanup).await;
    assert!(done, "messages lost");
    let (total, distinct) = effects(db.pool()).await?;
    assert_eq!((total, distinct), (N, N), "0 lost, 0 duplicates");
    println!("drain took {drain:?}; first instance applied {after_first} of {N}");
    Ok(())
}
