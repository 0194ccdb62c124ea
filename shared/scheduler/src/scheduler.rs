//! The scheduler: one loop per job that claims due slots, takes over dead runs and picks up
//! retries, plus one loop that prunes old claim rows.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Clock};
use crate::error::SchedulerError;
use crate::job::{error_chain, DynJob, Job, MissedPolicy};
use crate::metrics as m;
use crate::runner;
use crate::schedule::SlotRange;
use crate::store::{Claim, Store};

/// Identifies one replica in the claim rows (`owner`), e.g. the pod name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerId(String);

impl OwnerId {
    pub fn new(id: impl Into<String>) -> OwnerId {
        OwnerId(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for OwnerId {
    fn from(id: &str) -> OwnerId {
        OwnerId::new(id)
    }
}

impl From<String> for OwnerId {
    fn from(id: String) -> OwnerId {
        OwnerId(id)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Retries of a failing job within its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failed attempts after which the slot is marked failed (a run whose replica died counts
    /// as a failed attempt too, so a slot that kills its process cannot loop forever).
    pub max_failures: u32,
    /// Delay after the first failure; doubled after each further one, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_failures: 3,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `failures`-th failure: exponential, capped, then scaled into
    /// `[delay/2, delay]` so replicas that failed together do not retry in lockstep.
    pub(crate) fn delay_after(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let delay = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let jitter: f64 = rand::random_range(0.5..=1.0);
        delay.mul_f64(jitter)
    }
}

/// Timing settings shared by all jobs of one scheduler.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub lease: Duration,
    pub poll: Duration,
    pub misfire_grace: Duration,
    pub retry: RetryPolicy,
    pub retention: Option<Duration>,
    pub prune_every: Duration,
    pub drain: Duration,
}

/// What the loops of one scheduler share.
pub(crate) struct Shared {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub owner: OwnerId,
    pub settings: Settings,
    pub shutdown: CancellationToken,
}

/// Fires each job once per slot across every replica that runs the same jobs on the same
/// database. See the crate documentation for the guarantees.
pub struct Scheduler {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    owner: OwnerId,
    jobs: Vec<Arc<dyn DynJob>>,
    settings: Settings,
}

impl Scheduler {
    /// A scheduler on `pool` (whose database has [`crate::MIGRATOR`] applied), reading time
    /// from `clock`, recording claims as `owner`.
    pub fn new(pool: PgPool, clock: impl Clock, owner: impl Into<OwnerId>) -> Scheduler {
        Scheduler {
            pool,
            clock: Arc::new(clock),
            owner: owner.into(),
            jobs: Vec::new(),
            settings: Settings {
                lease: Duration::from_secs(60),
                poll: Duration::from_secs(30),
                misfire_grace: Duration::from_secs(60),
                retry: RetryPolicy::default(),
                retention: Some(Duration::from_secs(30 * 24 * 3600)),
                prune_every: Duration::from_secs(3600),
                drain: Duration::from_secs(10),
            },
        }
    }

    pub fn job(mut self, job: impl Job) -> Self {
        self.jobs.push(Arc::new(job));
        self
    }

    /// How long a claim holds without renewal (default 60 s). The running replica renews it
    /// every third of it; a replica that dies stops renewing, and once the lease has passed
    /// another replica takes the slot over. Replica clocks must agree to well within it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease;
        self
    }

    /// How often each job loop looks for dead runs of other replicas to take over when it
    /// has nothing else to wake for (default 30 s).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.settings.poll = poll;
        self
    }

    /// How late a slot may be noticed and still run as a normal slot (default 60 s). Older
    /// unrecorded slots count as missed and follow the job's [`MissedPolicy`].
    pub fn misfire_grace(mut self, grace: Duration) -> Self {
        self.settings.misfire_grace = grace;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.settings.retry = retry;
        self
    }

    /// Deletes finished claim rows whose slot is older than `keep` (default 30 days), checking
    /// every `every` (default 1 h). Each job's latest row is always kept. `None` keeps all.
    pub fn retention(mut self, keep: Option<Duration>, every: Duration) -> Self {
        self.settings.retention = keep;
        self.settings.prune_every = every;
        self
    }

    /// On shutdown, how long (real time) running jobs may take to finish before they are
    /// stopped and their slots released to another replica (default 10 s).
    pub fn drain(mut self, drain: Duration) -> Self {
        self.settings.drain = drain;
        self
    }

    fn validate(&self) -> Result<(), SchedulerError> {
        if self.owner.as_str().is_empty() {
            return Err(SchedulerError::EmptyOwner);
        }
        if self.settings.lease < Duration::from_secs(1) {
            return Err(SchedulerError::LeaseTooShort(self.settings.lease));
        }
        if self.settings.retry.max_failures == 0 {
            return Err(SchedulerError::NoAttempts);
        }
        let mut names = HashSet::new();
        for job in &self.jobs {
            if job.name().is_empty() {
                return Err(SchedulerError::EmptyJobName);
            }
            if !names.insert(job.name().to_owned()) {
                return Err(SchedulerError::DuplicateJob(job.name().to_owned()));
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` is cancelled, then lets running jobs finish (within the drain
    /// time) and returns. Database errors are logged and retried with backoff; only a refused
    /// configuration or a crashed loop ends it early.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        self.validate()?;
        let shared = Arc::new(Shared {
            store: Store::new(self.pool),
            clock: self.clock,
            owner: self.owner,
            settings: self.settings,
            shutdown: shutdown.clone(),
        });
        tracing::info!(
            owner = %shared.owner,
            jobs = self.jobs.len(),
            lease_secs = shared.settings.lease.as_secs(),
            "scheduler starting"
        );
        let mut loops = JoinSet::new();
        let mut names = HashMap::new();
        for job in self.jobs {
            let name = job.name().to_owned();
            tracing::info!(job = %name, schedule = %job.schedule(), missed = job.missed_policy().as_str(), "job scheduled");
            let task = loops.spawn(job_loop(shared.clone(), job));
            names.insert(task.id(), name);
        }
        let task = loops.spawn(retention_loop(shared.clone()));
        names.insert(task.id(), "(retention)".to_owned());
        let mut result = Ok(());
        while let Some(ended) = loops.join_next_with_id().await {
            let Err(source) = ended else {
                continue;
            };
            let job = names.get(&source.id()).cloned().unwrap_or_default();
            tracing::error!(job = %job, error = %source, "a scheduler loop crashed; stopping");
            if result.is_ok() {
                result = Err(SchedulerError::LoopEnded { job, source });
            }
            shutdown.cancel();
        }
        // With no jobs and no retention there was nothing to wait on: still run until told.
        shutdown.cancelled().await;
        tracing::info!(owner = %shared.owner, "scheduler stopped");
        result
    }
}

/// Most slots listed in a missed-slots log line.
const LISTED_MISSED: usize = 10;

/// At most this many retries and takeovers are claimed per tick, so one tick stays short.
const CLAIMS_PER_TICK: usize = 100;

/// Claims what is due for one job, sleeps until the next thing to do, repeats.
async fn job_loop(shared: Arc<Shared>, job: Arc<dyn DynJob>) {
    let name = job.name().to_owned();
    let mut runs = JoinSet::new();
    let mut cursor: Option<DateTime<Utc>> = None;
    let mut failures: u32 = 0;
    while !shared.shutdown.is_cancelled() {
        let now = shared.clock.now();
        match tick(&shared, &job, &mut cursor, now, &mut runs).await {
            Ok(wake_at) => {
                failures = 0;
                tokio::select! {
                    _ = shared.shutdown.cancelled() => {}
                    _ = shared.clock.sleep_until(wake_at) => {}
                    // A run ending may have scheduled a retry: look again.
                    Some(ended) = runs.join_next(), if !runs.is_empty() => log_run_end(&name, ended),
                }
            }
            Err(e) => {
                // Waiting for the database to come back is real time, not schedule time: a
                // test clock that stands still must not hold the recovery back.
                failures = failures.saturating_add(1);
                let delay =
                    Duration::from_millis(500u64 << failures.min(6)).min(shared.settings.poll);
                tracing::warn!(job = %name, error = %error_chain(&e), retry_in_ms = delay.as_millis(), "scheduler tick failed; retrying");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    // Runs see the shutdown themselves and finish, release or give up within the drain time.
    while let Some(ended) = runs.join_next().await {
        log_run_end(&name, ended);
    }
}

fn log_run_end(job: &str, ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!(job, error = %e, "a run panicked; its slot is taken over after the lease");
        }
    }
}

/// One pass: missed slots, due slots, retries and takeovers. Returns when to wake next.
async fn tick(
    shared: &Arc<Shared>,
    job: &Arc<dyn DynJob>,
    cursor: &mut Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    runs: &mut JoinSet<()>,
) -> Result<DateTime<Utc>, sqlx::Error> {
    let settings = &shared.settings;
    let store = &shared.store;
    let name = job.name();
    let schedule = job.schedule();
    let grace_start = clock::sub(now, settings.misfire_grace);

    let mut from = match *cursor {
        Some(c) => c,
        // First tick: carry on after the latest recorded slot, or, for a job never run, start
        // within the grace window (nothing counts as missed before the first start).
        None => store.latest_slot(name).await?.unwrap_or(grace_start),
    };
    let missed_any = schedule
        .latest_at_or_before(grace_start)
        .is_some_and(|latest| latest > from);
    if missed_any {
        // Another replica may have recorded some of these meanwhile: count from its latest.
        if let Some(latest) = store.latest_slot(name).await? {
            from = from.max(latest);
        }
        let missed = schedule.slots_in(from, grace_start, LISTED_MISSED);
        if missed.latest.is_some() {
            handle_missed(shared, job, &missed, now, runs).await?;
        }
    }
    let fresh = schedule.slots_in(from.max(grace_start), now, usize::MAX);
    for slot in fresh.listed {
        let claim = store
            .claim_new(
                name,
                slot,
                shared.owner.as_str(),
                now,
                clock::add(now, settings.lease),
                1,
            )
            .await?;
        match claim {
            Some(claim) => spawn_run(shared, job, claim, runs),
            None => tracing::debug!(job = name, %slot, "slot claimed by another replica"),
        }
    }
    *cursor = Some(now);

    let max_failures = i32::try_from(settings.retry.max_failures).unwrap_or(i32::MAX);
    for slot in store
        .fail_expired_exhausted(name, now, max_failures)
        .await?
    {
        tracing::error!(job = name, %slot, "a run stopped renewing its lease on its last attempt; slot marked failed");
        m::run_failed(name);
    }
    for _ in 0..CLAIMS_PER_TICK {
        let claim = store
            .claim_due(
                name,
                shared.owner.as_str(),
                now,
                clock::add(now, settings.lease),
            )
            .await?;
        match claim {
            Some(claim) => spawn_run(shared, job, claim, runs),
            None => break,
        }
    }

    let mut wake_at = clock::add(now, settings.poll);
    if let Some(next_slot) = schedule.next_after(now) {
        wake_at = wake_at.min(next_slot);
    }
    if let Some(next_due) = store.next_due(name, now).await? {
        wake_at = wake_at.min(next_due);
    }
    Ok(wake_at)
}

/// Applies the job's policy to slots that passed with no replica running. One row records the
/// latest of them (skipped, or claimed to run), with how many slots it stands for; whichever
/// replica writes that row logs the outage, so it is logged once.
async fn handle_missed(
    shared: &Arc<Shared>,
    job: &Arc<dyn DynJob>,
    missed: &SlotRange,
    now: DateTime<Utc>,
    runs: &mut JoinSet<()>,
) -> Result<(), sqlx::Error> {
    let Some(latest) = missed.latest else {
        return Ok(());
    };
    let name = job.name();
    let policy = job.missed_policy();
    let count = i32::try_from(missed.count).unwrap_or(i32::MAX);
    let listed = describe_slots(missed);
    let recorded = match policy {
        MissedPolicy::Skip => {
            shared
                .store
                .record_skipped(name, latest, shared.owner.as_str(), now, count)
                .await?
        }
        MissedPolicy::CatchUpOnce => {
            let claim = shared
                .store
                .claim_new(
                    name,
                    latest,
                    shared.owner.as_str(),
                    now,
                    clock::add(now, shared.settings.lease),
                    count,
                )
                .await?;
            match claim {
                Some(claim) => {
                    spawn_run(shared, job, claim, runs);
                    true
                }
                None => false,
            }
        }
    };
    if recorded {
        m::missed(name, policy.as_str(), missed.count);
        let action = match policy {
            MissedPolicy::Skip => "skipping them all",
            MissedPolicy::CatchUpOnce => "running the latest once now",
        };
        tracing::info!(
            job = name,
            policy = policy.as_str(),
            count = missed.count,
            count_capped = missed.count_capped,
            slots = %listed,
            latest = %latest,
            "slots missed while no replica was running; {action}"
        );
    } else {
        tracing::debug!(job = name, %latest, "missed slots already recorded by another replica");
    }
    Ok(())
}

/// `a, b, c, ... z` for a log line.
fn describe_slots(range: &SlotRange) -> String {
    let mut parts: Vec<String> = range.listed.iter().map(|s| s.to_rfc3339()).collect();
    if range.count > range.listed.len() as u64 {
        parts.push("...".to_owned());
        if let Some(latest) = range.latest {
            parts.push(latest.to_rfc3339());
        }
    }
    parts.join(", ")
}

fn spawn_run(shared: &Arc<Shared>, job: &Arc<dyn DynJob>, claim: Claim, runs: &mut JoinSet<()>) {
    runs.spawn(runner::run_claim(shared.clone(), job.clone(), claim));
}

/// Prunes old claim rows every `prune_every` until shutdown.
async fn retention_loop(shared: Arc<Shared>) {
    let Some(keep) = shared.settings.retention else {
        return;
    };
    while !shared.shutdown.is_cancelled() {
        let now = shared.clock.now();
        match shared.store.prune(clock::sub(now, keep)).await {
            Ok(0) => {}
            Ok(rows) => {
                m::pruned(rows);
                tracing::info!(
                    rows,
                    keep_secs = keep.as_secs(),
                    "pruned old scheduler claim rows"
                );
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "pruning scheduler claim rows failed; next round retries")
            }
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => {}
            _ = shared.clock.sleep_until(clock::add(now, shared.settings.prune_every)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobError, RunContext};
    use crate::schedule::Schedule;
    use crate::ManualClock;
    use proptest::prelude::*;

    struct Named(&'static str, Schedule);

    impl Job for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn schedule(&self) -> &Schedule {
            &self.1
        }
        async fn run(&self, _ctx: &mut RunContext) -> Result<(), JobError> {
            Ok(())
        }
    }

    fn scheduler(owner: &str) -> Result<Scheduler, Box<dyn std::error::Error>> {
        // Never connects: a refused configuration returns before any query.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://postgres@127.0.0.1:1/unused")?;
        Ok(Scheduler::new(
            pool,
            ManualClock::new(DateTime::<Utc>::UNIX_EPOCH),
            owner,
        ))
    }

    #[tokio::test]
    async fn a_refused_configuration_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
        let hourly = Schedule::every(Duration::from_secs(3600))?;
        let token = CancellationToken::new;
        let twice = scheduler("a")?
            .job(Named("sweep", hourly.clone()))
            .job(Named("sweep", hourly.clone()))
            .run(token())
            .await;
        assert!(matches!(twice, Err(SchedulerError::DuplicateJob(name)) if name == "sweep"));
        let unnamed = scheduler("a")?
            .job(Named("", hourly.clone()))
            .run(token())
            .await;
        assert!(matches!(unnamed, Err(SchedulerError::EmptyJobName)));
        let anonymous = scheduler("")?.run(token()).await;
        assert!(matches!(anonymous, Err(SchedulerError::EmptyOwner)));
        let short = scheduler("a")?
            .lease(Duration::from_millis(10))
            .run(token())
            .await;
        assert!(matches!(short, Err(SchedulerError::LeaseTooShort(_))));
        let no_attempts = scheduler("a")?
            .retry(RetryPolicy {
                max_failures: 0,
                ..RetryPolicy::default()
            })
            .run(token())
            .await;
        assert!(matches!(no_attempts, Err(SchedulerError::NoAttempts)));
        Ok(())
    }

    proptest! {
        /// Retry delays grow, stay within [nominal/2, nominal] and never pass the cap.
        #[test]
        fn retry_delays_are_jittered_exponential_and_capped(
            base_ms in 1u64..100_000,
            cap_ms in 1u64..10_000_000,
            failures in 1u32..100,
        ) {
            let policy = RetryPolicy {
                max_failures: 3,
                base_delay: Duration::from_millis(base_ms),
                max_delay: Duration::from_millis(cap_ms),
            };
            let nominal = policy
                .base_delay
                .saturating_mul(1u32 << (failures - 1).min(20))
                .min(policy.max_delay);
            let delay = policy.delay_after(failures);
            prop_assert!(delay <= nominal);
            prop_assert!(delay >= nominal / 2 - Duration::from_nanos(1));
        }
    }
}
