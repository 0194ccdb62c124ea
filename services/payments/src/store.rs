//! Every SQL statement of the service, as compile-checked `sqlx` macros.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::OrderCode;

/// The payment row of one order.
#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub order_code: i64,
    pub uid: i64,
    pub amount_cents: i64,
    pub order_created_at: DateTime<Utc>,
    pub status: String,
    pub flag: Option<String>,
    pub flag_detail: Option<String>,
    pub settled_via: Option<String>,
    pub settled_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub sweep_attempts: i32,
    pub next_sweep_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One attempt at the bank.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub id: i64,
    pub order_code: i64,
    pub order_no: String,
    pub pay_type: String,
    pub amount_cents: i64,
    pub ts_no: Option<String>,
    pub bank_code: Option<String>,
    pub atm_account: Option<String>,
    pub web_atm_url: Option<String>,
    pub card_pay_url: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub expire_date: Option<String>,
    pub bank_reply: Value,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

/// What the bank reported for one attempt.
#[derive(Debug, Clone)]
pub struct SettlementRow {
    pub attempt_id: i64,
    pub via: String,
    pub outcome: String,
    pub published: bool,
    pub ts_no: String,
    pub pay_token: Option<String>,
    pub bank_amount_cents: Option<i64>,
    pub bank_paid_at: Option<DateTime<Utc>>,
    pub settled_at: DateTime<Utc>,
    pub lag_ms: Option<i64>,
    pub bank_answer: Value,
}

/// A new payment from `order.submit`; `false` if the order already has one (a redelivery).
pub async fn insert_payment(
    conn: &mut PgConnection,
    code: OrderCode,
    uid: i64,
    amount_cents: i64,
    order_created_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "INSERT INTO payments (order_code, uid, amount_cents, order_created_at, status) \
         VALUES ($1, $2, $3, $4, 'awaiting_method') ON CONFLICT (order_code) DO NOTHING",
        code.0,
        uid,
        amount_cents,
        order_created_at
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The payment, locked for this transaction (every status change goes through this lock).
pub async fn lock_payment(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as!(
        PaymentRow,
        "SELECT order_code, uid, amount_cents, order_created_at, status, flag, flag_detail, \
                settled_via, settled_at, cancelled_at, sweep_attempts, next_sweep_at, \
                escalated_at, created_at \
         FROM payments WHERE order_code = $1 FOR UPDATE",
        code.0
    )
    .fetch_optional(conn)
    .await
}

/// The payment, unlocked (reads).
pub async fn payment(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as!(
        PaymentRow,
        "SELECT order_code, uid, amount_cents, order_created_at, status, flag, flag_detail, \
                settled_via, settled_at, cancelled_at, sweep_attempts, next_sweep_at, \
                escalated_at, created_at \
         FROM payments WHERE order_code = $1",
        code.0
    )
    .fetch_optional(conn)
    .await
}

/// The attempts of an order, oldest first.
pub async fn attempts(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRow,
        "SELECT id, order_code, order_no, pay_type, amount_cents, ts_no, bank_code, atm_account, \
                web_atm_url, card_pay_url, expires_at, expire_date, bank_reply, state, created_at \
         FROM payment_attempts WHERE order_code = $1 ORDER BY id",
        code.0
    )
    .fetch_all(conn)
    .await
}

/// The attempt behind a Sinopac OrderNo.
pub async fn attempt_by_order_no(
    conn: &mut PgConnection,
    order_no: &str,
) -> Result<Option<AttemptRow>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRow,
        "SELECT id, order_code, order_no, pay_type, amount_cents, ts_no, bank_code, atm_account, \
                web_atm_url, card_pay_url, expires_at, expire_date, bank_reply, state, created_at \
         FROM payment_attempts WHERE order_no = $1",
        order_no
    )
    .fetch_optional(conn)
    .await
}

/// Number of attempts an order has had (for the next OrderNo).
pub async fn attempt_count(conn: &mut PgConnection, code: OrderCode) -> Result<i64, sqlx::Error> {
    let n = sqlx::query_scalar!(
        "SELECT count(*) FROM payment_attempts WHERE order_code = $1",
        code.0
    )
    .fetch_one(conn)
    .await?;
    Ok(n.unwrap_or(0))
}

/// A new attempt as the bank created it.
pub struct NewAttempt<'a> {
    pub order_code: OrderCode,
    pub order_no: &'a str,
    pub pay_type: &'a str,
    pub amount_cents: i64,
    pub ts_no: &'a str,
    pub bank_code: Option<&'a str>,
    pub atm_account: Option<&'a str>,
    pub web_atm_url: Option<&'a str>,
    pub card_pay_url: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    pub expire_date: Option<&'a str>,
    pub bank_reply: &'a Value,
}

/// Records an attempt and moves the payment to `awaiting_payment`, first sweep at `first_sweep`.
pub async fn insert_attempt(
    conn: &mut PgConnection,
    a: &NewAttempt<'_>,
    first_sweep: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let id = sqlx::query_scalar!(
        "INSERT INTO payment_attempts (order_code, order_no, pay_type, amount_cents, ts_no, \
             bank_code, atm_account, web_atm_url, card_pay_url, expires_at, expire_date, bank_reply) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        a.order_code.0,
        a.order_no,
        a.pay_type,
        a.amount_cents,
        a.ts_no,
        a.bank_code,
        a.atm_account,
        a.web_atm_url,
        a.card_pay_url,
        a.expires_at,
        a.expire_date,
        a.bank_reply
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE payments SET status = 'awaiting_payment', sweep_attempts = 0, next_sweep_at = $2, \
             escalated_at = NULL, updated_at = now() \
         WHERE order_code = $1",
        a.order_code.0,
        first_sweep
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// A settlement row; `None` if the attempt already has one (the primary key decides).
pub struct NewSettlement<'a> {
    pub attempt_id: i64,
    pub order_code: OrderCode,
    pub via: &'a str,
    pub outcome: &'a str,
    pub published: bool,
    pub ts_no: &'a str,
    pub pay_token: Option<&'a str>,
    pub bank_amount_cents: Option<i64>,
    pub bank_paid_at: Option<DateTime<Utc>>,
    pub lag_ms: Option<i64>,
    pub bank_answer: &'a Value,
}

pub async fn insert_settlement(
    conn: &mut PgConnection,
    s: &NewSettlement<'_>,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query_scalar!(
        "INSERT INTO payment_settlements (attempt_id, order_code, via, outcome, published, ts_no, \
             pay_token, bank_amount_cents, bank_paid_at, lag_ms, bank_answer) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id",
        s.attempt_id,
        s.order_code.0,
        s.via,
        s.outcome,
        s.published,
        s.ts_no,
        s.pay_token,
        s.bank_amount_cents,
        s.bank_paid_at,
        s.lag_ms,
        s.bank_answer
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Links a published settlement to its outbox message.
pub async fn set_settlement_message(
    conn: &mut PgConnection,
    attempt_id: i64,
    message_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE payment_settlements SET outbox_message_id = $2 WHERE attempt_id = $1",
        attempt_id,
        message_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The settlements of an order, oldest first.
pub async fn settlements(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<SettlementRow>, sqlx::Error> {
    sqlx::query_as!(
        SettlementRow,
        "SELECT attempt_id, via, outcome, published, ts_no, pay_token, bank_amount_cents, \
                bank_paid_at, settled_at, lag_ms, bank_answer \
         FROM payment_settlements WHERE order_code = $1 ORDER BY settled_at, attempt_id",
        code.0
    )
    .fetch_all(conn)
    .await
}

/// Sets an attempt's state.
pub async fn set_attempt_state(
    conn: &mut PgConnection,
    attempt_id: i64,
    state: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE payment_attempts SET state = $2 WHERE id = $1",
        attempt_id,
        state
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the payment's status; `settled` records how and when it was learned.
pub async fn set_status(
    conn: &mut PgConnection,
    code: OrderCode,
    status: &str,
    settled: Option<(&str, DateTime<Utc>)>,
) -> Result<(), sqlx::Error> {
    let (via, at) = settled.map_or((None, None), |(v, t)| (Some(v), Some(t)));
    sqlx::query!(
        "UPDATE payments SET status = $2, settled_via = COALESCE($3, settled_via), \
             settled_at = COALESCE($4, settled_at), updated_at = now() \
         WHERE order_code = $1",
        code.0,
        status,
        via,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Flags the payment for ops (`amount_mismatch`, `duplicate_payment`, `stuck`).
pub async fn set_flag(
    conn: &mut PgConnection,
    code: OrderCode,
    flag: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE payments SET flag = $2, flag_detail = $3, updated_at = now() WHERE order_code = $1",
        code.0,
        flag,
        detail
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the cancellation (order.orderStatus 900/906).
pub async fn set_cancelled(
    conn: &mut PgConnection,
    code: OrderCode,
    change_status: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE payments SET status = CASE WHEN $2 THEN 'cancelled' ELSE status END, \
             cancelled_at = COALESCE(cancelled_at, now()), updated_at = now() \
         WHERE order_code = $1",
        code.0,
        change_status
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a PayToken a notification brought and what came of it.
pub async fn record_token(
    conn: &mut PgConnection,
    pay_token: &str,
    via: &str,
    order_code: Option<i64>,
    result: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO payment_tokens (pay_token, via, order_code, result) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (pay_token, via) DO UPDATE SET seen_at = now(), result = EXCLUDED.result, \
             order_code = COALESCE(EXCLUDED.order_code, payment_tokens.order_code)",
        pay_token,
        via,
        order_code,
        result
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// PayTokens seen for an order.
pub async fn tokens(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT pay_token, via, result FROM payment_tokens WHERE order_code = $1 ORDER BY seen_at",
        code.0
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.pay_token, r.via, r.result))
        .collect())
}

/// A payment the sweep should look at, with its newest open attempt.
#[derive(Debug, Clone)]
pub struct DueRow {
    pub order_code: i64,
    pub sweep_attempts: i32,
    pub attempt_id: i64,
    pub order_no: String,
    pub pay_type: String,
    pub attempt_created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Payments awaiting payment, not escalated, due for a sweep, whose newest attempt is older
/// than `older_than`; oldest first.
pub async fn due_for_sweep(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    older_than: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueRow>, sqlx::Error> {
    sqlx::query_as!(
        DueRow,
        r#"SELECT p.order_code, p.sweep_attempts, a.id AS "attempt_id!", a.order_no AS "order_no!",
                a.pay_type AS "pay_type!", a.created_at AS "attempt_created_at!",
                a.expires_at AS "expires_at!"
         FROM payments p
         JOIN LATERAL (SELECT id, order_no, pay_type, created_at, expires_at FROM payment_attempts
                       WHERE order_code = p.order_code AND state = 'open'
                       ORDER BY id DESC LIMIT 1) a ON true
         WHERE p.status = 'awaiting_payment' AND p.escalated_at IS NULL
           AND p.next_sweep_at <= $1 AND a.created_at < $2
         ORDER BY a.created_at
         LIMIT $3"#,
        now,
        older_than,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The sweep found nothing yet: try again at `next`, or escalate (`escalate`).
pub async fn sweep_missed(
    conn: &mut PgConnection,
    code: OrderCode,
    next: DateTime<Utc>,
    escalate: bool,
    detail: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "UPDATE payments SET sweep_attempts = sweep_attempts + 1, next_sweep_at = $2, \
             escalated_at = CASE WHEN $3 THEN now() ELSE escalated_at END, \
             flag = CASE WHEN $3 THEN 'stuck' ELSE flag END, \
             flag_detail = CASE WHEN $3 THEN $4 ELSE flag_detail END, updated_at = now() \
         WHERE order_code = $1 AND status = 'awaiting_payment' AND escalated_at IS NULL",
        code.0,
        next,
        escalate,
        detail
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Counts for metrics and ops: payments escalated (`stuck`) and not settled.
pub async fn stuck_count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let n = sqlx::query_scalar!(
        "SELECT count(*) FROM payments WHERE escalated_at IS NOT NULL AND status = 'awaiting_payment'"
    )
    .fetch_one(conn)
    .await?;
    Ok(n.unwrap_or(0))
}
