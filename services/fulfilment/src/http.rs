//! HTTP: the checkout's quotes and the order view (API keys), the customer's bank form and
//! continue-pay (public: the customer's browser), the bank callback (webhook ingress) and the
//! ops views (API keys with ops scopes).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use orderbus_frotel::{Error as FrotelError, FactorId};
use orderbus_ingress::reply::JsonReplies;
use orderbus_ingress::webhook::{Ingress, Webhook};
use orderbus_ingress::IngressConfig;
use orderbus_runtime::auth::{OPS_READ, OPS_REPLAY, ORDERS_READ, ORDERS_WRITE};
use orderbus_runtime::{Auth, Policy};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::payment::{self, CALLBACK_ROUTE};
use crate::quotes::{self, QuoteError, QuoteRequest};
use crate::register::CHECK_UNKNOWN;
use crate::store::{self, OrderRow};
use crate::{App, PARTNER};

/// An error answer: `{"error":{"code","message","field"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid",
            message: format!("{field}: {}", message.into()),
            field: Some(field),
        }
    }

    fn not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no Frotel order with this code",
        )
    }

    fn frotel(e: FrotelError) -> Self {
        match e {
            FrotelError::Validation { field, reason } => ApiError::invalid(field, reason),
            FrotelError::Business { code, message } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "frotel_refused",
                format!("Frotel refused (code {code}): {message}"),
            ),
            other => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "frotel_unavailable",
                format!("Frotel did not answer usably: {other}"),
            ),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if orderbus_runtime::is_unavailable(&e) {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unavailable",
            );
        }
        tracing::error!(error = %e, "database error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::SERVICE_UNAVAILABLE && self.code == "unavailable" {
            return orderbus_runtime::unavailable_response();
        }
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(f) = self.field {
            body["error"]["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names the offending field in its message (`unknown field`, `missing field`).
        ApiError::invalid("body", msg)
    })
}

/// The routes without API keys: the customer's bank form and continue-pay, the bank callback,
/// the mirrors' state.
pub fn public_router(app: App) -> Router {
    let ingress = Ingress::new(app.pool.clone(), IngressConfig::default())
        .webhook(
            Webhook::new(
                PARTNER,
                CALLBACK_ROUTE,
                payment::CallbackVerifier,
                JsonReplies,
                orderbus_ingress::effect::effect_fn(|tx, inbound| {
                    Box::pin(payment::apply_callback(tx, &inbound.request))
                }),
            )
            .accept_get(),
        )
        .router();
    Router::new()
        .route("/fulfilment/orders/{order_code}/pay", get(pay_form))
        .route(
            "/fulfilment/orders/{order_code}/continue",
            get(continue_pay),
        )
        .route("/fulfilment/mirrors", get(mirrors))
        .with_state(app)
        .merge(ingress)
}

/// The routes behind API keys.
pub fn api_router(app: App, auth: &Auth) -> Router {
    let orders = Router::new()
        .route("/fulfilment/quotes", post(quote))
        .route("/fulfilment/orders/{order_code}", get(get_order))
        .with_state(app.clone());
    // Ops' per-order timeline: this service's Frotel calls and bank callbacks (ops:read).
    let timeline = orderbus_timeline::standard_sources(&app.pool, "fulfilment");
    let ops = Router::new()
        .route("/fulfilment/ops/attention", get(attention))
        .route("/fulfilment/ops/orders/{order_code}/resolve", post(resolve))
        .with_state(app);
    auth.protect(orders, Policy::read_write(ORDERS_READ, ORDERS_WRITE), &[])
        .merge(auth.protect(ops, Policy::read_write(OPS_READ, OPS_REPLAY), &[]))
        .merge(orderbus_timeline::mount(auth, "fulfilment", timeline))
}

async fn quote(State(app): State<App>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: QuoteRequest = parse_json(&body)?;
    match quotes::quote(&app, &req).await {
        Ok(a) => Ok(Json(json!(a))),
        Err(QuoteError::Invalid { field, reason }) => Err(ApiError::invalid(field, reason)),
        Err(e @ QuoteError::Refused { .. }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "frotel_refused",
            e.to_string(),
        )),
        Err(e @ QuoteError::Unavailable(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "frotel_unavailable",
            e.to_string(),
        )),
    }
}

fn what_to_check(o: &OrderRow) -> Option<String> {
    match (o.state.as_str(), o.payment_state.as_str()) {
        ("outcome_unknown", _) => Some(CHECK_UNKNOWN.replace("{code}", &o.order_code.to_string())),
        ("refused", _) => Some("Frotel refused the order (see last_error, Frotel's own Persian message): fix the data (mapping, address) and submit the order again.".into()),
        ("invalid", _) => Some("refused before sending (see last_error, naming the field): fix the mapping or the order and submit it again.".into()),
        (_, "escalated") => Some("the Frotel bank payment was not verified in time: check the payment in the Frotel panel (orderPay shows remainder_price) and with the customer.".into()),
        _ => None,
    }
}

fn order_json(o: &OrderRow) -> Value {
    let factor = o.factor_id.as_deref().and_then(|f| FactorId::parse(f).ok());
    json!({
        "order_code": o.order_code,
        "uid": o.uid,
        "parent_order_code": o.parent_order_code,
        "warehouse_id": o.warehouse_id,
        "kind": o.kind,
        "buy_type": o.buy_type,
        "state": o.state,
        "attempts": o.attempts,
        "last_error": o.last_error,
        "what_to_check": what_to_check(o),
        "factor_id": o.factor_id,
        "factor_id_display": factor.map(|f| f.hyphenated()),
        "factor_total": o.factor_total,
        "banks": o.banks,
        "registered_at": o.registered_at,
        "payment_state": o.payment_state,
        "payment_deadline_at": o.payment_deadline_at,
        "paid_at": o.paid_at,
        "payment_tracking_code": o.payment_tracking_code,
        "frotel_status": o.frotel_status,
        "stage": o.stage,
        "barcode": o.barcode,
        "tracking_done": o.tracking_done,
        "shipped_published": o.shipped_published,
        "delivered_published": o.delivered_published,
        "created_at": o.created_at,
        "updated_at": o.updated_at,
    })
}

fn code_of(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| ApiError::invalid("order_code", "not a positive integer"))
}

async fn get_order(
    State(app): State<App>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let code = code_of(&raw)?;
    let o = store::get_order(&app.pool, code)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut v = order_json(&o);
    v["download_links"] = json!(store::links_of(&app.pool, code).await?);
    v["callbacks"] = json!(store::callbacks_of(&app.pool, code)
        .await?
        .iter()
        .map(|c| json!({
            "payment_id": c.payment_id, "state": c.state, "attempts": c.attempts,
            "last_error": c.last_error, "verify_message": c.verify_message,
            "escalated_at": c.escalated_at, "created_at": c.created_at,
        }))
        .collect::<Vec<_>>());
    v["tracking_events"] = json!(store::events_of(&app.pool, code).await?);
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
struct PayQuery {
    bank: Option<String>,
}

/// The bank redirect form (`pay` the first time, `continuePay` after a failed payment), as
/// Frotel's HTML for the customer's browser.
async fn pay_form(
    State(app): State<App>,
    Path(raw): Path<String>,
    Query(q): Query<PayQuery>,
) -> Result<Response, ApiError> {
    let code = code_of(&raw)?;
    let bank: i64 = q
        .bank
        .as_deref()
        .and_then(|b| b.parse().ok())
        .filter(|b| *b > 0)
        .ok_or_else(|| ApiError::invalid("bank", "a positive bank id from the order's banks"))?;
    let o = store::get_order(&app.pool, code)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let factor = payable(&o)?;
    let known: Vec<i64> = o
        .banks
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["id"].as_i64()).collect())
        .unwrap_or_default();
    let continuing = o.payment_state == "failed" || o.pay_forms > 0;
    if !continuing && !known.is_empty() && !known.contains(&bank) {
        return Err(ApiError::invalid(
            "bank",
            format!("{bank} is not one of the order's banks {known:?}"),
        ));
    }
    let callback = payment::callback_url(&app.settings().public_base_url, code);
    let code_text = code.to_string();
    let client = app.client();
    let form = if continuing {
        app.calls
            .record(PARTNER, "continuePay", Some(&code_text), || {
                client.continue_pay(&factor, bank, &callback)
            })
            .await
    } else {
        app.calls
            .record(PARTNER, "pay", Some(&code_text), || {
                client.pay(&factor, bank, &callback)
            })
            .await
    };
    app.report_mirrors();
    let form = form.map_err(ApiError::frotel)?;
    store::count_pay_form(&app.pool, code).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(form.html)).into_response())
}

fn payable(o: &OrderRow) -> Result<FactorId, ApiError> {
    if o.buy_type != 2 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_payable",
            "this order is not paid through Frotel's bank",
        ));
    }
    if o.payment_state == "paid" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_paid",
            "this order is paid",
        ));
    }
    let factor = o.factor_id.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_registered",
            format!(
                "the order is not registered at Frotel yet (state {})",
                o.state
            ),
        )
    })?;
    FactorId::parse(factor).map_err(ApiError::frotel)
}

/// `orderPay`: may the customer pay (again), the remaining amount and the banks.
async fn continue_pay(
    State(app): State<App>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let code = code_of(&raw)?;
    let o = store::get_order(&app.pool, code)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let factor = payable(&o)?;
    let code_text = code.to_string();
    let client = app.client();
    let status = app
        .calls
        .record(PARTNER, "orderPay", Some(&code_text), || {
            client.order_pay(&factor)
        })
        .await;
    app.report_mirrors();
    let s = status.map_err(ApiError::frotel)?;
    Ok(Json(json!({
        "order_code": code,
        "status": s.status,
        "factor_id": s.factor.as_str(),
        "price": s.price,
        "remainder_price": s.remainder_price,
        "pay_price": s.pay_price,
        "banks": s.banks.iter().map(|b| json!({"id": b.id, "name": b.name, "icon": b.icon})).collect::<Vec<_>>(),
        "pay_url": format!("/fulfilment/orders/{code}/pay?bank=<id>"),
    })))
}

async fn mirrors(State(app): State<App>) -> Json<Value> {
    let health = app.client().mirror_health();
    let down = health.iter().filter(|m| !m.healthy).count();
    let status = match down {
        0 => "ok",
        n if n < health.len() => "degraded",
        _ => "down",
    };
    Json(json!({
        "status": status,
        "mirrors": health.iter().map(|m| json!({"base_url": m.base_url, "healthy": m.healthy})).collect::<Vec<_>>(),
    }))
}

async fn attention(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let orders = store::attention(&app.pool, 500).await?;
    Ok(Json(json!({
        "orders": orders.iter().map(order_json).collect::<Vec<_>>(),
        "unmapped_statuses": store::unmapped(&app.pool).await?,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolve {
    /// Found in the Frotel panel: the factor id.
    factor_id: Option<String>,
    /// Confirmed absent in the Frotel panel: register again.
    #[serde(default)]
    not_registered: bool,
}

async fn resolve(
    State(app): State<App>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let code = code_of(&raw)?;
    let r: Resolve = parse_json(&body)?;
    let factor = match (&r.factor_id, r.not_registered) {
        (Some(f), false) => Some(FactorId::parse(f).map_err(ApiError::frotel)?),
        (None, true) => None,
        _ => {
            return Err(ApiError::invalid(
                "body",
                "give either factor_id or not_registered: true",
            ))
        }
    };
    let o = store::get_order(&app.pool, code)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let deadline = (o.buy_type == 2).then(|| app.settings().payment_deadline.as_secs_f64());
    let done = store::resolve_unknown(
        &app.pool,
        code,
        factor.as_ref().map(|f| f.as_str()),
        deadline,
    )
    .await?;
    if !done {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_outcome_unknown",
            format!("order is {}, not outcome_unknown", o.state),
        ));
    }
    tracing::info!(order_code = code, factor = ?factor.as_ref().map(|f| f.as_str()), "outcome-unknown order resolved by ops");
    let o = store::get_order(&app.pool, code)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(order_json(&o)))
}
