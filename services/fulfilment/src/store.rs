//! All SQL of the service (compile-checked `sqlx::query!` macros).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// One Frotel order.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order_code: i64,
    pub uid: i64,
    pub parent_order_code: Option<i64>,
    pub warehouse_id: i64,
    pub kind: String,
    pub buy_type: i32,
    pub state: String,
    pub submit: Value,
    pub order_amount: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub factor_id: Option<String>,
    pub factor_total: Option<i64>,
    pub banks: Value,
    pub registered_at: Option<DateTime<Utc>>,
    pub payment_state: String,
    pub payment_deadline_at: Option<DateTime<Utc>>,
    pub pay_forms: i32,
    pub paid_at: Option<DateTime<Utc>>,
    pub payment_tracking_code: Option<String>,
    pub frotel_status: Option<String>,
    pub stage: Option<String>,
    pub barcode: Option<String>,
    pub tracking_done: bool,
    pub poll_failures: i32,
    pub shipped_published: bool,
    pub delivered_published: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new order from `order.submit`.
pub struct NewOrder<'a> {
    pub order_code: i64,
    pub uid: i64,
    pub parent_order_code: Option<i64>,
    pub warehouse_id: i64,
    pub kind: &'a str,
    pub buy_type: i32,
    pub state: &'a str,
    pub submit: &'a Value,
    pub order_amount: &'a str,
    pub last_error: Option<&'a str>,
}

/// Inserts an order; false when it exists already (a redelivered or repeated submit).
pub async fn insert_order(conn: &mut PgConnection, o: &NewOrder<'_>) -> sqlx::Result<bool> {
    let r = sqlx::query!(
        "INSERT INTO fulfilment_orders (order_code, uid, parent_order_code, warehouse_id, kind,
             buy_type, state, submit, order_amount, last_error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (order_code) DO NOTHING",
        o.order_code,
        o.uid,
        o.parent_order_code,
        o.warehouse_id,
        o.kind,
        o.buy_type,
        o.state,
        o.submit,
        o.order_amount,
        o.last_error,
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn payment_seen(conn: &mut PgConnection, codes: &[i64]) -> sqlx::Result<bool> {
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM fulfilment_payments_seen WHERE order_code = ANY($1)"#,
        codes
    )
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

pub async fn record_payment_seen(conn: &mut PgConnection, code: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO fulfilment_payments_seen (order_code) VALUES ($1) ON CONFLICT DO NOTHING",
        code
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// `order.payment` for `code`: its paid-to-seller orders (itself or its JIT children) may now
/// be registered. Returns how many became ready.
pub async fn release_paid(conn: &mut PgConnection, code: i64) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        "UPDATE fulfilment_orders SET state = 'ready', next_attempt_at = now(), updated_at = now()
         WHERE state = 'awaiting_payment' AND (order_code = $1 OR parent_order_code = $1)",
        code
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

pub async fn get_order(pool: &PgPool, code: i64) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        "SELECT order_code, uid, parent_order_code, warehouse_id, kind, buy_type, state, submit,
             order_amount, attempts, last_error, factor_id, factor_total, banks, registered_at,
             payment_state, payment_deadline_at, pay_forms, paid_at, payment_tracking_code,
             frotel_status, stage, barcode, tracking_done, poll_failures, shipped_published,
             delivered_published, created_at, updated_at
         FROM fulfilment_orders WHERE order_code = $1",
        code
    )
    .fetch_optional(pool)
    .await
}

/// Locks one order in a transaction.
pub async fn lock_order(conn: &mut PgConnection, code: i64) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        "SELECT order_code, uid, parent_order_code, warehouse_id, kind, buy_type, state, submit,
             order_amount, attempts, last_error, factor_id, factor_total, banks, registered_at,
             payment_state, payment_deadline_at, pay_forms, paid_at, payment_tracking_code,
             frotel_status, stage, barcode, tracking_done, poll_failures, shipped_published,
             delivered_published, created_at, updated_at
         FROM fulfilment_orders WHERE order_code = $1 FOR UPDATE",
        code
    )
    .fetch_optional(conn)
    .await
}

/// Orders needing a person: outcome unknown, refused, invalid, payment escalated.
pub async fn attention(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        "SELECT order_code, uid, parent_order_code, warehouse_id, kind, buy_type, state, submit,
             order_amount, attempts, last_error, factor_id, factor_total, banks, registered_at,
             payment_state, payment_deadline_at, pay_forms, paid_at, payment_tracking_code,
             frotel_status, stage, barcode, tracking_done, poll_failures, shipped_published,
             delivered_published, created_at, updated_at
         FROM fulfilment_orders
         WHERE state IN ('outcome_unknown', 'refused', 'invalid') OR payment_state = 'escalated'
            OR order_code IN (SELECT order_code FROM fulfilment_callbacks
                              WHERE state = 'pending' AND escalated_at IS NOT NULL)
         ORDER BY updated_at DESC LIMIT $1",
        limit
    )
    .fetch_all(pool)
    .await
}

/// Claims up to `limit` due registrations: `ready` → `sending` (committed before the call, so a
/// crash during it leaves a visible `sending` row, never a silent second send).
pub async fn claim_registrations(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        "UPDATE fulfilment_orders o SET state = 'sending', attempts = o.attempts + 1,
             sending_since = now(), updated_at = now()
         FROM (SELECT order_code FROM fulfilment_orders
               WHERE state = 'ready' AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
         WHERE o.order_code = due.order_code
         RETURNING o.order_code, o.uid, o.parent_order_code, o.warehouse_id, o.kind, o.buy_type,
             o.state, o.submit, o.order_amount, o.attempts, o.last_error, o.factor_id,
             o.factor_total, o.banks, o.registered_at, o.payment_state, o.payment_deadline_at,
             o.pay_forms, o.paid_at, o.payment_tracking_code, o.frotel_status, o.stage,
             o.barcode, o.tracking_done, o.poll_failures, o.shipped_published,
             o.delivered_published, o.created_at, o.updated_at",
        limit
    )
    .fetch_all(pool)
    .await
}

/// A `sending` row older than `stale_secs` belongs to a process that stopped during the call:
/// its outcome is unknown.
pub async fn expire_sending(pool: &PgPool, stale_secs: f64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "UPDATE fulfilment_orders SET state = 'outcome_unknown', updated_at = now(),
             last_error = 'the service stopped while registerOrder was in flight: check the Frotel panel for shop_barcode = order code'
         WHERE state = 'sending' AND sending_since < now() - make_interval(secs => $1)
         RETURNING order_code",
        stale_secs
    )
    .fetch_all(pool)
    .await
}

/// Registered: the factor id (string), the total and the banks.
pub async fn mark_registered(
    conn: &mut PgConnection,
    code: i64,
    factor: &str,
    total: i64,
    banks: &Value,
    payment_deadline_secs: Option<f64>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_orders SET state = 'registered', factor_id = $2, factor_total = $3,
             banks = $4, registered_at = now(), sending_since = NULL, last_error = NULL,
             next_poll_at = now(), updated_at = now(),
             payment_state = CASE WHEN $5::float8 IS NULL THEN payment_state ELSE 'awaiting' END,
             payment_deadline_at = CASE WHEN $5::float8 IS NULL THEN NULL
                                        ELSE now() + make_interval(secs => $5::float8) END
         WHERE order_code = $1",
        code,
        factor,
        total,
        banks,
        payment_deadline_secs,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Back to `ready` after `delay_secs` (nothing reached Frotel).
pub async fn retry_registration(
    pool: &PgPool,
    code: i64,
    delay_secs: f64,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_orders SET state = 'ready', sending_since = NULL, last_error = $3,
             next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE order_code = $1 AND state = 'sending'",
        code,
        delay_secs,
        error,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// A final registration state needing a person (`outcome_unknown`, `refused`, `invalid`).
pub async fn mark_stuck(pool: &PgPool, code: i64, state: &str, error: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_orders SET state = $2, sending_since = NULL, last_error = $3,
             updated_at = now()
         WHERE order_code = $1 AND state = 'sending'",
        code,
        state,
        error,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Ops: an outcome-unknown order was found in the Frotel panel (factor given) or confirmed
/// absent (back to `ready`). Returns false when the order is not in `outcome_unknown`.
pub async fn resolve_unknown(
    pool: &PgPool,
    code: i64,
    factor: Option<&str>,
    payment_deadline_secs: Option<f64>,
) -> sqlx::Result<bool> {
    let r = match factor {
        Some(f) => sqlx::query!(
            "UPDATE fulfilment_orders SET state = 'registered', factor_id = $2,
                 registered_at = now(), last_error = NULL, next_poll_at = now(), updated_at = now(),
                 payment_state = CASE WHEN $3::float8 IS NULL THEN payment_state ELSE 'awaiting' END,
                 payment_deadline_at = CASE WHEN $3::float8 IS NULL THEN NULL
                                            ELSE now() + make_interval(secs => $3::float8) END
             WHERE order_code = $1 AND state = 'outcome_unknown'",
            code,
            f,
            payment_deadline_secs,
        )
        .execute(pool)
        .await?,
        None => sqlx::query!(
            "UPDATE fulfilment_orders SET state = 'ready', next_attempt_at = now(),
                 last_error = 'ops confirmed it was not registered', updated_at = now()
             WHERE order_code = $1 AND state = 'outcome_unknown'",
            code,
        )
        .execute(pool)
        .await?,
    };
    Ok(r.rows_affected() == 1)
}

pub async fn count_pay_form(pool: &PgPool, code: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_orders SET pay_forms = pay_forms + 1, updated_at = now()
         WHERE order_code = $1",
        code
    )
    .execute(pool)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Bank callbacks
// ---------------------------------------------------------------------------------------------

/// One callback to verify.
#[derive(Debug, Clone)]
pub struct CallbackRow {
    pub order_code: i64,
    pub payment_id: String,
    pub reference: String,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub verify_message: Option<String>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Records a callback; false when the same (order, payment id) was recorded before.
pub async fn insert_callback(
    conn: &mut PgConnection,
    code: i64,
    payment_id: &str,
    reference: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query!(
        "INSERT INTO fulfilment_callbacks (order_code, payment_id, reference) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        code,
        payment_id,
        reference
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Claims due callbacks for checkPay; the claim pushes `next_check_at` by `lease_secs` so
/// another replica does not check the same one at the same time.
pub async fn claim_callbacks(
    pool: &PgPool,
    limit: i64,
    lease_secs: f64,
) -> sqlx::Result<Vec<CallbackRow>> {
    sqlx::query_as!(
        CallbackRow,
        "UPDATE fulfilment_callbacks c SET attempts = c.attempts + 1,
             next_check_at = now() + make_interval(secs => $2)
         FROM (SELECT order_code, payment_id FROM fulfilment_callbacks
               WHERE state = 'pending' AND next_check_at <= now()
               ORDER BY next_check_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
         WHERE c.order_code = due.order_code AND c.payment_id = due.payment_id
         RETURNING c.order_code, c.payment_id, c.reference, c.state, c.attempts, c.last_error,
             c.verify_message, c.escalated_at, c.created_at",
        limit,
        lease_secs,
    )
    .fetch_all(pool)
    .await
}

pub async fn callbacks_of(pool: &PgPool, code: i64) -> sqlx::Result<Vec<CallbackRow>> {
    sqlx::query_as!(
        CallbackRow,
        "SELECT order_code, payment_id, reference, state, attempts, last_error, verify_message,
             escalated_at, created_at
         FROM fulfilment_callbacks WHERE order_code = $1 ORDER BY created_at",
        code
    )
    .fetch_all(pool)
    .await
}

/// checkPay did not answer: try again after `delay_secs`; escalate once past the deadline.
pub async fn callback_retry(
    pool: &PgPool,
    code: i64,
    payment_id: &str,
    delay_secs: f64,
    error: &str,
    escalate_after_secs: f64,
) -> sqlx::Result<bool> {
    let escalated = sqlx::query_scalar!(
        r#"UPDATE fulfilment_callbacks SET next_check_at = now() + make_interval(secs => $3),
             last_error = $4,
             escalated_at = CASE WHEN escalated_at IS NULL
                                  AND created_at < now() - make_interval(secs => $5)
                                 THEN now() ELSE escalated_at END
         WHERE order_code = $1 AND payment_id = $2 AND state = 'pending'
         RETURNING escalated_at IS NOT NULL AS "escalated!""#,
        code,
        payment_id,
        delay_secs,
        error,
        escalate_after_secs,
    )
    .fetch_optional(pool)
    .await?;
    Ok(escalated.unwrap_or(false))
}

/// checkPay answered: `verified`, `failed` (verify 0) or `refused` (business error).
pub async fn callback_done(
    conn: &mut PgConnection,
    code: i64,
    payment_id: &str,
    state: &str,
    message: &str,
    tracking_code: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_callbacks SET state = $3, verify_message = $4, tracking_code = $5,
             checked_at = now(), last_error = NULL
         WHERE order_code = $1 AND payment_id = $2",
        code,
        payment_id,
        state,
        message,
        tracking_code,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The order is paid (once): true only the first time, which is when `order.payment` goes out.
pub async fn mark_paid(
    conn: &mut PgConnection,
    code: i64,
    tracking_code: Option<&str>,
) -> sqlx::Result<bool> {
    let r = sqlx::query!(
        "UPDATE fulfilment_orders SET payment_state = 'paid', paid_at = now(),
             payment_tracking_code = $2, updated_at = now()
         WHERE order_code = $1 AND paid_at IS NULL",
        code,
        tracking_code,
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// verify 0: the customer may continue (orderPay → continuePay).
pub async fn mark_payment_failed(conn: &mut PgConnection, code: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_orders SET payment_state = 'failed', updated_at = now()
         WHERE order_code = $1 AND payment_state IN ('awaiting', 'failed')",
        code
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Payments still not verified past their deadline are escalated.
pub async fn escalate_payments(pool: &PgPool) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "UPDATE fulfilment_orders SET payment_state = 'escalated', updated_at = now(),
             last_error = 'payment not verified before the deadline: check the Frotel panel and the bank'
         WHERE payment_state IN ('awaiting', 'failed') AND payment_deadline_at < now()
         RETURNING order_code"
    )
    .fetch_all(pool)
    .await
}

/// One download link of a virtual order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkRow {
    pub name: String,
    pub size: String,
    pub mime: String,
    pub count: String,
    pub expire: String,
    pub link: String,
}

pub async fn insert_link(
    conn: &mut PgConnection,
    code: i64,
    position: i32,
    l: &LinkRow,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO fulfilment_download_links (order_code, position, name, size, mime, count,
             expire, link)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        code,
        position,
        l.name,
        l.size,
        l.mime,
        l.count,
        l.expire,
        l.link,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn links_of(pool: &PgPool, code: i64) -> sqlx::Result<Vec<LinkRow>> {
    sqlx::query_as!(
        LinkRow,
        "SELECT name, size, mime, count, expire, link FROM fulfilment_download_links
         WHERE order_code = $1 ORDER BY position",
        code
    )
    .fetch_all(pool)
    .await
}

// ---------------------------------------------------------------------------------------------
// Tracking
// ---------------------------------------------------------------------------------------------

/// A registered physical order whose tracking is due.
#[derive(Debug, Clone)]
pub struct PollRow {
    pub order_code: i64,
    pub factor_id: String,
    pub poll_failures: i32,
}

pub async fn due_polls(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<PollRow>> {
    sqlx::query_as!(
        PollRow,
        r#"SELECT order_code, factor_id AS "factor_id!", poll_failures FROM fulfilment_orders
         WHERE state = 'registered' AND NOT tracking_done AND kind = 'physical'
           AND factor_id IS NOT NULL AND next_poll_at <= now()
         ORDER BY next_poll_at LIMIT $1"#,
        limit
    )
    .fetch_all(pool)
    .await
}

pub async fn poll_failed(
    pool: &PgPool,
    code: i64,
    delay_secs: f64,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_orders SET poll_failures = poll_failures + 1, last_error = $3,
             next_poll_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE order_code = $1",
        code,
        delay_secs,
        error,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// What a successful poll changes.
pub struct PollUpdate<'a> {
    pub frotel_status: &'a str,
    pub stage: Option<&'a str>,
    pub barcode: &'a str,
    pub tracking_done: bool,
    pub shipped_published: bool,
    pub delivered_published: bool,
}

pub async fn poll_succeeded(
    conn: &mut PgConnection,
    code: i64,
    u: &PollUpdate<'_>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE fulfilment_orders SET frotel_status = $2, stage = $3, barcode = $4,
             tracking_done = $5, shipped_published = $6, delivered_published = $7,
             poll_failures = 0, next_poll_at = now(), updated_at = now()
         WHERE order_code = $1",
        code,
        u.frotel_status,
        u.stage,
        u.barcode,
        u.tracking_done,
        u.shipped_published,
        u.delivered_published,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_tracking_event(
    conn: &mut PgConnection,
    code: i64,
    status: &str,
    stage: Option<&str>,
    progress: &str,
    barcode: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "INSERT INTO fulfilment_tracking_events (order_code, frotel_status, stage, progress, barcode)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        code,
        status,
        stage,
        progress,
        barcode,
    )
    .fetch_one(conn)
    .await
}

pub async fn record_unmapped(conn: &mut PgConnection, status: &str, code: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO fulfilment_unmapped_statuses (status, last_order_code) VALUES ($1, $2)
         ON CONFLICT (status) DO UPDATE SET seen_count = fulfilment_unmapped_statuses.seen_count + 1,
             last_seen_at = now(), last_order_code = $2",
        status,
        code
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An unmapped status and how often it was seen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnmappedRow {
    pub status: String,
    pub seen_count: i64,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub last_order_code: i64,
}

pub async fn unmapped(pool: &PgPool) -> sqlx::Result<Vec<UnmappedRow>> {
    sqlx::query_as!(
        UnmappedRow,
        "SELECT status, seen_count, first_seen_at, last_seen_at, last_order_code
         FROM fulfilment_unmapped_statuses ORDER BY last_seen_at DESC LIMIT 200"
    )
    .fetch_all(pool)
    .await
}

/// One tracking event of an order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub frotel_status: String,
    pub stage: Option<String>,
    pub progress: String,
    pub barcode: String,
    pub observed_at: DateTime<Utc>,
}

pub async fn events_of(pool: &PgPool, code: i64) -> sqlx::Result<Vec<EventRow>> {
    sqlx::query_as!(
        EventRow,
        "SELECT frotel_status, stage, progress, barcode, observed_at
         FROM fulfilment_tracking_events WHERE order_code = $1 ORDER BY id",
        code
    )
    .fetch_all(pool)
    .await
}
