//! Reads behind `GET /orders/{order_code}` and `GET /orders`: plain rows, no locks.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::ids::OrderCode;

/// The `orders` columns an order view shows; amounts as two-decimal text.
#[derive(Debug)]
pub struct OrderRow {
    pub order_code: i64,
    pub uid: i64,
    pub parent_order_code: Option<i64>,
    pub kind: String,
    pub status: String,
    pub order_amount: String,
    pub shipping_cost: String,
    pub paid_amount: Option<String>,
    pub address: Value,
    pub remark: String,
    pub invoice_pdf_url: Option<String>,
    pub invoice_type: Option<i16>,
    pub created_at: DateTime<Utc>,
}

pub async fn order(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as!(
        OrderRow,
        r#"SELECT order_code, uid, parent_order_code, kind, status,
                  order_amount::text AS "order_amount!", shipping_cost::text AS "shipping_cost!",
                  paid_amount::text AS paid_amount, address, remark, invoice_pdf_url,
                  invoice_type, created_at
           FROM orders WHERE order_code = $1"#,
        code.get()
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The JIT split children of an order, in order-code order.
pub async fn children(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<OrderCode>, sqlx::Error> {
    let codes = sqlx::query_scalar!(
        "SELECT order_code FROM orders WHERE parent_order_code = $1 ORDER BY order_code",
        code.get()
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(codes.into_iter().map(OrderCode).collect())
}

#[derive(Debug)]
pub struct ItemRow {
    pub product_sku: i64,
    pub product_skn: i64,
    pub warehouse_id: i64,
    pub buy_number: i64,
    pub last_price: String,
}

pub async fn items(conn: &mut PgConnection, code: OrderCode) -> Result<Vec<ItemRow>, sqlx::Error> {
    sqlx::query_as!(
        ItemRow,
        r#"SELECT product_sku, product_skn, warehouse_id, buy_number,
                  last_price::text AS "last_price!"
           FROM order_items WHERE order_code = $1 ORDER BY line_no"#,
        code.get()
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug)]
pub struct ShipmentRow {
    pub kind: String,
    pub express_id: i64,
    pub express_number: String,
}

pub async fn shipments(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as!(
        ShipmentRow,
        "SELECT kind, express_id, express_number FROM shipments WHERE order_code = $1 ORDER BY id",
        code.get()
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug)]
pub struct InvoiceRow {
    pub invoice_type: i16,
    pub pdf_url: String,
}

pub async fn invoices(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    sqlx::query_as!(
        InvoiceRow,
        "SELECT invoice_type, pdf_url FROM order_invoices WHERE order_code = $1 ORDER BY id",
        code.get()
    )
    .fetch_all(&mut *conn)
    .await
}

/// Tracking events as JSON objects (every column but the order code).
pub async fn tracking(conn: &mut PgConnection, code: OrderCode) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT to_jsonb(t) - 'order_code' AS "event!"
           FROM tracking_events t WHERE order_code = $1 ORDER BY event_time, received_at"#,
        code.get()
    )
    .fetch_all(&mut *conn)
    .await
}

/// Exchange orders as JSON objects (every column).
pub async fn exchanges(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT to_jsonb(x) AS "exchange!" FROM exchange_orders x WHERE order_code = $1 ORDER BY id"#,
        code.get()
    )
    .fetch_all(&mut *conn)
    .await
}

/// Return orders as JSON objects; the bank card number is masked to its last four digits (the
/// API is not the place to read it back).
pub async fn returns(conn: &mut PgConnection, code: OrderCode) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT (to_jsonb(r) - 'bank_card')
                  || jsonb_build_object('bank_card_last4', right(r.bank_card, 4)) AS "return!"
           FROM return_orders r WHERE order_code = $1 ORDER BY id"#,
        code.get()
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug)]
pub struct TimelineRow {
    pub subject: String,
    pub source: String,
    pub event: String,
    pub applied: bool,
    pub reason: Option<String>,
    pub status_before: Option<String>,
    pub status_after: Option<String>,
    pub message_id: Option<String>,
    pub detail: Value,
    pub at: DateTime<Utc>,
}

pub async fn timeline(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Vec<TimelineRow>, sqlx::Error> {
    sqlx::query_as!(
        TimelineRow,
        "SELECT subject, source, event, applied, reason, status_before, status_after, message_id, \
         detail, at FROM order_timeline WHERE order_code = $1 ORDER BY id",
        code.get()
    )
    .fetch_all(&mut *conn)
    .await
}

#[derive(Debug)]
pub struct SummaryRow {
    pub order_code: i64,
    pub uid: i64,
    pub parent_order_code: Option<i64>,
    pub status: String,
    pub order_amount: String,
    pub created_at: DateTime<Utc>,
}

/// A customer's orders, newest first, optionally in one status.
pub async fn list_for_customer(
    conn: &mut PgConnection,
    uid: i64,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<SummaryRow>, sqlx::Error> {
    sqlx::query_as!(
        SummaryRow,
        r#"SELECT order_code, uid, parent_order_code, status,
                  order_amount::text AS "order_amount!", created_at
           FROM orders WHERE uid = $1 AND ($2::text IS NULL OR status = $2)
           ORDER BY created_at DESC, order_code DESC LIMIT $3"#,
        uid,
        status,
        limit
    )
    .fetch_all(&mut *conn)
    .await
}
