//! A failing job is retried with backoff within its slot, then the slot is marked failed; the
//! next slot runs normally.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orderbus_scheduler::{Job, JobError, RetryPolicy, RunContext, Schedule};
use sqlx::PgPool;

use crate::common::{every, record_effect, utc, TestMetrics, World};

/// Fails every attempt at `bad_slot` (the partner refuses connections), succeeds otherwise.
struct FlakyPartner {
    schedule: Schedule,
    pool: PgPool,
    bad_slot: DateTime<Utc>,
}

impl Job for FlakyPartner {
    fn name(&self) -> &str {
        "tracking-poll"
    }
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    async fn run(&self, ctx: &mut RunContext) -> Result<(), JobError> {
        record_effect(&self.pool, ctx, "replica-a", 0).await?;
        if ctx.slot() == self.bad_slot {
            let refused =
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
            return Err(JobError::with_source(
                "tracking partner unreachable",
                refused,
            ));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_job_is_retried_then_marked_failed_and_the_next_slot_runs() -> anyhow::Result<()>
{
    let metrics = TestMetrics::installed();
    let world = World::new(utc(2026, 12, 1, 0, 59, 59)?).await?;
    let bad = utc(2026, 12, 1, 1, 0, 0)?;
    let job = "tracking-poll";
    let retry = RetryPolicy {
        max_failures: 3,
        base_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(60),
    };
    let running = world.start(world.scheduler("replica-a").retry(retry).job(FlakyPartner {
        schedule: every(3600)?,
        pool: world.db.pool().clone(),
        bad_slot: bad,
    }));
    world.wait_sleepers(1).await?;
    world.clock.advance(Duration::from_secs(1));

    let mut previous_delay = Duration::ZERO;
    for failures in 1..=2 {
        let row = world
            .wait_run(job, bad, "a retry scheduled", |r| {
                r.status == "pending" && r.failures == failures
            })
            .await?;
        let error = row.last_error.clone().unwrap_or_default();
        assert!(
            error.contains("tracking partner unreachable: connection refused"),
            "the error keeps its source: {error}"
        );
        let retry_at = row
            .not_before
            .ok_or_else(|| anyhow::anyhow!("no retry time"))?;
        let delay = (retry_at - orderbus_scheduler::Clock::now(&world.clock)).to_std()?;
        let nominal = retry.base_delay * (1 << (failures - 1));
        assert!(
            delay >= nominal / 2 && delay <= nominal,
            "backoff {delay:?} for failure {failures}"
        );
        assert!(delay > previous_delay / 2);
        previous_delay = delay;
        world.clock.set(retry_at);
    }
    let row = world
        .wait_run(job, bad, "the slot marked failed", |r| r.status == "failed")
        .await?;
    assert_eq!((row.attempt, row.failures), (3, 3));
    assert!(row.finished_at.is_some());

    world.clock.set(utc(2026, 12, 1, 2, 0, 0)?);
    let next = utc(2026, 12, 1, 2, 0, 0)?;
    let row = world
        .wait_run(job, next, "the next slot done", |r| r.status == "done")
        .await?;
    assert_eq!(row.attempt, 1);
    world.wait_sleepers(1).await?;
    running.stop().await?;

    let attempts: Vec<_> = world
        .effects(job)
        .await?
        .into_iter()
        .map(|(slot, _, attempt)| (slot, attempt))
        .collect();
    assert_eq!(attempts, vec![(bad, 1), (bad, 2), (bad, 3), (next, 1)]);

    let count = |name: &str| metrics.counter(&format!("{name}{{job={job}}}"));
    assert_eq!(
        count("orderbus_scheduler_runs_failed_total"),
        1,
        "one slot failed"
    );
    assert_eq!(count("orderbus_scheduler_attempts_failed_total"), 3);
    assert_eq!(count("orderbus_scheduler_runs_finished_total"), 1);
    let started = |kind: &str| {
        metrics.counter(&format!(
            "orderbus_scheduler_runs_started_total{{job={job},kind={kind}}}"
        ))
    };
    assert_eq!((started("new"), started("retry")), (2, 2));
    // Both first attempts started exactly at their slot on the manual clock.
    let lag = metrics.samples(&format!(
        "orderbus_scheduler_start_lag_seconds{{job={job}}}"
    ));
    assert_eq!(lag, vec![0.0, 0.0]);
    Ok(())
}
