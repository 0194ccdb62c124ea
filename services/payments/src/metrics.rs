//! Metric names of the service (Prometheus, through the runtime's recorder).

/// A payment settled: `via` = backend_url / return_url / sweep, `outcome` = paid /
/// refund_needed / duplicate_payment / amount_mismatch / failed.
pub fn settled(via: &str, outcome: &str) {
    metrics::counter!("orderbus_payments_settled_total", "via" => via.to_owned(), "outcome" => outcome.to_owned()).increment(1);
}

/// Seconds between the bank's PayDate and the moment we recorded it, by how we learned it.
pub fn settlement_lag(via: &str, seconds: f64) {
    metrics::histogram!("orderbus_payments_settlement_lag_seconds", "via" => via.to_owned())
        .record(seconds);
}

/// A notification that settled nothing: `reason` = unknown_token / foreign_shop / bank_error /
/// unknown_order_no / already_settled.
pub fn notification_ignored(via: &str, reason: &str) {
    metrics::counter!("orderbus_payments_notifications_ignored_total", "via" => via.to_owned(), "reason" => reason.to_owned()).increment(1);
}

/// A payment escalated after the sweep's retry cap (`stuck`).
pub fn escalated() {
    metrics::counter!("orderbus_payments_escalated_total").increment(1);
}

/// Payments escalated and still unsettled (set by every sweep).
pub fn stuck(n: i64) {
    metrics::gauge!("orderbus_payments_stuck").set(n as f64);
}

/// ATM attempts that expired unpaid.
pub fn expired(n: u64) {
    metrics::counter!("orderbus_payments_expired_total").increment(n);
}

/// One sweep: payments looked at and OrderQuery calls made.
pub fn sweep(checked: u64, queries: u64) {
    metrics::counter!("orderbus_payments_sweep_checked_total").increment(checked);
    metrics::counter!("orderbus_payments_sweep_queries_total").increment(queries);
}
