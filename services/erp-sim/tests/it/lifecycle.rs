//! The stand-in plays the ERP over the real broker and database: orders, auto-pay, unpaid
//! cancel, address changes.

use crate::common::{collect, fixture, random_code, Sim};
use orderbus_contracts::{
    decode, encode, BusMessage, ErpOrderStatus, InvoiceType, OrderPayment, OrderStatus,
    OrderSubmit, PayType, StorefrontOrderStatus,
};
use orderbus_testkit::{ErpPublisher, TestQueue};

fn submit(uid: i64, order_code: i64) -> OrderSubmit {
    let mut m: OrderSubmit =
        decode(&fixture("orderbus/order.submit/jit-parent.json")).expect("fixture decodes");
    m.uid = uid;
    m.order_code = order_code;
    m
}

fn payment(uid: i64, order_code: i64) -> OrderPayment {
    let mut m: OrderPayment =
        decode(&fixture("orderbus/order.payment/card.json")).expect("fixture decodes");
    m.uid = uid;
    m.order_code = order_code;
    m
}

fn is_about(code: i64) -> impl Fn(&BusMessage) -> bool {
    move |m| match m {
        BusMessage::OrderErpStatus(s) => s.order_code == code,
        BusMessage::ErpUpdateInvoicePdfUrl(i) => i.order_code == code,
        BusMessage::OrderPayment(p) => p.order_code == code,
        BusMessage::ErpDeliveryAddressUpdate(a) => a.0.iter().any(|x| x.order_code == code),
        _ => false,
    }
}

fn statuses(msgs: &[BusMessage]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m {
            BusMessage::OrderErpStatus(s) => format!("erpstatus {}", s.status),
            BusMessage::ErpUpdateInvoicePdfUrl(i) => format!("invoice {}", i.invoice_type),
            BusMessage::OrderPayment(_) => "payment".to_owned(),
            BusMessage::ErpDeliveryAddressUpdate(_) => "address".to_owned(),
            other => format!("{:?}", other.routing_key()),
        })
        .collect()
}

#[tokio::test]
async fn paid_order_is_walked_100_200_600_700_then_blue_invoice() {
    let sim = Sim::start(|_| {}).await;
    let mut queue = TestQueue::bind(&["order.erpstatus", "erp.updateInvoicePdfUrl"])
        .await
        .expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let code = random_code();
    // As the storefront and the payments service would.
    erp.publish(
        "order.submit",
        &encode(&submit(sim.uid, code)).expect("encode"),
    )
    .await
    .expect("submit published");
    erp.publish(
        "order.payment",
        &encode(&payment(sim.uid, code)).expect("encode"),
    )
    .await
    .expect("payment published");

    let got = collect(&mut queue, &sim.config.service, 5, is_about(code)).await;
    assert_eq!(
        statuses(&got),
        [
            "erpstatus 100",
            "erpstatus 200",
            "erpstatus 600",
            "erpstatus 700",
            "invoice 0"
        ]
    );
    for m in &got {
        match m {
            BusMessage::OrderErpStatus(s) => {
                assert_eq!(s.uid, sim.uid);
                let shipped = s.status == ErpOrderStatus::Shipped;
                assert_eq!(s.data.is_some(), shipped, "express data only with 600");
                if let Some(d) = &s.data {
                    assert_eq!(d.express_id, 23);
                    assert_eq!(d.express_number.len(), 11);
                }
            }
            BusMessage::ErpUpdateInvoicePdfUrl(i) => {
                assert_eq!(i.invoice_type, InvoiceType::Blue);
                assert_eq!(i.uid, sim.uid);
                assert!(i.pdf_url.ends_with(&format!("/{code}/blue.pdf")));
            }
            _ => unreachable!("filtered"),
        }
    }
    sim.finish().await;
}

#[tokio::test]
async fn auto_pay_publishes_the_payment_and_the_order_is_walked() {
    let sim = Sim::start(|c| c.auto_pay = true).await;
    let mut queue = TestQueue::bind(&[
        "order.payment",
        "order.erpstatus",
        "erp.updateInvoicePdfUrl",
    ])
    .await
    .expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let code = random_code();
    let order = submit(sim.uid, code);
    erp.publish("order.submit", &encode(&order).expect("encode"))
        .await
        .expect("submit published");

    let got = collect(&mut queue, &sim.config.service, 6, is_about(code)).await;
    assert_eq!(
        statuses(&got),
        [
            "payment",
            "erpstatus 100",
            "erpstatus 200",
            "erpstatus 600",
            "erpstatus 700",
            "invoice 0"
        ]
    );
    let BusMessage::OrderPayment(p) = &got[0] else {
        unreachable!("checked above")
    };
    assert_eq!(p.uid, sim.uid);
    assert_eq!(p.amount, order.order_amount);
    assert_eq!(p.pay_type, PayType::Card);
    assert_eq!(p.payment_gateway, "erp-sim-autopay");
    sim.finish().await;
}

#[tokio::test]
async fn jit_child_is_walked_when_its_parent_is_paid() {
    let sim = Sim::start(|_| {}).await;
    let mut queue = TestQueue::bind(&["order.erpstatus"]).await.expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let (parent, child) = (random_code(), random_code());
    let mut child_submit: OrderSubmit =
        decode(&fixture("orderbus/order.submit/jit-child.json")).expect("fixture decodes");
    child_submit.uid = sim.uid;
    child_submit.order_code = child;
    child_submit.parent_order_code = Some(parent);
    erp.publish(
        "order.submit",
        &encode(&submit(sim.uid, parent)).expect("encode"),
    )
    .await
    .expect("published");
    erp.publish("order.submit", &encode(&child_submit).expect("encode"))
        .await
        .expect("published");
    erp.publish(
        "order.payment",
        &encode(&payment(sim.uid, parent)).expect("encode"),
    )
    .await
    .expect("published");
    let got = collect(&mut queue, &sim.config.service, 4, is_about(child)).await;
    assert_eq!(
        statuses(&got),
        [
            "erpstatus 100",
            "erpstatus 200",
            "erpstatus 600",
            "erpstatus 700"
        ]
    );
    sim.finish().await;
}

#[tokio::test]
async fn unpaid_order_is_auto_cancelled_906_when_configured() {
    let sim =
        Sim::start(|c| c.unpaid_cancel_after = Some(std::time::Duration::from_millis(50))).await;
    let mut queue = TestQueue::bind(&["order.erpstatus"]).await.expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let code = random_code();
    erp.publish(
        "order.submit",
        &encode(&submit(sim.uid, code)).expect("encode"),
    )
    .await
    .expect("published");
    let got = collect(&mut queue, &sim.config.service, 1, is_about(code)).await;
    assert_eq!(statuses(&got), ["erpstatus 906"]);
    sim.finish().await;
}

#[tokio::test]
async fn unpaid_order_without_the_option_waits_with_nothing_scheduled() {
    let sim = Sim::start(|_| {}).await;
    let erp = ErpPublisher::connect().await.expect("publisher");
    let code = random_code();
    erp.publish(
        "order.submit",
        &encode(&submit(sim.uid, code)).expect("encode"),
    )
    .await
    .expect("published");
    crate::common::wait_count(
        sim.pool(),
        "SELECT count(*) FROM erp_sim_orders WHERE order_code::text = $1 AND submitted_at IS NOT NULL",
        &code.to_string(),
        1,
    )
    .await;
    // The submit is recorded in the same transaction as any answer would be: none exists.
    let scheduled: i64 = sqlx::query_scalar("SELECT count(*) FROM erp_sim_scheduled")
        .fetch_one(sim.pool())
        .await
        .expect("query");
    assert_eq!(scheduled, 0);
    sim.finish().await;
}

#[tokio::test]
async fn address_change_rate_one_sends_erp_delivery_address_update_after_100() {
    let sim = Sim::start(|c| c.address_change_rate = 1.0).await;
    let mut queue = TestQueue::bind(&["order.erpstatus", "erp.deliveryAddressUpdate"])
        .await
        .expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let code = random_code();
    let order = submit(sim.uid, code);
    erp.publish("order.submit", &encode(&order).expect("encode"))
        .await
        .expect("published");
    // The address comes from the submit: pay once it is recorded (submit and payment are
    // consumed from different queues, so their order is otherwise not guaranteed).
    crate::common::wait_count(
        sim.pool(),
        "SELECT count(*) FROM erp_sim_orders WHERE order_code::text = $1 AND submit IS NOT NULL",
        &code.to_string(),
        1,
    )
    .await;
    erp.publish(
        "order.payment",
        &encode(&payment(sim.uid, code)).expect("encode"),
    )
    .await
    .expect("published");
    let got = collect(&mut queue, &sim.config.service, 3, is_about(code)).await;
    assert_eq!(
        statuses(&got),
        ["erpstatus 100", "address", "erpstatus 200"]
    );
    let BusMessage::ErpDeliveryAddressUpdate(a) = &got[1] else {
        unreachable!("checked above")
    };
    assert_eq!(a.0.len(), 1);
    assert_eq!(a.0[0].user_name, order.delivery_address.user_name);
    assert_eq!(a.0[0].zip_code, 315700);
    assert!(a.0[0].address.starts_with(&order.delivery_address.address));
    sim.finish().await;
}

#[tokio::test]
async fn storefront_cancel_stops_the_order_walk() {
    // Long delays: the walk is still pending when the cancel arrives.
    let sim = Sim::start(|c| {
        c.delays = orderbus_erp_sim::Delays::uniform(std::time::Duration::from_secs(600))
    })
    .await;
    let erp = ErpPublisher::connect().await.expect("publisher");
    let code = random_code();
    erp.publish(
        "order.submit",
        &encode(&submit(sim.uid, code)).expect("encode"),
    )
    .await
    .expect("published");
    erp.publish(
        "order.payment",
        &encode(&payment(sim.uid, code)).expect("encode"),
    )
    .await
    .expect("published");
    let subject = format!("order:{code}");
    crate::common::wait_count(
        sim.pool(),
        "SELECT count(*) FROM erp_sim_scheduled WHERE subject = $1",
        &subject,
        5,
    )
    .await;
    let cancel = OrderStatus {
        order_code: code,
        status: StorefrontOrderStatus::UserCancelled,
    };
    erp.publish("order.orderStatus", &encode(&cancel).expect("encode"))
        .await
        .expect("published");
    crate::common::wait_count(
        sim.pool(),
        "SELECT count(*) FROM erp_sim_scheduled WHERE subject = $1 AND cancelled_at IS NOT NULL",
        &subject,
        5,
    )
    .await;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM erp_sim_scheduled WHERE subject = $1 AND cancelled_at IS NULL",
    )
    .bind(&subject)
    .fetch_one(sim.pool())
    .await
    .expect("query");
    assert_eq!(live, 0, "nothing of the walk is left to send");
    sim.finish().await;
}
