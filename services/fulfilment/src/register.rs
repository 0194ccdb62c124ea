//! The registration worker: due orders → the right `registerOrder*`. Registration is not
//! idempotent at Frotel and there is no lookup by `shop_barcode`, so an order is sent at most
//! once automatically: only "nothing reached Frotel" is retried; an ambiguous failure becomes
//! `outcome_unknown` and waits for a person (`/fulfilment/ops/attention`).

use std::time::Duration;

use futures::StreamExt;
use orderbus_contracts::OrderSubmit;
use orderbus_frotel::{BuyType, Error as FrotelError, RegisteredOrder};
use orderbus_runtime::CancellationToken;
use serde_json::json;

use crate::mapping::FrotelRequest;
use crate::store::{self, OrderRow};
use crate::{metrics, App, PARTNER};

/// What an operator checks for an order whose registration outcome is unknown.
pub const CHECK_UNKNOWN: &str = "registerOrder reached a Frotel mirror but no usable answer came back: \
look for an order with shop_barcode = this order code in the Frotel panel (fpanel.ir). If it exists, \
POST /fulfilment/ops/orders/{code}/resolve {\"factor_id\":\"<20 digits>\"}; if it does not, POST \
{\"not_registered\":true} to send it again.";

/// Runs until `shutdown`.
pub async fn run(app: App, shutdown: CancellationToken) -> Result<(), sqlx::Error> {
    let interval = app.settings().register_interval;
    loop {
        let stale =
            store::expire_sending(&app.pool, app.settings().stale_sending.as_secs_f64()).await?;
        for code in stale {
            metrics::registration("outcome_unknown");
            tracing::error!(
                order_code = code,
                "registration was in flight when a process stopped: outcome unknown"
            );
        }
        let due = store::claim_registrations(&app.pool, 16).await?;
        let busy = !due.is_empty();
        futures::stream::iter(due)
            .for_each_concurrent(4, |row| {
                let app = app.clone();
                async move {
                    let code = row.order_code;
                    if let Err(e) = register_one(&app, row).await {
                        // The row stays `sending`; expire_sending turns it into outcome_unknown.
                        tracing::error!(order_code = code, error = %e, "could not record a registration result");
                    }
                }
            })
            .await;
        if !busy {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        } else if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

fn backoff(base: Duration, cap: Duration, attempt: i32) -> f64 {
    let exp = 2f64.powi((attempt - 1).clamp(0, 20));
    (base.as_secs_f64() * exp).min(cap.as_secs_f64())
}

async fn register_one(app: &App, row: OrderRow) -> Result<(), sqlx::Error> {
    let code = row.order_code;
    let request = serde_json::from_value::<OrderSubmit>(row.submit.clone())
        .map_err(|e| crate::mapping::Invalid {
            field: "order.submit".into(),
            reason: e.to_string(),
        })
        .and_then(|submit| app.mapping().build(&submit, row.warehouse_id));
    let request = match request {
        Ok(r) => r,
        Err(invalid) => {
            metrics::registration("invalid");
            store::mark_stuck(&app.pool, code, "invalid", &invalid.to_string()).await?;
            return Ok(());
        }
    };
    let code_text = code.to_string();
    let client = app.client();
    let (operation, result) = match &request {
        FrotelRequest::Physical(o) => (
            "registerOrder",
            app.calls
                .record(PARTNER, "registerOrder", Some(&code_text), || {
                    client.register_order(o)
                })
                .await,
        ),
        FrotelRequest::Virtual(o) => (
            "registerOrderVirtual",
            app.calls
                .record(PARTNER, "registerOrderVirtual", Some(&code_text), || {
                    client.register_order_virtual(o)
                })
                .await,
        ),
        FrotelRequest::Service(o) => (
            "registerOrderService",
            app.calls
                .record(PARTNER, "registerOrderService", Some(&code_text), || {
                    client.register_order_service(o)
                })
                .await,
        ),
    };
    app.report_mirrors();
    match result {
        Ok(registered) => record_registered(app, &row, &registered).await,
        Err(FrotelError::Transport { detail, .. }) | Err(FrotelError::Config(detail)) => {
            metrics::registration("retry");
            let delay = backoff(
                app.settings().register_retry_base,
                app.settings().register_retry_cap,
                row.attempts,
            );
            tracing::warn!(order_code = code, operation, %detail, delay_secs = delay,
                "no Frotel mirror reached; registration retried later");
            store::retry_registration(
                &app.pool,
                code,
                delay,
                &format!("nothing reached Frotel: {detail}"),
            )
            .await
        }
        Err(FrotelError::Validation { field, reason }) => {
            metrics::registration("invalid");
            store::mark_stuck(&app.pool, code, "invalid", &format!("{field}: {reason}")).await
        }
        Err(FrotelError::Business { code: c, message }) => {
            metrics::registration("refused");
            tracing::warn!(order_code = code, operation, frotel_code = c, %message, "Frotel refused the order");
            store::mark_stuck(
                &app.pool,
                code,
                "refused",
                &format!("Frotel refused (code {c}): {message}"),
            )
            .await
        }
        Err(e @ (FrotelError::OutcomeUnknown { .. } | FrotelError::Protocol { .. })) => {
            metrics::registration("outcome_unknown");
            tracing::error!(order_code = code, operation, error = %e, "registration outcome unknown; not sent again");
            store::mark_stuck(
                &app.pool,
                code,
                "outcome_unknown",
                &format!("{e}. {}", CHECK_UNKNOWN.replace("{code}", &code_text)),
            )
            .await
        }
    }
}

async fn record_registered(
    app: &App,
    row: &OrderRow,
    registered: &RegisteredOrder,
) -> Result<(), sqlx::Error> {
    let banks = json!(registered
        .banks
        .iter()
        .map(|b| json!({"id": b.id, "name": b.name, "icon": b.icon}))
        .collect::<Vec<_>>());
    let online = row.buy_type == BuyType::OnlineCash.code() as i32;
    let deadline = online.then(|| app.settings().payment_deadline.as_secs_f64());
    let mut tx = app.pool.begin().await?;
    store::mark_registered(
        &mut tx,
        row.order_code,
        registered.factor.as_str(),
        registered.total,
        &banks,
        deadline,
    )
    .await?;
    tx.commit().await?;
    metrics::registration("registered");
    tracing::info!(
        order_code = row.order_code,
        factor = registered.factor.as_str(),
        total = registered.total,
        banks = registered.banks.len(),
        "registered at Frotel"
    );
    Ok(())
}
