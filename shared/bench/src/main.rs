//! `make bench`: measures the delivery chain against bare lapin baselines in one run, against the
//! local broker and database, and prints the ratios against the project's goals (G1 pipeline
//! ÷ DB floor, G2 batching gain, G3 pipeline ÷ bare consume, G4 relay ÷ bare publish, G7
//! resources). Results also go to `target/bench/latest.json`. This is a measurement tool, not a test:
//! nothing here asserts a speed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use deadpool_lapin::lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel,
};
use orderbus_bench::{
    bare_consume, bare_queue, cpu_seconds, machine, median, publish_all, rss_mb, spread,
    spread_text,
};
use orderbus_bus::{
    Consumers, Delivery, Handler, HandlerFuture, Health, Outbox, Relay, RelayConfig, Subscription,
    Topology,
};
use orderbus_testkit::{amqp_url, connect_amqp, unique_suffix, TestDb};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "orderbus-bench",
    about = "Delivery-chain throughput and latency as ratios of bare lapin baselines (make bench)",
    long_about = "Runs, in one process against the local RabbitMQ and PostgreSQL: bare lapin confirmed \
publish and bare consume+ack (the baselines), the outbox relay, the consumer pipeline (inbox + one guarded \
UPDATE + one outbox row per message) with 1 message per transaction and batched, end-to-end latency at half \
the best pipeline rate, and the process RSS. Prints the ratios and writes target/bench/latest.json."
)]
struct Args {
    /// Messages per throughput phase.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Consumer prefetch (bare and kit).
    #[arg(long, default_value_t = 200)]
    prefetch: u16,
    /// Publisher confirm window (bare publish and relay batch).
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Messages per transaction in the batched pipeline.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Competing consumer workers of the pipeline subscription (`Subscription::concurrency`).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Relay batches published but not yet confirmed (`RelayConfig::max_in_flight_batches`).
    #[arg(long, default_value_t = RelayConfig::default().max_in_flight_batches)]
    relay_in_flight: usize,
    /// Diagnosis only: drop the outbox NOTIFY trigger in the bench database (PostgreSQL
    /// serializes the commits of transactions that NOTIFY; this shows what that costs).
    #[arg(long)]
    no_notify: bool,
    /// Body size in bytes (a JSON order event padded to this size).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Repetitions of each throughput phase; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seconds of fixed-rate traffic for the latency phase.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/latest.json")]
    out: std::path::PathBuf,
}

fn body(size: usize, n: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"uid":8041518,"order_code":{},"status":200,"pad":""#,
        1_000_000 + n
    );
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = head;
    s.push_str(&"x".repeat(pad));
    s.push_str("\"}");
    s.into_bytes()
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Bare lapin: mandatory, persistent, confirmed publishing with a window of `window` confirms
/// (bodies are built before the clock starts).
async fn bare_publish(
    channel: &Channel,
    key: &str,
    n: usize,
    size: usize,
    window: usize,
) -> Result<f64> {
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let messages: Vec<(Vec<u8>, BasicProperties)> =
        (0..n).map(|i| (body(size, i), props.clone())).collect();
    publish_all(channel, "amq.topic", key, &messages, window).await
}

/// The realistic handler: one guarded UPDATE and one outbox row per message (the kit adds the
/// inbox row and the commit). Records end-to-end latency when the message carries a send time.
struct PipelineHandler {
    done: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<f64>>>,
    outbox: Outbox,
}

impl Handler for PipelineHandler {
    fn handle<'a>(
        &'a self,
        delivery: &'a Delivery,
        conn: &'a mut PgConnection,
    ) -> HandlerFuture<'a> {
        Box::pin(async move {
            // One of the 1000 seeded orders, from the message's order code (consecutive
            // messages touch different rows, as different orders would).
            let code = serde_json::from_slice::<serde_json::Value>(&delivery.body)
                .ok()
                .and_then(|v| v["order_code"].as_i64())
                .unwrap_or(0);
            let id = code.rem_euclid(1000) + 1;
            sqlx::query("UPDATE bench_orders SET status = status + 1, updated_at = now() WHERE id = $1 AND status >= 0")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            self.outbox
                .enqueue(
                    &mut *conn,
                    "bench.pipeline.out",
                    &serde_json::json!({ "order_code": id, "status": 200 }),
                )
                .await?;
            self.done.fetch_add(1, Ordering::Relaxed);
            if let Some(sent) = delivery
                .header("x-bench-sent-us")
                .and_then(|v| v.parse::<u64>().ok())
            {
                let now = now_us();
                if let Ok(mut l) = self.latencies.lock() {
                    l.push(now.saturating_sub(sent) as f64 / 1000.0);
                }
            }
            Ok(())
        })
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Pipeline {
    key: String,
    /// Removed (queues and tier exchanges) when the phase ends, so no run leaves anything behind.
    topology: Topology,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    done: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<f64>>>,
}

async fn start_pipeline(pool: &PgPool, args: &Args, batch: usize) -> Result<Pipeline> {
    let service = format!("bench-{}", unique_suffix());
    let key = format!("bench.pipeline.{}", unique_suffix());
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(PipelineHandler {
        done: done.clone(),
        latencies: latencies.clone(),
        outbox: Outbox::new(),
    });
    let topology = Topology::new(service.clone()).subscribe(
        Subscription::new(key.clone(), handler)
            .prefetch(args.prefetch)
            .batch(batch)
            .concurrency(args.concurrency),
    );
    let health = Health::new();
    let consumers = Consumers::new(topology.clone(), pool.clone(), amqp_url(), health.clone());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = consumers.run(token).await {
            eprintln!("bench: consumers stopped: {e}");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !health.is_ready() {
        if Instant::now() > deadline {
            bail!("the kit's consumers did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Pipeline {
        key,
        topology,
        shutdown,
        task,
        done,
        latencies,
    })
}

impl Pipeline {
    async fn stop(self, channel: &Channel) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        let _ = self.topology.remove(channel, Duration::ZERO).await;
    }

    async fn wait_for(&self, n: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.done.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                bail!(
                    "pipeline processed {} of {n}",
                    self.done.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Kit consumer throughput: messages for the service's work queue are published at the bare
/// rate (faster than the pipeline), so the consumer is the bottleneck from the first message.
/// Returns (msg/s, CPU seconds of this process from the first publish to the last message
/// handled: the kit's consumers plus the bare publishing that feeds them).
async fn pipeline_rate(
    pool: &PgPool,
    channel: &Channel,
    args: &Args,
    batch: usize,
) -> Result<(f64, f64)> {
    let p = start_pipeline(pool, args, batch).await?;
    let cpu = cpu_seconds();
    // Measure from the first publish: the consumer drains as fast as it can while the queue fills
    // at the bare publish rate (which is higher), so the consumer is the bottleneck.
    let start = Instant::now();
    bare_publish(channel, &p.key, args.messages, args.size, args.window).await?;
    p.wait_for(args.messages as u64, Duration::from_secs(300))
        .await?;
    let rate = args.messages as f64 / start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    p.stop(channel).await;
    Ok((rate, cpu))
}

/// Returns (msg/s, CPU seconds of this process while the relay drained the outbox).
async fn relay_rate(pool: &PgPool, channel: &Channel, args: &Args) -> Result<(f64, f64)> {
    let key = format!("bench.relay.{}", unique_suffix());
    bare_queue(channel, &key).await?;
    let outbox = Outbox::new();
    let mut tx = pool.begin().await?;
    for i in 0..args.messages {
        let value: serde_json::Value = serde_json::from_slice(&body(args.size, i))?;
        outbox.enqueue(&mut tx, &key, &value).await?;
        if i % 1000 == 999 {
            tx.commit().await?;
            tx = pool.begin().await?;
        }
    }
    tx.commit().await?;
    let config = RelayConfig {
        batch_size: args.window as i64,
        max_in_flight_batches: args.relay_in_flight,
        ..RelayConfig::default()
    };
    let relay = Relay::new(pool.clone(), amqp_url(), "bench", Health::new()).with_config(config);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let start = Instant::now();
    let cpu = cpu_seconds();
    let task = tokio::spawn(async move { relay.run(token).await });
    loop {
        // A cheap probe (first pending row), not count(*): the probe runs every 5 ms on the
        // same 2 cores as the relay and must not load PostgreSQL.
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM orderbus_outbox WHERE sent_at IS NULL AND routing_key = $1)",
        )
        .bind(&key)
        .fetch_one(pool)
        .await?;
        if !pending {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("relay left rows pending");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = args.messages as f64 / start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    channel
        .queue_delete(key.as_str().into(), QueueDeleteOptions::default())
        .await?;
    sqlx::query("DELETE FROM orderbus_outbox")
        .execute(pool)
        .await?;
    Ok((rate, cpu))
}

/// The database floor of G1: the pipeline's SQL (the inbox insert for the transaction, a
/// guarded UPDATE and an outbox row per message, commit) run by `concurrency` tasks straight against PostgreSQL, `batch` messages per
/// transaction, with no broker, decoding or ack.
async fn db_floor(pool: &PgPool, args: &Args, batch: usize) -> Result<f64> {
    let workers = args.concurrency.max(1);
    let per_worker = args.messages.div_ceil(workers);
    let consumer = format!("bench-floor-{}", unique_suffix());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let (pool, consumer) = (pool.clone(), consumer.clone());
        tasks.push(tokio::spawn(async move {
            let outbox = Outbox::new();
            let mut n = 0;
            while n < per_worker {
                let mut tx = pool.begin().await?;
                let take = batch.min(per_worker - n);
                // The kit's inbox step: one statement for the whole transaction.
                let ids: Vec<String> = (0..take)
                    .map(|_| uuid::Uuid::new_v4().to_string())
                    .collect();
                let keys = vec!["bench.floor"; take];
                sqlx::query(
                    "INSERT INTO orderbus_inbox (consumer, message_id, routing_key) \
                     SELECT $1, m, k FROM UNNEST($2::text[], $3::text[]) AS t(m, k) \
                     ON CONFLICT DO NOTHING RETURNING message_id",
                )
                .bind(&consumer)
                .bind(&ids)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?;
                for _ in 0..take {
                    let code = (w * per_worker + n) as i64;
                    sqlx::query("UPDATE bench_orders SET status = status + 1, updated_at = now() WHERE id = $1 AND status >= 0")
                        .bind(code.rem_euclid(1000) + 1)
                        .execute(&mut *tx)
                        .await?;
                    outbox
                        .enqueue(
                            &mut tx,
                            "bench.pipeline.out",
                            &serde_json::json!({ "order_code": code, "status": 200 }),
                        )
                        .await?;
                    n += 1;
                }
                tx.commit().await?;
            }
            Ok::<usize, anyhow::Error>(n)
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Publishes at a fixed rate (intended send time in a header, so a slow consumer cannot hide its
/// latency) and reports the handler-side latency percentiles.
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    samples: usize,
}

async fn latency(pool: &PgPool, channel: &Channel, args: &Args, rate: f64) -> Result<Latency> {
    let p = start_pipeline(pool, args, args.batch).await?;
    let total = (rate * args.latency_seconds as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    for i in 0..total {
        let intended = start + interval * i as u32;
        tokio::time::sleep_until(intended.into()).await;
        let sent_us = now_us().saturating_sub(
            Instant::now()
                .saturating_duration_since(intended)
                .as_micros() as u64,
        );
        let mut headers = FieldTable::default();
        headers.insert(
            "x-bench-sent-us".into(),
            AMQPValue::LongString(sent_us.to_string().into()),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_headers(headers);
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        // Confirms are checked in the background so the send schedule is kept.
        let confirm = channel
            .basic_publish(
                "amq.topic".into(),
                p.key.as_str().into(),
                options,
                &body(args.size, i),
                props,
            )
            .await?;
        tokio::spawn(async move {
            let _ = confirm.await;
        });
    }
    p.wait_for(total as u64, Duration::from_secs(120)).await?;
    let mut lat = p.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    p.stop(channel).await;
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Latency {
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        max: lat.last().copied().unwrap_or(0.0),
        samples: lat.len(),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    progress("preparing a fresh database and queues");
    let db = TestDb::create()
        .await
        .context("PostgreSQL (run `make services`)")?;
    orderbus_bus::MIGRATOR.run(db.pool()).await?;
    if args.no_notify {
        sqlx::query("DROP TRIGGER orderbus_outbox_notify ON orderbus_outbox")
            .execute(db.pool())
            .await?;
    }
    sqlx::query("CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, status INT NOT NULL, updated_at TIMESTAMPTZ)")
        .execute(db.pool())
        .await?;
    sqlx::query("INSERT INTO bench_orders SELECT g, 0, now() FROM generate_series(1, 1000) g")
        .execute(db.pool())
        .await?;
    let conn = connect_amqp()
        .await
        .context("RabbitMQ (run `make services`)")?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let (mut pub_rates, mut cons_rates, mut relay_rates, mut pipe_rates, mut batch_rates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut floor_rates, mut floor_batch_rates) = (Vec::new(), Vec::new());
    // CPU milliseconds of this process per 1 000 messages, per round.
    let (mut cpu_pub, mut cpu_cons, mut cpu_relay, mut cpu_pipe, mut cpu_batch) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let per_k = |cpu_s: f64| cpu_s * 1000.0 / (args.messages as f64 / 1000.0);
    // Interleave the measured and the baseline phases so drift on a shared machine hits both.
    for round in 1..=args.repeat {
        progress(&format!(
            "round {round}/{}: bare publish + bare consume",
            args.repeat
        ));
        let queue = format!("bench.bare.{}", unique_suffix());
        bare_queue(&channel, &queue).await?;
        let cpu = cpu_seconds();
        pub_rates
            .push(bare_publish(&channel, &queue, args.messages, args.size, args.window).await?);
        cpu_pub.push(per_k(cpu_seconds() - cpu));
        let cpu = cpu_seconds();
        cons_rates.push(bare_consume(&conn, &queue, args.messages, args.prefetch).await?);
        cpu_cons.push(per_k(cpu_seconds() - cpu));
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        progress(&format!("round {round}/{}: outbox relay", args.repeat));
        let (rate, cpu) = relay_rate(db.pool(), &channel, &args).await?;
        relay_rates.push(rate);
        cpu_relay.push(per_k(cpu));
        // The pipeline phases publish their input with bare lapin while the kit consumes: that
        // publishing's CPU (this round's bare publish cost) is taken out of their figure.
        let publish_ms = cpu_pub.last().copied().unwrap_or(0.0);
        progress(&format!(
            "round {round}/{}: pipeline, 1 message per transaction",
            args.repeat
        ));
        let (rate, cpu) = pipeline_rate(db.pool(), &channel, &args, 1).await?;
        pipe_rates.push(rate);
        cpu_pipe.push((per_k(cpu) - publish_ms).max(0.0));
        progress(&format!(
            "round {round}/{}: pipeline, {} messages per transaction",
            args.repeat, args.batch
        ));
        let (rate, cpu) = pipeline_rate(db.pool(), &channel, &args, args.batch).await?;
        batch_rates.push(rate);
        cpu_batch.push((per_k(cpu) - publish_ms).max(0.0));
        progress(&format!(
            "round {round}/{}: database floor (same SQL, no broker), 1 and {} per transaction",
            args.repeat, args.batch
        ));
        floor_rates.push(db_floor(db.pool(), &args, 1).await?);
        floor_batch_rates.push(db_floor(db.pool(), &args, args.batch).await?);
        sqlx::query("DELETE FROM orderbus_outbox")
            .execute(db.pool())
            .await?;
        sqlx::query("DELETE FROM orderbus_inbox")
            .execute(db.pool())
            .await?;
    }
    // Per-round ratios (each taken within one round), then their spread.
    let ratio = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(x, y)| if *y > 0.0 { x / y } else { 0.0 })
            .collect()
    };
    let r_relay = ratio(&relay_rates, &pub_rates);
    let r_pipe_cons = ratio(&pipe_rates, &cons_rates);
    let r_batch_cons = ratio(&batch_rates, &cons_rates);
    let r_gain = ratio(&batch_rates, &pipe_rates);
    let r_g1 = ratio(&pipe_rates, &floor_rates);
    let r_batch_floor = ratio(&batch_rates, &floor_batch_rates);
    let r_cpu_relay = ratio(&cpu_relay, &cpu_pub);
    let r_cpu_pipe = ratio(&cpu_pipe, &cpu_cons);
    let r_cpu_batch = ratio(&cpu_batch, &cpu_cons);
    let (bare_pub, bare_cons) = (median(pub_rates.clone()), median(cons_rates.clone()));
    let relay = median(relay_rates.clone());
    let pipe = median(pipe_rates.clone());
    let batched = median(batch_rates.clone());
    let (floor, floor_batched) = (
        median(floor_rates.clone()),
        median(floor_batch_rates.clone()),
    );
    let best = pipe.max(batched);
    let rate = best / 2.0;
    progress(&format!(
        "latency at a fixed {rate:.0} msg/s for {} s",
        args.latency_seconds
    ));
    let lat = latency(db.pool(), &channel, &args, rate).await?;
    let (rss, rss_peak) = rss_mb();
    conn.close(200, "bench done".into()).await.ok();
    progress("machine: nproc, kernel, pg_test_fsync -s 1");
    let machine = machine();

    let m = |v: &[f64]| median(v.to_vec());
    println!();
    println!("orderbus delivery chain vs bare lapin ({} rounds, {} msgs of {} B, prefetch {}, window {}, batch {}, concurrency {}, relay in-flight batches {}{})",
        args.repeat, args.messages, args.size, args.prefetch, args.window, args.batch, args.concurrency, args.relay_in_flight,
        if args.no_notify { ", NOTIFY trigger dropped" } else { "" });
    println!("machine: {machine}");
    println!(
        "figures: median (min / median / max over the rounds); ratios are taken within each round"
    );
    println!();
    println!("| measure | msg/s | ratio | goal |");
    println!("|---|---|---|---|");
    println!(
        "| bare confirmed publish (window {}, mandatory) | {bare_pub:.0} ({}) | | |",
        args.window,
        spread_text(&pub_rates, 0)
    );
    println!(
        "| bare consume + ack (prefetch {}) | {bare_cons:.0} ({}) | | |",
        args.prefetch,
        spread_text(&cons_rates, 0)
    );
    println!(
        "| G4 relay ÷ bare confirmed publish | {relay:.0} ({}) | {:.2} ({}) | ≥ 0.80 |",
        spread_text(&relay_rates, 0),
        m(&r_relay),
        spread_text(&r_relay, 2)
    );
    println!(
        "| G1 pipeline 1/tx ÷ its DB floor | {pipe:.0} ({}) | {:.2} ({}) | ≥ 0.80 |",
        spread_text(&pipe_rates, 0),
        m(&r_g1),
        spread_text(&r_g1, 2)
    );
    println!("| pipeline {}/tx ÷ the same SQL on PostgreSQL alone | {batched:.0} ({}) | {:.2} ({}) | ≥ 0.80 |", args.batch, spread_text(&batch_rates, 0), m(&r_batch_floor), spread_text(&r_batch_floor, 2));
    println!(
        "| DB floor 1/tx, {}/tx | {floor:.0}, {floor_batched:.0} | | |",
        args.batch
    );
    println!(
        "| pipeline 1/tx ÷ bare consume | | {:.2} ({}) | |",
        m(&r_pipe_cons),
        spread_text(&r_pipe_cons, 2)
    );
    println!(
        "| G3 pipeline {}/tx ÷ bare consume | | {:.2} ({}) | |",
        args.batch,
        m(&r_batch_cons),
        spread_text(&r_batch_cons, 2)
    );
    println!(
        "| G2 batching gain ({}/tx ÷ 1/tx) | | {:.2} ({}) | ≥ 2.0 |",
        args.batch,
        m(&r_gain),
        spread_text(&r_gain, 2)
    );
    println!();
    println!("| CPU of this process per 1 000 messages | ms | ÷ bare | goal |");
    println!("|---|---|---|---|");
    println!("| bare publish | {} | | |", spread_text(&cpu_pub, 1));
    println!("| bare consume + ack | {} | | |", spread_text(&cpu_cons, 1));
    println!(
        "| outbox relay (÷ bare publish) | {} | {:.2} ({}) | ≤ 3 |",
        spread_text(&cpu_relay, 1),
        m(&r_cpu_relay),
        spread_text(&r_cpu_relay, 2)
    );
    println!(
        "| pipeline 1/tx (÷ bare consume) | {} | {:.2} ({}) | ≤ 3 |",
        spread_text(&cpu_pipe, 1),
        m(&r_cpu_pipe),
        spread_text(&r_cpu_pipe, 2)
    );
    println!(
        "| pipeline {}/tx (÷ bare consume) | {} | {:.2} ({}) | ≤ 3 |",
        args.batch,
        spread_text(&cpu_batch, 1),
        m(&r_cpu_batch),
        spread_text(&r_cpu_batch, 2)
    );
    println!();
    println!("latency at {rate:.0} msg/s (fixed rate, intended send time): p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} samples; goal p99 <= 25 ms, p99.9 <= 100 ms)", lat.p50, lat.p99, lat.p999, lat.max, lat.samples);
    println!("RSS of this bench process (the kit in process): {rss:.1} MB now, {rss_peak:.1} MB peak; the real service binaries: see orderbus-storefront-bench");

    let result = serde_json::json!({
        "machine": machine,
        "bare_publish_per_s": bare_pub,
        "bare_consume_per_s": bare_cons,
        "relay_per_s": relay,
        "pipeline_per_s": pipe,
        "pipeline_batched_per_s": batched,
        "db_floor_per_s": floor,
        "db_floor_batched_per_s": floor_batched,
        "latency_p50_ms": lat.p50,
        "latency_p99_ms": lat.p99,
        "latency_p999_ms": lat.p999,
        "latency_max_ms": lat.max,
        "latency_rate_per_s": rate,
        "latency_samples": lat.samples,
        "rss_mb": rss,
        "rss_peak_mb": rss_peak,
        "rounds": {
            "bare_publish_per_s": spread(&pub_rates),
            "bare_consume_per_s": spread(&cons_rates),
            "relay_per_s": spread(&relay_rates),
            "pipeline_per_s": spread(&pipe_rates),
            "pipeline_batched_per_s": spread(&batch_rates),
            "db_floor_per_s": spread(&floor_rates),
            "db_floor_batched_per_s": spread(&floor_batch_rates),
        },
        "cpu_ms_per_1000": {
            "bare_publish": spread(&cpu_pub),
            "bare_consume": spread(&cpu_cons),
            "relay": spread(&cpu_relay),
            "pipeline": spread(&cpu_pipe),
            "pipeline_batched": spread(&cpu_batch),
            "note": "CPU (user + system) of the bench process; the pipeline figures exclude the round's bare publish cost of feeding them; PostgreSQL and RabbitMQ CPU are not included",
        },
        "ratios": {
            "g4_relay_vs_bare_publish": spread(&r_relay),
            "g3_batched_pipeline_vs_bare_consume": spread(&r_batch_cons),
            "pipeline_vs_bare_consume": spread(&r_pipe_cons),
            "g2_batching_gain": spread(&r_gain),
            "g1_pipeline_vs_db_floor": spread(&r_g1),
            "batched_pipeline_vs_batched_db_floor": spread(&r_batch_floor),
            "g7_cpu_relay_vs_bare_publish": spread(&r_cpu_relay),
            "g7_cpu_pipeline_vs_bare_consume": spread(&r_cpu_pipe),
            "g7_cpu_batched_pipeline_vs_bare_consume": spread(&r_cpu_batch),
        },
        "settings": {
            "messages": args.messages,
            "message_bytes": args.size,
            "prefetch": args.prefetch,
            "confirm_window": args.window,
            "batch_size": args.batch,
            "concurrency": args.concurrency,
            "relay_in_flight_batches": args.relay_in_flight,
            "outbox_notify_trigger": !args.no_notify,
            "pipeline_update_row": "order_code mod 1000 (distinct rows per message)",
            "repeat": args.repeat,
            "latency_seconds": args.latency_seconds,
            "queue_type": "quorum",
        },
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("\nwrote {}", args.out.display());
    Ok(())
}
