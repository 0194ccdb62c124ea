//! The harness: the fulfilment service in process on 127.0.0.1:0 against a fresh database, the
//! real broker (own queue names) and the Frotel simulator's three mirrors over real HTTP.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context};
use orderbus_frotel::sim::{SimConfig, Simulator};
use orderbus_frotel::ClientConfig;
use orderbus_fulfilment::{start, topology, Mapping, Settings};
use orderbus_runtime::auth::{mint_key, OPS_READ, OPS_REPLAY, ORDERS_READ, ORDERS_WRITE};
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Running, Secret};
use orderbus_testkit::{unique_suffix, ErpPublisher, Received, RouteSink, TestDb, TestQueue};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(40);
/// Where the service tells the bank to send the customer back; the tests play the browser and
/// follow that address to the harness.
pub const PUBLIC_BASE: &str = "http://shop.test";
pub const API_KEY: &str = "sim-api-key";

pub struct Harness {
    pub db: TestDb,
    pub base: String,
    pub http: reqwest::Client,
    pub sim: Simulator,
    /// The harness' own Frotel warehouse ids (unique per harness: every test's consumers see
    /// every test's order.submit).
    pub wh: Warehouses,
    pub erp: ErpPublisher,
    shutdown: CancellationToken,
    running: Option<Running>,
    _cleanup: Cleanup,
    _routes: RouteSink,
}

/// Warehouse ids of the harness' mapping.
#[derive(Clone, Copy, Debug)]
pub struct Warehouses {
    /// پیشتاز, physical, default weight 200 g.
    pub plain: i64,
    /// Cheetah parcel.
    pub cheetah_parcel: i64,
    /// Cheetah envelope.
    pub cheetah_envelope: i64,
    /// Cheetah envelope without its envelope type (invalid).
    pub cheetah_broken: i64,
    /// Whole-order free shipping.
    pub free: i64,
    /// Free shipping from 1 000 000 Rial.
    pub free_above: i64,
    /// Virtual goods.
    pub virtual_goods: i64,
    /// Services.
    pub services: i64,
    /// Physical, no default weight.
    pub bare: i64,
}

/// Deletes a service's queues and tier exchanges when dropped.
pub struct Cleanup(Option<orderbus_bus::Topology>);

impl Cleanup {
    pub fn of(topology: orderbus_bus::Topology) -> Cleanup {
        Cleanup(Some(topology))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(t) = self.0.take() else { return };
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

/// SKUs the mapping knows (unique enough: the mapping is per harness anyway).
pub const SKU_FREE: i64 = 7001;
pub const SKU_NOT_FREE: i64 = 7002;
pub const SKU_VIRTUAL: i64 = 7003;
pub const SKU_SERVICE: i64 = 7004;
pub const SKU_NO_WEIGHT: i64 = 7005;

fn mapping(w: &Warehouses) -> Mapping {
    let text = format!(
        r#"
rial_per_unit = 1
default_gender = 1
express_id = 90

[warehouses."{plain}"]
send_type = 1
default_weight_g = 200

[warehouses."{parcel}"]
send_type = 11
default_weight_g = 500
cheetah = {{ package_type = 1, category_section = 2, length_cm = 30, width_cm = 20, height_cm = 10 }}

[warehouses."{envelope}"]
send_type = 11
default_weight_g = 100
cheetah = {{ package_type = 2, envelopes_type = 901 }}

[warehouses."{broken}"]
send_type = 11
default_weight_g = 100
cheetah = {{ package_type = 2 }}

[warehouses."{free}"]
send_type = 2
default_weight_g = 200
free_send = true

[warehouses."{above}"]
send_type = 2
default_weight_g = 200
free_send_above_rial = 1000000

[warehouses."{virt}"]
kind = "virtual"

[warehouses."{serv}"]
kind = "service"

[warehouses."{bare}"]
send_type = 2

[skus."{SKU_FREE}"]
name = "کتاب"
weight_g = 300
free_send = true

[skus."{SKU_NOT_FREE}"]
name = "لیوان"
weight_g = 400
free_send = false

[skus."{SKU_VIRTUAL}"]
kind = "virtual"
pro_code = "ebook-1"
name = "کتاب الکترونیکی"

[skus."{SKU_SERVICE}"]
kind = "service"
name = "نصب"

[skus."{SKU_NO_WEIGHT}"]
name = "بی‌وزن"

[cities."تهران"]
province = 8
city = 301

[cities."Tehran"]
province = 8
city = 301
"#,
        plain = w.plain,
        parcel = w.cheetah_parcel,
        envelope = w.cheetah_envelope,
        broken = w.cheetah_broken,
        free = w.free,
        above = w.free_above,
        virt = w.virtual_goods,
        serv = w.services,
        bare = w.bare,
    );
    match Mapping::parse(&text, "harness.toml") {
        Ok(m) => m,
        Err(e) => panic!("harness mapping: {e}"),
    }
}

pub fn api_key() -> anyhow::Result<(String, AuthSettings)> {
    let minted = mint_key(
        "tests",
        &[
            ORDERS_READ.into(),
            ORDERS_WRITE.into(),
            OPS_READ.into(),
            OPS_REPLAY.into(),
        ],
    )?;
    Ok((
        minted.key,
        AuthSettings::keys(ApiKeys::parse(&minted.entry)?),
    ))
}

impl Harness {
    pub async fn start() -> anyhow::Result<Harness> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Harness> {
        orderbus_testkit::init_logging();
        let db = TestDb::create().await?;
        let sim = Simulator::new(SimConfig {
            api_key: API_KEY.into(),
            ..SimConfig::default()
        });
        let mirrors = sim.spawn_local().await?;
        let seed = (u64::from_str_radix(&unique_suffix()[..8], 16)? % 90_000) as i64;
        let base_wh = 80_000_000 + seed * 10;
        let wh = Warehouses {
            plain: base_wh,
            cheetah_parcel: base_wh + 1,
            cheetah_envelope: base_wh + 2,
            cheetah_broken: base_wh + 3,
            free: base_wh + 4,
            free_above: base_wh + 5,
            virtual_goods: base_wh + 6,
            services: base_wh + 7,
            bare: base_wh + 8,
        };
        let mut frotel = ClientConfig::new(API_KEY);
        frotel.mirrors = mirrors.clone();
        frotel.connect_timeout = Duration::from_millis(500);
        frotel.read_timeout = Duration::from_secs(3);
        frotel.request_timeout = Duration::from_secs(5);
        frotel.unhealthy_for = Duration::from_secs(30);
        let mut settings = Settings {
            service_name: format!("fulfilment-{}", unique_suffix()),
            frotel,
            mapping: mapping(&wh),
            public_base_url: PUBLIC_BASE.into(),
            register_interval: Duration::from_millis(100),
            register_retry_base: Duration::from_millis(300),
            register_retry_cap: Duration::from_secs(1),
            check_interval: Duration::from_millis(100),
            check_retry_base: Duration::from_millis(200),
            check_retry_cap: Duration::from_secs(1),
            tracking_interval: Duration::from_secs(1),
            tracking_backoff_cap: Duration::from_secs(2),
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
        let cleanup = Cleanup(Some(topology(&settings)));
        let routes = RouteSink::bind(&[
            "order.payment",
            "order.erpstatus",
            "order.updateExpressInfo",
        ])
        .await?;
        let shutdown = CancellationToken::new();
        let running = start(config, settings.clone(), shutdown.clone()).await?;
        let base = format!("http://{}", running.addr());
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse()?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let h = Harness {
            db,
            base,
            http,
            sim,
            wh,
            erp: ErpPublisher::connect().await?,
            shutdown,
            running: Some(running),
            _cleanup: cleanup,
            _routes: routes,
        };
        eventually("service ready", || async {
            let r = h.http.get(h.url("/readyz")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(h)
    }

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

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.http.get(self.url(path)).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.http.post(self.url(path)).json(body).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn order(&self, code: i64) -> anyhow::Result<Value> {
        let (s, v) = self.get(&format!("/fulfilment/orders/{code}")).await?;
        anyhow::ensure!(s == 200, "GET order {code}: {s} {v}");
        Ok(v)
    }

    /// Waits until the order's `state` is `state`.
    pub async fn wait_state(&self, code: i64, state: &str) -> anyhow::Result<Value> {
        eventually(&format!("order {code} {state}"), || async {
            let (s, v) = self.get(&format!("/fulfilment/orders/{code}")).await.ok()?;
            (s == 200 && v["state"] == state).then_some(v)
        })
        .await
    }

    /// Publishes `order.submit` as the storefront does.
    pub async fn submit(&self, body: &Value) -> anyhow::Result<()> {
        self.erp
            .publish("order.submit", body.to_string().as_bytes())
            .await
            .context("publish order.submit")
    }

    /// Outbox rows the service wrote for `routing_key` and order `code`.
    pub async fn outbox_count(&self, routing_key: &str, code: i64) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orderbus_outbox WHERE routing_key = $1 AND correlation_id = $2",
        )
        .bind(routing_key)
        .bind(code.to_string())
        .fetch_one(self.db.pool())
        .await?;
        Ok(n)
    }

    /// Simulator orders registered for our order code (`shop_barcode`) or, for virtual and
    /// service orders (no shop_barcode), every order.
    pub fn sim_orders_for(&self, code: i64) -> Vec<orderbus_frotel::sim::SimOrder> {
        let code = code.to_string();
        self.sim
            .orders()
            .into_iter()
            .filter(|o| o.shop_barcode.as_deref() == Some(code.as_str()))
            .collect()
    }

    /// The registered factor id of an order.
    pub async fn factor(&self, code: i64) -> anyhow::Result<String> {
        let v = self.wait_state(code, "registered").await?;
        v["factor_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no factor_id string: {v}"))
    }

    /// Plays the customer's browser: the pay form, the bank (success or fail), back to our
    /// callback. Returns the callback URL (to replay it) and the callback's status.
    pub async fn pay(&self, code: i64, bank: i64, success: bool) -> anyhow::Result<(String, u16)> {
        let r = self
            .http
            .get(self.url(&format!("/fulfilment/orders/{code}/pay?bank={bank}")))
            .send()
            .await?;
        let status = r.status().as_u16();
        let html = r.text().await?;
        anyhow::ensure!(status == 200, "pay form: {status} {html}");
        let form = orderbus_frotel::PaymentForm { html };
        let action = form
            .action_url()
            .ok_or_else(|| anyhow!("form without action"))?;
        let mut fields = form.fields();
        fields.push((
            "outcome".into(),
            if success { "success" } else { "fail" }.into(),
        ));
        let bank = self.http.post(&action).form(&fields).send().await?;
        anyhow::ensure!(
            bank.status().is_redirection(),
            "bank answered {}",
            bank.status()
        );
        let location = bank
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("bank redirect without Location"))?
            .to_owned();
        let back = location.replacen(PUBLIC_BASE, &self.base, 1);
        let s = self.http.get(&back).send().await?.status().as_u16();
        Ok((back, s))
    }
}

/// An `order.submit` body for warehouse `wh`.
pub fn submit_body(code: i64, wh: i64, channel: &str, goods: &[(i64, i64, &str)]) -> Value {
    let goods: Vec<Value> = goods
        .iter()
        .map(|(sku, n, price)| {
            json!({"product_sku": sku, "product_skn": sku * 10, "warehouse_id": wh,
                   "buy_number": n, "last_price": price})
        })
        .collect();
    json!({
        "uid": 5501,
        "order_code": code,
        "create_time": 1764547200,
        "order_amount": "700000.00",
        "shipping_cost": "0.00",
        "delivery_address": {
            "user_name": "Ali Rezaei", "mobile": "09121234567", "province": "Tehran",
            "city": "تهران", "district": "", "address": "خیابان آزادی ۱۲", "zip_code": "1234567890",
            "email": "ali@example.com"
        },
        "goods": goods,
        "remark": "",
        "payment_channel": channel,
    })
}

/// A fresh order code (unique across parallel tests and runs).
pub fn order_code() -> i64 {
    let n = u64::from_str_radix(&unique_suffix()[..12], 16).unwrap_or(1) % 8_000_000_000_000;
    9_000_000_000_000 + n as i64
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

/// Receives from `q` until a message with `routing_key` matches `pred`.
pub async fn recv_match(
    q: &mut TestQueue,
    routing_key: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Received> {
    q.recv_where(WAIT, |m| m.routing_key == routing_key && pred(&m.json()))
        .await
        .map_err(|e| anyhow!("no {routing_key} message matched: {e}"))
}
