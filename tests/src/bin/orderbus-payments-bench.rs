//! `orderbus-payments-bench`: BackendURL notifications through the whole path (ingress log and
//! dedupe → OrderPayQuery against the Sinopac simulator over HTTP → settle → outbox), as
//! pushes per second and as p50/p99 latency at half that rate, each beside a bare axum handler
//! answering `{"Status":"S"}` measured in the same run with the same client. Results also go to
//! `target/bench/payments.json`. A measurement tool, not a test: nothing asserts a speed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::stream::{self, StreamExt};
use orderbus_payments::ids::OrderCode;
use orderbus_payments::{start, store, PublicUrl, Settings};
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Secret};
use orderbus_sinopac::sim::{PayState, SimConfig, Simulator};
use orderbus_testkit::{unique_suffix, TestDb};
use serde_json::json;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "orderbus-payments-bench",
    about = "BackendURL pushes/s through ingress → OrderPayQuery (simulator over HTTP) → outbox, and p99 at half that rate, vs a bare axum handler (issue 10)"
)]
struct Args {
    /// Paid orders (one BackendURL push each) per measured phase.
    #[arg(long, default_value_t = 1000)]
    orders: usize,
    /// Concurrent pushes in the throughput phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Where to write the JSON results [default: <workspace>/target/bench/payments.json].
    #[arg(long)]
    out: Option<PathBuf>,
}

fn default_out() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    root.join("target").join("bench").join("payments.json")
}

fn progress(msg: &str) {
    eprintln!("payments-bench: {msg}");
}

async fn serve(router: axum::Router) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{addr}"), task))
}

/// Posts every body to `url` with `concurrency` in flight; returns (pushes/s, failures).
async fn throughput(
    http: &reqwest::Client,
    url: &str,
    bodies: &[serde_json::Value],
    concurrency: usize,
) -> (f64, usize) {
    let started = Instant::now();
    let failures = stream::iter(bodies.iter())
        .map(|b| async move {
            match http.post(url).json(b).send().await {
                Ok(r) if r.status().is_success() => 0,
                _ => 1,
            }
        })
        .buffer_unordered(concurrency.max(1))
        .fold(0usize, |acc, f| async move { acc + f })
        .await;
    (
        bodies.len() as f64 / started.elapsed().as_secs_f64(),
        failures,
    )
}

/// Posts every body at `rate` per second (open loop); returns (p50 ms, p99 ms, failures).
async fn paced(
    http: &reqwest::Client,
    url: &str,
    bodies: &[serde_json::Value],
    rate: f64,
) -> (f64, f64, usize) {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, b) in bodies.iter().enumerate() {
        tokio::time::sleep_until(start + interval * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let (http, url, b) = (http.clone(), url.to_owned(), b.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = http
                .post(&url)
                .json(&b)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    for t in tasks {
        match t.await {
            Ok((ms, true)) => lat.push(ms),
            _ => failures += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat[i.min(lat.len() - 1)]
    };
    (pick(0.5), pick(0.99), failures)
}

/// Creates `n` paid card orders (their own pushes suppressed) and returns their notifications.
async fn paid_orders(
    db: &TestDb,
    http: &reqwest::Client,
    payments: &str,
    sim: &Simulator,
    first_code: i64,
    n: usize,
) -> Result<Vec<serde_json::Value>> {
    let now = chrono::Utc::now();
    for i in 0..n {
        let mut conn = db.pool().acquire().await?;
        store::insert_payment(
            &mut conn,
            OrderCode(first_code + i as i64),
            8041518,
            79900,
            now,
        )
        .await?;
    }
    let created: Vec<Result<String>> = stream::iter(0..n)
        .map(|i| async move {
            let code = first_code + i as i64;
            let r = http
                .post(format!("{payments}/payments/{code}"))
                .json(&json!({"method": "card"}))
                .send()
                .await?;
            let body: serde_json::Value = r.json().await?;
            body["current"]["order_no"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no order_no: {body}"))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut notes = Vec::with_capacity(n);
    for no in created {
        let no = no?;
        sim.drop_notifications_for(&no, true);
        if !sim.pay_now(&no) {
            bail!("the simulator could not pay {no}");
        }
        let Some(PayState::Paid { pay_token, .. }) = sim.order(&no).map(|v| v.state) else {
            bail!("{no} not paid");
        };
        notes.push(json!({"ShopNo": "NA0249_001", "PayToken": pay_token}));
    }
    Ok(notes)
}

async fn published(db: &TestDb) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM payment_settlements WHERE published")
            .fetch_one(db.pool())
            .await?,
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let n = args.orders.max(10);
    // The bank.
    let sim = Simulator::new(SimConfig {
        atm_pay_delay: Duration::from_secs(3600),
        card_pay_delay: None,
        push_max_retries: 0,
        post_return_url: false,
        ..SimConfig::default()
    });
    let (bank, _bank_task) = serve(sim.router()).await?;
    // The bare baseline: the same route answering the bank's ACK, nothing else.
    let bare_router = axum::Router::new().route(
        "/sinopac/backend",
        axum::routing::post(|_body: axum::body::Bytes| async {
            ([("content-type", "application/json")], r#"{"Status":"S"}"#)
        }),
    );
    let (bare, _bare_task) = serve(bare_router).await?;
    // The service, in process, against a fresh database and the local broker.
    let db = TestDb::create().await?;
    let mut settings = Settings::local_demo(&bank);
    settings.service_name = format!("payments-bench-{}", unique_suffix());
    settings.sweep_enabled = false;
    settings.public_url = PublicUrl::new("http://127.0.0.1:1");
    let minted = orderbus_runtime::auth::mint_key(
        "bench",
        &["orders:read".to_owned(), "payments:write".to_owned()],
    )?;
    let mut config = Config::local(&settings.service_name);
    config.database_url = Secret::new(db.url());
    config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    config.auth = AuthSettings::keys(ApiKeys::parse(&minted.entry)?);
    let shutdown = CancellationToken::new();
    let running = start(config, settings.clone(), shutdown.clone()).await?;
    let base = format!("http://{}", running.addr());
    settings.public_url.set(base.clone());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", minted.key).parse()?,
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(64)
        .build()?;
    let offset = (u64::from_str_radix(&unique_suffix()[..8], 16)? % 900_000_000) as i64;
    let code0 = 5_000_000_000_000 + offset * 10_000;

    progress(&format!(
        "creating {n} paid orders for the throughput phase"
    ));
    let notes = paid_orders(&db, &http, &base, &sim, code0, n).await?;
    let backend = format!("{base}/sinopac/backend");
    let bare_url = format!("{bare}/sinopac/backend");
    progress("bare axum throughput");
    let (bare_rate, _) = throughput(&http, &bare_url, &notes, args.concurrency).await;
    progress("payments throughput");
    let (rate, failures) = throughput(&http, &backend, &notes, args.concurrency).await;
    let settled = published(&db).await?;
    progress(&format!("creating {n} paid orders for the latency phase"));
    let notes2 = paid_orders(&db, &http, &base, &sim, code0 + n as i64, n).await?;
    let half = rate / 2.0;
    progress(&format!("latency at half the rate ({half:.0}/s)"));
    let (bare_p50, bare_p99, _) = paced(&http, &bare_url, &notes2, half).await;
    let (p50, p99, lat_failures) = paced(&http, &backend, &notes2, half).await;
    let settled2 = published(&db).await? - settled;
    let (rss_now, rss_peak) = orderbus_bench::rss_mb();

    println!(
        "BackendURL pushes through ingress → OrderPayQuery (simulator, HTTP) → settle → outbox"
    );
    println!("  orders per phase {n}, concurrency {}", args.concurrency);
    println!(
        "  throughput: payments {rate:.0}/s, bare axum {bare_rate:.0}/s, ratio {:.3} ({failures} failed, {settled} settled)",
        rate / bare_rate
    );
    println!(
        "  latency at {half:.0}/s: payments p50 {p50:.1} ms p99 {p99:.1} ms; bare axum p50 {bare_p50:.2} ms p99 {bare_p99:.2} ms ({lat_failures} failed, {settled2} settled)"
    );
    println!("  process RSS now/peak {rss_now:.0}/{rss_peak:.0} MB (service, simulator and client in one process)");
    let result = json!({
        "settings": {"orders": n, "concurrency": args.concurrency},
        "throughput": {"payments_per_s": rate, "bare_axum_per_s": bare_rate, "ratio": rate / bare_rate,
                        "failures": failures, "settled": settled},
        "latency_at_half_rate": {"rate_per_s": half, "payments_p50_ms": p50, "payments_p99_ms": p99,
                        "bare_p50_ms": bare_p50, "bare_p99_ms": bare_p99, "failures": lat_failures,
                        "settled": settled2},
        "rss_mb": {"now": rss_now, "peak": rss_peak},
    });
    let out = args.out.unwrap_or_else(default_out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    progress(&format!("written {}", out.display()));
    shutdown.cancel();
    running.wait().await?;
    Ok(())
}
