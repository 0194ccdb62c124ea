//! Fault tests through the TCP fault proxy: broker cuts, database outage, server-side cancel.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use deadpool_lapin::lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use orderbus_bus::{Health, Relay};
use orderbus_testkit::{amqp_url, proxy::rewrite_url, proxy::FaultProxy, ErpPublisher, TestQueue};
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

/// Consume → DB effect + outbox follow-up → relay publishes; the broker connection of both the
/// consumers and the relay is cut twice mid-run. Both recover on their own: every message has
/// exactly one effect and every follow-up is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_cut_during_run_recovers() -> TestResult {
    let world = World::new().await?;
    let key = world.key("in");
    let out_key = world.key("out");
    let mut sink = TestQueue::bind(&[&out_key]).await?;
    let rec = Recorder {
        delay: Duration::from_millis(2),
        ..Recorder::default()
    };
    let topo = topology(&world, &key, |s| s.prefetch(20), Arc::new(rec.clone()));
    let _cleanup = Cleanup::of(&topo);
    let proxy = FaultProxy::start(rabbit_addr()).await?;
    let via_proxy = rewrite_url(&amqp_url(), rabbit_addr(), proxy.addr());
    let running = spawn_consumers(topo, world.pool().clone(), &via_proxy);
    let relay_health = Health::new();
    let relay_stop = CancellationToken::new();
    let relay = Relay::new(
        world.pool().clone(),
        via_proxy.clone(),
        world.service.clone(),
        relay_health.clone(),
    )
    .with_config(fast_relay_config());
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));
    running.wait_ready(Duration::from_secs(10)).await?;

    const N: usize = 200;
    let erp = ErpPublisher::connect().await?;
    for i in 0..N {
        let msg = serde_json::to_vec(&TestMsg {
            key: format!("k{i}"),
            fail_times: 0,
            follow_up: Some(out_key.clone()),
        })?;
        erp.publish(&key, &msg).await?;
        if i == 60 || i == 140 {
            proxy.cut();
        }
    }
    world
        .wait_effects(N as i64, Duration::from_secs(30))
        .await?;
    let mut outs = std::collections::BTreeSet::new();
    let mut deliveries = 0;
    while outs.len() < N {
        let m = sink.recv(Duration::from_secs(20)).await?;
        deliveries += 1;
        outs.insert(m.json()["key"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        running.health.not_ready_transitions() >= 1,
        "readiness went false while rebuilding"
    );
    running.stop().await;
    relay_stop.cancel();
    relay_task.await??;
    world.assert_exactly_once(N).await?;
    println!(
        "broker cuts: {N} messages, {} handler calls, {deliveries} follow-up deliveries, {} proxy connections",
        rec.calls(),
        proxy.accepted()
    );
    Ok(())
}

/// Four competing workers (batches of 5) while the broker connection is cut twice mid-run:
/// every generation's workers are torn down and rebuilt together, unacked deliveries of the dead
/// channels come back, and 300 messages still have exactly one effect each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_survive_broker_cuts() -> TestResult {
    let world = World::new().await?;
    let key = world.key("conc");
    let rec = Recorder {
        delay: Duration::from_millis(2),
        ..Recorder::default()
    };
    let topo = topology(
        &world,
        &key,
        |s| s.prefetch(20).batch(5).concurrency(4),
        Arc::new(rec.clone()),
    );
    let _cleanup = Cleanup::of(&topo);
    let proxy = FaultProxy::start(rabbit_addr()).await?;
    let via_proxy = rewrite_url(&amqp_url(), rabbit_addr(), proxy.addr());
    let running = spawn_consumers(topo, world.pool().clone(), &via_proxy);
    running.wait_ready(Duration::from_secs(10)).await?;

    const N: usize = 300;
    let erp = ErpPublisher::connect().await?;
    for i in 0..N {
        erp.publish(&key, &body(format!("k{i}"))).await?;
        if i == 80 || i == 200 {
            proxy.cut();
        }
    }
    world
        .wait_effects(N as i64, Duration::from_secs(30))
        .await?;
    assert!(
        running.health.not_ready_transitions() >= 1,
        "readiness went false while rebuilding"
    );
    running.stop().await;
    world.assert_exactly_once(N).await?;
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM orderbus_inbox")
        .fetch_one(world.pool())
        .await?;
    assert_eq!(inbox, N as i64);
    println!(
        "concurrency 4 + broker cuts: {N} messages, {} handler calls, {} proxy connections",
        rec.calls(),
        proxy.accepted()
    );
    Ok(())
}

/// PostgreSQL unreachable for a while (proxy refuses and cuts its connections): handlers wait
/// and retry, nothing is lost, nothing is parked, and there is no hot loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_pauses_consumers() -> TestResult {
    let world = World::new().await?;
    let key = world.key("db");
    let pg_proxy = FaultProxy::start(postgres_addr()).await?;
    let url = rewrite_url(world.db.url(), postgres_addr(), pg_proxy.addr());
    let proxied_pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&url)
        .await?;
    let rec = Recorder::default();
    let topo = topology(&world, &key, |s| s.prefetch(10), Arc::new(rec.clone()));
    let parking = topo.parking_queue();
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, proxied_pool.clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let erp = ErpPublisher::connect().await?;
    for i in 0..10 {
        erp.publish(&key, &body(format!("before{i}"))).await?;
    }
    world.wait_effects(10, Duration::from_secs(10)).await?;
    pg_proxy.refuse();
    for i in 0..30 {
        erp.publish(&key, &body(format!("during{i}"))).await?;
    }
    // Let the consumers hit the outage for a while.
    wait_until(Duration::from_secs(10), || async {
        (pg_proxy.accepted() >= 4).then_some(())
    })
    .await
    .ok_or("consumers never tried the database")?;
    let calls_during_outage = rec.calls();
    pg_proxy.pass();
    world.wait_effects(40, Duration::from_secs(20)).await?;
    running.stop().await;
    world.assert_exactly_once(40).await?;
    assert_eq!(queue_depth(&parking).await?, 0, "nothing parked");
    // Bounded: at most one failed handler call per message in flight when the outage began.
    assert!(rec.calls() <= 40 + 10, "hot loop: {} calls", rec.calls());
    println!(
        "db outage: {} handler calls for 40 messages ({calls_during_outage} before the heal), {} pg connections",
        rec.calls(),
        pg_proxy.accepted()
    );
    proxied_pool.close().await;
    Ok(())
}

/// Deleting the work queue under a running consumer (server-sent basic.cancel: lapin 4 just ends
/// the stream) is detected; the topology is re-declared and consumption resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_cancel_rebuilds_topology() -> TestResult {
    let world = World::new().await?;
    let key = world.key("cancel");
    let rec = Recorder::default();
    let topo = topology(&world, &key, |s| s, Arc::new(rec.clone()));
    let queue = topo.work_queue(&key);
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;
    let erp = ErpPublisher::connect().await?;
    erp.publish(&key, &body("first")).await?;
    world.wait_effects(1, Duration::from_secs(10)).await?;

    let admin = orderbus_testkit::connect_amqp().await?;
    let ch = admin.create_channel().await?;
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    // Back: the queue exists again with our consumer on it.
    wait_until(Duration::from_secs(10), || async {
        let ch = admin.create_channel().await.ok()?;
        let q = ch
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        (q.consumer_count() == 1).then_some(())
    })
    .await
    .ok_or("topology not rebuilt after the server-side cancel")?;
    assert!(
        running.health.not_ready_transitions() >= 1,
        "readiness went false"
    );
    erp.publish(&key, &body("second")).await?;
    world.wait_effects(2, Duration::from_secs(10)).await?;
    running.stop().await;
    world.assert_exactly_once(2).await?;
    let _ = admin.close(200, "ok".into()).await;
    Ok(())
}

/// A blackholed broker link (no RST, nothing forwarded) is detected by heartbeats (2 s here),
/// the consumers rebuild once the link heals, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_broker_is_detected() -> TestResult {
    let world = World::new().await?;
    let key = world.key("bh");
    let rec = Recorder::default();
    let topo = topology(&world, &key, |s| s, Arc::new(rec.clone()));
    let _cleanup = Cleanup::of(&topo);
    let proxy = FaultProxy::start(rabbit_addr()).await?;
    let url = rewrite_url(&amqp_url(), rabbit_addr(), proxy.addr())
        .replace("heartbeat=10", "heartbeat=2");
    let running = spawn_consumers(topo, world.pool().clone(), &url);
    running.wait_ready(Duration::from_secs(10)).await?;
    let erp = ErpPublisher::connect().await?;
    erp.publish(&key, &body("before")).await?;
    world.wait_effects(1, Duration::from_secs(10)).await?;

    let t0 = std::time::Instant::now();
    proxy.blackhole();
    wait_until(Duration::from_secs(20), || async {
        (running.health.not_ready_transitions() >= 1).then_some(())
    })
    .await
    .ok_or("dead link not detected")?;
    let detected = t0.elapsed();
    for i in 0..20 {
        erp.publish(&key, &body(format!("during{i}"))).await?;
    }
    proxy.pass();
    world.wait_effects(21, Duration::from_secs(20)).await?;
    running.stop().await;
    world.assert_exactly_once(21).await?;
    println!("blackhole detected after {detected:?} (heartbeat 2 s)");
    Ok(())
}
