//! The `idempotency_keys` rows behind the HTTP `Idempotency-Key` header.

use serde_json::Value;
use sqlx::PgConnection;

/// What an earlier request with the same key left behind.
#[derive(Debug)]
pub struct StoredRequest {
    pub request_hash: String,
    /// Both `None` only while that request's transaction has not committed.
    pub status_code: Option<i16>,
    pub response_body: Option<Value>,
}

/// Inserts the key row in the caller's transaction. `false` when the key already exists (a
/// concurrent duplicate blocks here until the first transaction ends).
pub async fn claim(
    conn: &mut PgConnection,
    key: &str,
    request_hash: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys (idempotency_key, request_hash) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
        key,
        request_hash
    )
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The stored request under `key` (it exists: [`claim`] returned `false`).
pub async fn stored(conn: &mut PgConnection, key: &str) -> Result<StoredRequest, sqlx::Error> {
    sqlx::query_as!(
        StoredRequest,
        "SELECT request_hash, status_code, response_body FROM idempotency_keys \
         WHERE idempotency_key = $1",
        key
    )
    .fetch_one(&mut *conn)
    .await
}

/// Stores the answer given under `key` (in the transaction that made it).
pub async fn save_response(
    conn: &mut PgConnection,
    key: &str,
    status_code: i16,
    body: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status_code = $2, response_body = $3 \
         WHERE idempotency_key = $1",
        key,
        status_code,
        body
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
