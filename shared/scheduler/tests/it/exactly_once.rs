//! Two replicas on one database, woken at the same instant for every slot: each slot runs once.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{every, utc, Recorder, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_fire_each_slot_exactly_once() -> anyhow::Result<()> {
    const SLOTS: usize = 20;
    let world = World::new(utc(2026, 12, 1, 0, 0, 30)?).await?;
    let job = "sweep";
    let a = world.start(world.scheduler("replica-a").job(Recorder::new(
        &world,
        job,
        every(60)?,
        "replica-a",
    )));
    let b = world.start(world.scheduler("replica-b").job(Recorder::new(
        &world,
        job,
        every(60)?,
        "replica-b",
    )));
    world.wait_sleepers(2).await?;
    assert!(
        world.effects(job).await?.is_empty(),
        "no slot was due at start"
    );

    // Land exactly on each slot, so both replicas wake for it together and race for the claim.
    world.clock.advance(Duration::from_secs(30));
    let first = utc(2026, 12, 1, 0, 1, 0)?;
    for i in 0..SLOTS {
        let slot = first + chrono::TimeDelta::minutes(i as i64);
        world
            .wait_run(job, slot, "slot done", |r| r.status == "done")
            .await?;
        world.wait_sleepers(2).await?;
        world.clock.advance(Duration::from_secs(60));
    }
    // The last advance reached one more slot: let it finish too before counting.
    let extra = first + chrono::TimeDelta::minutes(SLOTS as i64);
    world
        .wait_run(job, extra, "last slot done", |r| r.status == "done")
        .await?;
    a.stop().await?;
    b.stop().await?;

    let effects = world.effects(job).await?;
    let mut per_slot: BTreeMap<_, usize> = BTreeMap::new();
    for (slot, _, _) in &effects {
        *per_slot.entry(*slot).or_default() += 1;
    }
    assert_eq!(per_slot.len(), SLOTS + 1, "every slot ran");
    assert!(
        per_slot.values().all(|n| *n == 1),
        "a slot ran twice: {per_slot:?}"
    );
    let runs = world.runs(job).await?;
    assert_eq!(runs.len(), SLOTS + 1);
    assert!(runs.iter().all(|r| r.status == "done" && r.attempt == 1));
    Ok(())
}
