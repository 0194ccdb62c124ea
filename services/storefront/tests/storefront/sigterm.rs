//! The built binary under load gets a real SIGTERM: it exits 0 within its grace period, and a
//! second process finishes what the first left: every ERP event applied exactly once, every
//! outbox row published (0 lost).

use std::collections::HashSet;
use std::time::Duration;

use anyhow::anyhow;
use orderbus_storefront::Settings;
use orderbus_testkit::{unique_suffix, ErpPublisher, TestDb, TestQueue};
use serde_json::json;

use crate::common::*;

const ORDERS: usize = 200;

async fn applied_audits(db: &TestDb) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*), count(DISTINCT order_code) FROM order_timeline \
         WHERE event = 'erp_100_audited' AND applied",
    )
    .fetch_one(db.pool())
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_within_grace_and_loses_nothing() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let settings = Settings {
        service_name: format!("storefront-{}", unique_suffix()),
        ..Settings::default()
    };
    let _cleanup = BrokerCleanup::for_settings(&settings);
    let http = reqwest::Client::new();
    let mut submits = TestQueue::bind(&["order.submit"]).await?;

    let mut first = Process::spawn(&settings.service_name, &db, &[])?;
    first.wait_ready(&http).await?;
    let uid = 4242;
    let codes = first
        .paid_orders(&db, &http, uid, ORDERS, 2_000_000_000_000)
        .await?;

    // The load: one audit (100) per order, published while SIGTERM arrives.
    let erp = ErpPublisher::connect().await?;
    let load = {
        let codes = codes.clone();
        tokio::spawn(async move {
            for code in codes {
                let body = json!({ "uid": uid, "order_code": code, "status": 100 });
                erp.publish("order.erpstatus", body.to_string().as_bytes())
                    .await?;
            }
            Ok::<_, orderbus_testkit::TestkitError>(())
        })
    };
    eventually("first audits applied", || async {
        let (n, _) = applied_audits(&db).await.ok()?;
        (n >= 10).then_some(())
    })
    .await?;
    let drain = first.terminate().await?;
    assert!(
        drain <= Duration::from_secs(GRACE_SECS + 2),
        "exited {drain:?} after SIGTERM; grace is {GRACE_SECS} s"
    );
    let (after_first, _) = applied_audits(&db).await?;
    load.await??;

    // A second process (same queues, same database) finishes the rest.
    let mut second = Process::spawn(&settings.service_name, &db, &[])?;
    second.wait_ready(&http).await?;
    eventually("every audit applied", || async {
        let (n, _) = applied_audits(&db).await.ok()?;
        (n >= ORDERS as i64).then_some(())
    })
    .await?;
    eventually("outbox drained", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orderbus_outbox WHERE sent_at IS NULL")
                .fetch_one(db.pool())
                .await
                .ok()?;
        (pending == 0).then_some(())
    })
    .await?;
    second.terminate().await?;

    let (total, distinct) = applied_audits(&db).await?;
    assert_eq!(
        (total, distinct),
        (ORDERS as i64, ORDERS as i64),
        "each audit applied exactly once"
    );
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM orders WHERE order_code = ANY($1)")
            .bind(&codes)
            .fetch_all(db.pool())
            .await?;
    assert!(
        statuses.iter().all(|s| s == "audited"),
        "statuses: {statuses:?}"
    );
    // Every order.submit reached the broker (at least once; the outbox is at-least-once).
    let ours: HashSet<i64> = codes.iter().copied().collect();
    let mut seen = HashSet::new();
    while seen.len() < ours.len() {
        let m = submits
            .recv_where(WAIT, |m| {
                m.json()["order_code"]
                    .as_i64()
                    .is_some_and(|c| ours.contains(&c))
            })
            .await
            .map_err(|e| anyhow!("order.submit seen for {} of {ORDERS}: {e}", seen.len()))?;
        if let Some(c) = m.json()["order_code"].as_i64() {
            seen.insert(c);
        }
    }
    println!(
        "SIGTERM drain took {drain:?}; the first process applied {after_first} of {ORDERS} audits"
    );
    Ok(())
}
