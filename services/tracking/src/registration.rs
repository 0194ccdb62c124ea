//! Seed 000 "[Scheduler] delivery tracking": every day at 12:00 (Asia/Seoul by default) one
//! replica registers every shipment still shipping with SweetTracker (`add_invoice`), each with
//! a fresh per-shipment callback token. Registering again every day is also the polling
//! fallback when callbacks go quiet (e_code 03 = already registered counts as success).

use std::sync::Arc;

use futures::StreamExt;
use orderbus_ingress::CallbackTokens;
use orderbus_partner::CallLog;
use orderbus_scheduler::{Job, JobError, MissedPolicy, RunContext, Schedule};
use orderbus_sweettracker::{AddInvoice, CallbackType, Carrier, Client, ECode, Error};
use sqlx::PgPool;

use crate::callbacks::{CALLBACK_PATH, SWEETTRACKER_PARTNER, TOKEN_PARAM};
use crate::metrics as m;
use crate::store::{self, Target};
use crate::Shared;

/// The scheduler job's name (its claim rows in `orderbus_scheduler_runs`).
pub const JOB_NAME: &str = "tracking-sweettracker-registration";

/// Shipments read per page (the checkpoint is saved after each page).
const PAGE: i64 = 500;

pub struct RegistrationJob {
    pub schedule: Schedule,
    pub pool: PgPool,
    pub shared: Arc<Shared>,
    pub client: Client,
    pub calls: CallLog,
}

/// What one registration ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Success,
    AlreadyRegistered,
    Failed,
}

impl Job for RegistrationJob {
    fn name(&self) -> &str {
        JOB_NAME
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// A day missed while no replica ran is caught up once: shipments must not go a day
    /// without registration just because of a deploy at noon.
    fn missed_policy(&self) -> MissedPolicy {
        MissedPolicy::CatchUpOnce
    }

    async fn run(&self, ctx: &mut RunContext) -> Result<(), JobError> {
        // The checkpoint is the last shipment id handled: a taken-over run goes on from there.
        let mut after: i64 = ctx.checkpoint_as()?.unwrap_or(0);
        let (mut ok, mut failed) = (0usize, 0usize);
        loop {
            let page =
                store::registration_targets(&self.pool, &self.shared.channel, after, PAGE).await?;
            let Some(last) = page.last().map(|t| t.id) else {
                break;
            };
            let results: Vec<Registered> = futures::stream::iter(page)
                .map(|t| self.register(t))
                .buffer_unordered(self.shared.registration_concurrency.max(1))
                .collect()
                .await;
            for r in results {
                match r {
                    Registered::Failed => failed += 1,
                    _ => ok += 1,
                }
            }
            after = last;
            ctx.save_checkpoint(&after).await?;
            if ctx.is_shutting_down() {
                return Err(JobError::msg("shutting down"));
            }
        }
        let unregistrable = store::unregistrable_count(&self.pool).await?;
        let stale = self.shared.refresh_stale(&self.pool).await?;
        tracing::info!(
            slot = %ctx.slot(),
            registered = ok,
            failed,
            unregistrable,
            stale,
            "daily SweetTracker registration done (failures are retried at the next run)"
        );
        Ok(())
    }
}

impl RegistrationJob {
    /// Registers one shipment; failures are logged (seed line), recorded on the shipment and
    /// retried at the next run.
    async fn register(&self, t: Target) -> Registered {
        let fid = format!("{}:{}", t.order_status, t.order_code);
        let num = t.waybill_normalised.clone();
        let callback_url = match self.callback_url(t.order_code).await {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(
                    "[Scheduler] DeliveryTracking Request Fail: num={num},fid={fid},e_code=,e_message=no callback token: {e}"
                );
                m::registration("token_failed", "");
                return Registered::Failed;
            }
        };
        let req = AddInvoice {
            num: num.clone(),
            carrier: Carrier::from_code(&t.carrier_code),
            fid: fid.clone(),
            callback_url,
            callback_type: CallbackType::Json,
        };
        let order_ref = t.order_code.to_string();
        let result = self
            .calls
            .record(
                SWEETTRACKER_PARTNER,
                "add_invoice",
                Some(order_ref.as_str()),
                || self.client.add_invoice(&req),
            )
            .await;
        let (outcome, error) = match result {
            Ok(_) => {
                tracing::debug!(
                    "[Scheduler] DeliveryTracking Request Success: num={num},fid={fid}"
                );
                m::registration("success", "");
                (Registered::Success, None)
            }
            Err(Error::Business {
                code: ECode::AlreadyRegistered,
                ..
            }) => {
                // 03: SweetTracker already tracks it, which is what we asked for.
                tracing::debug!(
                    "[Scheduler] DeliveryTracking Request Success: num={num},fid={fid}"
                );
                m::registration("already_registered", "03");
                (Registered::AlreadyRegistered, None)
            }
            Err(Error::Business { code, message, .. }) => {
                let e_code = code.code().to_owned();
                tracing::error!(
                    "[Scheduler] DeliveryTracking Request Fail: num={num},fid={fid},e_code={e_code},e_message={message}"
                );
                m::registration("refused", &e_code);
                (
                    Registered::Failed,
                    Some(format!("e_code {e_code}: {message}")),
                )
            }
            Err(e) => {
                // Transport or protocol failure: no e_code; the next run tries again.
                tracing::error!(
                    "[Scheduler] DeliveryTracking Request Fail: num={num},fid={fid},e_code=,e_message={e}"
                );
                m::registration("transport", "");
                (Registered::Failed, Some(e.to_string()))
            }
        };
        if let Err(e) = store::record_registration(&self.pool, t.id, error.as_deref()).await {
            tracing::warn!(shipment = t.id, error = %e, "could not record the registration result");
        }
        outcome
    }

    /// Issues a fresh token (its own committed transaction) and builds the callback URL.
    async fn callback_url(&self, order_code: i64) -> Result<String, anyhow::Error> {
        let mut tx = self.pool.begin().await?;
        let token =
            CallbackTokens::issue(&mut tx, SWEETTRACKER_PARTNER, Some(&order_code.to_string()))
                .await?;
        tx.commit().await?;
        Ok(format!(
            "{}{CALLBACK_PATH}?{TOKEN_PARAM}={}",
            self.shared.site_domain.get().trim_end_matches('/'),
            token.as_str()
        ))
    }
}
