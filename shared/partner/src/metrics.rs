//! Metric names (the `metrics` facade; the runtime installs the Prometheus exporter).

use std::time::Duration;

/// Counter: calls by `partner`, `operation`, `outcome` (`ok`/`error`) and `class`.
pub const CALLS: &str = "orderbus_partner_calls_total";
/// Histogram: call duration in seconds by `partner` and `operation`.
pub const DURATION: &str = "orderbus_partner_call_duration_seconds";

pub(crate) fn record(
    partner: &str,
    operation: &str,
    outcome: &'static str,
    class: &'static str,
    took: Duration,
) {
    metrics::counter!(CALLS, "partner" => partner.to_owned(), "operation" => operation.to_owned(), "outcome" => outcome, "class" => class)
        .increment(1);
    metrics::histogram!(DURATION, "partner" => partner.to_owned(), "operation" => operation.to_owned())
        .record(took.as_secs_f64());
}
