//! Metric names of the tracking service (beside the bus's, the ingress's, the scheduler's and
//! the partner call log's).

/// Events received, by source and verdict (advance, same_stage, backwards, after_terminal,
/// exception, unmapped, duplicate).
pub const EVENTS: &str = "tracking_events_total";
/// Statuses no vocabulary table knows, by source.
pub const UNMAPPED_STATUSES: &str = "tracking_unmapped_statuses_total";
/// `order.updateExpressInfo` messages written to the outbox, by stage.
pub const PUBLISHED: &str = "tracking_express_info_published_total";
/// SHOPLINE reports whose channelOrderTransactionId maps to no order yet (answered FAIL).
pub const SHOPLINE_UNKNOWN: &str = "tracking_shopline_unknown_transactions_total";
/// Registration calls, by outcome (success, already_registered, refused, transport) and e_code.
pub const REGISTRATIONS: &str = "tracking_registrations_total";
/// Shipments created whose express_id has no SweetTracker carrier code in the table.
pub const UNMAPPED_CARRIERS: &str = "tracking_unmapped_carriers_total";
/// Shipments still shipping with no event for longer than the stale limit.
pub const STALE: &str = "tracking_stale_shipments";
/// Callbacks refused by the effect (invalid fid, unknown shipment, wrong invoice, token of
/// another order).
pub const CALLBACKS_REFUSED: &str = "tracking_callbacks_refused_total";

pub fn event(source: &str, verdict: &str) {
    metrics::counter!(EVENTS, "source" => source.to_owned(), "verdict" => verdict.to_owned())
        .increment(1);
}

pub fn unmapped_status(source: &str) {
    metrics::counter!(UNMAPPED_STATUSES, "source" => source.to_owned()).increment(1);
}

pub fn published(stage: &str) {
    metrics::counter!(PUBLISHED, "stage" => stage.to_owned()).increment(1);
}

pub fn shopline_unknown() {
    metrics::counter!(SHOPLINE_UNKNOWN).increment(1);
}

pub fn registration(outcome: &'static str, e_code: &str) {
    metrics::counter!(REGISTRATIONS, "outcome" => outcome, "e_code" => e_code.to_owned())
        .increment(1);
}

pub fn unmapped_carrier(express_id: i64) {
    metrics::counter!(UNMAPPED_CARRIERS, "express_id" => express_id.to_string()).increment(1);
}

pub fn stale(n: i64) {
    metrics::gauge!(STALE).set(n as f64);
}

pub fn callback_refused(reason: &'static str) {
    metrics::counter!(CALLBACKS_REFUSED, "reason" => reason).increment(1);
}
