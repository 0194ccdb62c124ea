//! Sinopac QPay as the service uses it: the shared client, every call recorded in the partner
//! call log, and the bank's answers turned into [`BankPayment`]s. Only what the client has
//! decrypted and Sign-checked reaches this module's callers.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, Utc};
use orderbus_partner::CallLog;
use orderbus_sinopac::client::Client;
use orderbus_sinopac::types::{
    parse_minute, DateField, DateWindow, OrderCreateRequest, OrderCreateResponse, OrderQuery,
    OrderRecord, PayFlag, TsResultContent,
};
use orderbus_sinopac::Error;
use serde_json::Value;

use crate::settle::BankPayment;

pub const PARTNER: &str = "sinopac";

/// The bank, for one shop.
#[derive(Clone)]
pub struct Bank {
    client: Client,
    calls: CallLog,
    /// The bank's local time offset (Taiwan: +8 h) for `yyyyMMddHHmm` fields.
    utc_offset_hours: i64,
}

impl Bank {
    pub fn new(client: Client, calls: CallLog, utc_offset_hours: i64) -> Self {
        Self {
            client,
            calls,
            utc_offset_hours,
        }
    }

    pub fn shop_no(&self) -> &str {
        &self.client.config().shop_no
    }

    pub fn utc_offset_hours(&self) -> i64 {
        self.utc_offset_hours
    }

    /// A bank-local minute (`yyyyMMddHHmm`) as UTC.
    pub fn to_utc(&self, local: &str) -> Option<DateTime<Utc>> {
        let t = parse_minute(local)?;
        Some((t - ChronoDuration::hours(self.utc_offset_hours)).and_utc())
    }

    /// UTC as the bank's local wall clock.
    pub fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        (t + ChronoDuration::hours(self.utc_offset_hours)).naive_utc()
    }

    pub async fn order_create(
        &self,
        order_code: i64,
        req: &OrderCreateRequest,
    ) -> Result<OrderCreateResponse, Error> {
        let order = order_code.to_string();
        self.calls
            .record(PARTNER, "OrderCreate", Some(&order), || {
                self.client.order_create(req)
            })
            .await
    }

    /// OrderPayQuery for a notification's token: the verified result, or why not.
    pub async fn pay_query(&self, pay_token: &str) -> Result<Option<BankPayment>, Error> {
        let reply = self
            .calls
            .record(PARTNER, "OrderPayQuery", None, || {
                self.client.order_pay_query(pay_token)
            })
            .await?;
        let answer = serde_json::to_value(&reply).unwrap_or(Value::Null);
        let Some(content) = reply.ts_result_content else {
            return Ok(None);
        };
        if !content.shop_no.is_empty() && content.shop_no != self.shop_no() {
            return Ok(None);
        }
        Ok(Some(self.payment_of_result(&content, pay_token, answer)))
    }

    fn payment_of_result(&self, r: &TsResultContent, token: &str, answer: Value) -> BankPayment {
        BankPayment {
            order_no: r.order_no.clone(),
            ts_no: r.ts_no.clone(),
            amount_cents: r.amount.and_then(|a| i64::try_from(a.wire_value()).ok()),
            paid_at: self.to_utc(&r.pay_date),
            pay_token: Some(token.to_owned()),
            succeeded: r.is_paid(),
            answer,
        }
    }

    /// The OrderQuery row as a payment, if the bank says it is paid.
    pub fn payment_of_record(&self, r: &OrderRecord) -> BankPayment {
        BankPayment {
            order_no: r.order_no.clone(),
            ts_no: r.ts_no.clone(),
            amount_cents: r.amount.and_then(|a| i64::try_from(a.wire_value()).ok()),
            paid_at: self.to_utc(&r.pay_date),
            pay_token: None,
            succeeded: r.is_paid(),
            answer: serde_json::to_value(r).unwrap_or(Value::Null),
        }
    }

    /// OrderQuery by OrderNo (few payments).
    pub async fn query_one(&self, order_no: &str) -> Result<Vec<OrderRecord>, Error> {
        let q = OrderQuery {
            order_no: Some(order_no.to_owned()),
            ..OrderQuery::default()
        };
        let reply = self
            .calls
            .record(PARTNER, "OrderQuery", order_no.split('-').next(), || {
                self.client.order_query(&q)
            })
            .await?;
        Ok(reply.order_list)
    }

    /// Every paid order created in `[start, end]` (UTC), the window split by the client until
    /// each reply is under the 300-row cap.
    pub async fn query_paid_window(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<OrderRecord>, Error> {
        let window = DateWindow {
            start: self.to_local(start),
            end: self.to_local(end),
        };
        let filter = OrderQuery {
            pay_flag: Some(PayFlag::Paid),
            ..OrderQuery::default()
        };
        self.calls
            .record(PARTNER, "OrderQuery(window)", None, || {
                self.client
                    .order_query_window(DateField::Order, window, &filter)
            })
            .await
    }
}
