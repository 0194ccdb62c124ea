//! The lease while a job runs: renewed so long runs keep their slot, and handed back at a
//! graceful shutdown so another replica continues without waiting for it to expire.

use std::sync::Arc;
use std::time::Duration;

use orderbus_scheduler::{Clock, Job, JobError, RunContext, Schedule};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::common::{every, utc, wait_for, World};

/// Saves a checkpoint, then (when `hold`) waits for the test to release it, ignoring shutdown.
struct Hold {
    schedule: Schedule,
    owner: String,
    pool: PgPool,
    hold: bool,
    release: Arc<Notify>,
}

impl Job for Hold {
    fn name(&self) -> &str {
        "hold"
    }
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    async fn run(&self, ctx: &mut RunContext) -> Result<(), JobError> {
        sqlx::query(
            "INSERT INTO effects (job, slot, owner, attempt, step) VALUES ('hold', $1, $2, $3, $4)",
        )
        .bind(ctx.slot())
        .bind(&self.owner)
        .bind(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
        .bind(i32::from(ctx.checkpoint().is_some()))
        .execute(&self.pool)
        .await?;
        if self.hold {
            ctx.save_checkpoint(&serde_json::json!({ "held": true }))
                .await?;
            self.release.notified().await;
        }
        Ok(())
    }
}

fn hold(world: &World, owner: &str, hold: bool, release: &Arc<Notify>) -> anyhow::Result<Hold> {
    Ok(Hold {
        schedule: every(86_400)?,
        owner: owner.to_owned(),
        pool: world.db.pool().clone(),
        hold,
        release: release.clone(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_renews_its_lease_and_keeps_its_slot() -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 23, 59, 59)?).await?;
    let release = Arc::new(Notify::new());
    let a = world.start(world.scheduler("replica-a").job(hold(
        &world,
        "replica-a",
        true,
        &release,
    )?));
    world.wait_sleepers(1).await?;
    world.clock.advance(Duration::from_secs(1));
    let slot = utc(2026, 12, 2, 0, 0, 0)?;
    world
        .wait_run("hold", slot, "checkpoint saved", |r| r.checkpoint.is_some())
        .await?;
    let b = world.start(world.scheduler("replica-b").job(hold(
        &world,
        "replica-b",
        false,
        &release,
    )?));
    // a's loop, a's lease keeper, b's loop.
    world.wait_sleepers(3).await?;

    // Three leases' worth of time in steps of a third of the lease: a renews at each step.
    for _ in 0..9 {
        world.clock.advance(Duration::from_secs(10));
        let expected = world.clock.now() + chrono::TimeDelta::seconds(30);
        world
            .wait_run("hold", slot, "lease renewed", |r| {
                r.lease_until == Some(expected)
            })
            .await?;
        world.wait_sleepers(3).await?;
    }
    let row = world.wait_run("hold", slot, "the row", |_| true).await?;
    assert_eq!(
        (row.status.as_str(), row.attempt, row.owner.as_str()),
        ("running", 1, "replica-a")
    );

    release.notify_one();
    world
        .wait_run("hold", slot, "done", |r| r.status == "done")
        .await?;
    world.wait_sleepers(2).await?;
    a.stop().await?;
    b.stop().await?;
    let starts = world.effects("hold").await?;
    assert_eq!(starts.len(), 1, "b never started the slot: {starts:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_a_run_that_does_not_finish_and_another_replica_continues(
) -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 23, 59, 59)?).await?;
    let release = Arc::new(Notify::new());
    let a = world.start(
        world
            .scheduler("replica-a")
            .drain(Duration::from_millis(200))
            .job(hold(&world, "replica-a", true, &release)?),
    );
    world.wait_sleepers(1).await?;
    world.clock.advance(Duration::from_secs(1));
    let slot = utc(2026, 12, 2, 0, 0, 0)?;
    world
        .wait_run("hold", slot, "checkpoint saved", |r| r.checkpoint.is_some())
        .await?;

    // The job ignores the shutdown; after the drain time it is stopped and the slot released.
    a.stop().await?;
    let row = world
        .wait_run("hold", slot, "released", |r| r.status == "pending")
        .await?;
    assert_eq!(
        (row.attempt, row.failures),
        (1, 0),
        "a release is not a failure"
    );
    assert_eq!(row.lease_until, None);

    let b = world.start(world.scheduler("replica-b").job(hold(
        &world,
        "replica-b",
        false,
        &release,
    )?));
    let row = world
        .wait_run("hold", slot, "done by b", |r| r.status == "done")
        .await?;
    assert_eq!((row.attempt, row.owner.as_str()), (2, "replica-b"));
    world.wait_sleepers(1).await?;
    b.stop().await?;

    let runs: Vec<(String, i32, i32)> = wait_for("both starts", || async {
        let rows: Vec<(String, i32, i32)> = sqlx::query_as(
            "SELECT owner, attempt, step FROM effects WHERE job = 'hold' ORDER BY id",
        )
        .fetch_all(world.db.pool())
        .await?;
        Ok((rows.len() == 2).then_some(rows))
    })
    .await?;
    assert_eq!(
        runs,
        vec![
            ("replica-a".to_owned(), 1, 0),
            ("replica-b".to_owned(), 2, 1)
        ],
        "b resumed with a's checkpoint"
    );
    Ok(())
}
