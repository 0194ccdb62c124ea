//! orderbus-scheduler: jobs that fire once per slot across every replica of a service.
//!
//! - [`Schedule`]: a cron expression in an IANA time zone, or a fixed interval aligned to the
//!   Unix epoch. A slot is the scheduled instant (UTC).
//! - [`Job`] + [`RunContext`]: what runs, with its slot, attempt number and checkpoint.
//! - [`Scheduler`]: claims each slot with one row in `orderbus_scheduler_runs`
//!   (`INSERT ... ON CONFLICT DO NOTHING RETURNING`), keeps a lease while the job runs, takes
//!   over runs whose replica died, retries failures with backoff, applies the job's
//!   [`MissedPolicy`] after an outage, and prunes old rows.
//! - [`Clock`]: [`SystemClock`] in services, [`ManualClock`] in tests.
//! - [`MIGRATOR`]: the scheduler's table (versions 910000000000..=910000000999).
//!
//! See README.md for the guarantees and the table layout.

pub mod clock;
pub mod error;
pub mod job;
mod metrics;
mod runner;
pub mod schedule;
pub mod scheduler;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::SchedulerError;
pub use job::{BoxError, Job, JobError, MissedPolicy, RunContext};
pub use schedule::{Schedule, ScheduleError, SlotRange};
pub use scheduler::{OwnerId, RetryPolicy, Scheduler};
pub use store::{runs_of, RunRecord, RunStatus};

/// The scheduler's migrations (the claim-row table). Services merge it with their own; its
/// versions are 910000000000..=910000000999.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
