//! Bus consumers: shipments from `order.erpstatus` 600 (and the ERP's own 700), replacement
//! orders from `erp.createChangeOrder`.

use std::sync::Arc;

use orderbus_bus::{Delivery, HandlerError, MessageHandler, Subscription};
use orderbus_contracts as c;
use orderbus_sweettracker::client::normalize_invoice_number;
use sqlx::PgConnection;

use crate::metrics as m;
use crate::store::{self, NewShipment};
use crate::Shared;

pub fn subscriptions(shared: Arc<Shared>) -> Vec<Subscription> {
    vec![
        Subscription::to::<c::ErpOrderStatusUpdate, _>(OnErpStatus(shared.clone())),
        Subscription::to::<c::ErpChangeOrderCreated, _>(OnChangeOrder),
    ]
}

/// `order.erpstatus`: 600 records the shipment (OS02, or OS30 for an exchange's replacement
/// order); 700 closes the order's shipping shipments (no more daily registrations). Other
/// statuses are not tracking's business.
pub struct OnErpStatus(pub Arc<Shared>);

impl MessageHandler<c::ErpOrderStatusUpdate> for OnErpStatus {
    async fn handle(
        &self,
        msg: c::ErpOrderStatusUpdate,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        match (msg.status, &msg.data) {
            (c::ErpOrderStatus::Shipped, Some(data)) => shipped(&self.0, conn, &msg, data, d).await,
            (c::ErpOrderStatus::Delivered, _) => {
                let n = store::erp_delivered(conn, msg.order_code).await?;
                if n > 0 {
                    tracing::info!(
                        order_code = msg.order_code,
                        shipments = n,
                        "ERP 700: shipments complete"
                    );
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

async fn shipped(
    shared: &Shared,
    conn: &mut PgConnection,
    msg: &c::ErpOrderStatusUpdate,
    data: &c::ExpressData,
    d: &Delivery,
) -> Result<(), HandlerError> {
    let normalised = normalize_invoice_number(&data.express_number);
    if normalised.is_empty() {
        return Err(HandlerError::park(format!(
            "{}: data.express_number {:?} has no characters besides spaces and '-'",
            d.routing_key, data.express_number
        )));
    }
    let carrier_code = shared.carriers.code(data.express_id);
    if carrier_code.is_none() {
        m::unmapped_carrier(data.express_id);
        tracing::warn!(order_code = msg.order_code, express_id = data.express_id, "express_id has no SweetTracker carrier code in the table: the shipment is recorded but cannot be registered");
    }
    let redelivery = store::is_replacement(conn, msg.order_code).await?;
    let inserted = store::insert_shipment(
        conn,
        &NewShipment {
            order_code: msg.order_code,
            uid: msg.uid,
            redelivery,
            express_id: data.express_id,
            carrier_code,
            waybill: &data.express_number,
            waybill_normalised: &normalised,
            source: "erp",
            channel: &shared.channel,
        },
    )
    .await?;
    match inserted {
        Some(id) => {
            tracing::info!(order_code = msg.order_code, shipment = id, redelivery, waybill = %data.express_number, "shipment recorded")
        }
        None => {
            tracing::debug!(order_code = msg.order_code, waybill = %data.express_number, "shipment already known")
        }
    }
    Ok(())
}

/// `erp.createChangeOrder` code 200: `new_order_code` is an exchange's replacement order, so
/// its 600 is a re-delivery (OS30). A 600 that overtook this message is turned into one.
pub struct OnChangeOrder;

impl MessageHandler<c::ErpChangeOrderCreated> for OnChangeOrder {
    async fn handle(
        &self,
        msg: c::ErpChangeOrderCreated,
        _d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        if msg.code != c::ErpResultCode::Ok {
            return Ok(());
        }
        let data = &msg.data;
        let new = store::insert_replacement(
            conn,
            data.new_order_code,
            data.source_order_code,
            data.exchange_id,
        )
        .await?;
        if new {
            let moved = store::mark_redelivery(conn, data.new_order_code).await?;
            tracing::info!(
                new_order_code = data.new_order_code,
                exchange_id = data.exchange_id,
                shipments_moved = moved,
                "replacement order learned"
            );
        }
        Ok(())
    }
}
