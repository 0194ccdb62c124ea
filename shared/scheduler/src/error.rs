//! Why a scheduler refuses to start or stops.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the owner id is empty (give each replica a distinct, non-empty id)")]
    EmptyOwner,
    #[error("a job has an empty name")]
    EmptyJobName,
    #[error("job {0:?} is added twice")]
    DuplicateJob(String),
    #[error("lease {0:?} is shorter than one second")]
    LeaseTooShort(Duration),
    #[error("retry policy allows no attempt (max_failures must be at least 1)")]
    NoAttempts,
    #[error("the loop of job {job:?} stopped unexpectedly")]
    LoopEnded {
        job: String,
        #[source]
        source: tokio::task::JoinError,
    },
}
