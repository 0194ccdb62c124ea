//! A replica that loses the database mid-run stops its job once its lease has run out, and the
//! other replica takes the slot over: the two never run it at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderbus_scheduler::{Job, JobError, RunContext, Schedule};
use orderbus_testkit::proxy::{rewrite_url, FaultProxy};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::common::{every, utc, wait_for, World};

/// Sets its flag when dropped: the job's future was stopped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Hang {
    schedule: Schedule,
    owner: String,
    pool: PgPool,
    hang: bool,
    hanging: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl Job for Hang {
    fn name(&self) -> &str {
        "hang"
    }
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    async fn run(&self, ctx: &mut RunContext) -> Result<(), JobError> {
        sqlx::query("INSERT INTO effects (job, slot, owner, attempt) VALUES ('hang', $1, $2, $3)")
            .bind(ctx.slot())
            .bind(&self.owner)
            .bind(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
            .execute(&self.pool)
            .await?;
        if self.hang {
            ctx.save_checkpoint(&serde_json::json!({ "step": 1 }))
                .await?;
            let _stopped = SetOnDrop(self.stopped.clone());
            self.hanging.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_stops_its_run_when_the_lease_ends(
) -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 23, 59, 59)?).await?;
    let postgres = SocketAddr::from(([127, 0, 0, 1], 5432));
    let proxy = FaultProxy::start(postgres).await?;
    let proxied = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&rewrite_url(world.db.url(), postgres, proxy.addr()))
        .await?;
    let hanging = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let hang = |owner: &str, pool: &PgPool, hang: bool| -> anyhow::Result<Hang> {
        Ok(Hang {
            schedule: every(86_400)?,
            owner: owner.to_owned(),
            pool: pool.clone(),
            hang,
            hanging: hanging.clone(),
            stopped: stopped.clone(),
        })
    };

    let a = world.start(world.scheduler_on(proxied.clone(), "replica-a").job(hang(
        "replica-a",
        &proxied,
        true,
    )?));
    world.wait_sleepers(1).await?;
    world.clock.advance(Duration::from_secs(1));
    let slot = utc(2026, 12, 2, 0, 0, 0)?;
    wait_for("a's run to hang", || async {
        Ok(hanging.load(Ordering::SeqCst).then_some(()))
    })
    .await?;
    let b = world.start(world.scheduler("replica-b").job(hang(
        "replica-b",
        world.db.pool(),
        false,
    )?));
    // a's loop, a's lease keeper, b's loop.
    world.wait_sleepers(3).await?;

    proxy.refuse();
    // Past a's 30 s lease: a cannot renew, so it stops its run; b takes the slot over.
    world.clock.advance(Duration::from_secs(31));
    wait_for("a to stop its run", || async {
        Ok(stopped.load(Ordering::SeqCst).then_some(()))
    })
    .await?;
    let row = world
        .wait_run("hang", slot, "b's run done", |r| r.status == "done")
        .await?;
    assert_eq!(
        (row.attempt, row.failures, row.owner.as_str()),
        (2, 1, "replica-b")
    );
    assert_eq!(row.checkpoint, Some(serde_json::json!({ "step": 1 })));

    proxy.pass();
    a.stop().await?;
    b.stop().await?;
    let starts: Vec<_> = world
        .effects("hang")
        .await?
        .into_iter()
        .map(|(_, owner, attempt)| (owner, attempt))
        .collect();
    assert_eq!(
        starts,
        vec![("replica-a".to_owned(), 1), ("replica-b".to_owned(), 2)]
    );
    Ok(())
}
