//! End to end: the storefront and the tracking service in process, the SweetTracker simulator
//! driving each registered shipment through levels 1→6 over real HTTP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Running, Secret};
use orderbus_sweettracker::sim::Faults;
use orderbus_testkit::{unique_suffix, TestDb};
use serde_json::{json, Value};

use crate::common::*;

struct Storefront {
    _db: TestDb,
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<Running>,
    settings: orderbus_storefront::Settings,
}

impl Storefront {
    async fn start() -> anyhow::Result<Storefront> {
        let db = TestDb::create().await?;
        let settings = orderbus_storefront::Settings {
            service_name: format!("storefront-{}", unique_suffix()),
            sweep_interval: None,
            retry_tiers: vec![Duration::from_millis(500), Duration::from_secs(1)],
            ..orderbus_storefront::Settings::default()
        };
        let mut config = Config::local(&settings.service_name);
        config.database_url = Secret::new(db.url());
        config.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        config.shutdown_grace = Duration::from_secs(5);
        config.db_max_connections = 10;
        use orderbus_runtime::auth::{mint_key, ORDERS_READ, ORDERS_WRITE};
        let minted = mint_key("tests", &[ORDERS_READ.into(), ORDERS_WRITE.into()])?;
        config.auth = AuthSettings::keys(ApiKeys::parse(&minted.entry)?);
        let shutdown = CancellationToken::new();
        let running =
            orderbus_storefront::start(config, settings.clone(), shutdown.clone()).await?;
        let base = format!("http://{}", running.addr());
        // Order codes unique across parallel tests (every consumer sees every test's messages).
        let start = order_code();
        for seq in ["storefront_order_code_seq", "storefront_after_sale_id_seq"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER SEQUENCE {seq} RESTART WITH {start}"
            )))
            .execute(db.pool())
            .await?;
        }
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", minted.key).parse()?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()?;
        let s = Storefront {
            _db: db,
            base,
            http,
            shutdown,
            running: Some(running),
            settings,
        };
        let ready = format!("{}/readyz", s.base);
        eventually("storefront ready", || async {
            let r = s.http.get(&ready).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(s)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
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

    async fn create_order(&self, uid: i64) -> anyhow::Result<i64> {
        let body = json!({
            "uid": uid,
            "items": [{ "product_sku": 892152, "product_skn": 51152761, "warehouse_id": 1,
                        "quantity": 2, "unit_price": "88.00" }],
            "shipping_cost": "10.00",
            "delivery_address": { "user_name": "朱倩倩", "mobile": "15258109727", "province": "浙江省",
                "city": "宁波市", "district": "象山县", "address": "靖南大街688-10号2楼",
                "zip_code": "315700", "area_code": "330225", "email": "canvas220@sina.com" }
        });
        let (s, v) = self.post("/orders", &body).await?;
        anyhow::ensure!(s == 201, "create: {s} {v}");
        v["order_code"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no order_code in {v}"))
    }

    async fn wait_status(&self, code: i64, want: &str) -> anyhow::Result<Value> {
        eventually(&format!("order {code} {want}"), || async {
            let o = self.order(code).await.ok()?;
            (o["status"] == want).then_some(o)
        })
        .await
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await?;
        }
        let t = orderbus_storefront::topology(&self.settings);
        let conn = orderbus_testkit::connect_amqp().await?;
        let ch = conn.create_channel().await?;
        let _ = t.remove(&ch, Duration::from_millis(500)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweettracker_callbacks_deliver_the_order_and_complete_an_exchange() -> anyhow::Result<()> {
    let mut w = World::new(fast_sim()).await?;
    let tracking = w.start(w.settings("only")).await?;
    let shop = Storefront::start().await?;

    // A delivery: the ERP ships it (600), tracking registers it at noon, SweetTracker calls
    // back 1→6 and the storefront learns delivery from order.updateExpressInfo.
    let code = shop.create_order(8041518).await?;
    let num = waybill();
    w.publish_600(code, 8041518, 23, &num).await?;
    shop.wait_status(code, "shipped").await?;
    w.shipment_where(code, "shipment", |s, _| s == "OS02")
        .await?;

    // An exchange on another delivered order: its replacement ships as a re-delivery.
    let other = shop.create_order(8041518).await?;
    let exchange = async {
        sqlx::query("UPDATE orders SET status = 'delivered' WHERE order_code = $1")
            .bind(other)
            .execute(shop._db.pool())
            .await?;
        let body = json!({ "goods": [{ "product_sku": 892152, "product_skc": 279434, "new_product_sku": 892153,
            "new_product_skc": 279434, "new_goods_id": 354687, "exchange_reason": "3" }], "remark": "用户换货" });
        let (s, v) = shop.post(&format!("/orders/{other}/exchanges"), &body).await?;
        anyhow::ensure!(s == 201, "exchange: {s} {v}");
        anyhow::Ok(v["id"].as_i64().unwrap_or_default())
    }
    .await?;
    let replacement = order_code();
    w.publish_change_order(exchange, other, replacement).await?;
    eventually("replacement order created", || async {
        let o = shop.order(replacement).await.ok()?;
        (o["kind"] == "exchange").then_some(())
    })
    .await?;
    let re_num = waybill();
    w.publish_600(replacement, 8041518, 23, &re_num).await?;
    w.shipment_where(replacement, "re-delivery shipment", |s, _| s == "OS30")
        .await?;

    w.run_slot(seoul_noon(2)?, 1).await?;
    w.shipment_where(code, "OS03", |s, st| s == "OS03" && st == Some("delivered"))
        .await?;
    let order = shop.wait_status(code, "delivered").await?;
    assert_eq!(order["korean_status"], "OS03", "{order}");
    let process =
        format!("[Scheduler] DeliveryTracking Callback Process: order_no={code},order_status=OS03");
    assert_eq!(log_lines(&process).len(), 1);
    let receive = format!(
        "[Scheduler] DeliveryTracking Callback Receive: fid=OS02:{code},invoice_no={num},level="
    );
    assert_eq!(
        log_lines(&receive).len(),
        7,
        "levels 1, 2, 3, 3, 4, 5, 6: {:?}",
        log_lines(&receive)
    );

    w.shipment_where(replacement, "OS31", |s, _| s == "OS31")
        .await?;
    eventually("exchange completed", || async {
        let o = shop.order(other).await.ok()?;
        (o["exchanges"][0]["status"] == "completed").then_some(o)
    })
    .await?;
    let o = shop.order(other).await?;
    assert_eq!(o["exchanges"][0]["korean_status"], "OS31", "{o}");

    // The ERP's own 700 afterwards changes nothing.
    w.erp
        .publish(
            "order.erpstatus",
            json!({"uid": 8041518, "order_code": code, "status": 700})
                .to_string()
                .as_bytes(),
        )
        .await?;
    let (_, v) = w
        .get(&tracking, &format!("/v1/orders/{code}/shipments"))
        .await?;
    let events = v["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 7, "one event per scan: {v}");
    assert!(events.iter().all(|e| e["published"] == true), "{v}");
    assert_eq!(shop.order(code).await?["status"], "delivered");
    shop.stop().await?;
    w.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_out_of_order_levels_and_scan_errors_never_move_a_shipment_back(
) -> anyhow::Result<()> {
    let mut w = World::new(fast_sim()).await?;
    let tracking = w.start(w.settings("only")).await?;
    w.sim.set_faults(Faults {
        duplicates: true,
        out_of_order: true,
        scan_error: true,
        ..Faults::default()
    });
    let (code, num) = (order_code(), waybill());
    w.publish_600(code, 7, 23, &num).await?;
    w.shipment_where(code, "shipment", |s, _| s == "OS02")
        .await?;
    w.run_slot(seoul_noon(2)?, 1).await?;
    w.shipment_where(code, "delivered", |s, st| {
        s == "OS03" && st == Some("delivered")
    })
    .await?;
    let sim = w.sim.clone();
    let reg = eventually("every callback delivered", || async {
        sim.registration(&num, "04").filter(|r| r.finished)
    })
    .await?;
    assert!(
        reg.deliveries.iter().all(|d| d.acknowledged),
        "{:?}",
        reg.deliveries
    );
    let (_, v) = w
        .get(&tracking, &format!("/v1/orders/{code}/shipments"))
        .await?;
    let verdicts: Vec<String> = v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["verdict"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // 8 distinct scans (the duplicates were replayed by the ingress, not recorded twice).
    assert_eq!(verdicts.len(), 8, "{v}");
    assert!(verdicts.iter().any(|x| x == "backwards"), "{verdicts:?}");
    assert!(verdicts.iter().any(|x| x == "exception"), "{verdicts:?}");
    assert_eq!(v["shipments"][0]["exception"], true);
    // Late scans are recorded, not published.
    for e in v["events"].as_array().into_iter().flatten() {
        assert_eq!(e["published"], e["verdict"] != "backwards", "{e}");
    }
    let dups: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingress_log WHERE partner = 'sweettracker' AND outcome = 'replayed' AND order_ref = $1",
    )
    .bind(code.to_string())
    .fetch_one(w.db.pool())
    .await?;
    assert!(dups >= 8, "each duplicate got the stored reply: {dups}");
    w.stop_all().await
}
