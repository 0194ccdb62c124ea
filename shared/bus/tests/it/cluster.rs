//! Fault tests on a RabbitMQ cluster of the test's own (`orderbus_testkit::cluster`): three
//! broker nodes on this machine (own names, ports, data directories, cookie; the system broker
//! is never touched), quorum queues with `x-quorum-initial-group-size` 3, `pause_minority`.
//! Both tests are `serial_`: they start Erlang VMs and run alone (see `.config/nextest.toml`).
//!
//! The oracle is the ledger of messaging.md A6: every message produced through the outbox
//! carries a unique key, the consumer's effect row records it in the inbox's transaction, and
//! at the end every key must have exactly one effect (0 lost, 0 doubled).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use orderbus_bus::{Health, Outbox, OutgoingMessage, Relay};
use orderbus_testkit::cluster::RabbitCluster;
use orderbus_testkit::proxy::{rewrite_url, FaultProxy};
use tokio_util::sync::CancellationToken;

/// Produces outbox rows (`TestMsg` with key `k<i>`), `per_tx` per transaction, one
/// transaction every `pause`, until `stop`: a steady load the relay publishes while faults
/// happen. Returns how many rows it committed.
fn spawn_producer(
    world: &World,
    key: String,
    per_tx: usize,
    pause: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Result<usize, sqlx::Error>> {
    let pool = world.pool().clone();
    tokio::spawn(async move {
        let outbox = Outbox::new();
        let mut i = 0;
        while !stop.is_cancelled() {
            let mut tx = pool.begin().await?;
            for n in i..i + per_tx {
                let msg = OutgoingMessage::new(key.clone(), body(format!("k{n}")));
                if let Err(e) = outbox.enqueue_raw(&mut tx, &msg).await {
                    return Err(sqlx::Error::Protocol(e.to_string()));
                }
            }
            tx.commit().await?;
            i += per_tx;
            tokio::time::sleep(pause).await;
        }
        Ok(i)
    })
}

async fn pending(world: &World) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orderbus_outbox WHERE sent_at IS NULL")
        .fetch_one(world.pool())
        .await
        .unwrap_or(-1)
}

/// Waits until the effects grow by `more` beyond what they were at the call; returns how long
/// that took (printed, never asserted: the machine is shared).
async fn progress(world: &World, more: i64, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let base = world.effect_count().await.unwrap_or(0);
    world.wait_effects(base + more, limit).await?;
    Ok(start.elapsed())
}

/// R19: under a steady outbox → relay → quorum queue → consumer (inbox) load, the queue
/// leader's node is killed with `kill -9` and later restarted, a follower is stopped and
/// restarted, and one node is cut off from its clients (a TCP proxy per node). The services
/// get the list of all three nodes and reconnect to a live one. Every message is applied
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_cluster_node_faults_lose_nothing() -> TestResult {
    if !RabbitCluster::available() {
        return Err("rabbitmq-server is not installed (Debian package rabbitmq-server)".into());
    }
    let started = Instant::now();
    let cluster = RabbitCluster::start(3).await?;
    println!("cluster of 3 up in {:?}", started.elapsed());
    let mut proxies = Vec::new();
    for node in &cluster.nodes {
        proxies.push(FaultProxy::start(node.amqp_addr()).await?);
    }
    let urls = cluster
        .nodes
        .iter()
        .zip(&proxies)
        .map(|(n, p)| rewrite_url(&n.amqp_url(), n.amqp_addr(), p.addr()))
        .collect::<Vec<_>>()
        .join(",");

    let world = World::new().await?;
    let key = world.key("in");
    let rec = Recorder::default();
    let topo = topology(
        &world,
        &key,
        |s| s.prefetch(50).batch(10),
        Arc::new(rec.clone()),
    );
    let work_queue = topo.work_queue(&key);
    let running = spawn_consumers(topo, world.pool().clone(), &urls);
    let relay_stop = CancellationToken::new();
    let relay = Relay::new(
        world.pool().clone(),
        urls.clone(),
        world.service.clone(),
        Health::new(),
    )
    .with_config(fast_relay_config());
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));
    running.wait_ready(Duration::from_secs(60)).await?;

    // ~100 messages/s for as long as the faults take.
    let stop = CancellationToken::new();
    let producer = spawn_producer(
        &world,
        key.clone(),
        5,
        Duration::from_millis(50),
        stop.clone(),
    );
    let limit = Duration::from_secs(60);
    progress(&world, 100, limit).await?;

    // 1. kill -9 the work queue's leader; consumption resumes on the two others.
    let leader = cluster.leader_of(0, &work_queue).await?;
    cluster.kill(leader).await?;
    let resumed = progress(&world, 100, limit).await?;
    println!(
        "leader {} killed: consumption resumed (+100 effects) after {resumed:?}",
        cluster.nodes[leader].name
    );
    cluster.restart(leader).await?;
    cluster.await_running(3, limit).await?;

    // 2. stop a follower cleanly, then start it again.
    let via = (leader + 1) % 3;
    let leader_now = cluster.leader_of(via, &work_queue).await?;
    let follower = (0..3).find(|i| *i != leader_now).unwrap_or(0);
    cluster.stop(follower).await?;
    let resumed = progress(&world, 100, limit).await?;
    println!(
        "follower {} stopped: +100 effects after {resumed:?}",
        cluster.nodes[follower].name
    );
    cluster.restart(follower).await?;
    cluster.await_running(3, limit).await?;

    // 3. cut one node off from its clients: every connection through its proxy is closed and
    //    new ones are refused while it is cut off; the services go to the other nodes.
    let cut = leader_now;
    proxies[cut].refuse();
    let resumed = progress(&world, 100, limit).await?;
    println!(
        "node {} cut off from its clients: +100 effects after {resumed:?}",
        cluster.nodes[cut].name
    );
    proxies[cut].pass();

    stop.cancel();
    let n = producer.await??;
    let drained = wait_until(Duration::from_secs(120), || async {
        let effects = world.effect_count().await.ok()?;
        (effects >= n as i64 && pending(&world).await == 0).then_some(())
    })
    .await;
    if drained.is_none() {
        return Err(format!(
            "not drained: {} effects, {} outbox rows pending",
            world.effect_count().await?,
            pending(&world).await
        )
        .into());
    }
    running.stop().await;
    relay_stop.cancel();
    relay_task.await??;
    world.assert_exactly_once(n).await?;
    println!(
        "R19: {n} messages through 3 node faults, {} handler calls, exactly once; {:?} in all",
        rec.calls(),
        started.elapsed()
    );
    Ok(())
}

/// R6 (shortened for CI): the connections of the consumers and the relay are reset every 2 s
/// for 20 s (10 resets) by a proxy while ~200 messages/s flow through the outbox; 0 lost, 0 doubled, no
/// connections or channels left on the broker once the services stopped (and only theirs while
/// they run), and the process's RSS grows by less than 20 MB. On a single node of the test's
/// own, so the broker's connection list is this test's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_flapping_connection_loses_nothing() -> TestResult {
    if !RabbitCluster::available() {
        return Err("rabbitmq-server is not installed (Debian package rabbitmq-server)".into());
    }
    let broker = RabbitCluster::start(1).await?;
    let node = broker.nodes[0].clone();
    let proxy = FaultProxy::start(node.amqp_addr()).await?;
    let url = rewrite_url(&node.amqp_url(), node.amqp_addr(), proxy.addr());

    let world = World::new().await?;
    let key = world.key("in");
    let rec = Recorder::default();
    let topo = topology(
        &world,
        &key,
        |s| s.prefetch(50).batch(10),
        Arc::new(rec.clone()),
    );
    let running = spawn_consumers(topo, world.pool().clone(), &url);
    let relay_stop = CancellationToken::new();
    let relay = Relay::new(
        world.pool().clone(),
        url.clone(),
        world.service.clone(),
        Health::new(),
    )
    .with_config(fast_relay_config());
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));
    running.wait_ready(Duration::from_secs(30)).await?;
    let (conns_steady, chans_steady) = broker.open_connections_and_channels(0).await?;
    let rss_before = rss_kb();

    // ~200 messages/s for 20 s, the connections reset every 2 s.
    let stop = CancellationToken::new();
    let producer = spawn_producer(
        &world,
        key.clone(),
        10,
        Duration::from_millis(50),
        stop.clone(),
    );
    let mut resets = 0;
    while resets < 10 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.cut();
        resets += 1;
    }
    stop.cancel();
    let n = producer.await??;
    world
        .wait_effects(n as i64, Duration::from_secs(120))
        .await?;
    wait_until(Duration::from_secs(60), || async {
        (pending(&world).await == 0).then_some(())
    })
    .await
    .ok_or("outbox not drained")?;
    // Settled after the last reset: the same connections and channels as before the flapping.
    let settled = wait_until(Duration::from_secs(30), || async {
        let now = broker.open_connections_and_channels(0).await.ok()?;
        (now == (conns_steady, chans_steady)).then_some(now)
    })
    .await;
    let rss_after = rss_kb();
    running.stop().await;
    relay_stop.cancel();
    relay_task.await??;
    let after_stop = wait_until(Duration::from_secs(15), || async {
        let now = broker.open_connections_and_channels(0).await.ok()?;
        (now == (0, 0)).then_some(now)
    })
    .await;
    world.assert_exactly_once(n).await?;
    println!(
        "R6: {n} messages, {resets} resets, {} handler calls, {} proxy connections; \
         broker connections/channels steady {conns_steady}/{chans_steady}, after the flapping \
         {settled:?}, after stop {after_stop:?}; RSS {} → {} kB",
        rec.calls(),
        proxy.accepted(),
        rss_before,
        rss_after
    );
    assert!(
        resets >= 5,
        "the proxy reset the connections {resets} times"
    );
    assert_eq!(
        settled,
        Some((conns_steady, chans_steady)),
        "connections or channels leaked on the broker during the flapping"
    );
    assert_eq!(
        after_stop,
        Some((0, 0)),
        "connections or channels left on the broker after stop"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 20 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    Ok(())
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
