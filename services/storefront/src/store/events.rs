//! Offering an event to an order, exchange or return (machine step + status + timeline +
//! metrics, one statement), and what the consumers store from the ERP's and the payment
//! service's messages: payments, waybills, ERP ids, replacement orders, refund amounts,
//! addresses, invoices, tracking events. Only typed, known fields are stored.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgConnection;

use super::orders_lock::{ExchangeHead, OrderHead, OrderKind, ReturnHead};
use super::timeline::{record_moving, Entry, StatusRow, StatusWrite};
use super::{Address, Source};
use crate::ids::{ErpExchangeId, ErpReturnId, ExchangeId, OrderCode, ReturnId};
use crate::machine::{
    exchange_step, order_step, return_step, split_parent_step, ExchangeEvent, ExchangeState,
    OrderEvent, OrderState, Outcome, ReturnEvent, ReturnState,
};
use crate::metrics as m;

/// Offers `event` to the (locked) order: applies the table (a split parent's own rules for a
/// JIT parent), updates the status, records the timeline. Returns the machine's outcome.
pub async fn offer_order_event(
    conn: &mut PgConnection,
    order: &OrderHead,
    event: OrderEvent,
    source: &Source,
    detail: Value,
) -> Result<Outcome<OrderState>, sqlx::Error> {
    let outcome = if order.is_split_parent {
        split_parent_step(order.status, event)
    } else {
        order_step(order.status, event)
    };
    record_outcome(
        conn,
        order.order_code,
        "order".into(),
        source,
        event.as_str(),
        outcome,
        detail,
        StatusRow::Order(order.order_code),
    )
    .await?;
    Ok(outcome)
}

pub async fn offer_exchange_event(
    conn: &mut PgConnection,
    x: &ExchangeHead,
    event: ExchangeEvent,
    source: &Source,
    detail: Value,
) -> Result<Outcome<ExchangeState>, sqlx::Error> {
    let outcome = exchange_step(x.status, event);
    record_outcome(
        conn,
        x.order_code,
        format!("exchange:{}", x.id),
        source,
        event.as_str(),
        outcome,
        detail,
        StatusRow::Exchange(x.id),
    )
    .await?;
    Ok(outcome)
}

pub async fn offer_return_event(
    conn: &mut PgConnection,
    r: &ReturnHead,
    event: ReturnEvent,
    source: &Source,
    detail: Value,
) -> Result<Outcome<ReturnState>, sqlx::Error> {
    let outcome = return_step(r.status, event);
    record_outcome(
        conn,
        r.order_code,
        format!("return:{}", r.id),
        source,
        event.as_str(),
        outcome,
        detail,
        StatusRow::Return(r.id),
    )
    .await?;
    Ok(outcome)
}

/// Records the machine's outcome on the timeline and, if it applied, the new status, in one
/// statement.
#[allow(clippy::too_many_arguments)]
async fn record_outcome<S: Copy + std::fmt::Display>(
    conn: &mut PgConnection,
    order_code: i64,
    subject: String,
    source: &Source,
    event: &str,
    outcome: Outcome<S>,
    detail: Value,
    row: StatusRow,
) -> Result<(), sqlx::Error> {
    let (applied, reason, before, after) = match outcome {
        Outcome::Applied { from, to } => (true, None, from.to_string(), to.to_string()),
        Outcome::NotApplied { current, why } => (
            false,
            Some(why.as_str().to_owned()),
            current.to_string(),
            current.to_string(),
        ),
    };
    m::event(&subject, event, reason.as_deref().unwrap_or("applied"));
    let status = applied.then_some(StatusWrite {
        row,
        status: &after,
    });
    record_moving(
        conn,
        Entry {
            order_code,
            subject,
            source,
            event,
            applied,
            reason,
            before: Some(&before),
            after: Some(&after),
            detail,
        },
        status,
    )
    .await
}

/// Records an event that does not move a status (tracking, invoice, address, a refused
/// payment), applied or not.
pub async fn record_note(
    conn: &mut PgConnection,
    order: &OrderHead,
    source: &Source,
    event: &str,
    refused: Option<&str>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    m::event("order", event, refused.unwrap_or("applied"));
    let status = order.status.as_str();
    record_moving(
        conn,
        Entry {
            order_code: order.order_code,
            subject: "order".into(),
            source,
            event,
            applied: refused.is_none(),
            reason: refused.map(str::to_owned),
            before: Some(status),
            after: Some(status),
            detail,
        },
        None,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------------------------

/// A payment's stored fields.
pub struct PaymentData<'a> {
    pub amount_cents: i64,
    pub pay_type: i32,
    pub payment_gateway: &'a str,
    pub gateway_trade_no: &'a str,
    pub paid_at: DateTime<Utc>,
}

/// How a payment's data meets what is stored already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentWrite {
    /// The payment applied: its data replaces what is there.
    Replace,
    /// The pre-sale balance applied: its amount adds to the deposit.
    AddToDeposit,
    /// The status is already past `paid` (the ERP's 100 overtook us): stored only if no
    /// payment was stored before.
    FirstOnly,
}

pub async fn store_payment(
    conn: &mut PgConnection,
    code: OrderCode,
    p: &PaymentData<'_>,
    write: PaymentWrite,
) -> Result<(), sqlx::Error> {
    let add = write == PaymentWrite::AddToDeposit;
    let overwrite = write != PaymentWrite::FirstOnly;
    sqlx::query!(
        "UPDATE orders SET \
           paid_amount = CASE WHEN $7 THEN COALESCE(paid_amount, 0) + $2::bigint::numeric / 100 \
                              ELSE $2::bigint::numeric / 100 END, \
           pay_type = $3, payment_gateway = $4, gateway_trade_no = $5, paid_at = $6, updated_at = now() \
         WHERE order_code = $1 AND (paid_at IS NULL OR $8)",
        code as OrderCode,
        p.amount_cents,
        p.pay_type,
        p.payment_gateway,
        p.gateway_trade_no,
        p.paid_at,
        add,
        overwrite,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shipments
// ---------------------------------------------------------------------------------------------

/// Why a waybill exists (`shipments.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShipmentKind {
    /// The order's own delivery (`order.erpstatus` 600).
    Delivery,
    /// The replacement goods of an exchange.
    ExchangeRedelivery,
}

impl ShipmentKind {
    pub const fn for_order(kind: OrderKind) -> ShipmentKind {
        match kind {
            OrderKind::Customer => ShipmentKind::Delivery,
            OrderKind::ExchangeReplacement => ShipmentKind::ExchangeRedelivery,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ShipmentKind::Delivery => "delivery",
            ShipmentKind::ExchangeRedelivery => "exchange_redelivery",
        }
    }
}

pub async fn record_shipment(
    conn: &mut PgConnection,
    code: OrderCode,
    kind: ShipmentKind,
    express_id: i64,
    express_number: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO shipments (order_code, kind, express_id, express_number) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
        code as OrderCode,
        kind.as_str(),
        express_id,
        express_number,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The order's waybills as `(kind, express_number)`, from its 600s.
pub async fn order_waybills(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT kind, express_number FROM shipments WHERE order_code = $1 ORDER BY id",
        code as OrderCode,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.kind, r.express_number))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Exchanges and returns: the ERP's ids and amounts
// ---------------------------------------------------------------------------------------------

/// The exchange (other than `except`) that already holds the ERP's exchange id, if any.
pub async fn exchange_holding_erp_id(
    conn: &mut PgConnection,
    erp_id: ErpExchangeId,
    except: ExchangeId,
) -> Result<Option<ExchangeId>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id AS "id: ExchangeId" FROM exchange_orders WHERE erp_exchange_id = $1 AND id <> $2"#,
        erp_id as ErpExchangeId,
        except as ExchangeId,
    )
    .fetch_optional(&mut *conn)
    .await
}

pub async fn set_exchange_erp_ids(
    conn: &mut PgConnection,
    id: ExchangeId,
    erp_exchange_id: ErpExchangeId,
    erp_returned_id: ErpReturnId,
    new_order_code: Option<OrderCode>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE exchange_orders SET erp_exchange_id = $2, erp_returned_id = $3, new_order_code = $4, \
         updated_at = now() WHERE id = $1",
        id as ExchangeId,
        erp_exchange_id as ErpExchangeId,
        erp_returned_id as ErpReturnId,
        new_order_code as Option<OrderCode>,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether an order with this code exists (locked reads are not needed: codes never go away).
pub async fn order_exists(conn: &mut PgConnection, code: OrderCode) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM orders WHERE order_code = $1) AS "exists!""#,
        code as OrderCode,
    )
    .fetch_one(&mut *conn)
    .await
}

/// The exchange's replacement order: nothing to pay, so it starts in `paid`.
pub async fn create_replacement_order(
    conn: &mut PgConnection,
    code: OrderCode,
    uid: i64,
    address: &Address,
    remark: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO orders (order_code, uid, kind, status, order_amount, shipping_cost, address, remark) \
         VALUES ($1, $2, $3, $4, 0, 0, $5, $6)",
        code as OrderCode,
        uid,
        OrderKind::ExchangeReplacement.as_str(),
        OrderState::Paid.as_str(),
        Json(address) as _,
        remark,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The return (other than `except`) that already holds the ERP's return id, if any.
pub async fn return_holding_erp_id(
    conn: &mut PgConnection,
    erp_id: ErpReturnId,
    except: ReturnId,
) -> Result<Option<ReturnId>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id AS "id: ReturnId" FROM return_orders WHERE erp_returned_id = $1 AND id <> $2"#,
        erp_id as ErpReturnId,
        except as ReturnId,
    )
    .fetch_optional(&mut *conn)
    .await
}

pub async fn set_return_erp_id(
    conn: &mut PgConnection,
    id: ReturnId,
    erp_returned_id: ErpReturnId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE return_orders SET erp_returned_id = $2, updated_at = now() WHERE id = $1",
        id as ReturnId,
        erp_returned_id as ErpReturnId,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The ERP's refund figures (create reply or status 40); absent ones keep what is stored.
pub struct RefundAmounts<'a> {
    pub real_returned_cents: Option<i64>,
    pub is_return_coupon: Option<&'a str>,
    pub return_yoho_coin: Option<i64>,
}

pub async fn store_return_amounts(
    conn: &mut PgConnection,
    id: ReturnId,
    a: &RefundAmounts<'_>,
) -> Result<(), sqlx::Error> {
    if a.real_returned_cents.is_none()
        && a.is_return_coupon.is_none()
        && a.return_yoho_coin.is_none()
    {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE return_orders SET \
           real_returned_amount = COALESCE($2::bigint::numeric / 100, real_returned_amount), \
           is_return_coupon = COALESCE($3, is_return_coupon), \
           return_yoho_coin = COALESCE($4, return_yoho_coin), updated_at = now() \
         WHERE id = $1",
        id as ReturnId,
        a.real_returned_cents,
        a.is_return_coupon,
        a.return_yoho_coin,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Address, invoices, tracking
// ---------------------------------------------------------------------------------------------

pub async fn replace_address(
    conn: &mut PgConnection,
    code: OrderCode,
    address: &Address,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE orders SET address = $2, updated_at = now() WHERE order_code = $1",
        code as OrderCode,
        Json(address) as _,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds an invoice to the order's history and makes it the current one; `false` when the same
/// type and URL were already recorded (nothing changes then).
pub async fn add_invoice(
    conn: &mut PgConnection,
    code: OrderCode,
    invoice_type: i16,
    pdf_url: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO order_invoices (order_code, invoice_type, pdf_url) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
        code as OrderCode,
        invoice_type,
        pdf_url,
    )
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE orders SET invoice_pdf_url = $2, invoice_type = $3, updated_at = now() WHERE order_code = $1",
        code as OrderCode,
        pdf_url,
        invoice_type,
    )
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

pub async fn has_invoice_of_type(
    conn: &mut PgConnection,
    code: OrderCode,
    invoice_type: i16,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM order_invoices WHERE order_code = $1 AND invoice_type = $2) AS "exists!""#,
        code as OrderCode,
        invoice_type,
    )
    .fetch_one(&mut *conn)
    .await
}

/// One carrier tracking event, as stored.
pub struct TrackingEvent<'a> {
    pub unique_key: &'a str,
    pub waybill_code: &'a str,
    pub logistics_type: i64,
    pub state: i64,
    pub accept_address: &'a str,
    pub accept_remark: &'a str,
    pub event_time: DateTime<Utc>,
}

/// Stores a tracking event; `false` when this order's waybill already has the event's key.
pub async fn add_tracking_event(
    conn: &mut PgConnection,
    code: OrderCode,
    t: &TrackingEvent<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO tracking_events (unique_key, order_code, waybill_code, logistics_type, state, \
         accept_address, accept_remark, event_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT DO NOTHING",
        t.unique_key,
        code as OrderCode,
        t.waybill_code,
        t.logistics_type,
        t.state,
        t.accept_address,
        t.accept_remark,
        t.event_time,
    )
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
