//! Metric names (the `metrics` facade; the runtime installs the Prometheus exporter).

use std::time::Duration;

/// Counter: requests by `partner`, `verification` verdict and `outcome`.
pub const REQUESTS: &str = "orderbus_ingress_requests_total";
/// Counter: duplicates replayed, by `partner`.
pub const DUPLICATES: &str = "orderbus_ingress_duplicates_total";
/// Histogram: seconds from the first byte of the request to the reply, by `partner` and
/// `outcome`.
pub const DURATION: &str = "orderbus_ingress_request_duration_seconds";

pub(crate) fn record(
    partner: &str,
    verification: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    metrics::counter!(REQUESTS, "partner" => partner.to_owned(), "verification" => verification, "outcome" => outcome)
        .increment(1);
    if outcome == "replayed" {
        metrics::counter!(DUPLICATES, "partner" => partner.to_owned()).increment(1);
    }
    metrics::histogram!(DURATION, "partner" => partner.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}
