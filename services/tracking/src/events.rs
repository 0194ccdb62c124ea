//! One tracking event, whatever its source: normalise it through the vocabulary, record it,
//! apply the forward-only rule, move the shipment (OS02 → OS03, OS30 → OS31 on delivery) and
//! publish `order.updateExpressInfo` through the outbox, all in the caller's transaction.

use chrono::{DateTime, Utc};
use orderbus_bus::Outbox;
use orderbus_contracts::ExpressInfoUpdate;
use orderbus_tracking_vocabulary::{Progress, Stage, Vocabulary};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::metrics as m;
use crate::store::{self, NewEvent, Shipment, OS02, OS03, OS30, OS31};

/// `businessType` of the messages we publish ([inferred]: the spec's sample value).
pub const BUSINESS_TYPE: i64 = 1;

/// An event as received, before normalisation.
pub struct Incoming<'a> {
    /// Vocabulary source (`sweettracker`, `shopline`).
    pub source: &'static str,
    /// The carrier, for per-carrier vocabulary entries.
    pub carrier: Option<&'a str>,
    /// The source's status text (a level, a trackingStatus).
    pub status: &'a str,
    /// What identifies the event within its waybill (see [`unique_key`]).
    pub unique_key: String,
    pub event_time: DateTime<Utc>,
    pub location: &'a str,
    pub details: &'a str,
}

/// What one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    /// `false` for a duplicate (the shipment already had the event's key): nothing changed.
    pub new: bool,
    /// advance | same_stage | backwards | after_terminal | exception | unmapped
    pub verdict: &'static str,
    pub published: bool,
    /// The shipment's seed status after the event.
    pub order_status: String,
}

/// A stable 32-hex key from the parts that identify an event of one waybill.
pub fn unique_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The status a delivered shipment takes (seed 000: OS02 → OS03, OS30 → OS31).
fn delivered_status(current: &str) -> &str {
    match current {
        OS02 => OS03,
        OS30 => OS31,
        other => other,
    }
}

/// Records and applies `ev` to the (locked) shipment.
pub async fn apply(
    conn: &mut PgConnection,
    vocabulary: &Vocabulary,
    shipment: &Shipment,
    ev: &Incoming<'_>,
) -> Result<EventOutcome, EventError> {
    let current: Option<Stage> = shipment.stage.as_deref().and_then(|s| s.parse().ok());
    let (stage, progress) = match vocabulary.lookup(ev.source, ev.carrier, ev.status) {
        Ok(stage) => (Some(stage), Some(stage.progress_from(current))),
        Err(unmapped) => {
            m::unmapped_status(ev.source);
            tracing::warn!(order_code = shipment.order_code, waybill = %shipment.waybill, error = %unmapped, "tracking status not in the vocabulary: recorded, not applied");
            (None, None)
        }
    };
    let verdict = match progress {
        None => "unmapped",
        Some(Progress::Advance) => "advance",
        Some(p) => p.reason().unwrap_or("not_applied"),
    };
    // A new scan at the same stage (another hub) is news for the ERP; a late or post-delivery
    // scan is recorded only.
    let publish = matches!(
        progress,
        Some(Progress::Advance | Progress::Same | Progress::Flag)
    );
    let inserted = store::insert_event(
        conn,
        &NewEvent {
            shipment_id: shipment.id,
            source: ev.source,
            status: ev.status,
            stage: stage.map(Stage::as_str),
            verdict,
            unique_key: &ev.unique_key,
            published: publish,
            event_time: ev.event_time,
            location: ev.location,
            details: ev.details,
        },
    )
    .await?;
    let Some(event_id) = inserted else {
        m::event(ev.source, "duplicate");
        return Ok(EventOutcome {
            new: false,
            verdict: "duplicate",
            published: false,
            order_status: shipment.order_status.clone(),
        });
    };
    m::event(ev.source, verdict);
    let mut new_stage = current;
    let mut exception = shipment.exception;
    match progress {
        Some(Progress::Advance) => new_stage = stage,
        Some(Progress::Flag) => exception = true,
        _ => {}
    }
    let order_status = if new_stage == Some(Stage::Delivered) {
        delivered_status(&shipment.order_status).to_owned()
    } else {
        shipment.order_status.clone()
    };
    store::update_shipment(
        conn,
        shipment.id,
        new_stage.map(Stage::as_str),
        exception,
        &order_status,
    )
    .await?;
    if let (true, Some(stage)) = (publish, stage) {
        let msg = ExpressInfoUpdate {
            uid: shipment.uid,
            accept_address: clip(ev.location),
            accept_remark: clip(ev.details),
            business_type: BUSINESS_TYPE,
            create_time: ev.event_time.timestamp(),
            deal_with_cost: 0,
            id: event_id,
            logistics_type: shipment.express_id,
            order_code: shipment.order_code,
            state: vocabulary.express_state(stage),
            unique_key: ev.unique_key.clone(),
            waybill_code: shipment.waybill.clone(),
        };
        Outbox::new().send(&mut *conn, &msg).await?;
        m::published(stage.as_str());
    }
    Ok(EventOutcome {
        new: true,
        verdict,
        published: publish,
        order_status,
    })
}

/// The spec's texts are at most 500 characters in our contracts; carriers' are shorter, but a
/// partner's text must never make our own message unpublishable.
fn clip(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '\0')
        .take(orderbus_contracts::rules::TEXT_MAX)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] orderbus_bus::OutboxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_are_stable_and_separate_parts() {
        assert_eq!(unique_key(&["a", "b"]), unique_key(&["a", "b"]));
        assert_ne!(unique_key(&["ab", ""]), unique_key(&["a", "b"]));
        assert_eq!(unique_key(&["x"]).len(), 32);
    }

    #[test]
    fn delivery_completes_the_seed_statuses() {
        assert_eq!(delivered_status(OS02), OS03);
        assert_eq!(delivered_status(OS30), OS31);
        assert_eq!(delivered_status(OS03), OS03);
    }

    #[test]
    fn clipping_drops_nul_and_bounds_length() {
        assert_eq!(clip("a\0b"), "ab");
        assert_eq!(clip(&"x".repeat(900)).chars().count(), 500);
    }
}
