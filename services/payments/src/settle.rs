//! The one transition every source of truth goes through: the BackendURL push, the ReturnURL
//! redirect and the reconciliation sweep all hand the bank's verified answer to [`settle`].
//!
//! Race safety (several replicas, any order, at the same time):
//! 1. the payment row is locked (`SELECT … FOR UPDATE`): concurrent settlers of one order queue
//!    behind each other, and each sees what the previous one committed;
//! 2. the settlement row's primary key is the attempt: `INSERT … ON CONFLICT DO NOTHING`
//!    returns nothing for the second learner, which then writes nothing;
//! 3. a partial unique index allows one *published* settlement per order: even a bug in the
//!    code above could not commit a second `order.payment` (the transaction would fail).
//!
//! The outbox row is written in the same transaction as the settlement, so either both exist
//! or neither.

use chrono::{DateTime, Utc};
use orderbus_bus::Outbox;
use orderbus_contracts as c;
use serde_json::Value;
use sqlx::PgConnection;

use crate::ids::OrderCode;
use crate::metrics as m;
use crate::store::{self, NewSettlement};

/// How we learned about a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    BackendUrl,
    ReturnUrl,
    Sweep,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::BackendUrl => "backend_url",
            Via::ReturnUrl => "return_url",
            Via::Sweep => "sweep",
        }
    }
}

/// The bank's verified answer about one of our attempts (OrderPayQuery's `TSResultContent` or
/// an OrderQuery row).
#[derive(Debug, Clone)]
pub struct BankPayment {
    pub order_no: String,
    pub ts_no: String,
    /// The bank's amount in hundredths (`None` if it sent none: never paid).
    pub amount_cents: Option<i64>,
    /// The bank's PayDate, in UTC.
    pub paid_at: Option<DateTime<Utc>>,
    pub pay_token: Option<String>,
    /// The bank says the money was taken.
    pub succeeded: bool,
    /// The decrypted, Sign-checked answer, kept for ops.
    pub answer: Value,
}

/// What [`settle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Recorded; `published` = an `order.payment` was enqueued.
    Recorded {
        order_code: i64,
        outcome: &'static str,
        published: bool,
    },
    /// Someone else learned it first; nothing written.
    AlreadySettled { order_code: i64 },
    /// The OrderNo is not one of our attempts (the demo shop is shared by everyone).
    UnknownOrderNo,
}

impl Settled {
    pub fn order_code(&self) -> Option<i64> {
        match self {
            Settled::Recorded { order_code, .. } | Settled::AlreadySettled { order_code } => {
                Some(*order_code)
            }
            Settled::UnknownOrderNo => None,
        }
    }
}

/// Errors of [`settle`]: the database (retry) or the outbox.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] orderbus_bus::OutboxError),
}

/// Applies the bank's answer inside the caller's transaction.
pub async fn settle(
    conn: &mut PgConnection,
    via: Via,
    bank: &BankPayment,
    now: DateTime<Utc>,
) -> Result<Settled, SettleError> {
    let Some(attempt) = store::attempt_by_order_no(conn, &bank.order_no).await? else {
        return Ok(Settled::UnknownOrderNo);
    };
    let code = OrderCode(attempt.order_code);
    // The lock that serialises every settler of this order (replicas included).
    let Some(payment) = store::lock_payment(conn, code).await? else {
        return Ok(Settled::UnknownOrderNo);
    };
    let (outcome, publish, status, attempt_state): (&'static str, bool, Option<&str>, &str) =
        if !bank.succeeded {
            // The bank says this attempt failed (e.g. card declined): the customer may pick
            // another method.
            let status = (payment.status == "awaiting_payment").then_some("failed");
            ("failed", false, status, "failed")
        } else if bank.amount_cents != Some(attempt.amount_cents) {
            // Never paid on a mismatch: the order owes `attempt.amount_cents`.
            ("amount_mismatch", false, Some("failed"), "failed")
        } else {
            match payment.status.as_str() {
                "paid" | "refund_needed" => ("duplicate_payment", false, None, "paid"),
                "cancelled" => ("refund_needed", true, Some("refund_needed"), "paid"),
                _ => ("paid", true, Some("paid"), "paid"),
            }
        };
    let lag_ms = bank
        .paid_at
        .map(|paid| (now - paid).num_milliseconds().max(0));
    let inserted = store::insert_settlement(
        conn,
        &NewSettlement {
            attempt_id: attempt.id,
            order_code: code,
            via: via.as_str(),
            outcome,
            published: publish,
            ts_no: &bank.ts_no,
            pay_token: bank.pay_token.as_deref(),
            bank_amount_cents: bank.amount_cents,
            bank_paid_at: bank.paid_at,
            lag_ms,
            bank_answer: &bank.answer,
        },
    )
    .await?;
    if !inserted {
        return Ok(Settled::AlreadySettled { order_code: code.0 });
    }
    store::set_attempt_state(conn, attempt.id, attempt_state).await?;
    if publish {
        let message = c::OrderPayment {
            uid: payment.uid,
            order_code: code.0,
            amount: c::Decimal::from_cents(attempt.amount_cents),
            pay_type: if attempt.pay_type == "A" {
                c::PayType::Atm
            } else {
                c::PayType::Card
            },
            payment_gateway: "sinopac_qpay".to_owned(),
            gateway_trade_no: bank.ts_no.clone(),
            paid_time: bank.paid_at.unwrap_or(now).timestamp(),
        };
        let id = Outbox::new().send(&mut *conn, &message).await?;
        store::set_settlement_message(conn, attempt.id, id).await?;
    }
    if let Some(status) = status {
        let settled = publish.then_some((via.as_str(), now));
        store::set_status(conn, code, status, settled).await?;
    }
    match outcome {
        "amount_mismatch" => {
            let detail = format!(
                "bank reported {:?} hundredths for {}, the order owes {}",
                bank.amount_cents, bank.order_no, attempt.amount_cents
            );
            tracing::warn!(order_code = code.0, order_no = %bank.order_no, bank_amount = ?bank.amount_cents, owed = attempt.amount_cents, "payment NOT applied: amount mismatch (flagged for ops)");
            store::set_flag(conn, code, "amount_mismatch", &detail).await?;
        }
        "duplicate_payment" => {
            let detail = format!(
                "{} paid after the order was already settled: refund it",
                bank.order_no
            );
            tracing::warn!(order_code = code.0, order_no = %bank.order_no, "second payment for a settled order (flagged for ops: refund)");
            store::set_flag(conn, code, "duplicate_payment", &detail).await?;
        }
        "refund_needed" => {
            tracing::warn!(order_code = code.0, order_no = %bank.order_no, "payment arrived after the order was cancelled: refund_needed (order.payment published)");
        }
        "paid" => {
            tracing::info!(order_code = code.0, order_no = %bank.order_no, via = via.as_str(), lag_ms = ?lag_ms, "payment settled");
        }
        _ => {
            tracing::info!(order_code = code.0, order_no = %bank.order_no, "the bank reports the attempt failed");
        }
    }
    m::settled(via.as_str(), outcome);
    if let Some(ms) = lag_ms {
        m::settlement_lag(via.as_str(), ms as f64 / 1000.0);
    }
    Ok(Settled::Recorded {
        order_code: code.0,
        outcome,
        published: publish,
    })
}
