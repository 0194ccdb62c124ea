//! `order.submit` (orders of Frotel warehouses) and `order.payment` (paid-to-seller orders may
//! now be registered).

use std::sync::Arc;

use orderbus_bus::{Delivery, HandlerError, MessageHandler, Subscription};
use orderbus_contracts::{OrderPayment, OrderSubmit};
use orderbus_frotel::BuyType;
use sqlx::PgConnection;

use crate::mapping::{buy_type, Kind, Mapping};
use crate::store::{self, NewOrder};
use crate::{metrics, PARTNER};

pub fn subscriptions(mapping: Arc<Mapping>) -> Vec<Subscription> {
    vec![
        Subscription::to::<OrderSubmit, _>(OnSubmit(mapping))
            .prefetch(50)
            .describe("fulfilment: order.submit of Frotel warehouses → Frotel registration"),
        Subscription::to::<OrderPayment, _>(OnPayment)
            .prefetch(50)
            .describe("fulfilment: order.payment releases paid-to-seller (buy_type 3) orders"),
    ]
}

struct OnSubmit(Arc<Mapping>);

impl MessageHandler<OrderSubmit> for OnSubmit {
    async fn handle(
        &self,
        msg: OrderSubmit,
        _delivery: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        let mapping = &self.0;
        let Some(warehouse) = mapping.frotel_warehouse(&msg) else {
            return Ok(()); // not Frotel's
        };
        let buy = buy_type(msg.payment_channel);
        let submit = serde_json::to_value(&msg)
            .map_err(|e| HandlerError::park("order.submit cannot be stored").with_source(e))?;
        let built = mapping.build(&msg, warehouse);
        let (kind, state, error) = match &built {
            Ok(request) => {
                let state = if buy == BuyType::PaidToSeller {
                    let mut codes = vec![msg.order_code];
                    codes.extend(msg.parent_order_code);
                    if store::payment_seen(conn, &codes).await? {
                        "ready"
                    } else {
                        "awaiting_payment"
                    }
                } else {
                    "ready"
                };
                (request.kind(), state, None)
            }
            Err(invalid) => (Kind::Physical, "invalid", Some(invalid.to_string())),
        };
        let inserted = store::insert_order(
            conn,
            &NewOrder {
                order_code: msg.order_code,
                uid: msg.uid,
                parent_order_code: msg.parent_order_code,
                warehouse_id: warehouse,
                kind: kind.as_str(),
                buy_type: buy.code() as i32,
                state,
                submit: &submit,
                order_amount: msg.order_amount.as_str(),
                last_error: error.as_deref(),
            },
        )
        .await?;
        if inserted {
            metrics::accepted(state);
            match &error {
                Some(e) => {
                    tracing::warn!(order_code = msg.order_code, partner = PARTNER, error = %e,
                    "Frotel order refused before sending")
                }
                None => tracing::info!(
                    order_code = msg.order_code,
                    warehouse,
                    kind = kind.as_str(),
                    buy_type = buy.code(),
                    state,
                    "Frotel order accepted"
                ),
            }
        }
        Ok(())
    }
}

struct OnPayment;

impl MessageHandler<OrderPayment> for OnPayment {
    async fn handle(
        &self,
        msg: OrderPayment,
        _delivery: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        if msg.payment_gateway == PARTNER {
            return Ok(()); // our own Frotel bank payments
        }
        store::record_payment_seen(conn, msg.order_code).await?;
        let released = store::release_paid(conn, msg.order_code).await?;
        if released > 0 {
            tracing::info!(
                order_code = msg.order_code,
                released,
                "paid: Frotel registration of paid-to-seller order(s) may start"
            );
        }
        Ok(())
    }
}
