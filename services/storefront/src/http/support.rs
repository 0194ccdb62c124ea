//! Pieces the command handlers share: the locked order or a 404, the 409 for a refused
//! transition, replies, amounts back from text.

use axum::http::StatusCode;
use orderbus_contracts as c;
use serde::Serialize;
use sqlx::PgConnection;

use super::error::{to_json, ApiError};
use super::idempotency::Reply;
use crate::ids::OrderCode;
use crate::machine::Outcome;
use crate::store::{self, OrderHead};

/// The order, locked for the rest of the transaction, or 404.
pub async fn must_order(conn: &mut PgConnection, code: OrderCode) -> Result<OrderHead, ApiError> {
    store::orders_lock::lock_order(conn, code)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {code}")))
}

/// The 409 for an event the machine did not apply.
pub fn refused<S: std::fmt::Display + Copy>(outcome: Outcome<S>, what: &str) -> ApiError {
    match outcome {
        Outcome::NotApplied { current, why } => {
            ApiError::conflict(current, format!("cannot {what} ({why})")).because(why.as_str())
        }
        Outcome::Applied { to, .. } => ApiError::conflict(to, format!("cannot {what}")),
    }
}

/// A reply body with its status.
pub fn reply<T: Serialize>(status: StatusCode, body: &T) -> Result<Reply, ApiError> {
    Ok((status, to_json(body)?))
}

/// Two-decimal text as stored back into the wire's decimal.
pub fn decimal(field: &str, text: &str) -> Result<c::Decimal, ApiError> {
    c::Decimal::parse(text).ok_or_else(|| ApiError::invalid(field, format!("bad amount {text:?}")))
}

pub fn cents_text(cents: i64) -> String {
    c::Decimal::from_cents(cents).as_str().to_owned()
}
