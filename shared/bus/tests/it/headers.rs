//! A publisher cannot set the bus's bookkeeping headers: `x-orderbus-*` on a message that did
//! not come back from this service's retry tiers is ignored (attempt 1, the delivery's own
//! routing key), while real retries still count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_lapin::lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use orderbus_bus::{
    Delivery, Handler, HandlerError, HandlerFuture, HEADER_ATTEMPT, HEADER_PARK_REASON,
    HEADER_ROUTING_KEY,
};
use orderbus_testkit::{amqp_url, erp_properties, ErpPublisher};
use sqlx::PgConnection;

use crate::common::*;

/// Fails its first attempt transiently, then records the routing key and attempt it was given
/// (and whether it still saw a forged park reason).
#[derive(Clone, Default)]
struct FailsOnce {
    calls: Arc<AtomicUsize>,
}

impl Handler for FailsOnce {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if d.attempt == 1 {
                return Err(HandlerError::retry("simulated 503 on the first attempt"));
            }
            let seen = format!(
                "{}|forged-reason={}",
                d.routing_key,
                d.header(HEADER_PARK_REASON).is_some()
            );
            sqlx::query("INSERT INTO effects (key, attempt, message_id) VALUES ($1, $2, $3)")
                .bind(seen)
                .bind(d.attempt as i32)
                .bind(&d.message_id)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }
}

fn forged_headers() -> FieldTable {
    let mut h = FieldTable::default();
    for (k, v) in [
        (HEADER_ATTEMPT, "4"),
        (HEADER_ROUTING_KEY, "somebody.else"),
        (HEADER_PARK_REASON, "forged"),
    ] {
        h.insert(
            ShortString::from(k),
            AMQPValue::LongString(LongString::from(v)),
        );
    }
    h
}

/// Forged attempt, routing key and park reason on a message published to `amq.topic` (as the
/// ERP does) are ignored: the handler sees attempt 1 and the real key, the message is retried
/// (not parked as "exhausted") and applied on attempt 2 — so the retry path's own headers count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_bus_headers_from_a_publisher_are_ignored() -> TestResult {
    forged_headers_from_a_publisher(|s| s).await
}

/// The same on a sharded subscription: the sequencer drops the forged headers before it
/// forwards the message (the shard trusts what comes through its own exchange), and the retry
/// goes from the shard queue through the tier back to the same shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_bus_headers_are_ignored_on_a_sharded_subscription() -> TestResult {
    forged_headers_from_a_publisher(|s| s.shards(3)).await
}

async fn forged_headers_from_a_publisher(
    shape: impl FnOnce(orderbus_bus::Subscription) -> orderbus_bus::Subscription,
) -> TestResult {
    let world = World::new().await?;
    let key = world.key("forged");
    let handler = FailsOnce::default();
    let topo = topology(&world, &key, shape, Arc::new(handler.clone()));
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let erp = ErpPublisher::connect().await?;
    erp.publish_with(
        &key,
        &body("forged"),
        erp_properties().with_headers(forged_headers()),
    )
    .await?;
    world.wait_effects(1, Duration::from_secs(15)).await?;
    running.stop().await;

    assert_eq!(
        world.effects().await?,
        vec![(format!("{key}|forged-reason=false"), 2)]
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
    assert_eq!(queue_depth(&parking).await?, 0);
    Ok(())
}

/// The same forgery published straight to the work queue through the default exchange (which
/// least-privilege broker permissions deny publishers) is ignored too: it did not come back
/// from one of this service's retry tiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_bus_headers_on_a_default_exchange_publish_are_ignored() -> TestResult {
    let world = World::new().await?;
    let key = world.key("direct");
    let handler = FailsOnce::default();
    let topo = topology(&world, &key, |s| s, Arc::new(handler.clone()));
    let queue = topo.work_queue(&key);
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let conn = orderbus_testkit::connect_amqp().await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_publish(
        ShortString::from(""),
        ShortString::from(queue.as_str()),
        BasicPublishOptions::default(),
        &body("direct"),
        erp_properties().with_headers(forged_headers()),
    )
    .await?
    .await?;
    let _ = conn.close(200, "ok".into()).await;
    world.wait_effects(1, Duration::from_secs(15)).await?;
    running.stop().await;

    assert_eq!(
        world.effects().await?,
        vec![(format!("{queue}|forged-reason=false"), 2)],
        "the routing key is the delivery's own (the queue name on a default-exchange publish)"
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
    assert_eq!(queue_depth(&parking).await?, 0);
    Ok(())
}
