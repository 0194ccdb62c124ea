//! Request and response bodies of the HTTP API (documented in `/openapi.json`), with the
//! checks the server applies after decoding. The `#[schema(...)]` limits state the same checks
//! in the OpenAPI document (a schema-driven fuzz test holds the two together).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::Check;
use crate::ids::{ExchangeId, OrderCode, ReturnId};
use crate::store::Address;

type CheckResult = Result<(), (String, String)>;

/// The largest amount, in cents, a `numeric(14,2)` column holds: 999 999 999 999.99. Every
/// amount and every total (line, order, split child) must stay within it.
pub const MAX_AMOUNT_CENTS: i64 = 99_999_999_999_999;
/// The same limit as text, for messages.
pub const MAX_AMOUNT_TEXT: &str = "999999999999.99";
/// Longest free-text field, in characters.
pub const MAX_TEXT_CHARS: usize = 500;
/// Most lines in an order, an exchange or a return.
pub const MAX_LINES: usize = 200;
/// Quantity bounds of an order line.
pub const QUANTITY: std::ops::RangeInclusive<i64> = 1..=10_000;

fn bad(field: impl Into<String>, msg: impl Into<String>) -> CheckResult {
    Err((field.into(), msg.into()))
}

fn required(field: &str, v: &str) -> CheckResult {
    if v.trim().is_empty() {
        return bad(field, "must not be empty");
    }
    short(field, v)
}

/// Every free-text field: bounded, and no NUL (PostgreSQL text cannot hold it, and no partner
/// expects one).
fn short(field: &str, v: &str) -> CheckResult {
    if v.contains('\0') {
        return bad(field, "must not contain NUL characters");
    }
    if v.chars().count() > MAX_TEXT_CHARS {
        return bad(field, "must be at most 500 characters");
    }
    Ok(())
}

fn digits(field: &str, v: &str) -> CheckResult {
    if v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return bad(field, "must be digits only (at most 18)");
    }
    Ok(())
}

fn positive(field: &str, v: i64) -> CheckResult {
    if v <= 0 {
        return bad(field, "must be a positive integer");
    }
    Ok(())
}

fn lines(field: &str, count: usize) -> CheckResult {
    if count == 0 {
        return bad(field, "at least one line");
    }
    if count > MAX_LINES {
        return bad(field, "at most 200 lines");
    }
    Ok(())
}

/// An amount: a decimal string with at most two decimals, between 0 and
/// [`MAX_AMOUNT_CENTS`]; returns cents.
pub fn amount_cents(field: &str, v: &str) -> Result<i64, (String, String)> {
    orderbus_contracts::Decimal::parse(v)
        .and_then(|d| d.to_cents())
        .filter(|c| (0..=MAX_AMOUNT_CENTS).contains(c))
        .ok_or_else(|| {
            (
                field.to_owned(),
                format!(
                    "must be a decimal amount from 0 to {MAX_AMOUNT_TEXT} with at most two \
                     decimals, e.g. \"88.00\""
                ),
            )
        })
}

pub fn check_address(prefix: &str, a: &Address) -> CheckResult {
    let f = |n: &str| format!("{prefix}.{n}");
    required(&f("user_name"), &a.user_name)?;
    required(&f("mobile"), &a.mobile)?;
    required(&f("province"), &a.province)?;
    required(&f("city"), &a.city)?;
    required(&f("address"), &a.address)?;
    short(&f("district"), &a.district)?;
    short(&f("phone"), &a.phone)?;
    short(&f("email"), &a.email)?;
    digits(&f("zip_code"), &a.zip_code)?;
    digits(&f("area_code"), &a.area_code)?;
    if a.address_id < 0 {
        return bad(f("address_id"), "must not be negative");
    }
    Ok(())
}

/// `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    #[schema(minimum = 1)]
    pub uid: i64,
    /// 1 to 200 lines; lines from different warehouses split the order (JIT). The goods total
    /// plus shipping must be at most 999999999999.99.
    #[schema(min_items = 1, max_items = 200)]
    pub items: Vec<OrderItemInput>,
    /// Decimal string, e.g. `"10.00"`, 0 to 999999999999.99.
    #[serde(default = "zero")]
    #[schema(pattern = r"^[0-9]{1,12}(\.[0-9]{1,2})?$")]
    pub shipping_cost: String,
    pub delivery_address: Address,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub remark: String,
}

fn zero() -> String {
    "0.00".to_owned()
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemInput {
    #[schema(minimum = 1)]
    pub product_sku: i64,
    #[schema(minimum = 1)]
    pub product_skn: i64,
    #[schema(minimum = 1)]
    pub warehouse_id: i64,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: i64,
    /// Unit price, decimal string such as `"88.00"`, 0 to 999999999999.99; quantity × unit
    /// price must stay within that limit too.
    #[schema(pattern = r"^[0-9]{1,12}(\.[0-9]{1,2})?$")]
    pub unit_price: String,
}

impl Check for CreateOrder {
    fn check(&self) -> CheckResult {
        positive("uid", self.uid)?;
        if self.items.is_empty() {
            return bad("items", "an order needs at least one item");
        }
        if self.items.len() > MAX_LINES {
            return bad("items", "at most 200 items");
        }
        for (i, it) in self.items.iter().enumerate() {
            let f = |n: &str| format!("items[{i}].{n}");
            positive(&f("product_sku"), it.product_sku)?;
            positive(&f("product_skn"), it.product_skn)?;
            positive(&f("warehouse_id"), it.warehouse_id)?;
            if !QUANTITY.contains(&it.quantity) {
                return bad(f("quantity"), "must be between 1 and 10000");
            }
            amount_cents(&f("unit_price"), &it.unit_price)?;
        }
        amount_cents("shipping_cost", &self.shipping_cost)?;
        check_address("delivery_address", &self.delivery_address)?;
        short("remark", &self.remark)?;
        // Every total (lines, order, split children) within the column's limit.
        super::split::plan(self).map(|_| ())
    }
}

/// `POST /orders/{order_code}/address`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeAddress {
    pub delivery_address: Address,
}

impl Check for ChangeAddress {
    fn check(&self) -> CheckResult {
        check_address("delivery_address", &self.delivery_address)
    }
}

/// Body of the bodiless actions (confirm receipt, cancel): `{}` or a remark.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub remark: String,
}

impl Check for ActionBody {
    fn check(&self) -> CheckResult {
        short("remark", &self.remark)
    }
}

/// `POST /orders/{order_code}/exchanges`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExchange {
    /// 1 to 200 lines.
    #[schema(min_items = 1, max_items = 200)]
    pub goods: Vec<ExchangeGoodsInput>,
    /// `delivery_tpye` on the wire (sic).
    #[serde(default = "ten")]
    #[schema(minimum = 1)]
    pub delivery_type: i64,
    #[serde(default = "ten")]
    #[schema(minimum = 1)]
    pub exchange_mode: i64,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub receipt_time: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub remark: String,
    /// Where the replacement goes; the order's delivery address when absent.
    #[serde(default)]
    pub address: Option<Address>,
}

fn ten() -> i64 {
    10
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeGoodsInput {
    /// Must be a line of the order.
    #[schema(minimum = 1)]
    pub product_sku: i64,
    #[schema(minimum = 1)]
    pub product_skc: i64,
    #[schema(minimum = 1)]
    pub new_product_sku: i64,
    #[schema(minimum = 1)]
    pub new_product_skc: i64,
    #[schema(minimum = 1)]
    pub new_goods_id: i64,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub exchange_reason: String,
    #[serde(default = "one")]
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub goods_type: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub remark: String,
}

fn one() -> String {
    "1".to_owned()
}

impl Check for CreateExchange {
    fn check(&self) -> CheckResult {
        lines("goods", self.goods.len())?;
        for (i, g) in self.goods.iter().enumerate() {
            let f = |n: &str| format!("goods[{i}].{n}");
            positive(&f("product_sku"), g.product_sku)?;
            positive(&f("product_skc"), g.product_skc)?;
            positive(&f("new_product_sku"), g.new_product_sku)?;
            positive(&f("new_product_skc"), g.new_product_skc)?;
            positive(&f("new_goods_id"), g.new_goods_id)?;
            required(&f("exchange_reason"), &g.exchange_reason)?;
            required(&f("goods_type"), &g.goods_type)?;
            short(&f("remark"), &g.remark)?;
        }
        positive("delivery_type", self.delivery_type)?;
        positive("exchange_mode", self.exchange_mode)?;
        short("receipt_time", &self.receipt_time)?;
        short("remark", &self.remark)?;
        if let Some(a) = &self.address {
            check_address("address", a)?;
        }
        Ok(())
    }
}

/// `POST /orders/{order_code}/returns`. A bank refund (`bank_card` not empty) needs a
/// `payee_name`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReturn {
    /// 1 to 200 lines.
    #[schema(min_items = 1, max_items = 200)]
    pub goods: Vec<ReturnGoodsInput>,
    /// How the refund is paid (the ERP's code, 1 to 18 digits), e.g. `"2"`.
    #[schema(pattern = r"^[0-9]{1,18}$")]
    pub return_amount_mode: String,
    /// Required (not blank) when `bank_card` is given.
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub payee_name: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub bank_id: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub bank_name: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub head_bank_name: String,
    /// Digits only, at most 32.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{0,32}$")]
    pub bank_card: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub alipay_account: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub alipay_name: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub area_code: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub province: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub city: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub county: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub remark: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnGoodsInput {
    /// Must be a line of the order.
    #[schema(minimum = 1)]
    pub product_sku: i64,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub returned_reason: String,
    #[serde(default = "one")]
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub goods_type: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub remark: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub evidence_images: String,
}

impl Check for CreateReturn {
    fn check(&self) -> CheckResult {
        lines("goods", self.goods.len())?;
        for (i, g) in self.goods.iter().enumerate() {
            let f = |n: &str| format!("goods[{i}].{n}");
            positive(&f("product_sku"), g.product_sku)?;
            required(&f("returned_reason"), &g.returned_reason)?;
            required(&f("goods_type"), &g.goods_type)?;
            short(&f("remark"), &g.remark)?;
            short(&f("evidence_images"), &g.evidence_images)?;
        }
        required("return_amount_mode", &self.return_amount_mode)?;
        digits("return_amount_mode", &self.return_amount_mode)?;
        if self.bank_card.len() > 32 || !self.bank_card.bytes().all(|b| b.is_ascii_digit()) {
            return bad("bank_card", "must be digits only (at most 32)");
        }
        for (f, v) in [
            ("payee_name", &self.payee_name),
            ("bank_id", &self.bank_id),
            ("bank_name", &self.bank_name),
            ("head_bank_name", &self.head_bank_name),
            ("alipay_account", &self.alipay_account),
            ("alipay_name", &self.alipay_name),
            ("area_code", &self.area_code),
            ("province", &self.province),
            ("city", &self.city),
            ("county", &self.county),
            ("remark", &self.remark),
        ] {
            short(f, v)?;
        }
        // A bank refund needs someone to pay.
        if !self.bank_card.is_empty() {
            required("payee_name", &self.payee_name)?;
        }
        Ok(())
    }
}

/// `POST /exchanges/{id}/waybill` and `POST /returns/{id}/waybill`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Waybill {
    #[schema(minimum = 1)]
    pub express_id: i64,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub express_name: String,
    /// Letters, digits, spaces and `-`, not blank.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[A-Za-z0-9 -]*[A-Za-z0-9-][A-Za-z0-9 -]*$"
    )]
    pub express_number: String,
}

impl Check for Waybill {
    fn check(&self) -> CheckResult {
        positive("express_id", self.express_id)?;
        required("express_name", &self.express_name)?;
        required("express_number", &self.express_number)?;
        if !self
            .express_number
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
        {
            return bad("express_number", "letters, digits, spaces and '-' only");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// `POST /orders` reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub order_code: OrderCode,
    pub status: String,
    /// JIT split children (empty when the order ships from one warehouse).
    pub child_order_codes: Vec<OrderCode>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub order_code: OrderCode,
    pub uid: i64,
    pub parent_order_code: Option<OrderCode>,
    pub child_order_codes: Vec<OrderCode>,
    /// `customer` or `exchange` (the ERP's replacement order of an exchange).
    pub kind: String,
    /// The state machine's name (see the README's table).
    pub status: String,
    /// The MQ spec code of the status, e.g. `erp 600`.
    pub spec_code: Option<String>,
    /// The Korean shop's code, where one means the same (`OS02`, `OS03`, `OS30`).
    pub korean_status: Option<String>,
    pub order_amount: String,
    pub shipping_cost: String,
    pub paid_amount: Option<String>,
    pub delivery_address: Address,
    pub remark: String,
    pub items: Vec<ItemView>,
    pub shipments: Vec<ShipmentView>,
    pub invoice: Option<InvoiceView>,
    pub invoices: Vec<InvoiceView>,
    pub tracking: Vec<Value>,
    pub exchanges: Vec<Value>,
    pub returns: Vec<Value>,
    pub timeline: Vec<TimelineView>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    pub product_sku: i64,
    pub product_skn: i64,
    pub warehouse_id: i64,
    pub quantity: i64,
    pub unit_price: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShipmentView {
    pub kind: String,
    pub express_id: i64,
    pub express_number: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceView {
    /// `blue` or `red`.
    pub invoice_type: String,
    pub pdf_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineView {
    pub subject: String,
    pub source: String,
    pub event: String,
    pub applied: bool,
    pub reason: Option<String>,
    pub status_before: Option<String>,
    pub status_after: Option<String>,
    pub message_id: Option<String>,
    pub detail: Value,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummary {
    pub order_code: OrderCode,
    pub uid: i64,
    pub parent_order_code: Option<OrderCode>,
    pub status: String,
    pub order_amount: String,
    pub created_at: String,
}

/// Reply of the exchange endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExchangeReply {
    pub id: ExchangeId,
    pub order_code: OrderCode,
    pub status: String,
}

/// Reply of the return endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnReply {
    pub id: ReturnId,
    pub order_code: OrderCode,
    pub status: String,
}

/// Reply of the order actions.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusReply {
    pub order_code: OrderCode,
    pub status: String,
}
