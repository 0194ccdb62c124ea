//! The HTTP API: routes, body limit, OpenAPI document at `/openapi.json`.

pub mod error;
pub mod extract;
pub mod idempotency;
pub mod orders;
pub mod types;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use sqlx::PgPool;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

/// Longest a request may take (above the database's statement timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub use orders::App;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderbus storefront",
        description = "The shop's order service. Every POST honours `Idempotency-Key`; errors are JSON naming the field; illegal transitions are 409 with `current_status`."
    ),
    paths(
        orders::create_order,
        orders::list_orders,
        orders::get_order,
        orders::confirm_receipt,
        orders::cancel_order,
        orders::change_address,
        orders::create_exchange,
        orders::create_return,
        orders::exchange_waybill,
        orders::return_waybill,
        orders::cancel_exchange,
        orders::cancel_return,
    ),
    components(schemas(
        error::ErrorBody,
        crate::machine::OrderState,
        crate::machine::ExchangeState,
        crate::machine::ReturnState
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

/// The service's routes (the runtime merges them with `/healthz`, `/readyz`, `/metrics`).
pub fn router(pool: PgPool, body_limit: usize) -> Router {
    Router::new()
        .route(
            "/orders",
            post(orders::create_order).get(orders::list_orders),
        )
        .route("/orders/{order_code}", get(orders::get_order))
        .route(
            "/orders/{order_code}/confirm-receipt",
            post(orders::confirm_receipt),
        )
        .route("/orders/{order_code}/cancel", post(orders::cancel_order))
        .route("/orders/{order_code}/address", post(orders::change_address))
        .route(
            "/orders/{order_code}/exchanges",
            post(orders::create_exchange),
        )
        .route("/orders/{order_code}/returns", post(orders::create_return))
        .route("/exchanges/{id}/waybill", post(orders::exchange_waybill))
        .route("/exchanges/{id}/cancel", post(orders::cancel_exchange))
        .route("/returns/{id}/waybill", post(orders::return_waybill))
        .route("/returns/{id}/cancel", post(orders::cancel_return))
        .route("/openapi.json", get(openapi_json))
        .layer(DefaultBodyLimit::max(body_limit))
        // An upper bound per request (the transaction is rolled back when it is dropped).
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(App { pool })
}
