//! The scheduler's metrics (the `metrics` facade; the service installs the exporter).

pub(crate) fn run_started(job: &str, kind: &'static str) {
    metrics::counter!("orderbus_scheduler_runs_started_total", "job" => job.to_owned(), "kind" => kind)
        .increment(1);
}

/// Seconds between a slot's time and the start of its first attempt.
pub(crate) fn start_lag(job: &str, seconds: f64) {
    metrics::histogram!("orderbus_scheduler_start_lag_seconds", "job" => job.to_owned())
        .record(seconds);
}

pub(crate) fn run_finished(job: &str) {
    metrics::counter!("orderbus_scheduler_runs_finished_total", "job" => job.to_owned())
        .increment(1);
}

/// One attempt failed (a retry may follow).
pub(crate) fn attempt_failed(job: &str) {
    metrics::counter!("orderbus_scheduler_attempts_failed_total", "job" => job.to_owned())
        .increment(1);
}

/// A slot was marked failed: its attempts are used up.
pub(crate) fn run_failed(job: &str) {
    metrics::counter!("orderbus_scheduler_runs_failed_total", "job" => job.to_owned()).increment(1);
}

pub(crate) fn lease_lost(job: &str) {
    metrics::counter!("orderbus_scheduler_leases_lost_total", "job" => job.to_owned()).increment(1);
}

pub(crate) fn missed(job: &str, policy: &'static str, slots: u64) {
    metrics::counter!("orderbus_scheduler_missed_slots_total", "job" => job.to_owned(), "policy" => policy)
        .increment(slots);
}

pub(crate) fn pruned(rows: u64) {
    metrics::counter!("orderbus_scheduler_pruned_rows_total").increment(rows);
}
