//! Tracking polls on the shared scheduler: every slot, registered physical factors not yet in a
//! terminal stage are polled (bounded concurrency, backoff per factor). Frotel's Persian status
//! goes through the tracking vocabulary; an unknown one is recorded and counted, never guessed.
//! A new stage is published as `order.updateExpressInfo`; shipped and delivered also as
//! `order.erpstatus` 600 / 700 (Frotel plays the ERP's warehouse role for these orders).

use futures::StreamExt;
use orderbus_bus::Outbox;
use orderbus_contracts::{ErpOrderStatus, ErpOrderStatusUpdate, ExpressData, ExpressInfoUpdate};
use orderbus_frotel::{FactorId, Tracking};
use orderbus_scheduler::{Job, JobError, RunContext, Schedule};
use orderbus_tracking_vocabulary::{Progress, Stage};
use sha2::{Digest, Sha256};

use crate::store::{self, PollRow, PollUpdate};
use crate::{metrics, App, PARTNER};

/// The vocabulary source of Frotel statuses (`data/frotel.toml`).
pub const SOURCE: &str = "frotel";

pub struct TrackingJob {
    app: App,
    schedule: Schedule,
}

impl TrackingJob {
    pub fn new(app: App, schedule: Schedule) -> TrackingJob {
        TrackingJob { app, schedule }
    }
}

impl Job for TrackingJob {
    fn name(&self) -> &str {
        "frotel-tracking"
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    async fn run(&self, _ctx: &mut RunContext) -> Result<(), JobError> {
        let app = &self.app;
        let due = store::due_polls(&app.pool, app.settings().tracking_batch).await?;
        let results: Vec<Result<(), sqlx::Error>> = futures::stream::iter(due)
            .map(|row| poll_one(app, row))
            .buffer_unordered(app.settings().tracking_concurrency.max(1))
            .collect()
            .await;
        for r in results {
            r?;
        }
        Ok(())
    }
}

fn backoff_secs(app: &App, failures: i32) -> f64 {
    let base = app.settings().tracking_interval.as_secs_f64().max(1.0);
    let exp = 2f64.powi(failures.clamp(0, 20));
    (base * exp).min(app.settings().tracking_backoff_cap.as_secs_f64())
}

async fn poll_one(app: &App, row: PollRow) -> Result<(), sqlx::Error> {
    let code = row.order_code;
    let factor = match FactorId::parse(&row.factor_id) {
        Ok(f) => f,
        Err(e) => {
            return store::poll_failed(&app.pool, code, backoff_secs(app, 10), &e.to_string()).await
        }
    };
    let code_text = code.to_string();
    let client = app.client();
    let result = app
        .calls
        .record(PARTNER, "tracking", Some(&code_text), || {
            client.tracking(&factor)
        })
        .await;
    app.report_mirrors();
    match result {
        Ok(t) => apply(app, code, &factor, &t).await,
        Err(e) => {
            let delay = backoff_secs(app, row.poll_failures + 1);
            metrics::poll("failed");
            tracing::warn!(order_code = code, error = %e, delay_secs = delay, "Frotel tracking failed; backing off");
            store::poll_failed(&app.pool, code, delay, &format!("tracking: {e}")).await
        }
    }
}

/// A waybill the contracts accept (letters, digits, spaces, `-`, ≤ 100), else the factor id.
fn waybill(barcode: &str, factor: &FactorId) -> String {
    let b = barcode.trim();
    let ok = !b.is_empty()
        && b.len() <= 100
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ');
    if ok {
        b.to_owned()
    } else {
        factor.as_str().to_owned()
    }
}

fn progress_label(p: Progress) -> &'static str {
    match p {
        Progress::Advance => "advance",
        Progress::Same => "same",
        Progress::Backwards => "backwards",
        Progress::AfterTerminal => "after_terminal",
        Progress::Flag => "flag",
    }
}

async fn apply(app: &App, code: i64, factor: &FactorId, t: &Tracking) -> Result<(), sqlx::Error> {
    let status = t.order.status.trim().to_owned();
    let barcode = t.order.barcode.trim().to_owned();
    let mut tx = app.pool.begin().await?;
    let Some(order) = store::lock_order(&mut tx, code).await? else {
        return Ok(());
    };
    let current: Option<Stage> = order.stage.as_deref().and_then(|s| s.parse().ok());
    let unchanged = order.frotel_status.as_deref() == Some(status.as_str())
        && order.barcode.as_deref().unwrap_or("") == barcode;
    let mut stage = current;
    let mut shipped = order.shipped_published;
    let mut delivered = order.delivered_published;
    if !unchanged {
        match app.shared.vocabulary.lookup(SOURCE, None, &status) {
            Err(unmapped) => {
                store::record_unmapped(&mut tx, &status, code).await?;
                store::insert_tracking_event(&mut tx, code, &status, None, "unmapped", &barcode)
                    .await?;
                metrics::unmapped();
                tracing::warn!(order_code = code, error = %unmapped, "unknown Frotel status recorded, stage unchanged");
            }
            Ok(seen) => {
                let progress = seen.progress_from(current);
                let event = store::insert_tracking_event(
                    &mut tx,
                    code,
                    &status,
                    Some(seen.as_str()),
                    progress_label(progress),
                    &barcode,
                )
                .await?;
                if matches!(progress, Progress::Advance | Progress::Flag) {
                    if progress == Progress::Advance {
                        stage = Some(seen);
                    }
                    let info = ExpressInfoUpdate {
                        uid: order.uid,
                        accept_address: String::new(),
                        accept_remark: status.clone(),
                        business_type: 1,
                        create_time: chrono::Utc::now().timestamp(),
                        deal_with_cost: 0,
                        id: event,
                        logistics_type: app.mapping().express_id,
                        order_code: code,
                        state: app.shared.vocabulary.express_state(seen),
                        unique_key: unique_key(factor, &status),
                        waybill_code: waybill(&barcode, factor),
                    };
                    send(&mut tx, &info).await?;
                }
            }
        }
    }
    // Shipped once the parcel is on its way (rank ≥ in transit), delivered at `delivered`.
    let on_its_way = stage.and_then(Stage::rank).is_some_and(|r| r >= 3);
    if on_its_way && !shipped {
        let msg = ErpOrderStatusUpdate {
            uid: order.uid,
            order_code: code,
            status: ErpOrderStatus::Shipped,
            data: Some(ExpressData {
                express_id: app.mapping().express_id,
                express_number: waybill(&barcode, factor),
            }),
        };
        send(&mut tx, &msg).await?;
        shipped = true;
    }
    if stage == Some(Stage::Delivered) && !delivered {
        let msg = ErpOrderStatusUpdate {
            uid: order.uid,
            order_code: code,
            status: ErpOrderStatus::Delivered,
            data: None,
        };
        send(&mut tx, &msg).await?;
        delivered = true;
    }
    let done = stage.is_some_and(Stage::is_terminal);
    store::poll_succeeded(
        &mut tx,
        code,
        &PollUpdate {
            frotel_status: &status,
            stage: stage.map(Stage::as_str),
            barcode: &barcode,
            tracking_done: done,
            shipped_published: shipped,
            delivered_published: delivered,
        },
    )
    .await?;
    tx.commit().await?;
    metrics::poll(if unchanged { "unchanged" } else { "changed" });
    if !unchanged {
        tracing::info!(order_code = code, status = %status, stage = ?stage.map(Stage::as_str), done, "Frotel tracking");
    }
    Ok(())
}

async fn send<M: orderbus_contracts::Message>(
    tx: &mut sqlx::PgConnection,
    msg: &M,
) -> Result<(), sqlx::Error> {
    Outbox::new()
        .send(tx, msg)
        .await
        .map(|_| ())
        .map_err(|e| sqlx::Error::Protocol(format!("outbox: {e}")))
}

fn unique_key(factor: &FactorId, status: &str) -> String {
    let digest = Sha256::digest(format!("frotel:{}:{status}", factor.as_str()).as_bytes());
    hex::encode(&digest[..16])
}
