//! Consumer semantics: inbox dedup, retry tiers, parking, batches, crash mid-batch.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use deadpool_lapin::lapin::BasicProperties;
use orderbus_bus::{
    typed, Delivery, HandlerError, HandlerFuture, MessageHandler, Topology, HEADER_PARK_ATTEMPTS,
    HEADER_PARK_QUEUE, HEADER_PARK_REASON, HEADER_ROUTING_KEY,
};
use orderbus_contracts::{OrderStatus, StorefrontOrderStatus};
use orderbus_testkit::{
    amqp_url, erp_properties, proxy::rewrite_url, proxy::FaultProxy, ErpPublisher,
};
use sqlx::PgConnection;

fn with_id(id: &str) -> BasicProperties {
    erp_properties().with_message_id(id.into())
}

/// The same message delivered twice (same message_id, and a body without message_id twice)
/// has one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_delivery_has_one_effect() -> TestResult {
    let world = World::new().await?;
    let key = world.key("dup");
    let rec = Recorder::default();
    let topo = topology(&world, &key, |s| s, Arc::new(rec.clone()));
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let erp = ErpPublisher::connect().await?;
    erp.publish_with(&key, &body("a"), with_id("m-1")).await?;
    erp.publish_with(&key, &body("a"), with_id("m-1")).await?;
    let no_id = BasicProperties::default().with_delivery_mode(2);
    erp.publish_with(&key, &body("b"), no_id.clone()).await?;
    erp.publish_with(&key, &body("b"), no_id).await?;
    // FIFO on one consumer: once the sentinel has its effect, everything before it was handled.
    erp.publish(&key, &body("sentinel")).await?;
    world.wait_effects(3, Duration::from_secs(10)).await?;
    wait_until(Duration::from_secs(5), || async {
        (rec.calls() >= 3).then_some(())
    })
    .await;
    running.stop().await;

    world.assert_exactly_once(3).await?;
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM orderbus_inbox")
        .fetch_one(world.pool())
        .await?;
    assert_eq!(inbox, 3);
    // Duplicates are acked without calling the handler again.
    assert_eq!(rec.calls(), 3);
    Ok(())
}

/// A handler failing twice transiently succeeds on the third attempt via the delay tiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_retry_through_tiers() -> TestResult {
    let world = World::new().await?;
    let key = world.key("retry");
    let rec = Recorder::default();
    let topo = topology(&world, &key, |s| s, Arc::new(rec.clone()));
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let erp = ErpPublisher::connect().await?;
    let msg = serde_json::to_vec(&TestMsg {
        key: "flaky".into(),
        fail_times: 2,
        follow_up: None,
    })?;
    erp.publish(&key, &msg).await?;
    world.wait_effects(1, Duration::from_secs(15)).await?;
    running.stop().await;

    assert_eq!(world.effects().await?, vec![("flaky".to_owned(), 3)]);
    assert_eq!(rec.calls(), 3);
    assert_eq!(queue_depth(&parking).await?, 0);
    Ok(())
}

struct StatusHandler;
impl MessageHandler<OrderStatus> for StatusHandler {
    async fn handle(
        &self,
        msg: OrderStatus,
        d: &Delivery,
        conn: &mut PgConnection,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (key, attempt, message_id) VALUES ($1, $2, $3)")
            .bind(msg.order_code.to_string())
            .bind(d.attempt as i32)
            .bind(&d.message_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Poison messages (undecodable JSON, a schema-invalid contract message, exhausted retries)
/// land in parking with their reason, original routing key, queue and attempts, and do not
/// block the messages behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_parked_and_does_not_block() -> TestResult {
    let world = World::new().await?;
    let key = world.key("status");
    let topo = Topology::new(world.service.clone())
        .retry_tiers([Duration::from_millis(200)])
        .subscribe(orderbus_bus::Subscription::new(
            &key,
            typed::<OrderStatus, _>(StatusHandler),
        ));
    let parking = topo.parking_queue();
    let queue = topo.work_queue(&key);
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let erp = ErpPublisher::connect().await?;
    erp.publish(&key, b"{not json").await?;
    erp.publish(&key, br#"{"orderCode": "77", "status": 999}"#)
        .await?;
    for i in 0..20 {
        let m = OrderStatus {
            order_code: 1000 + i,
            status: StorefrontOrderStatus::ReceiptConfirmed,
        };
        erp.publish(&key, &serde_json::to_vec(&m)?).await?;
    }
    world.wait_effects(20, Duration::from_secs(15)).await?;
    let parked = wait_until(Duration::from_secs(10), || async {
        let n = queue_depth(&parking).await.ok()?;
        (n >= 2).then_some(n)
    })
    .await
    .ok_or("poison not parked")?;
    assert_eq!(parked, 2);
    running.stop().await;
    world.assert_exactly_once(20).await?;

    let msgs = take_all(&parking).await?;
    let reasons: Vec<String> = msgs
        .iter()
        .map(|(_, p)| header(p, HEADER_PARK_REASON).unwrap_or_default())
        .collect();
    assert!(reasons[0].contains("undecodable"), "{reasons:?}");
    assert!(
        reasons[1].contains("status"),
        "decoder names the field: {reasons:?}"
    );
    for (b, p) in &msgs {
        assert_eq!(header(p, HEADER_ROUTING_KEY).as_deref(), Some(key.as_str()));
        assert_eq!(
            header(p, HEADER_PARK_QUEUE).as_deref(),
            Some(queue.as_str())
        );
        assert_eq!(header(p, HEADER_PARK_ATTEMPTS).as_deref(), Some("1"));
        assert!(!b.is_empty(), "body kept for replay");
    }
    Ok(())
}

/// Retries exhausted → parked (after the last tier), reason says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_parked() -> TestResult {
    let world = World::new().await?;
    let key = world.key("hopeless");
    let rec = Recorder::default();
    let topo = topology(&world, &key, |s| s, Arc::new(rec.clone()));
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;
    let erp = ErpPublisher::connect().await?;
    let msg = serde_json::to_vec(&TestMsg {
        key: "never".into(),
        fail_times: 100,
        follow_up: None,
    })?;
    erp.publish(&key, &msg).await?;
    erp.publish(&key, &body("fine")).await?;
    wait_until(Duration::from_secs(15), || async {
        (queue_depth(&parking).await.ok()? >= 1).then_some(())
    })
    .await
    .ok_or("not parked")?;
    running.stop().await;
    // Two tiers → three attempts, then parking; never a hot loop.
    assert_eq!(rec.calls(), 4);
    world.assert_exactly_once(1).await?;
    let msgs = take_all(&parking).await?;
    assert_eq!(msgs.len(), 1);
    let reason = header(&msgs[0].1, HEADER_PARK_REASON).unwrap_or_default();
    assert!(
        reason.contains("retries exhausted after 3 attempts"),
        "{reason}"
    );
    assert_eq!(
        header(&msgs[0].1, HEADER_PARK_ATTEMPTS).as_deref(),
        Some("3")
    );
    Ok(())
}

/// Batch mode: k messages per transaction + multi-ack; one bad message in a batch falls back to
/// one-by-one, so the good ones still commit exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_falls_back_on_failure() -> TestResult {
    let world = World::new().await?;
    let key = world.key("batch");
    let rec = Recorder::default();
    let topo = topology(
        &world,
        &key,
        |s| s.batch(20).prefetch(100),
        Arc::new(rec.clone()),
    );
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    // Publish before consuming so batches fill from the prefetch buffer.
    let declare = orderbus_testkit::connect_amqp().await?;
    topo.declare(&declare.create_channel().await?).await?;
    let erp = ErpPublisher::connect().await?;
    for i in 0..100 {
        if i == 37 {
            erp.publish(&key, b"poison in the middle of a batch")
                .await?;
        }
        erp.publish(&key, &body(format!("k{i}"))).await?;
    }
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    world.wait_effects(100, Duration::from_secs(20)).await?;
    wait_until(Duration::from_secs(10), || async {
        (queue_depth(&parking).await.ok()? >= 1).then_some(())
    })
    .await
    .ok_or("poison not parked")?;
    running.stop().await;
    world.assert_exactly_once(100).await?;
    println!("batch mode: {} handler calls for 101 messages", rec.calls());
    Ok(())
}

/// Batch mode inserts the inbox rows of a whole batch in one statement: a message id that
/// appears twice in one batch, or that was processed in an earlier batch, has one effect and the
/// handler is not called for the copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_inside_a_batch_have_one_effect() -> TestResult {
    let world = World::new().await?;
    let key = world.key("batchdup");
    let rec = Recorder::default();
    let topo = topology(
        &world,
        &key,
        |s| s.batch(20).prefetch(100),
        Arc::new(rec.clone()),
    );
    let _cleanup = Cleanup::of(&topo);
    let declare = orderbus_testkit::connect_amqp().await?;
    topo.declare(&declare.create_channel().await?).await?;
    let erp = ErpPublisher::connect().await?;
    // Queued before the consumer starts, so they arrive in full batches: every message twice in
    // a row (same batch), and the first five once more at the end (a later batch).
    for i in 0..30 {
        let id = with_id(&format!("batch-dup-{i}"));
        erp.publish_with(&key, &body(format!("k{i}")), id.clone())
            .await?;
        erp.publish_with(&key, &body(format!("k{i}")), id).await?;
    }
    for i in 0..5 {
        erp.publish_with(
            &key,
            &body(format!("k{i}")),
            with_id(&format!("batch-dup-{i}")),
        )
        .await?;
    }
    erp.publish(&key, &body("sentinel")).await?;
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    world.wait_effects(31, Duration::from_secs(20)).await?;
    running.stop().await;
    world.assert_exactly_once(31).await?;
    assert_eq!(rec.calls(), 31, "the handler ran once per distinct message");
    Ok(())
}

/// A consumer killed mid-batch (task aborted and its TCP connection cut before the ack) loses
/// nothing and doubles nothing once a new consumer takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_mid_batch_loses_and_doubles_nothing() -> TestResult {
    let world = World::new().await?;
    let key = world.key("kill");
    let rec = Recorder {
        delay: Duration::from_millis(5),
        ..Recorder::default()
    };
    let topo = topology(
        &world,
        &key,
        |s| s.batch(10).prefetch(50),
        Arc::new(rec.clone()),
    );
    let _cleanup = Cleanup::of(&topo);
    let declare = orderbus_testkit::connect_amqp().await?;
    topo.declare(&declare.create_channel().await?).await?;
    let erp = ErpPublisher::connect().await?;
    for i in 0..300 {
        erp.publish(&key, &body(format!("k{i}"))).await?;
    }
    let proxy = FaultProxy::start(rabbit_addr()).await?;
    let victim = spawn_consumers(
        topo.clone(),
        world.pool().clone(),
        &rewrite_url(&amqp_url(), rabbit_addr(), proxy.addr()),
    );
    world.wait_effects(40, Duration::from_secs(20)).await?;
    // Crash: no drain, no acks for what is in flight.
    victim.task.abort();
    proxy.refuse();
    let at_crash = world.effect_count().await?;

    let survivor = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    world.wait_effects(300, Duration::from_secs(30)).await?;
    survivor.stop().await;
    world.assert_exactly_once(300).await?;
    println!(
        "killed after {at_crash} effects; {} handler calls for 300 messages",
        rec.calls()
    );
    Ok(())
}

/// `Subscription::concurrency(4)`: four competing consumers (own channel + qos + consumer each)
/// on one work queue; 300 messages have exactly one effect and one inbox row each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_lose_and_double_nothing() -> TestResult {
    let world = World::new().await?;
    let key = world.key("conc");
    let rec = Recorder {
        delay: Duration::from_millis(1),
        ..Recorder::default()
    };
    let topo = topology(
        &world,
        &key,
        |s| s.prefetch(20).concurrency(4),
        Arc::new(rec.clone()),
    );
    let queue = topo.work_queue(&key);
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;
    let admin = orderbus_testkit::connect_amqp().await?;
    let ch = admin.create_channel().await?;
    let q = ch
        .queue_declare(
            queue.as_str().into(),
            deadpool_lapin::lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            deadpool_lapin::lapin::types::FieldTable::default(),
        )
        .await?;
    assert_eq!(q.consumer_count(), 4, "one consumer per worker");
    let _ = admin.close(200, "ok".into()).await;

    let erp = ErpPublisher::connect().await?;
    for i in 0..300 {
        erp.publish(&key, &body(format!("k{i}"))).await?;
    }
    world.wait_effects(300, Duration::from_secs(30)).await?;
    running.stop().await;
    world.assert_exactly_once(300).await?;
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM orderbus_inbox")
        .fetch_one(world.pool())
        .await?;
    assert_eq!(inbox, 300);
    assert_eq!(rec.calls(), 300, "no handler call was repeated");
    Ok(())
}

/// Counts how many handler calls overlap, around a [`Recorder`].
#[derive(Clone, Default)]
struct Overlap {
    inner: Recorder,
    active: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

impl orderbus_bus::Handler for Overlap {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            let now = self.active.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            let done = self.inner.handle(d, conn).await;
            self.active.fetch_sub(1, SeqCst);
            done
        })
    }
}

/// `Subscription::partitions(4)`: 40 orders × 5 messages, queued interleaved with the
/// order code as `correlation_id`, plus poison. Partitions work at the same time (handler calls
/// overlap), yet every order's messages take effect in publication order, each exactly once;
/// the poison is parked and holds nothing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_run_orders_in_parallel_and_each_order_in_sequence() -> TestResult {
    let world = World::new().await?;
    let key = world.key("parts");
    let handler = Overlap {
        inner: Recorder {
            delay: Duration::from_millis(3),
            ..Recorder::default()
        },
        ..Overlap::default()
    };
    let topo = topology(
        &world,
        &key,
        |s| s.prefetch(100).batch(5).partitions(4),
        Arc::new(handler.clone()),
    );
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    // Everything is queued before the consumer starts, so the partitions have work at the same
    // time however slowly this machine publishes.
    let declare = orderbus_testkit::connect_amqp().await?;
    topo.declare(&declare.create_channel().await?).await?;
    let erp = ErpPublisher::connect().await?;
    for seq in 0..5 {
        for order in 0..40 {
            let props = erp_properties().with_correlation_id(format!("{order}").into());
            erp.publish_with(&key, &body(format!("o{order}-{seq}")), props)
                .await?;
        }
        erp.publish(&key, b"{poison").await?;
    }
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    world.wait_effects(200, Duration::from_secs(30)).await?;
    let parked = wait_until(Duration::from_secs(10), || async {
        let n = queue_depth(&parking).await.ok()?;
        (n >= 5).then_some(n)
    })
    .await
    .ok_or("poison not parked")?;
    running.stop().await;

    assert_eq!(parked, 5);
    world.assert_exactly_once(200).await?;
    world.assert_each_order_in_sequence().await?;
    assert!(
        handler.most.load(std::sync::atomic::Ordering::SeqCst) > 1,
        "partitions never overlapped"
    );
    Ok(())
}

/// A typed handler's partition key is the message's order code, read from the body.
#[test]
fn typed_partition_key_is_the_order_code() {
    let handler = typed::<OrderStatus, _>(StatusHandler);
    let body = br#"{"orderCode": "1234", "status": 700}"#;
    assert_eq!(handler.partition_key(body).as_deref(), Some("1234"));
    assert_eq!(handler.partition_key(b"{not json"), None);
}

/// Partitions busy when the connection is cut: every partition's work is abandoned (rolled
/// back, unacked), the consumer reconnects by itself and finishes, and every message still has
/// exactly one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_cut_mid_batch_lose_and_double_nothing() -> TestResult {
    let world = World::new().await?;
    let key = world.key("pcut");
    let rec = Recorder {
        delay: Duration::from_millis(5),
        ..Recorder::default()
    };
    let topo = topology(
        &world,
        &key,
        |s| s.batch(10).prefetch(80).partitions(4),
        Arc::new(rec.clone()),
    );
    let _cleanup = Cleanup::of(&topo);
    let declare = orderbus_testkit::connect_amqp().await?;
    topo.declare(&declare.create_channel().await?).await?;
    let erp = ErpPublisher::connect().await?;
    for i in 0..300 {
        let props = erp_properties().with_correlation_id(format!("{}", i % 23).into());
        erp.publish_with(&key, &body(format!("k{i}")), props)
            .await?;
    }
    let proxy = FaultProxy::start(rabbit_addr()).await?;
    let running = spawn_consumers(
        topo,
        world.pool().clone(),
        &rewrite_url(&amqp_url(), rabbit_addr(), proxy.addr()),
    );
    world.wait_effects(40, Duration::from_secs(20)).await?;
    let before = proxy.accepted();
    proxy.cut();
    world.wait_effects(300, Duration::from_secs(30)).await?;
    running.stop().await;
    world.assert_exactly_once(300).await?;
    assert!(proxy.accepted() > before, "the consumer reconnected");
    Ok(())
}
