use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::NaiveDate;
use orderbus_sweettracker::{decode, Callback, CallbackReply, ClientConfig, SimConfig, Simulator};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

pub fn fast_config() -> SimConfig {
    SimConfig {
        step_interval: Duration::from_millis(5),
        retry_delays: vec![Duration::from_millis(10); 3],
        start_time: NaiveDate::from_ymd_opt(2024, 5, 5).and_then(|d| d.and_hms_opt(9, 0, 0)),
        ..SimConfig::default()
    }
}

/// Starts a simulator; returns it and its base URL.
pub async fn start_sim(config: SimConfig) -> (Simulator, String) {
    let sim = Simulator::new(config);
    let url = serve(sim.router()).await;
    (sim, url)
}

pub fn client_config(base: &str) -> ClientConfig {
    ClientConfig {
        base_url: format!("{base}/"),
        tier: "testuser".into(),
        key: "testuser".into(),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub content_type: String,
    pub callback: Callback,
}

/// Tiny receiver built with the crate's decoder. Answers `code:false` to the first `fail_first`
/// requests, then `code:true`.
#[derive(Clone, Default)]
pub struct Receiver {
    pub received: Arc<Mutex<Vec<Received>>>,
    pub requests: Arc<AtomicUsize>,
    pub fail_first: usize,
    pub undecodable: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let n = r.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if n <= r.fail_first {
        return (StatusCode::OK, Json(CallbackReply::failure("try again"))).into_response();
    }
    match decode(Some(&ct), &body) {
        Ok(cb) => {
            r.received.lock().unwrap().push(Received {
                content_type: ct,
                callback: cb,
            });
            Json(CallbackReply::success()).into_response()
        }
        Err(e) => {
            r.undecodable.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, Json(CallbackReply::failure(e.to_string()))).into_response()
        }
    }
}

pub async fn start_receiver(fail_first: usize) -> (Receiver, String) {
    let r = Receiver {
        fail_first,
        ..Receiver::default()
    };
    let app = Router::new()
        .route("/cb", post(receive))
        .with_state(r.clone());
    let url = serve(app).await;
    (r, format!("{url}/cb"))
}

impl Receiver {
    pub fn for_fid(&self, fid: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.callback.fid == fid)
            .cloned()
            .collect()
    }
}

/// Polls `cond` until true; the timeout is only an upper bound for waiting.
pub async fn wait_until<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the simulator has processed every planned event of `num`.
pub async fn wait_finished(sim: &Simulator, num: &str, code: &str) {
    wait_until(|| async { sim.registration(num, code).is_some_and(|r| r.finished) }).await;
}
