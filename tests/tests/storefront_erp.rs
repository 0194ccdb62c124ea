//! End to end: the storefront and the ERP stand-in (erp-sim) in process, on the real broker and
//! database. The test plays the customer (HTTP) and the payments service (`order.payment`);
//! every message both sides publish for the test's orders is captured from a test queue and
//! validated against the committed schemas in `schemas/`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context};
use orderbus_erp_sim::{ErpSim, RunningErpSim, SimConfig};
mod common;

use common::{api_key, authorized_client};
use orderbus_runtime::{CancellationToken, Config, Running, Secret};
use orderbus_storefront::Settings;
use orderbus_testkit::{amqp_url, unique_suffix, ErpPublisher, Received, TestDb, TestQueue};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

struct Stack {
    base: String,
    http: reqwest::Client,
    uid: i64,
    shutdown: CancellationToken,
    storefront: Option<Running>,
    sim: Option<RunningErpSim>,
    payments: ErpPublisher,
    _dbs: (TestDb, TestDb),
    _cleanup: BrokerCleanup,
}

/// Deletes both services' queues and tier exchanges when dropped, also when a test fails
/// half-way (`Topology::remove` on a helper thread, like `TestDb`).
struct BrokerCleanup {
    topologies: Vec<orderbus_bus::Topology>,
}

impl BrokerCleanup {
    fn new(topologies: Vec<orderbus_bus::Topology>) -> Self {
        Self { topologies }
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

impl Stack {
    async fn start(reject_rate: f64) -> anyhow::Result<Stack> {
        let uid = (u64::from_str_radix(&unique_suffix()[..7], 16)? % 100_000_000) as i64 + 1;
        let sf_db = TestDb::create().await?;
        let sim_db = TestDb::create().await?;
        let mut sim_config = SimConfig::for_tests(
            format!("erp-sim-{}", unique_suffix()),
            sim_db.url(),
            amqp_url(),
        );
        sim_config.reject_rate = reject_rate;
        sim_config.only_uids = Some(BTreeSet::from([uid]));
        let settings = Settings {
            service_name: format!("storefront-{}", unique_suffix()),
            sweep_interval: None,
            retry_tiers: vec![Duration::from_millis(200), Duration::from_millis(400)],
            ..Settings::default()
        };
        let cleanup = BrokerCleanup::new(vec![
            orderbus_erp_sim::topology(&sim_config),
            orderbus_storefront::topology(&settings),
        ]);
        let sim = ErpSim::start(sim_config.clone()).await?;

        let mut config = Config::local(&settings.service_name);
        config.database_url = Secret::new(sf_db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        let (key, auth) = api_key()?;
        config.auth = auth;
        let shutdown = CancellationToken::new();
        let storefront =
            orderbus_storefront::start(config, settings.clone(), shutdown.clone()).await?;
        // Order codes unique across parallel tests (every consumer sees every test's messages).
        let start = 2_000_000_000_000 + (uid * 1000);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {start}"
        )))
        .execute(sf_db.pool())
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_after_sale_id_seq RESTART WITH {start}"
        )))
        .execute(sf_db.pool())
        .await?;
        let stack = Stack {
            base: format!("http://{}", storefront.addr()),
            http: authorized_client(&key)?,
            uid,
            shutdown,
            storefront: Some(storefront),
            sim: Some(sim),
            payments: ErpPublisher::connect().await?,
            _dbs: (sf_db, sim_db),
            _cleanup: cleanup,
        };
        stack
            .eventually("storefront ready", || async {
                let r = stack
                    .http
                    .get(format!("{}/readyz", stack.base))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            })
            .await?;
        Ok(stack)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(r) = self.storefront.take() {
            r.wait().await?;
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await?;
        }
        // Queues and tier exchanges go with `_cleanup` when the stack is dropped.
        Ok(())
    }

    async fn eventually<T, F, Fut>(&self, what: &str, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
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

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    async fn order(&self, code: i64) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/orders/{code}", self.base))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn wait_order(
        &self,
        code: i64,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        self.eventually(what, || async {
            let o = self.order(code).await.ok()?;
            pred(&o).then_some(o)
        })
        .await
    }

    async fn create_order(&self) -> anyhow::Result<i64> {
        let body = json!({
            "uid": self.uid,
            "items": [{ "product_sku": 892152, "product_skn": 51152761, "warehouse_id": 1, "quantity": 1, "unit_price": "88.00" }],
            "shipping_cost": "10.00",
            "delivery_address": { "user_name": "朱倩倩", "mobile": "15258109727", "province": "浙江省", "city": "宁波市",
                "district": "象山县", "address": "靖南大街688-10号2楼", "zip_code": "315700", "area_code": "330225" }
        });
        let (s, v) = self.post("/orders", &body).await?;
        anyhow::ensure!(s == 201, "create: {s} {v}");
        v["order_code"].as_i64().context("order_code")
    }

    /// Publishes `order.payment` as the payments service would.
    async fn pay(&self, code: i64) -> anyhow::Result<()> {
        let body = json!({ "uid": self.uid, "order_code": code, "amount": "98.00", "pay_type": 1,
            "payment_gateway": "sinopac_qpay", "gateway_trade_no": format!("TN{code}"), "paid_time": 1700000000 });
        self.payments
            .publish("order.payment", body.to_string().as_bytes())
            .await?;
        Ok(())
    }

    async fn delivered(&self, code: i64) -> anyhow::Result<Value> {
        self.pay(code).await?;
        self.wait_order(code, "delivered with a blue invoice", |o| {
            o["status"] == "delivered" && o["invoice"]["invoice_type"] == "blue"
        })
        .await
    }
}

/// Collects the messages `related` selects until `done` is among them; validates each against
/// its schema.
async fn collect(
    q: &mut TestQueue,
    related: impl Fn(&Received) -> bool,
    done: impl Fn(&[Received]) -> bool,
) -> anyhow::Result<Vec<Received>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = q
            .recv(left)
            .await
            .map_err(|e| anyhow!("collected {:?}: {e}", keys(&got)))?;
        if related(&m) {
            assert_schema(&m);
            got.push(m);
        }
    }
    Ok(got)
}

fn keys(ms: &[Received]) -> Vec<String> {
    ms.iter()
        .map(|m| format!("{} {}", m.routing_key, m.json()))
        .collect()
}

fn has(ms: &[Received], key: &str, pred: impl Fn(&Value) -> bool) -> bool {
    ms.iter().any(|m| m.routing_key == key && pred(&m.json()))
}

fn about_order(m: &Received, code: i64) -> bool {
    let b = m.json();
    let first = if b.is_array() {
        b[0].clone()
    } else {
        b.clone()
    };
    first["order_code"] == code
        || first["orderCode"] == code
        || first["order_code"]
            .as_str()
            .and_then(|t| t.parse::<i64>().ok())
            == Some(code)
}

fn assert_schema(m: &Received) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .join(format!("{}.schema.json", m.routing_key));
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let body = m.json();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{} {body} fails its schema: {errors:?}",
        m.routing_key
    );
}

#[tokio::test]
async fn order_lifecycle_address_change_and_receipt() -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.#", "erp.#"]).await?;
    let s = Stack::start(0.0).await?;
    let code = s.create_order().await?;
    // Address change before shipping: accepted and sent to the ERP.
    let mut addr = s.order(code).await?["delivery_address"].clone();
    addr["address"] = json!("新地址 8 号");
    let (st, v) = s
        .post(
            &format!("/orders/{code}/address"),
            &json!({ "delivery_address": addr }),
        )
        .await?;
    assert_eq!(st, 200, "{v}");

    let order = s.delivered(code).await?;
    assert_eq!(order["korean_status"], "OS03");
    assert_eq!(order["shipments"][0]["express_id"], 23);
    assert_eq!(order["paid_amount"], "98.00");
    // After shipping: refused with the current state.
    let (st, v) = s
        .post(
            &format!("/orders/{code}/address"),
            &json!({ "delivery_address": addr }),
        )
        .await?;
    assert_eq!((st, v["current_status"].clone()), (409, json!("delivered")));

    let (st, v) = s
        .post(&format!("/orders/{code}/confirm-receipt"), &json!({}))
        .await?;
    assert_eq!((st, v["status"].clone()), (200, json!("receipt_confirmed")));

    let ms = collect(
        &mut q,
        |m| about_order(m, code),
        |ms| has(ms, "order.orderStatus", |b| b["status"] == 700),
    )
    .await?;
    for (key, status) in [
        ("order.erpstatus", 100),
        ("order.erpstatus", 200),
        ("order.erpstatus", 600),
        ("order.erpstatus", 700),
    ] {
        assert!(
            has(&ms, key, |b| b["status"] == status),
            "{key} {status} missing: {:?}",
            keys(&ms)
        );
    }
    assert!(has(&ms, "order.submit", |_| true));
    assert!(has(&ms, "order.payment", |_| true));
    assert!(has(&ms, "order.deliveryAddress", |b| b[0]["address"]
        == "新地址 8 号"));
    assert!(has(&ms, "erp.updateInvoicePdfUrl", |b| b["invoiceType"] == "0"));
    // Everything the ERP sent was applied (no late or refused events on this happy path); the
    // only refusal is the address change after shipping. (The payment may be overtaken by the
    // ERP's 100: both consume order.payment.)
    let order = s.order(code).await?;
    let refused: Vec<&Value> = order["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["applied"] == false && e["source"] != "order.payment")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0]["source"].clone(), refused[0]["event"].clone()),
        (json!("http"), json!("address_changed"))
    );
    s.stop().await
}

#[tokio::test]
async fn exchange_completed_return_refunded_then_red_invoice_and_return_cancelled(
) -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.#", "erp.#"]).await?;
    let s = Stack::start(0.0).await?;
    let code = s.create_order().await?;
    s.delivered(code).await?;

    // Exchange: approved by the ERP, waybill, goods received, completed.
    let (st, v) = s.post(&format!("/orders/{code}/exchanges"), &json!({ "goods": [{ "product_sku": 892152, "product_skc": 279434,
        "new_product_sku": 892153, "new_product_skc": 279434, "new_goods_id": 354687, "exchange_reason": "3" }] })).await?;
    assert_eq!(st, 201, "{v}");
    let xid = v["id"].as_i64().context("id")?;
    let o = s
        .wait_order(code, "exchange approved", |o| {
            o["exchanges"][0]["status"] == "approved"
        })
        .await?;
    let erp_xid = o["exchanges"][0]["erp_exchange_id"]
        .as_i64()
        .context("erp id")?;
    let (st, v) = s
        .post(
            &format!("/exchanges/{xid}/waybill"),
            &json!({ "express_id": 23, "express_name": "顺丰", "express_number": "603596395359" }),
        )
        .await?;
    assert_eq!(st, 200, "{v}");
    s.wait_order(code, "exchange completed", |o| {
        o["exchanges"][0]["status"] == "completed"
    })
    .await?;

    // Return: approved with the refund amount, waybill, 20/30/40, then the red invoice.
    let body = json!({ "goods": [{ "product_sku": 892152, "returned_reason": "1" }], "return_amount_mode": "2",
        "payee_name": "张璐", "bank_card": "6228480605428963215", "bank_id": "5", "head_bank_name": "中国银行", "bank_name": "xx支行" });
    let (st, v) = s.post(&format!("/orders/{code}/returns"), &body).await?;
    assert_eq!(st, 201, "{v}");
    let rid = v["id"].as_i64().context("id")?;
    s.wait_order(code, "return approved", |o| {
        o["returns"][0]["status"] == "approved"
    })
    .await?;
    let (st, _) = s
        .post(
            &format!("/returns/{rid}/waybill"),
            &json!({ "express_id": 23, "express_name": "顺丰", "express_number": "603596395360" }),
        )
        .await?;
    assert_eq!(st, 200);
    let o = s
        .wait_order(code, "refunded and red invoice", |o| {
            o["returns"][0]["status"] == "refunded" && o["invoice"]["invoice_type"] == "red"
        })
        .await?;
    assert!(
        o["returns"][0]["real_returned_amount"].is_number(),
        "{}",
        o["returns"][0]
    );
    assert_eq!(
        o["invoices"].as_array().map(Vec::len),
        Some(2),
        "blue then red"
    );

    // A second return, cancelled by the customer after approval.
    let (_, v) = s.post(&format!("/orders/{code}/returns"), &body).await?;
    let rid2 = v["id"].as_i64().context("id")?;
    s.wait_order(code, "second return approved", |o| {
        o["returns"][1]["status"] == "approved"
    })
    .await?;
    let (st, v) = s
        .post(&format!("/returns/{rid2}/cancel"), &json!({}))
        .await?;
    assert_eq!((st, v["status"].clone()), (200, json!("cancelled")));

    let erp_rid: Vec<i64> = s.order(code).await?["returns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["erp_returned_id"].as_i64())
        .collect();
    let related = |m: &Received| {
        let b = m.json();
        about_order(m, code)
            || b["id"] == xid
            || b["id"] == erp_xid
            || b["data"]["id"] == xid
            || b["order_returned_id"] == rid
            || b["data"]["id"] == rid
            || b["data"]["id"] == rid2
            || erp_rid.iter().any(|e| b["id"] == *e)
    };
    let ms = collect(&mut q, related, |ms| {
        has(ms, "order.changeRefundCancel", |b| b["type"] == 1)
    })
    .await?;
    for key in [
        "order.createChangeOrder",
        "erp.createChangeOrder",
        "order.createRefundOrder",
        "erp.createRefundOrder",
    ] {
        assert!(has(&ms, key, |_| true), "{key} missing: {:?}", keys(&ms));
    }
    assert!(has(&ms, "order.updateChangeRefundOrderExpressInfo", |b| b
        ["type"]
        == "change"));
    assert!(has(&ms, "order.updateChangeRefundOrderExpressInfo", |b| b
        ["type"]
        == "refund"));
    assert!(has(&ms, "erp.updateChangeRefundOrderStatus", |b| b["type"]
        == "change"
        && b["status"] == 50));
    assert!(has(&ms, "erp.updateChangeRefundOrderStatus", |b| b["type"]
        == "refund"
        && b["status"] == 40));
    assert!(has(&ms, "erp.updateInvoicePdfUrl", |b| b["invoiceType"] == "1"));
    s.stop().await
}

#[tokio::test]
async fn exchange_and_return_rejected_by_customer_service() -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.#", "erp.#"]).await?;
    let s = Stack::start(1.0).await?;
    let code = s.create_order().await?;
    s.delivered(code).await?;
    let (_, v) = s
        .post(
            &format!("/orders/{code}/exchanges"),
            &json!({ "goods": [{ "product_sku": 892152, "product_skc": 1,
        "new_product_sku": 2, "new_product_skc": 3, "new_goods_id": 4, "exchange_reason": "3" }] }),
        )
        .await?;
    let xid = v["id"].as_i64().context("id")?;
    let (_, v) = s
        .post(
            &format!("/orders/{code}/returns"),
            &json!({ "goods": [{ "product_sku": 892152, "returned_reason": "1" }],
        "return_amount_mode": "2" }),
        )
        .await?;
    let rid = v["id"].as_i64().context("id")?;
    s.wait_order(code, "both rejected", |o| {
        o["exchanges"][0]["status"] == "rejected" && o["returns"][0]["status"] == "rejected"
    })
    .await?;
    let (st, v) = s
        .post(&format!("/exchanges/{xid}/cancel"), &json!({}))
        .await?;
    assert_eq!((st, v["current_status"].clone()), (409, json!("rejected")));
    let ms = collect(
        &mut q,
        |m| m.json()["data"]["id"] == xid || m.json()["data"]["id"] == rid,
        |ms| {
            has(ms, "erp.createChangeOrder", |b| b["code"] == 500)
                && has(ms, "erp.createRefundOrder", |b| b["code"] == 500)
        },
    )
    .await?;
    assert!(has(&ms, "erp.createChangeOrder", |b| b["data"]
        ["exchange_status"]
        == 91));
    assert!(has(&ms, "erp.createRefundOrder", |b| b["data"]
        ["returned_status"]
        == 91));
    s.stop().await
}
