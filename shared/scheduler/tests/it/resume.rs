//! A replica killed in the middle of a run: after the lease, the other replica takes the slot
//! over exactly once and resumes from the checkpoint the first one saved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderbus_scheduler::{Job, JobError, RunContext, Schedule};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::common::{every, record_effect, utc, wait_for, World};

const STEPS: i32 = 10;
const CRASH_AFTER: i32 = 5;

#[derive(Serialize, Deserialize)]
struct Progress {
    next: i32,
}

/// Ten steps; each commits its effect and the checkpoint in one transaction. On replica-a it
/// hangs after step five (the test then kills that replica).
struct Steps {
    schedule: Schedule,
    owner: String,
    pool: PgPool,
    hang_after_crash_point: bool,
    hanging: Arc<AtomicBool>,
}

impl Job for Steps {
    fn name(&self) -> &str {
        "reconcile"
    }
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    async fn run(&self, ctx: &mut RunContext) -> Result<(), JobError> {
        sqlx::query("INSERT INTO effects (job, slot, owner, attempt, step) VALUES ('start', $1, $2, $3, -1)")
            .bind(ctx.slot())
            .bind(&self.owner)
            .bind(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
            .execute(&self.pool)
            .await?;
        let from = ctx.checkpoint_as::<Progress>()?.map_or(0, |p| p.next);
        for step in from..STEPS {
            if self.hang_after_crash_point && step == CRASH_AFTER {
                self.hanging.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            let mut tx = self.pool.begin().await?;
            record_effect(&mut *tx, ctx, &self.owner, step).await?;
            ctx.save_checkpoint_with(&mut tx, &Progress { next: step + 1 })
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_resumed_once_from_its_checkpoint_after_the_lease() -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 23, 59, 50)?).await?;
    let daily = every(86_400)?;
    let hanging = Arc::new(AtomicBool::new(false));
    let steps = |owner: &str, hang: bool| Steps {
        schedule: daily.clone(),
        owner: owner.to_owned(),
        pool: world.db.pool().clone(),
        hang_after_crash_point: hang,
        hanging: hanging.clone(),
    };
    // replica-a alone when the slot comes, so it is the one that claims it.
    let a = world.start(world.scheduler("replica-a").job(steps("replica-a", true)));
    world.wait_sleepers(1).await?;
    world.clock.advance(Duration::from_secs(10));
    let slot = utc(2026, 12, 2, 0, 0, 0)?;
    wait_for("replica-a to hang after its checkpoint", || async {
        Ok(hanging.load(Ordering::SeqCst).then_some(()))
    })
    .await?;
    let row = world
        .wait_run("reconcile", slot, "checkpoint 5", |r| {
            r.checkpoint == Some(serde_json::json!({ "next": CRASH_AFTER }))
        })
        .await?;
    assert_eq!(
        (row.status.as_str(), row.attempt, row.owner.as_str()),
        ("running", 1, "replica-a")
    );

    // replica-b starts while the lease is valid: it must leave the slot alone.
    let b = world.start(world.scheduler("replica-b").job(steps("replica-b", false)));
    // a's job loop + a's lease keeper + b's job loop.
    world.wait_sleepers(3).await?;
    a.kill().await;
    world.wait_sleepers(1).await?;
    let row = world
        .wait_run("reconcile", slot, "still a's", |_| true)
        .await?;
    assert_eq!(
        (row.attempt, row.owner.as_str()),
        (1, "replica-a"),
        "no takeover within the lease"
    );

    // Past the 30 s lease (claimed at 00:00:00): b takes over.
    world.clock.advance(Duration::from_secs(31));
    let row = world
        .wait_run("reconcile", slot, "b's resumed run done", |r| {
            r.status == "done"
        })
        .await?;
    assert_eq!(
        (row.attempt, row.failures, row.owner.as_str()),
        (2, 1, "replica-b")
    );
    assert_eq!(row.checkpoint, Some(serde_json::json!({ "next": STEPS })));
    world.wait_sleepers(1).await?;
    b.stop().await?;

    let starts: Vec<(String, i32)> =
        sqlx::query_as("SELECT owner, attempt FROM effects WHERE job = 'start' ORDER BY id")
            .fetch_all(world.db.pool())
            .await?;
    assert_eq!(
        starts,
        vec![("replica-a".to_owned(), 1), ("replica-b".to_owned(), 2)],
        "started once by a, resumed once by b"
    );
    let steps_done: Vec<(i32, String)> =
        sqlx::query_as("SELECT step, owner FROM effects WHERE job = 'reconcile' ORDER BY step")
            .fetch_all(world.db.pool())
            .await?;
    let expected: Vec<(i32, String)> = (0..STEPS)
        .map(|s| {
            (
                s,
                if s < CRASH_AFTER {
                    "replica-a"
                } else {
                    "replica-b"
                }
                .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps_done, expected,
        "each step exactly once, b from the checkpoint on"
    );
    Ok(())
}
