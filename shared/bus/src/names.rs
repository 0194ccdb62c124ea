//! The names the bus gives to exchanges, queues and its own headers. A leaf module: every other
//! module may use it, it uses none of them.

use std::time::Duration;

/// The exchange every orderbus and ERP message goes through.
pub const TOPIC_EXCHANGE: &str = "amq.topic";
/// The default exchange (`""`): routes by queue name. Retry tiers dead-letter through it.
pub const DEFAULT_EXCHANGE: &str = "";

/// Attempt number of a delivery (1 = first delivery; retries carry n + 1).
pub const HEADER_ATTEMPT: &str = "x-orderbus-attempt";
/// The original routing key of a retried or parked message (retries come back through the
/// default exchange, whose routing key is the queue name).
pub const HEADER_ROUTING_KEY: &str = "x-orderbus-routing-key";
pub const HEADER_RETRY_REASON: &str = "x-orderbus-retry-reason";
pub const HEADER_PARK_REASON: &str = "x-orderbus-park-reason";
pub const HEADER_PARK_QUEUE: &str = "x-orderbus-park-queue";
pub const HEADER_PARK_ATTEMPTS: &str = "x-orderbus-park-attempts";
pub const HEADER_PARKED_AT: &str = "x-orderbus-parked-at";
/// Prefix of every header the bus writes for its own bookkeeping.
pub const BUS_HEADER_PREFIX: &str = "x-orderbus-";

/// `<service>.<pattern>`.
pub fn work_queue(service: &str, pattern: &str) -> String {
    format!("{service}.{pattern}")
}

/// `<service>.parking`.
pub fn parking_queue(service: &str) -> String {
    format!("{service}.parking")
}

/// `<service>.retry.<delay>` (both the tier exchange and its queue).
pub fn tier_name(service: &str, delay: Duration) -> String {
    format!("{service}.retry.{}", delay_label(delay))
}

/// `200ms`, `5s`, `5m`, `1h`.
pub fn delay_label(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(delay_label(Duration::from_millis(200)), "200ms");
        assert_eq!(delay_label(Duration::from_secs(5)), "5s");
        assert_eq!(delay_label(Duration::from_secs(300)), "5m");
        assert_eq!(delay_label(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn queue_names() {
        assert_eq!(work_queue("sf", "order.payment"), "sf.order.payment");
        assert_eq!(parking_queue("sf"), "sf.parking");
        assert_eq!(tier_name("sf", Duration::from_secs(30)), "sf.retry.30s");
    }
}
