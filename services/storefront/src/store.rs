//! Database access shared by the HTTP API, the consumers and the auto-cancel sweeper. Every
//! function takes the caller's connection, so the caller's transaction covers the state change
//! and its outbox rows.
//!
//! - [`orders_lock`]: locking reads of orders, exchanges and returns (typed ids);
//! - [`events`]: offering an event (machine step + status + timeline + metrics) and what the
//!   consumers store from incoming messages;
//! - [`timeline`]: the per-order timeline, sanitised;
//! - [`auto_cancel`]: the unpaid-order sweep's claims.

pub mod events;
pub mod orders_lock;
pub mod timeline;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

pub mod after_sales;
pub mod auto_cancel;
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

pub use events::{offer_exchange_event, offer_order_event, offer_return_event, record_note};
pub use orders_lock::{ExchangeHead, OrderHead, OrderKind, ReturnHead};
pub use timeline::{record, Entry};

/// Next id from a sequence.
pub async fn next_order_code(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT nextval('storefront_order_code_seq') AS "code!""#)
        .fetch_one(&mut *conn)
        .await
}

pub async fn next_after_sale_id(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT nextval('storefront_after_sale_id_seq') AS "id!""#)
        .fetch_one(&mut *conn)
        .await
}
