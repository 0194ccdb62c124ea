//! The reconciliation sweep (seed 001's 主動查詢): payments still awaiting payment past a
//! threshold are looked up with `OrderQuery` — by OrderNo when there are few, by an order-date
//! window (split by the client until every reply is under 300 rows) when there are many — and
//! each paid one goes through the same [`settle`] as a notification (`via = sweep`).
//!
//! Per payment: an exponential backoff between looks and a cap (`max_attempts`); at the cap the
//! payment is escalated (`flag = stuck`, `escalated_at`, a WARN line naming it, the metrics
//! `orderbus_payments_escalated_total` / `orderbus_payments_stuck`) and never polled again (a
//! notification still settles it). An attempt past its validity that the bank does not report
//! paid becomes `expired`.
//!
//! It runs on the shared scheduler: every replica runs the schedule, one claims each slot. Its
//! effects are idempotent (the settlement's primary key), so a run taken over mid-way repeats
//! nothing.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use orderbus_scheduler::{Job, JobError, MissedPolicy, RunContext, Schedule};
use orderbus_sinopac::types::OrderRecord;
use sqlx::PgPool;

use crate::bank::Bank;
use crate::ids::OrderCode;
use crate::metrics as m;
use crate::settle::{settle, Settled, Via};
use crate::store::{self, DueRow};

/// Sweep settings.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// How often a slot fires.
    pub interval: Duration,
    /// Leave an attempt alone this long after it was created (its notifications may come).
    pub after: Duration,
    /// Up to this many due payments are queried one by one (`OrderNo`); more by date window.
    pub by_order_no_max: usize,
    /// Payments looked at per run.
    pub batch: i64,
    /// Looks per payment before it is escalated.
    pub max_attempts: i32,
    /// Backoff between looks at one payment: `base * 2^attempts`, at most `max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            after: Duration::from_secs(600),
            by_order_no_max: 20,
            batch: 2000,
            max_attempts: 10,
            backoff_base: Duration::from_secs(300),
            backoff_max: Duration::from_secs(2 * 3600),
        }
    }
}

impl SweepSettings {
    /// The wait before the next look after `attempts` unsuccessful ones.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let shift = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
        self.backoff_base
            .checked_mul(1u32 << shift.min(20))
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub checked: usize,
    pub queries: usize,
    pub settled: usize,
    pub expired: usize,
    pub rescheduled: usize,
    pub escalated: usize,
}

/// Why a sweep failed (the scheduler retries the slot).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("settle: {0}")]
    Settle(#[from] crate::settle::SettleError),
    #[error("the bank could not be queried: {0}")]
    Bank(#[from] orderbus_sinopac::Error),
}

/// The sweep over one database and one shop.
#[derive(Clone)]
pub struct Reconciler {
    pub pool: PgPool,
    pub bank: Bank,
    pub settings: SweepSettings,
}

impl Reconciler {
    /// One sweep as of `now`.
    pub async fn sweep_once(&self, now: DateTime<Utc>) -> Result<SweepReport, SweepError> {
        let s = &self.settings;
        let older_than = now - chrono(s.after);
        let due = {
            let mut conn = self.pool.acquire().await?;
            store::due_for_sweep(&mut conn, now, older_than, s.batch).await?
        };
        let mut report = SweepReport {
            checked: due.len(),
            ..SweepReport::default()
        };
        if due.is_empty() {
            self.update_stuck_gauge().await;
            return Ok(report);
        }
        let mut found: HashMap<String, OrderRecord> = HashMap::new();
        let mut unanswered: Vec<&str> = Vec::new();
        if due.len() <= s.by_order_no_max {
            for row in &due {
                report.queries += 1;
                match self.bank.query_one(&row.order_no).await {
                    Ok(rows) => {
                        for r in rows.into_iter().filter(|r| r.order_no == row.order_no) {
                            found.insert(r.order_no.clone(), r);
                        }
                    }
                    Err(e) => {
                        // Not counted against the payment: the bank, not the payment, failed.
                        tracing::warn!(order_code = row.order_code, order_no = %row.order_no, error = %e, "OrderQuery failed for this payment; next sweep tries again");
                        unanswered.push(&row.order_no);
                    }
                }
            }
        } else {
            let start = due
                .iter()
                .map(|r| r.attempt_created_at)
                .min()
                .unwrap_or(now)
                - ChronoDuration::minutes(1);
            let rows = self.bank.query_paid_window(start, now).await?;
            report.queries += 1;
            for r in rows {
                found.insert(r.order_no.clone(), r);
            }
        }
        for row in &due {
            if unanswered.contains(&row.order_no.as_str()) {
                continue;
            }
            match found.get(&row.order_no).filter(|r| r.is_paid()) {
                Some(record) => {
                    let payment = self.bank.payment_of_record(record);
                    let mut tx = self.pool.begin().await?;
                    let settled = settle(&mut tx, Via::Sweep, &payment, now).await?;
                    tx.commit().await?;
                    if matches!(settled, Settled::Recorded { .. }) {
                        report.settled += 1;
                    }
                }
                None if row.expires_at <= now => {
                    if self.expire(row).await? {
                        report.expired += 1;
                    }
                }
                None => {
                    if self.missed(row, now).await? {
                        report.escalated += 1;
                    } else {
                        report.rescheduled += 1;
                    }
                }
            }
        }
        // Paid rows of the window that are not a due payment's newest attempt: an older attempt
        // of ours (the customer switched method and paid the first one after all). `settle`
        // ignores OrderNos that are not ours and writes nothing for known settlements.
        let due_nos: std::collections::HashSet<&str> =
            due.iter().map(|r| r.order_no.as_str()).collect();
        for record in found
            .values()
            .filter(|r| r.is_paid() && !due_nos.contains(r.order_no.as_str()))
            .filter(|r| crate::ids::parse_order_no(&r.order_no).is_some())
        {
            let payment = self.bank.payment_of_record(record);
            let mut tx = self.pool.begin().await?;
            let settled = settle(&mut tx, Via::Sweep, &payment, now).await?;
            tx.commit().await?;
            if matches!(settled, Settled::Recorded { .. }) {
                report.settled += 1;
            }
        }
        m::sweep(report.checked as u64, report.queries as u64);
        m::expired(report.expired as u64);
        self.update_stuck_gauge().await;
        tracing::info!(?report, "reconciliation sweep");
        Ok(report)
    }

    async fn expire(&self, row: &DueRow) -> Result<bool, SweepError> {
        let mut tx = self.pool.begin().await?;
        let code = OrderCode(row.order_code);
        let Some(p) = store::lock_payment(&mut tx, code).await? else {
            return Ok(false);
        };
        if p.status != "awaiting_payment" {
            return Ok(false);
        }
        store::set_attempt_state(&mut tx, row.attempt_id, "expired").await?;
        store::set_status(&mut tx, code, "expired", None).await?;
        tx.commit().await?;
        tracing::info!(order_code = row.order_code, order_no = %row.order_no, pay_type = %row.pay_type, "payment attempt expired unpaid");
        Ok(true)
    }

    /// Nothing found: back off, or escalate at the cap. Returns whether it escalated.
    async fn missed(&self, row: &DueRow, now: DateTime<Utc>) -> Result<bool, SweepError> {
        let s = &self.settings;
        let attempts = row.sweep_attempts + 1;
        let escalate = attempts >= s.max_attempts;
        let mut next = now + chrono(s.backoff(row.sweep_attempts));
        // Look again right after the attempt's validity ends (then it can be expired).
        if next > row.expires_at && now < row.expires_at {
            next = row.expires_at + ChronoDuration::seconds(1);
        }
        let detail = format!(
            "reconciliation found no payment for {} after {attempts} looks; not polled again (a notification still settles it)",
            row.order_no
        );
        let mut conn = self.pool.acquire().await?;
        let changed = store::sweep_missed(
            &mut conn,
            OrderCode(row.order_code),
            next,
            escalate,
            &detail,
        )
        .await?;
        if changed && escalate {
            m::escalated();
            tracing::warn!(order_code = row.order_code, order_no = %row.order_no, attempts, "payment escalated (stuck): {detail}");
        }
        Ok(changed && escalate)
    }

    async fn update_stuck_gauge(&self) {
        if let Ok(mut conn) = self.pool.acquire().await {
            if let Ok(n) = store::stuck_count(&mut conn).await {
                m::stuck(n);
            }
        }
    }
}

fn chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// The sweep as a scheduler job (`payments-reconcile`).
pub struct SweepJob {
    pub reconciler: Reconciler,
    pub schedule: Schedule,
}

impl Job for SweepJob {
    fn name(&self) -> &str {
        "payments-reconcile"
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn missed_policy(&self) -> MissedPolicy {
        MissedPolicy::CatchUpOnce
    }

    async fn run(&self, _ctx: &mut RunContext) -> Result<(), JobError> {
        self.reconciler
            .sweep_once(Utc::now())
            .await
            .map(|_| ())
            .map_err(|e| JobError::Failed {
                message: "reconciliation sweep failed".to_owned(),
                source: Some(Box::new(e)),
            })
    }
}
