//! Frotel's bank payment (`buy_type` 2): the bank form (`pay`, then `continuePay` for a retry),
//! the bank's callback through the webhook ingress, and the checkPay worker. checkPay is always
//! called for a callback (without it the bank reverses the payment) and retried until it
//! answers; `verify` 1 publishes `order.payment` once, through the outbox.

use std::time::Duration;

use orderbus_bus::Outbox;
use orderbus_contracts::{Decimal, OrderPayment, PayType};
use orderbus_frotel::{CallbackParams, DownloadLinks, Error as FrotelError, FactorId};
use orderbus_ingress::effect::{Applied, EffectError};
use orderbus_ingress::request::InboundRequest;
use orderbus_ingress::verify::{Verdict, Verified, Verifier, VerifyError, VerifyFuture};
use orderbus_runtime::CancellationToken;
use sqlx::PgPool;

use crate::store::{self, CallbackRow, LinkRow};
use crate::{metrics, App, PARTNER};

/// The callback route (the bank redirects the customer's browser there with `_i` and `sb`).
pub const CALLBACK_ROUTE: &str = "/webhooks/frotel/bank/{order_code}";

/// The callback URL given to `pay` / `continuePay` for an order.
pub fn callback_url(base: &str, order_code: i64) -> String {
    format!(
        "{}/webhooks/frotel/bank/{order_code}",
        base.trim_end_matches('/')
    )
}

/// `_i` and `sb` from the query (a redirect) or else a form body (a bank that posts back).
pub fn callback_params(request: &InboundRequest) -> Result<CallbackParams, String> {
    let from_query = request
        .query
        .as_deref()
        .map(CallbackParams::from_query)
        .transpose();
    match from_query {
        Ok(Some(p)) => Ok(p),
        _ => {
            let body = std::str::from_utf8(&request.body).map_err(|_| "body is not UTF-8")?;
            CallbackParams::from_query(body).map_err(|e| e.to_string())
        }
    }
}

/// The bank callback is unsigned (Frotel signs nothing; checkPay is the verification). The
/// dedupe key is the order and the payment id, so a repeated redirect is applied once.
pub struct CallbackVerifier;

impl Verifier for CallbackVerifier {
    fn scheme(&self) -> &'static str {
        "none"
    }

    fn verify<'a>(&'a self, request: &'a InboundRequest, _pool: &'a PgPool) -> VerifyFuture<'a> {
        Box::pin(async move {
            let order = request
                .path_params
                .get("order_code")
                .cloned()
                .unwrap_or_default();
            let params = callback_params(request)
                .map_err(|e| VerifyError::new(Verdict::Malformed, format!("callback: {e}")))?;
            Ok(Verified {
                idempotency_key: Some(format!("{order}:{}", params.payment_id)),
                order: Some(order),
                unsigned: true,
            })
        })
    }
}

/// The ingress effect: record the callback for checkPay, in the ingress' transaction.
pub async fn apply_callback(
    tx: &mut sqlx::PgConnection,
    request: &InboundRequest,
) -> Result<Applied, EffectError> {
    let code: i64 = request
        .path_params
        .get("order_code")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| EffectError::bad_request("order code in the path is not a number"))?;
    let params = callback_params(request).map_err(EffectError::bad_request)?;
    let order = store::lock_order(tx, code)
        .await
        .map_err(EffectError::retry)?;
    let Some(order) = order else {
        return Ok(Applied::refused(
            "unknown_order",
            "no Frotel order with this code",
        ));
    };
    if order.buy_type != 2 || order.factor_id.is_none() {
        return Ok(Applied::refused(
            "not_payable",
            "this order is not paid through Frotel's bank",
        ));
    }
    let fresh = store::insert_callback(tx, code, &params.payment_id, &params.reference)
        .await
        .map_err(EffectError::retry)?;
    tracing::info!(
        order_code = code,
        payment_id = %params.payment_id,
        fresh,
        "Frotel bank callback recorded; checkPay follows"
    );
    Ok(Applied::accepted().for_order(code.to_string()))
}

fn backoff(base: Duration, cap: Duration, attempt: i32) -> f64 {
    let exp = 2f64.powi((attempt - 1).clamp(0, 20));
    (base.as_secs_f64() * exp).min(cap.as_secs_f64())
}

/// The checkPay worker (and the payment escalation), until `shutdown`.
pub async fn run_checks(app: App, shutdown: CancellationToken) -> Result<(), sqlx::Error> {
    let interval = app.settings().check_interval;
    loop {
        for code in store::escalate_payments(&app.pool).await? {
            metrics::escalated("payment_deadline");
            tracing::error!(
                order_code = code,
                "Frotel bank payment not verified before its deadline: escalated"
            );
        }
        let due = store::claim_callbacks(&app.pool, 20, 60.0).await?;
        let busy = !due.is_empty();
        for row in due {
            check_one(&app, row).await?;
        }
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

async fn check_one(app: &App, cb: CallbackRow) -> Result<(), sqlx::Error> {
    let code = cb.order_code;
    let Some(order) = store::get_order(&app.pool, code).await? else {
        return Ok(());
    };
    let factor = match order.factor_id.as_deref().map(FactorId::parse) {
        Some(Ok(f)) => f,
        _ => {
            let mut tx = app.pool.begin().await?;
            store::callback_done(
                &mut tx,
                code,
                &cb.payment_id,
                "refused",
                "order has no valid factor id",
                None,
            )
            .await?;
            return tx.commit().await;
        }
    };
    let params = CallbackParams {
        payment_id: cb.payment_id.clone(),
        reference: cb.reference.clone(),
    };
    let code_text = code.to_string();
    let client = app.client();
    let result = app
        .calls
        .record(PARTNER, "checkPay", Some(&code_text), || {
            client.check_pay(&factor, &params)
        })
        .await;
    app.report_mirrors();
    let s = app.settings();
    match result {
        Ok(check) if check.verified => {
            let mut tx = app.pool.begin().await?;
            store::callback_done(
                &mut tx,
                code,
                &cb.payment_id,
                "verified",
                &check.message,
                check.tracking_code.as_deref(),
            )
            .await?;
            let first = store::mark_paid(&mut tx, code, check.tracking_code.as_deref()).await?;
            if first {
                if let Some(DownloadLinks::Ready(links)) = &check.links {
                    for (i, l) in links.iter().enumerate() {
                        let row = LinkRow {
                            name: l.name.clone(),
                            size: l.size.clone(),
                            mime: l.mime.clone(),
                            count: l.count.clone(),
                            expire: l.expire.clone(),
                            link: l.link.clone(),
                        };
                        store::insert_link(&mut tx, code, i as i32, &row).await?;
                    }
                }
                let amount =
                    Decimal::parse(&order.order_amount).unwrap_or_else(|| Decimal::from_cents(0));
                let payment = OrderPayment {
                    uid: order.uid,
                    order_code: code,
                    amount,
                    pay_type: PayType::BankGateway,
                    payment_gateway: PARTNER.into(),
                    gateway_trade_no: factor.as_str().to_owned(),
                    paid_time: chrono::Utc::now().timestamp(),
                };
                Outbox::new()
                    .send(&mut tx, &payment)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(format!("outbox: {e}")))?;
            }
            tx.commit().await?;
            metrics::payment(if first { "verified" } else { "verified_again" });
            tracing::info!(
                order_code = code,
                first,
                links = check.links.is_some(),
                "Frotel payment verified"
            );
            Ok(())
        }
        Ok(check) => {
            let mut tx = app.pool.begin().await?;
            store::callback_done(
                &mut tx,
                code,
                &cb.payment_id,
                "failed",
                &check.message,
                None,
            )
            .await?;
            store::mark_payment_failed(&mut tx, code).await?;
            tx.commit().await?;
            metrics::payment("failed");
            tracing::info!(order_code = code, message = %check.message,
                "Frotel payment not verified (verify 0): the customer may continue");
            Ok(())
        }
        Err(FrotelError::Business { code: c, message }) => {
            let mut tx = app.pool.begin().await?;
            store::callback_done(
                &mut tx,
                code,
                &cb.payment_id,
                "refused",
                &format!("Frotel refused checkPay (code {c}): {message}"),
                None,
            )
            .await?;
            tx.commit().await?;
            metrics::payment("refused");
            Ok(())
        }
        Err(e) => {
            // Timeouts, 5xx, garbage, outcome unknown: checkPay is the verification step and
            // repeating it is what the bank expects.
            let delay = backoff(s.check_retry_base, s.check_retry_cap, cb.attempts);
            let escalated = store::callback_retry(
                &app.pool,
                code,
                &cb.payment_id,
                delay,
                &e.to_string(),
                s.check_escalate_after.as_secs_f64(),
            )
            .await?;
            if escalated && cb.escalated_at.is_none() {
                metrics::escalated("check_pay");
            }
            metrics::payment("check_retry");
            tracing::warn!(order_code = code, error = %e, delay_secs = delay, escalated,
                "checkPay did not answer; retried");
            Ok(())
        }
    }
}
