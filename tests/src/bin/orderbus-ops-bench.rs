//! `orderbus-ops-bench`: the ops journal's ingest rate as a ratio of bare consume+ack of the
//! same messages in the same run (issue 13: goal >= 0.5), and the timeline query's latency
//! (p50/p99) for one order among 1,000,000 journal rows. A measurement, not a test.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use deadpool_lapin::lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeleteOptions,
};
use deadpool_lapin::lapin::types::{AMQPValue, FieldTable};
use deadpool_lapin::lapin::{BasicProperties, ExchangeKind};
use orderbus_bench::{bare_consume, publish_all};
use orderbus_ops::journal::{self, JournalConfig, Via};
use orderbus_runtime::CancellationToken;
use orderbus_testkit::{connect_amqp, unique_suffix, TestDb};

#[derive(Parser, Debug)]
#[command(
    name = "orderbus-ops-bench",
    about = "ops journal ingest vs bare consume+ack, and timeline latency among 1M journal rows"
)]
struct Args {
    /// Messages per ingest phase.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Prefetch of both consumers.
    #[arg(long, default_value_t = 500)]
    prefetch: u16,
    /// Journal rows per INSERT.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Journal rows for the timeline query.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Orders the rows are spread over.
    #[arg(long, default_value_t = 100_000)]
    orders: i64,
    /// Timeline queries timed.
    #[arg(long, default_value_t = 300)]
    queries: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sfx = unique_suffix();
    let exchange = format!("bench-ops-{sfx}.topic");
    let conn = connect_amqp().await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let messages: Vec<(Vec<u8>, BasicProperties)> = (0..args.messages)
        .map(|i| {
            let body = format!(
                r#"{{"uid":111111,"order_code":{},"status":600,"data":{{"express_id":23,"express_number":"25276134639"}}}}"#,
                1_000_000 + i
            );
            let props = orderbus_testkit::erp_properties()
                .with_timestamp(chrono::Utc::now().timestamp() as u64);
            (body.into_bytes(), props)
        })
        .collect();

    // Bare: a quorum queue bound to the same key, consume + ack.
    let bare = format!("bench-ops-{sfx}.bare");
    let mut qargs = FieldTable::default();
    qargs.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        bare.as_str().into(),
        deadpool_lapin::lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        qargs,
    )
    .await?;
    ch.queue_bind(
        bare.as_str().into(),
        exchange.as_str().into(),
        "order.erpstatus".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    publish_all(&ch, &exchange, "order.erpstatus", &messages, 256).await?;
    let bare_rate = bare_consume(&conn, &bare, args.messages, args.prefetch).await?;
    ch.queue_delete(bare.as_str().into(), QueueDeleteOptions::default())
        .await?;

    // The journal: same messages pre-filled into ops' queue, then consumed into PostgreSQL.
    let db = TestDb::create().await?;
    orderbus_ops::MIGRATIONS.run(db.pool()).await?;
    let cfg = JournalConfig {
        amqp_url: orderbus_testkit::amqp_url(),
        exchange: exchange.clone(),
        keys: orderbus_contracts::RoutingKey::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        journal_queue: format!("bench-ops-{sfx}.journal"),
        unrouted_exchange: format!("bench-ops-{sfx}.unrouted"),
        unrouted_queue: format!("bench-ops-{sfx}.unrouted"),
        prefetch: args.prefetch,
        batch: args.batch,
        db_retry: Duration::from_secs(1),
    };
    journal::declare(&ch, &cfg).await?;
    publish_all(&ch, &exchange, "order.erpstatus", &messages, 256).await?;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(journal::run(
        db.pool().clone(),
        cfg.clone(),
        Via::Journal,
        stop.clone(),
    ));
    loop {
        let n = orderbus_ops::store::journal_count(db.pool(), false).await?;
        if n as usize >= args.messages {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("journal stalled at {n} rows");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let journal_rate = args.messages as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = task.await;
    for q in [&cfg.journal_queue, &cfg.unrouted_queue] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [&exchange, &cfg.unrouted_exchange] {
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }

    // Timeline: one order among `rows` journal rows (`rows / orders` rows per order).
    let fill = Instant::now();
    sqlx::query(
        "INSERT INTO journal (via, routing_key, msg_key, message_id, app_id, body, body_sha256, \
         decoded, unrouted, order_codes, headers, trace_id) \
         SELECT 'ops.journal', 'order.erpstatus', 'm' || g, 'm' || g, 'erp', \
                convert_to('{\"uid\":1,\"order_code\":' || (5000000 + g % $2) || ',\"status\":100}', 'UTF8'), \
                md5(g::text), true, false, ARRAY[5000000 + g % $2]::bigint[], '{}'::jsonb, md5(g::text) \
         FROM generate_series(1, $1) g",
    )
    .bind(args.rows)
    .bind(args.orders)
    .execute(db.pool())
    .await
    .context("filling the journal")?;
    // VACUUM flushes the GIN pending lists of the bulk insert, as autovacuum does in steady state.
    sqlx::query("VACUUM ANALYZE journal")
        .execute(db.pool())
        .await?;
    let fill_secs = fill.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(args.queries);
    let mut found = 0usize;
    for i in 0..args.queries {
        let order = 5_000_000 + (i as i64 * 7919) % args.orders;
        let t = Instant::now();
        let rows = orderbus_ops::timeline::own_entries(db.pool(), order, false).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        found += rows.len();
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "orderbus-ops-bench ({} messages, prefetch {}, batch {})",
        args.messages, args.prefetch, args.batch
    );
    println!("  bare consume+ack          {bare_rate:>10.0} msg/s");
    println!(
        "  journal ingest            {journal_rate:>10.0} msg/s   ratio {:.2} (goal >= 0.5)",
        journal_rate / bare_rate
    );
    println!(
        "  timeline among {} rows ({} orders, filled in {fill_secs:.0} s): p50 {:.2} ms, p99 {:.2} ms ({} queries, {:.1} rows each)",
        args.rows,
        args.orders,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        args.queries,
        found as f64 / args.queries as f64
    );
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
