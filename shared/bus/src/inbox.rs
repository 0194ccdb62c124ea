//! The inbox table `orderbus_inbox`: one row per (consumer, message id) handled, written in the
//! handler's transaction, so a redelivered message is recognised and acked without effect.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::delivery::Delivery;
use crate::error::BusError;

/// Inserts the inbox rows of a batch in one statement; returns the message ids that were not
/// there before (the others were handled earlier, or appear twice in this batch).
pub(crate) async fn claim(
    conn: &mut PgConnection,
    consumer: &str,
    deliveries: &[Delivery],
) -> Result<HashSet<String>, sqlx::Error> {
    let ids: Vec<&str> = deliveries.iter().map(|d| d.message_id.as_str()).collect();
    let keys: Vec<&str> = deliveries.iter().map(|d| d.routing_key.as_str()).collect();
    let rows: Vec<String> = sqlx::query_scalar(
        "INSERT INTO orderbus_inbox (consumer, message_id, routing_key) \
         SELECT $1, m, k FROM UNNEST($2::text[], $3::text[]) AS t(m, k) \
         ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind(consumer)
    .bind(&ids)
    .bind(&keys)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Deletes inbox rows processed more than `age` ago; returns how many.
pub async fn prune_inbox(pool: &PgPool, age: Duration, timeout: Duration) -> Result<u64, BusError> {
    let r = tokio::time::timeout(
        timeout,
        sqlx::query(
            "DELETE FROM orderbus_inbox WHERE processed_at < now() - make_interval(secs => $1)",
        )
        .bind(age.as_secs_f64())
        .execute(pool),
    )
    .await
    .map_err(|_| BusError::Timeout {
        what: "inbox retention",
        after: timeout,
    })??;
    Ok(r.rows_affected())
}
