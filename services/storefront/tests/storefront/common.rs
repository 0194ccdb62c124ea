//! The harness: the storefront in process on 127.0.0.1:0 against a fresh database and the real
//! broker, with its own queue names (`storefront-<random>.*`) so tests run in parallel.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context};
use deadpool_lapin::lapin::options::{BasicAckOptions, BasicConsumeOptions};
use deadpool_lapin::lapin::types::{AMQPValue, FieldTable};
use futures::StreamExt;
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Running, Secret};
use orderbus_storefront::{start, topology, Settings};
use orderbus_testkit::{amqp_url, unique_suffix, Received, RouteSink, TestDb, TestQueue};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Harness {
    pub db: TestDb,
    pub base: String,
    pub http: reqwest::Client,
    /// The API key `http` sends (for requests made without reqwest).
    pub api_key: String,
    pub settings: Settings,
    shutdown: CancellationToken,
    running: Option<Running>,
    _cleanup: BrokerCleanup,
    _erp_routes: RouteSink,
}

/// Deletes the service's queues and tier exchanges when dropped, also when a test fails
/// half-way (`Topology::remove` on a helper thread, like `TestDb`).
pub struct BrokerCleanup {
    topologies: Vec<orderbus_bus::Topology>,
}

impl BrokerCleanup {
    pub fn for_settings(settings: &Settings) -> Self {
        Self::for_topology(topology(settings))
    }

    /// A topology as the test changed it (e.g. sharded).
    pub fn for_topology(topology: orderbus_bus::Topology) -> Self {
        Self {
            topologies: vec![topology],
        }
    }
}

impl Drop for BrokerCleanup {
    fn drop(&mut self) {
        let topologies = std::mem::take(&mut self.topologies);
        orderbus_testkit::run_cleanup(async move {
            let Ok(conn) = orderbus_testkit::connect_amqp().await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            for t in &topologies {
                let _ = t.remove(&ch, Duration::from_millis(500)).await;
            }
            let _ = conn.close(200, "done".into()).await;
        });
    }
}

/// The ERP's subscriptions, as in production: every key the ERP subscribes to is routable, so
/// a test that listens to only some keys does not leave the others pending in the outbox.
pub async fn erp_routes() -> anyhow::Result<RouteSink> {
    let keys: Vec<&str> = orderbus_contracts::RoutingKey::ALL
        .iter()
        .filter(|k| k.subscribers().contains(&orderbus_contracts::Party::Erp))
        .map(|k| k.as_str())
        .collect();
    Ok(RouteSink::bind(&keys).await?)
}

impl Harness {
    pub async fn start() -> anyhow::Result<Harness> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Harness> {
        let db = TestDb::create().await?;
        let mut settings = Settings {
            service_name: format!("storefront-{}", unique_suffix()),
            sweep_interval: None,
            retry_tiers: vec![Duration::from_millis(200), Duration::from_millis(400)],
            ..Settings::default()
        };
        tweak(&mut settings);
        let mut config = Config::local(&settings.service_name);
        config.database_url = Secret::new(db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        config.db_max_connections = 12;
        let (key, auth) = api_key()?;
        config.auth = auth;
        let shutdown = CancellationToken::new();
        let cleanup = BrokerCleanup::for_settings(&settings);
        let erp_routes = erp_routes().await?;
        let running = start(config, settings.clone(), shutdown.clone()).await?;
        let base = format!("http://{}", running.addr());
        // Codes unique across parallel tests: every test's consumers see every test's messages.
        let offset = (u64::from_str_radix(&unique_suffix()[..8], 16)? % 900_000_000) as i64;
        let code_start = 1_000_000_000_000 + offset * 1000;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {code_start}"
        )))
        .execute(db.pool())
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_after_sale_id_seq RESTART WITH {code_start}"
        )))
        .execute(db.pool())
        .await?;
        let h = Harness {
            db,
            base,
            http: authorized_client(&key)?,
            api_key: key,
            settings,
            shutdown,
            running: Some(running),
            _cleanup: cleanup,
            _erp_routes: erp_routes,
        };
        h.wait_ready().await?;
        Ok(h)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        ready_at(&self.http, &self.base).await
    }

    /// Drains the service; its queues and tier exchanges go when the harness is dropped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await?;
        }
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.http.post(self.url(path)).json(body).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post_key(
        &self,
        path: &str,
        key: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(self.url(path))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.http.get(self.url(path)).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn order(&self, code: i64) -> anyhow::Result<Value> {
        let (s, v) = self.get(&format!("/orders/{code}")).await?;
        anyhow::ensure!(s == 200, "GET order {code}: {s} {v}");
        Ok(v)
    }

    pub async fn status(&self, code: i64) -> anyhow::Result<String> {
        Ok(self.order(code).await?["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Creates an order from one warehouse; returns its code.
    pub async fn create_order(&self, uid: i64) -> anyhow::Result<i64> {
        let (s, v) = self.post("/orders", &order_body(uid, &[1])).await?;
        anyhow::ensure!(s == 201, "create: {s} {v}");
        v["order_code"].as_i64().context("order_code")
    }

    /// Sets an order's status directly (test setup for states reached through the ERP).
    pub async fn force_status(&self, code: i64, status: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE orders SET status = $2 WHERE order_code = $1")
            .bind(code)
            .bind(status)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Timeline entries of an order (from the API).
    pub async fn timeline(&self, code: i64) -> anyhow::Result<Vec<Value>> {
        Ok(self.order(code).await?["timeline"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until the order's timeline has an entry for `event` from `source`; returns it.
    pub async fn wait_entry(&self, code: i64, source: &str, event: &str) -> anyhow::Result<Value> {
        eventually(&format!("timeline {code} {source} {event}"), || async {
            self.timeline(code)
                .await
                .ok()?
                .into_iter()
                .find(|e| e["source"] == source && e["event"] == event)
        })
        .await
    }

    pub async fn outbox_count(&self, routing_key: &str) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM orderbus_outbox WHERE routing_key = $1")
                .bind(routing_key)
                .fetch_one(self.db.pool())
                .await?,
        )
    }

    pub fn parking_queue(&self) -> String {
        topology(&self.settings).parking_queue()
    }
}

pub fn order_body(uid: i64, warehouses: &[i64]) -> Value {
    let items: Vec<Value> = warehouses
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({
                "product_sku": 892152 + i as i64,
                "product_skn": 51152761,
                "warehouse_id": w,
                "quantity": 2,
                "unit_price": "88.00"
            })
        })
        .collect();
    json!({
        "uid": uid,
        "items": items,
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

/// A key with the storefront's scopes and the settings that accept it.
pub fn api_key() -> anyhow::Result<(String, AuthSettings)> {
    use orderbus_runtime::auth::{mint_key, ORDERS_READ, ORDERS_WRITE};
    let minted = mint_key("tests", &[ORDERS_READ.into(), ORDERS_WRITE.into()])?;
    Ok((
        minted.key,
        AuthSettings::keys(ApiKeys::parse(&minted.entry)?),
    ))
}

/// An HTTP client sending `Authorization: Bearer <key>` with every request.
pub fn authorized_client(key: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// Polls `probe` until it yields a value; [`WAIT`] is only an upper bound.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!("gave up waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Receives from `q` until a message with `routing_key` matches `pred` (other tests publish
/// on the same keys); messages it passes over stay held for later calls.
pub async fn recv_match(
    q: &mut TestQueue,
    routing_key: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Received> {
    q.recv_where(WAIT, |m| m.routing_key == routing_key && pred(&m.json()))
        .await
        .map_err(|e| anyhow!("no {routing_key} message matched: {e}"))
}

/// Validates a published body against the committed schema of its routing key.
pub fn assert_schema(m: &Received) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(format!("{}.schema.json", m.routing_key));
    let text = std::fs::read_to_string(&path).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let body = m.json();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{} body {body} fails its schema: {errors:?}",
        m.routing_key
    );
}

/// A parked message: its reason header and body.
pub struct Parked {
    pub reason: String,
    pub routing_key: String,
    pub body: Value,
}

/// Reads the service's parking queue until a message matches `pred`.
pub async fn wait_parked(h: &Harness, pred: impl Fn(&Parked) -> bool) -> anyhow::Result<Parked> {
    let conn = orderbus_testkit::connect_amqp().await?;
    let ch = conn.create_channel().await?;
    let queue = h.parking_queue();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            format!("test-{}", unique_suffix()).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let header = |t: &FieldTable, name: &str| match t.inner().get(name) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    };
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let next = tokio::time::timeout(left, consumer.next())
            .await
            .map_err(|_| anyhow!("nothing matching was parked in {queue}"))?;
        let d = next.context("parking consumer ended")??;
        d.ack(BasicAckOptions::default()).await?;
        let headers = d.properties.headers().clone().unwrap_or_default();
        let p = Parked {
            reason: header(&headers, orderbus_bus::HEADER_PARK_REASON),
            routing_key: header(&headers, orderbus_bus::HEADER_ROUTING_KEY),
            body: serde_json::from_slice(&d.data)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&d.data))),
        };
        if pred(&p) {
            let _ = conn.close(200, "done".into()).await;
            return Ok(p);
        }
    }
}

/// The storefront binary, as production runs it.
const BIN: &str = env!("CARGO_BIN_EXE_orderbus-storefront");
/// Shutdown grace of a spawned [`Process`].
pub const GRACE_SECS: u64 = 10;

/// One storefront process; killed (SIGKILL) if a failing test drops it still running.
pub struct Process {
    pub child: Child,
    pub base: String,
}

impl Process {
    /// Starts the built binary on a free port; `env` adds or overrides settings.
    pub fn spawn(service_name: &str, db: &TestDb, env: &[(&str, &str)]) -> anyhow::Result<Process> {
        // A free port: bind :0, read it, release it (the child binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(BIN)
            .args(["--service-name", service_name, "--sweep-interval-secs", "0"])
            .env("ORDERBUS_AMQP_URL", amqp_url())
            .env("ORDERBUS_DATABASE_URL", db.url())
            .env("ORDERBUS_HTTP_ADDR", "127.0.0.1")
            .env("ORDERBUS_HTTP_PORT", port.to_string())
            .env("ORDERBUS_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string())
            .env("RUST_LOG", "warn")
            .env("ORDERBUS_AUTH", "open")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("storefront binary")?;
        Ok(Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    pub async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        ready_at(http, &self.base).await
    }

    /// `n` orders of `uid` created through this process's `POST /orders`, then marked paid.
    /// Their codes start at `code_base` plus a random offset: no other test uses them (every
    /// storefront under test consumes every test's ERP events).
    pub async fn paid_orders(
        &self,
        db: &TestDb,
        http: &reqwest::Client,
        uid: i64,
        n: usize,
        code_base: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let offset = (u64::from_str_radix(&unique_suffix()[..8], 16)? % 900_000_000) as i64;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {}",
            code_base + offset * 1000
        )))
        .execute(db.pool())
        .await?;
        let mut codes = Vec::with_capacity(n);
        for _ in 0..n {
            let r = http
                .post(format!("{}/orders", self.base))
                .json(&order_body(uid, &[1]))
                .send()
                .await?;
            anyhow::ensure!(r.status() == 201, "create: {}", r.status());
            let v: Value = r.json().await?;
            codes.push(v["order_code"].as_i64().context("order_code")?);
        }
        sqlx::query("UPDATE orders SET status = 'paid' WHERE order_code = ANY($1)")
            .bind(&codes)
            .execute(db.pool())
            .await?;
        Ok(codes)
    }

    /// Sends SIGTERM and waits for the exit; returns how long it took.
    pub async fn terminate(&mut self) -> anyhow::Result<Duration> {
        let (status, took) = orderbus_testkit::process::sigterm_and_wait(
            &mut self.child,
            Duration::from_secs(GRACE_SECS + 10),
        )
        .await?;
        anyhow::ensure!(status.success(), "exit status after SIGTERM: {status}");
        Ok(took)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the service at `base` answers `/readyz` with success.
async fn ready_at(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    eventually("service ready", || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await
}
