//! The auto-cancel sweep's statements: claim due unpaid orders, cancel their JIT children.

use sqlx::PgConnection;

/// A top-level order the sweep just cancelled.
pub struct Cancelled {
    pub order_code: i64,
    pub is_split_parent: bool,
}

/// Moves up to `batch` top-level orders still in `pending` and older than `deadline_secs` to
/// `to`, oldest first. Rows another replica's sweep holds are skipped, and the status is
/// re-checked in the `UPDATE`, so each order is cancelled once and a payment committing
/// concurrently either wins or finds the order cancelled.
pub async fn cancel_due(
    conn: &mut PgConnection,
    pending: &str,
    to: &str,
    deadline_secs: f64,
    batch: i64,
) -> Result<Vec<Cancelled>, sqlx::Error> {
    sqlx::query_as!(
        Cancelled,
        "WITH due AS ( \
             SELECT order_code FROM orders \
             WHERE status = $1 AND parent_order_code IS NULL \
               AND created_at < now() - make_interval(secs => $2) \
             ORDER BY created_at \
             LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE orders o SET status = $4, updated_at = now() \
         FROM due WHERE o.order_code = due.order_code AND o.status = $1 \
         RETURNING o.order_code, o.is_split_parent",
        pending,
        deadline_secs,
        batch,
        to
    )
    .fetch_all(conn)
    .await
}

/// Moves the JIT children of `parent` still in `pending` to `to`; returns their codes.
pub async fn cancel_pending_children(
    conn: &mut PgConnection,
    parent: i64,
    pending: &str,
    to: &str,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE orders SET status = $3, updated_at = now() \
         WHERE parent_order_code = $1 AND status = $2 RETURNING order_code",
        parent,
        pending,
        to
    )
    .fetch_all(conn)
    .await
}
