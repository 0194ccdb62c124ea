//! Writes of the HTTP after-sale commands: new exchange and return orders, the customer's
//! waybill on them.

use serde_json::Value;
use sqlx::PgConnection;

use crate::ids::{ExchangeId, OrderCode, ReturnId};
use crate::machine::{ExchangeState, ReturnState};

/// A new `exchange_orders` row (in `requested`).
pub struct NewExchangeRow<'a> {
    pub id: ExchangeId,
    pub order_code: OrderCode,
    pub uid: i64,
    pub delivery_type: i64,
    pub exchange_mode: i64,
    pub receipt_time: &'a str,
    pub remark: &'a str,
    pub address: &'a Value,
    pub goods: &'a Value,
}

pub async fn insert_exchange(
    conn: &mut PgConnection,
    x: &NewExchangeRow<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO exchange_orders (id, order_code, uid, status, delivery_type, exchange_mode, \
         receipt_time, remark, address, goods) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        x.id.get(),
        x.order_code.get(),
        x.uid,
        ExchangeState::Requested.as_str(),
        x.delivery_type,
        x.exchange_mode,
        x.receipt_time,
        x.remark,
        x.address,
        x.goods,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A new `return_orders` row (in `submitted`): the refund's payee and bank fields.
pub struct NewReturnRow<'a> {
    pub id: ReturnId,
    pub order_code: OrderCode,
    pub uid: i64,
    pub return_amount_mode: &'a str,
    pub payee_name: &'a str,
    pub bank_id: &'a str,
    pub bank_name: &'a str,
    pub head_bank_name: &'a str,
    pub bank_card: &'a str,
    pub alipay_account: &'a str,
    pub alipay_name: &'a str,
    pub area_code: &'a str,
    pub province: &'a str,
    pub city: &'a str,
    pub county: &'a str,
    pub remark: &'a str,
    pub goods: &'a Value,
}

pub async fn insert_return(
    conn: &mut PgConnection,
    r: &NewReturnRow<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO return_orders (id, order_code, uid, status, return_amount_mode, payee_name, \
         bank_id, bank_name, head_bank_name, bank_card, alipay_account, alipay_name, area_code, \
         province, city, county, remark, goods) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        r.id.get(),
        r.order_code.get(),
        r.uid,
        ReturnState::Submitted.as_str(),
        r.return_amount_mode,
        r.payee_name,
        r.bank_id,
        r.bank_name,
        r.head_bank_name,
        r.bank_card,
        r.alipay_account,
        r.alipay_name,
        r.area_code,
        r.province,
        r.city,
        r.county,
        r.remark,
        r.goods,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The customer's waybill for goods sent back.
pub struct WaybillRow<'a> {
    pub express_id: i64,
    pub express_name: &'a str,
    pub express_number: &'a str,
}

pub async fn set_exchange_waybill(
    conn: &mut PgConnection,
    id: ExchangeId,
    w: &WaybillRow<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE exchange_orders SET express_id = $2, express_name = $3, express_number = $4, \
         updated_at = now() WHERE id = $1",
        id.get(),
        w.express_id,
        w.express_name,
        w.express_number,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_return_waybill(
    conn: &mut PgConnection,
    id: ReturnId,
    w: &WaybillRow<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE return_orders SET express_id = $2, express_name = $3, express_number = $4, \
         updated_at = now() WHERE id = $1",
        id.get(),
        w.express_id,
        w.express_name,
        w.express_number,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
