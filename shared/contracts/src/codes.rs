//! Status and type codes of the MQ spec, as closed enums.
//!
//! Every value the spec lists has a variant; any other value is a decode error that names the
//! field and lists the known codes — never a panic and never silently accepted.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a code travels on the wire in the message that carries it.
#[derive(Clone, Copy)]
enum WireForm {
    Number,
    String,
}

macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident, wire = $wire:ident, what = $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every code this enum knows, in the spec's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const WIRE: WireForm = WireForm::$wire;
            const WHAT: &'static str = $what;

            /// The numeric code as the spec writes it.
            pub const fn code(self) -> i64 {
                match self { $($name::$variant => $code,)+ }
            }

            /// The variant for a numeric code, if the spec defines it.
            pub fn from_code(code: i64) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            fn known() -> String {
                let codes: Vec<String> = Self::ALL.iter().map(|c| c.code().to_string()).collect();
                codes.join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{}", self.code())
            }
        }

        impl TryFrom<i64> for $name {
            type Error = UnknownCode;
            fn try_from(code: i64) -> Result<Self, UnknownCode> {
                $name::from_code(code).ok_or(UnknownCode { what: Self::WHAT, code: code.to_string(), known: Self::known() })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match Self::WIRE {
                    WireForm::Number => s.serialize_i64(self.code()),
                    WireForm::String => s.collect_str(&self.code()),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = d.deserialize_any(CodeVisitor)?;
                let code = raw.parse::<i64>().ok();
                code.and_then($name::from_code).ok_or_else(|| {
                    de::Error::custom(UnknownCode { what: Self::WHAT, code: raw, known: Self::known() })
                })
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let numbers: Vec<i64> = Self::ALL.iter().map(|c| c.code()).collect();
                let strings: Vec<String> = numbers.iter().map(|c| c.to_string()).collect();
                let (first, second) = match Self::WIRE {
                    WireForm::Number => (json_schema!({ "type": "integer", "enum": numbers }), json_schema!({ "type": "string", "enum": strings })),
                    WireForm::String => (json_schema!({ "type": "string", "enum": strings }), json_schema!({ "type": "integer", "enum": numbers })),
                };
                let form = match Self::WIRE { WireForm::Number => "a JSON number", WireForm::String => "a string" };
                json_schema!({
                    "description": format!("{} ({}); sent as {form}, the other form is accepted.", Self::WHAT, $name::known()),
                    "anyOf": [first, second]
                })
            }
        }
    };
}

/// A code the spec does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} code {code} (known: {known})")]
pub struct UnknownCode {
    pub what: &'static str,
    pub code: String,
    pub known: String,
}

/// Reads a code given as a JSON integer or a numeric string, returning its text.
struct CodeVisitor;

impl Visitor<'_> for CodeVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a numeric code (integer or string of digits)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

code_enum! {
    /// `order.erpstatus.status`: what the ERP reports about an order.
    ErpOrderStatus, wire = Number, what = "order.erpstatus status" {
        /// 已审核 — audited by the ERP.
        Audited = 100,
        /// 已备货 — goods picked and stocked for shipping.
        Stocked = 200,
        /// 已交寄 — handed to the carrier; carries `data.express_id`/`express_number`.
        Shipped = 600,
        /// 订单妥投 — delivered by the carrier.
        Delivered = 700,
        /// 客服取消 — cancelled by customer service.
        CsCancelled = 901,
        /// 系统自动取消 — cancelled automatically by the ERP.
        ErpAutoCancelled = 906,
        /// 定金预售尾款支付通知 — pre-sale: the balance payment is due.
        PresaleBalanceDue = 40,
    }
}

code_enum! {
    /// `order.orderStatus.status`: what the storefront reports about an order.
    StorefrontOrderStatus, wire = Number, what = "order.orderStatus status" {
        /// 确认订单 — the customer confirmed receipt.
        ReceiptConfirmed = 700,
        /// 用户主动取消 — the customer cancelled.
        UserCancelled = 900,
        /// 系统自动取消 — cancelled automatically by the storefront (unpaid past the deadline).
        SystemAutoCancelled = 906,
    }
}

code_enum! {
    /// Exchange-order (换货单) status in `erp.createChangeOrder` and
    /// `erp.updateChangeRefundOrderStatus` with `type: "change"`.
    ExchangeStatus, wire = Number, what = "exchange status" {
        /// 审核通过 — approved.
        Approved = 10,
        /// 商品入库 — returned goods received into stock (goods sent back by the customer).
        GoodsReceived = 30,
        /// 上门换货 — swapped at the customer's door.
        DoorToDoorExchange = 40,
        /// 换货完成 — exchange completed.
        Completed = 50,
        /// 客服驳回 — rejected by customer service.
        Rejected = 91,
    }
}

code_enum! {
    /// Return-order (退货单) status in `erp.createRefundOrder`, `erp.createChangeOrder`
    /// (`returned_status`) and `erp.updateChangeRefundOrderStatus` with `type: "refund"`.
    ReturnStatus, wire = Number, what = "return status" {
        /// 提交 — submitted.
        Submitted = 0,
        /// 审核通过 — approved.
        Approved = 10,
        /// 商品寄回 — goods sent back by the customer.
        GoodsSentBack = 20,
        /// 已入库 — goods received into stock.
        GoodsReceived = 30,
        /// 付款结束 — refund paid out.
        Refunded = 40,
        /// 客服拒退 — refused by customer service.
        Rejected = 91,
    }
}

code_enum! {
    /// `erp.updateInvoicePdfUrl.invoiceType` (开票方式), sent as a string.
    InvoiceType, wire = String, what = "invoice type" {
        /// 蓝票 — a normal (blue) invoice.
        Blue = 0,
        /// 红票 — a credit (red) invoice reversing a blue one.
        Red = 1,
    }
}

code_enum! {
    /// `code` of `erp.createChangeOrder` / `erp.createRefundOrder`.
    ErpResultCode, wire = Number, what = "ERP result" {
        /// 成功 — created.
        Ok = 200,
        /// 客服驳回 — rejected (the data carries status 91).
        Rejected = 500,
    }
}

code_enum! {
    /// `order.changeRefundCancel.status`: the only value the spec defines is 900 (user cancel).
    AfterSaleCancelStatus, wire = Number, what = "order.changeRefundCancel status" {
        /// 用户主动取消 — the customer cancelled the exchange/return.
        UserCancelled = 900,
    }
}

code_enum! {
    /// `order.payment.pay_type` (defined by orderbus): how the customer paid.
    PayType, wire = Number, what = "payment type" {
        /// Credit card (Sinopac QPay `C`).
        Card = 1,
        /// ATM virtual account transfer (Sinopac QPay `A`).
        Atm = 2,
        /// Online bank payment through a shipping partner (Frotel `pay`).
        BankGateway = 3,
        /// Cash on delivery.
        CashOnDelivery = 4,
    }
}

/// `type` of `order.changeRefundCancel`: `1` = return (退货), `2` = exchange (换货).
///
/// The other after-sale messages spell this `"refund"`/`"change"`; because the spec is
/// inconsistent, both spellings are accepted here and the spec's `1`/`2` is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AfterSaleKind {
    Refund,
    Change,
}

impl AfterSaleKind {
    pub const fn code(self) -> i64 {
        match self {
            AfterSaleKind::Refund => 1,
            AfterSaleKind::Change => 2,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            AfterSaleKind::Refund => "refund",
            AfterSaleKind::Change => "change",
        }
    }
}

impl Serialize for AfterSaleKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for AfterSaleKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(CodeVisitor)?.as_str() {
            "1" | "refund" => Ok(AfterSaleKind::Refund),
            "2" | "change" => Ok(AfterSaleKind::Change),
            other => Err(de::Error::custom(UnknownCode {
                what: "after-sale type",
                code: other.to_owned(),
                known: "1 (refund), 2 (change)".to_owned(),
            })),
        }
    }
}

impl schemars::JsonSchema for AfterSaleKind {
    fn schema_name() -> Cow<'static, str> {
        "AfterSaleKind".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "1 = return (refund), 2 = exchange (change); sent as a number, \"1\"/\"2\"/\"refund\"/\"change\" accepted.",
            "anyOf": [
                { "type": "integer", "enum": [1, 2] },
                { "type": "string", "enum": ["1", "2", "refund", "change"] }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_in_their_wire_form() {
        assert_eq!(
            serde_json::to_string(&ErpOrderStatus::Shipped).ok(),
            Some("600".to_owned())
        );
        assert_eq!(
            serde_json::to_string(&InvoiceType::Red).ok(),
            Some("\"1\"".to_owned())
        );
        let blue: Result<InvoiceType, _> = serde_json::from_str("0");
        assert_eq!(blue.ok(), Some(InvoiceType::Blue));
        let audited: Result<ErpOrderStatus, _> = serde_json::from_str("\"100\"");
        assert_eq!(audited.ok(), Some(ErpOrderStatus::Audited));
    }

    #[test]
    fn unknown_codes_are_errors_naming_the_known_ones() {
        let err = serde_json::from_str::<ErpOrderStatus>("601")
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains("unknown order.erpstatus status code 601"),
            "{err}"
        );
        assert!(err.contains("100, 200, 600, 700, 901, 906, 40"), "{err}");
        assert!(serde_json::from_str::<ReturnStatus>("\"x\"").is_err());
        assert!(serde_json::from_str::<ExchangeStatus>("true").is_err());
        assert!(serde_json::from_str::<AfterSaleKind>("3").is_err());
    }

    #[test]
    fn every_listed_code_maps_back() {
        for s in ErpOrderStatus::ALL {
            assert_eq!(ErpOrderStatus::from_code(s.code()), Some(*s));
        }
        assert_eq!(ErpOrderStatus::ALL.len(), 7);
        assert_eq!(StorefrontOrderStatus::ALL.len(), 3);
        assert_eq!(ExchangeStatus::ALL.len(), 5);
        assert_eq!(ReturnStatus::ALL.len(), 6);
        assert_eq!(InvoiceType::ALL.len(), 2);
    }
}
