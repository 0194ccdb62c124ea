//! Outbox + relay against the real broker and database.

use std::time::Duration;

use crate::common::*;
use orderbus_bus::{
    conn, Health, Outbox, OutgoingMessage, Publisher, Relay, RelayConfig, TRACEPARENT,
};
use orderbus_testkit::{amqp_url, proxy::rewrite_url, proxy::FaultProxy, TestQueue};
use tokio_util::sync::CancellationToken;

async fn pending(world: &World) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM orderbus_outbox WHERE sent_at IS NULL")
        .fetch_one(world.pool())
        .await
}

/// Rows committed while the broker is unreachable stay pending and are all published once it is
/// back (0 lost), with the required AMQP properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_survive_broker_outage() -> TestResult {
    let world = World::new().await?;
    let key = world.key("out");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let proxy = FaultProxy::start(rabbit_addr()).await?;
    proxy.refuse();

    let outbox = Outbox::new();
    for i in 0..50 {
        let mut tx = world.pool().begin().await?;
        let msg = OutgoingMessage::json(&key, &serde_json::json!({"order_code": i}))?
            .correlation_id(Some(format!("OC{i}")));
        outbox.enqueue_raw(&mut tx, &msg).await?;
        tx.commit().await?;
    }
    let shutdown = CancellationToken::new();
    let health = Health::new();
    let relay = Relay::new(
        world.pool().clone(),
        rewrite_url(&amqp_url(), rabbit_addr(), proxy.addr()),
        world.service.clone(),
        health.clone(),
    )
    .with_config(fast_relay_config());
    let task = tokio::spawn(relay.run(shutdown.clone()));

    // While the broker is unreachable the relay keeps retrying and nothing is marked sent.
    wait_until(Duration::from_secs(10), || async {
        (proxy.accepted() >= 3).then_some(())
    })
    .await
    .ok_or("relay did not retry its connection")?;
    assert_eq!(pending(&world).await?, 50);
    assert!(!health.is_ready());

    proxy.pass();
    wait_until(Duration::from_secs(20), || async {
        (pending(&world).await.ok()? == 0).then_some(())
    })
    .await
    .ok_or("outbox not drained after the broker came back")?;

    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let m = sink.recv(Duration::from_secs(10)).await?;
        let p = &m.properties;
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            p.app_id().as_ref().map(|s| s.as_str()),
            Some(world.service.as_str())
        );
        assert!(p.message_id().is_some() && p.timestamp().is_some());
        let tp = header(p, TRACEPARENT).ok_or("no traceparent")?;
        assert!(tp.starts_with("00-") && tp.len() == 55, "{tp}");
        let code = m.json()["order_code"].as_i64().ok_or("body changed")?;
        assert_eq!(
            p.correlation_id().as_ref().map(|s| s.as_str().to_owned()),
            Some(format!("OC{code}"))
        );
        codes.insert(code);
    }
    assert_eq!(codes.len(), 50, "0 lost");
    shutdown.cancel();
    task.await??;
    Ok(())
}

/// A rolled-back transaction publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_enqueue_publishes_nothing() -> TestResult {
    let world = World::new().await?;
    let key = world.key("rb");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let outbox = Outbox::new();
    let mut tx = world.pool().begin().await?;
    outbox
        .enqueue(&mut tx, &key, &serde_json::json!({"n": "rolled back"}))
        .await?;
    tx.rollback().await?;
    // A plain connection (no explicit transaction) works too.
    let mut conn = world.pool().acquire().await?;
    outbox
        .enqueue(&mut conn, &key, &serde_json::json!({"n": "committed"}))
        .await?;
    drop(conn);

    let amqp = conn::connect(&amqp_url(), "test", Duration::from_secs(5)).await?;
    let publisher = Publisher::open(&amqp, "test", Duration::from_secs(5)).await?;
    let relay = Relay::new(world.pool().clone(), amqp_url(), "test", Health::new())
        .with_config(fast_relay_config());
    let stats = relay.round(&publisher).await?;
    assert_eq!((stats.claimed, stats.sent, stats.failed), (1, 1, 0));
    let got = sink.drain(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["n"], "committed");
    conn::close_quietly(&amqp).await;
    Ok(())
}

/// An unroutable key (returned with `mandatory`, lapin 4 `Ack(Some(returned))`) is not marked
/// sent: attempts and the error are recorded and it is retried later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_message_stays_pending() -> TestResult {
    let world = World::new().await?;
    let outbox = Outbox::new();
    let mut conn = world.pool().acquire().await?;
    let id = outbox
        .enqueue(
            &mut conn,
            &world.key("nobody.binds.this"),
            &serde_json::json!({}),
        )
        .await?;
    drop(conn);
    let amqp = conn::connect(&amqp_url(), "test", Duration::from_secs(5)).await?;
    let publisher = Publisher::open(&amqp, "test", Duration::from_secs(5)).await?;
    let relay = Relay::new(world.pool().clone(), amqp_url(), "test", Health::new())
        .with_config(fast_relay_config());
    let stats = relay.round(&publisher).await?;
    assert_eq!((stats.claimed, stats.sent, stats.failed), (1, 0, 1));
    let (sent, attempts, err): (Option<chrono::DateTime<chrono::Utc>>, i32, Option<String>) =
        sqlx::query_as(
            "SELECT sent_at, attempts, last_error FROM orderbus_outbox WHERE message_id = $1",
        )
        .bind(id)
        .fetch_one(world.pool())
        .await?;
    assert!(sent.is_none());
    assert_eq!(attempts, 1);
    assert!(err.unwrap_or_default().contains("NO_ROUTE"));
    // Backed off: the next attempt is scheduled later than the first one, and the lease is gone.
    let (backed_off, unlocked): (bool, bool) = sqlx::query_as(
        "SELECT next_attempt_at > created_at, locked_until IS NULL FROM orderbus_outbox WHERE message_id = $1",
    )
    .bind(id)
    .fetch_one(world.pool())
    .await?;
    assert!(backed_off && unlocked);
    conn::close_quietly(&amqp).await;
    Ok(())
}

/// Two relays share the outbox (SKIP LOCKED + lease): every row published, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_the_outbox() -> TestResult {
    let world = World::new().await?;
    let key = world.key("multi");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let outbox = Outbox::new();
    let mut tx = world.pool().begin().await?;
    for i in 0..300 {
        outbox
            .enqueue(&mut tx, &key, &serde_json::json!({"i": i}))
            .await?;
    }
    tx.commit().await?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let relay = Relay::new(
            world.pool().clone(),
            amqp_url(),
            world.service.clone(),
            Health::new(),
        )
        .with_config(fast_relay_config());
        tasks.push(tokio::spawn(relay.run(shutdown.clone())));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    while seen.len() < 300 {
        let m = sink.recv(Duration::from_secs(15)).await?;
        total += 1;
        seen.insert(m.json()["i"].as_i64().ok_or("bad body")?);
    }
    wait_until(Duration::from_secs(10), || async {
        (pending(&world).await.ok()? == 0).then_some(())
    })
    .await
    .ok_or("rows left pending")?;
    shutdown.cancel();
    for t in tasks {
        t.await??;
    }
    println!("two relays: 300 rows, {total} deliveries");
    Ok(())
}

/// Retention: sent outbox rows and inbox rows older than the window are deleted; pending rows
/// never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_rows_only() -> TestResult {
    let world = World::new().await?;
    let outbox = Outbox::new();
    let mut conn = world.pool().acquire().await?;
    for _ in 0..3 {
        outbox
            .enqueue(&mut conn, &world.key("r"), &serde_json::json!({}))
            .await?;
    }
    // One old sent row, one fresh sent row, one old pending row.
    sqlx::query(
        "UPDATE orderbus_outbox SET sent_at = now() - interval '2 days', created_at = now() - interval '2 days' \
         WHERE id = (SELECT min(id) FROM orderbus_outbox)",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE orderbus_outbox SET sent_at = now() WHERE id = (SELECT min(id) + 1 FROM orderbus_outbox)")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE orderbus_outbox SET created_at = now() - interval '3 days' WHERE sent_at IS NULL",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO orderbus_inbox (consumer, message_id, routing_key, processed_at) VALUES \
         ('c', 'old', 'k', now() - interval '2 days'), ('c', 'new', 'k', now())",
    )
    .execute(&mut *conn)
    .await?;
    drop(conn);
    let relay = Relay::new(world.pool().clone(), amqp_url(), "test", Health::new());
    assert_eq!(
        relay
            .delete_sent_before(Duration::from_secs(86_400))
            .await?,
        1
    );
    assert_eq!(
        orderbus_bus::prune_inbox(
            world.pool(),
            Duration::from_secs(86_400),
            Duration::from_secs(5)
        )
        .await?,
        1
    );
    let (pending_n, lag) = orderbus_bus::outbox_lag(world.pool(), Duration::from_secs(5)).await?;
    assert_eq!(pending_n, 1);
    assert!(
        lag > 2.0 * 86_400.0,
        "lag is the age of the oldest pending row: {lag}"
    );
    Ok(())
}

async fn pending_for(world: &World, key: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM orderbus_outbox WHERE sent_at IS NULL AND routing_key = $1",
    )
    .bind(key)
    .fetch_one(world.pool())
    .await
}

/// The pipelined relay (several batches in flight) marks only positively confirmed rows sent:
/// unroutable rows spread over the batches stay pending with NO_ROUTE recorded, every routable
/// row is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_relay_never_marks_unroutable_rows_sent() -> TestResult {
    let world = World::new().await?;
    let key = world.key("pipe");
    let lost = world.key("nobody.binds.this");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let outbox = Outbox::new();
    let mut tx = world.pool().begin().await?;
    let mut routable = 0;
    for i in 0..250 {
        if i % 50 == 25 {
            outbox
                .enqueue(&mut tx, &lost, &serde_json::json!({"i": i}))
                .await?;
        } else {
            outbox
                .enqueue(&mut tx, &key, &serde_json::json!({"i": i}))
                .await?;
            routable += 1;
        }
    }
    tx.commit().await?;
    let config = RelayConfig {
        batch_size: 40,
        max_in_flight_batches: 4,
        ..fast_relay_config()
    };
    let shutdown = CancellationToken::new();
    let relay = Relay::new(
        world.pool().clone(),
        amqp_url(),
        world.service.clone(),
        Health::new(),
    )
    .with_config(config);
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < routable {
        let m = sink.recv(Duration::from_secs(15)).await?;
        seen.insert(m.json()["i"].as_i64().ok_or("bad body")?);
    }
    wait_until(Duration::from_secs(10), || async {
        (pending_for(&world, &key).await.ok()? == 0).then_some(())
    })
    .await
    .ok_or("routable rows left pending")?;
    // Every unroutable row has been tried at least once (and backed off), none counts as sent.
    wait_until(Duration::from_secs(10), || async {
        let tried: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orderbus_outbox WHERE routing_key = $1 AND attempts >= 1",
        )
        .bind(&lost)
        .fetch_one(world.pool())
        .await
        .ok()?;
        (tried == 5).then_some(())
    })
    .await
    .ok_or("unroutable rows never tried")?;
    shutdown.cancel();
    task.await??;
    let rows: Vec<(Option<chrono::DateTime<chrono::Utc>>, Option<String>)> =
        sqlx::query_as("SELECT sent_at, last_error FROM orderbus_outbox WHERE routing_key = $1")
            .bind(&lost)
            .fetch_all(world.pool())
            .await?;
    assert_eq!(rows.len(), 5);
    for (sent, err) in rows {
        assert!(sent.is_none(), "an unroutable row was marked sent");
        assert!(err.unwrap_or_default().contains("NO_ROUTE"));
    }
    assert_eq!(seen.len(), routable);
    Ok(())
}

/// Two pipelined relays share the outbox (SKIP LOCKED + lease): with a lease longer than any
/// batch takes to settle, every row is published exactly once (duplicates are documented only
/// for an expired lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelined_relays_publish_each_row_once() -> TestResult {
    let world = World::new().await?;
    let key = world.key("multi2");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let outbox = Outbox::new();
    let mut tx = world.pool().begin().await?;
    for i in 0..600 {
        outbox
            .enqueue(&mut tx, &key, &serde_json::json!({"i": i}))
            .await?;
    }
    tx.commit().await?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let config = RelayConfig {
            batch_size: 50,
            max_in_flight_batches: 3,
            lease: Duration::from_secs(60),
            ..fast_relay_config()
        };
        let relay = Relay::new(
            world.pool().clone(),
            amqp_url(),
            world.service.clone(),
            Health::new(),
        )
        .with_config(config);
        tasks.push(tokio::spawn(relay.run(shutdown.clone())));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    while seen.len() < 600 {
        let m = sink.recv(Duration::from_secs(15)).await?;
        total += 1;
        seen.insert(m.json()["i"].as_i64().ok_or("bad body")?);
    }
    wait_until(Duration::from_secs(10), || async {
        (pending(&world).await.ok()? == 0).then_some(())
    })
    .await
    .ok_or("rows left pending")?;
    shutdown.cancel();
    for t in tasks {
        t.await??;
    }
    total += sink.drain(Duration::from_millis(500)).await.len();
    assert_eq!(total, 600, "a row was published twice");
    Ok(())
}

/// Per-aggregate order: 600 rows of 20 orders (correlation ids), interleaved, published by
/// two pipelined relays (3 batches in flight each, on separate channels): every order's messages
/// arrive in the order they were committed, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelined_relays_keep_each_orders_messages_in_order() -> TestResult {
    let world = World::new().await?;
    let key = world.key("ordered");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let outbox = Outbox::new();
    // Several transactions, as an order's events would be committed over time.
    for chunk in 0..6 {
        let mut tx = world.pool().begin().await?;
        for i in chunk * 100..(chunk + 1) * 100 {
            let (order, seq) = (i % 20, i / 20);
            let msg =
                OutgoingMessage::json(&key, &serde_json::json!({"order": order, "seq": seq}))?
                    .correlation_id(Some(format!("order-{order}")));
            outbox.enqueue_raw(&mut tx, &msg).await?;
        }
        tx.commit().await?;
    }
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let config = RelayConfig {
            batch_size: 7,
            max_in_flight_batches: 3,
            ..fast_relay_config()
        };
        let relay = Relay::new(
            world.pool().clone(),
            amqp_url(),
            world.service.clone(),
            Health::new(),
        )
        .with_config(config);
        tasks.push(tokio::spawn(relay.run(shutdown.clone())));
    }
    let mut next_seq = [0i64; 20];
    for _ in 0..600 {
        let m = sink.recv(Duration::from_secs(15)).await?;
        let body = m.json();
        let order = body["order"].as_u64().ok_or("bad body")? as usize;
        let seq = body["seq"].as_i64().ok_or("bad body")?;
        assert_eq!(
            seq, next_seq[order],
            "order {order}: message {seq} arrived when {} was due",
            next_seq[order]
        );
        assert_eq!(
            m.properties.correlation_id().as_ref().map(|c| c.as_str()),
            Some(format!("order-{order}").as_str())
        );
        next_seq[order] += 1;
    }
    shutdown.cancel();
    for t in tasks {
        t.await??;
    }
    assert_eq!(pending(&world).await?, 0);
    assert!(
        sink.drain(Duration::from_millis(500)).await.is_empty(),
        "a row was published twice"
    );
    Ok(())
}

/// The price of that order: an order's message that cannot be published (here unroutable)
/// holds back the younger messages of the same order (never of other orders) until it goes
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_holds_back_only_its_own_orders_later_messages() -> TestResult {
    let world = World::new().await?;
    let key = world.key("held");
    let unbound = world.key("held.nobody.binds.this.yet");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let outbox = Outbox::new();
    let mut tx = world.pool().begin().await?;
    let stuck = OutgoingMessage::json(&unbound, &serde_json::json!({"order": "a", "seq": 0}))?
        .correlation_id(Some("order-a".into()));
    outbox.enqueue_raw(&mut tx, &stuck).await?;
    for (order, seq) in [("a", 1), ("b", 0), ("b", 1)] {
        let msg = OutgoingMessage::json(&key, &serde_json::json!({"order": order, "seq": seq}))?
            .correlation_id(Some(format!("order-{order}")));
        outbox.enqueue_raw(&mut tx, &msg).await?;
    }
    tx.commit().await?;
    let shutdown = CancellationToken::new();
    let relay = Relay::new(
        world.pool().clone(),
        amqp_url(),
        world.service.clone(),
        Health::new(),
    )
    .with_config(fast_relay_config());
    let task = tokio::spawn(relay.run(shutdown.clone()));
    // Order b flows; order a's second message waits behind the unroutable first one.
    for seq in 0..2 {
        let m = sink.recv(Duration::from_secs(10)).await?;
        assert_eq!(m.json(), serde_json::json!({"order": "b", "seq": seq}));
    }
    wait_until(Duration::from_secs(10), || async {
        let attempts: i32 =
            sqlx::query_scalar("SELECT attempts FROM orderbus_outbox WHERE routing_key = $1")
                .bind(&unbound)
                .fetch_one(world.pool())
                .await
                .ok()?;
        (attempts >= 2).then_some(())
    })
    .await
    .ok_or("the unroutable row was not retried")?;
    assert!(
        sink.drain(Duration::from_millis(300)).await.is_empty(),
        "order a's second message overtook its first"
    );
    // Once the first can be routed (ops add the missing binding), both go, in order.
    sink.bind_more(&unbound).await?;
    for seq in 0..2 {
        let m = sink.recv(Duration::from_secs(15)).await?;
        assert_eq!(m.json(), serde_json::json!({"order": "a", "seq": seq}));
    }
    shutdown.cancel();
    task.await??;
    assert_eq!(pending(&world).await?, 0);
    Ok(())
}

/// lapin attaches a `basic.return` to whichever confirm completes next (on a multiple ack, an
/// arbitrary one of the range); `publish_many` matches returns by message id, so in a window
/// mixing routable and unroutable messages exactly the unroutable ones fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_many_attributes_returns_to_the_right_messages() -> TestResult {
    let world = World::new().await?;
    let key = world.key("mixed");
    let lost = world.key("nobody.binds.this");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let msgs: Vec<OutgoingMessage> = (0..120)
        .map(|i| {
            let rk = if i % 10 == 3 { &lost } else { &key };
            OutgoingMessage::json(rk.as_str(), &serde_json::json!({"i": i}))
        })
        .collect::<Result<_, _>>()?;
    let amqp = conn::connect(&amqp_url(), "test", Duration::from_secs(5)).await?;
    let publisher = Publisher::open(&amqp, "test", Duration::from_secs(5)).await?;
    let results = publisher.publish_many(&msgs).await;
    for (i, r) in results.iter().enumerate() {
        if i % 10 == 3 {
            assert!(
                matches!(r, Err(orderbus_bus::PublishError::Returned { .. })),
                "message {i} was returned: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "message {i} was routed: {r:?}");
        }
    }
    let got = sink.drain(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 108);
    conn::close_quietly(&amqp).await;
    Ok(())
}

/// True when a notification arrives within half a second.
async fn notified(listener: &mut sqlx::postgres::PgListener) -> bool {
    tokio::time::timeout(Duration::from_millis(500), listener.recv())
        .await
        .is_ok()
}

/// Producers notify only while a relay is announced as waiting (a NOTIFY makes every
/// committing producer take PostgreSQL's global notify lock through its WAL flush): with no
/// announcement an outbox commit sends no notification, with one it does, and a stale
/// announcement (a relay that died waiting) is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_commits_notify_only_while_a_relay_waits() -> TestResult {
    let world = World::new().await?;
    let key = world.key("nfy");
    let mut listener = sqlx::postgres::PgListener::connect_with(world.pool()).await?;
    listener.listen("orderbus_outbox").await?;
    let outbox = Outbox::new();
    let commit_one = || async {
        let mut tx = world.pool().begin().await?;
        outbox
            .enqueue(&mut tx, &key, &serde_json::json!({}))
            .await?;
        tx.commit().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };

    commit_one().await?;
    assert!(!notified(&mut listener).await, "no relay waits: no NOTIFY");

    sqlx::query("INSERT INTO orderbus_relay_waiting (relay) VALUES ('test-relay')")
        .execute(world.pool())
        .await?;
    commit_one().await?;
    assert!(notified(&mut listener).await, "a relay waits: NOTIFY");

    sqlx::query("UPDATE orderbus_relay_waiting SET since = now() - interval '2 minutes'")
        .execute(world.pool())
        .await?;
    commit_one().await?;
    assert!(
        !notified(&mut listener).await,
        "a stale announcement is ignored"
    );
    Ok(())
}

/// An idle relay (past its linger after the last rows it found) announces that it waits and is
/// woken by the next commit (its sweep is a minute away here, so only the notification can
/// bring the message), and withdraws once awake; a relay that stopped leaves no announcement
/// behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_relay_is_woken_by_a_commit_not_by_its_sweep() -> TestResult {
    let world = World::new().await?;
    let key = world.key("wake");
    let mut sink = TestQueue::bind(&[&key]).await?;
    let config = RelayConfig {
        sweep_interval: Duration::from_secs(60),
        ..fast_relay_config()
    };
    let shutdown = CancellationToken::new();
    let relay = Relay::new(
        world.pool().clone(),
        amqp_url(),
        world.service.clone(),
        Health::new(),
    )
    .with_config(config);
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let waiting = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orderbus_relay_waiting")
            .fetch_one(world.pool())
            .await
            .ok()
    };
    for n in 0..3 {
        // Past its linger after the previous message, the relay announces that it waits.
        wait_until(Duration::from_secs(15), || async {
            (waiting().await? == 1).then_some(())
        })
        .await
        .ok_or("the idle relay never announced that it waits")?;
        let mut tx = world.pool().begin().await?;
        Outbox::new()
            .enqueue(&mut tx, &key, &serde_json::json!({ "n": n }))
            .await?;
        tx.commit().await?;
        let m = sink.recv(Duration::from_secs(15)).await?;
        assert_eq!(m.json()["n"], n);
    }
    shutdown.cancel();
    task.await??;
    assert_eq!(
        waiting().await,
        Some(0),
        "a stopped relay leaves no announcement"
    );
    Ok(())
}
