//! Every statement the stand-in runs, compile-checked against its migrations (`.sqlx/`).
//!
//! Handlers and the scheduler decide; this module only reads and writes. Each function takes the
//! caller's connection, so a message's effects and its outbox rows share one transaction.

use sqlx::PgConnection;

/// `erp_sim_after_sales.kind`: an exchange or a return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterSaleKind {
    Change,
    Refund,
}

impl AfterSaleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterSaleKind::Change => "change",
            AfterSaleKind::Refund => "refund",
        }
    }
}

/// An order the walk was just claimed for.
pub struct WalkClaim {
    pub uid: i64,
    /// The `order.submit` body, if the order was submitted (not only paid).
    pub submit: Option<serde_json::Value>,
}

/// Claims the order's 100 → 700 walk: once per order, only for a submitted, uncancelled order
/// that is not a JIT split parent. `None` when there is nothing (more) to walk.
pub async fn claim_walk(
    conn: &mut PgConnection,
    order_code: i64,
) -> Result<Option<WalkClaim>, sqlx::Error> {
    let row = sqlx::query!(
        "UPDATE erp_sim_orders SET walk_started_at = now() \
         WHERE order_code = $1 AND walk_started_at IS NULL AND cancelled_at IS NULL \
           AND submitted_at IS NOT NULL AND NOT is_split_parent \
         RETURNING uid, submit",
        order_code
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| WalkClaim {
        uid: r.uid,
        submit: r.submit,
    }))
}

/// Serializes the handlers of one order family until the transaction ends.
pub async fn lock_family(conn: &mut PgConnection, family: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"SELECT 1 AS "locked!" FROM pg_advisory_xact_lock($1)"#,
        family
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// Records an order's first `order.submit`. `None` if it was submitted before; otherwise
/// whether a payment already arrived.
pub async fn record_submit(
    conn: &mut PgConnection,
    order_code: i64,
    uid: i64,
    parent_order_code: Option<i64>,
    body: serde_json::Value,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO erp_sim_orders (order_code, uid, parent_order_code, submit, submitted_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (order_code) DO UPDATE SET submit = EXCLUDED.submit,
               parent_order_code = EXCLUDED.parent_order_code, submitted_at = now()
           WHERE erp_sim_orders.submitted_at IS NULL
           RETURNING paid_at IS NOT NULL AS "paid!""#,
        order_code,
        uid,
        parent_order_code,
        body
    )
    .fetch_optional(conn)
    .await
}

/// What marking an order as a JIT split parent found.
pub struct SplitParent {
    pub paid: bool,
    pub walked: bool,
}

/// Marks `parent` as a JIT split parent (creating its row if only the child is known yet).
pub async fn mark_split_parent(
    conn: &mut PgConnection,
    parent: i64,
    uid: i64,
) -> Result<SplitParent, sqlx::Error> {
    let row = sqlx::query!(
        r#"INSERT INTO erp_sim_orders (order_code, uid, is_split_parent) VALUES ($1, $2, true)
           ON CONFLICT (order_code) DO UPDATE SET is_split_parent = true
           RETURNING paid_at IS NOT NULL AS "paid!", walk_started_at IS NOT NULL AS "walked!""#,
        parent,
        uid
    )
    .fetch_one(conn)
    .await?;
    Ok(SplitParent {
        paid: row.paid,
        walked: row.walked,
    })
}

/// Records an order's first payment. `None` if it was paid before; otherwise whether the
/// storefront had cancelled it.
pub async fn record_payment(
    conn: &mut PgConnection,
    order_code: i64,
    uid: i64,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO erp_sim_orders (order_code, uid, paid_at) VALUES ($1, $2, now())
           ON CONFLICT (order_code) DO UPDATE SET paid_at = now()
           WHERE erp_sim_orders.paid_at IS NULL
           RETURNING cancelled_at IS NOT NULL AS "cancelled!""#,
        order_code,
        uid
    )
    .fetch_optional(conn)
    .await
}

/// The JIT children the stand-in knows of `parent`, in order.
pub async fn children_of(conn: &mut PgConnection, parent: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT order_code FROM erp_sim_orders WHERE parent_order_code = $1 ORDER BY order_code",
        parent
    )
    .fetch_all(conn)
    .await
}

/// Marks a known order cancelled (keeps the first time); whether the order is known.
pub async fn cancel_order(conn: &mut PgConnection, order_code: i64) -> Result<bool, sqlx::Error> {
    let known = sqlx::query_scalar!(
        "UPDATE erp_sim_orders SET cancelled_at = COALESCE(cancelled_at, now()) \
         WHERE order_code = $1 RETURNING order_code",
        order_code
    )
    .fetch_optional(conn)
    .await?;
    Ok(known.is_some())
}

/// A new exchange or return the stand-in answers.
pub struct NewAfterSale<'a> {
    pub erp_id: i64,
    pub kind: AfterSaleKind,
    pub storefront_id: i64,
    pub order_code: i64,
    pub uid: i64,
    pub rejected: bool,
    /// The return amount (decimal text) for a return.
    pub amount: Option<&'a str>,
}

/// Records a new exchange/return; `false` if the storefront id was answered before.
pub async fn insert_after_sale(
    conn: &mut PgConnection,
    a: &NewAfterSale<'_>,
) -> Result<bool, sqlx::Error> {
    let state = if a.rejected { "rejected" } else { "open" };
    let done = sqlx::query!(
        "INSERT INTO erp_sim_after_sales (erp_id, kind, storefront_id, order_code, uid, state, amount) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, storefront_id) DO NOTHING",
        a.erp_id,
        a.kind.as_str(),
        a.storefront_id,
        a.order_code,
        a.uid,
        state,
        a.amount
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An exchange/return as the stand-in keeps it, locked for the transaction.
pub struct AfterSale {
    pub storefront_id: i64,
    pub order_code: i64,
    pub uid: i64,
    /// `rejected`, `open` or `cancelled`.
    pub state: String,
    pub amount: Option<String>,
    pub had_waybill: bool,
}

/// The exchange/return with the stand-in's id `erp_id`, row-locked.
pub async fn lock_after_sale(
    conn: &mut PgConnection,
    erp_id: i64,
    kind: AfterSaleKind,
) -> Result<Option<AfterSale>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT storefront_id, order_code, uid, state, amount,
                  waybill_at IS NOT NULL AS "had_waybill!"
           FROM erp_sim_after_sales WHERE erp_id = $1 AND kind = $2 FOR UPDATE"#,
        erp_id,
        kind.as_str()
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| AfterSale {
        storefront_id: r.storefront_id,
        order_code: r.order_code,
        uid: r.uid,
        state: r.state,
        amount: r.amount,
        had_waybill: r.had_waybill,
    }))
}

/// Notes that the customer's waybill for goods sent back arrived.
pub async fn mark_waybill(conn: &mut PgConnection, erp_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE erp_sim_after_sales SET waybill_at = now() WHERE erp_id = $1",
        erp_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels an open exchange/return; `false` if it is unknown, rejected or already cancelled.
pub async fn cancel_after_sale(
    conn: &mut PgConnection,
    erp_id: i64,
    kind: AfterSaleKind,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query_scalar!(
        "UPDATE erp_sim_after_sales SET state = 'cancelled' \
         WHERE erp_id = $1 AND kind = $2 AND state = 'open' RETURNING erp_id",
        erp_id,
        kind.as_str()
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// A delayed answer to schedule.
pub struct NewScheduled<'a> {
    pub subject: &'a str,
    pub delay_secs: f64,
    pub routing_key: &'a str,
    pub body: Vec<u8>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<&'a str>,
}

/// Schedules an answer `delay` after the subject's latest pending one (or now, if later).
pub async fn insert_scheduled(
    conn: &mut PgConnection,
    s: NewScheduled<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO erp_sim_scheduled (subject, due_at, routing_key, body, correlation_id, traceparent) \
         SELECT $1, GREATEST(clock_timestamp(), COALESCE(max(due_at), clock_timestamp())) \
                    + make_interval(secs => $2), $3, $4, $5, $6 \
         FROM erp_sim_scheduled WHERE subject = $1 AND cancelled_at IS NULL",
        s.subject,
        s.delay_secs,
        s.routing_key,
        s.body,
        s.correlation_id,
        s.traceparent
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels the pending answers of `subject`; returns how many.
pub async fn cancel_scheduled(conn: &mut PgConnection, subject: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE erp_sim_scheduled SET cancelled_at = now() \
         WHERE subject = $1 AND sent_at IS NULL AND cancelled_at IS NULL",
        subject
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Whether any answer of `subject` was already sent (e.g. the unpaid auto-cancel fired).
pub async fn any_sent(conn: &mut PgConnection, subject: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM erp_sim_scheduled
                          WHERE subject = $1 AND sent_at IS NOT NULL) AS "sent!""#,
        subject
    )
    .fetch_one(conn)
    .await
}

/// A due answer, locked for the sweep's transaction.
pub struct DueAnswer {
    pub id: i64,
    pub subject: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
}

/// Up to `limit` due answers, oldest first; other sweepers skip them.
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<DueAnswer>, sqlx::Error> {
    sqlx::query_as!(
        DueAnswer,
        "SELECT id, subject, routing_key, body, correlation_id, traceparent FROM erp_sim_scheduled \
         WHERE sent_at IS NULL AND cancelled_at IS NULL AND due_at <= clock_timestamp() \
         ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit
    )
    .fetch_all(conn)
    .await
}

/// Marks answers as moved into the outbox.
pub async fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE erp_sim_scheduled SET sent_at = now() WHERE id = ANY($1)",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}
