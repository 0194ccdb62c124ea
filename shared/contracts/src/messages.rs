//! One type per routing key of the MQ spec, with the spec's exact wire names.
//!
//! Field names are the spec's, quirks included (`delivery_tpye`, `orderCode` beside `order_code`).
//! Where a field's JSON type differs between messages, see [`crate::wire`]: both forms are accepted
//! and the form shown in *this* message's sample is emitted. Unknown extra fields are ignored
//! (tolerant reader): the ERP may add fields without breaking us, and we never emit them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::codes::{
    AfterSaleCancelStatus, AfterSaleKind, ErpOrderStatus, ErpResultCode, ExchangeStatus,
    InvoiceType, PayType, ReturnStatus, StorefrontOrderStatus,
};
use crate::rules;
use crate::wire::{self, Decimal};

// ---------------------------------------------------------------------------------------------
// order.submit and order.payment: the spec names them without a body. These bodies are defined
// by orderbus, in the spec's style (snake_case, `uid`, `order_code`, numbers as numbers,
// amounts as decimal strings like `last_price`).
// ---------------------------------------------------------------------------------------------

/// `order.submit` — 用户下单、JIT拆单: an order placed by a customer, or a child order of a JIT
/// split (then `parent_order_code` names the order it was split from). **Defined by orderbus.**
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderSubmit {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    /// Set on a JIT split child: the order code of the customer's original order.
    #[serde(
        default,
        with = "wire::opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "wire::opt_int::schema")]
    pub parent_order_code: Option<i64>,
    /// Unix seconds when the customer placed the order.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub create_time: i64,
    /// Goods total plus shipping, what the customer pays.
    pub order_amount: Decimal,
    pub shipping_cost: Decimal,
    /// Where the goods go (same field names as `order.deliveryAddress`).
    pub delivery_address: SubmitAddress,
    pub goods: Vec<SubmitGoods>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        with = "rules::optional"
    )]
    #[schemars(schema_with = "rules::optional::schema")]
    pub remark: String,
    /// Who collects the customer's money for this order; absent means `gateway`.
    #[serde(default, skip_serializing_if = "PaymentChannel::is_gateway")]
    pub payment_channel: PaymentChannel,
}

/// `order.submit.payment_channel` (defined by orderbus): who collects the customer's money.
///
/// The payments service takes payment only for `gateway` orders (and not for a JIT child, whose
/// parent pays). A shipping partner that collects the money itself (Frotel's cash on delivery or
/// its bank gateway) reports the payment with its own `order.payment`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentChannel {
    /// The shop's own payment gateway (Sinopac QPay, the payments service).
    #[default]
    Gateway,
    /// Cash collected by the shipping partner on delivery (Frotel `buy_type` 1).
    CashOnDelivery,
    /// The shipping partner's online bank payment (Frotel `buy_type` 2).
    PartnerBank,
}

impl PaymentChannel {
    pub fn is_gateway(&self) -> bool {
        matches!(self, PaymentChannel::Gateway)
    }
}

/// The delivery address inside `order.submit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubmitAddress {
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub user_name: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub mobile: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub province: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub city: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub district: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub address: String,
    #[serde(default, with = "rules::digits")]
    #[schemars(schema_with = "rules::digits::schema")]
    pub zip_code: String,
    #[serde(default, with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub email: String,
}

/// One line of `order.submit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubmitGoods {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub product_sku: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub product_skn: i64,
    /// The warehouse the goods ship from; different warehouses cause a JIT split.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub warehouse_id: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub buy_number: i64,
    /// Unit price actually paid.
    pub last_price: Decimal,
}

/// `order.payment` — 用户支付完成: the customer's payment succeeded. **Defined by orderbus.**
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPayment {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    /// Amount paid.
    pub amount: Decimal,
    pub pay_type: PayType,
    /// Which gateway took the money, e.g. `"sinopac_qpay"`.
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub payment_gateway: String,
    /// The gateway's own transaction reference (Sinopac `OrderNo`/`PayToken`, Frotel factor id).
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub gateway_trade_no: String,
    /// Unix seconds when the gateway reported the payment.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub paid_time: i64,
}

// ---------------------------------------------------------------------------------------------
// Order status, both directions.
// ---------------------------------------------------------------------------------------------

/// `order.orderStatus` — 前台订单状态同步: receipt confirmed (700), user cancel (900),
/// system auto-cancel (906). Note the camelCase `orderCode`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderStatus {
    #[serde(rename = "orderCode", with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    pub status: StorefrontOrderStatus,
}

/// `order.erpstatus` — 订单状态同步 from the ERP. Status 600 carries the waybill in `data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErpOrderStatusUpdate {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    pub status: ErpOrderStatus,
    /// Present with status 600 (已交寄): the carrier and waybill number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<ExpressData>,
}

/// `data` of `order.erpstatus` 600.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExpressData {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub express_id: i64,
    #[serde(with = "rules::waybill")]
    #[schemars(schema_with = "rules::waybill::schema")]
    pub express_number: String,
}

// ---------------------------------------------------------------------------------------------
// Exchange orders (换货单).
// ---------------------------------------------------------------------------------------------

/// `order.createChangeOrder` — 前台创建换货单: the customer asks for an exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreateChangeOrder {
    /// The storefront's exchange-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub city: String,
    /// Sent as a string here (`"320115"`), as a number in the address messages.
    #[serde(with = "rules::digits")]
    #[schemars(schema_with = "rules::digits::schema")]
    pub area_code: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub address: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub consignee_name: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub county: String,
    /// Sic: the spec spells it `delivery_tpye`.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub delivery_tpye: i64,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub email: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub exchange_mode: i64,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub mobile: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    /// A number here; the ERP's reply sends it as a string.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub init_order_code: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub source_order_code: i64,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub province: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub receipt_time: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub remark: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    #[serde(with = "rules::digits")]
    #[schemars(schema_with = "rules::digits::schema")]
    pub zip_code: String,
    pub goods: Vec<ChangeGoods>,
}

/// One line of `order.createChangeOrder.goods`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeGoods {
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub exchange_reason: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub goods_type: String,
    pub last_price: Decimal,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub new_goods_id: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub new_product_skc: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub new_product_sku: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub product_skc: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub product_skn: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub product_sku: i64,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub remark: String,
}

/// `erp.createChangeOrder` — ERP创建换货单: accepted (`code` 200) or rejected by customer
/// service (`code` 500, statuses 91).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErpChangeOrderCreated {
    pub code: ErpResultCode,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub message: String,
    pub data: ErpChangeOrderData,
}

/// `data` of `erp.createChangeOrder`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErpChangeOrderData {
    /// The storefront's exchange-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    /// Sent as a string beside numeric siblings (`"111"`).
    #[serde(with = "wire::int_as_string")]
    #[schemars(schema_with = "wire::int_as_string::schema")]
    pub init_order_code: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub source_order_code: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub new_order_code: i64,
    /// The ERP's exchange-order id (later `erp.updateChangeRefundOrderStatus` uses it as `id`).
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub exchange_id: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub returned_id: i64,
    pub exchange_status: ExchangeStatus,
    pub returned_status: ReturnStatus,
}

// ---------------------------------------------------------------------------------------------
// Return orders (退货单).
// ---------------------------------------------------------------------------------------------

/// `order.createRefundOrder` — 前台创建退货单. `uid`, `order_code` and `product_sku` are
/// strings in this message (numbers everywhere else).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreateRefundOrder {
    #[serde(with = "wire::int_as_string")]
    #[schemars(schema_with = "wire::int_as_string::schema")]
    pub uid: i64,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub alipay_account: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub alipay_name: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub area_code: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub bank_card: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub bank_id: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub head_bank_name: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub bank_name: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub city: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub county: String,
    #[serde(with = "wire::int_as_string")]
    #[schemars(schema_with = "wire::int_as_string::schema")]
    pub order_code: i64,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub payee_name: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub province: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub remark: String,
    #[serde(with = "rules::code")]
    #[schemars(schema_with = "rules::code::schema")]
    pub return_amount_mode: String,
    /// The storefront's return-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_returned_id: i64,
    pub returned_goods_list: Vec<ReturnedGoods>,
}

/// One line of `order.createRefundOrder.returned_goods_list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReturnedGoods {
    #[serde(with = "wire::int_as_string")]
    #[schemars(schema_with = "wire::int_as_string::schema")]
    pub product_sku: i64,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub goods_type: String,
    pub last_price: Decimal,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub returned_reason: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub remark: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub evidence_images: String,
}

/// `erp.createRefundOrder` — ERP创建退货单: accepted (200) or rejected (500 + status 91).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErpRefundOrderCreated {
    pub code: ErpResultCode,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub message: String,
    pub data: ErpRefundOrderData,
}

/// `data` of `erp.createRefundOrder`; the amounts are present on success only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErpRefundOrderData {
    /// The storefront's return-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    /// The ERP's return-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub returned_id: i64,
    pub returned_status: ReturnStatus,
    #[serde(
        default,
        with = "wire::opt_decimal_as_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "wire::opt_decimal_as_number::schema")]
    pub real_returned_amount: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rules::opt_optional"
    )]
    #[schemars(schema_with = "rules::opt_optional::schema")]
    pub is_return_coupon: Option<String>,
    #[serde(
        default,
        with = "wire::opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "wire::opt_int::schema")]
    pub return_yoho_coin: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// After-sale messages shared by exchanges and returns.
// ---------------------------------------------------------------------------------------------

/// `order.updateChangeRefundOrderExpressInfo` — the customer's waybill for goods sent back,
/// for an exchange (`"type": "change"`) or a return (`"type": "refund"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum AfterSaleExpressInfo {
    #[serde(rename = "change")]
    Change(ChangeExpressInfo),
    #[serde(rename = "refund")]
    Refund(RefundExpressInfo),
}

/// The exchange shape of `order.updateChangeRefundOrderExpressInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeExpressInfo {
    /// The storefront's exchange-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    /// The ERP's exchange-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub apply_id: i64,
    #[serde(with = "rules::waybill")]
    #[schemars(schema_with = "rules::waybill::schema")]
    pub express_number: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub express_name: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub express_id: i64,
}

/// The return shape of `order.updateChangeRefundOrderExpressInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefundExpressInfo {
    /// The storefront's return-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_returned_id: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    /// The ERP's return-order id.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub apply_id: i64,
    #[serde(with = "rules::waybill")]
    #[schemars(schema_with = "rules::waybill::schema")]
    pub express_number: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub express_name: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub express_id: i64,
}

/// `erp.updateChangeRefundOrderStatus` — the ERP moves an exchange (`"type": "change"`) or a
/// return (`"type": "refund"`) along. `id` is the ERP's own id of that exchange/return.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum AfterSaleStatusUpdate {
    #[serde(rename = "change")]
    Change(ChangeStatusUpdate),
    #[serde(rename = "refund")]
    Refund(RefundStatusUpdate),
}

/// The exchange shape of `erp.updateChangeRefundOrderStatus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeStatusUpdate {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    pub status: ExchangeStatus,
}

/// The return shape of `erp.updateChangeRefundOrderStatus`; amounts come with status 40.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefundStatusUpdate {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    pub status: ReturnStatus,
    #[serde(
        default,
        with = "wire::opt_decimal_as_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "wire::opt_decimal_as_number::schema")]
    pub real_returned_amount: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rules::opt_optional"
    )]
    #[schemars(schema_with = "rules::opt_optional::schema")]
    pub is_return_coupon: Option<String>,
    #[serde(
        default,
        with = "wire::opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "wire::opt_int::schema")]
    pub return_yoho_coin: Option<i64>,
}

/// `order.changeRefundCancel` — 取消退换货: the customer cancels a return (`type` 1) or an
/// exchange (`type` 2). `id` is the ERP's id of that return/exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeRefundCancel {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    pub status: AfterSaleCancelStatus,
    #[serde(rename = "type")]
    pub kind: AfterSaleKind,
}

// ---------------------------------------------------------------------------------------------
// Delivery address (a JSON array in both directions).
// ---------------------------------------------------------------------------------------------

/// One element of `order.deliveryAddress` / `erp.deliveryAddressUpdate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryAddress {
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub address: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub address_id: i64,
    /// A number here (`330225`), a string in `order.createChangeOrder`.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub area_code: i64,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub city: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub district: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub email: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub mobile: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub parent_order_code: i64,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub phone: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub province: String,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub user_name: String,
    /// A number here (`315700`), a string in `order.createChangeOrder`.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub zip_code: i64,
}

/// `order.deliveryAddress` — 用户修改收货地址: the customer changed the address (a JSON array).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CustomerAddressChange(pub Vec<DeliveryAddress>);

/// `erp.deliveryAddressUpdate` — 客服修改收货地址: customer service changed it (a JSON array).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ErpAddressChange(pub Vec<DeliveryAddress>);

// ---------------------------------------------------------------------------------------------
// Invoice and logistics.
// ---------------------------------------------------------------------------------------------

/// `erp.updateInvoicePdfUrl` — 更新电子发票开票信息. camelCase names; `invoiceType` is a
/// string (`"0"` blue, `"1"` red).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InvoicePdfUrl {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    #[serde(rename = "orderCode", with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    #[serde(rename = "pdfUrl", with = "rules::url")]
    #[schemars(schema_with = "rules::url::schema")]
    pub pdf_url: String,
    #[serde(rename = "invoiceType")]
    pub invoice_type: InvoiceType,
}

/// `order.updateExpressInfo` — 更新物流信息: one carrier tracking event. camelCase names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpressInfoUpdate {
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub uid: i64,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub accept_address: String,
    #[serde(with = "rules::optional")]
    #[schemars(schema_with = "rules::optional::schema")]
    pub accept_remark: String,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub business_type: i64,
    /// Unix seconds of the tracking event.
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub create_time: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub deal_with_cost: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub id: i64,
    /// The carrier (same ids as `express_id`).
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub logistics_type: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub order_code: i64,
    #[serde(with = "wire::int")]
    #[schemars(schema_with = "wire::int::schema")]
    pub state: i64,
    #[serde(with = "rules::required")]
    #[schemars(schema_with = "rules::required::schema")]
    pub unique_key: String,
    #[serde(with = "rules::waybill")]
    #[schemars(schema_with = "rules::waybill::schema")]
    pub waybill_code: String,
}
