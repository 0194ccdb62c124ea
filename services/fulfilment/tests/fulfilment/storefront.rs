//! With the storefront in process: its orders of a Frotel warehouse end `delivered` from
//! Frotel's tracking (order.erpstatus 600/700), and `paid` from Frotel's bank payment.
//!
//! The storefront's checkout sends `payment_channel` `gateway` only, so its own order.submit is
//! the paid-to-seller path (registered after order.payment). For COD and Frotel's bank, the test
//! creates the storefront order on a non-Frotel warehouse and publishes the order.submit that a
//! checkout with `payment_channel` would publish for it (as `scripts/demo-frotel.sh` does).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use orderbus_runtime::{CancellationToken, Config, Secret};
use orderbus_testkit::{unique_suffix, TestDb};
use serde_json::{json, Value};

use crate::common::*;

struct Storefront {
    _db: TestDb,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<orderbus_runtime::Running>,
    _cleanup: Cleanup,
}

impl Storefront {
    async fn start() -> anyhow::Result<Storefront> {
        let db = TestDb::create().await?;
        let settings = orderbus_storefront::Settings {
            service_name: format!("storefront-{}", unique_suffix()),
            sweep_interval: None,
            retry_tiers: vec![Duration::from_millis(200), Duration::from_millis(400)],
            ..orderbus_storefront::Settings::default()
        };
        let mut config = Config::local(&settings.service_name);
        config.database_url = Secret::new(db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        config.db_max_connections = 12;
        let (key, auth) = api_key()?;
        config.auth = auth;
        let cleanup = Cleanup::of(orderbus_storefront::topology(&settings));
        let shutdown = CancellationToken::new();
        let running = orderbus_storefront::start(config, settings, shutdown.clone()).await?;
        let offset = (u64::from_str_radix(&unique_suffix()[..8], 16)? % 900_000_000) as i64;
        let start = 2_000_000_000_000 + offset * 1000;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {start}"
        )))
        .execute(db.pool())
        .await?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse()?,
        );
        let s = Storefront {
            base: format!("http://{}", running.addr()),
            _db: db,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
            shutdown,
            running: Some(running),
            _cleanup: cleanup,
        };
        eventually("storefront ready", || async {
            let r = s.http.get(format!("{}/readyz", s.base)).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(s)
    }

    async fn create(&self, warehouse: i64) -> anyhow::Result<i64> {
        let body = json!({
            "uid": 5501,
            "items": [{"product_sku": 123, "product_skn": 1230, "warehouse_id": warehouse,
                       "quantity": 1, "unit_price": "670000.00"}],
            "shipping_cost": "0.00",
            "delivery_address": {"user_name": "Ali Rezaei", "mobile": "09121234567",
                "province": "Tehran", "city": "تهران", "district": "", "address": "Azadi 12",
                "zip_code": "1234567890"}
        });
        let r = self
            .http
            .post(format!("{}/orders", self.base))
            .json(&body)
            .send()
            .await?;
        let s = r.status().as_u16();
        let v: Value = r.json().await?;
        anyhow::ensure!(s == 201, "create: {s} {v}");
        v["order_code"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no order_code: {v}"))
    }

    async fn wait_status(&self, code: i64, status: &str) -> anyhow::Result<()> {
        eventually(&format!("storefront order {code} {status}"), || async {
            let r = self
                .http
                .get(format!("{}/orders/{code}", self.base))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["status"] == status).then_some(())
        })
        .await
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await?;
        }
        Ok(())
    }
}

/// A submit for a storefront order, as a checkout with `payment_channel` would publish it.
fn resubmit(code: i64, wh: i64, channel: &str) -> Value {
    let mut b = submit_body(code, wh, channel, &[(123, 1, "670000.00")]);
    b["order_amount"] = json!("670000.00");
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn storefront_orders_end_delivered_and_paid_through_frotel() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let sf = Storefront::start().await?;

    // Paid to the seller: the storefront's own order.submit, then the gateway's payment.
    let code = sf.create(h.wh.plain).await?;
    h.wait_state(code, "awaiting_payment").await?;
    let payment = json!({"uid": 5501, "order_code": code, "amount": "670000.00", "pay_type": 1,
        "payment_gateway": "sinopac_qpay", "gateway_trade_no": "T9", "paid_time": 1764547300});
    h.erp
        .publish("order.payment", payment.to_string().as_bytes())
        .await?;
    sf.wait_status(code, "paid").await?;
    let factor = h.factor(code).await?;
    assert_eq!(h.sim_orders_for(code)[0].buy_type, 3);
    h.sim.advance_order(&factor);
    sf.wait_status(code, "shipped").await?;
    h.sim.advance_order(&factor);
    sf.wait_status(code, "delivered").await?;

    // Cash on delivery: pending_payment → shipped → delivered from Frotel alone.
    let cod = sf.create(1).await?;
    h.submit(&resubmit(cod, h.wh.plain, "cash_on_delivery"))
        .await?;
    let factor = h.factor(cod).await?;
    h.sim.advance_order(&factor);
    h.sim.advance_order(&factor);
    sf.wait_status(cod, "delivered").await?;

    // Frotel's bank: order.payment from the fulfilment service → storefront paid.
    let online = sf.create(1).await?;
    h.submit(&resubmit(online, h.wh.plain, "partner_bank"))
        .await?;
    h.factor(online).await?;
    let (_, s) = h.pay(online, 1, true).await?;
    assert_eq!(s, 200);
    sf.wait_status(online, "paid").await?;
    sf.stop().await?;
    h.stop().await
}
