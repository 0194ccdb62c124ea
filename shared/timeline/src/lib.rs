//! # orderbus-timeline
//!
//! One timeline per order across every service. Each service keeps its own records (state
//! transitions with the reason an event was not applied, partner calls, inbound webhooks) in its
//! own database; it exposes them for one order at
//! `GET /timeline/orders/{order_code}` ([`router`]), and the ops service asks every service
//! ([`FanOut`]) and merges the answers with its journal.
//!
//! A service joins with one line in its API builder (see the README):
//!
//! ```rust,ignore
//! .merge(orderbus_timeline::mount(&auth, "payments", orderbus_timeline::standard_sources(&pool)))
//! ```
//!
//! plus, when it keeps its own transition table, one [`TimelineSource`] of its own.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};

/// The path every service serves its entries at (`{order_code}` = the order code as text).
pub const PATH: &str = "/timeline/orders/{order_code}";

/// The scope the endpoint requires (the ops service's key carries it).
pub const SCOPE: &str = "ops:read";

/// One thing that happened to an order, as one service saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The service that recorded it (`storefront`, `payments`, `ops`, …).
    pub service: String,
    /// What kind of record: `transition`, `partner_call`, `webhook`, `bus_message`,
    /// `parked`, `replay`, `monitor_report`, …
    pub kind: String,
    /// One line for a human: `order.erpstatus 600 applied (paid -> shipped)`.
    pub summary: String,
    /// False when an event was offered but not applied (duplicate, late, illegal, refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
    /// Why it was not applied, or why a call or webhook failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The W3C trace id linking the entry to the others of the same causal chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The AMQP message id the entry concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Structured detail (verdicts, statuses, durations).
    #[serde(default)]
    pub detail: Value,
    /// The raw payload, only when asked for (`?raw=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

impl TimelineEntry {
    /// An entry with the required fields; the rest empty.
    pub fn new(
        at: DateTime<Utc>,
        service: impl Into<String>,
        kind: impl Into<String>,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            at,
            service: service.into(),
            kind: kind.into(),
            summary: summary.into(),
            applied: None,
            reason: None,
            trace_id: None,
            message_id: None,
            detail: Value::Null,
            raw: None,
        }
    }
}

/// What a service answers at [`PATH`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceTimeline {
    pub service: String,
    pub order_code: String,
    pub entries: Vec<TimelineEntry>,
    /// Sources that failed (the others still answer).
    #[serde(default)]
    pub errors: Vec<String>,
}

/// A failed source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

/// One kind of record a service keeps about orders.
pub trait TimelineSource: Send + Sync + 'static {
    /// A name for errors (`ingress_log`, `order_timeline`).
    fn name(&self) -> &str;
    /// The entries for `order_code`, with raw payloads when `raw`.
    fn entries<'a>(
        &'a self,
        order_code: &'a str,
        raw: bool,
    ) -> BoxFuture<'a, Result<Vec<TimelineEntry>, SourceError>>;
}

/// A source from an async closure (`order_code`, `raw`) → entries.
pub fn source_fn<F>(name: &'static str, f: F) -> Arc<dyn TimelineSource>
where
    F: for<'a> Fn(&'a str, bool) -> BoxFuture<'a, Result<Vec<TimelineEntry>, SourceError>>
        + Send
        + Sync
        + 'static,
{
    struct FnSource<F> {
        name: &'static str,
        f: F,
    }
    impl<F> TimelineSource for FnSource<F>
    where
        F: for<'a> Fn(&'a str, bool) -> BoxFuture<'a, Result<Vec<TimelineEntry>, SourceError>>
            + Send
            + Sync
            + 'static,
    {
        fn name(&self) -> &str {
            self.name
        }
        fn entries<'a>(
            &'a self,
            order_code: &'a str,
            raw: bool,
        ) -> BoxFuture<'a, Result<Vec<TimelineEntry>, SourceError>> {
            (self.f)(order_code, raw)
        }
    }
    Arc::new(FnSource { name, f })
}

/// SQLSTATE 42P01: the table does not exist (a service that does not use that building block).
fn is_missing_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01"))
}

/// The inbound webhooks of `orderbus-ingress` (`ingress_log`) for the order: partner,
/// signature verdict, dedupe verdict, outcome, status; raw = the logged body.
pub struct IngressLog {
    pub pool: PgPool,
    pub service: String,
}

impl TimelineSource for IngressLog {
    fn name(&self) -> &str {
        "ingress_log"
    }
    fn entries<'a>(
        &'a self,
        order_code: &'a str,
        raw: bool,
    ) -> BoxFuture<'a, Result<Vec<TimelineEntry>, SourceError>> {
        Box::pin(async move {
            // The shared crate's own table, read like its other queries (runtime SQL: the
            // table belongs to the building block, not to one service's compile-time schema).
            let rows = match sqlx::query(
                "SELECT received_at, partner, route, trace_id, verification, \
                 verification_detail, dedupe, outcome, status, error, body, body_len, \
                 body_truncated FROM ingress_log WHERE order_ref = $1 ORDER BY received_at, id",
            )
            .bind(order_code)
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => rows,
                Err(e) if is_missing_table(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let partner: String = r.try_get("partner")?;
                let verification: String = r.try_get("verification")?;
                let dedupe: Option<String> = r.try_get("dedupe")?;
                let outcome: String = r.try_get("outcome")?;
                let status: i16 = r.try_get("status")?;
                let mut e = TimelineEntry::new(
                    r.try_get("received_at")?,
                    self.service.clone(),
                    "webhook",
                    format!(
                        "webhook from {partner}: signature {verification}, dedupe {}, {outcome} ({status})",
                        dedupe.as_deref().unwrap_or("-")
                    ),
                );
                e.applied = Some(outcome == "accepted");
                e.reason = r.try_get("error")?;
                e.trace_id = Some(r.try_get("trace_id")?);
                e.detail = json!({
                    "partner": partner,
                    "route": r.try_get::<String, _>("route")?,
                    "verification": verification,
                    "verification_detail": r.try_get::<Option<String>, _>("verification_detail")?,
                    "dedupe": dedupe,
                    "outcome": outcome,
                    "status": status,
                    "body_len": r.try_get::<i64, _>("body_len")?,
                    "body_truncated": r.try_get::<bool, _>("body_truncated")?,
                });
                if raw {
                    let body: Vec<u8> = r.try_get("body")?;
                    e.raw = Some(raw_value(&body));
                }
                out.push(e);
            }
            Ok(out)
        })
    }
}

/// The outbound partner calls of `orderbus-partner` (`partner_calls`) for the order.
pub struct PartnerCalls {
    pub pool: PgPool,
    pub service: String,
}

impl TimelineSource for PartnerCalls {
    fn name(&self) -> &str {
        "partner_calls"
    }
    fn entries<'a>(
        &'a self,
        order_code: &'a str,
        _raw: bool,
    ) -> BoxFuture<'a, Result<Vec<TimelineEntry>, SourceError>> {
        Box::pin(async move {
            let rows = match sqlx::query(
                "SELECT partner, operation, started_at, duration_ms, outcome, error_class, \
                 http_status, error, trace_id FROM partner_calls WHERE order_ref = $1 \
                 ORDER BY started_at, id",
            )
            .bind(order_code)
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => rows,
                Err(e) if is_missing_table(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let partner: String = r.try_get("partner")?;
                let operation: String = r.try_get("operation")?;
                let outcome: String = r.try_get("outcome")?;
                let ms: f64 = r.try_get("duration_ms")?;
                let class: Option<String> = r.try_get("error_class")?;
                let mut e = TimelineEntry::new(
                    r.try_get("started_at")?,
                    self.service.clone(),
                    "partner_call",
                    format!(
                        "{partner} {operation}: {outcome}{} in {ms:.0} ms",
                        class
                            .as_deref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default()
                    ),
                );
                e.applied = Some(outcome == "ok");
                e.reason = r.try_get("error")?;
                e.trace_id = r.try_get("trace_id")?;
                e.detail = json!({
                    "partner": partner,
                    "operation": operation,
                    "outcome": outcome,
                    "error_class": class,
                    "http_status": r.try_get::<Option<i16>, _>("http_status")?,
                    "duration_ms": ms,
                });
                out.push(e);
            }
            Ok(out)
        })
    }
}

/// The ingress log and the partner call log of `service` (each empty when the service does
/// not use that building block).
pub fn standard_sources(pool: &PgPool, service: &str) -> Vec<Arc<dyn TimelineSource>> {
    vec![
        Arc::new(IngressLog {
            pool: pool.clone(),
            service: service.to_owned(),
        }),
        Arc::new(PartnerCalls {
            pool: pool.clone(),
            service: service.to_owned(),
        }),
    ]
}

/// A body as JSON when it is JSON, else `{"base64": …}`.
pub fn raw_value(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(_) => match std::str::from_utf8(body) {
            Ok(text) => json!({ "text": text }),
            Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(body) }),
        },
    }
}

#[derive(Clone)]
struct Endpoint {
    service: Arc<str>,
    sources: Arc<Vec<Arc<dyn TimelineSource>>>,
}

#[derive(Debug, Deserialize)]
struct RawQuery {
    #[serde(default)]
    raw: bool,
}

/// The read endpoint [`PATH`] over `sources` (unauthenticated: protect it, or use [`mount`]).
pub fn router(service: &str, sources: Vec<Arc<dyn TimelineSource>>) -> Router {
    Router::new().route(PATH, get(serve)).with_state(Endpoint {
        service: Arc::from(service),
        sources: Arc::new(sources),
    })
}

/// [`router`] behind `auth` with the `ops:read` scope: the one line a service adds to its API
/// builder (`.merge(orderbus_timeline::mount(&auth, name, sources))`).
pub fn mount(
    auth: &orderbus_runtime::Auth,
    service: &str,
    sources: Vec<Arc<dyn TimelineSource>>,
) -> Router {
    auth.protect(
        router(service, sources),
        orderbus_runtime::Policy::Scope(SCOPE),
        &[],
    )
}

/// Longest an order code may be (digits); anything else is refused with 400.
const ORDER_CODE_MAX: usize = 20;

async fn serve(
    State(ep): State<Endpoint>,
    Path(order_code): Path<String>,
    Query(q): Query<RawQuery>,
) -> Response {
    if order_code.is_empty()
        || order_code.len() > ORDER_CODE_MAX
        || !order_code.bytes().all(|b| b.is_ascii_digit())
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "bad_request", "message": "the order code must be 1-20 digits"})),
        )
            .into_response();
    }
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for s in ep.sources.iter() {
        match s.entries(&order_code, q.raw).await {
            Ok(mut e) => entries.append(&mut e),
            Err(e) => {
                tracing::warn!(source = s.name(), error = %e, "timeline source failed");
                errors.push(format!("{}: {e}", s.name()));
            }
        }
    }
    entries.sort_by_key(|e| e.at);
    if entries.is_empty() && !errors.is_empty() && errors.len() == ep.sources.len() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "5")],
            Json(json!({"error": "unavailable", "message": errors.join("; ")})),
        )
            .into_response();
    }
    Json(ServiceTimeline {
        service: ep.service.to_string(),
        order_code,
        entries,
        errors,
    })
    .into_response()
}

/// A service the ops side asks: its name and base URL (`http://storefront:8080` in
/// Kubernetes through the Service DNS name, `http://127.0.0.1:8080` under `make run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub base_url: String,
}

/// Parses `name=url` entries separated by commas or whitespace.
pub fn parse_peers(text: &str) -> Result<Vec<Peer>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (name, url) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected name=url"))?;
            if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{entry:?}: expected name=http(s)://host:port"));
            }
            Ok(Peer {
                name: name.to_owned(),
                base_url: url.trim_end_matches('/').to_owned(),
            })
        })
        .collect()
}

/// What one peer answered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerAnswer {
    pub service: String,
    /// `ok`, or why the service's entries are missing (`unreachable: …`, `http 503`, …).
    pub status: String,
    pub entries: Vec<TimelineEntry>,
}

/// The ops-side client: asks every peer at once, each under a timeout; a peer that fails is
/// reported, never fails the whole timeline.
#[derive(Clone, Debug)]
pub struct FanOut {
    peers: Vec<Peer>,
    http: reqwest::Client,
    api_key: Option<String>,
    timeout: Duration,
}

impl FanOut {
    pub fn new(peers: Vec<Peer>, api_key: Option<String>, timeout: Duration) -> Self {
        Self {
            peers,
            http: reqwest::Client::new(),
            api_key,
            timeout,
        }
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Every peer's entries for `order_code`.
    pub async fn fetch(&self, order_code: &str, raw: bool) -> Vec<PeerAnswer> {
        let calls = self
            .peers
            .iter()
            .map(|p| self.fetch_one(p, order_code, raw));
        futures::future::join_all(calls).await
    }

    async fn fetch_one(&self, peer: &Peer, order_code: &str, raw: bool) -> PeerAnswer {
        let url = format!("{}/timeline/orders/{order_code}?raw={raw}", peer.base_url);
        let mut req = self.http.get(&url).timeout(self.timeout);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let answer = |status: String, entries| PeerAnswer {
            service: peer.name.clone(),
            status,
            entries,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return answer(format!("unreachable: {e}"), Vec::new()),
        };
        if !resp.status().is_success() {
            return answer(format!("http {}", resp.status().as_u16()), Vec::new());
        }
        match resp.json::<ServiceTimeline>().await {
            Ok(t) if t.errors.is_empty() => answer("ok".into(), t.entries),
            Ok(t) => answer(format!("partial: {}", t.errors.join("; ")), t.entries),
            Err(e) => answer(format!("bad answer: {e}"), Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let p = parse_peers("storefront=http://127.0.0.1:8080, payments=http://payments:8081/")
            .expect("valid");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].base_url, "http://payments:8081");
        assert!(parse_peers("storefront").is_err());
        assert!(parse_peers("x=ftp://a").is_err());
        assert!(parse_peers("").expect("empty").is_empty());
    }

    #[test]
    fn raw_values() {
        assert_eq!(raw_value(b"{\"a\":1}"), json!({"a": 1}));
        assert_eq!(raw_value(b"nope"), json!({"text": "nope"}));
        assert_eq!(raw_value(&[0xff, 0x00]), json!({"base64": "/wA="}));
    }
}
