//! Every SQL statement of the scheduler: claim rows in `orderbus_scheduler_runs`.
//!
//! Times are bound from the scheduler's [`Clock`](crate::Clock), never taken from the database's
//! `now()`, so that a test clock drives leases and retries as well as slots.
//!
//! Writes made on behalf of a run carry its [`Fence`] (`job`, `slot`, `attempt`): a takeover or
//! a retry increments `attempt`, after which the older attempt's writes match no row.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

/// The status column's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Pending,
    Done,
    Failed,
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Pending => "pending",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// The identity of one attempt at one slot; every write of that attempt is conditional on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fence {
    pub job: String,
    pub slot: DateTime<Utc>,
    pub attempt: i32,
}

/// A slot this replica now holds the lease for.
#[derive(Debug)]
pub(crate) struct Claim {
    pub fence: Fence,
    pub checkpoint: Option<serde_json::Value>,
    /// Failed attempts before this one.
    pub failures: i32,
    /// The clock reading the lease was computed from (`lease_until` = this + the lease).
    pub claimed_at: DateTime<Utc>,
    /// Why it was claimed: a new slot, a retry after a failure, or a takeover of a dead run.
    pub kind: ClaimKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClaimKind {
    New,
    Retry,
    Takeover,
}

impl ClaimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimKind::New => "new",
            ClaimKind::Retry => "retry",
            ClaimKind::Takeover => "takeover",
        }
    }
}

/// What recording a failed attempt decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    RetryAt(DateTime<Utc>),
    Failed,
    /// The attempt had already lost the slot; nothing was written.
    Fenced,
}

#[derive(Clone, Debug)]
pub(crate) struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The latest slot recorded for `job`, in any status.
    pub async fn latest_slot(&self, job: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        sqlx::query_scalar("SELECT max(slot) FROM orderbus_scheduler_runs WHERE job = $1")
            .bind(job)
            .fetch_one(&self.pool)
            .await
    }

    /// Claims a slot nobody has claimed yet. `None`: another replica got it first.
    pub async fn claim_new(
        &self,
        fence_job: &str,
        slot: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        missed: i32,
    ) -> Result<Option<Claim>, sqlx::Error> {
        let won = sqlx::query(
            "INSERT INTO orderbus_scheduler_runs \
                 (job, slot, status, attempt, owner, lease_until, missed, claimed_at, started_at) \
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $7) \
             ON CONFLICT (job, slot) DO NOTHING \
             RETURNING attempt",
        )
        .bind(fence_job)
        .bind(slot)
        .bind(RunStatus::Running.as_str())
        .bind(owner)
        .bind(lease_until)
        .bind(missed)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(won.map(|_| Claim {
            fence: Fence {
                job: fence_job.to_owned(),
                slot,
                attempt: 1,
            },
            checkpoint: None,
            failures: 0,
            claimed_at: now,
            kind: ClaimKind::New,
        }))
    }

    /// Records `slot` as skipped, standing for `missed` slots. `false`: already recorded.
    pub async fn record_skipped(
        &self,
        job: &str,
        slot: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
        missed: i32,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO orderbus_scheduler_runs \
                 (job, slot, status, attempt, owner, missed, claimed_at, finished_at) \
             VALUES ($1, $2, $3, 0, $4, $5, $6, $6) \
             ON CONFLICT (job, slot) DO NOTHING",
        )
        .bind(job)
        .bind(slot)
        .bind(RunStatus::Skipped.as_str())
        .bind(owner)
        .bind(missed)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks failed the running rows of `job` whose lease expired on their last allowed
    /// attempt; returns their slots.
    pub async fn fail_expired_exhausted(
        &self,
        job: &str,
        now: DateTime<Utc>,
        max_failures: i32,
    ) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE orderbus_scheduler_runs \
             SET status = $3, failures = failures + 1, lease_until = NULL, finished_at = $2, \
                 last_error = 'attempt ' || attempt || ' stopped renewing its lease (its replica \
                               died or lost the database); no attempts left' \
             WHERE job = $1 AND status = $4 AND lease_until <= $2 AND failures + 1 >= $5 \
             RETURNING slot",
        )
        .bind(job)
        .bind(now)
        .bind(RunStatus::Failed.as_str())
        .bind(RunStatus::Running.as_str())
        .bind(max_failures)
        .fetch_all(&self.pool)
        .await
    }

    /// Claims the oldest row of `job` that is due again: a retry whose delay has passed, or a
    /// run whose lease expired (its replica died). The takeover counts as a failure.
    pub async fn claim_due(
        &self,
        job: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Claim>, sqlx::Error> {
        let row = sqlx::query(
            "WITH due AS ( \
                 SELECT job, slot, status AS was, attempt AS previous FROM orderbus_scheduler_runs \
                 WHERE job = $1 \
                   AND ((status = $5 AND not_before <= $3) OR (status = $6 AND lease_until <= $3)) \
                 ORDER BY slot LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) \
             UPDATE orderbus_scheduler_runs r \
             SET status = $6, attempt = r.attempt + 1, owner = $2, lease_until = $4, \
                 not_before = NULL, started_at = $3, \
                 failures = r.failures + CASE WHEN due.was = $6 THEN 1 ELSE 0 END, \
                 last_error = CASE WHEN due.was = $6 \
                     THEN 'attempt ' || due.previous || ' stopped renewing its lease' \
                     ELSE r.last_error END \
             FROM due WHERE r.job = due.job AND r.slot = due.slot \
             RETURNING r.slot, r.attempt, r.checkpoint, r.failures, due.was",
        )
        .bind(job)
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .bind(RunStatus::Pending.as_str())
        .bind(RunStatus::Running.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let was: String = row.try_get("was")?;
        Ok(Some(Claim {
            fence: Fence {
                job: job.to_owned(),
                slot: row.try_get("slot")?,
                attempt: row.try_get("attempt")?,
            },
            checkpoint: row.try_get("checkpoint")?,
            failures: row.try_get("failures")?,
            claimed_at: now,
            kind: if was == RunStatus::Running.as_str() {
                ClaimKind::Takeover
            } else {
                ClaimKind::Retry
            },
        }))
    }

    /// The earliest future instant at which a row of `job` may become due (a retry delay or a
    /// lease ending), so the loop can wake for it.
    pub async fn next_due(
        &self,
        job: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT min(CASE WHEN status = $3 THEN not_before ELSE lease_until END) \
             FROM orderbus_scheduler_runs \
             WHERE job = $1 AND status IN ($3, $4) \
               AND CASE WHEN status = $3 THEN not_before ELSE lease_until END > $2",
        )
        .bind(job)
        .bind(now)
        .bind(RunStatus::Pending.as_str())
        .bind(RunStatus::Running.as_str())
        .fetch_one(&self.pool)
        .await
    }

    /// Extends the lease. `false`: the attempt lost the slot.
    pub async fn renew(
        &self,
        fence: &Fence,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE orderbus_scheduler_runs SET lease_until = $4 \
             WHERE job = $1 AND slot = $2 AND attempt = $3 AND status = $5",
        )
        .bind(&fence.job)
        .bind(fence.slot)
        .bind(fence.attempt)
        .bind(lease_until)
        .bind(RunStatus::Running.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes the checkpoint on `conn` (possibly inside the job's transaction). `false`: the
    /// attempt lost the slot.
    pub async fn save_checkpoint(
        conn: &mut PgConnection,
        fence: &Fence,
        value: &serde_json::Value,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE orderbus_scheduler_runs SET checkpoint = $4 \
             WHERE job = $1 AND slot = $2 AND attempt = $3 AND status = $5",
        )
        .bind(&fence.job)
        .bind(fence.slot)
        .bind(fence.attempt)
        .bind(value)
        .bind(RunStatus::Running.as_str())
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the slot done. `false`: the attempt lost the slot.
    pub async fn finish(&self, fence: &Fence, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE orderbus_scheduler_runs \
             SET status = $4, lease_until = NULL, finished_at = $5, last_error = NULL \
             WHERE job = $1 AND slot = $2 AND attempt = $3 AND status = $6",
        )
        .bind(&fence.job)
        .bind(fence.slot)
        .bind(fence.attempt)
        .bind(RunStatus::Done.as_str())
        .bind(now)
        .bind(RunStatus::Running.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt: pending until `retry_at`, or failed once it is the
    /// `max_failures`-th failure.
    pub async fn record_failure(
        &self,
        fence: &Fence,
        now: DateTime<Utc>,
        error: &str,
        max_failures: i32,
        retry_at: DateTime<Utc>,
    ) -> Result<AfterFailure, sqlx::Error> {
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE orderbus_scheduler_runs \
             SET failures = failures + 1, last_error = $4, lease_until = NULL, \
                 status = CASE WHEN failures + 1 >= $5 THEN $8 ELSE $9 END, \
                 not_before = CASE WHEN failures + 1 >= $5 THEN NULL ELSE $6 END, \
                 finished_at = CASE WHEN failures + 1 >= $5 THEN $7 ELSE NULL END \
             WHERE job = $1 AND slot = $2 AND attempt = $3 AND status = $10 \
             RETURNING status",
        )
        .bind(&fence.job)
        .bind(fence.slot)
        .bind(fence.attempt)
        .bind(error)
        .bind(max_failures)
        .bind(retry_at)
        .bind(now)
        .bind(RunStatus::Failed.as_str())
        .bind(RunStatus::Pending.as_str())
        .bind(RunStatus::Running.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match status.as_deref() {
            None => AfterFailure::Fenced,
            Some(s) if s == RunStatus::Failed.as_str() => AfterFailure::Failed,
            Some(_) => AfterFailure::RetryAt(retry_at),
        })
    }

    /// Gives the slot back without counting a failure (this replica is shutting down): any
    /// replica may claim it again right away.
    pub async fn release(&self, fence: &Fence, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE orderbus_scheduler_runs SET status = $4, not_before = $5, lease_until = NULL \
             WHERE job = $1 AND slot = $2 AND attempt = $3 AND status = $6",
        )
        .bind(&fence.job)
        .bind(fence.slot)
        .bind(fence.attempt)
        .bind(RunStatus::Pending.as_str())
        .bind(now)
        .bind(RunStatus::Running.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes finished rows with slots before `before`, except each job's latest row: that one
    /// tells a restarted scheduler which slots it missed.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM orderbus_scheduler_runs r \
             WHERE r.slot < $1 AND r.status IN ($2, $3, $4) \
               AND r.slot < (SELECT max(l.slot) FROM orderbus_scheduler_runs l WHERE l.job = r.job)",
        )
        .bind(before)
        .bind(RunStatus::Done.as_str())
        .bind(RunStatus::Failed.as_str())
        .bind(RunStatus::Skipped.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// One claim row as stored, for inspection (ops tooling, tests).
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub job: String,
    pub slot: DateTime<Utc>,
    pub status: String,
    pub attempt: i32,
    pub failures: i32,
    pub owner: String,
    pub lease_until: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
    pub checkpoint: Option<serde_json::Value>,
    pub missed: i32,
    pub last_error: Option<String>,
    pub claimed_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The claim rows of `job`, oldest slot first.
pub async fn runs_of(pool: &PgPool, job: &str) -> Result<Vec<RunRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT job, slot, status, attempt, failures, owner, lease_until, not_before, checkpoint, \
                missed, last_error, claimed_at, started_at, finished_at \
         FROM orderbus_scheduler_runs WHERE job = $1 ORDER BY slot",
    )
    .bind(job)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RunRecord {
                job: row.try_get("job")?,
                slot: row.try_get("slot")?,
                status: row.try_get("status")?,
                attempt: row.try_get("attempt")?,
                failures: row.try_get("failures")?,
                owner: row.try_get("owner")?,
                lease_until: row.try_get("lease_until")?,
                not_before: row.try_get("not_before")?,
                checkpoint: row.try_get("checkpoint")?,
                missed: row.try_get("missed")?,
                last_error: row.try_get("last_error")?,
                claimed_at: row.try_get("claimed_at")?,
                started_at: row.try_get("started_at")?,
                finished_at: row.try_get("finished_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use orderbus_testkit::TestDb;

    async fn store() -> Result<(TestDb, Store), Box<dyn std::error::Error>> {
        let db = TestDb::create().await?;
        crate::MIGRATOR.run(db.pool()).await?;
        let store = Store::new(db.pool().clone());
        Ok((db, store))
    }

    /// A replica that wakes up after its slot was taken over cannot renew, checkpoint, finish,
    /// fail or release it; the new owner's writes stand, and a finished slot is never claimed
    /// again.
    #[tokio::test]
    async fn a_stale_attempt_cannot_write_over_the_new_owner(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_db, store) = store().await?;
        let t0 = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let lease = TimeDelta::seconds(30);
        let slot = t0;
        let stale = store
            .claim_new("job", slot, "a", t0, t0 + lease, 1)
            .await?
            .ok_or("first claim lost")?;
        assert_eq!(stale.fence.attempt, 1);
        assert!(store
            .claim_new("job", slot, "b", t0, t0 + lease, 1)
            .await?
            .is_none());
        let within = t0 + TimeDelta::seconds(29);
        assert!(store
            .claim_due("job", "b", within, within + lease)
            .await?
            .is_none());

        let later = t0 + TimeDelta::seconds(31);
        let fresh = store
            .claim_due("job", "b", later, later + lease)
            .await?
            .ok_or("takeover after the lease")?;
        assert_eq!(fresh.kind, ClaimKind::Takeover);
        assert_eq!((fresh.fence.attempt, fresh.failures), (2, 1));

        let mut conn = store.pool().acquire().await?;
        let theirs = serde_json::json!({ "by": "b" });
        assert!(Store::save_checkpoint(&mut conn, &fresh.fence, &theirs).await?);

        let mine = serde_json::json!({ "by": "a" });
        assert!(!store.renew(&stale.fence, later + lease).await?);
        assert!(!Store::save_checkpoint(&mut conn, &stale.fence, &mine).await?);
        assert!(!store.finish(&stale.fence, later).await?);
        assert!(!store.release(&stale.fence, later).await?);
        assert_eq!(
            store
                .record_failure(&stale.fence, later, "x", 3, later)
                .await?,
            AfterFailure::Fenced
        );

        assert!(store.finish(&fresh.fence, later).await?);
        let rows = runs_of(store.pool(), "job").await?;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "done");
        assert_eq!((rows[0].attempt, rows[0].owner.as_str()), (2, "b"));
        assert_eq!(rows[0].checkpoint, Some(theirs));

        let much_later = later + TimeDelta::days(1);
        assert!(store
            .claim_new("job", slot, "c", much_later, much_later + lease, 1)
            .await?
            .is_none());
        assert!(store
            .claim_due("job", "c", much_later, much_later + lease)
            .await?
            .is_none());
        Ok(())
    }

    #[tokio::test]
    async fn pruning_keeps_unfinished_rows_and_each_jobs_latest(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_db, store) = store().await?;
        let t0 = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let hour = TimeDelta::hours(1);
        for i in 0..3 {
            let slot = t0 + hour * i;
            let claim = store
                .claim_new("finished", slot, "a", slot, slot + hour, 1)
                .await?
                .ok_or("claim")?;
            assert!(store.finish(&claim.fence, slot).await?);
        }
        // An old run still going, and a job whose only row is old.
        store
            .claim_new("long", t0, "a", t0, t0 + hour * 100, 1)
            .await?;
        let newer = t0 + hour * 20;
        store.record_skipped("long", newer, "a", newer, 1).await?;
        store.record_skipped("rare", t0, "a", t0, 1).await?;

        let deleted = store.prune(t0 + hour * 10).await?;
        assert_eq!(deleted, 2);
        let finished: Vec<_> = runs_of(store.pool(), "finished")
            .await?
            .iter()
            .map(|r| r.slot)
            .collect();
        assert_eq!(finished, vec![t0 + hour * 2]);
        assert_eq!(runs_of(store.pool(), "long").await?.len(), 2);
        assert_eq!(runs_of(store.pool(), "rare").await?.len(), 1);
        Ok(())
    }
}
