//! The harness: the ops service in process on 127.0.0.1:0 against a fresh database and the
//! real broker. The journal reads a private topic exchange of the test (its alternate exchange
//! is the test's unrouted exchange), so parallel tests, and other engineers' tests on the same
//! broker, neither see nor disturb each other's traffic (an alternate-exchange policy on the
//! shared `amq.topic` would change every other test's `mandatory` results).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use deadpool_lapin::lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use deadpool_lapin::lapin::types::{AMQPValue, FieldTable, LongString};
use deadpool_lapin::lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use orderbus_ops::{start, Settings};
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Running, Secret};
use orderbus_testkit::{unique_suffix, TestDb};
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` until it returns `Some`, for at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct Ops {
    db: Option<TestDb>,
    pub base: String,
    pub http: reqwest::Client,
    pub settings: Settings,
    /// The private topic exchange the journal reads (stands in for amq.topic).
    pub exchange: String,
    shutdown: CancellationToken,
    running: Option<Running>,
    /// A key with `ops:report` (the monitoring intake).
    pub erp_key: String,
    /// Keep the queues when dropped (a restart follows).
    keep_broker: bool,
}

/// Keys of the harness: `ops:read`+`ops:replay` for the API, `ops:report` for the intake.
pub struct Keys {
    pub admin: String,
    pub erp: String,
    pub settings: AuthSettings,
}

pub fn keys() -> anyhow::Result<Keys> {
    let admin =
        orderbus_runtime::auth::mint_key("ops-admin", &["ops:read".into(), "ops:replay".into()])?;
    let erp = orderbus_runtime::auth::mint_key("erp", &["ops:report".into()])?;
    let entries = format!("{}\n{}", admin.entry, erp.entry);
    Ok(Keys {
        admin: admin.key,
        erp: erp.key,
        settings: AuthSettings::keys(ApiKeys::parse(&entries)?),
    })
}

impl Ops {
    /// Starts ops with a private exchange; `tweak` may change the settings.
    pub async fn start(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Ops> {
        let db = TestDb::create().await?;
        Self::start_on(db, tweak).await
    }

    pub async fn start_on(db: TestDb, tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Ops> {
        let sfx = unique_suffix();
        let exchange = format!("ops-test-{sfx}.topic");
        let mut settings = Settings::local(&orderbus_testkit::amqp_url());
        settings.journal.exchange = exchange.clone();
        settings.journal.journal_queue = format!("ops-test-{sfx}.journal");
        settings.journal.unrouted_exchange = format!("ops-test-{sfx}.unrouted");
        settings.journal.unrouted_queue = format!("ops-test-{sfx}.unrouted");
        settings.parking_services = Vec::new();
        settings.peers = Vec::new();
        settings.reconcile_every = Duration::from_millis(200);
        tweak(&mut settings);
        Self::start_with(db, settings).await
    }

    /// Starts ops with exactly these settings (a restart keeps its queues and database).
    pub async fn start_with(db: TestDb, settings: Settings) -> anyhow::Result<Ops> {
        let exchange = settings.journal.exchange.clone();
        if exchange != "amq.topic" {
            declare_topic(&exchange, &settings.journal.unrouted_exchange).await?;
        }
        Self::launch(db, settings, exchange).await
    }

    async fn launch(db: TestDb, settings: Settings, exchange: String) -> anyhow::Result<Ops> {
        let mut config = Config::local("ops");
        config.database_url = Secret::new(db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        config.db_max_connections = 10;
        config.run_relay = false;
        let k = keys()?;
        config.auth = k.settings.clone();
        let shutdown = CancellationToken::new();
        let running = start(config, settings.clone(), shutdown.clone()).await?;
        let base = format!("http://{}", running.addr());
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", k.admin).parse()?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        let ops = Ops {
            db: Some(db),
            base,
            http,
            settings,
            exchange,
            shutdown,
            running: Some(running),
            keep_broker: false,
            erp_key: k.erp.clone(),
        };
        eventually("ops ready", || async {
            let r = ops
                .http
                .get(format!("{}/readyz", ops.base))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(ops)
    }

    /// Stops the service (drain) and gives back its database.
    pub async fn stop(mut self) -> anyhow::Result<(TestDb, Settings)> {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await?;
        }
        self.keep_broker = true;
        let db = self
            .db
            .take()
            .ok_or_else(|| anyhow::anyhow!("stopped twice"))?;
        Ok((db, self.settings.clone()))
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.db
            .as_ref()
            .map(TestDb::pool)
            .expect("the harness holds its database until stop")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.http.get(self.url(path)).send().await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.http.post(self.url(path)).json(body).send().await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn journal_rows(&self) -> anyhow::Result<i64> {
        Ok(orderbus_ops::store::journal_count(self.pool(), false).await?)
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if self.keep_broker {
            return;
        }
        let j = self.settings.journal.clone();
        orderbus_testkit::run_cleanup(async move {
            let Ok(conn) = orderbus_testkit::connect_amqp().await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            for q in [&j.journal_queue, &j.unrouted_queue] {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for x in [&j.exchange, &j.unrouted_exchange] {
                if x != "amq.topic" {
                    let _ = ch
                        .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
            }
            let _ = conn.close(200, "done".into()).await;
        });
    }
}

/// Declares the private topic exchange with its alternate exchange (as the deploy policy
/// does for amq.topic).
async fn declare_topic(exchange: &str, alternate: &str) -> anyhow::Result<()> {
    let conn = orderbus_testkit::connect_amqp().await?;
    let ch = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(LongString::from(alternate)),
    );
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        args,
    )
    .await?;
    let _ = conn.close(200, "declared".into()).await;
    Ok(())
}

/// Publishes on an exchange with confirms (not mandatory: the ERP does not set it).
pub struct Publisher {
    _conn: Connection,
    ch: Channel,
    exchange: String,
}

impl Publisher {
    pub async fn to(exchange: &str) -> anyhow::Result<Publisher> {
        let conn = orderbus_testkit::connect_amqp().await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Publisher {
            _conn: conn,
            ch,
            exchange: exchange.to_owned(),
        })
    }

    pub async fn publish(
        &self,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> anyhow::Result<()> {
        let confirm = self
            .ch
            .basic_publish(
                self.exchange.as_str().into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack(), "publish of {key} not confirmed");
        Ok(())
    }
}

/// ERP-like properties with a fresh message id and a traceparent.
pub fn props(trace: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(LongString::from(
            format!("00-{trace}-00f067aa0ba902b7-01").as_str(),
        )),
    );
    orderbus_testkit::erp_properties()
        .with_timestamp(chrono::Utc::now().timestamp() as u64)
        .with_headers(headers)
}

/// A random 32-hex trace id.
pub fn trace_id() -> String {
    format!("{}{}{}", unique_suffix(), unique_suffix(), unique_suffix())[..32].to_owned()
}

/// An order code no other test uses.
pub fn order_code() -> anyhow::Result<i64> {
    let s = unique_suffix();
    let n = u64::from_str_radix(&s[..12], 16).context("suffix")? % 900_000_000_000;
    Ok(100_000_000_000 + n as i64)
}

/// The storefront in process (its own database and queue prefix), with one key holding
/// orders:read, orders:write and ops:read (ops presents it for the timeline).
pub struct Storefront {
    pub db: TestDb,
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
    pub settings: orderbus_storefront::Settings,
    shutdown: CancellationToken,
    _running: Running,
    _erp: orderbus_testkit::RouteSink,
}

impl Storefront {
    pub async fn start() -> anyhow::Result<Storefront> {
        let db = TestDb::create().await?;
        let settings = orderbus_storefront::Settings {
            service_name: format!("storefront-{}", unique_suffix()),
            sweep_interval: None,
            retry_tiers: vec![Duration::from_millis(200), Duration::from_millis(400)],
            ..orderbus_storefront::Settings::default()
        };
        let minted = orderbus_runtime::auth::mint_key(
            "ops-test",
            &[
                "orders:read".into(),
                "orders:write".into(),
                "ops:read".into(),
            ],
        )?;
        let mut config = Config::local(&settings.service_name);
        config.database_url = Secret::new(db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        config.db_max_connections = 12;
        config.auth = AuthSettings::keys(ApiKeys::parse(&minted.entry)?);
        // The ERP's bindings (the storefront's outgoing keys are routable, as in production).
        let erp_keys: Vec<&str> = orderbus_contracts::RoutingKey::ALL
            .iter()
            .filter(|k| k.subscribers().contains(&orderbus_contracts::Party::Erp))
            .map(|k| k.as_str())
            .collect();
        let erp = orderbus_testkit::RouteSink::bind(&erp_keys).await?;
        let shutdown = CancellationToken::new();
        let running =
            orderbus_storefront::start(config, settings.clone(), shutdown.clone()).await?;
        let base = format!("http://{}", running.addr());
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", minted.key).parse()?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        let sf = Storefront {
            db,
            base,
            key: minted.key,
            http,
            settings,
            shutdown,
            _running: running,
            _erp: erp,
        };
        eventually("storefront ready", || async {
            let r = sf
                .http
                .get(format!("{}/readyz", sf.base))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(sf)
    }

    /// The next orders get codes from `start` on.
    pub async fn codes_from(&self, start: i64) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {start}"
        )))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn create_order(&self, uid: i64, traceparent: Option<&str>) -> anyhow::Result<i64> {
        let body = serde_json::json!({
            "uid": uid,
            "items": [{"product_sku": 892152, "product_skn": 51152761, "warehouse_id": 1,
                       "quantity": 2, "unit_price": "88.00"}],
            "shipping_cost": "10.00",
            "delivery_address": {
                "user_name": "朱倩倩", "mobile": "15258109727", "province": "浙江省",
                "city": "宁波市", "district": "象山县", "address": "靖南大街688-10号2楼",
                "zip_code": "315700", "area_code": "330225", "email": "canvas220@sina.com"
            }
        });
        let mut req = self.http.post(format!("{}/orders", self.base)).json(&body);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let r = req.send().await?;
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or_default();
        anyhow::ensure!(s == 201, "create order: {s} {v}");
        v["order_code"].as_i64().context("order_code in the answer")
    }

    /// Timeline rows of `event` for the order in the storefront's own table.
    pub async fn events(&self, code: i64, event: &str) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM order_timeline WHERE order_code = $1 AND event = $2 AND applied",
        )
        .bind(code)
        .bind(event)
        .fetch_one(self.db.pool())
        .await?;
        Ok(n)
    }
}

impl Drop for Storefront {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let topology = orderbus_storefront::topology(&self.settings);
        orderbus_testkit::run_cleanup(async move {
            let Ok(conn) = orderbus_testkit::connect_amqp().await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            let _ = topology.remove(&ch, Duration::from_millis(500)).await;
            let _ = conn.close(200, "done".into()).await;
        });
    }
}

/// Ready messages in a queue (passive declare).
pub async fn depth(queue: &str) -> anyhow::Result<u32> {
    let conn = orderbus_testkit::connect_amqp().await?;
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
    let _ = conn.close(200, "done".into()).await;
    Ok(q.message_count())
}
