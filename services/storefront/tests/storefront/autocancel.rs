//! Auto-cancel: two sweepers racing over the same due orders cancel each exactly once.

use std::time::Duration;

use orderbus_storefront::autocancel::sweep_once;
use orderbus_testkit::TestQueue;

use crate::common::*;

#[tokio::test]
async fn two_concurrent_sweepers_fire_once_per_order() -> anyhow::Result<()> {
    let mut q = TestQueue::bind(&["order.orderStatus"]).await?;
    let h = Harness::start().await?;
    let mut due = Vec::new();
    for _ in 0..12 {
        due.push(h.create_order(41).await?);
    }
    let (_, split) = h.post("/orders", &order_body(41, &[1, 2])).await?;
    let parent = split["order_code"].as_i64().unwrap_or_default();
    let paid = h.create_order(41).await?;
    h.force_status(paid, "paid").await?;
    let fresh = h.create_order(41).await?;
    // Everything but `fresh` is an hour old.
    sqlx::query("UPDATE orders SET created_at = now() - interval '1 hour' WHERE order_code <> $1")
        .bind(fresh)
        .execute(h.db.pool())
        .await?;

    let deadline = Duration::from_secs(30 * 60);
    let pool = h.db.pool().clone();
    let (a, b) = tokio::join!(
        sweep_once(&pool, deadline, 5),
        sweep_once(&pool, deadline, 100)
    );
    let (mut a, mut b) = (a?, b?);
    // Whatever the first round left (batch limits), later rounds pick up.
    loop {
        let more = sweep_once(&pool, deadline, 100).await?;
        if more.is_empty() {
            break;
        }
        a.extend(more);
    }
    assert!(
        a.iter().all(|c| !b.contains(c)),
        "no order cancelled by both sweepers"
    );
    a.append(&mut b);
    a.sort_unstable();
    let mut expected = due.clone();
    expected.push(parent);
    expected.sort_unstable();
    assert_eq!(a, expected);

    let children = h.order(parent).await?["child_order_codes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(children.len(), 2);
    let cancels: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orderbus_outbox WHERE routing_key = 'order.orderStatus'",
    )
    .fetch_one(h.db.pool())
    .await?;
    assert_eq!(cancels, 12 + 3, "one 906 per order, children included");
    let entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_timeline WHERE source = 'auto-cancel'")
            .fetch_one(h.db.pool())
            .await?;
    assert_eq!(entries, 15);
    assert_eq!(h.status(due[0]).await?, "cancelled_by_system");
    assert_eq!(h.status(paid).await?, "paid");
    assert_eq!(h.status(fresh).await?, "pending_payment");
    let m = recv_match(&mut q, "order.orderStatus", |b| b["orderCode"] == due[0]).await?;
    assert_schema(&m);
    assert_eq!(m.json()["status"], 906);
    h.stop().await
}

#[tokio::test]
async fn the_service_sweeper_runs_on_its_own() -> anyhow::Result<()> {
    let h = Harness::start_with(|s| {
        s.auto_cancel_after = Duration::from_secs(1);
        s.sweep_interval = Some(Duration::from_millis(200));
    })
    .await?;
    let code = h.create_order(42).await?;
    eventually("auto-cancelled", || async {
        (h.status(code).await.ok()? == "cancelled_by_system").then_some(())
    })
    .await?;
    h.stop().await
}
