//! All SQL of the ingress: dedupe rows, the ingress log, callback tokens, retention.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};

use crate::reply::Reply;

/// A database failure of the ingress.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The query failed.
    #[error("ingress database: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored reply could not be read back.
    #[error("stored reply is unreadable: {0}")]
    BadStoredReply(String),
}

/// SQLSTATE `lock_not_available`: `lock_timeout` expired while waiting for another transaction.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// True when `e` is PostgreSQL giving up on a lock wait (`lock_timeout`).
pub(crate) fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// Outcome of claiming a dedupe key inside the effect's transaction.
#[derive(Debug)]
pub(crate) enum Claim {
    /// This request is the first with the key: apply the effect, then [`store_reply_and_log`].
    First,
    /// A committed request had the key: replay its reply.
    Duplicate {
        /// The stored reply.
        reply: Reply,
        /// The order the first request concerned.
        order: Option<String>,
    },
}

/// The statement that opens a webhook's transaction: `BEGIN` and the transaction's
/// `lock_timeout` in one round trip. Every lock wait in it (a concurrent duplicate's dedupe row,
/// the effect's own row locks) gives up after `lock_wait` instead of holding a connection.
pub(crate) fn begin_statement(lock_wait: Duration) -> sqlx::AssertSqlSafe<String> {
    let millis = lock_wait.as_millis().max(1);
    sqlx::AssertSqlSafe(format!("BEGIN; SET LOCAL lock_timeout = '{millis}ms'"))
}

/// Claims `(partner, key)` in a transaction opened with [`begin_statement`]. A concurrent
/// transaction holding the same key makes this wait (up to its `lock_timeout`) until it commits
/// (→ `Duplicate`) or rolls back (→ `First`).
pub(crate) async fn claim(
    conn: &mut PgConnection,
    partner: &str,
    key: &str,
    trace_id: &str,
) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO ingress_dedupe (partner, dedupe_key, trace_id) VALUES ($1, $2, $3) \
         ON CONFLICT (partner, dedupe_key) DO NOTHING",
    )
    .bind(partner)
    .bind(key)
    .bind(trace_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::First);
    }
    let row = sqlx::query(
        "SELECT reply_status, reply_headers, reply_body, order_ref FROM ingress_dedupe \
         WHERE partner = $1 AND dedupe_key = $2",
    )
    .bind(partner)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    let status: Option<i16> = row.try_get("reply_status")?;
    let headers: serde_json::Value = row.try_get("reply_headers")?;
    let body: Option<Vec<u8>> = row.try_get("reply_body")?;
    let order: Option<String> = row.try_get("order_ref")?;
    let reply = Reply::from_stored(status.unwrap_or(200), &headers, body.unwrap_or_default())
        .map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(Claim::Duplicate { reply, order })
}

/// One ingress log row.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub(crate) partner: String,
    pub(crate) route: String,
    pub(crate) trace_id: String,
    pub(crate) headers: serde_json::Value,
    pub(crate) body_head: Vec<u8>,
    pub(crate) body_len: u64,
    pub(crate) body_truncated: bool,
    pub body_sha256: Option<String>,
    pub(crate) verification: &'static str,
    pub(crate) verification_detail: Option<String>,
    pub(crate) dedupe: Option<&'static str>,
    pub(crate) dedupe_key: Option<String>,
    pub(crate) outcome: &'static str,
    pub(crate) status: u16,
    pub(crate) error: Option<String>,
    pub(crate) order: Option<String>,
    pub(crate) duration: Duration,
}

/// The log row's columns, `$1` to `$17` in this order (see [`bind_log`]).
const LOG_INSERT: &str = "INSERT INTO ingress_log (partner, route, trace_id, headers, body, \
     body_len, body_truncated, body_sha256, verification, verification_detail, dedupe, \
     dedupe_key, outcome, status, error, order_ref, duration_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_log<'q>(query: PgQuery<'q>, e: &'q LogEntry) -> PgQuery<'q> {
    query
        .bind(&e.partner)
        .bind(&e.route)
        .bind(&e.trace_id)
        .bind(&e.headers)
        .bind(&e.body_head)
        .bind(i64::try_from(e.body_len).unwrap_or(i64::MAX))
        .bind(e.body_truncated)
        .bind(&e.body_sha256)
        .bind(e.verification)
        .bind(&e.verification_detail)
        .bind(e.dedupe)
        .bind(&e.dedupe_key)
        .bind(e.outcome)
        .bind(i16::try_from(e.status).unwrap_or(i16::MAX))
        .bind(&e.error)
        .bind(&e.order)
        .bind(e.duration.as_secs_f64() * 1000.0)
}

/// Writes the log row of a request that has nothing to commit (refused, replayed, failed).
pub(crate) async fn insert_log(conn: &mut PgConnection, e: &LogEntry) -> Result<(), sqlx::Error> {
    bind_log(sqlx::query(LOG_INSERT), e).execute(conn).await?;
    Ok(())
}

/// Stores the first request's reply under its dedupe key and writes its log row, in one
/// statement of the effect's transaction (the caller commits).
pub(crate) async fn store_reply_and_log(
    conn: &mut PgConnection,
    reply: &Reply,
    e: &LogEntry,
) -> Result<(), sqlx::Error> {
    if e.dedupe_key.is_none() {
        return Err(sqlx::Error::Protocol(
            "a stored reply needs its dedupe key".into(),
        ));
    }
    let sql = sqlx::AssertSqlSafe(format!(
        "WITH stored AS (UPDATE ingress_dedupe SET reply_status = $18, reply_headers = $19, \
         reply_body = $20, order_ref = $16 WHERE partner = $1 AND dedupe_key = $12) {LOG_INSERT}"
    ));
    bind_log(sqlx::query(sql), e)
        .bind(i16::try_from(reply.status.as_u16()).unwrap_or(500))
        .bind(reply.headers_json())
        .bind(reply.body.as_ref())
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes ingress log rows received more than `older_than` ago, `batch` rows per statement so
/// a large backlog never holds one long transaction. Returns how many rows went.
pub async fn prune_log(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64, StoreError> {
    prune(
        pool,
        "DELETE FROM ingress_log WHERE id IN (SELECT id FROM ingress_log \
         WHERE received_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
        older_than,
        batch,
    )
    .await
}

/// Deletes dedupe rows older than `older_than` in batches. Keep them longer than the longest
/// retry window of any partner (a duplicate arriving after its row is gone is applied again).
pub async fn prune_dedupe(
    pool: &PgPool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    prune(
        pool,
        "DELETE FROM ingress_dedupe WHERE (partner, dedupe_key) IN (SELECT partner, dedupe_key \
         FROM ingress_dedupe WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)",
        older_than,
        batch,
    )
    .await
}

async fn prune(
    pool: &PgPool,
    sql: &'static str,
    older_than: Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    let batch = batch.max(1);
    let mut total = 0u64;
    loop {
        let n = sqlx::query(sql)
            .bind(older_than.as_secs_f64())
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n < u64::try_from(batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}

/// A freshly issued callback token: put it in the callback URL, never log or store it.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackToken(String);

impl CallbackToken {
    /// The token text (URL-safe Base64 of 32 random bytes).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CallbackToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackToken(..)")
    }
}

/// The state of a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    /// Issued and not revoked; `order` is what it was issued for.
    Active { order: Option<String> },
    /// Issued, then revoked.
    Revoked,
    /// Never issued (for this partner).
    Unknown,
}

/// Issuing, revoking and looking up callback tokens.
pub struct CallbackTokens;

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl CallbackTokens {
    /// Issues a token for `partner` (and the order it is for), storing only its SHA-256. Pass
    /// the transaction that registers the callback, so a rolled-back registration leaves no
    /// usable token.
    pub async fn issue(
        conn: &mut PgConnection,
        partner: &str,
        order: Option<&str>,
    ) -> Result<CallbackToken, StoreError> {
        let bytes: [u8; 32] = rand::rng().random();
        let token = B64URL.encode(bytes);
        sqlx::query(
            "INSERT INTO ingress_callback_tokens (token_sha256, partner, order_ref) VALUES ($1, $2, $3)",
        )
        .bind(token_hash(&token))
        .bind(partner)
        .bind(order)
        .execute(conn)
        .await?;
        Ok(CallbackToken(token))
    }

    /// Revokes every token of `partner` issued for `order`; returns how many.
    pub async fn revoke_for_order(
        conn: &mut PgConnection,
        partner: &str,
        order: &str,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE ingress_callback_tokens SET revoked_at = now() \
             WHERE partner = $1 AND order_ref = $2 AND revoked_at IS NULL",
        )
        .bind(partner)
        .bind(order)
        .execute(conn)
        .await?;
        Ok(r.rows_affected())
    }

    /// Looks a presented token up by its hash.
    pub async fn lookup(
        pool: &PgPool,
        partner: &str,
        token: &str,
    ) -> Result<TokenState, StoreError> {
        let row = sqlx::query(
            "SELECT order_ref, revoked_at IS NOT NULL AS revoked FROM ingress_callback_tokens \
             WHERE token_sha256 = $1 AND partner = $2",
        )
        .bind(token_hash(token))
        .bind(partner)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else {
            return Ok(TokenState::Unknown);
        };
        if row.try_get::<bool, _>("revoked")? {
            return Ok(TokenState::Revoked);
        }
        Ok(TokenState::Active {
            order: row.try_get("order_ref")?,
        })
    }
}
