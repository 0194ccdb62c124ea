//! `orderbus-tracking-bench` (`make bench`, not a test): webhook ingest of the tracking service
//! under Debian's `wrk`, as ratios of a bare axum handler measured in the same run.
//!
//! - SweetTracker callbacks/s: every request a new scan of one of `--shipments` shipments
//!   (URL token check, decode, dedupe row, event row, shipment update, outbox row, reply).
//! - SHOPLINE reports/s: pre-signed reports, each with its own idempotency key (SHA1withRSA
//!   verification, dedupe, event + outbox rows, our signed reply).
//! - p99 latency at half the measured maximum rate (wrk's per-request `delay()`).
//! - The database floor of a callback: the same statements, round trip for round trip, run by
//!   as many tasks as wrk has connections straight against PostgreSQL (token lookup; `BEGIN; SET
//!   LOCAL lock_timeout`; dedupe claim; shipment lock; event, shipment and outbox rows through
//!   the service's own store code; reply + log row; `COMMIT`), with no HTTP, decoding or
//!   verification. Callbacks ÷ floor is what the service itself costs on top of its database.
//!
//! Goals (issue 11): ratio ≥ 0.25 with the database, p99 ≤ 20 ms.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use orderbus_runtime::{AuthSettings, CancellationToken, Config, Secret};
use orderbus_shopline::signing::test_keys;
use orderbus_shopline::{PrivateKey, PublicKey, VerifierConfig};
use orderbus_testkit::{unique_suffix, RouteSink, TestDb};
use orderbus_tracking::{Settings, ShoplineKeys};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "orderbus-tracking-bench")]
struct Args {
    /// Seconds per wrk measurement.
    #[arg(long, default_value_t = 8)]
    duration_secs: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Shipments the callbacks are spread over.
    #[arg(long, default_value_t = 500)]
    shipments: i64,
    /// Pre-signed SHOPLINE reports (each sent once).
    #[arg(long, default_value_t = 6000)]
    reports: usize,
    /// Where the JSON result goes.
    #[arg(long, default_value = "target/bench/tracking.json")]
    out: PathBuf,
}

/// The database work of one SweetTracker callback, without HTTP (see the module docs). The two
/// ingress statements are written out here (the ingress keeps its SQL private); the tracking
/// statements are the service's own functions.
async fn callback_floor(
    pool: &sqlx::PgPool,
    targets: &[(String, i64, String)],
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    use orderbus_tracking::events::{self, Incoming};
    let vocabulary = std::sync::Arc::new(orderbus_tracking_vocabulary::Vocabulary::builtin()?);
    let targets = std::sync::Arc::new(targets.to_vec());
    let deadline = std::time::Instant::now() + duration;
    let started = std::time::Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let (pool, vocabulary, targets) = (pool.clone(), vocabulary.clone(), targets.clone());
        handles.push(tokio::spawn(async move {
            let mut done = 0u64;
            while std::time::Instant::now() < deadline {
                let n = done as usize * tasks + t;
                let (token, order, _num) = &targets[n % targets.len()];
                orderbus_ingress::CallbackTokens::lookup(&pool, "sweettracker", token).await?;
                let mut tx = pool
                    .begin_with("BEGIN; SET LOCAL lock_timeout = '5000ms'")
                    .await?;
                let key = format!("floor-{t}-{done}");
                sqlx::query(
                    "INSERT INTO ingress_dedupe (partner, dedupe_key, trace_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (partner, dedupe_key) DO NOTHING",
                )
                .bind("sweettracker")
                .bind(&key)
                .bind("0af7651916cd43dd8448eb211c80319c")
                .execute(&mut *tx)
                .await?;
                let shipments = orderbus_tracking::store::lock_order_shipments(&mut tx, *order).await?;
                let shipment = shipments.first().ok_or_else(|| anyhow!("no shipment for {order}"))?;
                events::apply(
                    &mut tx,
                    &vocabulary,
                    shipment,
                    &Incoming {
                        source: orderbus_tracking_vocabulary::SWEETTRACKER,
                        carrier: Some("04"),
                        status: "3",
                        unique_key: events::unique_key(&["floor", &key]),
                        event_time: chrono::Utc::now(),
                        location: &key,
                        details: "scan",
                    },
                )
                .await?;
                sqlx::query(
                    "WITH stored AS (UPDATE ingress_dedupe SET reply_status = 200, \
                     reply_headers = '[]', reply_body = $3, order_ref = $4 \
                     WHERE partner = $1 AND dedupe_key = $2) \
                     INSERT INTO ingress_log (partner, route, trace_id, headers, body, body_len, \
                     body_truncated, body_sha256, verification, dedupe, dedupe_key, outcome, \
                     status, order_ref, duration_ms) VALUES ($1, '/delivery/tracking_receive', \
                     '0af7651916cd43dd8448eb211c80319c', '[]', $3, 120, false, NULL, 'passed', \
                     'first', $2, 'accepted', 200, $4, 1.0)",
                )
                .bind("sweettracker")
                .bind(&key)
                .bind(br#"{"code":true,"message":"success"}"#.as_slice())
                .bind(order.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    rps: f64,
    p99_ms: f64,
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The common part of every script: thread ids, the optional per-request delay.
fn lua_prelude(delay_ms: Option<f64>) -> String {
    let mut s = String::from(
        "local counter = 0\nfunction setup(thread) thread:set(\"tid\", counter); counter = counter + 1 end\n\
         function init(args) tid = wrk.thread:get(\"tid\"); i = 0 end\n",
    );
    if let Some(d) = delay_ms {
        let _ = writeln!(
            s,
            "function delay() return {} end",
            d.max(0.0).round() as u64
        );
    }
    s
}

fn run_wrk(
    args: &Args,
    url: &str,
    script: &str,
    delay_ms: Option<f64>,
) -> anyhow::Result<Measured> {
    let dir = std::env::temp_dir().join(format!("orderbus-tracking-bench-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("script.lua");
    std::fs::write(&path, format!("{}{script}", lua_prelude(delay_ms)))?;
    let out = Command::new("wrk")
        .args([
            "-t",
            &args.threads.to_string(),
            "-c",
            &args.connections.to_string(),
            "-d",
            &format!("{}s", args.duration_secs),
            "--latency",
            "-s",
        ])
        .arg(&path)
        .arg(url)
        .output()
        .context("running wrk (Debian package `wrk`: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(anyhow!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        eprintln!("warning: {}", line.trim());
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk's output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_latency(v.trim()))
        .ok_or_else(|| anyhow!("no 99% latency in wrk's output:\n{text}"))?;
    Ok(Measured { rps, p99_ms: p99 })
}

fn parse_latency(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.trim().parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// Max throughput, then p99 at half of it (each run with its own requests: nothing repeats).
fn measure(
    args: &Args,
    url: &str,
    script_max: &str,
    script_half: &str,
) -> anyhow::Result<(Measured, Measured)> {
    let max = run_wrk(args, url, script_max, None)?;
    let half = (max.rps / 2.0).max(1.0);
    // Each connection waits `delay` before its next request: C / delay ≈ the target rate.
    let delay_ms = f64::from(args.connections) * 1000.0 / half;
    let at_half = run_wrk(args, url, script_half, Some(delay_ms))?;
    Ok((max, at_half))
}

async fn bare_axum() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(|_body: axum::body::Bytes| async {
            axum::Json(json!({"code": true, "message": "success"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn callback_script(targets: &[(String, i64, String)], threads: u32, run: u32) -> String {
    let mut s = format!("local run = {run}\nlocal t = {{\n");
    for (token, order, num) in targets {
        let _ = writeln!(
            s,
            "  {{ {}, {}, {} }},",
            lua_string(&format!("/delivery/tracking_receive?token={token}")),
            lua_string(&format!("OS02:{order}")),
            lua_string(num)
        );
    }
    let _ = write!(
        s,
        "}}\nrequest = function()\n  i = i + 1\n  local n = i * {threads} + tid\n  local r = t[(n % #t) + 1]\n\
         local body = string.format('{{\"fid\":\"%s\",\"invoice_no\":\"%s\",\"level\":\"3\",\"time_trans\":\"2026-12-01 10:00:00\",\"where\":\"hub-%d-%d\",\"details\":\"scan\"}}', r[2], r[3], run, n)\n\
         return wrk.format(\"POST\", r[1], {{[\"Content-Type\"] = \"application/json\"}}, body)\nend\n"
    );
    s
}

fn shopline_script(reports: &[(String, String, String)], threads: u32) -> String {
    let mut s = String::from("local t = {\n");
    for (key, sig, body) in reports {
        let _ = writeln!(
            s,
            "  {{ {}, {}, {} }},",
            lua_string(key),
            lua_string(sig),
            lua_string(body)
        );
    }
    let _ = write!(
        s,
        "}}\nrequest = function()\n  i = i + 1\n  local r = t[((i * {threads} + tid) % #t) + 1]\n\
         return wrk.format(\"POST\", \"/webhooks/shopline/logistics\", {{[\"Content-Type\"] = \"application/json\", \
         [\"pay-api-version\"] = \"1.0.0\", [\"pay-api-idempotency-key\"] = r[1], [\"pay-api-signature\"] = r[2], \
         [\"pay-api-timestamp\"] = ts}}, r[3])\nend\n"
    );
    s
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bare = bare_axum().await?;
    let db = TestDb::create().await?;
    let _sink = RouteSink::bind(&["order.updateExpressInfo"]).await?;
    let private = PrivateKey::from_pkcs8_base64(test_keys::PRIVATE_KEY_PKCS8_B64)?;
    let settings = Settings {
        service_name: format!("tracking-bench-{}", unique_suffix()),
        scheduler: false,
        shopline: Some(ShoplineKeys {
            verifier: VerifierConfig::new(PublicKey::from_spki_base64(
                test_keys::PUBLIC_KEY_SPKI_B64,
            )?),
            our_key: private.clone(),
        }),
        ..Settings::default()
    };
    let topology = orderbus_tracking::topology_for(&settings)?;
    let mut config = Config::local(&settings.service_name);
    config.database_url = Secret::new(db.url());
    config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    config.auth = AuthSettings::open();
    let shutdown = CancellationToken::new();
    let running = orderbus_tracking::start(config, settings, shutdown.clone()).await?;
    let base = format!("http://{}", running.addr());

    // Shipments and their callback tokens.
    let first = 1_000_000_000_000
        + (u64::from_str_radix(&unique_suffix()[..8], 16)? % 1_000_000) as i64 * 10_000;
    let mut targets = Vec::new();
    for k in 0..args.shipments {
        let order = first + k;
        let num = format!("{}", 500_000_000_000 + order % 100_000_000_000);
        sqlx::query(
            "INSERT INTO trk_shipments (order_code, uid, kind, order_status, express_id, carrier_code, waybill, waybill_normalised, source) \
             VALUES ($1, 1, 'delivery', 'OS02', 23, '04', $2, $2, 'erp')",
        )
        .bind(order)
        .bind(&num)
        .execute(db.pool())
        .await?;
        let mut conn = db.pool().acquire().await?;
        let token = orderbus_ingress::CallbackTokens::issue(
            &mut conn,
            "sweettracker",
            Some(&order.to_string()),
        )
        .await?;
        targets.push((token.as_str().to_owned(), order, num));
    }
    // Pre-signed SHOPLINE reports: 6 statuses per waybill, each report its own key, the waybills
    // spread over the shipments' orders (one transaction mapping per order), as a shop's
    // reports are: one order's reports serialise on its shipment rows, different orders don't.
    sqlx::query(
        "INSERT INTO trk_shopline_transactions (channel_order_transaction_id, order_code, uid, express_id) \
         SELECT 'bench-tx-' || k, $1 + k, 1, 23 FROM generate_series(0, $2 - 1) AS k",
    )
    .bind(first)
    .bind(args.shipments)
    .execute(db.pool())
    .await?;
    let statuses = [
        "CREATED",
        "SHIPPED",
        "IN_TRANSIT",
        "ARRIVED",
        "OUT_FOR_DELIVERY",
        "DELIVERED",
    ];
    let mut reports = Vec::with_capacity(args.reports);
    for n in 0..args.reports {
        let waybill = n / statuses.len();
        let order = waybill as i64 % args.shipments.max(1);
        let body =
            json!({ "channelOrderTransactionId": format!("bench-tx-{order}"), "trackingList": [{
            "trackingNo": format!("SL{waybill}"), "site": "https://tracker.example/",
            "trackingStatus": statuses[n % statuses.len()], "carrier": "CJ" }] })
            .to_string();
        let sig = private.sign_body(body.as_bytes())?;
        reports.push((format!("bench-{n}-{}", unique_suffix()), sig, body));
    }
    let ts = chrono::Utc::now().timestamp_micros().to_string();
    let (first_half, second_half) = reports.split_at(reports.len() / 2);
    let shopline_max = format!(
        "ts = {}\n{}",
        lua_string(&ts),
        shopline_script(first_half, args.threads)
    );
    let shopline_half = format!(
        "ts = {}\n{}",
        lua_string(&ts),
        shopline_script(second_half, args.threads)
    );
    let bare_script = "request = function() i = i + 1\n return wrk.format(\"POST\", \"/delivery/tracking_receive\", {[\"Content-Type\"] = \"application/json\"}, '{\"fid\":\"OS02:1\",\"invoice_no\":\"1\",\"level\":\"3\"}') end\n";

    eprintln!("bare axum handler ...");
    let (bare_max, bare_half) = measure(&args, &bare, bare_script, bare_script)?;
    eprintln!("SweetTracker callbacks ...");
    let (cb_max, cb_half) = measure(
        &args,
        &base,
        &callback_script(&targets, args.threads, 1),
        &callback_script(&targets, args.threads, 2),
    )?;
    eprintln!("SHOPLINE reports ...");
    let (sl_max, sl_half) = measure(&args, &base, &shopline_max, &shopline_half)?;
    eprintln!("database floor of a callback ...");
    let floor = callback_floor(
        db.pool(),
        &targets,
        args.connections as usize,
        Duration::from_secs(args.duration_secs),
    )
    .await?;

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM trk_events")
        .fetch_one(db.pool())
        .await?;
    let result = json!({
        "bare_axum": { "max_rps": bare_max.rps, "p99_ms_at_half": bare_half.p99_ms },
        "sweettracker_callbacks": { "max_rps": cb_max.rps, "ratio": cb_max.rps / bare_max.rps, "ratio_to_db_floor": cb_max.rps / floor, "p99_ms_at_half": cb_half.p99_ms, "half_rate_rps": cb_half.rps },
        "callback_db_floor": { "per_s": floor, "ratio_to_bare_axum": floor / bare_max.rps },
        "shopline_reports": { "max_rps": sl_max.rps, "ratio": sl_max.rps / bare_max.rps, "p99_ms_at_half": sl_half.p99_ms, "half_rate_rps": sl_half.rps },
        "events_recorded": events,
        "connections": args.connections, "threads": args.threads, "duration_secs": args.duration_secs,
        "goals": { "ratio": 0.25, "p99_ms": 20.0 },
    });
    println!(
        "tracking webhook ingest (wrk -c {} -t {}, {} s each):",
        args.connections, args.threads, args.duration_secs
    );
    println!("  bare axum handler       {:>9.0} req/s", bare_max.rps);
    println!(
        "  SweetTracker callbacks  {:>9.0} req/s  ratio {:.3}  p99 at half rate {:.1} ms",
        cb_max.rps,
        cb_max.rps / bare_max.rps,
        cb_half.p99_ms
    );
    println!(
        "  SHOPLINE reports        {:>9.0} req/s  ratio {:.3}  p99 at half rate {:.1} ms",
        sl_max.rps,
        sl_max.rps / bare_max.rps,
        sl_half.p99_ms
    );
    println!(
        "  callback DB floor       {:>9.0} /s     ratio {:.3} (the statements alone); callbacks ÷ floor {:.2}",
        floor,
        floor / bare_max.rps,
        cb_max.rps / floor
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)?)?;
    shutdown.cancel();
    running.wait().await?;
    if let Ok(conn) = orderbus_testkit::connect_amqp().await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = topology.remove(&ch, Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
