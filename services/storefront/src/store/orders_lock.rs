//! Locking reads: an order (and its JIT children), an exchange or a return, each locked
//! `FOR UPDATE` for the rest of the caller's transaction. Exchanges and returns are found by our
//! id or by the ERP's; the id's type picks the lookup.

use sqlx::types::Json;
use sqlx::PgConnection;

use super::Address;
use crate::ids::{ErpExchangeId, ErpReturnId, ExchangeId, OrderCode, ReturnId};
use crate::machine::{ExchangeState, OrderState, ReturnState};

/// What kind of order a row is (`orders.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    /// Placed through the API.
    Customer,
    /// The ERP's replacement order of an exchange.
    ExchangeReplacement,
}

impl OrderKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderKind::Customer => "customer",
            OrderKind::ExchangeReplacement => "exchange",
        }
    }

    pub fn parse(text: &str) -> Option<OrderKind> {
        match text {
            "customer" => Some(OrderKind::Customer),
            "exchange" => Some(OrderKind::ExchangeReplacement),
            _ => None,
        }
    }
}

/// The columns of `orders` the state logic needs.
#[derive(Clone, Debug)]
pub struct OrderHead {
    pub order_code: i64,
    pub uid: i64,
    pub parent_order_code: Option<i64>,
    pub is_split_parent: bool,
    pub kind: OrderKind,
    pub status: OrderState,
    pub order_amount_cents: i64,
    pub paid_amount_cents: Option<i64>,
    pub address: Address,
}

impl OrderHead {
    pub fn code(&self) -> OrderCode {
        OrderCode(self.order_code)
    }
}

struct OrderRow {
    order_code: i64,
    uid: i64,
    parent_order_code: Option<i64>,
    is_split_parent: bool,
    kind: String,
    status: String,
    order_amount_cents: i64,
    paid_amount_cents: Option<i64>,
    address: Json<Address>,
}

fn decode_error(what: &str, text: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {text:?} in the database").into())
}

impl TryFrom<OrderRow> for OrderHead {
    type Error = sqlx::Error;
    fn try_from(r: OrderRow) -> Result<Self, sqlx::Error> {
        Ok(OrderHead {
            order_code: r.order_code,
            uid: r.uid,
            parent_order_code: r.parent_order_code,
            is_split_parent: r.is_split_parent,
            kind: OrderKind::parse(&r.kind).ok_or_else(|| decode_error("order kind", &r.kind))?,
            status: OrderState::parse(&r.status)
                .ok_or_else(|| decode_error("order status", &r.status))?,
            order_amount_cents: r.order_amount_cents,
            paid_amount_cents: r.paid_amount_cents,
            address: r.address.0,
        })
    }
}

/// Reads an order and locks it for the rest of the transaction.
pub async fn lock_order(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Option<OrderHead>, sqlx::Error> {
    let row = sqlx::query_as!(
        OrderRow,
        r#"SELECT order_code, uid, parent_order_code, is_split_parent, kind, status,
                  (order_amount * 100)::bigint AS "order_amount_cents!",
                  (paid_amount * 100)::bigint AS paid_amount_cents,
                  address AS "address: Json<Address>"
           FROM orders WHERE order_code = $1 FOR UPDATE"#,
        code.get()
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(OrderHead::try_from).transpose()
}

/// The JIT split children of `parent`, locked, in order-code order.
pub async fn lock_children(
    conn: &mut PgConnection,
    parent: OrderCode,
) -> Result<Vec<OrderHead>, sqlx::Error> {
    let rows = sqlx::query_as!(
        OrderRow,
        r#"SELECT order_code, uid, parent_order_code, is_split_parent, kind, status,
                  (order_amount * 100)::bigint AS "order_amount_cents!",
                  (paid_amount * 100)::bigint AS paid_amount_cents,
                  address AS "address: Json<Address>"
           FROM orders WHERE parent_order_code = $1 ORDER BY order_code FOR UPDATE"#,
        parent.get()
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(OrderHead::try_from).collect()
}

/// An exchange order's columns the consumers and the API need.
#[derive(Clone, Debug)]
pub struct ExchangeHead {
    pub id: i64,
    pub order_code: i64,
    pub uid: i64,
    pub status: ExchangeState,
    pub erp_exchange_id: Option<i64>,
    /// Where the replacement goes.
    pub address: Address,
    pub goods: serde_json::Value,
}

struct ExchangeRow {
    id: i64,
    order_code: i64,
    uid: i64,
    status: String,
    erp_exchange_id: Option<i64>,
    address: Json<Address>,
    goods: serde_json::Value,
}

impl TryFrom<ExchangeRow> for ExchangeHead {
    type Error = sqlx::Error;
    fn try_from(r: ExchangeRow) -> Result<Self, sqlx::Error> {
        Ok(ExchangeHead {
            id: r.id,
            order_code: r.order_code,
            uid: r.uid,
            status: ExchangeState::parse(&r.status)
                .ok_or_else(|| decode_error("exchange status", &r.status))?,
            erp_exchange_id: r.erp_exchange_id,
            address: r.address.0,
            goods: r.goods,
        })
    }
}

/// Locks an exchange by our id.
pub async fn lock_exchange(
    conn: &mut PgConnection,
    id: ExchangeId,
) -> Result<Option<ExchangeHead>, sqlx::Error> {
    sqlx::query_as!(
        ExchangeRow,
        r#"SELECT id, order_code, uid, status, erp_exchange_id,
                  address AS "address: Json<Address>", goods
           FROM exchange_orders WHERE id = $1 FOR UPDATE"#,
        id.get()
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(ExchangeHead::try_from)
    .transpose()
}

/// Locks an exchange by the ERP's id.
pub async fn lock_exchange_by_erp_id(
    conn: &mut PgConnection,
    id: ErpExchangeId,
) -> Result<Option<ExchangeHead>, sqlx::Error> {
    sqlx::query_as!(
        ExchangeRow,
        r#"SELECT id, order_code, uid, status, erp_exchange_id,
                  address AS "address: Json<Address>", goods
           FROM exchange_orders WHERE erp_exchange_id = $1 FOR UPDATE"#,
        id.get()
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(ExchangeHead::try_from)
    .transpose()
}

/// Locks the exchange whose replacement order is `code` (`erp.createChangeOrder`'s
/// `new_order_code`).
pub async fn lock_exchange_by_replacement(
    conn: &mut PgConnection,
    code: OrderCode,
) -> Result<Option<ExchangeHead>, sqlx::Error> {
    sqlx::query_as!(
        ExchangeRow,
        r#"SELECT id, order_code, uid, status, erp_exchange_id,
                  address AS "address: Json<Address>", goods
           FROM exchange_orders WHERE new_order_code = $1 FOR UPDATE"#,
        code as OrderCode
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(ExchangeHead::try_from)
    .transpose()
}

/// A return order's columns the consumers and the API need.
#[derive(Clone, Debug)]
pub struct ReturnHead {
    pub id: i64,
    pub order_code: i64,
    pub uid: i64,
    pub status: ReturnState,
    pub erp_returned_id: Option<i64>,
}

struct ReturnRow {
    id: i64,
    order_code: i64,
    uid: i64,
    status: String,
    erp_returned_id: Option<i64>,
}

impl TryFrom<ReturnRow> for ReturnHead {
    type Error = sqlx::Error;
    fn try_from(r: ReturnRow) -> Result<Self, sqlx::Error> {
        Ok(ReturnHead {
            id: r.id,
            order_code: r.order_code,
            uid: r.uid,
            status: ReturnState::parse(&r.status)
                .ok_or_else(|| decode_error("return status", &r.status))?,
            erp_returned_id: r.erp_returned_id,
        })
    }
}

/// Locks a return by our id.
pub async fn lock_return(
    conn: &mut PgConnection,
    id: ReturnId,
) -> Result<Option<ReturnHead>, sqlx::Error> {
    sqlx::query_as!(
        ReturnRow,
        "SELECT id, order_code, uid, status, erp_returned_id FROM return_orders WHERE id = $1 FOR UPDATE",
        id.get()
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(ReturnHead::try_from)
    .transpose()
}

/// Locks a return by the ERP's id.
pub async fn lock_return_by_erp_id(
    conn: &mut PgConnection,
    id: ErpReturnId,
) -> Result<Option<ReturnHead>, sqlx::Error> {
    sqlx::query_as!(
        ReturnRow,
        "SELECT id, order_code, uid, status, erp_returned_id FROM return_orders WHERE erp_returned_id = $1 FOR UPDATE",
        id.get()
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(ReturnHead::try_from)
    .transpose()
}
