//! What the scheduler tests share: a database with the scheduler's table and an `effects`
//! table that jobs write to, a shared manual clock, and bounded waits.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use orderbus_scheduler::{
    runs_of, Job, JobError, ManualClock, MissedPolicy, RunContext, RunRecord, Schedule, Scheduler,
    SchedulerError,
};
use orderbus_testkit::TestDb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any condition may take to become true before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> anyhow::Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .ok_or_else(|| anyhow::anyhow!("bad test time"))
}

pub struct World {
    pub db: TestDb,
    pub clock: ManualClock,
}

impl World {
    pub async fn new(start: DateTime<Utc>) -> anyhow::Result<World> {
        let db = TestDb::create().await?;
        orderbus_scheduler::MIGRATOR.run(db.pool()).await?;
        sqlx::query(
            "CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, job TEXT NOT NULL, \
             slot TIMESTAMPTZ NOT NULL, owner TEXT NOT NULL, attempt INT NOT NULL, \
             step INT NOT NULL DEFAULT 0)",
        )
        .execute(db.pool())
        .await?;
        Ok(World {
            db,
            clock: ManualClock::new(start),
        })
    }

    /// A scheduler with test timings: 30 s lease, 5 s misfire grace, no retention loop (so
    /// an idle scheduler has exactly one sleeper per job).
    pub fn scheduler(&self, owner: &str) -> Scheduler {
        self.scheduler_on(self.db.pool().clone(), owner)
    }

    /// [`World::scheduler`] on another pool of the same database (e.g. through a fault proxy).
    pub fn scheduler_on(&self, pool: sqlx::PgPool, owner: &str) -> Scheduler {
        Scheduler::new(pool, self.clock.clone(), owner)
            .lease(Duration::from_secs(30))
            .misfire_grace(Duration::from_secs(5))
            .poll_interval(Duration::from_secs(60))
            .retention(None, Duration::from_secs(3600))
    }

    pub fn start(&self, scheduler: Scheduler) -> Running {
        let token = CancellationToken::new();
        let handle = tokio::spawn(scheduler.run(token.clone()));
        Running { token, handle }
    }

    /// Waits until `n` loops sleep on the clock: every scheduler has finished its tick.
    pub async fn wait_sleepers(&self, n: usize) -> anyhow::Result<()> {
        let clock = self.clock.clone();
        wait_for(&format!("{n} sleepers"), || {
            let clock = clock.clone();
            async move { Ok((clock.sleepers() == n).then_some(())) }
        })
        .await
    }

    pub async fn runs(&self, job: &str) -> anyhow::Result<Vec<RunRecord>> {
        Ok(runs_of(self.db.pool(), job).await?)
    }

    /// Waits for the row of `slot` to satisfy `ok`, and returns it.
    pub async fn wait_run(
        &self,
        job: &str,
        slot: DateTime<Utc>,
        what: &str,
        ok: impl Fn(&RunRecord) -> bool,
    ) -> anyhow::Result<RunRecord> {
        wait_for(what, || async {
            let runs = self.runs(job).await?;
            Ok(runs.into_iter().find(|r| r.slot == slot && ok(r)))
        })
        .await
    }

    /// `(slot, owner, attempt)` of every effect of `job`, in insertion order.
    pub async fn effects(&self, job: &str) -> anyhow::Result<Vec<(DateTime<Utc>, String, i32)>> {
        Ok(
            sqlx::query_as("SELECT slot, owner, attempt FROM effects WHERE job = $1 ORDER BY id")
                .bind(job)
                .fetch_all(self.db.pool())
                .await?,
        )
    }
}

/// A scheduler running in its own task.
pub struct Running {
    token: CancellationToken,
    handle: JoinHandle<Result<(), SchedulerError>>,
}

impl Running {
    /// Graceful shutdown; returns the scheduler's result.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        tokio::time::timeout(WAIT, self.handle).await???;
        Ok(())
    }

    /// Kills the scheduler as a crash would: its tasks are dropped wherever they are, nothing
    /// is released or recorded.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Polls `check` until it returns `Some`, failing after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A job that records one effect per run: `(job, slot, owner, attempt)`.
pub struct Recorder {
    pub name: String,
    pub schedule: Schedule,
    pub policy: MissedPolicy,
    pub owner: String,
    pub pool: sqlx::PgPool,
}

impl Recorder {
    pub fn new(world: &World, name: &str, schedule: Schedule, owner: &str) -> Recorder {
        Recorder {
            name: name.to_owned(),
            schedule,
            policy: MissedPolicy::Skip,
            owner: owner.to_owned(),
            pool: world.db.pool().clone(),
        }
    }

    pub fn policy(mut self, policy: MissedPolicy) -> Recorder {
        self.policy = policy;
        self
    }
}

pub async fn record_effect(
    conn: impl sqlx::PgExecutor<'_>,
    ctx: &RunContext,
    owner: &str,
    step: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO effects (job, slot, owner, attempt, step) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ctx.job())
    .bind(ctx.slot())
    .bind(owner)
    .bind(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
    .bind(step)
    .execute(conn)
    .await?;
    Ok(())
}

impl Job for Recorder {
    fn name(&self) -> &str {
        &self.name
    }
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    fn missed_policy(&self) -> MissedPolicy {
        self.policy
    }
    async fn run(&self, ctx: &mut RunContext) -> Result<(), JobError> {
        record_effect(&self.pool, ctx, &self.owner, 0).await?;
        Ok(())
    }
}

pub fn every(secs: u64) -> anyhow::Result<Schedule> {
    Ok(Schedule::every(Duration::from_secs(secs))?)
}

/// A metrics recorder for tests: counters and histogram samples by `name{label=value,...}`.
#[derive(Default)]
pub struct TestMetrics {
    counters: std::sync::Mutex<std::collections::HashMap<String, Arc<AtomicU64>>>,
    histograms: std::sync::Mutex<std::collections::HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
pub struct Samples(std::sync::Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(value);
    }
}

struct NoGauge;

impl metrics::GaugeFn for NoGauge {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {}
}

fn key_text(key: &metrics::Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl metrics::Recorder for &'static TestMetrics {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let counter = counters.entry(key_text(key)).or_default().clone();
        metrics::Counter::from_arc(counter)
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(Arc::new(NoGauge))
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let samples = histograms.entry(key_text(key)).or_default().clone();
        metrics::Histogram::from_arc(samples)
    }
}

impl TestMetrics {
    /// The process-wide recorder (installed on first use; keys carry the job name, so tests
    /// sharing a process do not mix).
    pub fn installed() -> &'static TestMetrics {
        static METRICS: std::sync::OnceLock<&'static TestMetrics> = std::sync::OnceLock::new();
        METRICS.get_or_init(|| {
            let metrics: &'static TestMetrics = Box::leak(Box::default());
            let _ = metrics::set_global_recorder(metrics);
            metrics
        })
    }

    /// A counter's value, e.g. `counter("orderbus_scheduler_runs_failed_total{job=x}")`.
    pub fn counter(&self, key: &str) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.get(key).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    pub fn samples(&self, key: &str) -> Vec<f64> {
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        histograms
            .get(key)
            .map(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }
}
