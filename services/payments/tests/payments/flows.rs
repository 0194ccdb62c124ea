//! Methods, notifications and their faults, cancel and amount rules.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orderbus_sinopac::sim::{PushOutcome, ReplyFault};
use serde_json::json;

use crate::common::{sim_config, Harness, WAIT};

fn three_days(s: &mut orderbus_payments::Settings) {
    s.deadlines.auto_cancel_after = Duration::from_secs(3 * 86400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_creates_a_payment_and_a_jit_child_gets_none() -> anyhow::Result<()> {
    let h = Harness::start(1).await?;
    let code = h.submit("799.00").await?;
    let (status, body) = h.get(code).await?;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "awaiting_method");
    assert_eq!(body["amount"], "799.00");
    // A JIT child (parent set) is paid through its parent: no record. Publish it, then a
    // marker order after it on the same queue: once the marker is there, the child was seen.
    let child = h.new_code();
    h.submit_code(child, "10.00", Some(code)).await?;
    let marker = h.submit("1.00").await?;
    assert!(marker > 0);
    assert_eq!(h.get(child).await?.0, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_a_shipping_partner_collects_for_gets_no_payment() -> anyhow::Result<()> {
    let h = Harness::start(1).await?;
    let cod = h.new_code();
    h.submit_with(cod, "120.00", None, Some("cash_on_delivery"))
        .await?;
    let bank = h.new_code();
    h.submit_with(bank, "130.00", None, Some("partner_bank"))
        .await?;
    let gateway = h.new_code();
    h.submit_with(gateway, "140.00", None, Some("gateway"))
        .await?;
    // The gateway order comes after the other two on the same queue: once it has its record,
    // the other two were seen.
    let marker = h.submit("1.00").await?;
    assert!(marker > 0);
    assert_eq!(h.get(gateway).await?.1["status"], "awaiting_method");
    assert_eq!(h.get(cod).await?.0, 404, "Frotel collects cash on delivery");
    assert_eq!(h.get(bank).await?.0, 404, "Frotel's bank gateway collects");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn atm_returns_account_and_expiry_and_is_refused_when_it_would_outlive_the_auto_cancel(
) -> anyhow::Result<()> {
    // Storefront default (30 min): an ATM account lives to the end of the bank day.
    let h = Harness::start(1).await?;
    let code = h.submit("799.00").await?;
    let (status, body) = h.choose(code, "atm").await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "method_unavailable");
    // Card fits in 30 minutes.
    let (status, body) = h.choose(code, "card").await?;
    assert_eq!(status, 201, "{body}");
    assert!(body["current"]["card_pay_url"]
        .as_str()
        .is_some_and(|u| u.contains("PayCard")));
    assert_eq!(body["current"]["bank_amount"], 79900);
    // Asking again returns the same attempt.
    let (status, again) = h.choose(code, "card").await?;
    assert_eq!(status, 200);
    assert_eq!(again["current"]["order_no"], body["current"]["order_no"]);
    assert_eq!(again["attempts"].as_array().map(Vec::len), Some(1));

    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let code = h.submit("799.00").await?;
    let (status, body) = h.choose(code, "atm").await?;
    assert_eq!(status, 201, "{body}");
    let cur = &body["current"];
    assert_eq!(cur["bank_code"], "807");
    assert!(cur["virtual_account"]
        .as_str()
        .is_some_and(|a| !a.is_empty()));
    assert!(cur["web_atm_url"]
        .as_str()
        .is_some_and(|u| u.contains("PayWebATM")));
    assert_eq!(cur["bank_amount"], 79900);
    assert_eq!(cur["amount"], "799.00");
    // The account ends before the storefront's auto-cancel (placed + 3 days).
    let expires: chrono::DateTime<chrono::Utc> = serde_json::from_value(cur["expires_at"].clone())?;
    assert!(expires <= chrono::Utc::now() + chrono::Duration::days(3));
    assert!(cur["expire_date"].as_str().is_some_and(|d| d.len() == 8));
    // A bad body names the problem.
    let r = h
        .http
        .post(format!("{}/payments/{code}", h.base()))
        .json(&json!({"method": "cash"}))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backend_url_settles_once_and_publishes_order_payment() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let code = h.submit("176.00").await?;
    let (_, body) = h.choose(code, "atm").await?;
    let no = Harness::order_no(&body)?;
    assert!(h.bank.sim.pay_now(&no));
    let p = h.wait_payment(code, |p| p["status"] == "paid").await?;
    assert_eq!(p["settled_via"], "backend_url");
    assert_eq!(p["settlements"][0]["outcome"], "paid");
    assert_eq!(p["settlements"][0]["bank_amount"], 17600);
    assert!(p["settlements"][0]["bank_answer"]["TSResultContent"].is_object());
    assert_eq!(h.payments_published(code).await?, 1);
    let body: Vec<u8> = sqlx::query_scalar(
        "SELECT body FROM orderbus_outbox WHERE routing_key = 'order.payment' AND correlation_id = $1",
    )
    .bind(code.to_string())
    .fetch_one(h.db.pool())
    .await?;
    let body: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(body["order_code"], code);
    assert_eq!(body["amount"], "176.00");
    assert_eq!(body["pay_type"], 2);
    assert_eq!(body["payment_gateway"], "sinopac_qpay");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ops_timeline_shows_the_bank_calls_and_the_notification() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let code = h.submit("176.00").await?;
    let (_, body) = h.choose(code, "atm").await?;
    assert!(h.bank.sim.pay_now(&Harness::order_no(&body)?));
    h.wait_payment(code, |p| p["status"] == "paid").await?;
    let r = h
        .http
        .get(format!("{}/timeline/orders/{code}", h.base()))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    let timeline: serde_json::Value = r.json().await?;
    assert_eq!(timeline["service"], "payments");
    let entries = timeline["entries"].as_array().cloned().unwrap_or_default();
    let summaries: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {}", e["kind"], e["summary"]))
        .collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("partner_call") && s.contains("OrderCreate")),
        "{summaries:?}"
    );
    assert!(
        summaries.iter().any(|s| s.contains("webhook")),
        "the BackendURL notification is on the timeline: {summaries:?}"
    );
    Ok(())
}

#[derive(Clone)]
struct Failing {
    target: String,
    fail_first: usize,
    seen: Arc<AtomicUsize>,
    http: reqwest::Client,
}

async fn failing_proxy(State(p): State<Failing>, headers: HeaderMap, body: Bytes) -> Response {
    let n = p.seen.fetch_add(1, Ordering::SeqCst);
    if n < p.fail_first {
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected").into_response();
    }
    let mut req = p
        .http
        .post(format!("{}/sinopac/backend", p.target))
        .body(body);
    if let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok()) {
        req = req.header("content-type", ct);
    }
    match req.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, r.bytes().await.unwrap_or_default()).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_endpoint_failing_the_first_pushes_is_settled_once_by_the_banks_retries(
) -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    // A proxy in front of our BackendURL answering 500 to the first two pushes.
    let proxy = Failing {
        target: h.base().to_owned(),
        fail_first: 2,
        seen: Arc::new(AtomicUsize::new(0)),
        http: reqwest::Client::new(),
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/sinopac/backend", axum::routing::post(failing_proxy))
        .with_state(proxy.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    h.replicas[0]
        .settings
        .public_url
        .set(format!("http://{addr}"));
    let code = h.submit("50.00").await?;
    let (_, body) = h.choose(code, "atm").await?;
    let no = Harness::order_no(&body)?;
    assert!(h.bank.sim.pay_now(&no));
    let p = h.wait_payment(code, |p| p["status"] == "paid").await?;
    assert_eq!(p["settled_via"], "backend_url");
    // Wait until the simulator recorded the acknowledged push.
    let deadline = tokio::time::Instant::now() + WAIT;
    let pushes = loop {
        let view = h.bank.sim.order(&no);
        if let Some(v) = view.filter(|v| v.acked) {
            break v.pushes;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "push never acked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let outcomes: Vec<_> = pushes
        .iter()
        .filter(|p| p.target == "backend")
        .map(|p| p.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            PushOutcome::Rejected(500),
            PushOutcome::Rejected(500),
            PushOutcome::Acked
        ]
    );
    assert_eq!(h.payments_published(code).await?, 1);
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_or_unknown_pay_token_pays_nothing() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let code = h.submit("80.00").await?;
    let (_, _body) = h.choose(code, "atm").await?;
    let forged = "f".repeat(64);
    let r = h
        .http
        .post(format!("{}/sinopac/backend", h.base()))
        .json(&json!({"ShopNo": "NA0249_001", "PayToken": forged}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let reply: serde_json::Value = r.json().await?;
    assert_eq!(reply["Status"], "F", "{reply}");
    // Another shop's notification, garbage bodies: not paid either.
    let r = h
        .http
        .post(format!("{}/sinopac/backend", h.base()))
        .json(&json!({"ShopNo": "XX0000_001", "PayToken": "abc"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .post(format!("{}/sinopac/backend", h.base()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let (_, p) = h.get(code).await?;
    assert_eq!(p["status"], "awaiting_payment");
    assert_eq!(h.payments_published(code).await?, 0);
    let result: String =
        sqlx::query_scalar("SELECT result FROM payment_tokens WHERE pay_token = $1")
            .bind(&forged)
            .fetch_one(h.db.pool())
            .await?;
    assert_eq!(result, "refused_by_bank");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_sign_5xx_and_garbage_are_not_paid_and_retried() -> anyhow::Result<()> {
    let mut cfg = sim_config();
    // The bank's retries are driven by the test: a long interval.
    cfg.push_retry_interval = Duration::from_secs(3600);
    let h = Harness::start_with(1, cfg, three_days).await?;
    for fault in [
        ReplyFault::BadSignature,
        ReplyFault::ServerError,
        ReplyFault::Garbage,
    ] {
        let code = h.submit("12.34").await?;
        let (_, body) = h.choose(code, "atm").await?;
        let no = Harness::order_no(&body)?;
        h.bank.sim.drop_notifications_for(&no, true);
        assert!(h.bank.sim.pay_now(&no));
        let token = h.pay_token(&no)?;
        h.bank.sim.set_reply_fault(Some(fault));
        // The bank's answer cannot be trusted: 503, the bank will retry; nothing paid.
        assert_eq!(h.notify(0, &token, false).await?, 503, "{fault:?}");
        let (_, p) = h.get(code).await?;
        assert_eq!(p["status"], "awaiting_payment", "{fault:?}");
        assert_eq!(h.payments_published(code).await?, 0);
        // The bank's next retry, with the fault gone, settles it.
        h.bank.sim.set_reply_fault(None);
        assert_eq!(h.notify(0, &token, false).await?, 200);
        let p = h.wait_payment(code, |p| p["status"] == "paid").await?;
        assert_eq!(p["settlements"][0]["bank_amount"], 1234);
        assert_eq!(h.payments_published(code).await?, 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_after_cancel_is_refund_needed_and_still_published() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let code = h.submit("300.00").await?;
    let (_, body) = h.choose(code, "atm").await?;
    let no = Harness::order_no(&body)?;
    let publisher = orderbus_testkit::ErpPublisher::connect().await?;
    publisher
        .publish(
            "order.orderStatus",
            &serde_json::to_vec(&json!({"orderCode": code, "status": 906}))?,
        )
        .await?;
    h.wait_payment(code, |p| p["status"] == "cancelled").await?;
    // Cannot pick a method any more.
    assert_eq!(h.choose(code, "card").await?.0, 409);
    assert!(h.bank.sim.pay_now(&no));
    let p = h
        .wait_payment(code, |p| p["status"] == "refund_needed")
        .await?;
    assert_eq!(p["settlements"][0]["outcome"], "refund_needed");
    assert_eq!(p["settlements"][0]["published"], true);
    assert_eq!(h.payments_published(code).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amount_mismatch_is_never_paid_and_flagged() -> anyhow::Result<()> {
    let h = Harness::start_with(1, sim_config(), three_days).await?;
    let code = h.submit("100.00").await?;
    // The bank holds an order under our OrderNo with another amount (what a tampered or
    // mistaken bank-side record would look like); the sweep finds it paid.
    let no = format!("{code}-1");
    let now_local = chrono::Utc::now().naive_utc() + chrono::Duration::hours(8);
    h.bank.sim.seed_order(orderbus_sinopac::sim::SeedOrder {
        shop_no: None,
        order_no: no.clone(),
        amount: orderbus_sinopac::types::Amount::from_hundredths(1000)?,
        pay_type: orderbus_sinopac::types::PayType::Atm,
        created_at: now_local,
        paid_at: Some(now_local),
    })?;
    let mut tx = h.db.pool().begin().await?;
    orderbus_payments::store::insert_attempt(
        &mut tx,
        &orderbus_payments::store::NewAttempt {
            order_code: orderbus_payments::ids::OrderCode(code),
            order_no: &no,
            pay_type: "A",
            amount_cents: 10000,
            ts_no: "T1",
            bank_code: Some("807"),
            atm_account: Some("1"),
            web_atm_url: None,
            card_pay_url: None,
            expires_at: chrono::Utc::now() + chrono::Duration::days(1),
            expire_date: None,
            bank_reply: &json!({}),
        },
        chrono::Utc::now(),
    )
    .await?;
    tx.commit().await?;
    let report = h.reconciler(0)?.sweep_once(chrono::Utc::now()).await?;
    assert_eq!(report.settled, 1, "{report:?}");
    let (_, p) = h.get(code).await?;
    assert_eq!(p["status"], "failed");
    assert_eq!(p["flag"], "amount_mismatch");
    assert_eq!(p["settlements"][0]["outcome"], "amount_mismatch");
    assert_eq!(p["settlements"][0]["bank_amount"], 1000);
    assert_eq!(h.payments_published(code).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_needs_keys_and_serves_openapi() -> anyhow::Result<()> {
    let h = Harness::start(1).await?;
    let plain = reqwest::Client::new();
    let r = plain.get(format!("{}/payments/1", h.base())).send().await?;
    assert_eq!(r.status(), 401);
    let r = plain
        .get(format!("{}/openapi.json", h.base()))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await?;
    assert!(doc["paths"]["/payments/{order_code}"]["post"].is_object());
    // A key with orders:read only may GET, not POST.
    let minted = orderbus_runtime::auth::mint_key("ro", &["orders:read".to_owned()])?;
    assert!(minted.key.starts_with("obk_"));
    let r = h
        .http
        .get(format!("{}/payments/abc", h.base()))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    Ok(())
}
