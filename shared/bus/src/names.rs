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

/// `<work queue>.shard.<i>`: shard `i` of a sharded subscription (both the shard's fanout
/// exchange and its queue).
pub fn shard_queue(work_queue: &str, shard: usize) -> String {
    format!("{work_queue}.shard.{shard}")
}

/// Which of `n` shards carries `key`: FNV-1a (64 bit) of the key, mixed by splitmix64's
/// finaliser (FNV's low bits follow the low bits of the key's bytes alone), mod `n`. Stable
/// across processes, versions and compilers, because every replica's sequencer must put one
/// order on the same shard for as long as the shard count stays the same.
pub fn shard_of(key: &str, n: usize) -> usize {
    let mut h = fnv1a(key);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % n.max(1) as u64) as usize
}

fn fnv1a(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
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
        assert_eq!(
            shard_queue("sf.order.erpstatus", 3),
            "sf.order.erpstatus.shard.3"
        );
    }

    #[test]
    fn shards_are_fnv1a_mixed_and_spread() {
        // FNV-1a 64's published vectors.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        // Order codes that differ only in bits FNV leaves in the low bits still spread.
        for n in [2, 3, 4, 8] {
            let mut seen = vec![0usize; n];
            for order in 100_000_000..100_000_400 {
                seen[shard_of(&order.to_string(), n)] += 1;
            }
            let fair = 400 / n;
            assert!(
                seen.iter().all(|c| *c > fair / 2),
                "uneven spread over {n}: {seen:?}"
            );
        }
        assert_eq!(shard_of("anything", 1), 0);
        // Pinned: changing the function would move orders between shards on a rolling update.
        assert_eq!(shard_of("100000002", 4), shard_of("100000002", 4));
    }
}
