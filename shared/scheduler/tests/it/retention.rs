//! Old claim rows are pruned; recent ones and each job's latest row stay.

use std::time::Duration;

use crate::common::{every, utc, wait_for, Recorder, World};

#[tokio::test]
async fn rows_older_than_the_retention_are_pruned() -> anyhow::Result<()> {
    let world = World::new(utc(2026, 12, 1, 0, 59, 59)?).await?;
    let job = "hourly";
    let running = world.start(
        world
            .scheduler("replica-a")
            .retention(
                Some(Duration::from_secs(3 * 3600)),
                Duration::from_secs(3600),
            )
            .job(Recorder::new(&world, job, every(3600)?, "replica-a")),
    );
    // The job loop and the retention loop.
    world.wait_sleepers(2).await?;
    world.clock.advance(Duration::from_secs(1));
    for hour in 1..=7 {
        let slot = utc(2026, 12, 1, hour, 0, 0)?;
        world
            .wait_run(job, slot, "slot done", |r| r.status == "done")
            .await?;
        world.wait_sleepers(2).await?;
        if hour < 7 {
            world.clock.advance(Duration::from_secs(3600));
        }
    }
    // At 07:00 the cut-off is 04:00.
    let kept = wait_for("pruning down to 04:00..=07:00", || async {
        let slots: Vec<u32> = world
            .runs(job)
            .await?
            .iter()
            .map(|r| chrono::Timelike::hour(&r.slot))
            .collect();
        Ok((slots == vec![4, 5, 6, 7]).then_some(slots))
    })
    .await?;
    assert_eq!(kept.len(), 4);
    running.stop().await?;
    Ok(())
}
