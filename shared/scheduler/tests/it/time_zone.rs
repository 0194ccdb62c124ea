//! "Every day at 12:00 Asia/Seoul" fires at 03:00 UTC, driven by the manual clock.

use std::time::Duration;

use orderbus_scheduler::Schedule;

use crate::common::{utc, Recorder, World};

#[tokio::test]
async fn noon_in_seoul_fires_at_three_utc() -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 2, 59, 0)?).await?;
    let job = "sweettracker-registration";
    let schedule = Schedule::cron("0 12 * * *", "Asia/Seoul")?;
    let running = world.start(world.scheduler("replica-a").job(Recorder::new(
        &world,
        job,
        schedule,
        "replica-a",
    )));
    world.wait_sleepers(1).await?;
    assert!(world.runs(job).await?.is_empty());

    world.clock.advance(Duration::from_secs(59));
    world.wait_sleepers(1).await?;
    assert!(
        world.runs(job).await?.is_empty(),
        "11:59:59 in Seoul is not noon yet"
    );

    world.clock.advance(Duration::from_secs(1));
    let noon_utc = utc(2026, 12, 1, 3, 0, 0)?;
    let run = world
        .wait_run(job, noon_utc, "the noon run", |r| r.status == "done")
        .await?;
    assert_eq!(run.attempt, 1);
    world.wait_sleepers(1).await?;
    running.stop().await?;

    let effects = world.effects(job).await?;
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].0, noon_utc);
    Ok(())
}
