//! The HTTP API: `POST /payments/{order_code}` (the customer's method → a bank order),
//! `GET /payments/{order_code}` (status, attempts, settlements, the bank's answers), the
//! OpenAPI document at `/openapi.json`. Errors are JSON `{"error","message"}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use orderbus_sinopac::types::{Amount, CardOptions, OrderCreateRequest, PaymentMethod};
use orderbus_sinopac::Error as BankError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};

use crate::bank::Bank;
use crate::deadline::Deadlines;
use crate::ids::{order_no, OrderCode};
use crate::notify::{BACKEND_PATH, RETURN_PATH};
use crate::store::{self, AttemptRow, NewAttempt, PaymentRow};

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub pool: PgPool,
    pub bank: Bank,
    pub deadlines: Deadlines,
    /// Our public base URL as the bank reaches it (BackendURL/ReturnURL are built from it).
    pub public_url: crate::PublicUrl,
    /// When the sweep first looks at a new attempt.
    pub first_sweep_after: std::time::Duration,
    /// Sinopac's bank code for ATM transfers (807) when the bank's reply carries none.
    pub bank_code: String,
}

/// The API router (wrapped in the API-key layer by the caller).
pub fn router(api: Api) -> Router {
    Router::new()
        .route(
            "/payments/{order_code}",
            get(get_payment).post(choose_method),
        )
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .with_state(Arc::new(api))
}

// ---------------------------------------------------------------------------------------------

/// The customer's method.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseMethod {
    /// `atm` (virtual account, PayType `A`) or `card` (PayType `C`).
    pub method: Method,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Atm,
    Card,
}

impl Method {
    fn pay_type(self) -> &'static str {
        match self {
            Method::Atm => "A",
            Method::Card => "C",
        }
    }
}

/// One attempt at the bank.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub order_no: String,
    pub method: Method,
    /// The amount sent to the bank, as a decimal string (`"799.00"`).
    pub amount: String,
    /// The bank's wire value (two implied decimals: NT$799 → 79900).
    pub bank_amount: i64,
    pub ts_no: Option<String>,
    /// ATM: the bank code to transfer to (Sinopac 807).
    pub bank_code: Option<String>,
    /// ATM: the virtual account number.
    pub virtual_account: Option<String>,
    pub web_atm_url: Option<String>,
    /// ATM: `ATMParam.ExpireDate` (`yyyyMMdd`, bank local time).
    pub expire_date: Option<String>,
    /// Card: the bank's card page.
    pub card_pay_url: Option<String>,
    /// End of the account's / card page's validity.
    pub expires_at: DateTime<Utc>,
    /// `open`, `paid`, `failed`, `expired`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// The bank's verified OrderCreate reply.
    #[schema(value_type = Object)]
    pub bank_reply: Value,
}

/// What the bank reported.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementView {
    pub order_no: String,
    /// `backend_url`, `return_url` or `sweep`.
    pub via: String,
    /// `paid`, `refund_needed`, `duplicate_payment`, `amount_mismatch`, `failed`.
    pub outcome: String,
    /// Whether this settlement published `order.payment`.
    pub published: bool,
    pub ts_no: String,
    pub pay_token: Option<String>,
    pub bank_amount: Option<i64>,
    pub bank_paid_at: Option<DateTime<Utc>>,
    pub settled_at: DateTime<Utc>,
    /// Milliseconds from the bank's PayDate to our record.
    pub lag_ms: Option<i64>,
    /// The bank's verified answer (OrderPayQuery or OrderQuery row).
    #[schema(value_type = Object)]
    pub bank_answer: Value,
}

/// A PayToken a notification brought.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub pay_token: String,
    pub via: String,
    pub result: String,
}

/// The payment of one order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub order_code: i64,
    /// `awaiting_method`, `awaiting_payment`, `paid`, `expired`, `failed`, `cancelled`,
    /// `refund_needed`.
    pub status: String,
    /// For ops: `amount_mismatch`, `duplicate_payment`, `stuck`.
    pub flag: Option<String>,
    pub flag_detail: Option<String>,
    pub amount: String,
    pub settled_via: Option<String>,
    pub settled_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub sweep_attempts: i32,
    pub escalated_at: Option<DateTime<Utc>>,
    /// The attempt just created or reused (POST only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<AttemptView>,
    pub attempts: Vec<AttemptView>,
    pub settlements: Vec<SettlementView>,
    pub pay_tokens: Vec<TokenView>,
}

/// Error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown {0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        current_status: Option<String>,
    },
    #[error("the bank is unavailable: {0}")]
    BankUnavailable(String),
    #[error("the bank refused: {0}")]
    BankRefused(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, code, current) = match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict {
                code,
                current_status,
                ..
            } => (StatusCode::CONFLICT, code, current_status),
            ApiError::BankUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "bank_unavailable", None)
            }
            ApiError::BankRefused(_) => (StatusCode::BAD_GATEWAY, "bank_refused", None),
            ApiError::Db(ref e) if orderbus_runtime::is_unavailable(e) => {
                return orderbus_runtime::unavailable_response();
            }
            ApiError::Db(ref e) => {
                tracing::error!(error = %e, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let mut resp = (
            status,
            Json(ErrorBody {
                error: code.to_owned(),
                message,
                current_status: current,
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

fn parse_code(raw: &str) -> Result<OrderCode, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|c| *c > 0)
        .map(OrderCode)
        .ok_or_else(|| ApiError::BadRequest("order_code must be a positive integer".into()))
}

fn decimal(cents: i64) -> String {
    orderbus_contracts::Decimal::from_cents(cents)
        .as_str()
        .to_owned()
}

fn attempt_view(a: AttemptRow) -> AttemptView {
    AttemptView {
        method: if a.pay_type == "A" {
            Method::Atm
        } else {
            Method::Card
        },
        amount: decimal(a.amount_cents),
        bank_amount: a.amount_cents,
        order_no: a.order_no,
        ts_no: a.ts_no,
        bank_code: a.bank_code,
        virtual_account: a.atm_account,
        web_atm_url: a.web_atm_url,
        expire_date: a.expire_date,
        card_pay_url: a.card_pay_url,
        expires_at: a.expires_at,
        state: a.state,
        created_at: a.created_at,
        bank_reply: a.bank_reply,
    }
}

async fn view(
    pool: &PgPool,
    p: PaymentRow,
    current: Option<AttemptRow>,
) -> Result<PaymentView, ApiError> {
    let mut conn = pool.acquire().await?;
    let code = OrderCode(p.order_code);
    let attempts = store::attempts(&mut conn, code).await?;
    let by_id: std::collections::HashMap<i64, String> = attempts
        .iter()
        .map(|a| (a.id, a.order_no.clone()))
        .collect();
    let settlements = store::settlements(&mut conn, code)
        .await?
        .into_iter()
        .map(|s| SettlementView {
            order_no: by_id.get(&s.attempt_id).cloned().unwrap_or_default(),
            via: s.via,
            outcome: s.outcome,
            published: s.published,
            ts_no: s.ts_no,
            pay_token: s.pay_token,
            bank_amount: s.bank_amount_cents,
            bank_paid_at: s.bank_paid_at,
            settled_at: s.settled_at,
            lag_ms: s.lag_ms,
            bank_answer: s.bank_answer,
        })
        .collect();
    let pay_tokens = store::tokens(&mut conn, code)
        .await?
        .into_iter()
        .map(|(pay_token, via, result)| TokenView {
            pay_token,
            via,
            result,
        })
        .collect();
    Ok(PaymentView {
        order_code: p.order_code,
        status: p.status,
        flag: p.flag,
        flag_detail: p.flag_detail,
        amount: decimal(p.amount_cents),
        settled_via: p.settled_via,
        settled_at: p.settled_at,
        cancelled_at: p.cancelled_at,
        sweep_attempts: p.sweep_attempts,
        escalated_at: p.escalated_at,
        current: current.map(attempt_view),
        attempts: attempts.into_iter().map(attempt_view).collect(),
        settlements,
        pay_tokens,
    })
}

/// The payment of an order.
#[utoipa::path(
    get,
    path = "/payments/{order_code}",
    params(("order_code" = i64, Path, description = "the storefront's order code")),
    responses(
        (status = 200, description = "status, attempts, settlements and the bank's answers", body = PaymentView),
        (status = 400, description = "bad order code", body = ErrorBody),
        (status = 401, description = "no or unknown API key"),
        (status = 403, description = "key without orders:read"),
        (status = 404, description = "no payment for this order (yet)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_payment(
    State(api): State<Arc<Api>>,
    Path(raw): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let code = parse_code(&raw)?;
    let mut conn = api.pool.acquire().await?;
    let p = store::payment(&mut conn, code)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("payment for order {code}")))?;
    drop(conn);
    Ok(Json(view(&api.pool, p, None).await?))
}

/// The customer picks a method: the bank order is created (ATM: bank code, virtual account,
/// WebATM URL, expiry; card: the card page URL). Asking again for the same method while its
/// attempt is valid returns that attempt (200); another method makes a new attempt (201).
#[utoipa::path(
    post,
    path = "/payments/{order_code}",
    params(("order_code" = i64, Path, description = "the storefront's order code")),
    request_body = ChooseMethod,
    responses(
        (status = 201, description = "a new bank order", body = PaymentView),
        (status = 200, description = "the still valid attempt for this method", body = PaymentView),
        (status = 400, description = "bad body or order code", body = ErrorBody),
        (status = 401, description = "no or unknown API key"),
        (status = 403, description = "key without payments:write"),
        (status = 404, description = "no payment for this order (order.submit not seen yet)", body = ErrorBody),
        (status = 409, description = "already paid / cancelled (`illegal_state`), or the method cannot end before the storefront's auto-cancel (`method_unavailable`)", body = ErrorBody),
        (status = 502, description = "the bank refused the order", body = ErrorBody),
        (status = 503, description = "the bank or the database is unreachable (Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn choose_method(
    State(api): State<Arc<Api>>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let code = parse_code(&raw)?;
    let req: ChooseMethod =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let now = Utc::now();
    let mut tx = api.pool.begin().await?;
    // The row lock serialises concurrent choices for one order.
    let p = store::lock_payment(&mut tx, code)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("payment for order {code}")))?;
    if matches!(p.status.as_str(), "paid" | "refund_needed" | "cancelled") {
        return Err(ApiError::Conflict {
            code: "illegal_state",
            message: format!("the payment is {}", p.status),
            current_status: Some(p.status),
        });
    }
    let pay_type = req.method.pay_type();
    if p.status == "awaiting_payment" {
        let existing = store::attempts(&mut tx, code)
            .await?
            .into_iter()
            .rev()
            .find(|a| a.state == "open" && a.pay_type == pay_type && a.expires_at > now);
        if let Some(a) = existing {
            tx.commit().await?;
            let v = view(&api.pool, p, Some(a)).await?;
            return Ok((StatusCode::OK, Json(v)).into_response());
        }
    }
    let (method, expires_at, expire_date) = match req.method {
        Method::Atm => {
            let (date, end) = api
                .deadlines
                .atm_expire_date(p.order_created_at, now)
                .map_err(|e| ApiError::Conflict {
                    code: "method_unavailable",
                    message: e.to_string(),
                    current_status: Some(p.status.clone()),
                })?;
            (
                PaymentMethod::Atm { expire_date: date },
                end,
                Some(date.format("%Y%m%d").to_string()),
            )
        }
        Method::Card => {
            let (minutes, end) = api
                .deadlines
                .card_minutes(p.order_created_at, now)
                .map_err(|e| ApiError::Conflict {
                    code: "method_unavailable",
                    message: e.to_string(),
                    current_status: Some(p.status.clone()),
                })?;
            (
                PaymentMethod::Card(CardOptions {
                    exp_minutes: Some(minutes),
                    ..CardOptions::default()
                }),
                end,
                None,
            )
        }
    };
    let amount = u64::try_from(p.amount_cents)
        .ok()
        .and_then(|c| Amount::from_hundredths(c).ok())
        .ok_or_else(|| {
            ApiError::BadRequest("the order's amount is out of Sinopac's range".into())
        })?;
    let n = store::attempt_count(&mut tx, code).await? + 1;
    let no = order_no(code, n);
    let public = api.public_url.get();
    let base = public.trim_end_matches('/');
    let create = OrderCreateRequest {
        order_no: no.clone(),
        amount,
        method,
        prdt_name: format!("orderbus order {code}"),
        memo: None,
        param1: Some(code.to_string()),
        param2: None,
        param3: None,
        return_url: Some(format!("{base}{RETURN_PATH}")),
        backend_url: Some(format!("{base}{BACKEND_PATH}")),
    };
    let reply = api
        .bank
        .order_create(code.0, &create)
        .await
        .map_err(|e| match e {
            BankError::Business { code, message } => {
                ApiError::BankRefused(format!("{code} {message}"))
            }
            e if e.is_transient() => ApiError::BankUnavailable(e.to_string()),
            e => {
                tracing::warn!(order_code = code.0, error = %e, "OrderCreate reply not trusted");
                ApiError::BankRefused(e.to_string())
            }
        })?;
    if reply.amount.is_some_and(|a| a != amount) {
        return Err(ApiError::BankRefused(format!(
            "the bank created {:?} for an order of {}",
            reply.amount.map(Amount::wire_value),
            amount.wire_value()
        )));
    }
    let bank_reply = serde_json::to_value(&reply).unwrap_or(Value::Null);
    let atm = reply.atm_param.as_ref();
    let bank_code = atm.map(|a| {
        if a.bank_no.is_empty() {
            api.bank_code.clone()
        } else {
            a.bank_no.clone()
        }
    });
    let first_sweep =
        now + chrono::Duration::from_std(api.first_sweep_after).unwrap_or(chrono::Duration::MAX);
    store::insert_attempt(
        &mut tx,
        &NewAttempt {
            order_code: code,
            order_no: &no,
            pay_type,
            amount_cents: p.amount_cents,
            ts_no: &reply.ts_no,
            bank_code: bank_code.as_deref(),
            atm_account: atm.map(|a| a.atm_pay_no.as_str()),
            web_atm_url: atm.map(|a| a.web_atm_url.as_str()),
            card_pay_url: reply.card_param.as_ref().map(|c| c.card_pay_url.as_str()),
            expires_at,
            expire_date: expire_date.as_deref(),
            bank_reply: &bank_reply,
        },
        first_sweep,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(order_code = code.0, order_no = %no, method = pay_type, %expires_at, "bank order created");
    let mut conn = api.pool.acquire().await?;
    let p = store::payment(&mut conn, code)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("payment for order {code}")))?;
    let current = store::attempt_by_order_no(&mut conn, &no).await?;
    drop(conn);
    let v = view(&api.pool, p, current).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderbus payments",
        description = "Sinopac QPay payments per order. Amounts are decimal strings; the bank's wire value has two implied decimals (NT$799 → 79900). GET needs `orders:read`, POST `payments:write` (bearer API keys). The bank's notifications (`POST /sinopac/backend`, `POST /sinopac/return`) are not behind keys: they are only hints, verified with OrderPayQuery."
    ),
    paths(get_payment, choose_method),
    components(schemas(
        ChooseMethod,
        Method,
        PaymentView,
        AttemptView,
        SettlementView,
        TokenView,
        ErrorBody
    ))
)]
struct ApiDoc;

/// The OpenAPI document, with the bearer scheme.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(obj) = doc.as_object_mut() {
        let components = obj
            .entry("components")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(c) = components.as_object_mut() {
            c.insert(
                "securitySchemes".into(),
                serde_json::json!({"bearer": {"type": "http", "scheme": "bearer"}}),
            );
        }
    }
    doc
}

async fn openapi_json() -> Json<Value> {
    Json(document())
}
