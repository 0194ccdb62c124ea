//! The HTTP API: one module per resource (orders, exchanges, returns), the read model, the
//! extractors and error type, the OpenAPI document at `/openapi.json`.

pub mod after_sales;
pub mod error;
pub mod exchanges;
pub mod extract;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod orders;
pub mod read_model;
pub mod returns;
pub mod split;
pub mod support;
pub mod timeline_source;
pub mod types;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;
use tracing::Instrument;

use error::ApiError;

/// Longest a request may take (above the database's statement timeout).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    pub pool: PgPool,
}

/// The API's routes. Unknown paths, wrong methods and slow requests answer with the same JSON
/// error body as everything else.
pub fn router(pool: PgPool, body_limit: usize) -> Router {
    Router::new()
        .merge(orders::router())
        .merge(exchanges::router())
        .merge(returns::router())
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(per_request))
        .with_state(App { pool })
}

async fn openapi_json() -> Result<Json<serde_json::Value>, ApiError> {
    openapi::document().map(Json).map_err(ApiError::Encode)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A span per request (method, route, status), and an upper bound on its time: past it the
/// handler is dropped (its transaction rolls back) and the client gets a JSON 503.
async fn per_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        route = %route,
        status = tracing::field::Empty,
    );
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request))
        .instrument(span.clone())
        .await
    {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(REQUEST_TIMEOUT.as_secs()).into_response(),
    };
    span.record("status", response.status().as_u16());
    response
}
