//! The harness: the Sinopac simulator over real HTTP on 127.0.0.1:0, the payments service in
//! process (one or more replicas on one fresh database) against the real broker, its own queue
//! names, and helpers to read what it wrote.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context};
use orderbus_payments::reconcile::{Reconciler, SweepSettings};
use orderbus_payments::{bank, bank_client, start, topology, PublicUrl, Settings};
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Running, Secret};
use orderbus_sinopac::sim::{SimConfig, Simulator};
use orderbus_testkit::{unique_suffix, TestDb};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(30);

/// The simulated bank on its own port.
pub struct Bank {
    pub sim: Simulator,
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bank {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Fast test defaults: nobody pays unless the test says so, retries every 200 ms.
pub fn sim_config() -> SimConfig {
    SimConfig {
        atm_pay_delay: Duration::from_secs(3600),
        card_pay_delay: None,
        push_retry_interval: Duration::from_millis(200),
        push_max_retries: 5,
        push_timeout: Duration::from_secs(5),
        ..SimConfig::default()
    }
}

pub async fn start_bank(cfg: SimConfig) -> anyhow::Result<Bank> {
    let sim = Simulator::new(cfg);
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let app = sim.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Bank {
        sim,
        base: format!("http://{addr}"),
        task,
    })
}

/// Deletes the service's queues when dropped (also when a test fails half-way).
pub struct BrokerCleanup {
    topology: Option<orderbus_bus::Topology>,
}

impl Drop for BrokerCleanup {
    fn drop(&mut self) {
        let Some(t) = self.topology.take() else {
            return;
        };
        orderbus_testkit::run_cleanup(async move {
            let Ok(conn) = orderbus_testkit::connect_amqp().await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            let _ = t.remove(&ch, Duration::from_millis(500)).await;
            let _ = conn.close(200, "done".into()).await;
        });
    }
}

/// One replica of the service.
pub struct Replica {
    pub base: String,
    pub settings: Settings,
    shutdown: CancellationToken,
    _running: Running,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The service (replicas on one database) and the bank it talks to.
pub struct Harness {
    pub db: TestDb,
    pub bank: Bank,
    pub replicas: Vec<Replica>,
    pub http: reqwest::Client,
    pub settings: Settings,
    /// Order codes this test owns (random, so parallel tests never share one).
    next_code: std::sync::atomic::AtomicI64,
    _cleanup: BrokerCleanup,
}

pub fn api_key() -> anyhow::Result<(String, AuthSettings)> {
    let minted = orderbus_runtime::auth::mint_key(
        "test",
        &[
            "orders:read".to_owned(),
            "payments:write".to_owned(),
            "ops:read".to_owned(),
        ],
    )?;
    let keys = ApiKeys::parse(&minted.entry)?;
    Ok((minted.key, AuthSettings::keys(keys)))
}

pub fn authorized_client(key: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

impl Harness {
    pub async fn start(replicas: usize) -> anyhow::Result<Harness> {
        Self::start_with(replicas, sim_config(), |_| {}).await
    }

    pub async fn start_with(
        replicas: usize,
        sim: SimConfig,
        tweak: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Harness> {
        orderbus_testkit::init_logging();
        let db = TestDb::create().await?;
        let bank = start_bank(sim).await?;
        let mut settings = Settings::local_demo(&bank.base);
        settings.service_name = format!("payments-{}", unique_suffix());
        settings.retry_tiers = vec![Duration::from_millis(200), Duration::from_millis(400)];
        // Tests drive the sweep themselves (Harness::sweep), at chosen instants.
        settings.sweep_enabled = false;
        settings.sweep = SweepSettings {
            after: Duration::ZERO,
            backoff_base: Duration::from_secs(60),
            ..SweepSettings::default()
        };
        tweak(&mut settings);
        let (key, auth) = api_key()?;
        let cleanup = BrokerCleanup {
            topology: Some(topology(&settings)),
        };
        let offset = (u64::from_str_radix(&unique_suffix()[..8], 16)? % 900_000_000) as i64;
        let mut h = Harness {
            db,
            bank,
            replicas: Vec::new(),
            http: authorized_client(&key)?,
            settings,
            next_code: std::sync::atomic::AtomicI64::new(3_000_000_000_000 + offset * 1000),
            _cleanup: cleanup,
        };
        for i in 0..replicas {
            let r = h.start_replica(i, auth.clone()).await?;
            h.replicas.push(r);
        }
        Ok(h)
    }

    async fn start_replica(&self, i: usize, auth: AuthSettings) -> anyhow::Result<Replica> {
        let mut settings = self.settings.clone();
        settings.replica = format!("replica-{i}");
        // Each replica's own URL (the bank is told the first replica's in OrderCreate).
        settings.public_url = PublicUrl::new("http://127.0.0.1:1");
        let mut config = Config::local(&settings.service_name);
        config.database_url = Secret::new(self.db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        config.db_max_connections = 12;
        config.auth = auth;
        let shutdown = CancellationToken::new();
        let running = start(config, settings.clone(), shutdown.clone()).await?;
        let base = format!("http://{}", running.addr());
        settings.public_url.set(base.clone());
        // Ready = consumers declared and consuming (a message published before would be lost).
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = self
                .http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "replica {i} never ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Replica {
            base,
            settings,
            shutdown,
            _running: running,
        })
    }

    pub fn base(&self) -> &str {
        &self.replicas[0].base
    }

    pub fn new_code(&self) -> i64 {
        self.next_code
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// The sweep of replica `i`, to run at chosen instants.
    pub fn reconciler(&self, i: usize) -> anyhow::Result<Reconciler> {
        let s = &self.replicas[i].settings;
        let client = bank_client(&s.bank)?;
        Ok(Reconciler {
            pool: self.db.pool().clone(),
            bank: bank(&client, &s.bank, self.db.pool().clone()),
            settings: s.sweep.clone(),
        })
    }

    /// Publishes `order.submit` for a new order of `amount` (decimal text) and waits until the
    /// service has its payment.
    pub async fn submit(&self, amount: &str) -> anyhow::Result<i64> {
        let code = self.new_code();
        self.submit_code(code, amount, None).await?;
        self.wait_payment(code, |p| p["status"] == "awaiting_method")
            .await?;
        Ok(code)
    }

    pub async fn submit_code(
        &self,
        code: i64,
        amount: &str,
        parent: Option<i64>,
    ) -> anyhow::Result<()> {
        self.submit_with(code, amount, parent, None).await
    }

    /// Publishes an `order.submit`, with `payment_channel` when given.
    pub async fn submit_with(
        &self,
        code: i64,
        amount: &str,
        parent: Option<i64>,
        payment_channel: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut body = json!({
            "uid": 8041518,
            "order_code": code,
            "create_time": chrono::Utc::now().timestamp(),
            "order_amount": amount,
            "shipping_cost": "0.00",
            "delivery_address": {"user_name": "T", "mobile": "13776693005", "province": "P",
                "city": "C", "district": "D", "address": "A", "zip_code": "211100"},
            "goods": [{"product_sku": 1, "product_skn": 2, "warehouse_id": 1, "buy_number": 1,
                "last_price": amount}]
        });
        if let Some(p) = parent {
            body["parent_order_code"] = json!(p);
        }
        if let Some(channel) = payment_channel {
            body["payment_channel"] = json!(channel);
        }
        let publisher = orderbus_testkit::ErpPublisher::connect().await?;
        publisher
            .publish("order.submit", &serde_json::to_vec(&body)?)
            .await?;
        Ok(())
    }

    pub async fn get(&self, code: i64) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}/payments/{code}", self.base()))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Polls GET until `pred` holds (bounded by [`WAIT`]).
    pub async fn wait_payment(
        &self,
        code: i64,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.get(code).await?;
            if status == 200 && pred(&body) {
                return Ok(body);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!(
                    "payment {code} never reached the state; last: {status} {body}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POST /payments/{code} with a method.
    pub async fn choose(&self, code: i64, method: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/payments/{code}", self.base()))
            .json(&json!({ "method": method }))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// The OrderNo of the current attempt in a POST reply.
    pub fn order_no(reply: &Value) -> anyhow::Result<String> {
        reply["current"]["order_no"]
            .as_str()
            .map(str::to_owned)
            .context("no current.order_no in the reply")
    }

    /// The PayToken the simulator minted when it paid `order_no`.
    pub fn pay_token(&self, order_no: &str) -> anyhow::Result<String> {
        let view = self.bank.sim.order(order_no).context("no such sim order")?;
        match view.state {
            orderbus_sinopac::sim::PayState::Paid { pay_token, .. } => Ok(pay_token),
            other => Err(anyhow!("{order_no} is not paid: {other:?}")),
        }
    }

    /// `order.payment` rows in the outbox for an order (what will be published).
    pub async fn payments_published(&self, code: i64) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orderbus_outbox WHERE routing_key = 'order.payment' AND correlation_id = $1",
        )
        .bind(code.to_string())
        .fetch_one(self.db.pool())
        .await?;
        Ok(n)
    }

    /// POST a notification to replica `i`: JSON (BackendURL) or form (ReturnURL).
    pub async fn notify(&self, i: usize, token: &str, via_return: bool) -> anyhow::Result<u16> {
        let note = json!({"ShopNo": self.settings.bank.shop_no, "PayToken": token});
        let base = &self.replicas[i].base;
        let r = if via_return {
            self.http
                .post(format!("{base}/sinopac/return"))
                .form(&[
                    ("ShopNo", self.settings.bank.shop_no.as_str()),
                    ("PayToken", token),
                ])
                .send()
                .await?
        } else {
            self.http
                .post(format!("{base}/sinopac/backend"))
                .json(&note)
                .send()
                .await?
        };
        Ok(r.status().as_u16())
    }
}
