//! One typed handler per consumed routing key. Each runs inside the delivery chain's
//! transaction (inbox row + state change + timeline + outbox commit together, then ack).
//!
//! Hostile input:
//! - undecodable body, wrong types, unknown status codes: the bus's typed adapter parks the
//!   message with the decoder's reason (which names the field);
//! - an unknown order / exchange / return (by our id): parked with the reason `unknown ...`;
//! - an unknown *ERP* exchange/return id in `erp.updateChangeRefundOrderStatus`: retried through
//!   the delay tiers first (the ERP's `erp.createChangeOrder`/`erp.createRefundOrder` that tells
//!   us that id travels on another queue and may not be applied yet), parked after the last tier;
//! - uid / order mismatches: parked;
//! - late, duplicate, out-of-order events: acked, recorded on the timeline as not applied, counted.

use orderbus_bus::{Delivery, HandlerError, MessageHandler, Subscription};
use orderbus_contracts as c;
use serde_json::json;
use sqlx::PgConnection;

use crate::machine::{ExchangeEvent, OrderEvent, OrderState, Outcome, ReturnEvent};
use crate::metrics as m;
use crate::store::{self, body_detail, Address, OrderHead, Source};

fn park(routing_key: &str, class: &'static str, reason: String) -> HandlerError {
    m::refused_message(routing_key, class);
    HandlerError::Park(reason)
}

async fn order_or_park(
    conn: &mut PgConnection,
    d: &Delivery,
    code: i64,
) -> Result<OrderHead, HandlerError> {
    store::lock_order(conn, code).await?.ok_or_else(|| {
        park(
            &d.routing_key,
            "unknown_order",
            format!("unknown order {code}"),
        )
    })
}

fn check_uid(d: &Delivery, order: &OrderHead, uid: i64) -> Result<(), HandlerError> {
    if order.uid != uid {
        return Err(park(
            &d.routing_key,
            "uid_mismatch",
            format!(
                "uid {uid} does not own order {} (uid {})",
                order.order_code, order.uid
            ),
        ));
    }
    Ok(())
}

fn src(d: &Delivery) -> Source {
    Source::bus(&d.routing_key, &d.message_id)
}

/// One subscription per consumed message type (its queue is named after the type's key).
pub fn subscriptions() -> Vec<Subscription> {
    vec![
        Subscription::to::<c::OrderPayment, _>(OnPayment),
        Subscription::to::<c::ErpOrderStatusUpdate, _>(OnErpStatus),
        Subscription::to::<c::ErpChangeOrderCreated, _>(OnExchangeCreated),
        Subscription::to::<c::ErpRefundOrderCreated, _>(OnReturnCreated),
        Subscription::to::<c::AfterSaleStatusUpdate, _>(OnAfterSaleStatus),
        Subscription::to::<c::ErpAddressChange, _>(OnErpAddress),
        Subscription::to::<c::InvoicePdfUrl, _>(OnInvoice),
        Subscription::to::<c::ExpressInfoUpdate, _>(OnExpressInfo),
    ]
}

// ---------------------------------------------------------------------------------------------

/// `order.payment`: pays the order (and, for a JIT parent, its children).
pub struct OnPayment;

impl MessageHandler<c::OrderPayment> for OnPayment {
    async fn handle(
        &self,
        msg: c::OrderPayment,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let order = order_or_park(conn, d, msg.order_code).await?;
            check_uid(d, &order, msg.uid)?;
            let source = src(d);
            let mut detail = body_detail(&d.body);
            let amount_matches = msg.amount.to_cents().is_some()
                && msg.amount.to_cents()
                    == c::Decimal::parse(&order.order_amount).and_then(|a| a.to_cents());
            if let Some(obj) = detail.as_object_mut() {
                obj.insert("amount_matches_order".into(), json!(amount_matches));
            }
            let out = store::offer_order_event(
                conn,
                &order,
                OrderEvent::Payment,
                &source,
                detail.clone(),
            )
            .await?;
            // The payment's data is kept even when the status is already past `paid` (the ERP
            // consumes order.payment too and its 100 may overtake ours): data is not status.
            let keep_data = match out {
                Outcome::Applied { .. } => true,
                Outcome::NotApplied { current, .. } => !is_cancelled(current),
            };
            if keep_data {
                sqlx::query(
                    "UPDATE orders SET paid_amount = CASE WHEN $8 THEN COALESCE(paid_amount, 0) + $2::numeric ELSE $2::numeric END, \
                     pay_type = $3, payment_gateway = $4, gateway_trade_no = $5, paid_at = to_timestamp($6) \
                     WHERE order_code = $1 AND (paid_at IS NULL OR $7)",
                )
                .bind(order.order_code)
                .bind(msg.amount.as_str())
                .bind(msg.pay_type.code() as i32)
                .bind(&msg.payment_gateway)
                .bind(&msg.gateway_trade_no)
                .bind(msg.paid_time as f64)
                .bind(matches!(out, Outcome::Applied { .. }))
                // A pre-sale balance adds to the deposit.
                .bind(matches!(out, Outcome::Applied { from: OrderState::BalanceDue, .. }))
                .execute(&mut *conn)
                .await?;
            }
            match out {
                Outcome::Applied { .. } => {
                    if !amount_matches {
                        tracing::warn!(order_code = order.order_code, amount = %msg.amount, expected = %order.order_amount, "payment amount differs from the order amount");
                    }
                    if order.is_split_parent {
                        for child in store::lock_children(conn, order.order_code).await? {
                            store::offer_order_event(
                                conn,
                                &child,
                                OrderEvent::Payment,
                                &source,
                                json!({ "paid_via_parent": order.order_code }),
                            )
                            .await?;
                        }
                    }
                }
                Outcome::NotApplied { current, .. } if is_cancelled(current) => {
                    // Money arrived for a closed order: it must be refunded by ops.
                    m::payment_for_closed_order();
                    tracing::warn!(order_code = order.order_code, status = %current, "payment for a cancelled order");
                }
                Outcome::NotApplied { .. } => {}
            }
            Ok(())
        }
        .await
    }
}

fn is_cancelled(s: OrderState) -> bool {
    matches!(
        s,
        OrderState::CancelledByUser
            | OrderState::CancelledBySystem
            | OrderState::CancelledByCs
            | OrderState::CancelledByErp
    )
}

/// `order.erpstatus`: ERP progress 100/200/600/700, cancels 901/906, pre-sale notice 40.
pub struct OnErpStatus;

impl MessageHandler<c::ErpOrderStatusUpdate> for OnErpStatus {
    async fn handle(
        &self,
        msg: c::ErpOrderStatusUpdate,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let order = order_or_park(conn, d, msg.order_code).await?;
            check_uid(d, &order, msg.uid)?;
            use c::ErpOrderStatus as C;
            let event = match msg.status {
                C::Audited => OrderEvent::ErpAudited,
                C::Stocked => OrderEvent::ErpStocked,
                C::Shipped => OrderEvent::ErpShipped,
                C::Delivered => OrderEvent::ErpDelivered,
                C::CsCancelled => OrderEvent::ErpCsCancel,
                C::ErpAutoCancelled => OrderEvent::ErpAutoCancel,
                C::PresaleBalanceDue => OrderEvent::ErpPresaleBalanceDue,
            };
            // The waybill is data, not status: a late 600 (after 700) still records it.
            if let (C::Shipped, Some(data)) = (msg.status, &msg.data) {
                let kind = if order.kind == "exchange" {
                    "exchange_redelivery"
                } else {
                    "delivery"
                };
                sqlx::query(
                    "INSERT INTO shipments (order_code, kind, express_id, express_number) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(order.order_code)
                .bind(kind)
                .bind(data.express_id)
                .bind(&data.express_number)
                .execute(&mut *conn)
                .await?;
            }
            store::offer_order_event(conn, &order, event, &src(d), body_detail(&d.body)).await?;
            Ok(())
        }
        .await
    }
}

/// `erp.createChangeOrder`: the ERP accepted (200) or rejected (500 / 91) our exchange.
pub struct OnExchangeCreated;

impl MessageHandler<c::ErpChangeOrderCreated> for OnExchangeCreated {
    async fn handle(
        &self,
        msg: c::ErpChangeOrderCreated,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let data = &msg.data;
            let x = store::lock_exchange(conn, data.id, false)
                .await?
                .ok_or_else(|| {
                    park(
                        &d.routing_key,
                        "unknown_exchange",
                        format!("unknown exchange {}", data.id),
                    )
                })?;
            if data.source_order_code != x.order_code {
                return Err(park(
                    &d.routing_key,
                    "order_mismatch",
                    format!(
                        "exchange {} belongs to order {}, not {}",
                        x.id, x.order_code, data.source_order_code
                    ),
                ));
            }
            let event = match msg.code {
                c::ErpResultCode::Rejected => ExchangeEvent::Erp91Rejected,
                c::ErpResultCode::Ok => ExchangeEvent::from_code(data.exchange_status),
            };
            if x.erp_exchange_id.is_none() {
                sqlx::query(
                    "UPDATE exchange_orders SET erp_exchange_id = $2, erp_returned_id = $3, new_order_code = $4 WHERE id = $1",
                )
                .bind(x.id)
                .bind(data.exchange_id)
                .bind(data.returned_id)
                .bind((data.new_order_code > 0).then_some(data.new_order_code))
                .execute(&mut *conn)
                .await?;
            }
            let out =
                store::offer_exchange_event(conn, &x, event, &src(d), body_detail(&d.body)).await?;
            if msg.code == c::ErpResultCode::Ok && matches!(out, Outcome::Applied { .. }) {
                create_replacement_order(conn, &x, data.new_order_code, &src(d)).await?;
            }
            Ok(())
        }
        .await
    }
}

/// The ERP's replacement order of an exchange becomes an order here too, so its
/// `order.erpstatus` 600/700 are tracked (re-shipping = `OS30`).
async fn create_replacement_order(
    conn: &mut PgConnection,
    x: &store::ExchangeHead,
    new_order_code: i64,
    source: &Source,
) -> Result<(), HandlerError> {
    if new_order_code <= 0 || store::lock_order(conn, new_order_code).await?.is_some() {
        return Ok(());
    }
    let address = Address {
        user_name: x
            .address
            .get("user_name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        mobile: x
            .address
            .get("mobile")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        phone: String::new(),
        province: x
            .address
            .get("province")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        city: x
            .address
            .get("city")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        district: x
            .address
            .get("district")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        address: x
            .address
            .get("address")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        zip_code: x
            .address
            .get("zip_code")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        area_code: x
            .address
            .get("area_code")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        email: x
            .address
            .get("email")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        address_id: 0,
    };
    // Nothing to pay: the replacement starts as paid.
    sqlx::query(
        "INSERT INTO orders (order_code, uid, kind, status, order_amount, shipping_cost, address, remark) \
         VALUES ($1, $2, 'exchange', $3, 0, 0, $4, $5)",
    )
    .bind(new_order_code)
    .bind(x.uid)
    .bind(OrderState::Paid.as_str())
    .bind(serde_json::to_value(&address).unwrap_or_default())
    .bind(format!("replacement for exchange {} of order {}", x.id, x.order_code))
    .execute(&mut *conn)
    .await?;
    store::record(
        conn,
        store::Entry {
            order_code: new_order_code,
            subject: "order".into(),
            source,
            event: "created_as_exchange_replacement",
            applied: true,
            reason: None,
            before: None,
            after: Some(OrderState::Paid.as_str()),
            detail: json!({ "exchange_id": x.id, "source_order_code": x.order_code, "goods": x.goods }),
        },
    )
    .await?;
    Ok(())
}

/// `erp.createRefundOrder`: the ERP accepted (200, maybe with amounts) or rejected (500 / 91).
pub struct OnReturnCreated;

impl MessageHandler<c::ErpRefundOrderCreated> for OnReturnCreated {
    async fn handle(
        &self,
        msg: c::ErpRefundOrderCreated,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let data = &msg.data;
            let r = store::lock_return(conn, data.id, false)
                .await?
                .ok_or_else(|| {
                    park(
                        &d.routing_key,
                        "unknown_return",
                        format!("unknown return {}", data.id),
                    )
                })?;
            let event = match msg.code {
                c::ErpResultCode::Rejected => ReturnEvent::Erp91Rejected,
                c::ErpResultCode::Ok => ReturnEvent::from_code(data.returned_status),
            };
            if r.erp_returned_id.is_none() {
                sqlx::query("UPDATE return_orders SET erp_returned_id = $2 WHERE id = $1")
                    .bind(r.id)
                    .bind(data.returned_id)
                    .execute(&mut *conn)
                    .await?;
            }
            store_return_amounts(
                conn,
                r.id,
                &data.real_returned_amount,
                &data.is_return_coupon,
                data.return_yoho_coin,
            )
            .await?;
            store::offer_return_event(conn, &r, event, &src(d), body_detail(&d.body)).await?;
            Ok(())
        }
        .await
    }
}

async fn store_return_amounts(
    conn: &mut PgConnection,
    id: i64,
    amount: &Option<c::Decimal>,
    coupon: &Option<String>,
    coin: Option<i64>,
) -> Result<(), HandlerError> {
    if amount.is_none() && coupon.is_none() && coin.is_none() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE return_orders SET real_returned_amount = COALESCE($2::numeric, real_returned_amount), \
         is_return_coupon = COALESCE($3, is_return_coupon), return_yoho_coin = COALESCE($4, return_yoho_coin) WHERE id = $1",
    )
    .bind(id)
    .bind(amount.as_ref().map(|a| a.as_str().to_owned()))
    .bind(coupon)
    .bind(coin)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `erp.updateChangeRefundOrderStatus`, both shapes (`type` change / refund), keyed by the ERP's id.
pub struct OnAfterSaleStatus;

impl MessageHandler<c::AfterSaleStatusUpdate> for OnAfterSaleStatus {
    async fn handle(
        &self,
        msg: c::AfterSaleStatusUpdate,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            match msg {
                c::AfterSaleStatusUpdate::Change(u) => {
                    let Some(x) = store::lock_exchange(conn, u.id, true).await? else {
                        m::refused_message(&d.routing_key, "unknown_erp_exchange");
                        return Err(HandlerError::Retry(format!(
                            "unknown ERP exchange id {} (its erp.createChangeOrder may not be applied yet)",
                            u.id
                        )));
                    };
                    store::offer_exchange_event(
                        conn,
                        &x,
                        ExchangeEvent::from_code(u.status),
                        &src(d),
                        body_detail(&d.body),
                    )
                    .await?;
                }
                c::AfterSaleStatusUpdate::Refund(u) => {
                    let Some(r) = store::lock_return(conn, u.id, true).await? else {
                        m::refused_message(&d.routing_key, "unknown_erp_return");
                        return Err(HandlerError::Retry(format!(
                            "unknown ERP return id {} (its erp.createRefundOrder may not be applied yet)",
                            u.id
                        )));
                    };
                    let out = store::offer_return_event(
                        conn,
                        &r,
                        ReturnEvent::from_code(u.status),
                        &src(d),
                        body_detail(&d.body),
                    )
                    .await?;
                    if matches!(out, Outcome::Applied { .. }) {
                        store_return_amounts(
                            conn,
                            r.id,
                            &u.real_returned_amount,
                            &u.is_return_coupon,
                            u.return_yoho_coin,
                        )
                        .await?;
                    }
                }
            }
            Ok(())
        }
        .await
    }
}

/// `erp.deliveryAddressUpdate`: customer service changed the address (any order state; the
/// ERP is authoritative), one element per order.
pub struct OnErpAddress;

impl MessageHandler<c::ErpAddressChange> for OnErpAddress {
    async fn handle(
        &self,
        msg: c::ErpAddressChange,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let source = src(d);
            for el in &msg.0 {
                let order = order_or_park(conn, d, el.order_code).await?;
                let new = Address::from_wire(el);
                let refused = if new == order.address {
                    Some("duplicate")
                } else {
                    None
                };
                if refused.is_none() {
                    sqlx::query(
                        "UPDATE orders SET address = $2, updated_at = now() WHERE order_code = $1",
                    )
                    .bind(order.order_code)
                    .bind(serde_json::to_value(&new).unwrap_or_default())
                    .execute(&mut *conn)
                    .await?;
                }
                store::record_note(
                    conn,
                    &order,
                    &source,
                    "erp_address_update",
                    refused,
                    json!({ "from": order.address, "to": new }),
                )
                .await?;
            }
            Ok(())
        }
        .await
    }
}

/// `erp.updateInvoicePdfUrl`: a blue (0) or red (1) electronic invoice.
pub struct OnInvoice;

impl MessageHandler<c::InvoicePdfUrl> for OnInvoice {
    async fn handle(
        &self,
        msg: c::InvoicePdfUrl,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let order = order_or_park(conn, d, msg.order_code).await?;
            check_uid(d, &order, msg.uid)?;
            let t = msg.invoice_type.code() as i16;
            let inserted = sqlx::query(
                "INSERT INTO order_invoices (order_code, invoice_type, pdf_url) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(order.order_code)
            .bind(t)
            .bind(&msg.pdf_url)
            .execute(&mut *conn)
            .await?;
            let event = match msg.invoice_type {
                c::InvoiceType::Blue => "invoice_blue",
                c::InvoiceType::Red => "invoice_red",
            };
            let mut detail = body_detail(&d.body);
            if inserted.rows_affected() == 0 {
                store::record_note(conn, &order, &src(d), event, Some("duplicate"), detail).await?;
                return Ok(());
            }
            if msg.invoice_type == c::InvoiceType::Red {
                let blue: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM order_invoices WHERE order_code = $1 AND invoice_type = 0 LIMIT 1",
                )
                .bind(order.order_code)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(obj) = detail.as_object_mut() {
                    obj.insert("red_without_blue".into(), json!(blue.is_none()));
                }
            }
            sqlx::query("UPDATE orders SET invoice_pdf_url = $2, invoice_type = $3, updated_at = now() WHERE order_code = $1")
                .bind(order.order_code)
                .bind(&msg.pdf_url)
                .bind(t)
                .execute(&mut *conn)
                .await?;
            store::record_note(conn, &order, &src(d), event, None, detail).await?;
            Ok(())
        }
        .await
    }
}

/// `order.updateExpressInfo`: one carrier tracking event (recorded; status moves with the ERP's
/// 600/700, because the spec defines no values for `state`).
pub struct OnExpressInfo;

impl MessageHandler<c::ExpressInfoUpdate> for OnExpressInfo {
    async fn handle(
        &self,
        msg: c::ExpressInfoUpdate,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let order = order_or_park(conn, d, msg.order_code).await?;
            check_uid(d, &order, msg.uid)?;
            let inserted = sqlx::query(
                "INSERT INTO tracking_events (unique_key, order_code, waybill_code, logistics_type, state, accept_address, accept_remark, event_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8)) ON CONFLICT DO NOTHING",
            )
            .bind(&msg.unique_key)
            .bind(order.order_code)
            .bind(&msg.waybill_code)
            .bind(msg.logistics_type)
            .bind(msg.state)
            .bind(&msg.accept_address)
            .bind(&msg.accept_remark)
            .bind(msg.create_time as f64)
            .execute(&mut *conn)
            .await?;
            let refused = (inserted.rows_affected() == 0).then_some("duplicate");
            store::record_note(
                conn,
                &order,
                &src(d),
                "tracking_event",
                refused,
                body_detail(&d.body),
            )
            .await?;
            Ok(())
        }
        .await
    }
}
