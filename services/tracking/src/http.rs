//! The tracking API (behind API keys: `tracking:read` for GET, `tracking:write` otherwise).
//!
//! - `GET /v1/orders/{order_code}/shipments`: an order's shipments and every event received.
//! - `GET /v1/shipments/stale`: shipments still shipping with no event for the stale limit.
//! - `PUT /v1/shopline/transactions/{channel_order_transaction_id}` `{"order_code","uid",
//!   "express_id"?}`: maps a SHOPLINE payment transaction to our order (put by whoever creates
//!   the transaction); reports for it are applied from then on.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::store::{self, ShoplineMapping};
use crate::Shared;

#[derive(Clone)]
struct Api {
    pool: PgPool,
    shared: Arc<Shared>,
}

pub fn router(pool: PgPool, shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/orders/{order_code}/shipments", get(order_shipments))
        .route("/v1/shipments/stale", get(stale))
        .route(
            "/v1/shopline/transactions/{id}",
            put(put_shopline_transaction),
        )
        .with_state(Api { pool, shared })
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

fn db_error(e: sqlx::Error) -> Response {
    if orderbus_runtime::is_unavailable(&e) {
        return orderbus_runtime::unavailable_response();
    }
    tracing::error!(error = %e, "tracking API database error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "database error",
    )
}

async fn order_shipments(State(api): State<Api>, Path(code): Path<String>) -> Response {
    let Some(code) = code.parse::<i64>().ok().filter(|c| *c > 0) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "order_code must be a positive integer",
        );
    };
    let shipments = match store::order_shipments(&api.pool, code).await {
        Ok(s) => s,
        Err(e) => return db_error(e),
    };
    if shipments.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no shipment for order {code}"),
        );
    }
    let events = match store::order_events(&api.pool, code).await {
        Ok(e) => e,
        Err(e) => return db_error(e),
    };
    Json(json!({ "order_code": code, "shipments": shipments, "events": events })).into_response()
}

async fn stale(State(api): State<Api>) -> Response {
    let before = api.shared.stale_before();
    match store::stale_shipments(&api.pool, before, 500).await {
        Ok(rows) => Json(json!({
            "stale_before": before,
            "count": rows.len(),
            "shipments": rows,
        }))
        .into_response(),
        Err(e) => db_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingBody {
    order_code: i64,
    uid: i64,
    #[serde(default)]
    express_id: i64,
}

async fn put_shopline_transaction(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let id = id.trim();
    if id.is_empty() || id.len() > 128 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the transaction id must be 1 to 128 characters",
        );
    }
    let body: MappingBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    };
    if body.order_code <= 0 || body.uid <= 0 || body.express_id < 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "order_code and uid must be positive, express_id not negative",
        );
    }
    let mapping = ShoplineMapping {
        order_code: body.order_code,
        uid: body.uid,
        express_id: body.express_id,
    };
    match store::put_shopline_mapping(&api.pool, id, &mapping).await {
        Ok(true) => Json(json!({
            "channel_order_transaction_id": id,
            "order_code": mapping.order_code,
            "uid": mapping.uid,
            "express_id": mapping.express_id,
        }))
        .into_response(),
        Ok(false) => error(
            StatusCode::CONFLICT,
            "conflict",
            format!("transaction {id:?} already maps to another order"),
        ),
        Err(e) => db_error(e),
    }
}
