//! Typed QPay messages with the bank's exact field names.
//!
//! Replies are decoded leniently (every field the bank might omit defaults) so that a missing
//! optional field never fails a payment; the fields the protocol cannot work without
//! (`Status`, `Description`) are checked by the client.

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Money in the bank's wire unit: an integer with **two implied decimals** (NT$500 is `50000`).
///
/// The only constructors name their unit, so a caller cannot send dollars where cents are
/// expected. At most 9 digits on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u64);

/// An amount outside the 9-digit wire range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount out of range (max 999999999 hundredths of NT$)")]
pub struct AmountOutOfRange;

impl Amount {
    /// Largest wire value (9 digits).
    pub const MAX_WIRE: u64 = 999_999_999;

    /// Whole New Taiwan dollars: `from_twd(500)` is sent as `50000`.
    pub fn from_twd(dollars: u64) -> Result<Self, AmountOutOfRange> {
        dollars
            .checked_mul(100)
            .filter(|v| *v <= Self::MAX_WIRE)
            .map(Amount)
            .ok_or(AmountOutOfRange)
    }

    /// Hundredths of a dollar (the wire value itself).
    pub fn from_hundredths(v: u64) -> Result<Self, AmountOutOfRange> {
        (v <= Self::MAX_WIRE)
            .then_some(Amount(v))
            .ok_or(AmountOutOfRange)
    }

    /// The integer sent on the wire (hundredths).
    pub fn wire_value(self) -> u64 {
        self.0
    }

    /// Whole dollars, truncating the implied decimals.
    pub fn whole_twd(self) -> u64 {
        self.0 / 100
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NT${}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    // Accepts the integer form (OrderCreate/OrderQuery) and the string form
    // (`TSResultContent.Amount`, e.g. "9440300").
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let v = match Raw::deserialize(d)? {
            Raw::N(n) => n,
            Raw::S(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| de::Error::custom("Amount is not an integer"))?,
        };
        Amount::from_hundredths(v).map_err(de::Error::custom)
    }
}

/// Serde helper for fields where the bank sends the amount as a JSON string.
pub mod amount_as_string {
    use super::Amount;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Amount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.wire_value().to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        Amount::deserialize(d)
    }
}

/// `PayType`: `A` ATM virtual account, `C` credit card; other letters (store, mobile pay) are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PayType {
    Atm,
    Card,
    Other(String),
}

impl PayType {
    pub fn as_str(&self) -> &str {
        match self {
            PayType::Atm => "A",
            PayType::Card => "C",
            PayType::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> PayType {
        match s {
            "A" => PayType::Atm,
            "C" => PayType::Card,
            other => PayType::Other(other.to_owned()),
        }
    }
}

impl Default for PayType {
    fn default() -> Self {
        PayType::Other(String::new())
    }
}

impl Serialize for PayType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PayType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PayType::parse(&String::deserialize(d)?))
    }
}

/// `PayFlag` condition of OrderQuery: `Y` paid/captured, `N` not yet, `O` overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayFlag {
    #[serde(rename = "Y")]
    Paid,
    #[serde(rename = "N")]
    Unpaid,
    #[serde(rename = "O")]
    Overdue,
}

impl PayFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            PayFlag::Paid => "Y",
            PayFlag::Unpaid => "N",
            PayFlag::Overdue => "O",
        }
    }
}

/// Formats a minute-precision timestamp as the bank's `yyyyMMddHHmm` (Taiwan local time).
pub fn fmt_minute(t: NaiveDateTime) -> String {
    t.format("%Y%m%d%H%M").to_string()
}

/// Parses `yyyyMMddHHmm`.
pub fn parse_minute(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y%m%d%H%M").ok()
}

/// Truncates to the minute (the bank's date conditions have minute precision).
pub fn trunc_minute(t: NaiveDateTime) -> NaiveDateTime {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

// ------------------------------------------------------------------------------------------------
// OrderCreate

/// How the customer pays; the variant decides `PayType` and which parameter object is sent,
/// so an ATM order cannot be sent without `ExpireDate` nor a card order without `CardParam`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentMethod {
    /// `PayType=A`: virtual account valid until the end of `expire_date`.
    Atm { expire_date: NaiveDate },
    /// `PayType=C`.
    Card(CardOptions),
}

/// `CardParam` of a card order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOptions {
    /// `AutoBilling`: capture automatically (`Y`) or leave authorised for later capture (`N`).
    pub auto_billing: bool,
    /// `ExpBillingDays` (1-7 in the sandbox), required when `auto_billing` is false.
    pub exp_billing_days: Option<u8>,
    /// `ExpMinutes` (1-30): validity of the card page.
    pub exp_minutes: Option<u8>,
    /// `PayTypeSub`, `ONE` = pay in full (the only value the sandbox supports).
    pub pay_type_sub: String,
}

impl Default for CardOptions {
    fn default() -> Self {
        CardOptions {
            auto_billing: true,
            exp_billing_days: None,
            exp_minutes: Some(10),
            pay_type_sub: "ONE".to_owned(),
        }
    }
}

/// A new order, as the caller describes it; `ShopNo` and `CurrencyID` are added by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCreateRequest {
    pub order_no: String,
    pub amount: Amount,
    pub method: PaymentMethod,
    pub prdt_name: String,
    pub memo: Option<String>,
    pub param1: Option<String>,
    pub param2: Option<String>,
    pub param3: Option<String>,
    pub return_url: Option<String>,
    pub backend_url: Option<String>,
}

/// `ATMParam` of an OrderCreate request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtmParamIn {
    #[serde(rename = "ExpireDate", default)]
    pub expire_date: String,
}

/// `CardParam` of an OrderCreate request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardParamIn {
    #[serde(
        rename = "AutoBilling",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub auto_billing: String,
    #[serde(
        rename = "ExpBillingDays",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exp_billing_days: Option<u32>,
    #[serde(
        rename = "ExpMinutes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exp_minutes: Option<u32>,
    #[serde(
        rename = "PayTypeSub",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub pay_type_sub: String,
}

/// The OrderCreate message exactly as on the wire (used by the simulator to parse requests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreateWire {
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "OrderNo", default)]
    pub order_no: String,
    #[serde(rename = "Amount")]
    pub amount: Amount,
    #[serde(rename = "CurrencyID", default)]
    pub currency_id: String,
    #[serde(rename = "PayType", default)]
    pub pay_type: PayType,
    #[serde(rename = "ATMParam", default, skip_serializing_if = "Option::is_none")]
    pub atm_param: Option<AtmParamIn>,
    #[serde(rename = "CardParam", default, skip_serializing_if = "Option::is_none")]
    pub card_param: Option<CardParamIn>,
    #[serde(rename = "PrdtName", default)]
    pub prdt_name: String,
    #[serde(rename = "Memo", default, skip_serializing_if = "String::is_empty")]
    pub memo: String,
    #[serde(rename = "Param1", default, skip_serializing_if = "String::is_empty")]
    pub param1: String,
    #[serde(rename = "Param2", default, skip_serializing_if = "String::is_empty")]
    pub param2: String,
    #[serde(rename = "Param3", default, skip_serializing_if = "String::is_empty")]
    pub param3: String,
    #[serde(
        rename = "ReturnURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub return_url: String,
    #[serde(
        rename = "BackendURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub backend_url: String,
}

impl OrderCreateRequest {
    /// The wire message for `shop_no`.
    pub fn to_wire(&self, shop_no: &str) -> OrderCreateWire {
        let (pay_type, atm_param, card_param) = match &self.method {
            PaymentMethod::Atm { expire_date } => (
                PayType::Atm,
                Some(AtmParamIn {
                    expire_date: expire_date.format("%Y%m%d").to_string(),
                }),
                None,
            ),
            PaymentMethod::Card(c) => (
                PayType::Card,
                None,
                Some(CardParamIn {
                    auto_billing: if c.auto_billing { "Y" } else { "N" }.to_owned(),
                    exp_billing_days: if c.auto_billing {
                        None
                    } else {
                        c.exp_billing_days.map(u32::from)
                    },
                    exp_minutes: c.exp_minutes.map(u32::from),
                    pay_type_sub: c.pay_type_sub.clone(),
                }),
            ),
        };
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        OrderCreateWire {
            shop_no: shop_no.to_owned(),
            order_no: self.order_no.clone(),
            amount: self.amount,
            currency_id: "TWD".to_owned(),
            pay_type,
            atm_param,
            card_param,
            prdt_name: self.prdt_name.clone(),
            memo: opt(&self.memo),
            param1: opt(&self.param1),
            param2: opt(&self.param2),
            param3: opt(&self.param3),
            return_url: opt(&self.return_url),
            backend_url: opt(&self.backend_url),
        }
    }
}

/// `ATMParam` in replies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtmInfo {
    #[serde(rename = "AtmPayNo", default)]
    pub atm_pay_no: String,
    #[serde(rename = "WebAtmURL", default)]
    pub web_atm_url: String,
    #[serde(rename = "OtpURL", default)]
    pub otp_url: String,
    #[serde(rename = "BankNo", default, skip_serializing_if = "String::is_empty")]
    pub bank_no: String,
    #[serde(rename = "AcctNo", default, skip_serializing_if = "String::is_empty")]
    pub acct_no: String,
}

/// `CardParam` in replies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardInfo {
    #[serde(rename = "CardPayURL", default)]
    pub card_pay_url: String,
    #[serde(rename = "LeftCCNo", default, skip_serializing_if = "String::is_empty")]
    pub left_cc_no: String,
    #[serde(
        rename = "RightCCNo",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub right_cc_no: String,
    #[serde(rename = "AuthCode", default, skip_serializing_if = "String::is_empty")]
    pub auth_code: String,
    #[serde(
        rename = "CCExpDate",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cc_exp_date: String,
    #[serde(rename = "CCToken", default, skip_serializing_if = "String::is_empty")]
    pub cc_token: String,
}

/// OrderCreate reply message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreateResponse {
    #[serde(rename = "OrderNo", default)]
    pub order_no: String,
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "TSNo", default)]
    pub ts_no: String,
    #[serde(rename = "Amount", default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "Param1", default)]
    pub param1: String,
    #[serde(rename = "Param2", default)]
    pub param2: String,
    #[serde(rename = "Param3", default)]
    pub param3: String,
    #[serde(rename = "PayType", default)]
    pub pay_type: PayType,
    #[serde(rename = "ATMParam", default, skip_serializing_if = "Option::is_none")]
    pub atm_param: Option<AtmInfo>,
    #[serde(rename = "CardParam", default, skip_serializing_if = "Option::is_none")]
    pub card_param: Option<CardInfo>,
}

// ------------------------------------------------------------------------------------------------
// OrderPayQuery

/// OrderPayQuery request message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayQueryWire {
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "PayToken", default)]
    pub pay_token: String,
}

/// `TSResultContent`: the payment result behind a PayToken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsResultContent {
    /// `PayOut` = a payment result.
    #[serde(rename = "APType", default)]
    pub ap_type: String,
    #[serde(rename = "TSNo", default)]
    pub ts_no: String,
    #[serde(rename = "OrderNo", default)]
    pub order_no: String,
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "PayType", default)]
    pub pay_type: PayType,
    /// Sent by the bank as a JSON string.
    #[serde(
        rename = "Amount",
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_amount_str"
    )]
    pub amount: Option<Amount>,
    /// `S` paid / `F` failed.
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "Param1", default)]
    pub param1: String,
    #[serde(rename = "Param2", default)]
    pub param2: String,
    #[serde(rename = "Param3", default)]
    pub param3: String,
    /// `yyyyMMddHHmm`.
    #[serde(rename = "PayDate", default)]
    pub pay_date: String,
    #[serde(rename = "LeftCCNo", default, skip_serializing_if = "String::is_empty")]
    pub left_cc_no: String,
    #[serde(
        rename = "RightCCNo",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub right_cc_no: String,
    #[serde(
        rename = "CCExpDate",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cc_exp_date: String,
    #[serde(rename = "CCToken", default, skip_serializing_if = "String::is_empty")]
    pub cc_token: String,
    #[serde(rename = "AuthCode", default, skip_serializing_if = "String::is_empty")]
    pub auth_code: String,
}

fn ser_opt_amount_str<S: Serializer>(a: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => amount_as_string::serialize(a, s),
        None => s.serialize_none(),
    }
}

impl TsResultContent {
    /// The payment succeeded (`Status` = `S`).
    pub fn is_paid(&self) -> bool {
        self.status == "S"
    }
}

/// OrderPayQuery reply message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayQueryResponse {
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "PayToken", default)]
    pub pay_token: String,
    #[serde(rename = "Date", default)]
    pub date: String,
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(
        rename = "TSResultContent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ts_result_content: Option<TsResultContent>,
}

// ------------------------------------------------------------------------------------------------
// OrderQuery

/// Which timestamp a date window filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateField {
    /// `OrderDateTimeS/E`: when the order was created.
    Order,
    /// `PayDateTimeS/E`: when it was paid.
    Pay,
}

/// An inclusive minute-precision window (`yyyyMMddHHmm` both ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

/// OrderQuery conditions; at least one must be set (checked by [`OrderQuery::validate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderQuery {
    pub order_no: Option<String>,
    pub pay_type: Option<PayType>,
    pub order_date: Option<DateWindow>,
    pub pay_date: Option<DateWindow>,
    pub pay_flag: Option<PayFlag>,
}

/// OrderQuery request message exactly as on the wire; unused conditions are empty strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderQueryWire {
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "OrderNo", default)]
    pub order_no: String,
    #[serde(rename = "PayType", default)]
    pub pay_type: String,
    #[serde(rename = "OrderDateTimeS", default)]
    pub order_date_time_s: String,
    #[serde(rename = "OrderDateTimeE", default)]
    pub order_date_time_e: String,
    #[serde(rename = "PayDateTimeS", default)]
    pub pay_date_time_s: String,
    #[serde(rename = "PayDateTimeE", default)]
    pub pay_date_time_e: String,
    #[serde(rename = "PayFlag", default)]
    pub pay_flag: String,
}

impl OrderQuery {
    /// Rejects a query with no condition or with an inverted window.
    pub fn validate(&self) -> Result<(), String> {
        let no_order = self.order_no.as_deref().is_none_or(|s| s.trim().is_empty());
        if no_order
            && self.pay_type.is_none()
            && self.order_date.is_none()
            && self.pay_date.is_none()
            && self.pay_flag.is_none()
        {
            return Err("OrderQuery needs at least one condition".to_owned());
        }
        for w in [self.order_date, self.pay_date].into_iter().flatten() {
            if w.start > w.end {
                return Err("date window start is after its end".to_owned());
            }
        }
        Ok(())
    }

    /// The wire message for `shop_no`.
    pub fn to_wire(&self, shop_no: &str) -> OrderQueryWire {
        let (os, oe) = self
            .order_date
            .map(|w| (fmt_minute(w.start), fmt_minute(w.end)))
            .unwrap_or_default();
        let (ps, pe) = self
            .pay_date
            .map(|w| (fmt_minute(w.start), fmt_minute(w.end)))
            .unwrap_or_default();
        OrderQueryWire {
            shop_no: shop_no.to_owned(),
            order_no: self.order_no.clone().unwrap_or_default(),
            pay_type: self
                .pay_type
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            order_date_time_s: os,
            order_date_time_e: oe,
            pay_date_time_s: ps,
            pay_date_time_e: pe,
            pay_flag: self
                .pay_flag
                .map(|f| f.as_str().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// One row of `OrderList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    #[serde(rename = "OrderNo", default)]
    pub order_no: String,
    #[serde(rename = "TSNo", default)]
    pub ts_no: String,
    #[serde(rename = "TSDate", default)]
    pub ts_date: String,
    #[serde(
        rename = "ApprovedDate",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub approved_date: String,
    #[serde(rename = "PayDate", default)]
    pub pay_date: String,
    #[serde(rename = "Amount", default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(rename = "PayType", default)]
    pub pay_type: PayType,
    /// e.g. `1A400` ATM paid, `1C400` card captured, `1A100` unpaid, `1A410` expired.
    #[serde(rename = "PayStatus", default)]
    pub pay_status: String,
    #[serde(rename = "ExpireDate", default)]
    pub expire_date: String,
    #[serde(rename = "RefundFlag", default)]
    pub refund_flag: String,
    #[serde(rename = "RefundStatus", default)]
    pub refund_status: String,
    #[serde(rename = "RefundDate", default)]
    pub refund_date: String,
    #[serde(
        rename = "RefundAmount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub refund_amount: Option<Amount>,
    #[serde(rename = "PrdtName", default)]
    pub prdt_name: String,
    #[serde(rename = "Memo", default, skip_serializing_if = "String::is_empty")]
    pub memo: String,
    #[serde(rename = "Param1", default, skip_serializing_if = "String::is_empty")]
    pub param1: String,
    #[serde(rename = "Param2", default, skip_serializing_if = "String::is_empty")]
    pub param2: String,
    #[serde(rename = "Param3", default, skip_serializing_if = "String::is_empty")]
    pub param3: String,
    #[serde(rename = "ATMParam", default, skip_serializing_if = "Option::is_none")]
    pub atm_param: Option<AtmInfo>,
    #[serde(rename = "CardParam", default, skip_serializing_if = "Option::is_none")]
    pub card_param: Option<CardInfo>,
}

impl OrderRecord {
    /// Paid/captured: `PayStatus` is `1?400` [inferred pattern] or a `PayDate` is present.
    pub fn is_paid(&self) -> bool {
        self.pay_status.ends_with("400") || !self.pay_date.trim().is_empty()
    }
}

/// OrderQuery reply message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderQueryResponse {
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "Date", default)]
    pub date: String,
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Description", default)]
    pub description: String,
    #[serde(rename = "OrderList", default)]
    pub order_list: Vec<OrderRecord>,
}
