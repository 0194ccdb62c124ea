//! End to end: the storefront, the payments service and the Sinopac simulator (over HTTP), in
//! process on the real broker and database. The test plays the customer: it places the order at
//! the storefront, picks the method at the payments service, and "pays" at the simulated bank;
//! the bank's BackendURL/ReturnURL notifications, `order.payment` and the storefront's `paid`
//! follow by themselves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context};
use orderbus_payments::PublicUrl;
use orderbus_runtime::auth::{mint_key, ORDERS_READ, ORDERS_WRITE, PAYMENTS_WRITE};
use orderbus_runtime::{ApiKeys, AuthSettings, CancellationToken, Config, Running, Secret};
use orderbus_sinopac::sim::{SimConfig, Simulator};
use orderbus_testkit::{unique_suffix, TestDb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const THREE_DAYS: Duration = Duration::from_secs(3 * 86400);

struct BrokerCleanup(Vec<orderbus_bus::Topology>);

impl Drop for BrokerCleanup {
    fn drop(&mut self) {
        let topologies = std::mem::take(&mut self.0);
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

struct Stack {
    storefront: String,
    payments: String,
    http: reqwest::Client,
    sim: Simulator,
    uid: i64,
    sf_db: TestDb,
    pay_db: TestDb,
    reconciler: orderbus_payments::reconcile::Reconciler,
    auto_cancel: Duration,
    shutdown: CancellationToken,
    _running: (Running, Running),
    _sim_task: tokio::task::JoinHandle<()>,
    _cleanup: BrokerCleanup,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self._sim_task.abort();
    }
}

impl Stack {
    async fn start() -> anyhow::Result<Stack> {
        let uid = (u64::from_str_radix(&unique_suffix()[..7], 16)? % 100_000_000) as i64 + 1;
        let minted = mint_key(
            "e2e",
            &[
                ORDERS_READ.into(),
                ORDERS_WRITE.into(),
                PAYMENTS_WRITE.into(),
            ],
        )?;
        let auth = AuthSettings::keys(ApiKeys::parse(&minted.entry)?);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", minted.key).parse()?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;

        // The bank.
        let sim = Simulator::new(SimConfig {
            atm_pay_delay: Duration::from_secs(3600),
            card_pay_delay: None,
            push_retry_interval: Duration::from_millis(200),
            ..SimConfig::default()
        });
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let bank_base = format!("http://{}", listener.local_addr()?);
        let app = sim.router();
        let sim_task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        // The storefront: auto-cancel after 3 days (a shop that offers ATM).
        let sf_db = TestDb::create().await?;
        let sf_settings = orderbus_storefront::Settings {
            service_name: format!("storefront-{}", unique_suffix()),
            sweep_interval: None,
            auto_cancel_after: THREE_DAYS,
            retry_tiers: vec![Duration::from_millis(200), Duration::from_millis(400)],
            ..orderbus_storefront::Settings::default()
        };
        // The payments service, told the same auto-cancel.
        let pay_db = TestDb::create().await?;
        let mut pay_settings = orderbus_payments::Settings::local_demo(&bank_base);
        pay_settings.service_name = format!("payments-{}", unique_suffix());
        pay_settings.sweep_enabled = false;
        pay_settings.sweep.after = Duration::ZERO;
        pay_settings.deadlines.auto_cancel_after = THREE_DAYS;
        pay_settings.public_url = PublicUrl::new("http://127.0.0.1:1");
        pay_settings.retry_tiers = vec![Duration::from_millis(200), Duration::from_millis(400)];
        let cleanup = BrokerCleanup(vec![
            orderbus_storefront::topology(&sf_settings),
            orderbus_payments::topology(&pay_settings),
        ]);
        let shutdown = CancellationToken::new();
        let config = |name: &str, db: &TestDb| {
            let mut c = Config::local(name);
            c.database_url = Secret::new(db.url());
            c.http_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
            c.shutdown_grace = Duration::from_secs(5);
            c.auth = auth.clone();
            c
        };
        let storefront = orderbus_storefront::start(
            config(&sf_settings.service_name, &sf_db),
            sf_settings.clone(),
            shutdown.clone(),
        )
        .await?;
        let start = 4_000_000_000_000 + uid * 1000;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SEQUENCE storefront_order_code_seq RESTART WITH {start}"
        )))
        .execute(sf_db.pool())
        .await?;
        let payments = orderbus_payments::start(
            config(&pay_settings.service_name, &pay_db),
            pay_settings.clone(),
            shutdown.clone(),
        )
        .await?;
        let payments_base = format!("http://{}", payments.addr());
        pay_settings.public_url.set(payments_base.clone());
        let client = orderbus_payments::bank_client(&pay_settings.bank)?;
        let reconciler = orderbus_payments::reconcile::Reconciler {
            pool: pay_db.pool().clone(),
            bank: orderbus_payments::bank(&client, &pay_settings.bank, pay_db.pool().clone()),
            settings: pay_settings.sweep.clone(),
        };
        let stack = Stack {
            storefront: format!("http://{}", storefront.addr()),
            payments: payments_base,
            http,
            sim,
            uid,
            sf_db,
            pay_db,
            reconciler,
            auto_cancel: THREE_DAYS,
            shutdown,
            _running: (storefront, payments),
            _sim_task: sim_task,
            _cleanup: cleanup,
        };
        // Both ready (their queues declared and consumed) before the first order: the
        // storefront's `order.submit` must find the payments queue bound already, or this payments
        // service never sees it.
        for base in [&stack.storefront, &stack.payments] {
            stack
                .eventually(&format!("{base} ready"), || async {
                    let r = stack.http.get(format!("{base}/readyz")).send().await.ok()?;
                    r.status().is_success().then_some(())
                })
                .await?;
        }
        Ok(stack)
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

    async fn get(&self, url: String) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn order_status(&self, code: i64, want: &str) -> anyhow::Result<Value> {
        self.eventually(&format!("order {code} {want}"), || async {
            let o = self
                .get(format!("{}/orders/{code}", self.storefront))
                .await?;
            (o["status"] == want).then_some(o)
        })
        .await
    }

    async fn payment_status(&self, code: i64, want: &str) -> anyhow::Result<Value> {
        self.eventually(&format!("payment {code} {want}"), || async {
            let p = self
                .get(format!("{}/payments/{code}", self.payments))
                .await?;
            (p["status"] == want).then_some(p)
        })
        .await
    }

    /// The customer places an order of NT$176 (2 × 88.00).
    async fn place_order(&self) -> anyhow::Result<i64> {
        let r = self
            .http
            .post(format!("{}/orders", self.storefront))
            .json(&json!({
                "uid": self.uid,
                "items": [{"product_sku": 892152, "product_skn": 51152761, "warehouse_id": 1,
                           "quantity": 2, "unit_price": "88.00"}],
                "shipping_cost": "0.00",
                "delivery_address": {"user_name": "Demo", "mobile": "13776693005",
                    "province": "江苏省", "city": "南京市", "district": "江宁区",
                    "address": "苏源大道87号", "zip_code": "211100"}
            }))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "create order: {status} {body}");
        let code = body["order_code"].as_i64().context("no order_code")?;
        self.payment_status(code, "awaiting_method").await?;
        Ok(code)
    }

    async fn choose(&self, code: i64, method: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/payments/{code}", self.payments))
            .json(&json!({ "method": method }))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.as_u16() == 201, "choose {method}: {status} {body}");
        Ok(body)
    }

    async fn published(&self, code: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM orderbus_outbox WHERE routing_key = 'order.payment' AND correlation_id = $1",
        )
        .bind(code.to_string())
        .fetch_one(self.pay_db.pool())
        .await?)
    }

    /// Moves the storefront's clock for one order: it was placed `by` earlier.
    async fn age_storefront_order(&self, code: i64, by: chrono::Duration) -> anyhow::Result<()> {
        // Whole milliseconds: PostgreSQL intervals have microsecond precision.
        let by = chrono::Duration::milliseconds(by.num_milliseconds());
        sqlx::query("UPDATE orders SET created_at = created_at - $2 WHERE order_code = $1")
            .bind(code)
            .bind(by)
            .execute(self.sf_db.pool())
            .await?;
        Ok(())
    }
}

fn order_no(body: &Value) -> anyhow::Result<String> {
    body["current"]["order_no"]
        .as_str()
        .map(str::to_owned)
        .context("no current.order_no")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn atm_and_card_orders_are_paid_through_sinopac_end_to_end() -> anyhow::Result<()> {
    let s = Stack::start().await?;
    // ATM: virtual account, the bank pays it, BackendURL → order.payment → storefront paid.
    let atm = s.place_order().await?;
    let body = s.choose(atm, "atm").await?;
    assert_eq!(body["current"]["bank_amount"], 17600);
    assert!(s.sim.pay_now(&order_no(&body)?));
    let o = s.order_status(atm, "paid").await?;
    assert_eq!(o["status"], "paid");
    let p = s.payment_status(atm, "paid").await?;
    assert_eq!(p["settled_via"], "backend_url");
    // Card: the card page, the customer pays; ReturnURL and BackendURL both arrive.
    let card = s.place_order().await?;
    let body = s.choose(card, "card").await?;
    assert!(body["current"]["card_pay_url"].is_string());
    let no = order_no(&body)?;
    assert!(s.sim.pay_now(&no));
    s.order_status(card, "paid").await?;
    s.eventually("both card notifications delivered", || async {
        let v = s.sim.order(&no)?;
        (v.pushes.iter().any(|p| p.target == "return") && v.acked).then_some(())
    })
    .await?;
    for code in [atm, card] {
        assert_eq!(s.published(code).await?, 1, "one order.payment for {code}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_after_cancel_is_refund_needed_and_the_storefront_records_it() -> anyhow::Result<()>
{
    let s = Stack::start().await?;
    let code = s.place_order().await?;
    let body = s.choose(code, "atm").await?;
    let r = s
        .http
        .post(format!("{}/orders/{code}/cancel", s.storefront))
        .send()
        .await?;
    assert!(r.status().is_success(), "{}", r.status());
    s.payment_status(code, "cancelled").await?;
    assert!(s.sim.pay_now(&order_no(&body)?));
    let p = s.payment_status(code, "refund_needed").await?;
    assert_eq!(p["settlements"][0]["published"], true);
    // The storefront received it: a payment entry on the order's timeline, not applied.
    let o = s
        .eventually("payment on the storefront timeline", || async {
            let o = s.get(format!("{}/orders/{code}", s.storefront)).await?;
            let has = o["timeline"]
                .as_array()?
                .iter()
                .any(|e| e["event"] == "payment");
            has.then_some(o)
        })
        .await?;
    assert!(
        o["status"]
            .as_str()
            .is_some_and(|st| st.starts_with("cancelled")),
        "{o}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_atm_order_is_not_cancelled_while_its_account_is_valid_and_is_once_it_expired(
) -> anyhow::Result<()> {
    let s = Stack::start().await?;
    let code = s.place_order().await?;
    let body = s.choose(code, "atm").await?;
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["current"]["expires_at"].clone())?;
    let no = order_no(&body)?;
    s.sim
        .set_outcome(&no, orderbus_sinopac::sim::Outcome::Never);
    let now = chrono::Utc::now();
    // One minute before the account ends: the storefront's auto-cancel leaves it alone.
    let jump = expires - chrono::Duration::minutes(1) - now;
    s.age_storefront_order(code, jump).await?;
    let cancelled =
        orderbus_storefront::autocancel::sweep_once(s.sf_db.pool(), s.auto_cancel, 100).await?;
    assert!(
        !cancelled.contains(&code),
        "cancelled while the account was valid"
    );
    s.order_status(code, "pending_payment").await?;
    // The account ends unpaid: the sweep marks it expired...
    let r = s
        .reconciler
        .sweep_once(expires + chrono::Duration::minutes(1))
        .await?;
    assert_eq!(r.expired, 1, "{r:?}");
    s.payment_status(code, "expired").await?;
    // ...and the storefront's auto-cancel, which by construction comes after, cancels it; the
    // payment follows (906).
    let to_cancel =
        chrono::Duration::from_std(s.auto_cancel)? - (expires - now) + chrono::Duration::minutes(2);
    s.age_storefront_order(code, to_cancel).await?;
    let cancelled =
        orderbus_storefront::autocancel::sweep_once(s.sf_db.pool(), s.auto_cancel, 100).await?;
    assert!(cancelled.contains(&code));
    s.payment_status(code, "cancelled").await?;
    Ok(())
}
