//! `orderbus-soak` (`make soak`; not part of `make test`): R18 of messaging.md. The delivery
//! chain (outbox → relay → broker → consumer → inbox) runs for `--minutes` at half its
//! measured maximum, against a RabbitMQ node of its own behind a TCP fault proxy that resets
//! every connection every `--reset-every-secs`. It prints a progress line every
//! `--sample-secs` and a summary at the end, and exits non-zero if a criterion fails:
//!
//! - every produced message applied exactly once (the ledger: one `effects` row per key);
//! - the outbox drained;
//! - RSS of this process (it hosts the relay and the consumers) at the end within
//!   `--max-rss-growth-pct` of its value after the warm-up;
//! - the broker's connection and channel counts back at their steady values after the last
//!   reset, never above them for two samples running, and 0/0 once the chain stopped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use orderbus_bench::{median, rss_mb};
use orderbus_bus::{
    outbox_lag, Consumers, Delivery, Handler, HandlerError, HandlerFuture, Health, Outbox,
    OutgoingMessage, Relay, RelayConfig, Subscription, Topology,
};
use orderbus_testkit::cluster::RabbitCluster;
use orderbus_testkit::proxy::{rewrite_url, FaultProxy};
use orderbus_testkit::{unique_suffix, TestDb};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "orderbus-soak",
    about = "R18 soak: the delivery chain at half its measured maximum for 30 minutes, a connection reset every 5 minutes (make soak)",
    long_about = "Starts a RabbitMQ node of its own (never the system broker) behind a TCP fault proxy, a \
fresh PostgreSQL database, the bus's consumers and relay in this process. Measures the chain's maximum \
(a pre-filled outbox drained through relay, broker, consumer and inbox), then produces outbox rows at \
half of it (or --rate) for --minutes while the proxy resets every connection every --reset-every-secs. \
Prints a progress line every --sample-secs (RSS, broker connections/channels, messages done, lag) and a \
summary; writes it as JSON to --out. Exits 1 if a message was lost or applied twice, the outbox did not \
drain, RSS grew more than --max-rss-growth-pct after the warm-up, or broker connections/channels leaked."
)]
struct Args {
    /// Length of the soak (after the calibration).
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Reset every connection through the proxy this often.
    #[arg(long, default_value_t = 300)]
    reset_every_secs: u64,
    /// Print a progress line (and sample RSS and the broker) this often.
    #[arg(long, default_value_t = 15)]
    sample_secs: u64,
    /// Produce this many messages/s instead of half the measured maximum.
    #[arg(long)]
    rate: Option<f64>,
    /// Messages pre-filled into the outbox to measure the chain's maximum.
    #[arg(long, default_value_t = 20_000)]
    calibrate_messages: usize,
    /// RSS after this long is the reference for growth (at most a third of the run).
    #[arg(long, default_value_t = 300)]
    warmup_secs: u64,
    /// Allowed RSS growth from the end of the warm-up to the end (R18: 10 %).
    #[arg(long, default_value_t = 10.0)]
    max_rss_growth_pct: f64,
    /// Message body size in bytes (JSON with padding).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Consumer prefetch.
    #[arg(long, default_value_t = 50)]
    prefetch: u16,
    /// Messages per consumer transaction (`Subscription::batch`).
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Sent outbox rows and inbox rows are pruned after this long (the services default to
    /// 7 days; a shorter one lets the soak reach the steady state where pruning runs).
    #[arg(long, default_value_t = 600)]
    retention_secs: u64,
    /// Where the JSON summary goes.
    #[arg(long, default_value = "target/bench/soak.json")]
    out: PathBuf,
}

fn say(msg: &str) {
    println!("soak: {msg}");
}

fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:>3}:{:02}", s / 60, s % 60)
}

fn body(key: u64, size: usize) -> Vec<u8> {
    let head = format!("{{\"key\":{key},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut b = head.into_bytes();
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\"}");
    b
}

/// The ledger's writer: one `effects` row per handled message, in the inbox's transaction.
struct Ledger;

impl Handler for Ledger {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            let v: serde_json::Value = d.json()?;
            let Some(key) = v["key"].as_i64() else {
                return Err(HandlerError::park("no key"));
            };
            sqlx::query("INSERT INTO effects (key, message_id) VALUES ($1, $2)")
                .bind(key)
                .bind(&d.message_id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }
}

/// Commits outbox rows with keys `from..from + n`, `per_tx` per transaction.
async fn enqueue(
    pool: &PgPool,
    key: &str,
    from: u64,
    n: u64,
    per_tx: u64,
    size: usize,
) -> Result<()> {
    let outbox = Outbox::new();
    let mut next = from;
    while next < from + n {
        let end = (next + per_tx).min(from + n);
        let mut tx = pool.begin().await?;
        for k in next..end {
            outbox
                .enqueue_raw(&mut tx, &OutgoingMessage::new(key, body(k, size)))
                .await?;
        }
        tx.commit().await?;
        next = end;
    }
    Ok(())
}

async fn effects(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(pool)
        .await?)
}

/// Polls `f` every 200 ms until it returns Some or `limit` passes.
async fn wait_for<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Produces keys from `first` at `rate`/s until `stop`, one transaction every 100 ms holding
/// what is due by then (so a slow commit is caught up, and the average rate holds).
fn spawn_producer(
    pool: PgPool,
    key: String,
    first: u64,
    rate: f64,
    size: usize,
    produced: Arc<AtomicU64>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // At most two seconds' worth in one transaction.
        let cap = (rate * 2.0).max(1.0) as u64;
        while !stop.is_cancelled() {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            let done = produced.load(Ordering::Relaxed);
            let n = due.saturating_sub(done).min(cap);
            if n == 0 {
                continue;
            }
            // A failed transaction (the database is not faulted here, but be safe) commits
            // nothing: the same keys are produced again at the next tick.
            match enqueue(&pool, &key, first + done, n, n, size).await {
                Ok(()) => {
                    produced.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => eprintln!("soak: producer transaction failed (retrying): {e:#}"),
            }
        }
        Ok(())
    })
}

/// One progress sample.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    rss_mb: f64,
    broker: Option<(usize, usize)>,
    produced: u64,
    done: i64,
    outbox_pending: i64,
    outbox_lag_s: f64,
    resets: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The bus's warnings (reconnects); lapin's own errors on every reset, the
                // relay's line per failed row and sqlx's slow statements would drown the
                // progress lines. RUST_LOG overrides.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,lapin=off,sqlx=error,orderbus_bus::relay=error",
                    )
                }),
        )
        .try_init();
    let args = Args::parse();
    // Everything (broker node, database) is dropped inside `run`, before the exit code.
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    if !RabbitCluster::available() {
        bail!("rabbitmq-server is not installed (run `make services`)");
    }
    let duration = Duration::from_secs(args.minutes * 60);
    let warmup = Duration::from_secs(args.warmup_secs).min(duration / 3);
    let reset_every = Duration::from_secs(args.reset_every_secs.max(1));
    let sample_every = Duration::from_secs(args.sample_secs.max(1));

    say("starting a RabbitMQ node of its own (the system broker is not used)");
    let broker = RabbitCluster::start(1).await?;
    let node = broker.nodes[0].clone();
    let proxy = FaultProxy::start(node.amqp_addr()).await?;
    let url = rewrite_url(&node.amqp_url(), node.amqp_addr(), proxy.addr());

    let db = TestDb::create()
        .await
        .context("PostgreSQL (run `make services`)")?;
    orderbus_bus::MIGRATOR.run(db.pool()).await?;
    // No unique key on purpose: a doubled effect must be visible.
    sqlx::query(
        "CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, key BIGINT NOT NULL, message_id TEXT NOT NULL)",
    )
    .execute(db.pool())
    .await?;
    // Consumer (1) + relay (1 + in-flight batches) + producer + sampler, with room to spare.
    let pool = PgPoolOptions::new()
        .max_connections(12)
        .acquire_timeout(Duration::from_secs(30))
        .connect(db.url())
        .await?;

    let sfx = unique_suffix();
    let key = format!("soak.{sfx}");
    let service = format!("soak-{sfx}");
    let topology = Topology::new(service.clone())
        .retry_tiers([Duration::from_secs(1), Duration::from_secs(5)])
        .subscribe(
            Subscription::new(key.clone(), Arc::new(Ledger))
                .prefetch(args.prefetch)
                .batch(args.batch)
                .describe("soak ledger"),
        );
    let health = Health::new();
    let stop_chain = CancellationToken::new();
    let consumers = Consumers::new(topology, pool.clone(), &url, health.clone());
    let consumers_task = tokio::spawn(consumers.run(stop_chain.clone()));
    wait_for(Duration::from_secs(60), || async {
        health.is_ready().then_some(())
    })
    .await
    .context("the consumers did not become ready")?;

    // Calibration: a pre-filled outbox drained through the whole chain.
    say(&format!(
        "calibrating: {} messages pre-filled into the outbox, then drained through relay → broker → consumer",
        args.calibrate_messages
    ));
    let calibrate = args.calibrate_messages as u64;
    enqueue(&pool, &key, 0, calibrate, 500, args.size).await?;
    let relay_config = RelayConfig {
        retention: Duration::from_secs(args.retention_secs),
        inbox_retention: Duration::from_secs(args.retention_secs),
        ..RelayConfig::default()
    };
    let relay =
        Relay::new(pool.clone(), &url, service.clone(), health.clone()).with_config(relay_config);
    let t0 = Instant::now();
    let relay_task = tokio::spawn(relay.run(stop_chain.clone()));
    wait_for(Duration::from_secs(600), || async {
        (effects(&pool).await.ok()? >= calibrate as i64).then_some(())
    })
    .await
    .context("the calibration messages were not all applied within 10 minutes")?;
    let max_rate = calibrate as f64 / t0.elapsed().as_secs_f64();
    let rate = args.rate.unwrap_or(max_rate / 2.0).max(1.0);
    let (conns_steady, chans_steady) = broker.open_connections_and_channels(0).await?;
    say(&format!(
        "maximum {max_rate:.0} msg/s; soaking at {rate:.0} msg/s for {} min, a connection reset every {} s, \
         warm-up {} s; broker steady at {conns_steady} connections / {chans_steady} channels",
        args.minutes,
        reset_every.as_secs(),
        warmup.as_secs()
    ));

    // The soak.
    let produced = Arc::new(AtomicU64::new(0));
    let stop_producer = CancellationToken::new();
    let producer = spawn_producer(
        pool.clone(),
        key.clone(),
        calibrate,
        rate,
        args.size,
        produced.clone(),
        stop_producer.clone(),
    );
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut resets = 0u64;
    let mut next_reset = reset_every;
    let mut next_sample = sample_every;
    let mut interrupted = false;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let wake = next_reset.min(next_sample).min(duration);
        tokio::select! {
            _ = tokio::time::sleep(wake.saturating_sub(elapsed)) => {}
            _ = tokio::signal::ctrl_c() => {
                say("interrupted: stopping and summarising what ran");
                interrupted = true;
                break;
            }
        }
        let now = started.elapsed();
        if now >= next_sample {
            let (rss, _) = rss_mb();
            let (outbox_pending, outbox_lag_s) = outbox_lag(&pool, Duration::from_secs(10))
                .await
                .unwrap_or((-1, -1.0));
            let s = Sample {
                at: now,
                rss_mb: rss,
                broker: broker.open_connections_and_channels(0).await.ok(),
                produced: produced.load(Ordering::Relaxed),
                done: effects(&pool).await.unwrap_or(-1) - calibrate as i64,
                outbox_pending,
                outbox_lag_s,
                resets,
            };
            let broker_text = s
                .broker
                .map_or("?".to_owned(), |(c, ch)| format!("{c} conns / {ch} chans"));
            println!(
                "soak: [{}/{}] produced {} ({:.0}/s) done {} lag {} msgs, outbox {} pending (oldest {:.1} s); \
                 RSS {:.1} MB{}; broker {broker_text}; resets {}",
                mmss(s.at),
                mmss(duration),
                s.produced,
                s.produced as f64 / s.at.as_secs_f64().max(0.001),
                s.done,
                s.produced as i64 - s.done,
                s.outbox_pending,
                s.outbox_lag_s,
                s.rss_mb,
                if now >= warmup { "" } else { " (warm-up)" },
                s.resets,
            );
            samples.push(s);
            next_sample += sample_every;
        }
        // After the sample: a sample shows the state before the reset, not its first moment.
        if now >= next_reset && now < duration {
            proxy.cut();
            resets += 1;
            say(&format!(
                "[{}] connection reset #{resets} through the proxy",
                mmss(now)
            ));
            next_reset += reset_every;
        }
    }
    stop_producer.cancel();
    producer.await??;
    let soaked = started.elapsed();
    let n = produced.load(Ordering::Relaxed);
    let total = calibrate + n;
    say(&format!(
        "produced {n} messages in {} ({:.0}/s); waiting for the chain to finish",
        mmss(soaked),
        n as f64 / soaked.as_secs_f64().max(0.001)
    ));
    let t_drain = Instant::now();
    let all_done = wait_for(Duration::from_secs(300), || async {
        let done = effects(&pool).await.ok()?;
        let (pending, _) = outbox_lag(&pool, Duration::from_secs(10)).await.ok()?;
        (done >= total as i64 && pending == 0).then_some(())
    })
    .await
    .is_some();
    let drain = t_drain.elapsed();
    // Settled after the last reset: the same connections and channels as before the soak.
    let settled = wait_for(Duration::from_secs(30), || async {
        let now = broker.open_connections_and_channels(0).await.ok()?;
        (now == (conns_steady, chans_steady)).then_some(now)
    })
    .await;
    let settled_or_now = match settled {
        Some(s) => Some(s),
        None => broker.open_connections_and_channels(0).await.ok(),
    };
    let (rss_end, rss_peak) = rss_mb();
    stop_chain.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), consumers_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), relay_task).await;
    let after_stop = wait_for(Duration::from_secs(15), || async {
        let now = broker.open_connections_and_channels(0).await.ok()?;
        (now == (0, 0)).then_some(now)
    })
    .await;

    // The ledger: keys 0..total, each exactly once.
    let (rows, distinct, in_range): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT key), count(DISTINCT key) FILTER (WHERE key >= 0 AND key < $1) FROM effects",
    )
    .bind(total as i64)
    .fetch_one(&pool)
    .await?;
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT key FROM effects GROUP BY key HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await?;
    let lost = total as i64 - in_range;
    let (pending, _) = outbox_lag(&pool, Duration::from_secs(10)).await?;

    // Broker counts: a leak is a count that stays above the steady one (two samples running);
    // a sample taken while a reset is being healed may briefly be lower.
    let above = |s: &Sample| {
        s.broker
            .is_some_and(|(c, ch)| c > conns_steady || ch > chans_steady)
    };
    let leaked_samples = samples
        .windows(2)
        .filter(|w| above(&w[0]) && above(&w[1]))
        .count();
    let broker_max = samples
        .iter()
        .filter_map(|s| s.broker)
        .fold((0, 0), |(a, b), (c, ch)| (a.max(c), b.max(ch)));
    // RSS after the warm-up vs at the end: the median of the first and of the last quarter
    // of the samples after the warm-up, so one sample taken while a reset frees the
    // connections' buffers does not decide.
    let post: Vec<f64> = samples
        .iter()
        .filter(|s| s.at >= warmup)
        .map(|s| s.rss_mb)
        .collect();
    let quarter = (post.len() / 4).max(1);
    let rss_ref = if post.is_empty() {
        rss_end
    } else {
        median(post[..quarter.min(post.len())].to_vec())
    };
    let rss_last = if post.is_empty() {
        rss_end
    } else {
        median(post[post.len().saturating_sub(quarter)..].to_vec())
    };
    let growth_pct = (rss_last - rss_ref) / rss_ref.max(0.001) * 100.0;
    // Resets fall at every multiple of the interval strictly inside the run.
    let expected_resets = duration.as_secs().saturating_sub(1) / reset_every.as_secs();

    let checks = [
        ("0 lost", lost == 0, format!("{lost} lost of {total}")),
        (
            "0 doubled",
            doubled == 0,
            format!("{doubled} keys applied more than once ({rows} effect rows, {distinct} keys)"),
        ),
        (
            "outbox drained",
            all_done && pending == 0,
            format!("{pending} rows pending; drained in {drain:.1?}"),
        ),
        (
            "RSS growth after warm-up",
            growth_pct < args.max_rss_growth_pct,
            format!(
                "{rss_ref:.1} MB → {rss_last:.1} MB ({growth_pct:+.1} %, limit {:.0} %; medians of {quarter} \
                 samples; now {rss_end:.1} MB, peak {rss_peak:.1} MB)",
                args.max_rss_growth_pct
            ),
        ),
        (
            "broker connections/channels stable",
            settled.is_some() && leaked_samples == 0,
            format!(
                "steady {conns_steady}/{chans_steady}, after the soak {settled_or_now:?}, max sampled {}/{}, \
                 {leaked_samples} samples above steady twice running",
                broker_max.0, broker_max.1
            ),
        ),
        (
            "no connection left after stop",
            after_stop == Some((0, 0)),
            format!("{after_stop:?}"),
        ),
        (
            "resets done",
            interrupted || resets >= expected_resets,
            format!("{resets} resets (every {} s)", reset_every.as_secs()),
        ),
    ];
    let passed = !interrupted && checks.iter().all(|(_, ok, _)| *ok);
    println!();
    println!(
        "R18 soak summary: {} of {} min at {rate:.0} msg/s (measured maximum {max_rate:.0} msg/s), \
         {} byte bodies, batch {}, prefetch {}",
        mmss(soaked).trim(),
        args.minutes,
        args.size,
        args.batch,
        args.prefetch
    );
    println!(
        "  messages: {total} ({calibrate} calibration + {n} soak); {rows} effects; {} samples; \
         {} connections through the proxy",
        samples.len(),
        proxy.accepted()
    );
    for (name, ok, detail) in &checks {
        println!(
            "  {:<4} {name:<36} {detail}",
            if *ok { "ok" } else { "FAIL" }
        );
    }
    println!("  => {}", if passed { "PASS" } else { "FAIL" });

    let json = serde_json::json!({
        "minutes": args.minutes, "soaked_secs": soaked.as_secs_f64(), "interrupted": interrupted,
        "reset_every_secs": reset_every.as_secs(), "resets": resets,
        "sample_secs": sample_every.as_secs(), "warmup_secs": warmup.as_secs(),
        "max_rate": max_rate, "rate": rate, "size": args.size, "batch": args.batch, "prefetch": args.prefetch,
        "messages": total, "effects": rows, "lost": lost, "doubled": doubled, "outbox_pending": pending,
        "drain_secs": drain.as_secs_f64(),
        "rss_mb": { "after_warmup": rss_ref, "end": rss_last, "now": rss_end, "peak": rss_peak, "growth_pct": growth_pct },
        "broker": { "steady": [conns_steady, chans_steady], "after_soak": settled_or_now,
                    "max_sampled": [broker_max.0, broker_max.1], "after_stop": after_stop },
        "checks": checks.iter().map(|(n, ok, d)| serde_json::json!({ "check": n, "ok": ok, "detail": d })).collect::<Vec<_>>(),
        "passed": passed,
        "samples": samples.iter().map(|s| serde_json::json!({
            "at_secs": s.at.as_secs_f64(), "rss_mb": s.rss_mb, "broker": s.broker, "produced": s.produced,
            "done": s.done, "outbox_pending": s.outbox_pending, "outbox_lag_secs": s.outbox_lag_s, "resets": s.resets,
        })).collect::<Vec<_>>(),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "proxy_connections": proxy.accepted(),
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    println!("  written to {}", args.out.display());
    pool.close().await;
    drop(proxy);
    drop(broker);
    Ok(passed)
}
