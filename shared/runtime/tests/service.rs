//! The service runtime end to end: migrations (bus + service + building blocks), /healthz,
//! /readyz (database, tasks), /metrics, an HTTP route enqueueing through the outbox, a graceful
//! drain under load, background tasks, API keys, and settings from flags and environment.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{extract::State, routing::post, Router};
use orderbus_bus::{Delivery, Handler, HandlerFuture, Outbox, Subscription, Topology};
use orderbus_runtime::{CancellationToken, Config, Service, TaskContext, TaskOptions};
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

/// A service with no consumers and no relay (no broker needed), on `db` (or `db_url`).
fn bare_config(name: &str, db_url: &str) -> Config {
    let mut config = Config::local(name);
    config.database_url = orderbus_runtime::Secret::new(db_url);
    config.http_addr = "127.0.0.1:0".parse().unwrap_or(config.http_addr);
    config.shutdown_grace = Duration::from_secs(10);
    config.run_relay = false;
    config.db_probe_interval = Duration::from_millis(100);
    config.db_probe_timeout = Duration::from_millis(500);
    config
}

async fn readyz(http: &reqwest::Client, base: &str) -> Option<(u16, serde_json::Value)> {
    let r = http.get(format!("{base}/readyz")).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

#[derive(Debug, thiserror::Error)]
#[error("attempt {0} failed on purpose")]
struct Planned(usize);

fn fast(gates_readiness: bool) -> TaskOptions {
    TaskOptions {
        gates_readiness,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
    }
}

/// Background tasks: restarted after an error and after a panic, a failing gated task holds
/// readiness down, and shutdown cancels them and waits for their last unit of work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_restart_after_errors_and_panics_and_drain_on_shutdown() -> TestResult {
    let db = TestDb::create().await?;
    let name = format!("rt{}", unique_suffix());
    let failing = Arc::new(AtomicUsize::new(0));
    let panicking = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(AtomicBool::new(false));
    let (f, p, d) = (failing.clone(), panicking.clone(), drained.clone());
    let shutdown = CancellationToken::new();
    let running = Service::new(name.clone(), Topology::new(name.clone()))
        .config(bare_config(&name, db.url()))
        .task_with("failing", fast(false), move |ctx: TaskContext| {
            let attempt = f.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if attempt < 3 {
                    return Err(Planned(attempt));
                }
                ctx.shutdown().cancelled().await;
                Ok(())
            }
        })
        .task_with("panicking", fast(true), move |ctx: TaskContext| {
            let attempt = p.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                assert!(attempt > 1, "first attempt panics on purpose");
                ctx.shutdown().cancelled().await;
                Ok::<(), Planned>(())
            }
        })
        .task_with(
            "stuck",
            TaskOptions {
                gates_readiness: true,
                backoff_base: Duration::from_secs(3600),
                backoff_cap: Duration::from_secs(3600),
            },
            |_ctx: TaskContext| async { Err(Planned(1)) },
        )
        .task("draining", move |ctx: TaskContext| {
            let d = d.clone();
            async move {
                ctx.shutdown().cancelled().await;
                // The last unit of work after the shutdown request still completes.
                sqlx::query("SELECT pg_sleep(0.2)")
                    .execute(ctx.pool())
                    .await?;
                d.store(true, Ordering::SeqCst);
                Ok::<(), sqlx::Error>(())
            }
        })
        .start(shutdown.clone())
        .await?;
    let base = format!("http://{}", running.addr());
    let http = reqwest::Client::new();

    let restarted = wait_for(Duration::from_secs(10), || async {
        failing.load(Ordering::SeqCst) >= 3 && panicking.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(restarted, "failing {failing:?}, panicking {panicking:?}");
    let flags_seen = wait_for(Duration::from_secs(10), || async {
        let flags = running.health().snapshot();
        flags.get("task:panicking") == Some(&true) && flags.get("task:stuck") == Some(&false)
    })
    .await;
    assert!(flags_seen, "{:?}", running.health().snapshot());
    let (status, body) = readyz(&http, &base).await.ok_or("no /readyz")?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["task:stuck"], false);
    assert_eq!(body["task:panicking"], true);
    assert!(body.get("task:failing").is_none(), "not a readiness gate");
    // Stable after the restarts: no further attempts.
    assert_eq!(failing.load(Ordering::SeqCst), 3);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), running.wait()).await??;
    assert!(
        drained.load(Ordering::SeqCst),
        "draining task was not waited for"
    );
    Ok(())
}

/// `/readyz` follows the database: a service reaching PostgreSQL through a fault proxy turns
/// not ready (`database: false`) while the proxy refuses connections and ready again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reflects_the_database() -> TestResult {
    let db = TestDb::create().await?;
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse()?;
    let proxy = orderbus_testkit::proxy::FaultProxy::start(upstream).await?;
    let url = orderbus_testkit::proxy::rewrite_url(db.url(), upstream, proxy.addr());
    assert_ne!(url, db.url(), "database URL not routed through the proxy");
    let name = format!("rt{}", unique_suffix());
    let shutdown = CancellationToken::new();
    let running = Service::new(name.clone(), Topology::new(name.clone()))
        .config(bare_config(&name, &url))
        .start(shutdown.clone())
        .await?;
    let base = format!("http://{}", running.addr());
    let http = reqwest::Client::new();
    let state = |want_status: u16, want_db: bool| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            matches!(readyz(&http, &base).await,
                Some((s, b)) if s == want_status && b["database"] == want_db)
        }
    };
    assert!(
        wait_for(Duration::from_secs(10), || state(200, true)).await,
        "never ready"
    );
    proxy.refuse();
    assert!(
        wait_for(Duration::from_secs(10), || state(503, false)).await,
        "still ready with the database unreachable"
    );
    proxy.pass();
    assert!(
        wait_for(Duration::from_secs(10), || state(200, true)).await,
        "not ready again after the database came back"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), running.wait()).await??;
    Ok(())
}

static BLOCK_MIGRATIONS: Migrator = sqlx::migrate!("tests/migrations_block");

/// Several migrators (the service's and a building block's) run with the bus's as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_block_migrations_run_with_the_services() -> TestResult {
    let db = TestDb::create().await?;
    let name = format!("rt{}", unique_suffix());
    let shutdown = CancellationToken::new();
    let running = Service::new(name.clone(), Topology::new(name.clone()))
        .migrations(&MIGRATIONS)
        .migrations(&BLOCK_MIGRATIONS)
        .config(bare_config(&name, db.url()))
        .start(shutdown.clone())
        .await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_name IN ('effects', 'block_rows', 'orderbus_outbox') ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await?;
    assert_eq!(tables, ["block_rows", "effects", "orderbus_outbox"]);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(db.pool())
            .await?;
    assert!(
        versions.contains(&1) && versions.contains(&910000000001),
        "{versions:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), running.wait()).await??;
    Ok(())
}

async fn thing() -> &'static str {
    "thing"
}

/// Bearer keys with scopes: 401 without or with a wrong key (JSON, `WWW-Authenticate`), 403
/// without the scope, 2xx with it; public paths, other routes and ops routes stay open; a
/// service with an API and no keys does not start; the request id is echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_the_api() -> TestResult {
    use orderbus_runtime::auth::mint_key;
    use orderbus_runtime::{ApiKeys, AuthSettings, Policy, RuntimeError};

    let db = TestDb::create().await?;
    let name = format!("rt{}", unique_suffix());
    let reader = mint_key("reader", &["things:read".into()])?;
    let writer = mint_key("writer", &["things:read".into(), "things:write".into()])?;
    let api = |pool: PgPool, auth: orderbus_runtime::Auth| {
        let _ = pool;
        auth.protect(
            Router::new()
                .route("/things", axum::routing::get(thing).post(thing))
                .route("/doc", axum::routing::get(thing)),
            Policy::read_write("things:read", "things:write"),
            &["/doc"],
        )
    };
    let service = |auth: AuthSettings| {
        let mut config = bare_config(&name, db.url());
        config.auth = auth;
        Service::new(name.clone(), Topology::new(name.clone()))
            .config(config)
            .api(api)
            .routes(|_| Router::new().route("/webhook", post(thing)))
    };

    let refused = service(AuthSettings::default())
        .start(CancellationToken::new())
        .await;
    assert!(
        matches!(refused, Err(RuntimeError::Auth(_))),
        "started without keys"
    );

    let keys = ApiKeys::parse(&format!("{} {}", reader.entry, writer.entry))?;
    let shutdown = CancellationToken::new();
    let running = service(AuthSettings::keys(keys))
        .start(shutdown.clone())
        .await?;
    let base = format!("http://{}", running.addr());
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, key: Option<&str>| {
        let mut req = http.request(method, format!("{base}{path}"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    use reqwest::Method;

    let r = call(Method::GET, "/things", None).await?;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"], "unauthorized", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let r = call(Method::GET, "/things", Some("obk_not-a-key")).await?;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await?["error"],
        "unauthorized"
    );

    let r = call(Method::POST, "/things", Some(&reader.key)).await?;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"], "forbidden", "{body}");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("things:write")));

    assert_eq!(
        call(Method::GET, "/things", Some(&reader.key))
            .await?
            .status(),
        200
    );
    assert_eq!(
        call(Method::POST, "/things", Some(&writer.key))
            .await?
            .status(),
        200
    );
    assert_eq!(call(Method::GET, "/doc", None).await?.status(), 200);
    assert_eq!(call(Method::POST, "/webhook", None).await?.status(), 200);
    assert_eq!(call(Method::GET, "/healthz", None).await?.status(), 200);

    let r = http
        .get(format!("{base}/things"))
        .bearer_auth(&reader.key)
        .header("x-request-id", "req-123")
        .send()
        .await?;
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let r = call(Method::GET, "/healthz", None).await?;
    assert!(r.headers().contains_key("x-request-id"));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), running.wait()).await??;

    // Explicitly open: no key needed.
    let shutdown = CancellationToken::new();
    let open = service(AuthSettings::open())
        .start(shutdown.clone())
        .await?;
    let r = http
        .post(format!("http://{}/things", open.addr()))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), open.wait()).await??;
    Ok(())
}

#[derive(clap::Parser, Debug)]
struct Binary {
    #[command(flatten)]
    runtime: orderbus_runtime::RuntimeArgs,
}

/// The environment feeds the same clap arguments as the flags (flags win), `--help` names
/// every variable, and secret values never appear in it. The only test here that touches the
/// process environment; no other test in this binary parses it.
#[test]
fn settings_come_from_the_environment_and_help_hides_secrets() -> TestResult {
    use clap::{CommandFactory, Parser};
    let key = orderbus_runtime::auth::mint_key("env", &["orders:read".into()])?;
    let vars = [
        ("ORDERBUS_AMQP_URL", "amqp://u:hunter2@rabbit:5672/%2f"),
        ("ORDERBUS_HTTP_PORT", "9123"),
        ("ORDERBUS_LOG_FORMAT", "json"),
        ("ORDERBUS_RETRY_TIERS", "1s,10s"),
        ("ORDERBUS_RELAY", "false"),
        ("ORDERBUS_API_KEYS", key.entry.as_str()),
    ];
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let parsed = Binary::try_parse_from(["bin", "--http-port", "9124"]);
    let help = Binary::command().render_long_help().to_string();
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    let config = parsed?.runtime.config("svc")?;
    assert_eq!(config.http_addr.port(), 9124, "the flag wins over the env");
    assert_eq!(config.log_format, orderbus_runtime::LogFormat::Json);
    assert_eq!(config.amqp_url.expose(), "amqp://u:hunter2@rabbit:5672/%2f");
    assert!(!config.run_relay);
    assert_eq!(
        config.topology.retry_tiers,
        Some(vec![Duration::from_secs(1), Duration::from_secs(10)])
    );
    assert!(config.auth.keys.authenticate(&key.key).is_some());
    for name in [
        "ORDERBUS_AMQP_URL",
        "ORDERBUS_DATABASE_URL",
        "ORDERBUS_HTTP_ADDR",
        "ORDERBUS_HTTP_PORT",
        "ORDERBUS_LOG_FORMAT",
        "ORDERBUS_SHUTDOWN_GRACE_SECS",
        "ORDERBUS_DB_MAX_CONNECTIONS",
        "ORDERBUS_RELAY",
        "ORDERBUS_RUN_MIGRATIONS",
        "ORDERBUS_RETRY_TIERS",
        "ORDERBUS_RELAY_LEASE_SECS",
        "ORDERBUS_API_KEYS",
        "ORDERBUS_AUTH",
    ] {
        assert!(help.contains(name), "--help lacks {name}");
    }
    assert!(!help.contains("hunter2"), "--help shows a secret");
    assert!(!help.contains(&key.entry), "--help shows the API keys");
    Ok(())
}
