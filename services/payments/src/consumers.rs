//! Consumed messages: `order.submit` (a payment to collect) and `order.orderStatus` 900/906
//! (the order is cancelled: stop sweeping; a payment that still arrives becomes
//! `refund_needed`). Each handler runs in the delivery's transaction (inbox row + change, then
//! ack).

use chrono::DateTime;
use orderbus_bus::{Delivery, HandlerError, MessageHandler, Subscription};
use orderbus_contracts as c;
use sqlx::PgConnection;

use crate::ids::OrderCode;
use crate::store;

/// One subscription per consumed key.
pub fn subscriptions() -> Vec<Subscription> {
    vec![
        Subscription::to::<c::OrderSubmit, _>(OnSubmit),
        Subscription::to::<c::OrderStatus, _>(OnOrderStatus),
    ]
}

/// `order.submit`: the order's payment record, `awaiting_method`.
///
/// A JIT split child (`parent_order_code` set) gets none: the customer pays the parent once for
/// the whole order (its `order_amount` is the total), and the storefront pays the children
/// when the parent's `order.payment` arrives. An order whose `payment_channel` is not `gateway`
/// gets none either: the shipping partner collects the money (Frotel's cash on delivery or bank
/// payment) and the fulfilment service reports it.
pub struct OnSubmit;

impl MessageHandler<c::OrderSubmit> for OnSubmit {
    async fn handle(
        &self,
        msg: c::OrderSubmit,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        if let Some(parent) = msg.parent_order_code {
            tracing::debug!(
                order_code = msg.order_code,
                parent,
                "JIT child: paid through its parent"
            );
            return Ok(());
        }
        if !msg.payment_channel.is_gateway() {
            tracing::debug!(
                order_code = msg.order_code,
                payment_channel = ?msg.payment_channel,
                "collected by the shipping partner, not through the gateway"
            );
            return Ok(());
        }
        if msg.order_code <= 0 || msg.uid <= 0 {
            return Err(HandlerError::park(format!(
                "{}: order_code and uid must be positive",
                d.routing_key
            )));
        }
        let Some(cents) = msg
            .order_amount
            .to_cents()
            .filter(|c| *c > 0 && msg.order_amount.is_amount())
        else {
            return Err(HandlerError::park(format!(
                "{}: order_amount {:?} is not a positive amount with at most two decimals",
                d.routing_key,
                msg.order_amount.as_str()
            )));
        };
        // Sinopac's Amount has at most 9 digits (hundredths): NT$9 999 999.99.
        if cents > 999_999_999 {
            return Err(HandlerError::park(format!(
                "{}: order_amount {} exceeds what Sinopac accepts (9 digits in hundredths)",
                d.routing_key,
                msg.order_amount.as_str()
            )));
        }
        let Some(created) = DateTime::from_timestamp(msg.create_time, 0) else {
            return Err(HandlerError::park(format!(
                "{}: create_time {} is out of range",
                d.routing_key, msg.create_time
            )));
        };
        let code = OrderCode(msg.order_code);
        if store::insert_payment(conn, code, msg.uid, cents, created).await? {
            tracing::info!(order_code = code.0, amount = %msg.order_amount, "payment awaiting the customer's method");
        }
        Ok(())
    }
}

/// `order.orderStatus`: 900 (user cancel) and 906 (system auto-cancel) close the payment.
pub struct OnOrderStatus;

impl MessageHandler<c::OrderStatus> for OnOrderStatus {
    async fn handle(
        &self,
        msg: c::OrderStatus,
        _d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        use c::StorefrontOrderStatus as S;
        if !matches!(msg.status, S::UserCancelled | S::SystemAutoCancelled) {
            return Ok(());
        }
        let code = OrderCode(msg.order_code);
        // A JIT child, or an order placed before this service existed: nothing to close.
        let Some(p) = store::lock_payment(conn, code).await? else {
            return Ok(());
        };
        let open = matches!(
            p.status.as_str(),
            "awaiting_method" | "awaiting_payment" | "expired" | "failed"
        );
        store::set_cancelled(conn, code, open).await?;
        if open {
            tracing::info!(
                order_code = code.0,
                status = msg.status.code(),
                "order cancelled: payment closed, no more sweeping"
            );
        } else {
            // Already paid: the storefront refuses the cancel of a paid order itself; keep the
            // record, note it for ops.
            tracing::warn!(order_code = code.0, payment_status = %p.status, "cancel for an order whose payment is already settled");
        }
        Ok(())
    }
}
