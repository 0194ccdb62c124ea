//! Routing keys, the parties on the bus, and decoding a body by its routing key.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::messages::*;

/// Who publishes or consumes a routing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    Storefront,
    Payments,
    Tracking,
    Fulfilment,
    Ops,
    Erp,
}

impl Party {
    pub const ALL: [Party; 6] = [
        Party::Storefront,
        Party::Payments,
        Party::Tracking,
        Party::Fulfilment,
        Party::Ops,
        Party::Erp,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Party::Storefront => "storefront",
            Party::Payments => "payments",
            Party::Tracking => "tracking",
            Party::Fulfilment => "fulfilment",
            Party::Ops => "ops",
            Party::Erp => "erp",
        }
    }
}

macro_rules! routing_keys {
    ($( $variant:ident => $key:literal, $ty:ident, $summary:literal,
        publishers: [$($pubr:ident),*], subscribers: [$($subr:ident),*]; )+) => {
        /// The 15 routing keys of the MQ spec, all on the `amq.topic` exchange.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RoutingKey { $($variant,)+ }

        impl RoutingKey {
            pub const ALL: [RoutingKey; 15] = [$(RoutingKey::$variant,)+];

            /// The routing key exactly as on the wire, e.g. `order.erpstatus`.
            pub const fn as_str(self) -> &'static str {
                match self { $(RoutingKey::$variant => $key,)+ }
            }

            /// The spec's one-line description (translated; the original in brackets).
            pub const fn summary(self) -> &'static str {
                match self { $(RoutingKey::$variant => $summary,)+ }
            }

            /// The Rust type of this key's body.
            pub const fn type_name(self) -> &'static str {
                match self { $(RoutingKey::$variant => stringify!($ty),)+ }
            }

            pub fn publishers(self) -> &'static [Party] {
                match self { $(RoutingKey::$variant => &[$(Party::$pubr),*],)+ }
            }

            pub fn subscribers(self) -> &'static [Party] {
                match self { $(RoutingKey::$variant => &[$(Party::$subr),*],)+ }
            }

            /// The JSON Schema of this key's body, generated from its Rust type.
            pub fn json_schema(self) -> schemars::Schema {
                match self { $(RoutingKey::$variant => schemars::schema_for!($ty),)+ }
            }
        }

        impl FromStr for RoutingKey {
            type Err = UnknownRoutingKey;
            fn from_str(s: &str) -> Result<Self, UnknownRoutingKey> {
                match s { $($key => Ok(RoutingKey::$variant),)+ _ => Err(UnknownRoutingKey(s.to_owned())) }
            }
        }

        $(
            impl Message for $ty {
                const ROUTING_KEY: RoutingKey = RoutingKey::$variant;
                fn correlation_id(&self) -> Option<String> {
                    correlation::$variant(self)
                }
            }
        )+

        /// Any message of the spec, decoded according to its routing key.
        #[derive(Clone, Debug, PartialEq)]
        pub enum BusMessage { $($variant($ty),)+ }

        impl BusMessage {
            /// Decodes `body` as the message type of `key`.
            pub fn decode(key: RoutingKey, body: &[u8]) -> Result<BusMessage, DecodeError> {
                match key { $(RoutingKey::$variant => decode::<$ty>(body).map(BusMessage::$variant),)+ }
            }

            pub fn routing_key(&self) -> RoutingKey {
                match self { $(BusMessage::$variant(_) => RoutingKey::$variant,)+ }
            }

            pub fn correlation_id(&self) -> Option<String> {
                match self { $(BusMessage::$variant(m) => m.correlation_id(),)+ }
            }

            /// The body as the spec's JSON.
            pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self { $(BusMessage::$variant(m) => serde_json::to_value(m),)+ }
            }
        }
    };
}

routing_keys! {
    OrderSubmit => "order.submit", OrderSubmit,
        "Customer placed an order, or a JIT split child order (用户下单、JIT拆单). Body defined by orderbus.",
        publishers: [Storefront], subscribers: [Erp, Payments, Fulfilment, Ops];
    OrderPayment => "order.payment", OrderPayment,
        "Customer's payment completed (用户支付完成). Body defined by orderbus.",
        publishers: [Payments, Fulfilment], subscribers: [Storefront, Erp, Fulfilment, Ops];
    OrderStatus => "order.orderStatus", OrderStatus,
        "Storefront order status: receipt confirmed 700, user cancel 900, system auto-cancel 906 (用户确认收货、用户取消订单、系统自动取消订单).",
        publishers: [Storefront], subscribers: [Erp, Payments, Ops];
    OrderErpStatus => "order.erpstatus", ErpOrderStatusUpdate,
        "ERP order status: audited 100, stocked 200, shipped 600, delivered 700, CS cancel 901, ERP auto-cancel 906, presale balance 40 (订单已审核、已备货、已交寄、已妥投、客服取消、ERP系统自动取消).",
        publishers: [Erp, Fulfilment], subscribers: [Storefront, Tracking, Ops];
    OrderCreateChangeOrder => "order.createChangeOrder", CreateChangeOrder,
        "Storefront created an exchange order (前台创建换货单).",
        publishers: [Storefront], subscribers: [Erp, Ops];
    ErpCreateChangeOrder => "erp.createChangeOrder", ErpChangeOrderCreated,
        "ERP created (200) or rejected (500/91) the exchange order (ERP创建换货单).",
        publishers: [Erp], subscribers: [Storefront, Tracking, Ops];
    OrderUpdateChangeRefundOrderExpressInfo => "order.updateChangeRefundOrderExpressInfo", AfterSaleExpressInfo,
        "Customer's waybill for goods sent back, exchange (type change) or return (type refund) (用户更新换货/退货订单快递信息).",
        publishers: [Storefront], subscribers: [Erp, Ops];
    ErpUpdateChangeRefundOrderStatus => "erp.updateChangeRefundOrderStatus", AfterSaleStatusUpdate,
        "ERP changed an exchange (10/30/40/50/91) or return (0/10/20/30/40/91) status (ERP退换货状态变更).",
        publishers: [Erp], subscribers: [Storefront, Tracking, Ops];
    OrderCreateRefundOrder => "order.createRefundOrder", CreateRefundOrder,
        "Storefront created a return order (前台创建退货单).",
        publishers: [Storefront], subscribers: [Erp, Ops];
    ErpCreateRefundOrder => "erp.createRefundOrder", ErpRefundOrderCreated,
        "ERP created (200) or rejected (500/91) the return order (ERP创建退货单).",
        publishers: [Erp], subscribers: [Storefront, Ops];
    OrderChangeRefundCancel => "order.changeRefundCancel", ChangeRefundCancel,
        "Customer cancelled a return (type 1) or exchange (type 2) (用户取消退货单、用户取消换货单).",
        publishers: [Storefront], subscribers: [Erp, Ops];
    OrderDeliveryAddress => "order.deliveryAddress", CustomerAddressChange,
        "Customer changed the delivery address (用户修改收货地址).",
        publishers: [Storefront], subscribers: [Erp, Ops];
    ErpDeliveryAddressUpdate => "erp.deliveryAddressUpdate", ErpAddressChange,
        "Customer service changed the delivery address (客服修改收货地址).",
        publishers: [Erp], subscribers: [Storefront, Ops];
    ErpUpdateInvoicePdfUrl => "erp.updateInvoicePdfUrl", InvoicePdfUrl,
        "Electronic invoice issued: PDF URL, blue 0 or red 1 (更新电子发票开票信息).",
        publishers: [Erp], subscribers: [Storefront, Ops];
    OrderUpdateExpressInfo => "order.updateExpressInfo", ExpressInfoUpdate,
        "Carrier tracking event for an order (更新物流信息).",
        publishers: [Tracking, Fulfilment], subscribers: [Storefront, Erp, Ops];
}

/// The order code each message is about (AMQP `correlation_id`), where it has one.
#[allow(non_snake_case)]
mod correlation {
    use super::*;

    pub fn OrderSubmit(m: &OrderSubmit) -> Option<String> {
        Some(m.order_code.to_string())
    }
    pub fn OrderPayment(m: &OrderPayment) -> Option<String> {
        Some(m.order_code.to_string())
    }
    pub fn OrderStatus(m: &OrderStatus) -> Option<String> {
        Some(m.order_code.to_string())
    }
    pub fn OrderErpStatus(m: &ErpOrderStatusUpdate) -> Option<String> {
        Some(m.order_code.to_string())
    }
    pub fn OrderCreateChangeOrder(m: &CreateChangeOrder) -> Option<String> {
        Some(m.order_code.to_string())
    }
    pub fn ErpCreateChangeOrder(m: &ErpChangeOrderCreated) -> Option<String> {
        Some(m.data.source_order_code.to_string())
    }
    pub fn OrderUpdateChangeRefundOrderExpressInfo(_: &AfterSaleExpressInfo) -> Option<String> {
        None
    }
    pub fn ErpUpdateChangeRefundOrderStatus(_: &AfterSaleStatusUpdate) -> Option<String> {
        None
    }
    pub fn OrderCreateRefundOrder(m: &CreateRefundOrder) -> Option<String> {
        Some(m.order_code.to_string())
    }
    pub fn ErpCreateRefundOrder(_: &ErpRefundOrderCreated) -> Option<String> {
        None
    }
    pub fn OrderChangeRefundCancel(_: &ChangeRefundCancel) -> Option<String> {
        None
    }
    pub fn OrderDeliveryAddress(m: &CustomerAddressChange) -> Option<String> {
        m.0.first().map(|a| a.order_code.to_string())
    }
    pub fn ErpDeliveryAddressUpdate(m: &ErpAddressChange) -> Option<String> {
        m.0.first().map(|a| a.order_code.to_string())
    }
    pub fn ErpUpdateInvoicePdfUrl(m: &InvoicePdfUrl) -> Option<String> {
        Some(m.order_code.to_string())
    }
    pub fn OrderUpdateExpressInfo(m: &ExpressInfoUpdate) -> Option<String> {
        Some(m.order_code.to_string())
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A routing key that is not one of the spec's 15.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown routing key {0:?}")]
pub struct UnknownRoutingKey(pub String);

/// A message of the MQ spec: its routing key, its type, and the order it is about.
pub trait Message:
    Serialize + DeserializeOwned + schemars::JsonSchema + Validate + Send + Sync + 'static
{
    const ROUTING_KEY: RoutingKey;

    /// The order code this message is about, used as the AMQP `correlation_id`.
    fn correlation_id(&self) -> Option<String>;
}

/// Why a body could not be decoded: the JSON path of the offending field and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{routing_key}: {}: {message}", if path.is_empty() { "body" } else { path.as_str() })]
pub struct DecodeError {
    pub routing_key: &'static str,
    /// Dotted JSON path (`data.express_id`, `goods[0].last_price`); empty for the whole body.
    pub path: String,
    pub message: String,
}

/// Decodes and validates the body of message type `M`.
///
/// Errors name the field (`data.express_id: invalid type: …`, `body: duplicate key "status"`),
/// so a parked message tells ops exactly what was wrong with it.
pub fn decode<M: Message>(body: &[u8]) -> Result<M, DecodeError> {
    let key = M::ROUTING_KEY.as_str();
    let fail = |path: String, message: String| DecodeError {
        routing_key: key,
        path,
        message,
    };
    // Parse to a value first so syntax errors and type errors are reported separately, and so
    // that tagged enums still report field paths. The strict parser refuses a repeated key
    // (`"status":100,"status":700`) instead of silently keeping the last value; U+0000 is refused
    // by the text rules of the fields the message reads, not in fields it ignores.
    let value: serde_json::Value = crate::strict::from_slice_ignoring_unread_nul(body)
        .map_err(|e| fail(e.path().to_owned(), e.reason()))?;
    let message = M::from_json(value).map_err(|(path, msg)| fail(path, msg))?;
    message
        .validate()
        .map_err(|(path, msg)| fail(path.to_owned(), msg))?;
    Ok(message)
}

/// Drops serde_json's " at line 1 column 5" suffix, which means nothing for a value.
fn strip_position(message: String) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

/// Per-message decoding rules beyond the field rules of [`crate::rules`] and
/// [`crate::Decimal`] (which apply while deserializing), used by [`decode`].
pub trait Validate: Sized + DeserializeOwned {
    /// Builds the message from parsed JSON; `Err((field path, reason))` on a mismatch.
    fn from_json(value: serde_json::Value) -> Result<Self, (String, String)> {
        from_json_with_path(value)
    }

    /// `Err((field path, reason))` when the message is well-typed but not acceptable.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        Ok(())
    }
}

/// Deserializes `value`, reporting the JSON path of the first offending field.
fn from_json_with_path<T: DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, strip_position(e.into_inner().to_string()))
    })
}

/// The after-sale messages are tagged by `type`. serde's internally tagged enums buffer the
/// body and lose the field path, so the tag is read here and the chosen shape decoded directly.
fn from_tagged_json<T>(
    value: serde_json::Value,
    change: fn(serde_json::Value) -> Result<T, (String, String)>,
    refund: fn(serde_json::Value) -> Result<T, (String, String)>,
) -> Result<T, (String, String)> {
    match value.get("type") {
        Some(serde_json::Value::String(t)) if t == "change" => change(value),
        Some(serde_json::Value::String(t)) if t == "refund" => refund(value),
        Some(other) => Err((
            "type".into(),
            format!("unknown variant {other}, expected \"change\" or \"refund\""),
        )),
        None if value.is_object() => Err((String::new(), "missing field `type`".into())),
        None => Err((String::new(), "expected a JSON object".into())),
    }
}

impl Validate for AfterSaleExpressInfo {
    fn from_json(value: serde_json::Value) -> Result<Self, (String, String)> {
        from_tagged_json(
            value,
            |v| from_json_with_path(v).map(AfterSaleExpressInfo::Change),
            |v| from_json_with_path(v).map(AfterSaleExpressInfo::Refund),
        )
    }
}

impl Validate for AfterSaleStatusUpdate {
    fn from_json(value: serde_json::Value) -> Result<Self, (String, String)> {
        from_tagged_json(
            value,
            |v| from_json_with_path(v).map(AfterSaleStatusUpdate::Change),
            |v| from_json_with_path(v).map(AfterSaleStatusUpdate::Refund),
        )
    }
}

impl Validate for ErpOrderStatusUpdate {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.status == crate::ErpOrderStatus::Shipped && self.data.is_none() {
            return Err((
                "data",
                "status 600 (shipped) requires data.express_id and data.express_number".into(),
            ));
        }
        Ok(())
    }
}

impl Validate for OrderSubmit {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.goods.is_empty() {
            return Err(("goods", "an order needs at least one line".into()));
        }
        Ok(())
    }
}

impl Validate for CustomerAddressChange {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        non_empty_addresses(&self.0)
    }
}

impl Validate for ErpAddressChange {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        non_empty_addresses(&self.0)
    }
}

fn non_empty_addresses(list: &[DeliveryAddress]) -> Result<(), (&'static str, String)> {
    if list.is_empty() {
        return Err(("", "the address list is empty".into()));
    }
    Ok(())
}

impl Validate for OrderPayment {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.amount.is_positive() {
            return Err((
                "amount",
                "a payment amount must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}
impl Validate for OrderStatus {}
impl Validate for CreateChangeOrder {}
impl Validate for ErpChangeOrderCreated {}
impl Validate for CreateRefundOrder {}
impl Validate for ErpRefundOrderCreated {}
impl Validate for ChangeRefundCancel {}
impl Validate for InvoicePdfUrl {}
impl Validate for ExpressInfoUpdate {}

/// Encodes a message as the spec's JSON bytes.
pub fn encode<M: Message>(message: &M) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(message)
}
