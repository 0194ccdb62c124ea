//! `orderbus-storefront-bench`: the storefront's `order.erpstatus` consumer with real order rows,
//! as a ratio of bare lapin consume+ack measured in the same run, plus the process RSS (issue 4:
//! aim >= 0.5 of bare consume+ack, RSS <= 64 MB). Results also go to
//! `target/bench/storefront.json`. A measurement tool, not a test: nothing asserts a speed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::body::Body;
use clap::Parser;
use deadpool_lapin::lapin::{
    options::{ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection,
};
use futures::{StreamExt, TryStreamExt};
use orderbus_bench::{
    bare_consume, bare_queue, machine, median, process_cpu_seconds, process_rss_mb, publish_all,
    rss_mb, spread, spread_text,
};
use orderbus_bus::{ConsumerConfig, Consumers, Health, Topology, HEADER_ROUTING_KEY};
use orderbus_contracts::{ErpOrderStatus, ErpOrderStatusUpdate};
use orderbus_runtime::{CancellationToken, Config, Secret};
use orderbus_storefront::{http, topology, Settings, MIGRATIONS};
use orderbus_testkit::{connect_amqp, unique_suffix, TestDb};
use serde_json::json;
use sqlx::PgPool;
use tower::ServiceExt;

const ROUTING_KEY: &str = "order.erpstatus";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "orderbus-storefront-bench",
    about = "The storefront's order.erpstatus consumer vs bare lapin consume+ack (issue 4)",
    long_about = "Runs, in one process against the local RabbitMQ and PostgreSQL: bare lapin consume+ack \
of a pre-filled quorum queue (the baseline), then the storefront's own consumers (its topology, default \
subscription settings, a fresh database with the storefront's and the bus's migrations) applying \
order.erpstatus 100 to N paid orders created through the storefront's HTTP API in process, published at \
the bare rate and timed until every order is audited. Rounds are interleaved; medians are reported with the \
ratio and the process RSS, and written as JSON."
)]
struct Args {
    /// Orders, and messages per phase.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Prefetch of the bare baseline consumer (the storefront's subscription uses its own
    /// default, printed with the results; 50 today).
    #[arg(long, default_value_t = 50)]
    prefetch: u16,
    /// Publisher confirm window (bare publish and the storefront phase's publishing).
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Rounds of (bare, storefront); the median of each is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Concurrent in-process `POST /orders` requests while creating the orders.
    #[arg(long, default_value_t = 8)]
    create_concurrency: usize,
    /// Where to write the JSON results [default: <workspace>/target/bench/storefront.json].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The storefront's release binary, started as its own process for the RSS and CPU of the
    /// real service under the same load [default: `orderbus-storefront` beside this binary;
    /// `make bench` builds it]. The phase is skipped (and says so) if it does not exist.
    #[arg(long)]
    service_binary: Option<PathBuf>,
    /// Replica counts of the scale-out curve: that many release binaries with sharded queues
    /// (`ORDERBUS_CONSUMER_SHARDS`) share the same load; empty to skip.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    replicas: Vec<usize>,
    /// Shard queues per subscription in the scale-out curve.
    #[arg(long, default_value_t = 4)]
    shards: usize,
}

/// `<workspace>/target/bench/storefront.json`, next to shared/bench's `latest.json`.
fn default_out() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate is `tests/` at the workspace root.
    let root = manifest.parent().unwrap_or(manifest);
    root.join("target").join("bench").join("storefront.json")
}

fn progress(msg: &str) {
    eprintln!("storefront-bench: {msg}");
}

// ---------------------------------------------------------------------------------------------
// Bare lapin baseline (the helpers live in the shared bench library, orderbus_bench).
// ---------------------------------------------------------------------------------------------

/// One bare round: fill a fresh queue with the same bodies, then consume+ack them all.
/// Returns (publish msg/s, consume msg/s); the queue is removed also on failure.
async fn bare_round(
    conn: &Connection,
    channel: &Channel,
    bodies: &[Vec<u8>],
    args: &Args,
) -> Result<(f64, f64)> {
    let queue = format!("storefront-bench.bare.{}", unique_suffix());
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let messages: Vec<_> = bodies.iter().map(|b| (b.clone(), props.clone())).collect();
    let result = async {
        bare_queue(channel, &queue).await?;
        let publish = publish_all(
            channel,
            orderbus_bus::TOPIC_EXCHANGE,
            &queue,
            &messages,
            args.window,
        )
        .await?;
        let consume = bare_consume(conn, &queue, messages.len(), args.prefetch).await?;
        Ok((publish, consume))
    }
    .await;
    remove(
        conn,
        &[(queue.clone(), queue.clone())],
        std::slice::from_ref(&queue),
        &[],
    )
    .await;
    result
}

/// Unbinds from `amq.topic` first and lets in-flight routing settle before deleting: deleting a
/// bound quorum queue while someone publishes to it can fail the publisher's channel on 3.10.
/// Best effort; a fresh channel per step because a refused step closes its channel.
/// Removes `topo`'s queues and exchanges (its `amq.topic` bindings first).
async fn remove_topology(conn: &Connection, topo: &Topology) {
    let bindings: Vec<(String, String)> = topo
        .bindings()
        .into_iter()
        .filter(|b| b.exchange == orderbus_bus::TOPIC_EXCHANGE)
        .map(|b| (b.queue, b.routing_key))
        .collect();
    let queues: Vec<String> = topo.queues().into_iter().map(|q| q.name).collect();
    remove(conn, &bindings, &queues, &topo.exchanges()).await;
}

async fn remove(
    conn: &Connection,
    bindings: &[(String, String)],
    queues: &[String],
    exchanges: &[String],
) {
    for (queue, key) in bindings {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_unbind(
                    queue.as_str().into(),
                    orderbus_bus::TOPIC_EXCHANGE.into(),
                    key.as_str().into(),
                    FieldTable::default(),
                )
                .await;
            let _ = ch.close(200, "done".into()).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for q in queues {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = ch.close(200, "done".into()).await;
        }
    }
    for e in exchanges {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await;
            let _ = ch.close(200, "done".into()).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The storefront's pipeline.
// ---------------------------------------------------------------------------------------------

/// A one-warehouse order like the storefront's tests create.
fn order_body(uid: i64) -> serde_json::Value {
    json!({
        "uid": uid,
        "items": [{
            "product_sku": 892152,
            "product_skn": 51152761,
            "warehouse_id": 1,
            "quantity": 2,
            "unit_price": "88.00"
        }],
        "shipping_cost": "10.00",
        "delivery_address": {
            "user_name": "朱倩倩",
            "mobile": "15258109727",
            "province": "浙江省",
            "city": "宁波市",
            "district": "象山县",
            "address": "靖南大街688-10号2楼",
            "zip_code": "315700",
            "area_code": "330225",
            "email": "canvas220@sina.com"
        }
    })
}

/// `POST /orders` through the storefront's own router, in process (no socket).
async fn create_order(app: axum::Router, uid: i64) -> Result<(i64, i64)> {
    let body = serde_json::to_vec(&order_body(uid))?;
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/orders")
        .header("content-type", "application/json")
        .body(Body::from(body))?;
    let response = app.oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)?;
    if status.as_u16() != 201 {
        bail!("POST /orders: {status} {value}");
    }
    let code = value["order_code"]
        .as_i64()
        .with_context(|| format!("POST /orders: no order_code in {value}"))?;
    Ok((code, uid))
}

/// Creates `n` orders through the API, then pays them (the state `order.payment` leaves them
/// in; set by SQL like the storefront's tests' `force_status`, with the payment columns filled).
async fn create_paid_orders(
    pool: &PgPool,
    settings: &Settings,
    args: &Args,
) -> Result<Vec<(i64, i64)>> {
    // Order codes away from a fresh database's 100000001..: the bench's queue is also bound to
    // amq.topic, and a concurrently running storefront/ERP pair may publish for those codes.
    let offset = (u64::from_str_radix(&unique_suffix()[..8], 16)? % 900_000_000) as i64;
    let code_start = 2_000_000_000_000 + offset * 100_000;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {code_start}"
    )))
    .execute(pool)
    .await?;
    let app = http::router(pool.clone(), settings.body_limit);
    let orders: Vec<(i64, i64)> = futures::stream::iter(0..args.messages)
        .map(|i| create_order(app.clone(), 8_000_000 + (i % 1000) as i64))
        .buffer_unordered(args.create_concurrency.max(1))
        .try_collect()
        .await?;
    sqlx::query(
        "UPDATE orders SET status = 'paid', paid_amount = order_amount, pay_type = 1, \
         payment_gateway = 'bench', gateway_trade_no = 'bench-' || order_code, paid_at = now(), \
         updated_at = now() WHERE status = 'pending_payment'",
    )
    .execute(pool)
    .await?;
    Ok(orders)
}

/// Back to "every order paid, nothing consumed" between rounds.
async fn reset(pool: &PgPool) -> Result<()> {
    sqlx::query("UPDATE orders SET status = 'paid', updated_at = now() WHERE status <> 'paid'")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM order_timeline WHERE source = $1")
        .bind(ROUTING_KEY)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM orderbus_inbox")
        .execute(pool)
        .await?;
    sqlx::raw_sql("VACUUM ANALYZE orders, order_timeline, orderbus_inbox")
        .execute(pool)
        .await?;
    Ok(())
}

async fn audited(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'audited'")
            .fetch_one(pool)
            .await?,
    )
}

/// Publishes one `order.erpstatus` 100 per order straight into the consumer's work queue at the
/// bare rate and times until every order is audited; msg/s.
///
/// Published through the default exchange (routing key = work queue, the original key in
/// `x-orderbus-routing-key`, which the bus reports as `Delivery::routing_key`) so that other
/// storefronts on this broker (`make run`, parallel tests) do not receive N unknown orders.
async fn storefront_round(
    pool: &PgPool,
    channel: &Channel,
    work_queue: &str,
    bodies: &[Vec<u8>],
    args: &Args,
) -> Result<f64> {
    let run = unique_suffix();
    let messages: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut headers = FieldTable::default();
            headers.insert(
                HEADER_ROUTING_KEY.into(),
                AMQPValue::LongString(ROUTING_KEY.into()),
            );
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(format!("bench-{run}-{i}").as_str().into())
                .with_app_id("erp".into())
                .with_headers(headers);
            (b.clone(), props)
        })
        .collect();
    let n = messages.len() as i64;
    // From the first publish: the queue fills at the bare publish rate (higher than the
    // consumer's), so the consumer is the bottleneck from the start.
    let start = Instant::now();
    publish_all(channel, "", work_queue, &messages, args.window).await?;
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let done = audited(pool).await?;
        if done >= n {
            break;
        }
        if done != last {
            (last, last_change) = (done, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(30) {
            bail!("stalled: {done} of {n} orders audited (see the parking queue)");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The storefront's release binary as its own process, consuming the same messages: its RSS
/// (sampled every 100 ms while it works) and CPU per 1 000 messages, per round.
struct BinaryRun {
    binary: PathBuf,
    rates: Vec<f64>,
    cpu_ms_per_1000: Vec<f64>,
    /// Median of the RSS samples of each round (steady state under load).
    rss_steady_mb: Vec<f64>,
    /// Largest RSS sample of each round.
    rss_max_mb: Vec<f64>,
    /// VmHWM of the process at the end.
    rss_hwm_mb: f64,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Consumers on `queue` (a passive declare on a fresh channel).
async fn consumer_count(conn: &Connection, queue: &str) -> Result<u32> {
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue.into(),
            deadpool_lapin::lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = ch.close(200, "done".into()).await;
    Ok(q.consumer_count())
}

/// Starts the release binary on the bench's database and queues (same service name: the
/// in-process consumers are stopped by then), runs the rounds against it, then SIGTERMs it.
#[allow(clippy::too_many_arguments)]
async fn binary_rounds(
    binary: PathBuf,
    pool: &PgPool,
    conn: &Connection,
    channel: &Channel,
    work_queue: &str,
    bodies: &[Vec<u8>],
    args: &Args,
    database_url: &str,
    service_name: &str,
) -> Result<BinaryRun> {
    let log_path = default_out().with_file_name("storefront-binary.log");
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut child = spawn_service(&binary, database_url, service_name, &log_path, &[])?;
    let pid = child.id();
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while consumer_count(conn, work_queue).await? == 0 {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited with {status} (see {})",
                    binary.display(),
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!("{} did not start consuming within 60 s", binary.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut run = BinaryRun {
            binary: binary.clone(),
            rates: Vec::new(),
            cpu_ms_per_1000: Vec::new(),
            rss_steady_mb: Vec::new(),
            rss_max_mb: Vec::new(),
            rss_hwm_mb: 0.0,
        };
        for round in 1..=args.repeat.max(1) {
            progress(&format!(
                "round {round}/{}: the release binary (pid {pid}), order.erpstatus 100 x {}",
                args.repeat,
                bodies.len()
            ));
            reset(pool).await?;
            let stop = CancellationToken::new();
            let sampler = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while !stop.is_cancelled() {
                        samples.push(process_rss_mb(pid).0);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    samples
                })
            };
            let cpu = process_cpu_seconds(pid).unwrap_or(0.0);
            let rate = storefront_round(pool, channel, work_queue, bodies, args).await;
            let cpu = process_cpu_seconds(pid).unwrap_or(0.0) - cpu;
            stop.cancel();
            let samples = sampler.await.unwrap_or_default();
            run.rates.push(rate?);
            run.cpu_ms_per_1000
                .push(cpu * 1000.0 / (bodies.len() as f64 / 1000.0));
            run.rss_steady_mb.push(median(samples.clone()));
            run.rss_max_mb
                .push(samples.iter().copied().fold(0.0, f64::max));
        }
        run.rss_hwm_mb = process_rss_mb(pid).1;
        Ok(run)
    }
    .await;
    terminate(&mut child).await;
    result
}

/// Starts the storefront's release binary on the bench's database (output to `log_path`).
fn spawn_service(
    binary: &std::path::Path,
    database_url: &str,
    service_name: &str,
    log_path: &std::path::Path,
    env: &[(&str, String)],
) -> Result<std::process::Child> {
    let log = std::fs::File::create(log_path)?;
    std::process::Command::new(binary)
        .env("ORDERBUS_DATABASE_URL", database_url)
        .env("ORDERBUS_AMQP_URL", orderbus_testkit::amqp_url())
        .env("ORDERBUS_HTTP_ADDR", "127.0.0.1")
        .env("ORDERBUS_HTTP_PORT", free_port()?.to_string())
        .env("ORDERBUS_AUTH", "open")
        .env("STOREFRONT_SERVICE_NAME", service_name)
        .env("STOREFRONT_SWEEP_INTERVAL_SECS", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// SIGTERM: the service drains and exits; killed if it has not within 20 s.
async fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
}

/// Live members of the sharded `queue` (the replicas that announced themselves).
async fn shard_members(pool: &PgPool, queue: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM orderbus_shard_members \
         WHERE queue = $1 AND seen_at > clock_timestamp() - interval '3 seconds'",
    )
    .bind(queue)
    .fetch_one(pool)
    .await?)
}

/// The scale-out curve: for each replica count, that many release binaries with sharded
/// queues (a service name of their own: the queues differ) share one round of the load; msg/s
/// per replica count. The queues are removed afterwards.
#[allow(clippy::too_many_arguments)]
async fn replica_curve(
    binary: &std::path::Path,
    pool: &PgPool,
    conn: &Connection,
    channel: &Channel,
    bodies: &[Vec<u8>],
    args: &Args,
    database_url: &str,
    service_name: &str,
) -> Result<Vec<(usize, f64)>> {
    let service_name = format!("{service_name}-sharded");
    let mut topo = topology(&Settings {
        service_name: service_name.clone(),
        ..Settings::default()
    });
    for sub in &mut topo.subscriptions {
        sub.shards = args.shards;
    }
    let work_queue = topo.work_queue(ROUTING_KEY);
    let shards = args.shards.to_string();
    let mut curve = Vec::new();
    let result = async {
        for &n in &args.replicas {
            let mut children = Vec::with_capacity(n);
            let measured = async {
                for r in 0..n {
                    let log = default_out().with_file_name(format!("storefront-replica-{r}.log"));
                    children.push(spawn_service(
                        binary,
                        database_url,
                        &service_name,
                        &log,
                        &[("ORDERBUS_CONSUMER_SHARDS", shards.clone())],
                    )?);
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                while shard_members(pool, &work_queue).await? < n as i64 {
                    if Instant::now() > deadline {
                        bail!("{n} sharded replicas did not all join within 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // One heartbeat round for every replica to yield what is not its share.
                tokio::time::sleep(Duration::from_secs(2)).await;
                progress(&format!(
                    "scale-out: {n} replica(s), {} shards, order.erpstatus 100 x {}",
                    args.shards,
                    bodies.len()
                ));
                reset(pool).await?;
                storefront_round(pool, channel, &work_queue, bodies, args).await
            }
            .await;
            for child in &mut children {
                terminate(child).await;
            }
            let rate = measured?;
            progress(&format!("scale-out: {n} replica(s): {rate:.0} msg/s"));
            curve.push((n, rate));
        }
        Ok(curve)
    }
    .await;
    remove_topology(conn, &topo).await;
    result
}

struct Measured {
    bare_publish: Vec<f64>,
    bare_consume: Vec<f64>,
    storefront: Vec<f64>,
}

async fn rounds(
    pool: &PgPool,
    conn: &Connection,
    channel: &Channel,
    work_queue: &str,
    bodies: &[Vec<u8>],
    args: &Args,
) -> Result<Measured> {
    let mut m = Measured {
        bare_publish: Vec::new(),
        bare_consume: Vec::new(),
        storefront: Vec::new(),
    };
    // Interleaved so drift on the shared machine hits both phases.
    for round in 1..=args.repeat.max(1) {
        progress(&format!(
            "round {round}/{}: bare publish + bare consume+ack (prefetch {})",
            args.repeat, args.prefetch
        ));
        let (p, c) = bare_round(conn, channel, bodies, args).await?;
        m.bare_publish.push(p);
        m.bare_consume.push(c);
        progress(&format!(
            "round {round}/{}: storefront order.erpstatus 100 x {}",
            args.repeat,
            bodies.len()
        ));
        reset(pool).await?;
        let s = storefront_round(pool, channel, work_queue, bodies, args).await?;
        progress(&format!(
            "round {round}/{}: bare consume {c:.0} msg/s, storefront {s:.0} msg/s",
            args.repeat
        ));
        m.storefront.push(s);
    }
    Ok(m)
}

/// The subscription settings the measured consumer runs with, for the report.
fn describe(
    settings: &Settings,
    topo: &Topology,
    config: &Config,
    consumer: &ConsumerConfig,
) -> serde_json::Value {
    let sub = topo.subscriptions.iter().find(|s| s.pattern == ROUTING_KEY);
    json!({
        "service_name": settings.service_name,
        "work_queue": topo.work_queue(ROUTING_KEY),
        "prefetch": sub.map(|s| s.prefetch),
        "batch": sub.map(|s| s.batch),
        "concurrency": sub.map(|s| s.concurrency),
        "partitions": sub.map(|s| s.partitions),
        "max_retries": sub.and_then(|s| s.max_retries),
        "retry_tiers_s": topo.retry_tiers.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
        "subscriptions_running": topo.subscriptions.len(),
        "db_max_connections": config.db_max_connections,
        "db_statement_timeout_ms": config.db_statement_timeout.as_millis() as u64,
        "handler_timeout_ms": consumer.handler_timeout.as_millis() as u64,
        "queue_type": "quorum",
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    progress("preparing a fresh database (bus + storefront migrations)");
    let db = TestDb::create()
        .await
        .context("PostgreSQL (run `make services`)")?;
    // The service's own pool settings (size, statement timeout) and its merged migrations.
    let settings = Settings {
        service_name: format!("storefront-bench-{}", unique_suffix()),
        sweep_interval: None,
        ..Settings::default()
    };
    let mut config = Config::local(&settings.service_name);
    config.database_url = Secret::new(db.url());
    let pool = orderbus_runtime::pool(&config)?;
    orderbus_bus::merged_migrator(&MIGRATIONS)
        .run(&pool)
        .await
        .context("migrations")?;

    progress(&format!(
        "creating {} orders through POST /orders (in process) and paying them",
        args.messages
    ));
    let created = Instant::now();
    let orders = create_paid_orders(&pool, &settings, &args).await?;
    progress(&format!(
        "{} paid orders in {:.1} s",
        orders.len(),
        created.elapsed().as_secs_f64()
    ));
    let bodies = orders
        .iter()
        .map(|&(order_code, uid)| {
            serde_json::to_vec(&ErpOrderStatusUpdate {
                uid,
                order_code,
                status: ErpOrderStatus::Audited,
                data: None,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let conn = connect_amqp()
        .await
        .context("RabbitMQ (run `make services`)")?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    // The process also holds the bench's own machinery (in-process HTTP used for the set-up,
    // bodies, the bare consumer and publisher); this shows how much of the RSS predates the
    // consumers.
    let (rss_setup, _) = rss_mb();

    // The storefront's consumers only (all eight subscriptions, as the service runs them).
    let topo = topology(&settings);
    let work_queue = topo.work_queue(ROUTING_KEY);
    let removal = topo.clone();
    let consumer_config = ConsumerConfig::default();
    let described = describe(&settings, &topo, &config, &consumer_config);
    let health = Health::new();
    let consumers = Consumers::new(topo, pool.clone(), config.amqp_url.expose(), health.clone())
        .with_config(consumer_config);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = consumers.run(token).await {
            progress(&format!("consumers stopped: {e}"));
        }
    });

    let measured = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !health.is_ready() {
            if Instant::now() > deadline {
                bail!("the storefront's consumers did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rounds(&pool, &conn, &channel, &work_queue, &bodies, &args).await
    }
    .await;
    let (rss, rss_peak) = rss_mb();

    progress("stopping the in-process consumers");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let binary = args.service_binary.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("orderbus-storefront")))
    });
    let binary_run = match (&measured, binary) {
        (Ok(_), Some(path)) if path.exists() => Some(
            binary_rounds(
                path,
                &pool,
                &conn,
                &channel,
                &work_queue,
                &bodies,
                &args,
                db.url(),
                &settings.service_name,
            )
            .await,
        ),
        (Ok(_), path) => {
            progress(&format!(
                "skipping the release-binary phase: {} not found (cargo build --release -p orderbus-storefront)",
                path.map(|p| p.display().to_string()).unwrap_or_default()
            ));
            None
        }
        (Err(_), _) => None,
    };
    let curve = match (&measured, &binary_run) {
        (Ok(_), Some(Ok(b))) if !args.replicas.is_empty() => Some(
            replica_curve(
                &b.binary,
                &pool,
                &conn,
                &channel,
                &bodies,
                &args,
                db.url(),
                &settings.service_name,
            )
            .await,
        ),
        _ => None,
    };
    progress("removing the bench's queues");
    remove_topology(&conn, &removal).await;
    conn.close(200, "bench done".into()).await.ok();
    pool.close().await;
    drop(db);
    let m = measured?;
    let binary_run = binary_run.transpose()?;
    let curve = curve.transpose()?.unwrap_or_default();
    let machine = machine();

    let bare_publish = median(m.bare_publish.clone());
    let bare = median(m.bare_consume.clone());
    let store = median(m.storefront.clone());
    let ratio = if bare > 0.0 { store / bare } else { 0.0 };
    println!();
    println!(
        "storefront order.erpstatus consumer vs bare lapin (median of {} rounds, {} real orders / messages)",
        args.repeat.max(1),
        args.messages
    );
    println!("  settings: {described}");
    println!(
        "  bare confirmed publish      {bare_publish:>9.0} msg/s   (fills the queues; window {})",
        args.window
    );
    println!(
        "  bare consume + ack          {bare:>9.0} msg/s   (prefetch {})",
        args.prefetch
    );
    println!("  storefront erpstatus 100    {store:>9.0} msg/s   storefront / bare consume = {ratio:.3} (goal >= 0.5)");
    let ratios: Vec<f64> = m
        .storefront
        .iter()
        .zip(&m.bare_consume)
        .map(|(s, b)| if *b > 0.0 { s / b } else { 0.0 })
        .collect();
    println!(
        "  per round (min / median / max): bare consume {}, storefront {}, ratio {}",
        spread_text(&m.bare_consume, 0),
        spread_text(&m.storefront, 0),
        spread_text(&ratios, 3)
    );
    println!(
        "  RSS (this process)          {rss:.1} MB now, {rss_peak:.1} MB peak ({rss_setup:.1} MB before the consumers started)"
    );
    if let Some(b) = &binary_run {
        let ratios: Vec<f64> = b
            .rates
            .iter()
            .zip(&m.bare_consume)
            .map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 })
            .collect();
        println!(
            "  release binary {}: {} msg/s (÷ bare consume {}), CPU {} ms per 1 000 messages",
            b.binary.display(),
            spread_text(&b.rates, 0),
            spread_text(&ratios, 3),
            spread_text(&b.cpu_ms_per_1000, 1)
        );
        println!(
            "  release binary RSS under load: steady {} MB, max sample {} MB, VmHWM {:.1} MB (goal <= 48 MB)",
            spread_text(&b.rss_steady_mb, 1),
            spread_text(&b.rss_max_mb, 1),
            b.rss_hwm_mb
        );
    }
    if let Some((_, one)) = curve.first() {
        let points: Vec<String> = curve
            .iter()
            .map(|(n, r)| {
                format!(
                    "{n}: {r:.0} msg/s (×{:.2})",
                    if *one > 0.0 { r / one } else { 0.0 }
                )
            })
            .collect();
        println!(
            "  scale-out, release binaries with {} shards (replicas: rate, ÷ 1 replica): {}",
            args.shards,
            points.join(", ")
        );
    }
    println!("  machine: {machine}");

    let binary_json = binary_run.as_ref().map(|b| {
        json!({
            "binary": b.binary.display().to_string(),
            "erpstatus_per_s": spread(&b.rates),
            "cpu_ms_per_1000": spread(&b.cpu_ms_per_1000),
            "rss_steady_mb": spread(&b.rss_steady_mb),
            "rss_max_sample_mb": spread(&b.rss_max_mb),
            "rss_hwm_mb": b.rss_hwm_mb,
        })
    });
    let result = json!({
        "machine": machine,
        "release_binary": binary_json,
        "scale_out": {
            "shards": args.shards,
            "curve": curve.iter().map(|(n, r)| json!({"replicas": n, "erpstatus_per_s": r})).collect::<Vec<_>>(),
        },
        "bare_consume_per_s": bare,
        "storefront_erpstatus_per_s": store,
        "ratio": ratio,
        "rss_mb": rss,
        "rss_peak_mb": rss_peak,
        "rss_before_consumers_mb": rss_setup,
        "bare_publish_per_s": bare_publish,
        "rounds": {
            "bare_consume_per_s": m.bare_consume,
            "storefront_erpstatus_per_s": m.storefront,
            "bare_publish_per_s": m.bare_publish,
        },
        "settings": {
            "messages": args.messages,
            "bare_prefetch": args.prefetch,
            "confirm_window": args.window,
            "repeat": args.repeat.max(1),
            "storefront": described,
        },
    });
    let out = args.out.clone().unwrap_or_else(default_out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("\nwrote {}", out.display());
    Ok(())
}
