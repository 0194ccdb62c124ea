//! The service's metrics (the `metrics` facade; the runtime's `/metrics` renders Prometheus).

/// Orders created through the API (`split` = JIT split into children).
pub fn order_created(split: bool, children: usize) {
    metrics::counter!("storefront_orders_created_total", "split" => if split { "true" } else { "false" })
        .increment(1);
    if children > 0 {
        metrics::counter!("storefront_child_orders_created_total").increment(children as u64);
    }
}

/// Every event offered to an order / exchange / return, by outcome (`applied` or the refusal).
pub fn event(subject: &str, event: &str, outcome: &str) {
    let kind = subject.split(':').next().unwrap_or("order").to_owned();
    metrics::counter!(
        "storefront_events_total",
        "subject" => kind,
        "event" => event.to_owned(),
        "outcome" => outcome.to_owned()
    )
    .increment(1);
}

/// Events recorded on the timeline as not applied, by reason.
pub fn not_applied(subject: &str, event: &str, reason: &str) {
    metrics::counter!(
        "storefront_events_not_applied_total",
        "subject" => subject.to_owned(),
        "event" => event.to_owned(),
        "reason" => reason.to_owned()
    )
    .increment(1);
}

/// Messages the handlers parked or sent to retry, by reason class.
pub fn refused_message(routing_key: &str, reason: &'static str) {
    metrics::counter!(
        "storefront_messages_refused_total",
        "routing_key" => routing_key.to_owned(),
        "reason" => reason
    )
    .increment(1);
}

pub fn auto_cancelled(n: u64) {
    metrics::counter!("storefront_auto_cancelled_total").increment(n);
}

pub fn idempotent_replay() {
    metrics::counter!("storefront_idempotent_replays_total").increment(1);
}

/// A payment for an order that was already cancelled: ops must refund it.
pub fn payment_for_closed_order() {
    metrics::counter!("storefront_payments_for_closed_orders_total").increment(1);
}

/// A payment whose amount the order does not owe (not positive, above the order amount, not
/// the outstanding balance): not applied, recorded on the timeline; ops refund or chase it.
pub fn payment_refused(reason: &'static str) {
    metrics::counter!("storefront_payments_refused_total", "reason" => reason).increment(1);
}
