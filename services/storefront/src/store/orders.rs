//! Writes of the HTTP order commands: new orders with their lines, address changes, and the
//! lines an exchange or return refers to.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::PgConnection;

use crate::ids::OrderCode;
use crate::machine::OrderState;

/// A new `orders` row; amounts are two-decimal text (`numeric(14,2)`).
pub struct NewOrderRow<'a> {
    pub code: OrderCode,
    pub uid: i64,
    pub parent: Option<OrderCode>,
    pub is_split_parent: bool,
    pub order_amount: &'a str,
    pub shipping_cost: &'a str,
    pub address: &'a Value,
    pub remark: &'a str,
}

/// A new `order_items` row.
pub struct NewItemRow<'a> {
    pub line_no: i32,
    pub product_sku: i64,
    pub product_skn: i64,
    pub warehouse_id: i64,
    pub quantity: i64,
    pub unit_price: &'a str,
}

/// Inserts an order in `pending_payment` with its lines.
pub async fn insert_order(
    conn: &mut PgConnection,
    order: &NewOrderRow<'_>,
    items: &[NewItemRow<'_>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO orders (order_code, uid, parent_order_code, is_split_parent, status, \
         order_amount, shipping_cost, address, remark) \
         VALUES ($1, $2, $3, $4, $5, $6::text::numeric, $7::text::numeric, $8, $9)",
        order.code.get(),
        order.uid,
        order.parent.map(OrderCode::get),
        order.is_split_parent,
        OrderState::PendingPayment.as_str(),
        order.order_amount,
        order.shipping_cost,
        order.address,
        order.remark,
    )
    .execute(&mut *conn)
    .await?;
    for item in items {
        sqlx::query!(
            "INSERT INTO order_items (order_code, line_no, product_sku, product_skn, \
             warehouse_id, buy_number, last_price) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::numeric)",
            order.code.get(),
            item.line_no,
            item.product_sku,
            item.product_skn,
            item.warehouse_id,
            item.quantity,
            item.unit_price,
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replaces an order's delivery address.
pub async fn update_address(
    conn: &mut PgConnection,
    code: OrderCode,
    address: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE orders SET address = $2, updated_at = now() WHERE order_code = $1",
        code.get(),
        address
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What an exchange or return line takes from the order line it names.
#[derive(Debug)]
pub struct OrderLine {
    pub product_skn: i64,
    /// Two-decimal text.
    pub last_price: String,
}

/// The order's lines by SKU.
pub async fn lines_by_sku(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<HashMap<i64, OrderLine>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT product_sku, product_skn, last_price::text AS "last_price!"
           FROM order_items WHERE order_code = $1"#,
        code.get()
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.product_sku,
                OrderLine {
                    product_skn: r.product_skn,
                    last_price: r.last_price,
                },
            )
        })
        .collect())
}
