//! Delayed answers: rows in `erp_sim_scheduled`, moved into the bus outbox by a sweeper.
//!
//! Why a table and not a sleep: an answer scheduled in the same transaction as the message that
//! caused it survives a crash or restart of the stand-in, is cancellable (order cancel,
//! `order.changeRefundCancel`) with one UPDATE, and is published by the bus relay exactly like
//! any other outbox row (mandatory + confirms, retried until confirmed). Several replicas can
//! sweep (`FOR UPDATE SKIP LOCKED`).

use std::time::Duration;

use orderbus_bus::{Outbox, OutgoingMessage};
use orderbus_contracts::Message;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::store::{self, NewScheduled};
use crate::ErpSimError;

/// Rows moved per sweep transaction.
const SWEEP_BATCH: i64 = 200;
/// Upper bound of one sweep's database work.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Schedules `message` on `subject`, `delay` after the latest (non-cancelled) row of that
/// subject, or after now if it is later: steps of one order / exchange / return keep their order
/// however late the triggering message arrives.
pub async fn schedule<M: Message>(
    conn: &mut PgConnection,
    subject: &str,
    delay: Duration,
    message: &M,
    correlation_id: Option<String>,
    traceparent: Option<&str>,
) -> Result<(), ErpSimError> {
    let body = orderbus_contracts::encode(message)?;
    let scheduled = NewScheduled {
        subject,
        delay_secs: delay.as_secs_f64(),
        routing_key: M::ROUTING_KEY.as_str(),
        body,
        correlation_id: correlation_id.or_else(|| message.correlation_id()),
        traceparent,
    };
    store::insert_scheduled(conn, scheduled).await?;
    Ok(())
}

/// Cancels the pending rows of `subject`; returns how many.
pub async fn cancel(conn: &mut PgConnection, subject: &str) -> Result<u64, sqlx::Error> {
    store::cancel_scheduled(conn, subject).await
}

/// Moves due rows into the outbox in one transaction; returns how many.
pub async fn sweep_once(pool: &PgPool) -> Result<usize, ErpSimError> {
    let mut tx = pool.begin().await?;
    let rows = store::lock_due(&mut tx, SWEEP_BATCH).await?;
    let outbox = Outbox::new();
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let store::DueAnswer {
            id,
            subject,
            routing_key,
            body,
            correlation_id,
            traceparent,
        } = row;
        tracing::info!(
            stand_in = true,
            %subject,
            %routing_key,
            body = %String::from_utf8_lossy(&body),
            "erp-sim (ERP stand-in) answers"
        );
        let msg = OutgoingMessage::new(routing_key, body)
            .child_of(traceparent.as_deref())
            .correlation_id(correlation_id);
        outbox.enqueue_raw(&mut tx, &msg).await?;
        ids.push(id);
    }
    store::mark_sent(&mut tx, &ids).await?;
    tx.commit().await?;
    Ok(ids.len())
}

/// Sweeps every `interval` until `shutdown`; a failed sweep is logged and retried next tick.
pub async fn run(pool: PgPool, interval: Duration, shutdown: CancellationToken) {
    loop {
        let moved = match tokio::time::timeout(SWEEP_TIMEOUT, sweep_once(&pool)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "erp-sim scheduler: sweep failed; retrying");
                0
            }
            Err(_) => {
                tracing::warn!(after = ?SWEEP_TIMEOUT, "erp-sim scheduler: sweep timed out");
                0
            }
        };
        // A full batch means more may be due right now.
        if moved as i64 == SWEEP_BATCH && !shutdown.is_cancelled() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
