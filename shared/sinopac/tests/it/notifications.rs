//! BackendURL pushes: retries until acknowledged, dropped notifications, and reconciliation
//! through OrderQuery.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Duration as ChronoDuration;
use orderbus_sinopac::notify::{decode_notification, ACK_BODY};
use orderbus_sinopac::sim::{PayState, PushOutcome, SimConfig};
use orderbus_sinopac::{DateField, DateWindow, Notification, OrderQuery, PayFlag};

use crate::common::{manual_config, serve, setup, wait_for, SHOP};
use crate::services::{atm_order, card_order};

/// A merchant endpoint that refuses the first `fail_first` deliveries with 500.
#[derive(Clone, Default)]
struct Merchant {
    fail_first: Arc<AtomicU32>,
    received: Arc<Mutex<Vec<Notification>>>,
    attempts: Arc<AtomicU32>,
}

async fn merchant_handler(
    State(m): State<Merchant>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    m.attempts.fetch_add(1, Ordering::SeqCst);
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
    let Ok(note) = decode_notification(ct, &body) else {
        return (StatusCode::BAD_REQUEST, "bad");
    };
    let left = m.fail_first.load(Ordering::SeqCst);
    if left > 0 {
        m.fail_first.store(left - 1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "down");
    }
    m.received.lock().expect("lock").push(note);
    (StatusCode::OK, ACK_BODY)
}

async fn merchant(fail_first: u32) -> (Merchant, String) {
    let m = Merchant::default();
    m.fail_first.store(fail_first, Ordering::SeqCst);
    let router = axum::Router::new()
        .route("/backend", post(merchant_handler))
        .route("/return", post(merchant_handler))
        .with_state(m.clone());
    let base = serve(router).await;
    (m, base)
}

#[tokio::test]
async fn notification_is_retried_until_acknowledged() {
    let (m, mbase) = merchant(2).await;
    let cfg = SimConfig {
        require_ack_body: true,
        ..manual_config()
    };
    let (sim, _base, client) = setup(cfg).await;
    let mut req = atm_order("N0001", 250);
    req.backend_url = Some(format!("{mbase}/backend"));
    client.order_create(&req).await.expect("create");
    assert!(sim.pay_now("N0001"));

    let view = wait_for("acknowledged push", || async {
        sim.order("N0001").filter(|o| o.acked)
    })
    .await;
    let outcomes: Vec<_> = view.pushes.iter().map(|p| p.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            PushOutcome::Rejected(500),
            PushOutcome::Rejected(500),
            PushOutcome::Acked
        ]
    );
    assert_eq!(m.attempts.load(Ordering::SeqCst), 3);
    let note = m.received.lock().expect("lock")[0].clone();
    assert_eq!(note.shop_no, SHOP);

    // The notification is only a pointer: the signed OrderPayQuery reply is the truth.
    let result = client
        .order_pay_query(&note.pay_token)
        .await
        .expect("pay query");
    let ts = result.ts_result_content.expect("TSResultContent");
    assert!(ts.is_paid());
    assert_eq!(ts.order_no, "N0001");
}

#[tokio::test]
async fn retries_stop_after_the_configured_maximum() {
    let (m, mbase) = merchant(u32::MAX).await;
    let cfg = SimConfig {
        push_max_retries: 2,
        ..manual_config()
    };
    let (sim, _base, client) = setup(cfg).await;
    let mut req = atm_order("N0002", 250);
    req.backend_url = Some(format!("{mbase}/backend"));
    client.order_create(&req).await.expect("create");
    assert!(sim.pay_now("N0002"));
    let view = wait_for("three attempts", || async {
        sim.order("N0002").filter(|o| o.pushes.len() == 3)
    })
    .await;
    assert!(!view.acked);
    assert!(view
        .pushes
        .iter()
        .all(|p| p.outcome == PushOutcome::Rejected(500)));
    assert_eq!(
        view.pushes.iter().map(|p| p.attempt).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(m.attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn dropped_notifications_are_found_by_order_query() {
    let (m, mbase) = merchant(0).await;
    let cfg = SimConfig {
        atm_pay_delay: Duration::from_millis(20),
        push_max_retries: 3,
        ..manual_config()
    };
    let (sim, _base, client) = setup(cfg).await;
    sim.drop_notifications_for("N0010", true);
    for no in ["N0010", "N0011"] {
        let mut req = atm_order(no, 300);
        req.backend_url = Some(format!("{mbase}/backend"));
        client.order_create(&req).await.expect("create");
    }
    // N0011's notification arrives; every attempt for N0010 is swallowed.
    wait_for("N0011 acknowledged", || async {
        sim.order("N0011").filter(|o| o.acked)
    })
    .await;
    let lost = wait_for("all N0010 attempts spent", || async {
        sim.order("N0010").filter(|o| o.pushes.len() == 4)
    })
    .await;
    assert!(lost
        .pushes
        .iter()
        .all(|p| p.outcome == PushOutcome::Dropped));
    assert!(matches!(lost.state, PayState::Paid { .. }));
    let received: Vec<String> = m
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|n| n.pay_token.clone())
        .collect();
    assert_eq!(received.len(), 1);

    // Reconciliation sweep: paid orders of today's window, then keep those never notified.
    let now = chrono::Utc::now().naive_utc() + ChronoDuration::hours(8);
    let paid = client
        .order_query_window(
            DateField::Order,
            DateWindow {
                start: now - ChronoDuration::hours(2),
                end: now + ChronoDuration::minutes(1),
            },
            &OrderQuery {
                pay_flag: Some(PayFlag::Paid),
                ..OrderQuery::default()
            },
        )
        .await
        .expect("sweep");
    assert_eq!(paid.len(), 2);
    let found = paid
        .iter()
        .find(|r| r.order_no == "N0010")
        .expect("lost order found by the sweep");
    assert!(found.is_paid());
    assert_eq!(found.pay_status, "1A400");
    assert!(!found.pay_date.is_empty());
}

#[tokio::test]
async fn card_payment_posts_return_url_form_and_backend_json() {
    let (m, mbase) = merchant(0).await;
    let (sim, _base, client) = setup(manual_config()).await;
    let mut req = card_order("N0020", 99);
    req.backend_url = Some(format!("{mbase}/backend"));
    req.return_url = Some(format!("{mbase}/return"));
    client.order_create(&req).await.expect("create");
    assert!(sim.pay_now("N0020"));
    let view = wait_for("both deliveries", || async {
        sim.order("N0020")
            .filter(|o| o.acked && o.pushes.iter().any(|p| p.target == "return"))
    })
    .await;
    assert!(view.pushes.iter().all(|p| p.outcome == PushOutcome::Acked));
    // Both bodies (JSON and form) decoded to the same token.
    let got = m.received.lock().expect("lock").clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], got[1]);
}

#[test]
fn notification_decoder_accepts_json_and_form() {
    let json = decode_notification(
        Some("application/json; charset=utf-8"),
        br#"{"ShopNo":"NA0249_001","PayToken":"abc123"}"#,
    )
    .expect("json");
    let form = decode_notification(
        Some("application/x-www-form-urlencoded"),
        b"ShopNo=NA0249_001&PayToken=abc123",
    )
    .expect("form");
    assert_eq!(json, form);
    // No content type: sniffed.
    assert_eq!(
        decode_notification(
            None,
            b"  {\"ShopNo\":\"NA0249_001\",\"PayToken\":\"abc123\"}"
        )
        .expect("sniff"),
        json
    );
    assert!(decode_notification(None, b"ShopNo=NA0249_001").is_err());
    assert!(decode_notification(Some("application/json"), b"{\"ShopNo\":1}").is_err());
    assert!(decode_notification(
        None,
        format!("ShopNo=A&PayToken={}", "x".repeat(101)).as_bytes()
    )
    .is_err());
}
