//! Inbound partner webhooks through the shared ingress: SweetTracker's tracking callback
//! (`POST /delivery/tracking_receive?token=…`, a per-shipment URL token) and SHOPLINE's signed
//! logistics report (`POST /webhooks/shopline/logistics`, SHA1withRSA both ways).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use orderbus_ingress::{
    Applied, Effect, EffectError, EffectFuture, Inbound, Ingress, IngressConfig, ShoplineReplies,
    ShoplineVerifier, SweetTrackerReplies, TokenLocation, UrlTokenVerifier, Webhook,
};
use orderbus_shopline::webhook::decode_logistics_report;
use orderbus_sweettracker::client::normalize_invoice_number;
use orderbus_tracking_vocabulary::{SHOPLINE, SWEETTRACKER};
use sqlx::{PgConnection, PgPool};

use crate::events::{self, unique_key, Incoming};
use crate::metrics as m;
use crate::store::{self, NewShipment, Shipment, OS02, OS03, OS30, OS31};
use crate::Shared;

/// The ingress partner name of SweetTracker's callbacks (and of their URL tokens).
pub const SWEETTRACKER_PARTNER: &str = "sweettracker";
pub const SHOPLINE_PARTNER: &str = "shopline";
/// Seed 000's callback path.
pub const CALLBACK_PATH: &str = "/delivery/tracking_receive";
/// The query parameter carrying the callback token.
pub const TOKEN_PARAM: &str = "token";
pub const SHOPLINE_PATH: &str = "/webhooks/shopline/logistics";

/// The webhook routes.
pub fn router(pool: PgPool, shared: Arc<Shared>) -> axum::Router {
    let mut ingress = Ingress::new(pool, IngressConfig::default()).webhook(Webhook::new(
        SWEETTRACKER_PARTNER,
        CALLBACK_PATH,
        UrlTokenVerifier::new(SWEETTRACKER_PARTNER, TokenLocation::Query(TOKEN_PARAM)),
        SweetTrackerReplies,
        SweetTrackerEffect(shared.clone()),
    ));
    if let Some(keys) = &shared.shopline {
        ingress = ingress.webhook(Webhook::new(
            SHOPLINE_PARTNER,
            SHOPLINE_PATH,
            ShoplineVerifier::new(keys.verifier.clone()),
            ShoplineReplies::new(keys.our_key.clone()),
            ShoplineEffect(shared.clone()),
        ));
    }
    ingress.router()
}

/// `fid` = `OS02:<order_no>` / `OS30:<order_no>` (seed 000).
pub fn parse_fid(fid: &str) -> Option<(&'static str, i64)> {
    let (status, order) = fid.trim().split_once(':')?;
    let status = match status {
        OS02 => OS02,
        OS30 => OS30,
        _ => return None,
    };
    let order: i64 = order.trim().parse().ok().filter(|n| *n > 0)?;
    Some((status, order))
}

/// Shipments a callback with this fid status may concern: the status itself and what it
/// becomes on delivery (a late scan after delivery is still recorded).
fn same_family(fid_status: &str, shipment_status: &str) -> bool {
    match fid_status {
        OS02 => matches!(shipment_status, OS02 | OS03),
        OS30 => matches!(shipment_status, OS30 | OS31),
        _ => false,
    }
}

/// SweetTracker's `time_trans` (no zone; KST, UTC+9).
fn kst(naive: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    chrono::FixedOffset::east_opt(9 * 3600)?
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

struct SweetTrackerEffect(Arc<Shared>);

impl Effect for SweetTrackerEffect {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, request: &'a Inbound) -> EffectFuture<'a> {
        Box::pin(sweettracker_callback(&self.0, tx, request))
    }
}

fn refuse(reason: &'static str, message: &str) -> Applied {
    m::callback_refused(reason);
    tracing::info!(reason, message, "tracking callback refused");
    Applied::refused("FAIL", message)
}

async fn sweettracker_callback(
    shared: &Shared,
    tx: &mut PgConnection,
    inbound: &Inbound,
) -> Result<Applied, EffectError> {
    let ct = inbound.request.content_type();
    let cb = orderbus_sweettracker::decode(ct.as_deref(), inbound.body())
        .map_err(EffectError::bad_body)?;
    let level = cb.level.as_i64();
    tracing::debug!(
        "[Scheduler] DeliveryTracking Callback Receive: fid={},invoice_no={},level={}",
        cb.fid,
        cb.invoice_no,
        level
    );
    let Some((fid_status, order_code)) = parse_fid(&cb.fid) else {
        return Ok(refuse("invalid_fid", "invalid fid"));
    };
    let order_ref = order_code.to_string();
    if inbound.verified.order.as_deref() != Some(order_ref.as_str()) {
        return Ok(refuse(
            "token_of_another_order",
            "the callback token was not issued for this fid",
        ));
    }
    let shipments = store::lock_order_shipments(tx, order_code).await?;
    let family: Vec<&Shipment> = shipments
        .iter()
        .filter(|s| same_family(fid_status, &s.order_status))
        .collect();
    if family.is_empty() {
        return Ok(refuse("unknown_shipment", "invalid fid"));
    }
    let invoice = normalize_invoice_number(&cb.invoice_no);
    let Some(shipment) = family.iter().find(|s| s.waybill_normalised == invoice) else {
        return Ok(refuse(
            "invoice_mismatch",
            "invoice_no is not the waybill of this fid",
        ));
    };
    let event_time = cb
        .time_trans_parsed()
        .and_then(kst)
        .unwrap_or_else(|| shared.clock.now());
    let level_text = level.to_string();
    let key = unique_key(&[
        SWEETTRACKER,
        &shipment.waybill_normalised,
        &level_text,
        cb.time_trans.as_deref().unwrap_or(""),
        cb.location.as_deref().unwrap_or(""),
    ]);
    let carrier = cb.carrier_code().map(str::to_owned);
    let outcome = events::apply(
        tx,
        &shared.vocabulary,
        shipment,
        &Incoming {
            source: SWEETTRACKER,
            carrier: carrier.as_deref(),
            status: &level_text,
            unique_key: key,
            event_time,
            location: cb.location.as_deref().unwrap_or(""),
            details: cb.details.as_deref().unwrap_or(""),
        },
    )
    .await
    .map_err(EffectError::retry)?;
    tracing::debug!(
        "[Scheduler] DeliveryTracking Callback Process: order_no={},order_status={}",
        order_code,
        outcome.order_status
    );
    Ok(Applied::accepted().for_order(order_ref))
}

struct ShoplineEffect(Arc<Shared>);

impl Effect for ShoplineEffect {
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, request: &'a Inbound) -> EffectFuture<'a> {
        Box::pin(shopline_report(&self.0, tx, request))
    }
}

async fn shopline_report(
    shared: &Shared,
    tx: &mut PgConnection,
    inbound: &Inbound,
) -> Result<Applied, EffectError> {
    let report = decode_logistics_report(inbound.body()).map_err(EffectError::bad_body)?;
    if report.tracking_list.is_empty() {
        return Err(EffectError::bad_request("trackingList is empty"));
    }
    let Some(mapping) = store::shopline_mapping(tx, &report.channel_order_transaction_id).await?
    else {
        m::shopline_unknown();
        tracing::warn!(channel_order_transaction_id = %report.channel_order_transaction_id, "SHOPLINE report for an unknown transaction: FAIL, SHOPLINE retries");
        return Err(EffectError::deferred(
            "FAIL",
            format!(
                "unknown channelOrderTransactionId {:?}",
                report.channel_order_transaction_id
            ),
        ));
    };
    let order_code = mapping.order_code;
    let redelivery = store::is_replacement(tx, order_code).await?;
    for entry in &report.tracking_list {
        let normalised = normalize_invoice_number(&entry.tracking_no);
        if normalised.is_empty() {
            return Err(EffectError::bad_request(
                "trackingList[].trackingNo is empty",
            ));
        }
        let mut shipments = store::lock_order_shipments(tx, order_code).await?;
        if !shipments.iter().any(|s| s.waybill_normalised == normalised) {
            // SHOPLINE may report a waybill the ERP never sent us: it becomes a shipment.
            let express_id = shipments
                .first()
                .map_or(mapping.express_id, |s| s.express_id);
            store::insert_shipment(
                tx,
                &NewShipment {
                    order_code,
                    uid: mapping.uid,
                    redelivery,
                    express_id,
                    carrier_code: shared.carriers.code(express_id),
                    waybill: &entry.tracking_no,
                    waybill_normalised: &normalised,
                    source: SHOPLINE,
                    channel: &shared.channel,
                },
            )
            .await?;
            shipments = store::lock_order_shipments(tx, order_code).await?;
        }
        let Some(shipment) = shipments
            .iter()
            .find(|s| s.waybill_normalised == normalised)
        else {
            return Err(EffectError::retry(std::io::Error::other(
                "shipment vanished within its transaction",
            )));
        };
        // SHOPLINE reports each status of a waybill (and may resend it): one event per status.
        let key = unique_key(&[SHOPLINE, &normalised, entry.tracking_status.trim()]);
        let location = entry.site.clone();
        let details = match &entry.handler {
            Some(h) if !h.is_empty() => {
                format!("{} ({}, {h})", entry.tracking_status, entry.carrier)
            }
            _ => format!("{} ({})", entry.tracking_status, entry.carrier),
        };
        events::apply(
            tx,
            &shared.vocabulary,
            shipment,
            &Incoming {
                source: SHOPLINE,
                carrier: Some(&entry.carrier),
                status: &entry.tracking_status,
                unique_key: key,
                event_time: shared.clock.now(),
                location: &location,
                details: &details,
            },
        )
        .await
        .map_err(EffectError::retry)?;
    }
    Ok(Applied::accepted().for_order(order_code.to_string()))
}

/// Which statuses are done (for the README and tests).
pub const DONE: [&str; 2] = [OS03, OS31];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fids() {
        assert_eq!(parse_fid("OS02:231108180642"), Some((OS02, 231108180642)));
        assert_eq!(parse_fid(" OS30:5 "), Some((OS30, 5)));
        assert_eq!(parse_fid("OS03:5"), None);
        assert_eq!(parse_fid("OS02:"), None);
        assert_eq!(parse_fid("OS02:-4"), None);
        assert_eq!(parse_fid("OS02:231108180642UHFS"), None);
        assert_eq!(parse_fid("garbage"), None);
    }

    #[test]
    fn families() {
        assert!(same_family(OS02, OS03));
        assert!(!same_family(OS02, OS31));
        assert!(same_family(OS30, OS31));
    }
}
