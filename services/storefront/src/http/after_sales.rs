//! What exchanges and returns share: the order they are made on, its lines, the customer's
//! cancel of a request the ERP acknowledged, the waybill timeline note.

use std::collections::HashMap;

use orderbus_bus::Outbox;
use orderbus_contracts as c;
use serde_json::json;
use sqlx::PgConnection;

use super::error::{ApiError, Subject};
use super::support::{must_order, refused};
use super::types::Waybill;
use crate::ids::OrderCode;
use crate::machine::Outcome;
use crate::store::orders::OrderLine;
use crate::store::{self, OrderHead, Source};

/// The order an exchange or return is made on: a delivered order that is not a split parent
/// (the children are the fulfilment units).
pub async fn after_sale_order(
    conn: &mut PgConnection,
    code: OrderCode,
    event: &'static str,
) -> Result<OrderHead, ApiError> {
    let order = must_order(conn, code).await?;
    if order.is_split_parent {
        return Err(ApiError::conflict(
            order.status,
            "exchanges and returns are made on the child orders of a split order",
        )
        .on(code, Subject::Order, event));
    }
    if !order.status.after_sale_allowed() {
        return Err(ApiError::conflict(
            order.status,
            "exchanges and returns need a delivered order",
        )
        .on(code, Subject::Order, event));
    }
    Ok(order)
}

/// The order line a requested line names, or a 400 naming the field.
pub fn line(
    lines: &HashMap<i64, OrderLine>,
    code: OrderCode,
    index: usize,
    sku: i64,
) -> Result<&OrderLine, ApiError> {
    lines.get(&sku).ok_or_else(|| {
        ApiError::invalid(
            format!("goods[{index}].product_sku"),
            format!("{sku} is not a line of order {code}"),
        )
    })
}

/// The timeline note of a customer's waybill.
pub async fn waybill_note(
    conn: &mut PgConnection,
    order_code: OrderCode,
    subject: Subject,
    status: &str,
    w: &Waybill,
) -> Result<(), ApiError> {
    store::record(
        conn,
        store::Entry {
            order_code: order_code.get(),
            subject: subject.to_string(),
            source: &Source::http(),
            event: "customer_waybill",
            applied: true,
            reason: None,
            before: Some(status),
            after: Some(status),
            detail: json!({
                "express_id": w.express_id,
                "express_name": w.express_name,
                "express_number": w.express_number,
            }),
        },
    )
    .await?;
    Ok(())
}

/// The ERP's id of an after-sale request the customer may cancel, or the 409 saying why not
/// (also written on the timeline).
pub fn cancellable<S: std::fmt::Display + Copy>(
    check: Outcome<S>,
    current: S,
    erp_id: Option<i64>,
    order_code: OrderCode,
    subject: Subject,
    event: &'static str,
) -> Result<i64, ApiError> {
    let noun = match subject {
        Subject::Exchange(_) => "exchange",
        Subject::Return(_) => "return",
        Subject::Order => "order",
    };
    if !matches!(check, Outcome::Applied { .. }) {
        return Err(refused(check, &format!("cancel the {noun}")).on(order_code, subject, event));
    }
    erp_id.ok_or_else(|| {
        ApiError::conflict(
            current,
            format!("the ERP has not acknowledged the {noun} yet; cancel once it has"),
        )
        .on(order_code, subject, event)
    })
}

/// `order.changeRefundCancel` for the ERP's request `erp_id`.
pub async fn send_cancel(
    conn: &mut PgConnection,
    erp_id: i64,
    kind: c::AfterSaleKind,
) -> Result<(), ApiError> {
    Outbox::new()
        .send(
            conn,
            &c::ChangeRefundCancel {
                id: erp_id,
                status: c::AfterSaleCancelStatus::UserCancelled,
                kind,
            },
        )
        .await?;
    Ok(())
}
