//! The service's metrics (global recorder installed by the runtime).

use orderbus_frotel::MirrorHealth;

/// An `order.submit` taken on, by initial state.
pub fn accepted(state: &'static str) {
    metrics::counter!("orderbus_fulfilment_orders_total", "state" => state).increment(1);
}

/// A registration attempt's outcome (`registered`, `retry`, `refused`, `invalid`,
/// `outcome_unknown`).
pub fn registration(outcome: &'static str) {
    metrics::counter!("orderbus_fulfilment_registrations_total", "outcome" => outcome).increment(1);
}

/// A checkPay outcome (`verified`, `verified_again`, `failed`, `refused`, `check_retry`).
pub fn payment(outcome: &'static str) {
    metrics::counter!("orderbus_fulfilment_payments_total", "outcome" => outcome).increment(1);
}

/// Something escalated to a person (`payment_deadline`, `check_pay`).
pub fn escalated(kind: &'static str) {
    metrics::counter!("orderbus_fulfilment_escalations_total", "kind" => kind).increment(1);
}

/// A quote answer by source (`frotel`, `cache`, `default`, `refused`, `unavailable`).
pub fn quote(source: &'static str) {
    metrics::counter!("orderbus_fulfilment_quotes_total", "source" => source).increment(1);
}

/// A tracking poll (`changed`, `unchanged`, `failed`).
pub fn poll(outcome: &'static str) {
    metrics::counter!("orderbus_fulfilment_tracking_polls_total", "outcome" => outcome)
        .increment(1);
}

/// A Frotel status the vocabulary does not know.
pub fn unmapped() {
    metrics::counter!("orderbus_fulfilment_unmapped_statuses_total").increment(1);
}

/// Per-mirror breaker view: 1 healthy, 0 inside its unhealthy window.
pub fn mirrors(health: &[MirrorHealth]) {
    for m in health {
        metrics::gauge!("orderbus_fulfilment_frotel_mirror_healthy", "mirror" => m.base_url.clone())
            .set(if m.healthy { 1.0 } else { 0.0 });
    }
}
