//! The order view behind `GET /orders/{order_code}` and the list behind `GET /orders`, built
//! from the store's read-model rows.

use serde_json::{json, Value};
use sqlx::PgConnection;

use super::types::{InvoiceView, ItemView, OrderSummary, OrderView, ShipmentView, TimelineView};
use crate::ids::OrderCode;
use crate::machine::{ExchangeState, OrderState};
use crate::store::read_model as rows;
use crate::store::Address;

/// What an `orders` row is: placed by a customer, or the ERP's replacement of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    Customer,
    Exchange,
}

impl OrderKind {
    /// The `kind` column's text; anything but `exchange` is a customer order.
    pub fn parse(text: &str) -> OrderKind {
        if text == "exchange" {
            OrderKind::Exchange
        } else {
            OrderKind::Customer
        }
    }
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339()
}

fn invoice_name(invoice_type: i16) -> String {
    if invoice_type == 1 { "red" } else { "blue" }.to_owned()
}

/// Reads the full view of an order.
pub async fn load_view(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Option<OrderView>, sqlx::Error> {
    let Some(row) = rows::order(conn, code).await? else {
        return Ok(None);
    };
    let state = OrderState::parse(&row.status);
    let kind = OrderKind::parse(&row.kind);
    let items = rows::items(conn, code)
        .await?
        .into_iter()
        .map(|r| ItemView {
            product_sku: r.product_sku,
            product_skn: r.product_skn,
            warehouse_id: r.warehouse_id,
            quantity: r.buy_number,
            unit_price: r.last_price,
        })
        .collect();
    let shipments = rows::shipments(conn, code)
        .await?
        .into_iter()
        .map(|r| ShipmentView {
            kind: r.kind,
            express_id: r.express_id,
            express_number: r.express_number,
        })
        .collect();
    let invoices = rows::invoices(conn, code)
        .await?
        .into_iter()
        .map(|r| InvoiceView {
            invoice_type: invoice_name(r.invoice_type),
            pdf_url: r.pdf_url,
        })
        .collect();
    let invoice = match (row.invoice_pdf_url, row.invoice_type) {
        (Some(pdf_url), Some(t)) => Some(InvoiceView {
            invoice_type: invoice_name(t),
            pdf_url,
        }),
        _ => None,
    };
    let mut exchanges = rows::exchanges(conn, code).await?;
    for x in &mut exchanges {
        let alias = x
            .get("status")
            .and_then(Value::as_str)
            .and_then(ExchangeState::parse)
            .and_then(|s| s.korean_alias());
        if let Some(obj) = x.as_object_mut() {
            obj.insert("korean_status".into(), json!(alias));
        }
    }
    let timeline = rows::timeline(conn, code)
        .await?
        .into_iter()
        .map(|r| TimelineView {
            subject: r.subject,
            source: r.source,
            event: r.event,
            applied: r.applied,
            reason: r.reason,
            status_before: r.status_before,
            status_after: r.status_after,
            message_id: r.message_id,
            detail: r.detail,
            at: ts(r.at),
        })
        .collect();
    let delivery_address: Address =
        serde_json::from_value(row.address).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some(OrderView {
        order_code: OrderCode(row.order_code),
        uid: row.uid,
        parent_order_code: row.parent_order_code.map(OrderCode),
        child_order_codes: rows::children(conn, code).await?,
        korean_status: state
            .and_then(|s| s.korean_alias(kind == OrderKind::Exchange))
            .map(str::to_owned),
        spec_code: state.and_then(|s| s.spec_code()).map(str::to_owned),
        kind: row.kind,
        status: row.status,
        order_amount: row.order_amount,
        shipping_cost: row.shipping_cost,
        paid_amount: row.paid_amount,
        delivery_address,
        remark: row.remark,
        items,
        shipments,
        invoice,
        invoices,
        tracking: rows::tracking(conn, code).await?,
        exchanges,
        returns: rows::returns(conn, code).await?,
        timeline,
        created_at: ts(row.created_at),
    }))
}

/// A customer's orders, newest first, optionally in one state.
pub async fn list(
    conn: &mut PgConnection,
    uid: i64,
    status: Option<OrderState>,
    limit: i64,
) -> Result<Vec<OrderSummary>, sqlx::Error> {
    Ok(
        rows::list_for_customer(conn, uid, status.map(|s| s.as_str()), limit)
            .await?
            .into_iter()
            .map(|r| OrderSummary {
                order_code: OrderCode(r.order_code),
                uid: r.uid,
                parent_order_code: r.parent_order_code.map(OrderCode),
                status: r.status,
                order_amount: r.order_amount,
                created_at: ts(r.created_at),
            })
            .collect(),
    )
}
