//! One typed handler per consumed routing key. Each runs inside the delivery chain's
//! transaction (inbox row + state change + timeline + outbox commit together, then ack).
//!
//! Hostile input:
//! - undecodable body, wrong types, unknown status codes: the bus's typed adapter parks the
//!   message with the decoder's reason (which names the field);
//! - a field that breaks the storefront's rules (the HTTP API's limits, see [`validate`]), a
//!   timestamp out of range: parked, the reason names the field;
//! - an unknown order / exchange / return (by our id): parked with the reason `unknown ...`;
//! - an unknown *ERP* exchange/return id in `erp.updateChangeRefundOrderStatus`: retried through
//!   the delay tiers first (the ERP's `erp.createChangeOrder`/`erp.createRefundOrder` that tells
//!   us that id travels on another queue and may not be applied yet), parked after the last tier;
//! - an ERP id or replacement order code that already belongs to another exchange/return/order:
//!   parked;
//! - uid / order mismatches: parked;
//! - a payment whose amount the order does not owe: acked, recorded as not applied, counted;
//! - late, duplicate, out-of-order events, fulfilment events for a JIT split parent: acked,
//!   recorded on the timeline as not applied, counted.
//!
//! The timeline's `detail` is built from the decoded message's known fields, never from the
//! raw body.

mod validate;

use orderbus_bus::{Delivery, HandlerError, MessageHandler, Subscription};
use orderbus_contracts as c;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::ids::{ErpExchangeId, ErpReturnId, ExchangeId, OrderCode, ReturnId};
use crate::machine::{
    check_payment, ExchangeEvent, MachineState, OrderEvent, OrderState, Outcome, PaymentShare,
    Refusal, ReturnEvent,
};
use crate::metrics as m;
use crate::store::events::{self, PaymentData, PaymentWrite, RefundAmounts, ShipmentKind};
use crate::store::orders_lock::{self, ExchangeHead, OrderHead};
use crate::store::{Address, Source};

pub use validate::Invalid;

fn park(routing_key: &str, class: &'static str, reason: String) -> HandlerError {
    m::refused_message(routing_key, class);
    HandlerError::Park(reason)
}

/// A field that breaks its rule parks the message; the reason names the field.
fn checked<T>(d: &Delivery, r: validate::Checked<T>) -> Result<T, HandlerError> {
    r.map_err(|e| {
        park(
            &d.routing_key,
            "invalid_field",
            format!("{}: {e}", d.routing_key),
        )
    })
}

async fn order_or_park(
    conn: &mut PgConnection,
    d: &Delivery,
    code: OrderCode,
) -> Result<OrderHead, HandlerError> {
    orders_lock::lock_order(conn, code).await?.ok_or_else(|| {
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

/// `order.payment`: pays the order (and, for a JIT parent, its children) when the amount is
/// what the order owes.
pub struct OnPayment;

impl MessageHandler<c::OrderPayment> for OnPayment {
    async fn handle(
        &self,
        msg: c::OrderPayment,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        on_payment(msg, d, conn).await
    }
}

async fn on_payment(
    msg: c::OrderPayment,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    let order = order_or_park(conn, d, OrderCode(msg.order_code)).await?;
    check_uid(d, &order, msg.uid)?;
    checked(
        d,
        validate::required_text("payment_gateway", &msg.payment_gateway),
    )?;
    checked(d, validate::text("gateway_trade_no", &msg.gateway_trade_no))?;
    let paid_at = checked(d, validate::unix_time("paid_time", msg.paid_time))?;
    let source = src(d);
    let amount_cents = msg.amount.to_cents();
    let mut detail = json!({
        "amount": msg.amount.as_str(),
        "pay_type": msg.pay_type.code(),
        "payment_gateway": msg.payment_gateway,
        "gateway_trade_no": msg.gateway_trade_no,
        "paid_time": msg.paid_time,
        "order_amount": c::Decimal::from_cents(order.order_amount_cents).as_str(),
    });
    let share = match check_payment(
        order.status,
        order.order_amount_cents,
        order.paid_amount_cents,
        amount_cents,
    ) {
        Ok(share) => share,
        Err(refusal) => {
            // The money may have been taken: ops refund or chase it from the timeline entry
            // (gateway and trade no are in its detail) and the metric's alert.
            m::payment_refused(refusal.as_str());
            tracing::warn!(order_code = order.order_code, amount = %msg.amount, status = %order.status, reason = %refusal, "payment not applied: the order does not owe this amount");
            events::record_note(
                conn,
                &order,
                &source,
                OrderEvent::Payment.as_str(),
                Some(refusal.as_str()),
                detail,
            )
            .await?;
            return Ok(());
        }
    };
    if let Some(obj) = detail.as_object_mut() {
        let (name, outstanding) = match share {
            PaymentShare::Whole => ("whole", None),
            PaymentShare::Deposit { outstanding_cents } => ("deposit", Some(outstanding_cents)),
            PaymentShare::Balance => ("balance", None),
        };
        obj.insert("share".into(), json!(name));
        if let Some(cents) = outstanding {
            obj.insert(
                "outstanding".into(),
                json!(c::Decimal::from_cents(cents).as_str()),
            );
        }
    }
    let out = events::offer_order_event(conn, &order, OrderEvent::Payment, &source, detail).await?;
    // The payment's data is kept even when the status is already past `paid` (the ERP consumes
    // order.payment too and its 100 may overtake ours): data is not status.
    let write = match out {
        Outcome::Applied {
            from: OrderState::BalanceDue,
            ..
        } => Some(PaymentWrite::AddToDeposit),
        Outcome::Applied { .. } => Some(PaymentWrite::Replace),
        Outcome::NotApplied { current, .. } if is_cancelled(current) => None,
        Outcome::NotApplied { .. } => Some(PaymentWrite::FirstOnly),
    };
    if let (Some(write), Some(amount_cents)) = (write, amount_cents) {
        let data = PaymentData {
            amount_cents,
            pay_type: msg.pay_type.code() as i32,
            payment_gateway: &msg.payment_gateway,
            gateway_trade_no: &msg.gateway_trade_no,
            paid_at,
        };
        events::store_payment(conn, order.code(), &data, write).await?;
    }
    match out {
        Outcome::Applied { .. } => {
            if share != PaymentShare::Whole {
                tracing::info!(order_code = order.order_code, amount = %msg.amount, ?share, "partial payment applied");
            }
            if order.is_split_parent {
                for child in orders_lock::lock_children(conn, order.code()).await? {
                    events::offer_order_event(
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
        on_erp_status(msg, d, conn).await
    }
}

async fn on_erp_status(
    msg: c::ErpOrderStatusUpdate,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    let order = order_or_park(conn, d, OrderCode(msg.order_code)).await?;
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
    let mut detail = json!({ "status": msg.status.code() });
    if let Some(data) = &msg.data {
        checked(d, validate::positive("data.express_id", data.express_id))?;
        checked(
            d,
            validate::waybill_number("data.express_number", &data.express_number),
        )?;
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("express_id".into(), json!(data.express_id));
            obj.insert("express_number".into(), json!(data.express_number));
        }
    }
    let out = events::offer_order_event(conn, &order, event, &src(d), detail).await?;
    // The waybill is data, not status: a late 600 (after 700) still records it. A split
    // parent ships nothing (refused above), so it records no waybill either.
    let refused_as_parent = matches!(
        out,
        Outcome::NotApplied {
            why: Refusal::SplitParent,
            ..
        }
    );
    if let (C::Shipped, Some(data), false) = (msg.status, &msg.data, refused_as_parent) {
        events::record_shipment(
            conn,
            order.code(),
            ShipmentKind::for_order(order.kind),
            data.express_id,
            &data.express_number,
        )
        .await?;
    }
    Ok(())
}

/// What the ERP's reply to an exchange or return request asks of us.
fn result_detail(code: c::ErpResultCode, message: &str) -> Value {
    json!({ "code": code.code(), "message": message })
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
        on_exchange_created(msg, d, conn).await
    }
}

async fn on_exchange_created(
    msg: c::ErpChangeOrderCreated,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    let data = &msg.data;
    checked(d, validate::text("message", &msg.message))?;
    checked(d, validate::positive("data.exchange_id", data.exchange_id))?;
    checked(d, validate::positive("data.returned_id", data.returned_id))?;
    checked(
        d,
        validate::not_negative("data.new_order_code", data.new_order_code),
    )?;
    let x = orders_lock::lock_exchange(conn, ExchangeId(data.id))
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
    let erp_id = ErpExchangeId(data.exchange_id);
    let new_order = (data.new_order_code > 0).then_some(OrderCode(data.new_order_code));
    if x.erp_exchange_id.is_none() {
        if let Some(other) = events::exchange_holding_erp_id(conn, erp_id, ExchangeId(x.id)).await?
        {
            return Err(park(
                &d.routing_key,
                "erp_id_clash",
                format!(
                    "ERP exchange id {erp_id} already belongs to exchange {other}, not {}",
                    x.id
                ),
            ));
        }
        events::set_exchange_erp_ids(
            conn,
            ExchangeId(x.id),
            erp_id,
            ErpReturnId(data.returned_id),
            new_order,
        )
        .await?;
    }
    let mut detail = result_detail(msg.code, &msg.message);
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("exchange_id".into(), json!(data.exchange_id));
        obj.insert("returned_id".into(), json!(data.returned_id));
        obj.insert("new_order_code".into(), json!(data.new_order_code));
        obj.insert("exchange_status".into(), json!(data.exchange_status.code()));
        obj.insert("returned_status".into(), json!(data.returned_status.code()));
    }
    let out = events::offer_exchange_event(conn, &x, event, &src(d), detail).await?;
    if let (c::ErpResultCode::Ok, Outcome::Applied { .. }, Some(code)) = (msg.code, out, new_order)
    {
        create_replacement_order(conn, d, &x, code).await?;
    }
    Ok(())
}

/// The ERP's replacement order of an exchange becomes an order here too, so its
/// `order.erpstatus` 600/700 are tracked (re-shipping = `OS30`).
async fn create_replacement_order(
    conn: &mut PgConnection,
    d: &Delivery,
    x: &ExchangeHead,
    code: OrderCode,
) -> Result<(), HandlerError> {
    if events::order_exists(conn, code).await? {
        return Err(park(
            &d.routing_key,
            "order_code_clash",
            format!(
                "new_order_code {code} of exchange {} is already an order",
                x.id
            ),
        ));
    }
    let address = Address {
        address_id: 0,
        ..x.address.clone()
    };
    let remark = format!(
        "replacement for exchange {} of order {}",
        x.id, x.order_code
    );
    events::create_replacement_order(conn, code, x.uid, &address, &remark).await?;
    let source = src(d);
    crate::store::record(
        conn,
        crate::store::Entry {
            order_code: code.get(),
            subject: "order".into(),
            source: &source,
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

/// The ERP's refund figures, checked.
fn refund_amounts<'m>(
    d: &Delivery,
    prefix: &str,
    amount: &Option<c::Decimal>,
    coupon: &'m Option<String>,
    coin: Option<i64>,
) -> Result<RefundAmounts<'m>, HandlerError> {
    let real_returned_cents = match amount {
        Some(a) => Some(checked(
            d,
            validate::amount_cents(&format!("{prefix}real_returned_amount"), a),
        )?),
        None => None,
    };
    if let Some(v) = coupon {
        checked(d, validate::text(&format!("{prefix}is_return_coupon"), v))?;
    }
    Ok(RefundAmounts {
        real_returned_cents,
        is_return_coupon: coupon.as_deref(),
        return_yoho_coin: coin,
    })
}

fn refund_detail(detail: &mut Value, a: &RefundAmounts<'_>) {
    if let Some(obj) = detail.as_object_mut() {
        if let Some(cents) = a.real_returned_cents {
            obj.insert(
                "real_returned_amount".into(),
                json!(c::Decimal::from_cents(cents).as_str()),
            );
        }
        if let Some(v) = a.is_return_coupon {
            obj.insert("is_return_coupon".into(), json!(v));
        }
        if let Some(v) = a.return_yoho_coin {
            obj.insert("return_yoho_coin".into(), json!(v));
        }
    }
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
        on_return_created(msg, d, conn).await
    }
}

async fn on_return_created(
    msg: c::ErpRefundOrderCreated,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    let data = &msg.data;
    checked(d, validate::text("message", &msg.message))?;
    checked(d, validate::positive("data.returned_id", data.returned_id))?;
    let amounts = refund_amounts(
        d,
        "data.",
        &data.real_returned_amount,
        &data.is_return_coupon,
        data.return_yoho_coin,
    )?;
    let r = orders_lock::lock_return(conn, ReturnId(data.id))
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
    let erp_id = ErpReturnId(data.returned_id);
    if r.erp_returned_id.is_none() {
        if let Some(other) = events::return_holding_erp_id(conn, erp_id, ReturnId(r.id)).await? {
            return Err(park(
                &d.routing_key,
                "erp_id_clash",
                format!(
                    "ERP return id {erp_id} already belongs to return {other}, not {}",
                    r.id
                ),
            ));
        }
        events::set_return_erp_id(conn, ReturnId(r.id), erp_id).await?;
    }
    events::store_return_amounts(conn, ReturnId(r.id), &amounts).await?;
    let mut detail = result_detail(msg.code, &msg.message);
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("returned_id".into(), json!(data.returned_id));
        obj.insert("returned_status".into(), json!(data.returned_status.code()));
    }
    refund_detail(&mut detail, &amounts);
    events::offer_return_event(conn, &r, event, &src(d), detail).await?;
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
        on_after_sale_status(msg, d, conn).await
    }
}

async fn on_after_sale_status(
    msg: c::AfterSaleStatusUpdate,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    match msg {
        c::AfterSaleStatusUpdate::Change(u) => {
            let Some(x) = orders_lock::lock_exchange_by_erp_id(conn, ErpExchangeId(u.id)).await?
            else {
                m::refused_message(&d.routing_key, "unknown_erp_exchange");
                return Err(HandlerError::Retry(format!(
                    "unknown ERP exchange id {} (its erp.createChangeOrder may not be applied yet)",
                    u.id
                )));
            };
            let detail = json!({ "type": "change", "id": u.id, "status": u.status.code() });
            events::offer_exchange_event(
                conn,
                &x,
                ExchangeEvent::from_code(u.status),
                &src(d),
                detail,
            )
            .await?;
        }
        c::AfterSaleStatusUpdate::Refund(u) => {
            let amounts = refund_amounts(
                d,
                "",
                &u.real_returned_amount,
                &u.is_return_coupon,
                u.return_yoho_coin,
            )?;
            let Some(r) = orders_lock::lock_return_by_erp_id(conn, ErpReturnId(u.id)).await? else {
                m::refused_message(&d.routing_key, "unknown_erp_return");
                return Err(HandlerError::Retry(format!(
                    "unknown ERP return id {} (its erp.createRefundOrder may not be applied yet)",
                    u.id
                )));
            };
            let mut detail = json!({ "type": "refund", "id": u.id, "status": u.status.code() });
            refund_detail(&mut detail, &amounts);
            let out = events::offer_return_event(
                conn,
                &r,
                ReturnEvent::from_code(u.status),
                &src(d),
                detail,
            )
            .await?;
            if matches!(out, Outcome::Applied { .. }) {
                events::store_return_amounts(conn, ReturnId(r.id), &amounts).await?;
            }
        }
    }
    Ok(())
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
        on_erp_address(msg, d, conn).await
    }
}

async fn on_erp_address(
    msg: c::ErpAddressChange,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    let source = src(d);
    for (i, el) in msg.0.iter().enumerate() {
        let new = Address::from_wire(el);
        checked(d, validate::address(&format!("[{i}]"), &new))?;
        let order = order_or_park(conn, d, OrderCode(el.order_code)).await?;
        let refused = (new == order.address).then_some("duplicate");
        if refused.is_none() {
            events::replace_address(conn, order.code(), &new).await?;
        }
        events::record_note(
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

/// `erp.updateInvoicePdfUrl`: a blue (0) or red (1) electronic invoice.
pub struct OnInvoice;

impl MessageHandler<c::InvoicePdfUrl> for OnInvoice {
    async fn handle(
        &self,
        msg: c::InvoicePdfUrl,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        on_invoice(msg, d, conn).await
    }
}

async fn on_invoice(
    msg: c::InvoicePdfUrl,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    let order = order_or_park(conn, d, OrderCode(msg.order_code)).await?;
    check_uid(d, &order, msg.uid)?;
    checked(d, validate::web_url("pdfUrl", &msg.pdf_url))?;
    let t = msg.invoice_type.code() as i16;
    let event = match msg.invoice_type {
        c::InvoiceType::Blue => "invoice_blue",
        c::InvoiceType::Red => "invoice_red",
    };
    let mut detail = json!({ "invoice_type": msg.invoice_type.code(), "pdf_url": msg.pdf_url });
    // Invoices belong to what is sold and shipped: a split parent's are its children's.
    if order.is_split_parent {
        let why = Refusal::SplitParent.as_str();
        events::record_note(conn, &order, &src(d), event, Some(why), detail).await?;
        return Ok(());
    }
    if !events::add_invoice(conn, order.code(), t, &msg.pdf_url).await? {
        events::record_note(conn, &order, &src(d), event, Some("duplicate"), detail).await?;
        return Ok(());
    }
    if msg.invoice_type == c::InvoiceType::Red {
        let blue = c::InvoiceType::Blue.code() as i16;
        let has_blue = events::has_invoice_of_type(conn, order.code(), blue).await?;
        if let Some(obj) = detail.as_object_mut() {
            obj.insert("red_without_blue".into(), json!(!has_blue));
        }
    }
    events::record_note(conn, &order, &src(d), event, None, detail).await?;
    Ok(())
}

/// `order.updateExpressInfo`: one carrier tracking event (recorded, deduplicated per order and
/// waybill); a new *delivered* event (`state` read through the tracking vocabulary) moves the
/// order to `delivered` or completes the exchange (see [`carrier_delivered`]).
pub struct OnExpressInfo;

impl MessageHandler<c::ExpressInfoUpdate> for OnExpressInfo {
    async fn handle(
        &self,
        msg: c::ExpressInfoUpdate,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        on_express_info(msg, d, conn).await
    }
}

async fn on_express_info(
    msg: c::ExpressInfoUpdate,
    d: &Delivery,
    conn: &mut PgConnection,
) -> Result<(), HandlerError> {
    let order = order_or_park(conn, d, OrderCode(msg.order_code)).await?;
    check_uid(d, &order, msg.uid)?;
    checked(d, validate::required_text("uniqueKey", &msg.unique_key))?;
    checked(d, validate::required_text("waybillCode", &msg.waybill_code))?;
    checked(d, validate::text("acceptAddress", &msg.accept_address))?;
    checked(d, validate::text("acceptRemark", &msg.accept_remark))?;
    let event_time = checked(d, validate::unix_time("createTime", msg.create_time))?;
    let detail = json!({
        "unique_key": msg.unique_key,
        "waybill_code": msg.waybill_code,
        "logistics_type": msg.logistics_type,
        "state": msg.state,
        "accept_address": msg.accept_address,
        "accept_remark": msg.accept_remark,
        "create_time": msg.create_time,
    });
    // Carriers track waybills, and a split parent has none (its children ship).
    if order.is_split_parent {
        let why = Refusal::SplitParent.as_str();
        events::record_note(conn, &order, &src(d), "tracking_event", Some(why), detail).await?;
        return Ok(());
    }
    let tracking = events::TrackingEvent {
        unique_key: &msg.unique_key,
        waybill_code: &msg.waybill_code,
        logistics_type: msg.logistics_type,
        state: msg.state,
        accept_address: &msg.accept_address,
        accept_remark: &msg.accept_remark,
        event_time,
    };
    let inserted = events::add_tracking_event(conn, order.code(), &tracking).await?;
    let refused = (!inserted).then_some("duplicate");
    events::record_note(conn, &order, &src(d), "tracking_event", refused, detail).await?;
    if inserted && express_state_is_delivered(msg.state) {
        carrier_delivered(conn, d, &order, &msg).await?;
    }
    Ok(())
}

/// The MQ spec's `state` read through the tracking vocabulary's `express_info` table (the
/// built-in one: the tracking service publishes those codes).
fn express_state_is_delivered(state: i64) -> bool {
    use orderbus_tracking_vocabulary::{Stage, Vocabulary, EXPRESS_INFO};
    static VOCABULARY: std::sync::OnceLock<Option<Vocabulary>> = std::sync::OnceLock::new();
    let vocabulary = VOCABULARY.get_or_init(|| match Vocabulary::builtin() {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "the built-in tracking vocabulary does not load: delivery is left to the ERP's 700");
            None
        }
    });
    vocabulary
        .as_ref()
        .and_then(|v| v.lookup(EXPRESS_INFO, None, &state.to_string()).ok())
        == Some(Stage::Delivered)
}

/// Waybills compare without spaces and `-` (the carriers' and SweetTracker's rule).
fn waybill_key(waybill: &str) -> String {
    waybill
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

/// A delivered tracking event: for the order's own delivery waybill the order goes
/// `shipped` → `delivered` (OS03); for an exchange's re-delivery waybill the replacement order
/// is delivered and the exchange completes (OS31). The ERP's own 700 / 50, before or after,
/// are then duplicates in the machines. A delivered event for a waybill no 600 has named yet,
/// while the order is not shipped, is retried (the 600 travels on another queue).
async fn carrier_delivered(
    conn: &mut PgConnection,
    d: &Delivery,
    order: &OrderHead,
    msg: &c::ExpressInfoUpdate,
) -> Result<(), HandlerError> {
    let wanted = waybill_key(&msg.waybill_code);
    let waybills = events::order_waybills(conn, order.code()).await?;
    let detail = json!({
        "waybill_code": msg.waybill_code,
        "unique_key": msg.unique_key,
        "state": msg.state,
    });
    let Some((kind, _)) = waybills.iter().find(|(_, n)| waybill_key(n) == wanted) else {
        if !order.status.is_terminal() && order.status.rank() < OrderState::Shipped.rank() {
            m::refused_message(&d.routing_key, "waybill_not_shipped_yet");
            return Err(HandlerError::retry(format!(
                "delivered event for waybill {} of order {} before the order's 600",
                msg.waybill_code, order.order_code
            )));
        }
        let why = Some("other_waybill");
        events::record_note(conn, order, &src(d), "tracking_delivered", why, detail).await?;
        return Ok(());
    };
    let redelivery = kind == ShipmentKind::ExchangeRedelivery.as_str();
    events::offer_order_event(
        conn,
        order,
        OrderEvent::CarrierDelivered,
        &src(d),
        detail.clone(),
    )
    .await?;
    if redelivery {
        if let Some(x) = orders_lock::lock_exchange_by_replacement(conn, order.code()).await? {
            events::offer_exchange_event(
                conn,
                &x,
                ExchangeEvent::CarrierRedelivered,
                &src(d),
                detail,
            )
            .await?;
        }
    }
    Ok(())
}
