//! Database access: rows, locking reads, the timeline, and "offer an event to a subject"
//! (machine step + status update + timeline entry + metrics) shared by the HTTP API, the
//! consumers and the auto-cancel sweeper. Every function takes the caller's connection, so the
//! caller's transaction covers the state change and its outbox rows.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgConnection, Row};

use crate::machine::{
    exchange_step, order_step, return_step, ExchangeEvent, ExchangeState, OrderEvent, OrderState,
    Outcome, ReturnEvent, ReturnState,
};
use crate::metrics as m;

pub mod after_sales;
pub mod idempotency;
pub mod orders;
pub mod read_model;

/// Where an event came from (timeline `source` and `message_id`).
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub message_id: Option<String>,
}

impl Source {
    pub fn http() -> Self {
        Self {
            name: "http".into(),
            message_id: None,
        }
    }
    pub fn auto_cancel() -> Self {
        Self {
            name: "auto-cancel".into(),
            message_id: None,
        }
    }
    pub fn bus(routing_key: &str, message_id: &str) -> Self {
        Self {
            name: routing_key.to_owned(),
            message_id: Some(message_id.to_owned()),
        }
    }
}

/// A delivery address as stored (the fields of `order.deliveryAddress`, codes as digit strings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Address {
    pub user_name: String,
    pub mobile: String,
    #[serde(default)]
    pub phone: String,
    pub province: String,
    pub city: String,
    #[serde(default)]
    pub district: String,
    pub address: String,
    /// Digits only (may be empty).
    #[serde(default)]
    pub zip_code: String,
    /// Digits only (may be empty).
    #[serde(default)]
    pub area_code: String,
    #[serde(default)]
    pub email: String,
    /// The customer's address-book id, 0 when none.
    #[serde(default)]
    pub address_id: i64,
}

impl Address {
    /// The `order.deliveryAddress` / `erp.deliveryAddressUpdate` element for an order.
    pub fn to_wire(
        &self,
        order_code: i64,
        parent_order_code: Option<i64>,
    ) -> orderbus_contracts::DeliveryAddress {
        orderbus_contracts::DeliveryAddress {
            address: self.address.clone(),
            address_id: self.address_id,
            area_code: self.area_code.parse().unwrap_or(0),
            city: self.city.clone(),
            district: self.district.clone(),
            email: self.email.clone(),
            mobile: self.mobile.clone(),
            order_code,
            parent_order_code: parent_order_code.unwrap_or(0),
            phone: self.phone.clone(),
            province: self.province.clone(),
            user_name: self.user_name.clone(),
            zip_code: self.zip_code.parse().unwrap_or(0),
        }
    }

    pub fn from_wire(w: &orderbus_contracts::DeliveryAddress) -> Self {
        let code = |v: i64| if v == 0 { String::new() } else { v.to_string() };
        Self {
            user_name: w.user_name.clone(),
            mobile: w.mobile.clone(),
            phone: w.phone.clone(),
            province: w.province.clone(),
            city: w.city.clone(),
            district: w.district.clone(),
            address: w.address.clone(),
            zip_code: code(w.zip_code),
            area_code: code(w.area_code),
            email: w.email.clone(),
            address_id: w.address_id,
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
    pub kind: String,
    pub status: OrderState,
    pub order_amount: String,
    pub address: Address,
}

fn state_or_err<S>(text: &str, parse: fn(&str) -> Option<S>) -> Result<S, sqlx::Error> {
    parse(text).ok_or_else(|| {
        sqlx::Error::Decode(format!("unknown status {text:?} in the database").into())
    })
}

fn head_from_row(row: &sqlx::postgres::PgRow) -> Result<OrderHead, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let address: Value = row.try_get("address")?;
    Ok(OrderHead {
        order_code: row.try_get("order_code")?,
        uid: row.try_get("uid")?,
        parent_order_code: row.try_get("parent_order_code")?,
        is_split_parent: row.try_get("is_split_parent")?,
        kind: row.try_get("kind")?,
        status: state_or_err(&status, OrderState::parse)?,
        order_amount: row.try_get("order_amount")?,
        address: serde_json::from_value(address).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

const HEAD_COLUMNS: &str = "order_code, uid, parent_order_code, is_split_parent, kind, status, \
     order_amount::text AS order_amount, address";

/// Reads an order and locks it for the rest of the transaction.
pub async fn lock_order(
    conn: &mut PgConnection,
    code: i64,
) -> Result<Option<OrderHead>, sqlx::Error> {
    let sql = format!("SELECT {HEAD_COLUMNS} FROM orders WHERE order_code = $1 FOR UPDATE");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(code)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(head_from_row).transpose()
}

/// The JIT split children of `parent`, locked, in order-code order.
pub async fn lock_children(
    conn: &mut PgConnection,
    parent: i64,
) -> Result<Vec<OrderHead>, sqlx::Error> {
    let sql = format!(
        "SELECT {HEAD_COLUMNS} FROM orders WHERE parent_order_code = $1 ORDER BY order_code FOR UPDATE"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(parent)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(head_from_row).collect()
}

/// A timeline row.
pub struct Entry<'a> {
    pub order_code: i64,
    pub subject: String,
    pub source: &'a Source,
    pub event: &'a str,
    pub applied: bool,
    pub reason: Option<String>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub detail: Value,
}

pub async fn record(conn: &mut PgConnection, e: Entry<'_>) -> Result<(), sqlx::Error> {
    record_moving(conn, e, None).await
}

/// A status change written by the same statement as its timeline row (one round trip).
struct StatusWrite<'a> {
    /// `orders`, `exchange_orders` or `return_orders` with its key column: static SQL only.
    table: &'static str,
    key_column: &'static str,
    key: i64,
    status: &'a str,
}

async fn record_moving(
    conn: &mut PgConnection,
    e: Entry<'_>,
    status: Option<StatusWrite<'_>>,
) -> Result<(), sqlx::Error> {
    const INSERT: &str = "INSERT INTO order_timeline (order_code, subject, source, event, applied, reason, \
         status_before, status_after, message_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    // A data-modifying CTE runs exactly once whether or not the INSERT reads it.
    let sql = match &status {
        Some(w) => format!(
            "WITH moved AS (UPDATE {} SET status = $11, updated_at = now() WHERE {} = $12) {INSERT}",
            w.table, w.key_column
        ),
        None => INSERT.to_owned(),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(e.order_code)
        .bind(&e.subject)
        .bind(&e.source.name)
        .bind(e.event)
        .bind(e.applied)
        .bind(&e.reason)
        .bind(e.before)
        .bind(e.after)
        .bind(&e.source.message_id)
        .bind(&e.detail);
    if let Some(w) = &status {
        query = query.bind(w.status).bind(w.key);
    }
    query.execute(&mut *conn).await?;
    if !e.applied {
        m::not_applied(
            &e.subject_kind(),
            e.event,
            e.reason.as_deref().unwrap_or("unknown"),
        );
    }
    Ok(())
}

impl Entry<'_> {
    fn subject_kind(&self) -> String {
        self.subject.split(':').next().unwrap_or("order").to_owned()
    }
}

/// Offers `event` to the (locked) order: applies the table, updates the status, records the
/// timeline. Returns the machine's outcome.
pub async fn offer_order_event(
    conn: &mut PgConnection,
    order: &OrderHead,
    event: OrderEvent,
    source: &Source,
    detail: Value,
) -> Result<Outcome<OrderState>, sqlx::Error> {
    let outcome = order_step(order.status, event);
    let subject = Subject {
        order_code: order.order_code,
        name: "order".into(),
        table: "orders",
        key_column: "order_code",
        key: order.order_code,
    };
    record_outcome(conn, subject, source, event.as_str(), outcome, detail).await?;
    Ok(outcome)
}

/// What a state machine moved: its timeline subject and the row holding its status.
struct Subject {
    order_code: i64,
    /// `order`, `exchange:<id>`, `return:<id>`.
    name: String,
    table: &'static str,
    key_column: &'static str,
    key: i64,
}

/// Records the machine's outcome on the timeline and, if it applied, the new status, in one
/// statement.
async fn record_outcome<S: Copy + std::fmt::Display>(
    conn: &mut PgConnection,
    subject: Subject,
    source: &Source,
    event: &str,
    outcome: Outcome<S>,
    detail: Value,
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
    m::event(&subject.name, event, reason.as_deref().unwrap_or("applied"));
    let write = applied.then_some(StatusWrite {
        table: subject.table,
        key_column: subject.key_column,
        key: subject.key,
        status: &after,
    });
    record_moving(
        conn,
        Entry {
            order_code: subject.order_code,
            subject: subject.name,
            source,
            event,
            applied,
            reason,
            before: Some(&before),
            after: Some(&after),
            detail,
        },
        write,
    )
    .await
}

/// Records an event that does not move a status (tracking, invoice, address), applied or not.
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
    record(
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
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Exchanges and returns
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct ExchangeHead {
    pub id: i64,
    pub order_code: i64,
    pub uid: i64,
    pub status: ExchangeState,
    pub erp_exchange_id: Option<i64>,
    pub address: Value,
    pub goods: Value,
}

#[derive(Clone, Debug)]
pub struct ReturnHead {
    pub id: i64,
    pub order_code: i64,
    pub uid: i64,
    pub status: ReturnState,
    pub erp_returned_id: Option<i64>,
}

/// Locks an exchange by our id (`by_erp = false`) or the ERP's id.
pub async fn lock_exchange(
    conn: &mut PgConnection,
    id: i64,
    by_erp: bool,
) -> Result<Option<ExchangeHead>, sqlx::Error> {
    let sql = if by_erp {
        "SELECT id, order_code, uid, status, erp_exchange_id, address, goods FROM exchange_orders WHERE erp_exchange_id = $1 FOR UPDATE"
    } else {
        "SELECT id, order_code, uid, status, erp_exchange_id, address, goods FROM exchange_orders WHERE id = $1 FOR UPDATE"
    };
    let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    Ok(Some(ExchangeHead {
        id: row.try_get("id")?,
        order_code: row.try_get("order_code")?,
        uid: row.try_get("uid")?,
        status: state_or_err(&status, ExchangeState::parse)?,
        erp_exchange_id: row.try_get("erp_exchange_id")?,
        address: row.try_get("address")?,
        goods: row.try_get("goods")?,
    }))
}

pub async fn lock_return(
    conn: &mut PgConnection,
    id: i64,
    by_erp: bool,
) -> Result<Option<ReturnHead>, sqlx::Error> {
    let sql = if by_erp {
        "SELECT id, order_code, uid, status, erp_returned_id FROM return_orders WHERE erp_returned_id = $1 FOR UPDATE"
    } else {
        "SELECT id, order_code, uid, status, erp_returned_id FROM return_orders WHERE id = $1 FOR UPDATE"
    };
    let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    Ok(Some(ReturnHead {
        id: row.try_get("id")?,
        order_code: row.try_get("order_code")?,
        uid: row.try_get("uid")?,
        status: state_or_err(&status, ReturnState::parse)?,
        erp_returned_id: row.try_get("erp_returned_id")?,
    }))
}

pub async fn offer_exchange_event(
    conn: &mut PgConnection,
    x: &ExchangeHead,
    event: ExchangeEvent,
    source: &Source,
    detail: Value,
) -> Result<Outcome<ExchangeState>, sqlx::Error> {
    let outcome = exchange_step(x.status, event);
    let subject = Subject {
        order_code: x.order_code,
        name: format!("exchange:{}", x.id),
        table: "exchange_orders",
        key_column: "id",
        key: x.id,
    };
    record_outcome(conn, subject, source, event.as_str(), outcome, detail).await?;
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
    let subject = Subject {
        order_code: r.order_code,
        name: format!("return:{}", r.id),
        table: "return_orders",
        key_column: "id",
        key: r.id,
    };
    record_outcome(conn, subject, source, event.as_str(), outcome, detail).await?;
    Ok(outcome)
}

/// Next id from a sequence.
pub async fn next_order_code(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval('storefront_order_code_seq')")
        .fetch_one(&mut *conn)
        .await
}

pub async fn next_after_sale_id(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval('storefront_after_sale_id_seq')")
        .fetch_one(&mut *conn)
        .await
}

/// The `detail` of a timeline entry for a bus message: its body as JSON (or text).
pub fn body_detail(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(body) }))
}
