//! What the stand-in answers to each message the ERP consumes.

use std::sync::Arc;
use std::time::Duration;

use orderbus_bus::{Delivery, HandlerError, MessageHandler, Subscription, Topology};
use orderbus_contracts::{
    AfterSaleExpressInfo, AfterSaleKind, AfterSaleStatusUpdate, ChangeRefundCancel,
    ChangeStatusUpdate, CreateChangeOrder, CreateRefundOrder, CustomerAddressChange, Decimal,
    DeliveryAddress, ErpAddressChange, ErpChangeOrderCreated, ErpChangeOrderData, ErpOrderStatus,
    ErpOrderStatusUpdate, ErpRefundOrderCreated, ErpRefundOrderData, ErpResultCode, ExchangeStatus,
    ExpressData, ExpressInfoUpdate, InvoicePdfUrl, InvoiceType, OrderPayment, OrderStatus,
    OrderSubmit, PayType, RefundStatusUpdate, ReturnStatus, StorefrontOrderStatus,
};
use rand::Rng;
use sqlx::PgConnection;

use crate::config::{chance, SimConfig};
use crate::scheduler::{cancel, schedule};
use crate::store::{self, NewAfterSale};
use crate::ErpSimError;

/// The ERP's behaviour; one value implements every consumed message.
#[derive(Clone)]
pub struct Erp {
    cfg: Arc<SimConfig>,
}

/// The subscription table of the stand-in: every routing key the ERP consumes.
pub fn topology(cfg: &SimConfig) -> Topology {
    let erp = Erp {
        cfg: Arc::new(cfg.clone()),
    };
    Topology::new(cfg.service.clone())
        .subscribe(
            Subscription::to::<OrderSubmit, _>(erp.clone())
                .describe("ERP stand-in: orders (auto-pay when enabled)"),
        )
        .subscribe(
            Subscription::to::<OrderPayment, _>(erp.clone())
                .describe("ERP stand-in: paid orders start the 100/200/600/700 walk"),
        )
        .subscribe(
            Subscription::to::<OrderStatus, _>(erp.clone())
                .describe("ERP stand-in: user/system cancel stops the walk"),
        )
        .subscribe(
            Subscription::to::<CreateChangeOrder, _>(erp.clone())
                .describe("ERP stand-in: exchange requests"),
        )
        .subscribe(
            Subscription::to::<CreateRefundOrder, _>(erp.clone())
                .describe("ERP stand-in: return requests"),
        )
        .subscribe(
            Subscription::to::<AfterSaleExpressInfo, _>(erp.clone())
                .describe("ERP stand-in: customer's waybill for goods sent back"),
        )
        .subscribe(
            Subscription::to::<ChangeRefundCancel, _>(erp.clone())
                .describe("ERP stand-in: cancelled exchanges/returns stop their walk"),
        )
        .subscribe(
            Subscription::to::<CustomerAddressChange, _>(erp.clone())
                .describe("ERP stand-in: customer address changes (logged)"),
        )
        .subscribe(
            Subscription::to::<ExpressInfoUpdate, _>(erp)
                .describe("ERP stand-in: tracking events (logged)"),
        )
}

/// A fresh ERP-side id (exchange/return/new order). Random rather than a sequence so that
/// stand-ins with separate databases on one broker (parallel tests) do not reuse ids.
fn erp_id() -> i64 {
    rand::rng().random_range(100_000_000..1_000_000_000)
}

fn decide(rate: f64) -> bool {
    chance(rate, &mut rand::rng())
}

fn order_subject(code: i64) -> String {
    format!("order:{code}")
}

fn after_sale_subject(kind: &str, erp_id: i64) -> String {
    format!("{kind}:{erp_id}")
}

impl From<ErpSimError> for HandlerError {
    fn from(e: ErpSimError) -> Self {
        match e {
            ErpSimError::Db(e) => e.into(),
            other => HandlerError::Park(other.to_string()),
        }
    }
}

impl Erp {
    /// Schedules the order walk once: 100 → (address change) → 200 → 600 → 700 → blue invoice.
    /// Only an order the ERP knows from its `order.submit`, and never a JIT split parent: the
    /// ERP fulfils the children.
    async fn start_walk(
        &self,
        conn: &mut PgConnection,
        order_code: i64,
        tp: Option<&str>,
    ) -> Result<(), ErpSimError> {
        let Some(store::WalkClaim { uid, submit }) = store::claim_walk(conn, order_code).await?
        else {
            return Ok(());
        };
        let d = &self.cfg.delays;
        let subject = order_subject(order_code);
        let status = |status, data| ErpOrderStatusUpdate {
            uid,
            order_code,
            status,
            data,
        };
        tracing::info!(
            stand_in = true,
            order_code,
            "erp-sim: walking order 100 → 200 → 600 → 700"
        );
        schedule(
            conn,
            &subject,
            d.audit,
            &status(ErpOrderStatus::Audited, None),
            None,
            tp,
        )
        .await?;
        if let Some(change) = submit
            .and_then(|s| serde_json::from_value::<OrderSubmit>(s).ok())
            .filter(|_| decide(self.cfg.address_change_rate))
            .map(|s| cs_address_change(&s))
        {
            schedule(conn, &subject, Duration::ZERO, &change, None, tp).await?;
        }
        schedule(
            conn,
            &subject,
            d.stock,
            &status(ErpOrderStatus::Stocked, None),
            None,
            tp,
        )
        .await?;
        let express = ExpressData {
            express_id: self.cfg.express_id,
            express_number: express_number(order_code),
        };
        let shipped = status(ErpOrderStatus::Shipped, Some(express));
        schedule(conn, &subject, d.ship, &shipped, None, tp).await?;
        schedule(
            conn,
            &subject,
            d.deliver,
            &status(ErpOrderStatus::Delivered, None),
            None,
            tp,
        )
        .await?;
        let invoice = InvoicePdfUrl {
            uid,
            order_code,
            pdf_url: format!("{}/{order_code}/blue.pdf", self.cfg.invoice_base_url),
            invoice_type: InvoiceType::Blue,
        };
        schedule(conn, &subject, d.invoice, &invoice, None, tp).await?;
        Ok(())
    }
}

/// An 11-digit waybill number derived from the order code (stable across replays).
pub fn express_number(order_code: i64) -> String {
    format!("9{:010}", order_code.rem_euclid(10_000_000_000))
}

/// Customer service "corrects" the address of the order: same address, a note appended.
fn cs_address_change(submit: &OrderSubmit) -> ErpAddressChange {
    let a = &submit.delivery_address;
    ErpAddressChange(vec![DeliveryAddress {
        address: format!("{} (客服修改 / changed by customer service)", a.address),
        address_id: 0,
        area_code: 0,
        city: a.city.clone(),
        district: a.district.clone(),
        email: a.email.clone(),
        mobile: a.mobile.clone(),
        order_code: submit.order_code,
        parent_order_code: submit.parent_order_code.unwrap_or(0),
        phone: String::new(),
        province: a.province.clone(),
        user_name: a.user_name.clone(),
        zip_code: a.zip_code.trim().parse().unwrap_or(0),
    }])
}

impl MessageHandler<OrderSubmit> for Erp {
    async fn handle(
        &self,
        m: OrderSubmit,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            if !self.cfg.serves(m.uid) {
                return Ok(());
            }
            // An order family (an order and its JIT children) is handled one message at a time:
            // `order.submit` and `order.payment` arrive on different queues, and without the
            // lock a child's submit and its parent's payment could each miss the other's
            // uncommitted row, and the child would never be walked.
            store::lock_family(conn, m.parent_order_code.unwrap_or(m.order_code)).await?;
            let body = serde_json::to_value(&m)
                .map_err(|e| HandlerError::Park(format!("re-encode: {e}")))?;
            let inserted =
                store::record_submit(conn, m.order_code, m.uid, m.parent_order_code, body).await?;
            let Some(paid) = inserted else {
                tracing::info!(
                    order_code = m.order_code,
                    "erp-sim: order.submit again; already known"
                );
                return Ok(());
            };
            let tp = d.traceparent.as_deref();
            let subject = order_subject(m.order_code);
            match m.parent_order_code {
                // A JIT child is paid through its parent: walk it once the parent is paid. The
                // parent itself is never walked.
                Some(parent) => {
                    let parent_paid = mark_split_parent(conn, parent, m.uid).await?;
                    if parent_paid {
                        self.start_walk(conn, m.order_code, tp).await?;
                    }
                }
                None if !paid => {
                    if self.cfg.auto_pay {
                        tracing::info!(
                            stand_in = true,
                            order_code = m.order_code,
                            "erp-sim AUTO-PAY (dev convenience standing in for the payments service): scheduling order.payment"
                        );
                        let payment = OrderPayment {
                            uid: m.uid,
                            order_code: m.order_code,
                            amount: m.order_amount.clone(),
                            pay_type: PayType::Card,
                            payment_gateway: "erp-sim-autopay".to_owned(),
                            gateway_trade_no: format!("ERPSIM-AUTOPAY-{}", m.order_code),
                            paid_time: chrono::Utc::now().timestamp(),
                        };
                        schedule(conn, &subject, self.cfg.delays.auto_pay, &payment, None, tp)
                            .await?;
                    }
                    if let Some(after) = self.cfg.unpaid_cancel_after {
                        let cancel = ErpOrderStatusUpdate {
                            uid: m.uid,
                            order_code: m.order_code,
                            status: ErpOrderStatus::ErpAutoCancelled,
                            data: None,
                        };
                        let unpaid = format!("unpaid:{}", m.order_code);
                        schedule(conn, &unpaid, after, &cancel, None, tp).await?;
                    }
                }
                // The payment came first (another queue): the walk starts now.
                None => self.start_walk(conn, m.order_code, tp).await?,
            }
            Ok(())
        }
        .await
    }
}

/// Records that `parent` was split (a child's `order.submit` names it) and stops a walk a
/// payment may have started before this child was known. Returns whether the parent is paid.
async fn mark_split_parent(
    conn: &mut PgConnection,
    parent: i64,
    uid: i64,
) -> Result<bool, ErpSimError> {
    let found = store::mark_split_parent(conn, parent, uid).await?;
    if found.walked {
        let n = cancel(conn, &order_subject(parent)).await?;
        tracing::info!(
            stand_in = true,
            order_code = parent,
            pending_cancelled = n,
            "erp-sim: order turned out to be a JIT split parent; its walk is stopped (the children are fulfilled)"
        );
    }
    Ok(found.paid)
}

impl MessageHandler<OrderPayment> for Erp {
    async fn handle(
        &self,
        m: OrderPayment,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            if !self.cfg.serves(m.uid) {
                return Ok(());
            }
            store::lock_family(conn, m.order_code).await?;
            let Some(storefront_cancelled) =
                store::record_payment(conn, m.order_code, m.uid).await?
            else {
                tracing::info!(
                    order_code = m.order_code,
                    "erp-sim: order already paid; ignoring"
                );
                return Ok(());
            };
            let unpaid = format!("unpaid:{}", m.order_code);
            cancel(conn, &unpaid).await?;
            // Paid after the stand-in already auto-cancelled it (906): too late to ship.
            let auto_cancelled = store::any_sent(conn, &unpaid).await?;
            let cancelled = storefront_cancelled || auto_cancelled;
            if cancelled {
                tracing::info!(
                    order_code = m.order_code,
                    "erp-sim: payment for a cancelled order; not shipping"
                );
                return Ok(());
            }
            let tp = d.traceparent.as_deref();
            self.start_walk(conn, m.order_code, tp).await?;
            for child in store::children_of(conn, m.order_code).await? {
                self.start_walk(conn, child, tp).await?;
            }
            Ok(())
        }
        .await
    }
}

impl MessageHandler<OrderStatus> for Erp {
    async fn handle(
        &self,
        m: OrderStatus,
        _d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            match m.status {
                StorefrontOrderStatus::UserCancelled
                | StorefrontOrderStatus::SystemAutoCancelled => {
                    if store::cancel_order(conn, m.order_code).await? {
                        let n = cancel(conn, &order_subject(m.order_code)).await?
                            + cancel(conn, &format!("unpaid:{}", m.order_code)).await?;
                        tracing::info!(order_code = m.order_code, status = %m.status, pending_cancelled = n, "erp-sim: order cancelled by the storefront; walk stopped");
                    }
                }
                StorefrontOrderStatus::ReceiptConfirmed => {
                    tracing::debug!(order_code = m.order_code, "erp-sim: receipt confirmed");
                }
            }
            Ok(())
        }
        .await
    }
}

impl MessageHandler<CreateChangeOrder> for Erp {
    async fn handle(
        &self,
        m: CreateChangeOrder,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            if !self.cfg.serves(m.uid) {
                return Ok(());
            }
            let reject = decide(self.cfg.reject_rate);
            let (exchange_id, returned_id, new_order_code) = (erp_id(), erp_id(), erp_id());
            let new = NewAfterSale {
                erp_id: exchange_id,
                kind: store::AfterSaleKind::Change,
                storefront_id: m.id,
                order_code: m.order_code,
                uid: m.uid,
                rejected: reject,
                amount: None,
            };
            if !store::insert_after_sale(conn, &new).await? {
                tracing::info!(id = m.id, "erp-sim: exchange already answered; ignoring");
                return Ok(());
            }
            let (code, message, ex_status, ret_status) = if reject {
                (
                    ErpResultCode::Rejected,
                    "error",
                    ExchangeStatus::Rejected,
                    ReturnStatus::Rejected,
                )
            } else {
                (
                    ErpResultCode::Ok,
                    "ok",
                    ExchangeStatus::Approved,
                    ReturnStatus::Approved,
                )
            };
            let answer = ErpChangeOrderCreated {
                code,
                message: message.to_owned(),
                data: ErpChangeOrderData {
                    id: m.id,
                    init_order_code: m.init_order_code,
                    source_order_code: m.source_order_code,
                    new_order_code,
                    exchange_id,
                    returned_id,
                    exchange_status: ex_status,
                    returned_status: ret_status,
                },
            };
            let subject = after_sale_subject("change", exchange_id);
            let corr = Some(m.order_code.to_string());
            let tp = d.traceparent.as_deref();
            let delays = &self.cfg.delays;
            tracing::info!(
                stand_in = true,
                id = m.id,
                exchange_id,
                reject,
                "erp-sim: exchange request"
            );
            schedule(
                conn,
                &subject,
                delays.create_answer,
                &answer,
                corr.clone(),
                tp,
            )
            .await?;
            if !reject {
                let approved = AfterSaleStatusUpdate::Change(ChangeStatusUpdate {
                    id: exchange_id,
                    status: ExchangeStatus::Approved,
                });
                schedule(conn, &subject, delays.approve, &approved, corr, tp).await?;
            }
            Ok(())
        }
        .await
    }
}

/// Sum of the returned goods' prices (the spec's lines have no quantity).
fn refund_amount(m: &CreateRefundOrder) -> Result<Decimal, HandlerError> {
    let mut cents: i64 = 0;
    for (i, g) in m.returned_goods_list.iter().enumerate() {
        let c = g.last_price.to_cents().ok_or_else(|| {
            HandlerError::Park(format!(
                "returned_goods_list[{i}].last_price: {} is not a two-decimal amount",
                g.last_price
            ))
        })?;
        cents = cents
            .checked_add(c)
            .ok_or_else(|| HandlerError::Park("returned_goods_list: amount overflow".into()))?;
    }
    Ok(amount_for_wire(cents))
}

/// The spec sends `real_returned_amount` as a JSON number (`100`): whole amounts go out as
/// integers (`334`, not `334.0`), others with their cents (`334.5`).
fn amount_for_wire(cents: i64) -> Decimal {
    if cents % 100 == 0 {
        Decimal::parse(&(cents / 100).to_string()).unwrap_or_else(|| Decimal::from_cents(cents))
    } else {
        Decimal::from_cents(cents)
    }
}

impl MessageHandler<CreateRefundOrder> for Erp {
    async fn handle(
        &self,
        m: CreateRefundOrder,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            if !self.cfg.serves(m.uid) {
                return Ok(());
            }
            let amount = refund_amount(&m)?;
            let reject = decide(self.cfg.reject_rate);
            let returned_id = erp_id();
            let new = NewAfterSale {
                erp_id: returned_id,
                kind: store::AfterSaleKind::Refund,
                storefront_id: m.order_returned_id,
                order_code: m.order_code,
                uid: m.uid,
                rejected: reject,
                amount: Some(amount.as_str()),
            };
            if !store::insert_after_sale(conn, &new).await? {
                tracing::info!(
                    id = m.order_returned_id,
                    "erp-sim: return already answered; ignoring"
                );
                return Ok(());
            }
            let data = if reject {
                ErpRefundOrderData {
                    id: m.order_returned_id,
                    returned_id,
                    returned_status: ReturnStatus::Rejected,
                    real_returned_amount: None,
                    is_return_coupon: None,
                    return_yoho_coin: None,
                }
            } else {
                ErpRefundOrderData {
                    id: m.order_returned_id,
                    returned_id,
                    returned_status: ReturnStatus::Approved,
                    real_returned_amount: Some(amount),
                    is_return_coupon: Some("N".to_owned()),
                    return_yoho_coin: Some(0),
                }
            };
            let answer = ErpRefundOrderCreated {
                code: if reject {
                    ErpResultCode::Rejected
                } else {
                    ErpResultCode::Ok
                },
                message: if reject { "error" } else { "ok" }.to_owned(),
                data,
            };
            let subject = after_sale_subject("refund", returned_id);
            let corr = Some(m.order_code.to_string());
            let tp = d.traceparent.as_deref();
            let delays = &self.cfg.delays;
            tracing::info!(
                stand_in = true,
                id = m.order_returned_id,
                returned_id,
                reject,
                "erp-sim: return request"
            );
            schedule(
                conn,
                &subject,
                delays.create_answer,
                &answer,
                corr.clone(),
                tp,
            )
            .await?;
            if !reject {
                let approved = AfterSaleStatusUpdate::Refund(refund_status(
                    returned_id,
                    ReturnStatus::Approved,
                    None,
                ));
                schedule(conn, &subject, delays.approve, &approved, corr, tp).await?;
            }
            Ok(())
        }
        .await
    }
}

fn refund_status(id: i64, status: ReturnStatus, amount: Option<Decimal>) -> RefundStatusUpdate {
    let refunded = amount.is_some();
    RefundStatusUpdate {
        id,
        status,
        real_returned_amount: amount,
        is_return_coupon: refunded.then(|| "N".to_owned()),
        return_yoho_coin: refunded.then_some(0),
    }
}

impl MessageHandler<AfterSaleExpressInfo> for Erp {
    async fn handle(
        &self,
        m: AfterSaleExpressInfo,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let (kind, uid, apply_id, storefront_id) = match &m {
                AfterSaleExpressInfo::Change(c) => {
                    (store::AfterSaleKind::Change, c.uid, c.apply_id, c.id)
                }
                AfterSaleExpressInfo::Refund(r) => (
                    store::AfterSaleKind::Refund,
                    r.uid,
                    r.apply_id,
                    r.order_returned_id,
                ),
            };
            if !self.cfg.serves(uid) {
                return Ok(());
            }
            let Some(row) = store::lock_after_sale(conn, apply_id, kind).await? else {
                tracing::warn!(
                    kind = kind.as_str(),
                    apply_id,
                    "erp-sim: waybill for an unknown exchange/return; ignoring"
                );
                return Ok(());
            };
            let known_storefront_id = row.storefront_id;
            if known_storefront_id != storefront_id {
                tracing::warn!(
                    kind = kind.as_str(),
                    apply_id,
                    storefront_id,
                    known_storefront_id,
                    "erp-sim: waybill names another storefront id; going by apply_id"
                );
            }
            if row.state != "open" || row.had_waybill {
                tracing::info!(kind = kind.as_str(), apply_id, state = %row.state, had_waybill = row.had_waybill, "erp-sim: waybill noted; nothing (more) to walk");
                return Ok(());
            }
            store::mark_waybill(conn, apply_id).await?;
            let (order_code, order_uid, amount) = (row.order_code, row.uid, row.amount);
            let subject = after_sale_subject(kind.as_str(), apply_id);
            let corr = Some(order_code.to_string());
            let tp = d.traceparent.as_deref();
            let delays = &self.cfg.delays;
            tracing::info!(
                stand_in = true,
                kind = kind.as_str(),
                apply_id,
                "erp-sim: customer's waybill arrived; walking on"
            );
            match m {
                AfterSaleExpressInfo::Change(_) => {
                    for (delay, status) in [
                        (delays.received, ExchangeStatus::GoodsReceived),
                        (delays.complete, ExchangeStatus::Completed),
                    ] {
                        let msg = AfterSaleStatusUpdate::Change(ChangeStatusUpdate {
                            id: apply_id,
                            status,
                        });
                        schedule(conn, &subject, delay, &msg, corr.clone(), tp).await?;
                    }
                }
                AfterSaleExpressInfo::Refund(_) => {
                    let amount = amount
                        .as_deref()
                        .and_then(Decimal::parse)
                        .unwrap_or_else(|| Decimal::from_cents(0));
                    for (delay, status) in [
                        (delays.sent_back, ReturnStatus::GoodsSentBack),
                        (delays.received, ReturnStatus::GoodsReceived),
                    ] {
                        let msg =
                            AfterSaleStatusUpdate::Refund(refund_status(apply_id, status, None));
                        schedule(conn, &subject, delay, &msg, corr.clone(), tp).await?;
                    }
                    let refunded = AfterSaleStatusUpdate::Refund(refund_status(
                        apply_id,
                        ReturnStatus::Refunded,
                        Some(amount),
                    ));
                    schedule(conn, &subject, delays.complete, &refunded, corr.clone(), tp).await?;
                    let red = InvoicePdfUrl {
                        uid: order_uid,
                        order_code,
                        pdf_url: format!("{}/{order_code}/red.pdf", self.cfg.invoice_base_url),
                        invoice_type: InvoiceType::Red,
                    };
                    schedule(conn, &subject, delays.invoice, &red, corr, tp).await?;
                }
            }
            Ok(())
        }
        .await
    }
}

impl MessageHandler<ChangeRefundCancel> for Erp {
    async fn handle(
        &self,
        m: ChangeRefundCancel,
        _d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            let kind = match m.kind {
                AfterSaleKind::Change => store::AfterSaleKind::Change,
                AfterSaleKind::Refund => store::AfterSaleKind::Refund,
            };
            if !store::cancel_after_sale(conn, m.id, kind).await? {
                tracing::info!(
                    kind = kind.as_str(),
                    id = m.id,
                    "erp-sim: cancel for an unknown, rejected or already cancelled exchange/return"
                );
                return Ok(());
            }
            let n = cancel(conn, &after_sale_subject(kind.as_str(), m.id)).await?;
            tracing::info!(
                stand_in = true,
                kind = kind.as_str(),
                id = m.id,
                pending_cancelled = n,
                "erp-sim: cancelled by the customer; walk stopped"
            );
            Ok(())
        }
        .await
    }
}

impl MessageHandler<CustomerAddressChange> for Erp {
    async fn handle(
        &self,
        m: CustomerAddressChange,
        _d: &Delivery,
        _conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            for a in &m.0 {
                tracing::info!(
                    order_code = a.order_code,
                    "erp-sim: customer changed the delivery address (accepted, nothing to answer)"
                );
            }
            Ok(())
        }
        .await
    }
}

impl MessageHandler<ExpressInfoUpdate> for Erp {
    async fn handle(
        &self,
        m: ExpressInfoUpdate,
        _d: &Delivery,
        _conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        async move {
            tracing::debug!(
                order_code = m.order_code,
                state = m.state,
                "erp-sim: tracking event noted"
            );
            Ok(())
        }
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handlers against a real database (no broker: each handler runs in a transaction of
    /// its own, as the delivery chain would run it).
    mod walks {
        use super::super::*;
        use orderbus_testkit::TestDb;
        // The tests read the stand-in's tables directly to check what a handler left behind.
        use sqlx::Row;

        const UID: i64 = 8041518;

        struct Stand {
            erp: Erp,
            db: TestDb,
        }

        async fn erp() -> Stand {
            let db = TestDb::create().await.expect("test database");
            crate::MIGRATIONS.run(db.pool()).await.expect("migrations");
            let cfg = SimConfig::for_tests("erp-sim-unit", db.url(), "amqp://unused");
            Stand {
                erp: Erp { cfg: Arc::new(cfg) },
                db,
            }
        }

        fn submit(order_code: i64, parent: Option<i64>) -> OrderSubmit {
            let fixture = if parent.is_some() {
                include_str!("../../../tests/fixtures/orderbus/order.submit/jit-child.json")
            } else {
                include_str!("../../../tests/fixtures/orderbus/order.submit/jit-parent.json")
            };
            let mut m: OrderSubmit =
                orderbus_contracts::decode(fixture.as_bytes()).expect("fixture decodes");
            m.uid = UID;
            m.order_code = order_code;
            m.parent_order_code = parent;
            m
        }

        fn payment(order_code: i64) -> OrderPayment {
            let fixture = include_str!("../../../tests/fixtures/orderbus/order.payment/card.json");
            let mut m: OrderPayment =
                orderbus_contracts::decode(fixture.as_bytes()).expect("fixture decodes");
            m.uid = UID;
            m.order_code = order_code;
            m
        }

        impl Stand {
            async fn handle<M>(&self, m: M)
            where
                Erp: MessageHandler<M>,
            {
                let d = Delivery::new("test", "test", Vec::new());
                let mut tx = self.db.pool().begin().await.expect("begin");
                MessageHandler::<M>::handle(&self.erp, m, &d, &mut tx)
                    .await
                    .expect("handled");
                tx.commit().await.expect("commit");
            }

            /// (pending, cancelled) scheduled rows of an order's walk.
            async fn walk(&self, order_code: i64) -> (i64, i64) {
                let row = sqlx::query(
                    "SELECT count(*) FILTER (WHERE cancelled_at IS NULL) AS pending, \
                            count(*) FILTER (WHERE cancelled_at IS NOT NULL) AS cancelled \
                     FROM erp_sim_scheduled WHERE subject = $1",
                )
                .bind(order_subject(order_code))
                .fetch_one(self.db.pool())
                .await
                .expect("count");
                (
                    row.try_get("pending").expect("pending"),
                    row.try_get("cancelled").expect("cancelled"),
                )
            }
        }

        #[tokio::test]
        async fn a_split_parent_is_not_walked_its_children_are() {
            let e = erp().await;
            let (parent, child) = (1_607_472_719, 1_607_472_720);
            e.handle(submit(parent, None)).await;
            e.handle(submit(child, Some(parent))).await;
            e.handle(payment(parent)).await;
            assert_eq!(e.walk(parent).await, (0, 0), "the parent is not fulfilled");
            assert_eq!(e.walk(child).await.0, 5, "100, 200, 600, 700, invoice");
        }

        #[tokio::test]
        async fn a_child_known_after_the_payment_stops_the_parent_walk() {
            let e = erp().await;
            let (parent, child) = (1_607_472_719, 1_607_472_720);
            e.handle(submit(parent, None)).await;
            e.handle(payment(parent)).await;
            assert_eq!(e.walk(parent).await, (5, 0));
            e.handle(submit(child, Some(parent))).await;
            assert_eq!(e.walk(parent).await, (0, 5), "every pending step cancelled");
            assert_eq!(e.walk(child).await.0, 5);
        }

        #[tokio::test]
        async fn a_payment_without_its_submit_waits_for_the_submit() {
            let e = erp().await;
            let code = 1_607_472_719;
            e.handle(payment(code)).await;
            assert_eq!(
                e.walk(code).await,
                (0, 0),
                "not known from order.submit yet"
            );
            e.handle(submit(code, None)).await;
            assert_eq!(e.walk(code).await.0, 5, "walked once the submit arrives");
            e.handle(payment(code)).await;
            assert_eq!(e.walk(code).await.0, 5, "once");
        }
    }

    #[test]
    fn waybill_numbers_have_eleven_digits() {
        assert_eq!(express_number(100000), "90000100000");
        assert_eq!(express_number(1_607_472_719).len(), 11);
    }

    #[test]
    fn refund_amount_sums_prices() {
        let fixture =
            include_str!("../../../tests/fixtures/mq-spec/order.createRefundOrder/create.json");
        let mut m: CreateRefundOrder =
            orderbus_contracts::decode(fixture.as_bytes()).expect("fixture decodes");
        assert_eq!(
            refund_amount(&m).map(|d| d.as_str().to_owned()),
            Ok("334".to_owned())
        );
        let mut second = m.returned_goods_list[0].clone();
        second.last_price = Decimal::parse("0.5").expect("decimal");
        m.returned_goods_list.push(second);
        assert_eq!(
            refund_amount(&m).map(|d| d.as_str().to_owned()),
            Ok("334.50".to_owned())
        );
    }
}
