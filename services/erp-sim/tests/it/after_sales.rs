//! Exchanges and returns: create answers (accepted / rejected at the configured rate), the
//! status walks after the customer's waybill, cancellation, and the red invoice.

use crate::common::{collect, fixture, random_code, wait_count, Sim};
use orderbus_contracts::{
    decode, encode, AfterSaleCancelStatus, AfterSaleExpressInfo, AfterSaleKind,
    AfterSaleStatusUpdate, BusMessage, ChangeRefundCancel, CreateChangeOrder, CreateRefundOrder,
    Decimal, ErpResultCode, ExchangeStatus, InvoiceType, ReturnStatus,
};
use orderbus_testkit::{ErpPublisher, TestQueue};

/// The spec's exchange request, for this test's customer and fresh codes.
fn change_request(uid: i64) -> CreateChangeOrder {
    let mut m: CreateChangeOrder =
        decode(&fixture("mq-spec/order.createChangeOrder/create.json")).expect("fixture decodes");
    let code = random_code();
    m.uid = uid;
    m.id = random_code();
    m.order_code = code;
    m.init_order_code = code;
    m.source_order_code = code;
    m
}

fn refund_request(uid: i64) -> CreateRefundOrder {
    let mut m: CreateRefundOrder =
        decode(&fixture("mq-spec/order.createRefundOrder/create.json")).expect("fixture decodes");
    m.uid = uid;
    m.order_returned_id = random_code();
    m.order_code = random_code();
    m
}

fn change_waybill(uid: i64, storefront_id: i64, erp_id: i64) -> AfterSaleExpressInfo {
    let mut m: AfterSaleExpressInfo = decode(&fixture(
        "mq-spec/order.updateChangeRefundOrderExpressInfo/change.json",
    ))
    .expect("fixture decodes");
    if let AfterSaleExpressInfo::Change(c) = &mut m {
        c.uid = uid;
        c.id = storefront_id;
        c.apply_id = erp_id;
    }
    m
}

fn refund_waybill(uid: i64, storefront_id: i64, erp_id: i64) -> AfterSaleExpressInfo {
    let mut m: AfterSaleExpressInfo = decode(&fixture(
        "mq-spec/order.updateChangeRefundOrderExpressInfo/refund.json",
    ))
    .expect("fixture decodes");
    if let AfterSaleExpressInfo::Refund(r) = &mut m {
        r.uid = uid;
        r.order_returned_id = storefront_id;
        r.apply_id = erp_id;
    }
    m
}

fn change_created_for(id: i64) -> impl Fn(&BusMessage) -> bool {
    move |m| matches!(m, BusMessage::ErpCreateChangeOrder(c) if c.data.id == id)
}

fn refund_created_for(id: i64) -> impl Fn(&BusMessage) -> bool {
    move |m| matches!(m, BusMessage::ErpCreateRefundOrder(c) if c.data.id == id)
}

fn status_of(erp_id: i64, order_code: i64) -> impl Fn(&BusMessage) -> bool {
    move |m| match m {
        BusMessage::ErpUpdateChangeRefundOrderStatus(AfterSaleStatusUpdate::Change(c)) => {
            c.id == erp_id
        }
        BusMessage::ErpUpdateChangeRefundOrderStatus(AfterSaleStatusUpdate::Refund(r)) => {
            r.id == erp_id
        }
        BusMessage::ErpUpdateInvoicePdfUrl(i) => i.order_code == order_code,
        _ => false,
    }
}

#[tokio::test]
async fn exchange_is_accepted_then_walked_10_30_50_after_the_waybill() {
    let sim = Sim::start(|c| c.reject_rate = 0.0).await;
    let mut queue =
        TestQueue::bind(&["erp.createChangeOrder", "erp.updateChangeRefundOrderStatus"])
            .await
            .expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let request = change_request(sim.uid);
    erp.publish(
        "order.createChangeOrder",
        &encode(&request).expect("encode"),
    )
    .await
    .expect("published");

    let created = collect(
        &mut queue,
        &sim.config.service,
        1,
        change_created_for(request.id),
    )
    .await;
    let BusMessage::ErpCreateChangeOrder(created) = &created[0] else {
        unreachable!("filtered")
    };
    assert_eq!(created.code, ErpResultCode::Ok);
    assert_eq!(created.message, "ok");
    assert_eq!(created.data.init_order_code, request.init_order_code);
    assert_eq!(created.data.source_order_code, request.source_order_code);
    assert_eq!(created.data.exchange_status, ExchangeStatus::Approved);
    assert_eq!(created.data.returned_status, ReturnStatus::Approved);
    let exchange_id = created.data.exchange_id;

    let approved = collect(
        &mut queue,
        &sim.config.service,
        1,
        status_of(exchange_id, 0),
    )
    .await;
    assert!(matches!(
        &approved[0],
        BusMessage::ErpUpdateChangeRefundOrderStatus(AfterSaleStatusUpdate::Change(c)) if c.status == ExchangeStatus::Approved
    ));

    // The customer sends the goods back (as the storefront would publish it).
    let waybill = change_waybill(sim.uid, request.id, exchange_id);
    erp.publish(
        "order.updateChangeRefundOrderExpressInfo",
        &encode(&waybill).expect("encode"),
    )
    .await
    .expect("published");
    let walked = collect(
        &mut queue,
        &sim.config.service,
        2,
        status_of(exchange_id, 0),
    )
    .await;
    let statuses: Vec<ExchangeStatus> = walked
        .iter()
        .map(|m| match m {
            BusMessage::ErpUpdateChangeRefundOrderStatus(AfterSaleStatusUpdate::Change(c)) => {
                c.status
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        statuses,
        [ExchangeStatus::GoodsReceived, ExchangeStatus::Completed]
    );
    sim.finish().await;
}

#[tokio::test]
async fn return_is_accepted_then_walked_10_20_30_40_with_amount_and_red_invoice() {
    let sim = Sim::start(|c| c.reject_rate = 0.0).await;
    let mut queue = TestQueue::bind(&[
        "erp.createRefundOrder",
        "erp.updateChangeRefundOrderStatus",
        "erp.updateInvoicePdfUrl",
    ])
    .await
    .expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let request = refund_request(sim.uid);
    erp.publish(
        "order.createRefundOrder",
        &encode(&request).expect("encode"),
    )
    .await
    .expect("published");

    let created = collect(
        &mut queue,
        &sim.config.service,
        1,
        refund_created_for(request.order_returned_id),
    )
    .await;
    let BusMessage::ErpCreateRefundOrder(created) = &created[0] else {
        unreachable!("filtered")
    };
    assert_eq!(created.code, ErpResultCode::Ok);
    assert_eq!(created.data.returned_status, ReturnStatus::Approved);
    // The fixture returns one line at "334" (sent as the number 334, like the spec's `100`).
    assert_eq!(created.data.real_returned_amount, Decimal::parse("334"));
    assert_eq!(created.data.is_return_coupon.as_deref(), Some("N"));
    let returned_id = created.data.returned_id;
    let order_code = request.order_code;

    let approved = collect(
        &mut queue,
        &sim.config.service,
        1,
        status_of(returned_id, order_code),
    )
    .await;
    assert!(matches!(
        &approved[0],
        BusMessage::ErpUpdateChangeRefundOrderStatus(AfterSaleStatusUpdate::Refund(r)) if r.status == ReturnStatus::Approved && r.real_returned_amount.is_none()
    ));

    let waybill = refund_waybill(sim.uid, request.order_returned_id, returned_id);
    erp.publish(
        "order.updateChangeRefundOrderExpressInfo",
        &encode(&waybill).expect("encode"),
    )
    .await
    .expect("published");
    let walked = collect(
        &mut queue,
        &sim.config.service,
        4,
        status_of(returned_id, order_code),
    )
    .await;
    let mut statuses = Vec::new();
    for m in &walked[..3] {
        let BusMessage::ErpUpdateChangeRefundOrderStatus(AfterSaleStatusUpdate::Refund(r)) = m
        else {
            panic!("unexpected {m:?}");
        };
        statuses.push(r.status);
        if r.status == ReturnStatus::Refunded {
            assert_eq!(r.real_returned_amount, Decimal::parse("334"));
            assert_eq!(r.return_yoho_coin, Some(0));
        } else {
            assert_eq!(r.real_returned_amount, None);
        }
    }
    assert_eq!(
        statuses,
        [
            ReturnStatus::GoodsSentBack,
            ReturnStatus::GoodsReceived,
            ReturnStatus::Refunded
        ]
    );
    let BusMessage::ErpUpdateInvoicePdfUrl(red) = &walked[3] else {
        panic!("expected the red invoice, got {:?}", walked[3]);
    };
    assert_eq!(red.invoice_type, InvoiceType::Red);
    assert_eq!(red.uid, sim.uid);
    assert!(red.pdf_url.ends_with(&format!("/{order_code}/red.pdf")));
    sim.finish().await;
}

#[tokio::test]
async fn reject_rate_one_rejects_exchanges_and_returns_with_500_and_91() {
    let sim = Sim::start(|c| c.reject_rate = 1.0).await;
    let mut queue = TestQueue::bind(&["erp.createChangeOrder", "erp.createRefundOrder"])
        .await
        .expect("queue");
    let erp = ErpPublisher::connect().await.expect("publisher");
    let change = change_request(sim.uid);
    let refund = refund_request(sim.uid);
    erp.publish("order.createChangeOrder", &encode(&change).expect("encode"))
        .await
        .expect("published");
    erp.publish("order.createRefundOrder", &encode(&refund).expect("encode"))
        .await
        .expect("published");

    // Both answers in one pass: they are independent, so either may arrive first, and
    // `collect` drops what its filter does not keep.
    let (is_change, is_refund) = (
        change_created_for(change.id),
        refund_created_for(refund.order_returned_id),
    );
    let got = collect(&mut queue, &sim.config.service, 2, |m| {
        is_change(m) || is_refund(m)
    })
    .await;
    let Some(BusMessage::ErpCreateChangeOrder(c)) = got.iter().find(|m| is_change(m)) else {
        panic!("no exchange answer among {got:?}");
    };
    let Some(BusMessage::ErpCreateRefundOrder(r)) = got.iter().find(|m| is_refund(m)) else {
        panic!("no return answer among {got:?}");
    };
    assert_eq!(
        (c.code, c.message.as_str()),
        (ErpResultCode::Rejected, "error")
    );
    assert_eq!(c.data.exchange_status, ExchangeStatus::Rejected);
    assert_eq!(c.data.returned_status, ReturnStatus::Rejected);

    assert_eq!(
        (r.code, r.message.as_str()),
        (ErpResultCode::Rejected, "error")
    );
    assert_eq!(r.data.returned_status, ReturnStatus::Rejected);
    assert_eq!(
        r.data.real_returned_amount, None,
        "no amounts on a rejection"
    );

    // A rejected request is not walked: its create answer is the only row ever scheduled.
    let walk_rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM erp_sim_scheduled WHERE routing_key = 'erp.updateChangeRefundOrderStatus'",
    )
    .fetch_one(sim.pool())
    .await
    .expect("query");
    assert_eq!(walk_rows, 0);
    sim.finish().await;
}

#[tokio::test]
async fn cancelled_return_stops_its_walk() {
    // Long delays: the create answer and status 10 are still pending when the cancel arrives.
    let sim = Sim::start(|c| {
        c.delays = orderbus_erp_sim::Delays::uniform(std::time::Duration::from_secs(600))
    })
    .await;
    let erp = ErpPublisher::connect().await.expect("publisher");
    let request = refund_request(sim.uid);
    erp.publish(
        "order.createRefundOrder",
        &encode(&request).expect("encode"),
    )
    .await
    .expect("published");
    wait_count(
        sim.pool(),
        "SELECT count(*) FROM erp_sim_after_sales WHERE storefront_id::text = $1",
        &request.order_returned_id.to_string(),
        1,
    )
    .await;
    let returned_id: i64 = sqlx::query_scalar(
        "SELECT erp_id FROM erp_sim_after_sales WHERE storefront_id = $1 AND kind = 'refund'",
    )
    .bind(request.order_returned_id)
    .fetch_one(sim.pool())
    .await
    .expect("query");

    // The spec's cancel (type 1 = return) for the ERP's id.
    let mut cancel: ChangeRefundCancel = decode(&fixture(
        "mq-spec/order.changeRefundCancel/cancel-refund.json",
    ))
    .expect("fixture");
    cancel.id = returned_id;
    assert_eq!(cancel.kind, AfterSaleKind::Refund);
    assert_eq!(cancel.status, AfterSaleCancelStatus::UserCancelled);
    erp.publish(
        "order.changeRefundCancel",
        &encode(&cancel).expect("encode"),
    )
    .await
    .expect("published");
    let subject = format!("refund:{returned_id}");
    wait_count(
        sim.pool(),
        "SELECT count(*) FROM erp_sim_scheduled WHERE subject = $1 AND cancelled_at IS NOT NULL",
        &subject,
        2,
    )
    .await;

    // A waybill after the cancel schedules nothing new.
    let waybill = refund_waybill(sim.uid, request.order_returned_id, returned_id);
    let message_id = uuid::Uuid::new_v4().to_string();
    let props = orderbus_testkit::erp_properties().with_message_id(message_id.as_str().into());
    erp.publish_with(
        "order.updateChangeRefundOrderExpressInfo",
        &encode(&waybill).expect("encode"),
        props,
    )
    .await
    .expect("published");
    // Processed (its inbox row commits with whatever it scheduled).
    wait_count(
        sim.pool(),
        "SELECT count(*) FROM orderbus_inbox WHERE message_id = $1",
        &message_id,
        1,
    )
    .await;
    let (state, live): (String, i64) = sqlx::query_as(
        "SELECT a.state, (SELECT count(*) FROM erp_sim_scheduled s WHERE s.subject = $2 AND s.cancelled_at IS NULL) \
         FROM erp_sim_after_sales a WHERE a.erp_id = $1",
    )
    .bind(returned_id)
    .bind(&subject)
    .fetch_one(sim.pool())
    .await
    .expect("query");
    assert_eq!(state, "cancelled");
    assert_eq!(live, 0, "nothing of the return's walk is left to send");
    sim.finish().await;
}
