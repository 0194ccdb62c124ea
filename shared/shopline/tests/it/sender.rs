//! Sender (SHOPLINE simulator) ↔ a tiny axum receiver built with the `webhook` module, over real
//! HTTP on 127.0.0.1.

use crate::common::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use orderbus_shopline::sim::{
    AttemptOutcome, SendRequest, Sender, SenderConfig, Simulator, WaybillScenario,
};
use orderbus_shopline::webhook::{Reply, TimestampFormat};
use orderbus_shopline::{LogisticsReport, PrivateKey, TrackingInfo, Verifier, VerifierConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy)]
enum Mode {
    /// Signed FAIL for the first n requests, then signed SUCCESS.
    FailFirst(usize),
    /// SUCCESS body without a signature header.
    Unsigned,
    /// SUCCESS body signed with a key the sender does not trust.
    WrongKey,
    /// HTTP 500 every time.
    Http500,
}

#[derive(Clone)]
struct Receiver {
    verifier: Verifier,
    key: PrivateKey,
    other: PrivateKey,
    mode: Mode,
    seen: Arc<Mutex<Vec<(String, String, LogisticsReport)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let (verified, report) = match r.verifier.verify_logistics_report(&headers, &body) {
        Ok(v) => v,
        Err(e) => return Reply::sign_error(&e, "t", &r.key).unwrap().into_response(),
    };
    let n = {
        let mut seen = r.seen.lock().unwrap();
        seen.push((
            verified.idempotency_key.clone(),
            verified.timestamp.to_rfc3339(),
            report,
        ));
        seen.len()
    };
    match r.mode {
        Mode::FailFirst(k) if n <= k => Reply::failure("FAIL", "try later", format!("m{n}"))
            .sign(&r.key)
            .unwrap()
            .into_response(),
        Mode::FailFirst(_) => Reply::success(format!("m{n}"))
            .sign(&r.key)
            .unwrap()
            .into_response(),
        Mode::Unsigned => {
            let body = serde_json::to_vec(&Reply::success("u")).unwrap();
            (StatusCode::OK, body).into_response()
        }
        Mode::WrongKey => Reply::success("w").sign(&r.other).unwrap().into_response(),
        Mode::Http500 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn start_receiver(
    mode: Mode,
) -> (String, Arc<Mutex<Vec<(String, String, LogisticsReport)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver {
        verifier: Verifier::new(VerifierConfig::new(test_public())),
        key: test_private(),
        other: other_private(),
        mode,
        seen: seen.clone(),
    };
    let app = Router::new()
        .route("/logistics", post(receive))
        .with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/logistics"), seen)
}

fn config(url: &str, retries: usize) -> SenderConfig {
    SenderConfig {
        target_url: url.to_owned(),
        retry_delays: vec![Duration::from_millis(10); retries],
        status_interval: Duration::from_millis(5),
        ..SenderConfig::default()
    }
}

fn report(status: &str) -> LogisticsReport {
    LogisticsReport {
        channel_order_transaction_id: "PAY-1".into(),
        tracking_list: vec![TrackingInfo {
            tracking_no: "WB-123".into(),
            site: "https://track.example".into(),
            handler: Some("warehouse".into()),
            tracking_status: status.into(),
            carrier: "SF".into(),
        }],
    }
}

#[tokio::test]
async fn retries_until_success_with_same_idempotency_key_and_timestamp() {
    let (url, seen) = start_receiver(Mode::FailFirst(2)).await;
    let sender = Sender::new(config(&url, 5)).unwrap();
    let out = sender.send_report(&report("SHIPPED")).await.unwrap();
    assert!(out.succeeded());
    assert_eq!(out.attempts.len(), 3);
    assert!(matches!(
        out.attempts[0].outcome,
        AttemptOutcome::NotSuccess { .. }
    ));
    assert!(matches!(
        out.attempts[2].outcome,
        AttemptOutcome::Success { .. }
    ));
    assert_eq!(
        out.reply.as_ref().unwrap().return_message_id.as_deref(),
        Some("m3")
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(k, _, _)| k == &out.idempotency_key));
    assert!(
        seen.iter().all(|(_, ts, _)| ts == &seen[0].1),
        "same parameters on retry"
    );
    assert!(seen.iter().all(|(_, _, r)| r == &report("SHIPPED")));
}

#[tokio::test]
async fn gives_up_at_the_retry_cap() {
    let (url, seen) = start_receiver(Mode::FailFirst(usize::MAX)).await;
    let sender = Sender::new(config(&url, 3)).unwrap();
    let out = sender.send_report(&report("SHIPPED")).await.unwrap();
    assert!(!out.succeeded());
    assert_eq!(out.attempts.len(), 4, "1 attempt + 3 retries");
    assert!(
        matches!(out.last_failure(), Some(AttemptOutcome::NotSuccess { reply }) if reply.return_code == "FAIL")
    );
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn http_errors_are_retried_and_reported() {
    let (url, seen) = start_receiver(Mode::Http500).await;
    let out = Sender::new(config(&url, 1))
        .unwrap()
        .send_report(&report("X"))
        .await
        .unwrap();
    assert!(!out.succeeded());
    assert_eq!(out.attempts.len(), 2);
    assert!(matches!(
        out.last_failure(),
        Some(AttemptOutcome::HttpStatus { status: 500 })
    ));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn rejects_unsigned_reply() {
    let (url, seen) = start_receiver(Mode::Unsigned).await;
    let out = Sender::new(config(&url, 2))
        .unwrap()
        .send_report(&report("X"))
        .await
        .unwrap();
    assert!(!out.succeeded());
    assert_eq!(out.attempts.len(), 3);
    assert!(out
        .attempts
        .iter()
        .all(|a| a.outcome == AttemptOutcome::MissingSignature));
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn rejects_badly_signed_reply() {
    let (url, _) = start_receiver(Mode::WrongKey).await;
    let out = Sender::new(config(&url, 1))
        .unwrap()
        .send_report(&report("X"))
        .await
        .unwrap();
    assert!(!out.succeeded());
    assert!(out
        .attempts
        .iter()
        .all(|a| matches!(a.outcome, AttemptOutcome::BadSignature { .. })));
}

#[tokio::test]
async fn receiver_rejects_sender_with_untrusted_key_and_sender_sees_it() {
    let (url, seen) = start_receiver(Mode::FailFirst(0)).await;
    let mut cfg = config(&url, 1);
    cfg.shopline_private_key = other_private();
    let out = Sender::new(cfg)
        .unwrap()
        .send_report(&report("X"))
        .await
        .unwrap();
    assert!(!out.succeeded());
    assert!(matches!(
        out.last_failure(),
        Some(AttemptOutcome::HttpStatus { status: 401 })
    ));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_timestamp_format_goes_through_and_fresh_timestamps_on_retry_work() {
    for fmt in [
        TimestampFormat::Micros,
        TimestampFormat::Millis,
        TimestampFormat::DateTime,
    ] {
        let (url, _) = start_receiver(Mode::FailFirst(1)).await;
        let mut cfg = config(&url, 2);
        cfg.timestamp_format = fmt;
        cfg.reuse_timestamp_on_retry = false;
        let out = Sender::new(cfg)
            .unwrap()
            .send_report(&report("X"))
            .await
            .unwrap();
        assert!(out.succeeded(), "{fmt:?}: {:?}", out.attempts);
        let len = match fmt {
            TimestampFormat::Micros => 16,
            TimestampFormat::Millis => 13,
            TimestampFormat::DateTime => 14,
        };
        assert!(out.attempts.iter().all(|a| a.timestamp.len() == len));
    }
}

#[tokio::test]
async fn waybill_scenario_reports_each_status_with_its_own_key() {
    let (url, seen) = start_receiver(Mode::FailFirst(0)).await;
    let sender = Sender::new(config(&url, 1)).unwrap();
    let outcomes = sender
        .run_waybill(&WaybillScenario {
            channel_order_transaction_id: "PAY-9".into(),
            tracking_no: "WB-9".into(),
            carrier: "SF".into(),
            site: "https://track.example".into(),
            handler: None,
            statuses: vec![],
        })
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes.iter().all(|o| o.succeeded()));
    let seen = seen.lock().unwrap();
    let statuses: Vec<&str> = seen
        .iter()
        .map(|(_, _, r)| r.tracking_list[0].tracking_status.as_str())
        .collect();
    assert_eq!(
        statuses,
        ["SHIPPED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"]
    );
    let mut keys: Vec<&String> = seen.iter().map(|(k, _, _)| k).collect();
    keys.dedup();
    assert_eq!(keys.len(), 4);
}

#[tokio::test]
async fn admin_router_sends_in_background_and_records_history() {
    let (url, seen) = start_receiver(Mode::FailFirst(1)).await;
    let sim = Simulator::new(config(&url, 2)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = sim.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("http://{addr}/__sim/send"))
        .json(&SendRequest {
            report: report("DELIVERED"),
            target_url: None,
            idempotency_key: Some("idem-fixed".into()),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // Upper bound only: wait for the background send to finish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let history = loop {
        let h: Vec<serde_json::Value> = http
            .get(format!("http://{addr}/__sim/history"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !h.is_empty() || tokio::time::Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["idempotency_key"], "idem-fixed");
    assert_eq!(history[0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(history[0]["reply"]["returnCode"], "SUCCESS");
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|(k, _, _)| k == "idem-fixed"));
}
