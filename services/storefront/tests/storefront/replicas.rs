//! Scale-out with sharded queues (`ORDERBUS_CONSUMER_SHARDS`): storefront processes on the
//! same queues and database, one killed with SIGKILL mid-run, or restarted one by one with
//! SIGTERM while events flow. Every order's ERP events are applied once each and in
//! publication order, and the order ends delivered.

use std::time::Duration;

use orderbus_storefront::{topology, Settings};
use orderbus_testkit::{unique_suffix, ErpPublisher, RouteSink, TestDb};

use crate::common::*;
use crate::consumers::erpstatus;

const ORDERS: usize = 60;
const SHARDS: usize = 4;
/// What the ERP sends each order, in this order.
const SEQUENCE: [i64; 4] = [100, 200, 600, 700];

/// A test's storefront deployment: its own database and service name (so its own queues,
/// deleted afterwards), every subscription with `SHARDS` shards.
struct Cluster {
    db: TestDb,
    http: reqwest::Client,
    service_name: String,
    _cleanup: BrokerCleanup,
    _erp_routes: RouteSink,
}

impl Cluster {
    async fn new() -> anyhow::Result<Cluster> {
        let settings = Settings {
            service_name: format!("storefront-{}", unique_suffix()),
            ..Settings::default()
        };
        let mut sharded = topology(&settings);
        for sub in &mut sharded.subscriptions {
            sub.shards = SHARDS;
        }
        Ok(Cluster {
            db: TestDb::create().await?,
            http: reqwest::Client::new(),
            _cleanup: BrokerCleanup::for_topology(sharded),
            _erp_routes: erp_routes().await?,
            service_name: settings.service_name,
        })
    }

    /// One more storefront process of this deployment.
    fn spawn(&self) -> anyhow::Result<Process> {
        let shards = SHARDS.to_string();
        Process::spawn(
            &self.service_name,
            &self.db,
            &[("ORDERBUS_CONSUMER_SHARDS", shards.as_str())],
        )
    }
}

/// Each order's applied ERP events, in the order they were applied.
async fn applied_sequences(db: &TestDb, codes: &[i64]) -> anyhow::Result<Vec<(i64, Vec<String>)>> {
    Ok(sqlx::query_as(
        "SELECT order_code, array_agg(event ORDER BY id) FROM order_timeline \
         WHERE order_code = ANY($1) AND applied AND event LIKE 'erp\\_%' \
         GROUP BY order_code ORDER BY order_code",
    )
    .bind(codes)
    .fetch_all(db.pool())
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sharded_replicas_keep_each_orders_sequence_when_one_is_killed() -> anyhow::Result<()>
{
    let cluster = Cluster::new().await?;
    let (db, http) = (&cluster.db, &cluster.http);
    let mut first = cluster.spawn()?;
    first.wait_ready(http).await?;
    let uid = 5151;
    let codes = first
        .paid_orders(db, http, uid, ORDERS, 3_000_000_000_000)
        .await?;
    let second = cluster.spawn()?;
    let third = cluster.spawn()?;
    second.wait_ready(http).await?;
    third.wait_ready(http).await?;
    eventually("three shard members", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT member) FROM orderbus_shard_members \
             WHERE queue = $1 AND seen_at > clock_timestamp() - interval '2 seconds'",
        )
        .bind(format!("{}.order.erpstatus", cluster.service_name))
        .fetch_one(db.pool())
        .await
        .ok()?;
        (n >= 3).then_some(())
    })
    .await?;

    let erp = ErpPublisher::connect().await?;
    for (round, status) in SEQUENCE.iter().enumerate() {
        for code in &codes {
            erpstatus(&erp, uid, *code, *status).await?;
        }
        if round == 1 {
            // Half-way: the first process (the one that started first: the sequencer, and
            // first in line on every shard) dies without a chance to drain.
            eventually("some 200s applied", || async {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM order_timeline WHERE order_code = ANY($1) \
                     AND event = 'erp_200_stocked' AND applied",
                )
                .bind(&codes)
                .fetch_one(db.pool())
                .await
                .ok()?;
                (n >= 5).then_some(())
            })
            .await?;
            first.child.kill()?;
            first.child.wait()?;
        }
    }
    assert_delivered_in_sequence(db, &codes).await?;
    let mut second = second;
    let mut third = third;
    second.terminate().await?;
    third.terminate().await?;
    Ok(())
}

/// Waits until every order is delivered, then checks that each applied its ERP events once
/// each, in publication order, and that the state machine refused none (which it would, for an
/// event applied out of order).
async fn assert_delivered_in_sequence(db: &TestDb, codes: &[i64]) -> anyhow::Result<()> {
    let orders = codes.len();
    eventually("every order delivered", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders WHERE order_code = ANY($1) AND status = 'delivered'",
        )
        .bind(codes)
        .fetch_one(db.pool())
        .await
        .ok()?;
        (n == orders as i64).then_some(())
    })
    .await?;
    // A moment for anything doubled or late to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sequences = applied_sequences(db, codes).await?;
    let expected = [
        "erp_100_audited",
        "erp_200_stocked",
        "erp_600_shipped",
        "erp_700_delivered",
    ];
    assert_eq!(sequences.len(), orders);
    for (code, events) in &sequences {
        assert_eq!(events, &expected, "order {code}");
    }
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_timeline WHERE order_code = ANY($1) AND NOT applied",
    )
    .bind(codes)
    .fetch_one(db.pool())
    .await?;
    assert_eq!(
        refused, 0,
        "events refused by the state machine (applied out of order)"
    );
    Ok(())
}

/// A rolling restart under traffic, as a deployment does it: two sharded processes; while the
/// ERP publishes its four events for each of 300 orders, the older process gets SIGTERM and a
/// new one starts, twice (once a sixth and once half of the events are applied). Each stop
/// hands the stopping process's shards (the first time also the sequencer) to the other one
/// while it holds unacked deliveries and later events of the same orders are queued. Every
/// order's events are applied once each, in publication order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_traffic_keeps_each_orders_sequence() -> anyhow::Result<()> {
    const ROLLING_ORDERS: usize = 300;
    let cluster = Cluster::new().await?;
    let (db, http) = (&cluster.db, &cluster.http);
    let first = cluster.spawn()?;
    first.wait_ready(http).await?;
    let uid = 5252;
    let codes = first
        .paid_orders(db, http, uid, ROLLING_ORDERS, 4_000_000_000_000)
        .await?;
    let second = cluster.spawn()?;
    second.wait_ready(http).await?;
    let mut running = std::collections::VecDeque::from([first, second]);

    let erp = ErpPublisher::connect().await?;
    let publishing = {
        let codes = codes.clone();
        tokio::spawn(async move {
            for status in SEQUENCE {
                // One round's publishes in flight together: the queues build a backlog.
                futures::future::try_join_all(
                    codes.iter().map(|code| erpstatus(&erp, uid, *code, status)),
                )
                .await?;
            }
            anyhow::Ok(())
        })
    };
    let events = (ROLLING_ORDERS * SEQUENCE.len()) as i64;
    for applied in [events / 6, events / 2] {
        eventually("events applied", || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM order_timeline WHERE order_code = ANY($1) \
                 AND event LIKE 'erp\\_%' AND applied",
            )
            .bind(&codes)
            .fetch_one(db.pool())
            .await
            .ok()?;
            (n >= applied).then_some(())
        })
        .await?;
        if let Some(mut oldest) = running.pop_front() {
            oldest.terminate().await?;
        }
        let next = cluster.spawn()?;
        next.wait_ready(http).await?;
        running.push_back(next);
    }
    publishing.await??;
    assert_delivered_in_sequence(db, &codes).await?;
    for mut process in running {
        process.terminate().await?;
    }
    Ok(())
}
