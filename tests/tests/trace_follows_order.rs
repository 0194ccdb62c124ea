//! One trace id follows an order across services: the storefront's `request` span for
//! `POST /orders` (continuing the caller's `traceparent`), the erp-sim consumer handling the
//! `order.submit` it enqueued, and the storefront consumer applying the ERP's answer. The JSON
//! log lines of all three (captured in memory, in the production format) carry that id.
//!
//! The consumer side relies on the bus opening a `message` span with a `trace_id` field for
//! every delivery and running the handler in the delivery's trace context.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use common::{api_key, authorized_client};
use orderbus_bus::TraceContext;
use orderbus_erp_sim::{ErpSim, SimConfig};
use orderbus_runtime::{CancellationToken, Config, Secret};
use orderbus_storefront::Settings;
use orderbus_testkit::{amqp_url, unique_suffix, TestDb};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const WAIT: Duration = Duration::from_secs(60);

/// The process's log output, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The spans a line was logged in (`spans`, outermost first, plus `span`).
fn spans(line: &Value) -> Vec<&Value> {
    let mut all: Vec<&Value> = line["spans"].as_array().into_iter().flatten().collect();
    if line["span"].is_object() {
        all.push(&line["span"]);
    }
    all
}

fn in_span(line: &Value, name: &str, trace_id: &str) -> bool {
    spans(line)
        .iter()
        .any(|s| s["name"] == name && s["trace_id"] == trace_id)
}

/// A line of `service` (by its code's target or its queue names) inside a `message` span of
/// the trace.
fn consumer_line(line: &Value, trace_id: &str, target: &str, service: &str) -> bool {
    in_span(line, "message", trace_id)
        && (line["target"]
            .as_str()
            .is_some_and(|t| t.starts_with(target))
            || line.to_string().contains(&format!("{service}.")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_from_the_request_through_both_services() -> anyhow::Result<()> {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "info,orderbus_bus=debug,orderbus_storefront=debug,orderbus_erp_sim=debug",
        ))
        .with(orderbus_runtime::json_layer(move || writer.clone()))
        .try_init()
        .map_err(|e| anyhow!("log capture: {e}"))?;

    let uid = (u64::from_str_radix(&unique_suffix()[..7], 16)? % 100_000_000) as i64 + 1;
    let (sf_db, sim_db) = (TestDb::create().await?, TestDb::create().await?);
    let mut sim_config = SimConfig::for_tests(
        format!("erp-sim-{}", unique_suffix()),
        sim_db.url(),
        amqp_url(),
    );
    sim_config.only_uids = Some(BTreeSet::from([uid]));
    sim_config.auto_pay = true;
    let settings = Settings {
        service_name: format!("storefront-{}", unique_suffix()),
        sweep_interval: None,
        retry_tiers: vec![Duration::from_millis(200)],
        ..Settings::default()
    };
    let topologies = vec![
        orderbus_erp_sim::topology(&sim_config),
        orderbus_storefront::topology(&settings),
    ];
    let sim = ErpSim::start(sim_config.clone()).await?;
    let mut config = Config::local(&settings.service_name);
    config.database_url = Secret::new(sf_db.url());
    config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    config.shutdown_grace = Duration::from_secs(5);
    let (key, auth) = api_key()?;
    config.auth = auth;
    let shutdown = CancellationToken::new();
    let storefront = orderbus_storefront::start(config, settings.clone(), shutdown.clone()).await?;
    let start = 3_000_000_000_000 + uid * 1000;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {start}"
    )))
    .execute(sf_db.pool())
    .await?;
    let base = format!("http://{}", storefront.addr());
    let http = authorized_client(&key)?;

    let outcome = async {
        // The storefront's queues exist before the ERP answers.
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(http.get(format!("{base}/readyz")).send().await, Ok(r) if r.status() == 200)
        {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "storefront never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caller = TraceContext::new_root();
        let trace_id = caller.trace_id().to_owned();
        let body = json!({
            "uid": uid,
            "items": [{ "product_sku": 892152, "product_skn": 51152761, "warehouse_id": 1,
                        "quantity": 1, "unit_price": "88.00" }],
            "shipping_cost": "10.00",
            "delivery_address": { "user_name": "朱倩倩", "mobile": "15258109727",
                "province": "浙江省", "city": "宁波市", "district": "象山县",
                "address": "靖南大街688-10号2楼", "zip_code": "315700" }
        });
        let r = http
            .post(format!("{base}/orders"))
            .header("traceparent", caller.traceparent())
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "create: {}", r.status());
        let created: Value = r.json().await?;
        let code = created["order_code"].as_i64().context("order_code")?;

        // Wait for the ERP's 100 to be applied, then for the three log lines.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let order: Value = http
                .get(format!("{base}/orders/{code}"))
                .send()
                .await?
                .json()
                .await?;
            let audited = order["timeline"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["event"] == "erp_100_audited" && e["applied"] == true);
            if audited {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "order {code} never audited: {order}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut found = (false, false, false);
        while tokio::time::Instant::now() < deadline {
            let lines = captured.lines();
            found = (
                lines.iter().any(|l| {
                    l["span"]["name"] == "request"
                        && l["span"]["trace_id"] == trace_id.as_str()
                        && l["span"]["path"] == "/orders"
                        && l["fields"]["message"] == "request"
                }),
                lines.iter().any(|l| {
                    consumer_line(l, &trace_id, "orderbus_erp_sim", &sim_config.service)
                }),
                lines.iter().any(|l| {
                    consumer_line(l, &trace_id, "orderbus_storefront", &settings.service_name)
                }),
            );
            if found == (true, true, true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(
            found == (true, true, true),
            "trace {trace_id}: (storefront request, erp-sim consumer, storefront consumer) = {found:?}"
        );
        Ok(())
    }
    .await;

    shutdown.cancel();
    let stopped = storefront.wait().await;
    let sim_stopped = sim.shutdown().await;
    cleanup(topologies).await;
    outcome?;
    stopped?;
    sim_stopped?;
    Ok(())
}

async fn cleanup(topologies: Vec<orderbus_bus::Topology>) {
    if let Ok(conn) = orderbus_testkit::connect_amqp().await {
        if let Ok(ch) = conn.create_channel().await {
            for t in &topologies {
                let _ = t.remove(&ch, Duration::from_millis(500)).await;
            }
        }
        let _ = conn.close(200, "done".into()).await;
    }
}
