//! The state machines: orders, exchange orders, return orders.
//!
//! Each machine is a const transition table `(from, event, to)`. Anything not in the table is
//! *not applied*, and the table itself says why ([`Refusal`]): the event's effect already holds
//! (`duplicate`), the order is already past it (`late`), the order is closed (`terminal`), or the
//! event makes no sense in this state (`illegal`). Statuses carry a rank and every row moves
//! strictly forward in rank, so no event, however late or repeated, moves anything backwards
//! (unit-tested and property-tested below).
//!
//! The order statuses join two vocabularies (see the service README): the MQ spec's numeric
//! codes (ERP 100/200/600/700/901/906/40, storefront 700/900/906) and the Korean shop's
//! `OS02`/`OS03` (shipping/delivered) and `OS30`/`OS31` (exchange re-shipping/exchange done).

use std::fmt;

use serde::Serialize;

/// Why an event was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The event's effect already holds (a redelivery or a repeated request).
    Duplicate,
    /// The subject is already past the event's target (an out-of-order, late event).
    Late,
    /// The subject is closed (cancelled, rejected, completed).
    Terminal,
    /// The event does not apply to the current state (e.g. confirming receipt of an unshipped order).
    Illegal,
    /// A JIT split parent follows payment and cancellation only; its children are fulfilled.
    SplitParent,
}

impl Refusal {
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::Duplicate => "duplicate",
            Refusal::Late => "late",
            Refusal::Terminal => "terminal",
            Refusal::Illegal => "illegal",
            Refusal::SplitParent => "split_parent",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of offering an event to a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<S> {
    Applied { from: S, to: S },
    NotApplied { current: S, why: Refusal },
}

impl<S: Copy> Outcome<S> {
    /// The state after the event (unchanged when not applied).
    pub fn state(&self) -> S {
        match *self {
            Outcome::Applied { to, .. } => to,
            Outcome::NotApplied { current, .. } => current,
        }
    }
}

/// A state of one of the machines.
pub trait MachineState: Copy + Eq + fmt::Debug + 'static {
    /// Position in the lifecycle; transitions only ever increase it.
    fn rank(self) -> u8;
    /// No event moves it any more.
    fn is_terminal(self) -> bool;
}

/// Looks `(from, event)` up in `table`, classifying a miss.
pub fn step<S: MachineState, E: Copy + Eq>(table: &[(S, E, S)], from: S, event: E) -> Outcome<S> {
    if let Some(&(_, _, to)) = table.iter().find(|(f, e, _)| *f == from && *e == event) {
        return Outcome::Applied { from, to };
    }
    let rows = || table.iter().filter(|(_, e, _)| *e == event);
    // Duplicate: already where the event leads. Late: past every state the event applies in.
    let why = if rows().any(|r| r.2 == from) {
        Refusal::Duplicate
    } else if from.is_terminal() {
        Refusal::Terminal
    } else if rows()
        .map(|r| r.0.rank())
        .max()
        .is_some_and(|r| from.rank() > r)
    {
        Refusal::Late
    } else {
        Refusal::Illegal
    };
    Outcome::NotApplied { current: from, why }
}

macro_rules! states {
    ($(#[$m:meta])* $name:ident { $( $(#[$vm:meta])* $v:ident = ($text:literal, $rank:literal, $terminal:literal), )+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( $(#[$vm])* $v, )+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The name stored in the database and shown in the API.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$v => $text,)+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$v),)+ _ => None }
            }
        }

        impl MachineState for $name {
            fn rank(self) -> u8 {
                match self { $($name::$v => $rank,)+ }
            }
            fn is_terminal(self) -> bool {
                match self { $($name::$v => $terminal,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------------------------

states! {
    /// Order status. Ranks leave gaps so the lifecycle reads top to bottom.
    OrderState {
        /// Placed, not paid (storefront auto-cancels it past the deadline: 906).
        PendingPayment = ("pending_payment", 0, false),
        /// `order.payment` received (for a pre-sale order: the deposit).
        Paid = ("paid", 10, false),
        /// ERP 40: pre-sale balance payment is due.
        BalanceDue = ("balance_due", 12, false),
        /// The pre-sale balance was paid (`order.payment` after 40).
        BalancePaid = ("balance_paid", 14, false),
        /// ERP 100 已审核.
        Audited = ("audited", 20, false),
        /// ERP 200 已备货.
        Stocked = ("stocked", 30, false),
        /// ERP 600 已交寄 with a waybill = Korean shop `OS02` 배송중 (`OS30` when the order is an
        /// exchange's replacement order).
        Shipped = ("shipped", 40, false),
        /// ERP 700 订单妥投 (carrier delivered) = `OS03` 배송완료 (`OS31`-adjacent for a
        /// replacement order; the exchange itself completes with exchange status 50).
        Delivered = ("delivered", 50, false),
        /// Storefront 700 确认订单: the customer confirmed receipt.
        ReceiptConfirmed = ("receipt_confirmed", 60, true),
        /// Storefront 900 用户主动取消.
        CancelledByUser = ("cancelled_by_user", 100, true),
        /// Storefront 906 系统自动取消 (unpaid past the deadline).
        CancelledBySystem = ("cancelled_by_system", 100, true),
        /// ERP 901 客服取消.
        CancelledByCs = ("cancelled_by_cs", 100, true),
        /// ERP 906 ERP系统自动取消.
        CancelledByErp = ("cancelled_by_erp", 100, true),
    }
}

/// Everything that can happen to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    /// `order.payment`.
    Payment,
    /// `order.erpstatus` 40.
    ErpPresaleBalanceDue,
    /// `order.erpstatus` 100.
    ErpAudited,
    /// `order.erpstatus` 200.
    ErpStocked,
    /// `order.erpstatus` 600.
    ErpShipped,
    /// `order.erpstatus` 700.
    ErpDelivered,
    /// The tracking service's `order.updateExpressInfo` with the delivered `state` for the
    /// order's own waybill (SweetTracker level 6, SHOPLINE DELIVERED): OS03. The ERP's 700
    /// before or after it is a duplicate.
    CarrierDelivered,
    /// `order.erpstatus` 901.
    ErpCsCancel,
    /// `order.erpstatus` 906.
    ErpAutoCancel,
    /// HTTP confirm receipt → `order.orderStatus` 700.
    ReceiptConfirmed,
    /// HTTP cancel → `order.orderStatus` 900.
    UserCancel,
    /// Sweeper → `order.orderStatus` 906.
    SystemAutoCancel,
}

impl OrderEvent {
    pub const ALL: &'static [OrderEvent] = &[
        OrderEvent::Payment,
        OrderEvent::ErpPresaleBalanceDue,
        OrderEvent::ErpAudited,
        OrderEvent::ErpStocked,
        OrderEvent::ErpShipped,
        OrderEvent::ErpDelivered,
        OrderEvent::CarrierDelivered,
        OrderEvent::ErpCsCancel,
        OrderEvent::ErpAutoCancel,
        OrderEvent::ReceiptConfirmed,
        OrderEvent::UserCancel,
        OrderEvent::SystemAutoCancel,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            OrderEvent::Payment => "payment",
            OrderEvent::ErpPresaleBalanceDue => "erp_40_presale_balance_due",
            OrderEvent::ErpAudited => "erp_100_audited",
            OrderEvent::ErpStocked => "erp_200_stocked",
            OrderEvent::ErpShipped => "erp_600_shipped",
            OrderEvent::ErpDelivered => "erp_700_delivered",
            OrderEvent::CarrierDelivered => "tracking_delivered",
            OrderEvent::ErpCsCancel => "erp_901_cs_cancel",
            OrderEvent::ErpAutoCancel => "erp_906_auto_cancel",
            OrderEvent::ReceiptConfirmed => "storefront_700_receipt_confirmed",
            OrderEvent::UserCancel => "storefront_900_user_cancel",
            OrderEvent::SystemAutoCancel => "storefront_906_system_auto_cancel",
        }
    }
}

use OrderEvent as E;
use OrderState as S;

/// The order transition table. ERP progress may skip steps (messages on different queues can
/// arrive out of order, and cash-on-delivery orders are audited unpaid), but never goes back.
pub const ORDER_TRANSITIONS: &[(OrderState, OrderEvent, OrderState)] = &[
    // payment
    (S::PendingPayment, E::Payment, S::Paid),
    (S::BalanceDue, E::Payment, S::BalancePaid),
    // pre-sale balance notice
    (S::Paid, E::ErpPresaleBalanceDue, S::BalanceDue),
    // ERP progress (forward jumps allowed)
    (S::PendingPayment, E::ErpAudited, S::Audited),
    (S::Paid, E::ErpAudited, S::Audited),
    (S::BalanceDue, E::ErpAudited, S::Audited),
    (S::BalancePaid, E::ErpAudited, S::Audited),
    (S::PendingPayment, E::ErpStocked, S::Stocked),
    (S::Paid, E::ErpStocked, S::Stocked),
    (S::BalanceDue, E::ErpStocked, S::Stocked),
    (S::BalancePaid, E::ErpStocked, S::Stocked),
    (S::Audited, E::ErpStocked, S::Stocked),
    (S::PendingPayment, E::ErpShipped, S::Shipped),
    (S::Paid, E::ErpShipped, S::Shipped),
    (S::BalanceDue, E::ErpShipped, S::Shipped),
    (S::BalancePaid, E::ErpShipped, S::Shipped),
    (S::Audited, E::ErpShipped, S::Shipped),
    (S::Stocked, E::ErpShipped, S::Shipped),
    (S::PendingPayment, E::ErpDelivered, S::Delivered),
    (S::Paid, E::ErpDelivered, S::Delivered),
    (S::BalanceDue, E::ErpDelivered, S::Delivered),
    (S::BalancePaid, E::ErpDelivered, S::Delivered),
    (S::Audited, E::ErpDelivered, S::Delivered),
    (S::Stocked, E::ErpDelivered, S::Delivered),
    (S::Shipped, E::ErpDelivered, S::Delivered),
    // the carrier delivered the order's own waybill (only known once the 600 shipped it)
    (S::Shipped, E::CarrierDelivered, S::Delivered),
    // the customer confirms receipt once the goods are on their way or arrived
    (S::Shipped, E::ReceiptConfirmed, S::ReceiptConfirmed),
    (S::Delivered, E::ReceiptConfirmed, S::ReceiptConfirmed),
    // the customer cancels until the ERP has picked the goods
    (S::PendingPayment, E::UserCancel, S::CancelledByUser),
    (S::Paid, E::UserCancel, S::CancelledByUser),
    (S::BalanceDue, E::UserCancel, S::CancelledByUser),
    (S::BalancePaid, E::UserCancel, S::CancelledByUser),
    (S::Audited, E::UserCancel, S::CancelledByUser),
    // the storefront auto-cancels unpaid orders only
    (S::PendingPayment, E::SystemAutoCancel, S::CancelledBySystem),
    // customer service may cancel until delivery (intercepting a shipped parcel)
    (S::PendingPayment, E::ErpCsCancel, S::CancelledByCs),
    (S::Paid, E::ErpCsCancel, S::CancelledByCs),
    (S::BalanceDue, E::ErpCsCancel, S::CancelledByCs),
    (S::BalancePaid, E::ErpCsCancel, S::CancelledByCs),
    (S::Audited, E::ErpCsCancel, S::CancelledByCs),
    (S::Stocked, E::ErpCsCancel, S::CancelledByCs),
    (S::Shipped, E::ErpCsCancel, S::CancelledByCs),
    // the ERP auto-cancels before shipping
    (S::PendingPayment, E::ErpAutoCancel, S::CancelledByErp),
    (S::Paid, E::ErpAutoCancel, S::CancelledByErp),
    (S::BalanceDue, E::ErpAutoCancel, S::CancelledByErp),
    (S::BalancePaid, E::ErpAutoCancel, S::CancelledByErp),
    (S::Audited, E::ErpAutoCancel, S::CancelledByErp),
    (S::Stocked, E::ErpAutoCancel, S::CancelledByErp),
];

/// Offers `event` to an order in `state`.
pub fn order_step(state: OrderState, event: OrderEvent) -> Outcome<OrderState> {
    step(ORDER_TRANSITIONS, state, event)
}

/// Offers `event` to a JIT split parent: the parent is the payment unit and its children are
/// the fulfilment units, so fulfilment events never move it (refused as `split_parent`).
pub fn split_parent_step(state: OrderState, event: OrderEvent) -> Outcome<OrderState> {
    if event.applies_to_split_parent() {
        order_step(state, event)
    } else {
        Outcome::NotApplied {
            current: state,
            why: Refusal::SplitParent,
        }
    }
}

impl OrderEvent {
    /// Payment, the pre-sale balance notice and cancellations concern the order as a whole;
    /// ERP progress and receipt concern what ships, which a split parent does not.
    pub const fn applies_to_split_parent(self) -> bool {
        match self {
            OrderEvent::Payment
            | OrderEvent::ErpPresaleBalanceDue
            | OrderEvent::ErpCsCancel
            | OrderEvent::ErpAutoCancel
            | OrderEvent::UserCancel
            | OrderEvent::SystemAutoCancel => true,
            OrderEvent::ErpAudited
            | OrderEvent::ErpStocked
            | OrderEvent::ErpShipped
            | OrderEvent::ErpDelivered
            | OrderEvent::CarrierDelivered
            | OrderEvent::ReceiptConfirmed => false,
        }
    }
}

/// The part of what an order costs that a payment covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentShare {
    /// The whole order amount.
    Whole,
    /// Less than the whole amount before anything was paid: a pre-sale deposit (the ERP's 40
    /// asks for the rest later). It cannot be told from an underpayment at this point, so the
    /// timeline records the outstanding amount.
    Deposit { outstanding_cents: i64 },
    /// Exactly the outstanding pre-sale balance (after the ERP's 40).
    Balance,
}

/// Why a payment's amount does not pay the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentRefusal {
    /// Zero or negative.
    NotPositive,
    /// More than two decimals, or too large to count in cents.
    NotCents,
    /// More than the order costs.
    ExceedsOrderAmount,
    /// A balance payment that is not exactly what is outstanding.
    BalanceMismatch,
}

impl PaymentRefusal {
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentRefusal::NotPositive => "amount_not_positive",
            PaymentRefusal::NotCents => "amount_not_cents",
            PaymentRefusal::ExceedsOrderAmount => "amount_exceeds_order",
            PaymentRefusal::BalanceMismatch => "balance_mismatch",
        }
    }
}

impl fmt::Display for PaymentRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a payment's amount against what an order in `state` owes: in `balance_due` exactly
/// the outstanding balance, otherwise the whole amount or (a pre-sale deposit) less.
pub fn check_payment(
    state: OrderState,
    order_cents: i64,
    paid_cents: Option<i64>,
    amount_cents: Option<i64>,
) -> Result<PaymentShare, PaymentRefusal> {
    let amount = amount_cents.ok_or(PaymentRefusal::NotCents)?;
    if amount <= 0 {
        return Err(PaymentRefusal::NotPositive);
    }
    if state == OrderState::BalanceDue {
        let outstanding = order_cents.saturating_sub(paid_cents.unwrap_or(0));
        return if amount == outstanding {
            Ok(PaymentShare::Balance)
        } else {
            Err(PaymentRefusal::BalanceMismatch)
        };
    }
    match amount.cmp(&order_cents) {
        std::cmp::Ordering::Greater => Err(PaymentRefusal::ExceedsOrderAmount),
        std::cmp::Ordering::Equal => Ok(PaymentShare::Whole),
        std::cmp::Ordering::Less => Ok(PaymentShare::Deposit {
            outstanding_cents: order_cents - amount,
        }),
    }
}

impl OrderState {
    /// The customer may still change the delivery address (before the parcel is handed over).
    pub fn address_changeable(self) -> bool {
        !self.is_terminal() && self.rank() < OrderState::Shipped.rank()
    }

    /// Exchanges and returns are requested for goods the customer has.
    pub fn after_sale_allowed(self) -> bool {
        matches!(self, OrderState::Delivered | OrderState::ReceiptConfirmed)
    }

    /// The Korean shop's status code for this state, where one means the same.
    pub fn korean_alias(self, replacement_order: bool) -> Option<&'static str> {
        match (self, replacement_order) {
            (OrderState::Shipped, false) => Some("OS02"),
            (OrderState::Delivered | OrderState::ReceiptConfirmed, false) => Some("OS03"),
            (OrderState::Shipped, true) => Some("OS30"),
            _ => None,
        }
    }

    /// The MQ spec's code for this state and who reports it.
    pub fn spec_code(self) -> Option<&'static str> {
        Some(match self {
            OrderState::BalanceDue => "erp 40",
            OrderState::Audited => "erp 100",
            OrderState::Stocked => "erp 200",
            OrderState::Shipped => "erp 600",
            OrderState::Delivered => "erp 700",
            OrderState::ReceiptConfirmed => "storefront 700",
            OrderState::CancelledByUser => "storefront 900",
            OrderState::CancelledBySystem => "storefront 906",
            OrderState::CancelledByCs => "erp 901",
            OrderState::CancelledByErp => "erp 906",
            OrderState::PendingPayment | OrderState::Paid | OrderState::BalancePaid => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Exchange orders (换货单): 10 / 30 / 40 / 50 / 91
// ---------------------------------------------------------------------------------------------

states! {
    /// Exchange-order status.
    ExchangeState {
        /// Created by the storefront, `order.createChangeOrder` sent, no ERP answer yet.
        Requested = ("requested", 0, false),
        /// 10 审核通过.
        Approved = ("approved", 10, false),
        /// 30 商品入库 (goods sent back and received); the replacement ships next (`OS30`).
        GoodsReceived = ("goods_received", 30, false),
        /// 40 上门换货 (swapped at the door).
        DoorToDoor = ("door_to_door", 40, false),
        /// 50 换货完成 = `OS31` 교환완료.
        Completed = ("completed", 50, true),
        /// 91 客服驳回 (also `erp.createChangeOrder` code 500).
        Rejected = ("rejected", 100, true),
        /// The customer cancelled (`order.changeRefundCancel` 900, type 2).
        Cancelled = ("cancelled", 100, true),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeEvent {
    Erp10Approved,
    Erp30GoodsReceived,
    Erp40DoorToDoor,
    Erp50Completed,
    /// The tracking service reports the replacement order's re-delivery waybill delivered:
    /// the exchange is complete (OS31); the ERP's 50 before or after it is a duplicate.
    CarrierRedelivered,
    Erp91Rejected,
    UserCancel,
}

impl ExchangeEvent {
    pub const ALL: &'static [ExchangeEvent] = &[
        ExchangeEvent::Erp10Approved,
        ExchangeEvent::Erp30GoodsReceived,
        ExchangeEvent::Erp40DoorToDoor,
        ExchangeEvent::Erp50Completed,
        ExchangeEvent::CarrierRedelivered,
        ExchangeEvent::Erp91Rejected,
        ExchangeEvent::UserCancel,
    ];

    pub fn from_code(code: orderbus_contracts::ExchangeStatus) -> ExchangeEvent {
        use orderbus_contracts::ExchangeStatus as C;
        match code {
            C::Approved => ExchangeEvent::Erp10Approved,
            C::GoodsReceived => ExchangeEvent::Erp30GoodsReceived,
            C::DoorToDoorExchange => ExchangeEvent::Erp40DoorToDoor,
            C::Completed => ExchangeEvent::Erp50Completed,
            C::Rejected => ExchangeEvent::Erp91Rejected,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ExchangeEvent::Erp10Approved => "erp_10_approved",
            ExchangeEvent::Erp30GoodsReceived => "erp_30_goods_received",
            ExchangeEvent::Erp40DoorToDoor => "erp_40_door_to_door",
            ExchangeEvent::Erp50Completed => "erp_50_completed",
            ExchangeEvent::CarrierRedelivered => "tracking_redelivered",
            ExchangeEvent::Erp91Rejected => "erp_91_rejected",
            ExchangeEvent::UserCancel => "user_cancel_900",
        }
    }
}

use ExchangeEvent as XE;
use ExchangeState as XS;

/// The exchange transition table.
pub const EXCHANGE_TRANSITIONS: &[(ExchangeState, ExchangeEvent, ExchangeState)] = &[
    (XS::Requested, XE::Erp10Approved, XS::Approved),
    (XS::Requested, XE::Erp30GoodsReceived, XS::GoodsReceived),
    (XS::Approved, XE::Erp30GoodsReceived, XS::GoodsReceived),
    (XS::Requested, XE::Erp40DoorToDoor, XS::DoorToDoor),
    (XS::Approved, XE::Erp40DoorToDoor, XS::DoorToDoor),
    (XS::Requested, XE::Erp50Completed, XS::Completed),
    (XS::Approved, XE::Erp50Completed, XS::Completed),
    (XS::GoodsReceived, XE::Erp50Completed, XS::Completed),
    (XS::DoorToDoor, XE::Erp50Completed, XS::Completed),
    // the replacement reached the customer (the ERP's 30/40 may still be on their way)
    (XS::Approved, XE::CarrierRedelivered, XS::Completed),
    (XS::GoodsReceived, XE::CarrierRedelivered, XS::Completed),
    (XS::DoorToDoor, XE::CarrierRedelivered, XS::Completed),
    (XS::Requested, XE::Erp91Rejected, XS::Rejected),
    (XS::Approved, XE::Erp91Rejected, XS::Rejected),
    // the customer cancels before the goods are back in the warehouse
    (XS::Requested, XE::UserCancel, XS::Cancelled),
    (XS::Approved, XE::UserCancel, XS::Cancelled),
];

pub fn exchange_step(state: ExchangeState, event: ExchangeEvent) -> Outcome<ExchangeState> {
    step(EXCHANGE_TRANSITIONS, state, event)
}

impl ExchangeState {
    pub fn korean_alias(self) -> Option<&'static str> {
        match self {
            ExchangeState::GoodsReceived | ExchangeState::DoorToDoor => Some("OS30"),
            ExchangeState::Completed => Some("OS31"),
            _ => None,
        }
    }
    pub fn spec_code(self) -> Option<i64> {
        Some(match self {
            ExchangeState::Requested => return None,
            ExchangeState::Approved => 10,
            ExchangeState::GoodsReceived => 30,
            ExchangeState::DoorToDoor => 40,
            ExchangeState::Completed => 50,
            ExchangeState::Rejected => 91,
            ExchangeState::Cancelled => 900,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Return orders (退货单): 0 / 10 / 20 / 30 / 40 / 91
// ---------------------------------------------------------------------------------------------

states! {
    /// Return-order status.
    ReturnState {
        /// 0 提交: created by the storefront, `order.createRefundOrder` sent.
        Submitted = ("submitted", 0, false),
        /// 10 审核通过.
        Approved = ("approved", 10, false),
        /// 20 商品寄回.
        GoodsSentBack = ("goods_sent_back", 20, false),
        /// 30 已入库.
        GoodsReceived = ("goods_received", 30, false),
        /// 40 付款结束 (with `real_returned_amount`).
        Refunded = ("refunded", 40, true),
        /// 91 客服拒退 (also `erp.createRefundOrder` code 500).
        Rejected = ("rejected", 100, true),
        /// The customer cancelled (`order.changeRefundCancel` 900, type 1).
        Cancelled = ("cancelled", 100, true),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnEvent {
    Erp0Submitted,
    Erp10Approved,
    Erp20GoodsSentBack,
    Erp30GoodsReceived,
    Erp40Refunded,
    Erp91Rejected,
    UserCancel,
}

impl ReturnEvent {
    pub const ALL: &'static [ReturnEvent] = &[
        ReturnEvent::Erp0Submitted,
        ReturnEvent::Erp10Approved,
        ReturnEvent::Erp20GoodsSentBack,
        ReturnEvent::Erp30GoodsReceived,
        ReturnEvent::Erp40Refunded,
        ReturnEvent::Erp91Rejected,
        ReturnEvent::UserCancel,
    ];

    pub fn from_code(code: orderbus_contracts::ReturnStatus) -> ReturnEvent {
        use orderbus_contracts::ReturnStatus as C;
        match code {
            C::Submitted => ReturnEvent::Erp0Submitted,
            C::Approved => ReturnEvent::Erp10Approved,
            C::GoodsSentBack => ReturnEvent::Erp20GoodsSentBack,
            C::GoodsReceived => ReturnEvent::Erp30GoodsReceived,
            C::Refunded => ReturnEvent::Erp40Refunded,
            C::Rejected => ReturnEvent::Erp91Rejected,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ReturnEvent::Erp0Submitted => "erp_0_submitted",
            ReturnEvent::Erp10Approved => "erp_10_approved",
            ReturnEvent::Erp20GoodsSentBack => "erp_20_goods_sent_back",
            ReturnEvent::Erp30GoodsReceived => "erp_30_goods_received",
            ReturnEvent::Erp40Refunded => "erp_40_refunded",
            ReturnEvent::Erp91Rejected => "erp_91_rejected",
            ReturnEvent::UserCancel => "user_cancel_900",
        }
    }
}

use ReturnEvent as RE;
use ReturnState as RS;

/// The return transition table. (`Erp0Submitted` has no row: the storefront creates returns in
/// `submitted`, so an ERP 0 is always a duplicate or late.)
pub const RETURN_TRANSITIONS: &[(ReturnState, ReturnEvent, ReturnState)] = &[
    (RS::Submitted, RE::Erp10Approved, RS::Approved),
    (RS::Submitted, RE::Erp20GoodsSentBack, RS::GoodsSentBack),
    (RS::Approved, RE::Erp20GoodsSentBack, RS::GoodsSentBack),
    (RS::Submitted, RE::Erp30GoodsReceived, RS::GoodsReceived),
    (RS::Approved, RE::Erp30GoodsReceived, RS::GoodsReceived),
    (RS::GoodsSentBack, RE::Erp30GoodsReceived, RS::GoodsReceived),
    (RS::Submitted, RE::Erp40Refunded, RS::Refunded),
    (RS::Approved, RE::Erp40Refunded, RS::Refunded),
    (RS::GoodsSentBack, RE::Erp40Refunded, RS::Refunded),
    (RS::GoodsReceived, RE::Erp40Refunded, RS::Refunded),
    (RS::Submitted, RE::Erp91Rejected, RS::Rejected),
    (RS::Approved, RE::Erp91Rejected, RS::Rejected),
    (RS::GoodsSentBack, RE::Erp91Rejected, RS::Rejected),
    // the customer cancels before sending the goods back
    (RS::Submitted, RE::UserCancel, RS::Cancelled),
    (RS::Approved, RE::UserCancel, RS::Cancelled),
];

pub fn return_step(state: ReturnState, event: ReturnEvent) -> Outcome<ReturnState> {
    // 0 is what we create returns in: never a transition, a duplicate while still submitted.
    if event == ReturnEvent::Erp0Submitted {
        let why = if state == ReturnState::Submitted {
            Refusal::Duplicate
        } else if state.is_terminal() {
            Refusal::Terminal
        } else {
            Refusal::Late
        };
        return Outcome::NotApplied {
            current: state,
            why,
        };
    }
    step(RETURN_TRANSITIONS, state, event)
}

impl ReturnState {
    pub fn spec_code(self) -> i64 {
        match self {
            ReturnState::Submitted => 0,
            ReturnState::Approved => 10,
            ReturnState::GoodsSentBack => 20,
            ReturnState::GoodsReceived => 30,
            ReturnState::Refunded => 40,
            ReturnState::Rejected => 91,
            ReturnState::Cancelled => 900,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn forward_only<S: MachineState, E: Copy + Eq + fmt::Debug>(table: &[(S, E, S)]) {
        for (from, event, to) in table {
            assert!(
                to.rank() > from.rank(),
                "{from:?} --{event:?}--> {to:?} goes backwards"
            );
            assert!(
                !from.is_terminal(),
                "{from:?} is terminal but has a row for {event:?}"
            );
        }
        // One row per (from, event): the machine is deterministic.
        for (i, a) in table.iter().enumerate() {
            for b in &table[i + 1..] {
                assert!(
                    !(a.0 == b.0 && a.1 == b.1),
                    "two rows for {:?} {:?}",
                    a.0,
                    a.1
                );
            }
        }
    }

    #[test]
    fn every_table_moves_forward_and_is_deterministic() {
        forward_only(ORDER_TRANSITIONS);
        forward_only(EXCHANGE_TRANSITIONS);
        forward_only(RETURN_TRANSITIONS);
    }

    #[test]
    fn the_happy_path_and_the_spec_codes() {
        let mut s = OrderState::PendingPayment;
        for e in [
            E::Payment,
            E::ErpAudited,
            E::ErpStocked,
            E::ErpShipped,
            E::ErpDelivered,
            E::ReceiptConfirmed,
        ] {
            s = order_step(s, e).state();
        }
        assert_eq!(s, OrderState::ReceiptConfirmed);
        assert_eq!(OrderState::Shipped.korean_alias(false), Some("OS02"));
        assert_eq!(OrderState::Delivered.korean_alias(false), Some("OS03"));
        assert_eq!(OrderState::Shipped.korean_alias(true), Some("OS30"));
        assert_eq!(ExchangeState::Completed.korean_alias(), Some("OS31"));
        assert_eq!(OrderState::CancelledByCs.spec_code(), Some("erp 901"));
    }

    #[test]
    fn refusals_say_why() {
        // 700 before 600: delivered first, the late 600 is refused as late.
        let s = order_step(OrderState::Stocked, E::ErpDelivered).state();
        assert_eq!(
            order_step(s, E::ErpShipped),
            Outcome::NotApplied {
                current: OrderState::Delivered,
                why: Refusal::Late
            }
        );
        assert_eq!(
            order_step(OrderState::Paid, E::Payment),
            Outcome::NotApplied {
                current: OrderState::Paid,
                why: Refusal::Duplicate
            }
        );
        assert_eq!(
            order_step(OrderState::Paid, E::ReceiptConfirmed),
            Outcome::NotApplied {
                current: OrderState::Paid,
                why: Refusal::Illegal
            }
        );
        assert_eq!(
            order_step(OrderState::CancelledByUser, E::ErpAudited),
            Outcome::NotApplied {
                current: OrderState::CancelledByUser,
                why: Refusal::Terminal
            }
        );
        assert_eq!(
            order_step(OrderState::Shipped, E::UserCancel),
            Outcome::NotApplied {
                current: OrderState::Shipped,
                why: Refusal::Late
            }
        );
        // Pre-sale: deposit, balance notice, balance payment.
        let s = order_step(OrderState::Paid, E::ErpPresaleBalanceDue).state();
        assert_eq!(s, OrderState::BalanceDue);
        assert_eq!(order_step(s, E::Payment).state(), OrderState::BalancePaid);
        assert_eq!(
            exchange_step(ExchangeState::Completed, XE::Erp30GoodsReceived),
            Outcome::NotApplied {
                current: ExchangeState::Completed,
                why: Refusal::Terminal
            }
        );
        assert_eq!(
            return_step(ReturnState::Refunded, RE::Erp40Refunded),
            Outcome::NotApplied {
                current: ReturnState::Refunded,
                why: Refusal::Duplicate
            }
        );
        assert_eq!(
            return_step(ReturnState::GoodsReceived, RE::UserCancel),
            Outcome::NotApplied {
                current: ReturnState::GoodsReceived,
                why: Refusal::Late
            }
        );
    }

    #[test]
    fn carrier_delivery_and_the_erps_own_codes_absorb_each_other() {
        // tracking first, the ERP's 700 after: the 700 is a duplicate, and the other way round
        let d = order_step(OrderState::Shipped, E::CarrierDelivered);
        assert_eq!(d.state(), OrderState::Delivered);
        assert_eq!(
            order_step(d.state(), E::ErpDelivered),
            Outcome::NotApplied {
                current: OrderState::Delivered,
                why: Refusal::Duplicate
            }
        );
        let e = order_step(OrderState::Shipped, E::ErpDelivered);
        assert_eq!(
            order_step(e.state(), E::CarrierDelivered),
            Outcome::NotApplied {
                current: OrderState::Delivered,
                why: Refusal::Duplicate
            }
        );
        // before the 600 the waybill is not the order's yet
        assert!(matches!(
            order_step(OrderState::Stocked, E::CarrierDelivered),
            Outcome::NotApplied {
                why: Refusal::Illegal,
                ..
            }
        ));
        // exchanges: the replacement's delivery completes it; the ERP's 50 is then a duplicate
        for from in [
            ExchangeState::Approved,
            ExchangeState::GoodsReceived,
            ExchangeState::DoorToDoor,
        ] {
            let c = exchange_step(from, ExchangeEvent::CarrierRedelivered);
            assert_eq!(c.state(), ExchangeState::Completed);
            assert_eq!(
                exchange_step(c.state(), ExchangeEvent::Erp50Completed),
                Outcome::NotApplied {
                    current: ExchangeState::Completed,
                    why: Refusal::Duplicate
                }
            );
        }
        assert_eq!(
            exchange_step(ExchangeState::Completed, ExchangeEvent::CarrierRedelivered),
            Outcome::NotApplied {
                current: ExchangeState::Completed,
                why: Refusal::Duplicate
            }
        );
        assert!(
            !exchange_step(ExchangeState::Cancelled, ExchangeEvent::CarrierRedelivered)
                .state()
                .eq(&ExchangeState::Completed)
        );
    }

    #[test]
    fn state_names_round_trip() {
        for s in OrderState::ALL {
            assert_eq!(OrderState::parse(s.as_str()), Some(*s));
        }
        for s in ExchangeState::ALL {
            assert_eq!(ExchangeState::parse(s.as_str()), Some(*s));
        }
        for s in ReturnState::ALL {
            assert_eq!(ReturnState::parse(s.as_str()), Some(*s));
        }
    }

    #[test]
    fn a_split_parent_follows_payment_and_cancellation_only() {
        for &event in OrderEvent::ALL {
            for &state in OrderState::ALL {
                let out = split_parent_step(state, event);
                if event.applies_to_split_parent() {
                    assert_eq!(out, order_step(state, event));
                } else {
                    assert_eq!(
                        out,
                        Outcome::NotApplied {
                            current: state,
                            why: Refusal::SplitParent
                        }
                    );
                }
            }
        }
        assert_eq!(
            split_parent_step(OrderState::PendingPayment, E::Payment).state(),
            OrderState::Paid
        );
    }

    #[test]
    fn payment_amounts_the_machine_accepts() {
        use PaymentRefusal as R;
        let pending = OrderState::PendingPayment;
        assert_eq!(
            check_payment(pending, 18600, None, Some(18600)),
            Ok(PaymentShare::Whole)
        );
        assert_eq!(
            check_payment(pending, 18600, None, Some(-500)),
            Err(R::NotPositive)
        );
        assert_eq!(
            check_payment(pending, 18600, None, Some(0)),
            Err(R::NotPositive)
        );
        assert_eq!(check_payment(pending, 18600, None, None), Err(R::NotCents));
        assert_eq!(
            check_payment(pending, 18600, None, Some(18601)),
            Err(R::ExceedsOrderAmount)
        );
        assert_eq!(
            check_payment(pending, 18600, None, Some(8600)),
            Ok(PaymentShare::Deposit {
                outstanding_cents: 10000
            })
        );
        let due = OrderState::BalanceDue;
        assert_eq!(
            check_payment(due, 18600, Some(8600), Some(10000)),
            Ok(PaymentShare::Balance)
        );
        assert_eq!(
            check_payment(due, 18600, Some(8600), Some(9999)),
            Err(R::BalanceMismatch)
        );
        assert_eq!(
            check_payment(due, 18600, Some(18600), Some(100)),
            Err(R::BalanceMismatch)
        );
    }

    fn check<S: MachineState, Ev: Copy>(
        start: S,
        events: &[Ev],
        f: impl Fn(S, Ev) -> Outcome<S>,
    ) -> Result<(), TestCaseError> {
        let mut s = start;
        for &e in events {
            let once = f(s, e).state();
            let twice = f(once, e).state();
            prop_assert_eq!(once, twice, "applying twice differs from once");
            prop_assert!(once.rank() >= s.rank(), "{:?} regressed to {:?}", s, once);
            if s.is_terminal() {
                prop_assert_eq!(once, s, "a terminal state moved");
            }
            s = once;
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn orders_twice_equals_once_and_never_regress(
            start in proptest::sample::select(OrderState::ALL),
            events in proptest::collection::vec(proptest::sample::select(OrderEvent::ALL), 0..40),
        ) {
            check(start, &events, order_step)?;
        }

        #[test]
        fn exchanges_twice_equals_once_and_never_regress(
            start in proptest::sample::select(ExchangeState::ALL),
            events in proptest::collection::vec(proptest::sample::select(ExchangeEvent::ALL), 0..30),
        ) {
            check(start, &events, exchange_step)?;
        }

        #[test]
        fn returns_twice_equals_once_and_never_regress(
            start in proptest::sample::select(ReturnState::ALL),
            events in proptest::collection::vec(proptest::sample::select(ReturnEvent::ALL), 0..30),
        ) {
            check(start, &events, return_step)?;
        }

        /// No amount that is not positive, and nothing above what the order owes, is accepted;
        /// whatever is accepted never makes the paid total exceed the order amount.
        #[test]
        fn payments_never_accept_a_non_positive_amount_or_overpay(
            state in proptest::sample::select(OrderState::ALL),
            order_cents in 0i64..100_000_000,
            paid in proptest::option::of(0i64..100_000_000),
            amount in proptest::option::of(-100_000_000i64..200_000_000),
        ) {
            let paid = if state == OrderState::BalanceDue { paid.map(|p| p.min(order_cents)) } else { None };
            match check_payment(state, order_cents, paid, amount) {
                Ok(share) => {
                    let a = amount.unwrap_or_default();
                    prop_assert!(a > 0, "accepted {a}");
                    prop_assert!(paid.unwrap_or(0) + a <= order_cents, "overpaid with {a}");
                    if share == PaymentShare::Balance {
                        prop_assert_eq!(paid.unwrap_or(0) + a, order_cents);
                    }
                }
                Err(PaymentRefusal::NotPositive) => prop_assert!(amount.unwrap_or(1) <= 0),
                Err(PaymentRefusal::NotCents) => prop_assert!(amount.is_none()),
                Err(_) => {}
            }
        }

        /// A refused amount leaves the order as it was, so the correct payment after it pays.
        #[test]
        fn a_refused_payment_does_not_stop_the_correct_one(
            order_cents in 1i64..100_000_000,
            bad in prop_oneof![-100_000_000i64..=0, 100_000_001i64..200_000_000],
        ) {
            prop_assert!(check_payment(OrderState::PendingPayment, order_cents, None, Some(bad)).is_err());
            prop_assert_eq!(
                check_payment(OrderState::PendingPayment, order_cents, None, Some(order_cents)),
                Ok(PaymentShare::Whole)
            );
        }

        /// Any permutation of the ERP's progress messages ends in the state of the furthest one.
        #[test]
        fn erp_progress_in_any_order_ends_at_the_furthest(
            events in proptest::sample::subsequence(
                vec![E::ErpAudited, E::ErpStocked, E::ErpShipped, E::ErpDelivered], 1..=4
            ).prop_shuffle(),
        ) {
            let end = events.iter().fold(OrderState::Paid, |s, e| order_step(s, *e).state());
            let furthest = events
                .iter()
                .map(|e| order_step(OrderState::Paid, *e).state())
                .max_by_key(|s| s.rank());
            prop_assert_eq!(Some(end), furthest);
        }
    }
}
