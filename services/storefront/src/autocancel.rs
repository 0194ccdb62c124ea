//! System auto-cancel: unpaid orders past the deadline → `cancelled_by_system` + `order.orderStatus`
//! 906, for the order and its JIT children.
//!
//! Safe with several replicas: one statement claims due orders with `FOR UPDATE SKIP LOCKED` and
//! re-checks `status = 'pending_payment'` in the same `UPDATE`, so each order is cancelled (and
//! its 906 enqueued) exactly once, and a payment committing concurrently either wins (the order
//! is no longer pending) or waits for the sweep's transaction and then finds it cancelled.

use std::time::Duration;

use orderbus_bus::Outbox;
use orderbus_contracts as c;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::machine::{order_step, OrderEvent, OrderState, Outcome};
use crate::metrics as m;
use crate::store::{self, Source};

/// The state the sweep moves orders to, read from the transition table.
fn target() -> Option<OrderState> {
    match order_step(OrderState::PendingPayment, OrderEvent::SystemAutoCancel) {
        Outcome::Applied { to, .. } => Some(to),
        Outcome::NotApplied { .. } => None,
    }
}

/// One sweep: cancels up to `batch` due orders in one transaction. Returns the cancelled codes
/// (top-level orders; their children are cancelled with them).
pub async fn sweep_once(
    pool: &PgPool,
    deadline: Duration,
    batch: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let Some(to) = target() else {
        return Ok(Vec::new());
    };
    let mut tx = pool.begin().await?;
    let pending = OrderState::PendingPayment.as_str();
    let rows = store::auto_cancel::cancel_due(
        &mut tx,
        pending,
        to.as_str(),
        deadline.as_secs_f64(),
        batch,
    )
    .await?;
    let source = Source::auto_cancel();
    let mut cancelled = Vec::with_capacity(rows.len());
    for row in rows {
        let code = row.order_code;
        let mut codes = vec![code];
        if row.is_split_parent {
            let children =
                store::auto_cancel::cancel_pending_children(&mut tx, code, pending, to.as_str())
                    .await?;
            codes.extend(children);
        }
        for c_code in codes {
            store::record(
                &mut tx,
                store::Entry {
                    order_code: c_code,
                    subject: "order".into(),
                    source: &source,
                    event: OrderEvent::SystemAutoCancel.as_str(),
                    applied: true,
                    reason: None,
                    before: Some(OrderState::PendingPayment.as_str()),
                    after: Some(to.as_str()),
                    detail: json!({ "deadline_secs": deadline.as_secs() }),
                },
            )
            .await?;
            Outbox::new()
                .send(
                    &mut tx,
                    &c::OrderStatus {
                        order_code: c_code,
                        status: c::StorefrontOrderStatus::SystemAutoCancelled,
                    },
                )
                .await
                .map_err(|e| match e {
                    orderbus_bus::OutboxError::Db(e) => e,
                    other => sqlx::Error::Protocol(other.to_string()),
                })?;
            m::event("order", OrderEvent::SystemAutoCancel.as_str(), "applied");
        }
        cancelled.push(code);
    }
    tx.commit().await?;
    m::auto_cancelled(cancelled.len() as u64);
    Ok(cancelled)
}

/// The sweep as a runtime background task: sweeps every `interval` until shutdown. A failed
/// sweep ends the attempt with its error; the runtime logs it and restarts the task with
/// backoff.
pub async fn run(
    pool: PgPool,
    deadline: Duration,
    interval: Duration,
    batch: i64,
    shutdown: CancellationToken,
) -> Result<(), sqlx::Error> {
    loop {
        let codes = sweep_once(&pool, deadline, batch).await?;
        if !codes.is_empty() {
            tracing::info!(count = codes.len(), "auto-cancelled unpaid orders");
            // More may be due: go again without waiting.
            if codes.len() as i64 == batch {
                continue;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
