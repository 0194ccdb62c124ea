//! `Idempotency-Key` on every POST.
//!
//! The key row is inserted first, in the request's own transaction (`ON CONFLICT DO NOTHING`).
//! A concurrent duplicate's insert blocks on the uncommitted row until the first request
//! commits, then finds it and replays the stored status and body — so 20 concurrent duplicates
//! make one order and one outbox row. If the first request fails, its transaction (key row
//! included) rolls back and the duplicate simply runs. Successful responses and state-machine
//! refusals (409, recorded on the timeline in the same transaction) are stored; other errors
//! are not (nothing happened, the same key can be retried). The same key with a different
//! request (method, path or body) is refused with 422.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::error::{to_json, ApiError};
use crate::metrics as m;
use crate::store::idempotency as keys;
use crate::store::{self, Source};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";

/// The `Idempotency-Key` header, if present (1–255 visible ASCII characters).
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?
        .trim();
    if k.is_empty() || k.len() > 255 {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "must be 1 to 255 characters",
        ));
    }
    Ok(Some(k.to_owned()))
}

/// What a command returns on success.
pub type Reply = (StatusCode, Value);

/// Runs `command` in one transaction guarded by the optional key.
pub async fn run<F>(
    pool: &PgPool,
    key: Option<String>,
    request_hash: &str,
    command: F,
) -> Result<Response, ApiError>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<Reply, ApiError>>,
{
    let mut tx = pool.begin().await?;
    if let Some(k) = &key {
        if !keys::claim(&mut tx, k, request_hash).await? {
            return replay(keys::stored(&mut tx, k).await?, request_hash);
        }
    }
    let (status, body) = match command(&mut tx).await {
        Ok(reply) => reply,
        // A refusal the timeline keeps: recorded and answered (and stored under the key) in
        // the same transaction.
        Err(ApiError::Conflict {
            current,
            message,
            reason,
            record: Some(r),
        }) => {
            store::record(
                &mut tx,
                store::Entry {
                    order_code: r.order_code.get(),
                    subject: r.subject.to_string(),
                    source: &Source::http(),
                    event: r.event,
                    applied: false,
                    reason: Some(reason.to_owned()),
                    before: Some(&current),
                    after: Some(&current),
                    detail: serde_json::json!({ "message": message }),
                },
            )
            .await?;
            let answer = ApiError::Conflict {
                current,
                message,
                reason,
                record: None,
            };
            (answer.status(), to_json(&answer.body())?)
        }
        Err(e) => return Err(e),
    };
    if let Some(k) = &key {
        keys::save_response(&mut tx, k, status.as_u16() as i16, &body).await?;
    }
    tx.commit().await?;
    Ok((status, Json(body)).into_response())
}

/// The stored answer of the first request with this key, or why it cannot be replayed.
fn replay(stored: keys::StoredRequest, request_hash: &str) -> Result<Response, ApiError> {
    if stored.request_hash != request_hash {
        return Err(ApiError::KeyReused);
    }
    let (Some(status), Some(body)) = (stored.status_code, stored.response_body) else {
        // Committed without a response cannot happen (both are written together).
        return Err(ApiError::conflict(
            "in_progress",
            "the request with this key is still in progress",
        ));
    };
    m::idempotent_replay();
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(resp)
}
