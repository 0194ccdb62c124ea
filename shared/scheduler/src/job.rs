//! What a scheduled job implements, and what one run of it sees.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgConnection;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::schedule::Schedule;
use crate::store::{Fence, Store};

/// What happens to the slots that passed while no replica was running (or none could reach the
/// database). Either way the count and the slots are logged at INFO, and one row records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissedPolicy {
    /// Run none of them; the next slot runs as usual.
    Skip,
    /// Run the latest of them once, now; the earlier ones are skipped.
    CatchUpOnce,
}

impl MissedPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MissedPolicy::Skip => "skip",
            MissedPolicy::CatchUpOnce => "catch_up_once",
        }
    }
}

/// A boxed error that a job keeps as the source of its failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job's own failure, with what caused it.
    #[error("{message}")]
    Failed {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("checkpoint is not valid JSON for this job")]
    Checkpoint(#[source] serde_json::Error),
    /// Another replica took the slot over (this run's lease had expired): stop without effects.
    #[error("this run no longer holds the slot (another replica took it over)")]
    LeaseLost,
}

impl JobError {
    /// A failure described by `message` alone.
    pub fn msg(message: impl Into<String>) -> JobError {
        JobError::Failed {
            message: message.into(),
            source: None,
        }
    }

    /// A failure described by `message`, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> JobError {
        JobError::Failed {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// A job the scheduler fires once per slot across all replicas.
///
/// `run` may be called again for the same slot: after a failure (a retry) or after the replica
/// running it died (a takeover). It resumes from [`RunContext::checkpoint`].
pub trait Job: Send + Sync + 'static {
    /// Unique among the jobs of all services sharing the database; it keys the claim rows.
    fn name(&self) -> &str;
    fn schedule(&self) -> &Schedule;
    /// What to do with slots missed while no replica ran; [`MissedPolicy::Skip`] unless
    /// overridden.
    fn missed_policy(&self) -> MissedPolicy {
        MissedPolicy::Skip
    }
    fn run(&self, ctx: &mut RunContext) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// One run of one slot: its time, its attempt number, its checkpoint.
pub struct RunContext {
    pub(crate) fence: Fence,
    pub(crate) store: Store,
    pub(crate) checkpoint: Option<serde_json::Value>,
    pub(crate) shutdown: CancellationToken,
}

impl RunContext {
    pub fn job(&self) -> &str {
        &self.fence.job
    }

    /// The scheduled instant this run is for (not the time it started).
    pub fn slot(&self) -> DateTime<Utc> {
        self.fence.slot
    }

    /// 1 for the first run of the slot, then +1 for every retry or takeover.
    pub fn attempt(&self) -> u32 {
        u32::try_from(self.fence.attempt).unwrap_or(0)
    }

    /// The checkpoint the latest earlier attempt saved, if any.
    pub fn checkpoint(&self) -> Option<&serde_json::Value> {
        self.checkpoint.as_ref()
    }

    /// The checkpoint decoded as `T`.
    pub fn checkpoint_as<T: DeserializeOwned>(&self) -> Result<Option<T>, JobError> {
        self.checkpoint
            .as_ref()
            .map(|v| serde_json::from_value(v.clone()))
            .transpose()
            .map_err(JobError::Checkpoint)
    }

    /// Saves a checkpoint in its own statement. Fails with [`JobError::LeaseLost`] when another
    /// replica has taken the slot over, so a stale run cannot overwrite the new owner's.
    pub async fn save_checkpoint<T: Serialize>(&mut self, value: &T) -> Result<(), JobError> {
        let value = serde_json::to_value(value).map_err(JobError::Checkpoint)?;
        let mut conn = self.store.pool().acquire().await?;
        self.save_on(&mut conn, value).await
    }

    /// Saves a checkpoint on `conn`, typically inside the transaction that applies the job's
    /// effects, so effects and progress commit together: a takeover resumes exactly after the
    /// last committed step. Fails with [`JobError::LeaseLost`] when the slot was taken over;
    /// roll the transaction back then.
    pub async fn save_checkpoint_with<T: Serialize>(
        &mut self,
        conn: &mut PgConnection,
        value: &T,
    ) -> Result<(), JobError> {
        let value = serde_json::to_value(value).map_err(JobError::Checkpoint)?;
        self.save_on(conn, value).await
    }

    async fn save_on(
        &mut self,
        conn: &mut PgConnection,
        value: serde_json::Value,
    ) -> Result<(), JobError> {
        if Store::save_checkpoint(conn, &self.fence, &value).await? {
            self.checkpoint = Some(value);
            Ok(())
        } else {
            Err(JobError::LeaseLost)
        }
    }

    /// Completes when the scheduler shuts down: save a checkpoint and return soon. (A run whose
    /// lease is lost is stopped outright.)
    pub fn shutting_down(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// The future of one run, boxed so jobs of different types live in one list.
pub(crate) type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;

/// [`Job`] without its generic future, for storing jobs as trait objects.
pub(crate) trait DynJob: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn schedule(&self) -> &Schedule;
    fn missed_policy(&self) -> MissedPolicy;
    fn run_boxed<'a>(&'a self, ctx: &'a mut RunContext) -> RunFuture<'a>;
}

impl<J: Job> DynJob for J {
    fn name(&self) -> &str {
        Job::name(self)
    }
    fn schedule(&self) -> &Schedule {
        Job::schedule(self)
    }
    fn missed_policy(&self) -> MissedPolicy {
        Job::missed_policy(self)
    }
    fn run_boxed<'a>(&'a self, ctx: &'a mut RunContext) -> RunFuture<'a> {
        Box::pin(Job::run(self, ctx))
    }
}

/// `error: cause: cause ...`, for logs and the `last_error` column.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
