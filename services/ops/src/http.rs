//! The ops HTTP API (GET needs `ops:read`, everything else `ops:replay`) and the monitoring
//! intake (`ops:report`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use orderbus_runtime::auth::Client;
use orderbus_timeline::{raw_value, FanOut};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::parking::{self, ReplayConfig, Running};
use crate::store::{self, NewAudit, Selector};
use crate::{monitor, timeline};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    pub pool: PgPool,
    pub fanout: Arc<FanOut>,
    pub replay: Arc<ReplayConfig>,
    pub running: Running,
    pub shutdown: CancellationToken,
    pub max_selection: i64,
}

/// An error answer (JSON, never a panic).
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            _ => "unavailable",
        };
        (self.0, Json(json!({"error": code, "message": self.1}))).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "database error");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"))
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn actor(client: Option<Extension<Client>>) -> String {
    client
        .map(|Extension(Client(c))| c)
        .unwrap_or_else(|| "anonymous (ORDERBUS_AUTH=open)".to_owned())
}

/// The API routes (to be protected by the caller).
pub fn api(app: App) -> Router {
    Router::new()
        .route("/orders/{order_code}/timeline", get(order_timeline))
        .route("/journal", get(journal))
        .route("/parking", get(parking_list))
        .route("/parking/replay", post(parking_replay))
        .route("/parking/purge", post(parking_purge))
        .route("/parking/{id}", get(parking_show))
        .route("/journal/redrive", post(journal_redrive))
        .route("/audit", get(audit_list))
        .route("/audit/{id}", get(audit_show))
        .route("/audit/{id}/resume", post(audit_resume))
        .route("/audit/{id}/stop", post(audit_stop))
        .route("/monitor/reports", get(monitor_reports))
        .route("/monitor/unreported", get(monitor_unreported))
        .with_state(app)
}

/// The monitoring intake route (to be protected with `ops:report`).
pub fn intake(pool: PgPool, body_limit: usize) -> Router {
    Router::new()
        .route(
            "/erp/order/publishRabbitmqSentEvent",
            post(publish_sent_event),
        )
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(pool)
}

#[derive(Debug, Deserialize)]
struct RawQuery {
    #[serde(default)]
    raw: bool,
}

fn order_code(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| bad("the order code must be a positive integer"))
}

async fn order_timeline(
    State(app): State<App>,
    Path(code): Path<String>,
    Query(q): Query<RawQuery>,
) -> Result<Json<timeline::Timeline>, ApiError> {
    let code = order_code(&code)?;
    Ok(Json(
        timeline::assemble(&app.pool, &app.fanout, code, q.raw).await?,
    ))
}

#[derive(Debug, Deserialize)]
struct JournalQuery {
    routing_key: String,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    raw: bool,
}

async fn journal(
    State(app): State<App>,
    Query(q): Query<JournalQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = store::journal_by_key(
        &app.pool,
        &q.routing_key,
        q.since,
        q.until.unwrap_or_else(Utc::now),
        q.limit.unwrap_or(100).clamp(1, 10_000),
    )
    .await?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let body = q.raw.then(|| raw_value(&r.body));
            let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
            if let Some(b) = body {
                v["body"] = b;
            }
            v
        })
        .collect();
    Ok(Json(json!({ "messages": rows })))
}

/// `?service=&routing_key=&reason=&class=&since=&until=&order_code=&header=name=value&state=`
/// (plain fields: serde's `flatten` cannot read numbers from a query string).
#[derive(Debug, Default, Deserialize)]
struct SelectorQuery {
    service: Option<String>,
    routing_key: Option<String>,
    reason: Option<String>,
    class: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    order_code: Option<String>,
    header: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

impl SelectorQuery {
    fn selector(&self) -> Result<Selector, ApiError> {
        let order_code = match self.order_code.as_deref() {
            None | Some("") => None,
            Some(c) => Some(order_code(c)?),
        };
        Ok(Selector {
            service: self.service.clone(),
            routing_key: self.routing_key.clone(),
            reason: self.reason.clone(),
            class: self.class.clone(),
            since: self.since,
            until: self.until,
            order_code,
            header: self.header.clone(),
            state: self.state.clone(),
        })
    }
}

async fn parking_list(
    State(app): State<App>,
    Query(q): Query<SelectorQuery>,
) -> Result<Json<Value>, ApiError> {
    let selector = q.selector()?;
    let ids = store::select_parked(&app.pool, &selector, app.max_selection).await?;
    let groups = store::parked_groups(&app.pool, &ids).await?;
    let shown: Vec<i64> = ids
        .iter()
        .copied()
        .take(q.limit.unwrap_or(50).clamp(0, 10_000) as usize)
        .collect();
    let messages = store::parked_rows(&app.pool, &shown).await?;
    Ok(Json(json!({
        "selector": selector,
        "total": ids.len(),
        "groups": groups,
        "messages": messages,
    })))
}

async fn parking_show(
    State(app): State<App>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let p = store::parked_full(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no parked message {id}")))?;
    let row = store::parked_rows(&app.pool, &[id]).await?;
    Ok(Json(json!({
        "message": row.first(),
        "reason": p.reason,
        "properties": p.properties,
        "headers": p.headers,
        "body": raw_value(&p.body),
        "body_text": String::from_utf8_lossy(&p.body),
        "work_queue": p.work_queue,
        "service": p.service,
        "routing_key": p.routing_key,
        "message_id": p.message_id,
    })))
}

/// A replay, re-drive or purge request.
#[derive(Debug, Deserialize)]
pub struct ActionRequest {
    #[serde(default)]
    pub selector: Selector,
    /// Why (required; goes into the audit).
    pub reason: String,
    #[serde(default)]
    pub dry_run: bool,
    /// Messages per second (replays).
    #[serde(default)]
    pub rate: Option<f64>,
    /// At most this many messages.
    #[serde(default)]
    pub limit: Option<i64>,
    /// The OS user of the CLI that asked.
    #[serde(default)]
    pub os_user: Option<String>,
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().len() < 3 {
        return Err(bad(
            "a reason (at least 3 characters) is required for the audit",
        ));
    }
    if reason.contains('\0') || reason.len() > 1000 {
        return Err(bad(
            "the reason must be at most 1000 characters, without NUL",
        ));
    }
    Ok(())
}

async fn parking_replay(
    State(app): State<App>,
    client: Option<Extension<Client>>,
    Json(req): Json<ActionRequest>,
) -> Result<Response, ApiError> {
    check_reason(&req.reason)?;
    let limit = req
        .limit
        .unwrap_or(app.max_selection)
        .clamp(1, app.max_selection);
    let ids = store::select_parked(&app.pool, &req.selector, limit).await?;
    let groups = store::parked_groups(&app.pool, &ids).await?;
    let sample = store::parked_rows(&app.pool, &ids[..ids.len().min(10)]).await?;
    let who = actor(client);
    let mut tx = app.pool.begin().await?;
    let audit_id = store::insert_audit(
        &mut tx,
        &NewAudit {
            action: "replay",
            dry_run: req.dry_run,
            actor: &who,
            os_user: req.os_user.as_deref(),
            reason: &req.reason,
            selector: serde_json::to_value(&req.selector).unwrap_or(Value::Null),
            matched: ids.len() as i32,
            state: if req.dry_run || ids.is_empty() {
                "done"
            } else {
                "running"
            },
        },
    )
    .await?;
    if !req.dry_run && !ids.is_empty() {
        let rows = store::parked_rows(&app.pool, &ids).await?;
        let services: Vec<String> = rows.iter().map(|r| r.service.clone()).collect();
        let keys: Vec<String> = rows.iter().map(|r| r.routing_key.clone()).collect();
        let mids: Vec<String> = rows
            .iter()
            .map(|r| r.message_id.clone().unwrap_or_default())
            .collect();
        let sources: Vec<i64> = rows.iter().map(|r| r.id).collect();
        store::insert_audit_items(&mut tx, audit_id, &sources, &services, &keys, &mids).await?;
    }
    tx.commit().await?;
    let rate = req.rate.unwrap_or(app.replay.default_rate);
    if !req.dry_run && !ids.is_empty() {
        parking::spawn_replay(
            app.pool.clone(),
            (*app.replay).clone(),
            app.running.clone(),
            audit_id,
            rate,
            &app.shutdown,
        );
    }
    Ok((
        if req.dry_run {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        Json(json!({
            "audit_id": audit_id,
            "dry_run": req.dry_run,
            "matched": ids.len(),
            "groups": groups,
            "sample": sample,
            "via": sample.first().map(|s| app.replay.tier_exchange(&s.service)),
            "rate": rate,
        })),
    )
        .into_response())
}

async fn parking_purge(
    State(app): State<App>,
    client: Option<Extension<Client>>,
    Json(req): Json<ActionRequest>,
) -> Result<Json<Value>, ApiError> {
    check_reason(&req.reason)?;
    let limit = req
        .limit
        .unwrap_or(app.max_selection)
        .clamp(1, app.max_selection);
    let ids = store::select_parked(&app.pool, &req.selector, limit).await?;
    let groups = store::parked_groups(&app.pool, &ids).await?;
    let who = actor(client);
    let mut tx = app.pool.begin().await?;
    let audit_id = store::insert_audit(
        &mut tx,
        &NewAudit {
            action: "purge",
            dry_run: req.dry_run,
            actor: &who,
            os_user: req.os_user.as_deref(),
            reason: &req.reason,
            selector: serde_json::to_value(&req.selector).unwrap_or(Value::Null),
            matched: ids.len() as i32,
            state: "running",
        },
    )
    .await?;
    let rows = store::parked_rows(&app.pool, &ids).await?;
    let services: Vec<String> = rows.iter().map(|r| r.service.clone()).collect();
    let keys: Vec<String> = rows.iter().map(|r| r.routing_key.clone()).collect();
    let mids: Vec<String> = rows
        .iter()
        .map(|r| r.message_id.clone().unwrap_or_default())
        .collect();
    store::insert_audit_items(&mut tx, audit_id, &ids, &services, &keys, &mids).await?;
    let purged = if req.dry_run {
        0
    } else {
        store::purge_parked(&mut tx, &ids, audit_id).await?
    };
    store::set_audit_done(&mut tx, audit_id, purged as i32).await?;
    tx.commit().await?;
    Ok(Json(json!({
        "audit_id": audit_id,
        "dry_run": req.dry_run,
        "matched": ids.len(),
        "purged": purged,
        "groups": groups,
    })))
}

/// Re-drive from the journal: send `routing_key` messages seen in [since, until) to one
/// service's work queue again.
#[derive(Debug, Deserialize)]
struct RedriveRequest {
    service: String,
    routing_key: String,
    since: DateTime<Utc>,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    reason: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    rate: Option<f64>,
    /// New message ids (the consumers' inbox would otherwise absorb messages it applied).
    #[serde(default)]
    fresh_ids: bool,
    #[serde(default)]
    os_user: Option<String>,
}

async fn journal_redrive(
    State(app): State<App>,
    client: Option<Extension<Client>>,
    Json(req): Json<RedriveRequest>,
) -> Result<Response, ApiError> {
    check_reason(&req.reason)?;
    if req.service.is_empty()
        || req
            .service
            .contains(|c: char| c.is_whitespace() || c == '\0')
    {
        return Err(bad("service must be a service name"));
    }
    let until = req.until.unwrap_or_else(Utc::now);
    let rows = store::journal_by_key(
        &app.pool,
        &req.routing_key,
        req.since,
        until,
        app.max_selection,
    )
    .await?;
    let who = actor(client);
    let selector = json!({
        "service": req.service, "routing_key": req.routing_key, "since": req.since,
        "until": until, "fresh_ids": req.fresh_ids,
    });
    let mut tx = app.pool.begin().await?;
    let audit_id = store::insert_audit(
        &mut tx,
        &NewAudit {
            action: "redrive",
            dry_run: req.dry_run,
            actor: &who,
            os_user: req.os_user.as_deref(),
            reason: &req.reason,
            selector,
            matched: rows.len() as i32,
            state: if req.dry_run || rows.is_empty() {
                "done"
            } else {
                "running"
            },
        },
    )
    .await?;
    if !req.dry_run && !rows.is_empty() {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let services = vec![req.service.clone(); rows.len()];
        let keys: Vec<String> = rows.iter().map(|r| r.routing_key.clone()).collect();
        let mids: Vec<String> = rows
            .iter()
            .map(|r| r.message_id.clone().unwrap_or_default())
            .collect();
        store::insert_audit_items(&mut tx, audit_id, &ids, &services, &keys, &mids).await?;
    }
    tx.commit().await?;
    let rate = req.rate.unwrap_or(app.replay.default_rate);
    if !req.dry_run && !rows.is_empty() {
        parking::spawn_replay(
            app.pool.clone(),
            (*app.replay).clone(),
            app.running.clone(),
            audit_id,
            rate,
            &app.shutdown,
        );
    }
    let sample: Vec<Value> = rows
        .iter()
        .take(10)
        .map(|r| json!({"journal_id": r.id, "message_id": r.message_id, "seen_at": r.seen_at, "body": raw_value(&r.body)}))
        .collect();
    Ok((
        if req.dry_run {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        Json(json!({
            "audit_id": audit_id, "dry_run": req.dry_run, "matched": rows.len(),
            "via": app.replay.tier_exchange(&req.service),
            "work_queue": orderbus_bus::names::work_queue(&req.service, &req.routing_key),
            "sample": sample,
        })),
    )
        .into_response())
}

async fn audit_list(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"audits": store::audits(&app.pool, 100).await?}),
    ))
}

async fn audit_show(State(app): State<App>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let a = store::audit(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no audit {id}")))?;
    let items = store::audit_items(&app.pool, id).await?;
    Ok(Json(json!({"audit": a, "items": items})))
}

#[derive(Debug, Default, Deserialize)]
struct RateQuery {
    rate: Option<f64>,
}

async fn audit_resume(
    State(app): State<App>,
    Path(id): Path<i64>,
    Query(q): Query<RateQuery>,
) -> Result<Json<Value>, ApiError> {
    let a = store::audit(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no audit {id}")))?;
    if a.dry_run || !(a.action == "replay" || a.action == "redrive") || a.state == "done" {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "audit {id} is a {} in state {}: nothing to resume",
                a.action, a.state
            ),
        ));
    }
    let started = parking::spawn_replay(
        app.pool.clone(),
        (*app.replay).clone(),
        app.running.clone(),
        id,
        q.rate.unwrap_or(app.replay.default_rate),
        &app.shutdown,
    );
    Ok(Json(
        json!({"audit_id": id, "resumed": started, "already_running": !started}),
    ))
}

async fn audit_stop(State(app): State<App>, Path(id): Path<i64>) -> Json<Value> {
    Json(json!({"audit_id": id, "stopping": app.running.stop(id)}))
}

#[derive(Debug, Default, Deserialize)]
struct StateQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn monitor_reports(
    State(app): State<App>,
    Query(q): Query<StateQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = store::reports(
        &app.pool,
        q.state.as_deref(),
        q.limit.unwrap_or(100).clamp(1, 10_000),
    )
    .await?;
    Ok(Json(json!({"reports": rows})))
}

#[derive(Debug, Default, Deserialize)]
struct UnreportedQuery {
    window_secs: Option<f64>,
    lookback_secs: Option<f64>,
    limit: Option<i64>,
}

async fn monitor_unreported(
    State(app): State<App>,
    Query(q): Query<UnreportedQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = store::unreported(
        &app.pool,
        q.window_secs.unwrap_or(60.0),
        q.lookback_secs.unwrap_or(86_400.0),
        q.limit.unwrap_or(100).clamp(1, 10_000),
    )
    .await?;
    Ok(Json(json!({"unreported": rows})))
}

/// Records the report and answers at once; a bad report is recorded with its verdict and
/// answered 200 (the spec: "no need to look at the result"), never a 5xx unless the database
/// is unreachable.
async fn publish_sent_event(
    State(pool): State<PgPool>,
    client: Option<Extension<Client>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let sender = actor(client);
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let report = monitor::judge(&sender, content_type, &body);
    let id = store::insert_report(&pool, &report).await?;
    metrics::counter!("ops_monitor_reports_total", "verdict" => report.verdict.clone())
        .increment(1);
    tracing::info!(id, %sender, topic = ?report.topic, verdict = %report.verdict, "monitor report");
    Ok(Json(json!({
        "code": 200,
        "message": "recorded",
        "id": id,
        "verdict": report.verdict,
        "detail": report.verdict_detail,
    })))
}
