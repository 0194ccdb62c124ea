//! Sharded subscriptions (`Subscription::shards`): several replicas on one subscription, each
//! order's messages applied once each and in publication order, also when a replica dies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orderbus_bus::{
    ConsumerConfig, Consumers, Delivery, Handler, HandlerFuture, Health, Subscription, Topology,
};
use orderbus_testkit::{
    amqp_url, erp_properties, proxy::rewrite_url, proxy::FaultProxy, ErpPublisher,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// Records the effect (through [`Recorder`]) and which replica applied it.
#[derive(Clone)]
struct Tagged {
    replica: &'static str,
    inner: Recorder,
}

impl Handler for Tagged {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            self.inner.handle(d, conn).await?;
            let msg: TestMsg = d.json()?;
            sqlx::query("INSERT INTO handled_by (replica, key) VALUES ($1, $2)")
                .bind(self.replica)
                .bind(&msg.key)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }
}

fn sharded_config() -> ConsumerConfig {
    ConsumerConfig {
        shard_heartbeat: Duration::from_millis(200),
        shard_member_ttl: Duration::from_secs(1),
        ..fast_consumer_config()
    }
}

/// One replica: its own database pool and broker connection (through `proxy`, so it can be
/// killed), its own handler instance.
struct Replica {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), orderbus_bus::BusError>>,
    proxy: FaultProxy,
}

async fn start_replica(
    world: &World,
    replica: &'static str,
    shape: impl Fn(Arc<dyn Handler>) -> Topology,
) -> Result<Replica, Box<dyn std::error::Error + Send + Sync>> {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(world.db.url())
        .await?;
    let proxy = FaultProxy::start(rabbit_addr()).await?;
    let handler = Tagged {
        replica,
        inner: Recorder {
            delay: Duration::from_millis(2),
            ..Recorder::default()
        },
    };
    let consumers = Consumers::new(
        shape(Arc::new(handler)),
        pool,
        rewrite_url(&amqp_url(), rabbit_addr(), proxy.addr()),
        Health::new(),
    )
    .with_config(sharded_config());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumers.run(shutdown.clone()));
    Ok(Replica {
        shutdown,
        task,
        proxy,
    })
}

impl Replica {
    /// Like `kill -9`: the process is gone at once, its connections with it.
    fn kill(&self) {
        self.task.abort();
        self.proxy.refuse();
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn live_members(world: &World) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM orderbus_shard_members \
         WHERE seen_at > clock_timestamp() - interval '1 second'",
    )
    .fetch_one(world.pool())
    .await
    .unwrap_or(0)
}

async fn applied_by(world: &World) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT replica, count(*) FROM handled_by GROUP BY replica")
            .fetch_all(world.pool())
            .await?;
    Ok(rows.into_iter().collect())
}

/// Three replicas on a subscription of 4 shards, 40 orders × 10 messages published
/// interleaved while they run; the first replica (the active sequencer, and first in line on
/// every shard) is killed mid-run (once every replica has applied something, after 3 to 6
/// rounds). Every message is applied exactly once, every order's
/// messages in publication order, all three replicas applied messages before the kill (the
/// shards were shared out), and the two survivors finished the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_shards_and_keep_each_orders_sequence_through_a_kill() -> TestResult {
    let world = World::new().await?;
    sqlx::query("CREATE TABLE handled_by (replica TEXT NOT NULL, key TEXT NOT NULL)")
        .execute(world.pool())
        .await?;
    let key = world.key("sharded");
    let shape = |handler: Arc<dyn Handler>| {
        topology(
            &world,
            &key,
            |s: Subscription| s.prefetch(20).batch(5).shards(4),
            handler,
        )
    };
    let reference = shape(Arc::new(Recorder::default()));
    let _cleanup = Cleanup::of(&reference);
    let declare = orderbus_testkit::connect_amqp().await?;
    reference.declare(&declare.create_channel().await?).await?;

    let a = start_replica(&world, "a", shape).await?;
    // The first replica subscribes first everywhere: it is the active sequencer and holds
    // every shard until the others are members and it yields.
    wait_until(Duration::from_secs(10), || async {
        (live_members(&world).await >= 1).then_some(())
    })
    .await
    .ok_or("replica a never joined")?;
    let b = start_replica(&world, "b", shape).await?;
    let c = start_replica(&world, "c", shape).await?;
    wait_until(Duration::from_secs(10), || async {
        (live_members(&world).await >= 3).then_some(())
    })
    .await
    .ok_or("three replicas never joined")?;
    // Let every replica see all three and yield the shards that are not its share.
    tokio::time::sleep(Duration::from_millis(800)).await;

    const ORDERS: usize = 40;
    const PER_ORDER: usize = 10;
    let erp = ErpPublisher::connect().await?;
    let publish_round = |seq: usize| {
        let erp = &erp;
        let key = &key;
        async move {
            for order in 0..ORDERS {
                let props = erp_properties().with_correlation_id(format!("{order}").into());
                erp.publish_with(key, &body(format!("o{order}-{seq}")), props)
                    .await?;
            }
            Ok::<_, orderbus_testkit::TestkitError>(())
        }
    };
    // Rounds until every replica has applied something (the shares are dealt out within a
    // heartbeat or two; on a loaded machine that can take longer than a round), at most 6.
    let mut published = 0;
    let mut before_kill = HashMap::new();
    while published < 6 {
        publish_round(published).await?;
        published += 1;
        world
            .wait_effects((published * ORDERS) as i64, Duration::from_secs(30))
            .await?;
        before_kill = applied_by(&world).await?;
        if published >= 3 && before_kill.len() == 3 {
            break;
        }
    }
    a.kill();
    for seq in published..PER_ORDER {
        publish_round(seq).await?;
    }
    world
        .wait_effects((ORDERS * PER_ORDER) as i64, Duration::from_secs(60))
        .await?;
    // A moment for anything doubled to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = applied_by(&world).await?;
    b.stop().await;
    c.stop().await;

    world.assert_exactly_once(ORDERS * PER_ORDER).await?;
    world.assert_each_order_in_sequence().await?;
    for replica in ["a", "b", "c"] {
        assert!(
            before_kill.get(replica).copied().unwrap_or(0) > 0,
            "replica {replica} applied nothing before the kill: {before_kill:?}"
        );
    }
    let survivors_after =
        after.get("b").copied().unwrap_or(0) + after.get("c").copied().unwrap_or(0);
    let survivors_before =
        before_kill.get("b").copied().unwrap_or(0) + before_kill.get("c").copied().unwrap_or(0);
    assert!(
        survivors_after > survivors_before,
        "the survivors took nothing over: {before_kill:?} → {after:?}"
    );
    Ok(())
}

/// Handovers while messages flow, not crashes: two replicas on 2 shards; then, four times
/// while publishing goes on, the oldest replica (the active sequencer, and a shard's owner) is
/// stopped gracefully and a new one joins, and the survivor yields a shard to it. Each
/// handover leaves deliveries the leaving consumer had not acked (prefetch 20, a handler taking
/// 2 ms, a backlog); if its consumer were cancelled before its channel closed, the broker
/// would activate the next consumer first and return them behind later messages (it did,
/// before `ConsumingChannel`). Every message is applied exactly once, each order's in
/// publication order, and every newcomer but the last applied some (it took a shard over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handovers_under_traffic_keep_each_orders_sequence() -> TestResult {
    let world = World::new().await?;
    sqlx::query("CREATE TABLE handled_by (replica TEXT NOT NULL, key TEXT NOT NULL)")
        .execute(world.pool())
        .await?;
    let key = world.key("handover");
    let shape = |handler: Arc<dyn Handler>| {
        topology(
            &world,
            &key,
            |s: Subscription| s.prefetch(20).batch(5).shards(2),
            handler,
        )
    };
    let reference = shape(Arc::new(Recorder::default()));
    let _cleanup = Cleanup::of(&reference);
    let declare = orderbus_testkit::connect_amqp().await?;
    reference.declare(&declare.create_channel().await?).await?;

    let joined = |n: i64| {
        let world = &world;
        async move {
            wait_until(Duration::from_secs(10), || async {
                (live_members(world).await == n).then_some(())
            })
            .await
            .ok_or(format!("the members never numbered {n}"))
        }
    };
    const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
    let mut running = std::collections::VecDeque::new();
    for (n, name) in NAMES[..2].iter().enumerate() {
        running.push_back(start_replica(&world, name, shape).await?);
        joined(n as i64 + 1).await?;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    const ORDERS: usize = 30;
    const ROUNDS: usize = 100;
    let erp = ErpPublisher::connect().await?;
    let publishing = {
        let key = key.clone();
        tokio::spawn(async move {
            for seq in 0..ROUNDS {
                for order in 0..ORDERS {
                    let props = erp_properties().with_correlation_id(format!("{order}").into());
                    erp.publish_with(&key, &body(format!("o{order}-{seq}")), props)
                        .await?;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, orderbus_testkit::TestkitError>(())
        })
    };
    let total = (ORDERS * ROUNDS) as i64;
    for (handover, name) in NAMES[2..].iter().enumerate() {
        world
            .wait_effects(total * (handover as i64 + 1) / 6, Duration::from_secs(30))
            .await?;
        if let Some(oldest) = running.pop_front() {
            oldest.stop().await;
        }
        joined(1).await?;
        running.push_back(start_replica(&world, name, shape).await?);
        joined(2).await?;
    }
    publishing.await??;
    world.wait_effects(total, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let by = applied_by(&world).await?;
    for replica in running {
        replica.stop().await;
    }

    world.assert_exactly_once(ORDERS * ROUNDS).await?;
    world.assert_each_order_in_sequence().await?;
    for name in &NAMES[2..5] {
        assert!(
            by.get(*name).copied().unwrap_or(0) > 0,
            "newcomer {name} took no shard over: {by:?}"
        );
    }
    Ok(())
}

/// A sharded subscription's queues: the work queue and every shard are single-active-consumer
/// quorum queues, each shard has its own fanout exchange bound to it, and the pool is sized for
/// every shard being worked on one replica.
#[test]
fn a_sharded_subscription_declares_single_active_consumer_shards() {
    let topo = Topology::new("sf").subscribe(
        Subscription::new("order.erpstatus", Arc::new(Recorder::default()))
            .shards(3)
            .partitions(2),
    );
    let defs = topo.definitions("/");
    let queues = defs["queues"].as_array().cloned().unwrap_or_default();
    let sac: Vec<&str> = queues
        .iter()
        .filter(|q| q["arguments"]["x-single-active-consumer"] == serde_json::json!(true))
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(
        sac,
        [
            "sf.order.erpstatus",
            "sf.order.erpstatus.shard.0",
            "sf.order.erpstatus.shard.1",
            "sf.order.erpstatus.shard.2"
        ]
    );
    for shard in &sac[1..] {
        assert!(
            topo.exchanges().iter().any(|e| e == shard),
            "no exchange {shard}"
        );
        assert!(
            topo.bindings()
                .iter()
                .any(|b| b.exchange == *shard && b.queue == *shard),
            "{shard} not bound"
        );
        assert!(
            defs["orderbus_descriptions"][*shard]
                .as_str()
                .is_some_and(|d| d.contains("one replica consumes it at a time")),
            "{shard} undescribed"
        );
    }
    assert_eq!(topo.pool_connections(), 3 * 2 + 1);
}

/// Bad input through a sharded subscription: undecodable JSON, a body with NUL and control
/// characters, and a body too big for the handler's contract pass the sequencer (it reads no
/// more than the order key, and falls back to shard 0 without one) and are parked by the
/// shard's worker with a reason, while the good messages around them are applied once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_through_a_sharded_subscription_is_parked_and_holds_nothing_back() -> TestResult {
    let world = World::new().await?;
    let key = world.key("shardpoison");
    let topo = topology(
        &world,
        &key,
        |s| s.batch(5).shards(2),
        Arc::new(Recorder::default()),
    );
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let erp = ErpPublisher::connect().await?;
    let huge = format!("{{\"key\": \"{}\"}}", "x".repeat(2_000_000));
    let bad: [&[u8]; 4] = [
        b"{poison",
        b"{\"key\": \"a\0\x01\x07\"}",
        b"",
        huge.as_bytes(),
    ];
    for (i, body_bytes) in bad.iter().enumerate() {
        erp.publish(&key, &body(format!("o{i}-0"))).await?;
        erp.publish(&key, body_bytes).await?;
    }
    world.wait_effects(4, Duration::from_secs(20)).await?;
    // NUL is refused by PostgreSQL (parked by SQLSTATE 22021); the others by the decoder or,
    // for the huge one, applied: a big but valid body is not poison.
    let parked = wait_until(Duration::from_secs(20), || async {
        let n = queue_depth(&parking).await.ok()?;
        (n >= 3).then_some(n)
    })
    .await
    .ok_or("poison not parked")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    assert_eq!(parked, 3, "undecodable, NUL and empty bodies parked");
    let effects = world.effects().await?;
    for i in 0..4 {
        let good = format!("o{i}-0");
        assert_eq!(
            effects.iter().filter(|(k, _)| *k == good).count(),
            1,
            "{good} applied once"
        );
    }
    assert_eq!(
        effects.len(),
        5,
        "four good messages and the big valid one: {}",
        effects.len()
    );
    Ok(())
}
