//! `/healthz`, `/readyz`, `/metrics`.

use std::sync::OnceLock;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use orderbus_bus::Health;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle. `None` when
/// another recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "prometheus recorder not installed");
                    None
                }
            }
        })
        .clone()
}

#[derive(Clone)]
struct Ops {
    health: Health,
    prometheus: Option<PrometheusHandle>,
}

/// The ops routes, to merge with the service's own router.
pub fn ops_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Ops {
            health,
            prometheus: prometheus(),
        })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let status = if ops.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(ops.health.snapshot()))
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    match ops.prometheus {
        Some(h) => (StatusCode::OK, h.render()),
        None => (StatusCode::NOT_FOUND, String::from("no recorder")),
    }
}

/// Header of the request id (taken from the request, else a new UUID; echoed in the response).
pub const REQUEST_ID: &str = "x-request-id";

/// Ops paths: their request lines log at debug (probes and scrapes every few seconds).
const OPS_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// A `request` span per request (`method`, `path`, `request_id`, `trace_id`, `client` once
/// authenticated) and one line when it is answered; the handler runs inside the request's
/// trace context (continuing an incoming `traceparent`), so the messages it enqueues continue
/// the trace.
pub fn trace_requests(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(trace_request))
}

async fn trace_request(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::HeaderValue;
    use orderbus_bus::trace::{in_context, TraceContext, TRACEPARENT};
    use tracing::Instrument;

    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let ctx =
        TraceContext::continue_or_new(req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %path,
        request_id = %request_id,
        trace_id = %ctx.trace_id(),
        client = tracing::field::Empty,
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let started = std::time::Instant::now();
    let mut response = in_context(ctx, next.run(req))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if OPS_PATHS.contains(&path.as_str()) {
            tracing::debug!(status, elapsed_ms, "request")
        } else if status >= 500 {
            tracing::warn!(status, elapsed_ms, "request")
        } else {
            tracing::info!(status, elapsed_ms, "request")
        }
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}
