//! One attempt at one claimed slot: run the job while keeping its lease, then record the outcome
//! (done, retry later, failed, or released at shutdown), every write fenced by the attempt.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::clock;
use crate::job::{error_chain, DynJob, JobError, RunContext};
use crate::metrics as m;
use crate::scheduler::Shared;
use crate::store::{AfterFailure, Claim, ClaimKind, Fence};

/// How a run ended, before it is recorded.
enum Ending {
    Returned(Result<(), JobError>),
    LeaseLost,
    /// Shutdown came and the job did not finish within the drain time.
    Interrupted,
}

/// Writes of an outcome are tried this often (the lease is still kept meanwhile), so a short
/// database hiccup at the end of a run does not make another replica redo it.
const RECORD_TRIES: u32 = 5;

pub(crate) async fn run_claim(shared: Arc<Shared>, job: Arc<dyn DynJob>, claim: Claim) {
    let span = tracing::info_span!(
        "scheduled_run",
        job = %claim.fence.job,
        slot = %claim.fence.slot.to_rfc3339(),
        attempt = claim.fence.attempt,
        kind = claim.kind.as_str(),
    );
    run_in_span(shared, job, claim).instrument(span).await
}

async fn run_in_span(shared: Arc<Shared>, job: Arc<dyn DynJob>, claim: Claim) {
    let started = shared.clock.now();
    let name = claim.fence.job.clone();
    m::run_started(&name, claim.kind.as_str());
    let lag = (started - claim.fence.slot).to_std().unwrap_or_default();
    if claim.kind == ClaimKind::New {
        m::start_lag(&name, lag.as_secs_f64());
    }
    tracing::info!(lag_secs = lag.as_secs(), "run started");

    let lost = CancellationToken::new();
    // Kept until the outcome is recorded; aborted with this task if the task is aborted.
    let _keeper = AbortOnDropHandle::new(tokio::spawn(
        keep_lease(
            shared.clone(),
            claim.fence.clone(),
            claim.claimed_at,
            lost.clone(),
        )
        .in_current_span(),
    ));
    let fence = claim.fence.clone();
    let mut ctx = RunContext {
        fence: claim.fence,
        store: shared.store.clone(),
        checkpoint: claim.checkpoint,
        shutdown: shared.shutdown.child_token(),
    };
    let ending = {
        let mut run = job.run_boxed(&mut ctx);
        tokio::select! {
            result = &mut run => Ending::Returned(result),
            _ = lost.cancelled() => Ending::LeaseLost,
            _ = shared.shutdown.cancelled() => {
                tokio::select! {
                    result = &mut run => Ending::Returned(result),
                    _ = lost.cancelled() => Ending::LeaseLost,
                    _ = tokio::time::sleep(shared.settings.drain) => Ending::Interrupted,
                }
            }
        }
    };
    record(&shared, &fence, claim.failures, ending).await;
}

/// Renews the lease every third of it until the run ends. Cancels `lost` when the attempt no
/// longer holds the slot: the row's attempt moved on, or renewals failed until the lease ran
/// out (from then on another replica may have taken over, so the job must stop).
async fn keep_lease(
    shared: Arc<Shared>,
    fence: Fence,
    claimed_at: DateTime<Utc>,
    lost: CancellationToken,
) {
    let lease = shared.settings.lease;
    let mut held_until = clock::add(claimed_at, lease);
    let mut next_renewal = clock::add(claimed_at, lease / 3);
    loop {
        shared.clock.sleep_until(next_renewal).await;
        let now = shared.clock.now();
        let until = clock::add(now, lease);
        match shared.store.renew(&fence, until).await {
            Ok(true) => {
                held_until = until;
                next_renewal = clock::add(now, lease / 3);
            }
            Ok(false) => {
                tracing::warn!("lease lost: another replica took the slot over");
                m::lease_lost(&fence.job);
                lost.cancel();
                return;
            }
            Err(e) => {
                let now = shared.clock.now();
                if now >= held_until {
                    tracing::warn!(error = %error_chain(&e), "could not renew the lease before it ran out; stopping the run");
                    m::lease_lost(&fence.job);
                    lost.cancel();
                    return;
                }
                tracing::warn!(error = %error_chain(&e), "lease renewal failed; trying again");
                next_renewal = clock::add(now, lease / 10).min(held_until);
            }
        }
    }
}

async fn record(shared: &Shared, fence: &Fence, failures_before: i32, ending: Ending) {
    let name = fence.job.as_str();
    match ending {
        Ending::Returned(Ok(())) => {
            let now = shared.clock.now();
            match with_retries(|| shared.store.finish(fence, now)).await {
                Some(true) => {
                    m::run_finished(name);
                    tracing::info!("run finished");
                }
                Some(false) => {
                    m::lease_lost(name);
                    tracing::warn!("run finished after another replica took the slot over; its result stands");
                }
                None => tracing::error!("could not record the finished run; the slot is taken over after the lease and runs again"),
            }
        }
        Ending::Returned(Err(JobError::LeaseLost)) => {
            m::lease_lost(name);
            tracing::warn!("run stopped: another replica took the slot over");
        }
        Ending::Returned(Err(e)) => {
            let error = error_chain(&e);
            m::attempt_failed(name);
            let now = shared.clock.now();
            let retry = shared.settings.retry;
            let failures = u32::try_from(failures_before)
                .unwrap_or(0)
                .saturating_add(1);
            let retry_at = clock::add(now, retry.delay_after(failures));
            let max = i32::try_from(retry.max_failures).unwrap_or(i32::MAX);
            match with_retries(|| {
                shared
                    .store
                    .record_failure(fence, now, &error, max, retry_at)
            })
            .await
            {
                Some(AfterFailure::RetryAt(at)) => {
                    tracing::warn!(%error, failures, retry_at = %at.to_rfc3339(), "run failed; retrying within the slot")
                }
                Some(AfterFailure::Failed) => {
                    m::run_failed(name);
                    tracing::error!(%error, failures, "run failed on its last attempt; slot marked failed");
                }
                Some(AfterFailure::Fenced) => {
                    tracing::warn!(%error, "run failed after another replica took the slot over")
                }
                None => {
                    tracing::error!(%error, "run failed and the failure could not be recorded; the slot is taken over after the lease")
                }
            }
        }
        Ending::LeaseLost => tracing::warn!("run stopped: its lease was lost"),
        Ending::Interrupted => {
            let now = shared.clock.now();
            match with_retries(|| shared.store.release(fence, now)).await {
                Some(true) => {
                    tracing::info!("shutting down: run stopped, slot released for another replica")
                }
                Some(false) => {
                    tracing::warn!("shutting down: run stopped; the slot was already taken over")
                }
                None => tracing::warn!(
                    "shutting down: run stopped; the slot is taken over after the lease"
                ),
            }
        }
    }
}

/// Tries a write a few times with a short real-time pause; `None` if every try failed.
async fn with_retries<T, F, Fut>(mut write: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    for attempt in 1..=RECORD_TRIES {
        match write().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(attempt, error = %error_chain(&e), "recording the run's outcome failed");
                if attempt < RECORD_TRIES {
                    tokio::time::sleep(Duration::from_millis(200u64 << attempt)).await;
                }
            }
        }
    }
    None
}
