//! After an outage of every replica, the missed slots follow the job's policy, once across
//! the replicas that come back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orderbus_scheduler::MissedPolicy;

use crate::common::{every, utc, Recorder, World};

/// Runs the 01:00 slot, stops, comes back at 06:30 with two replicas (02:00..=06:00 missed),
/// then lets 07:00 run. Returns the slots that ran.
async fn outage(
    world: &World,
    job: &str,
    policy: MissedPolicy,
) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let hourly = every(3600)?;
    let recorder = |owner: &str| Recorder::new(world, job, hourly.clone(), owner).policy(policy);
    let first = world.start(world.scheduler("replica-a").job(recorder("replica-a")));
    world.wait_sleepers(1).await?;
    world.clock.advance(Duration::from_secs(1));
    let one = utc(2026, 12, 1, 1, 0, 0)?;
    world
        .wait_run(job, one, "01:00 done", |r| r.status == "done")
        .await?;
    world.wait_sleepers(1).await?;
    first.stop().await?;

    world.clock.set(utc(2026, 12, 1, 6, 30, 0)?);
    let a = world.start(world.scheduler("replica-a").job(recorder("replica-a")));
    let b = world.start(world.scheduler("replica-b").job(recorder("replica-b")));
    let six = utc(2026, 12, 1, 6, 0, 0)?;
    let status = match policy {
        MissedPolicy::Skip => "skipped",
        MissedPolicy::CatchUpOnce => "done",
    };
    let row = world
        .wait_run(job, six, "the missed-slots row", |r| r.status == status)
        .await?;
    assert_eq!(row.missed, 5, "02:00..=06:00 were missed");
    world.wait_sleepers(2).await?;

    world.clock.set(utc(2026, 12, 1, 7, 0, 0)?);
    let seven = utc(2026, 12, 1, 7, 0, 0)?;
    world
        .wait_run(job, seven, "07:00 done", |r| r.status == "done")
        .await?;
    world.wait_sleepers(2).await?;
    a.stop().await?;
    b.stop().await?;

    let runs = world.runs(job).await?;
    let slots: Vec<_> = runs.iter().map(|r| r.slot).collect();
    assert_eq!(
        slots,
        vec![one, six, seven],
        "one row stands for the outage"
    );
    Ok(world
        .effects(job)
        .await?
        .into_iter()
        .map(|(slot, _, _)| slot)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_runs_none_of_the_missed_slots() -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 0, 59, 59)?).await?;
    let ran = outage(&world, "poll", MissedPolicy::Skip).await?;
    assert_eq!(
        ran,
        vec![utc(2026, 12, 1, 1, 0, 0)?, utc(2026, 12, 1, 7, 0, 0)?]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_once_runs_exactly_one_of_the_missed_slots() -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 0, 59, 59)?).await?;
    let ran = outage(&world, "registration", MissedPolicy::CatchUpOnce).await?;
    assert_eq!(
        ran,
        vec![
            utc(2026, 12, 1, 1, 0, 0)?,
            utc(2026, 12, 1, 6, 0, 0)?,
            utc(2026, 12, 1, 7, 0, 0)?,
        ]
    );
    Ok(())
}
