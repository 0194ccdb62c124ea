//! Settings of the consumers (plain structs with defaults; the runtime maps its configuration
//! onto them).

use std::time::Duration;

/// Consumer settings.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub handler_timeout: Duration,
    pub db_timeout: Duration,
    pub publish_timeout: Duration,
    pub connect_timeout: Duration,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    /// Pause between attempts to open a transaction while the database is unavailable.
    pub db_retry_cap: Duration,
    /// How often a replica renews its row in the shard membership (sharded subscriptions).
    pub shard_heartbeat: Duration,
    /// A member not renewed for this long counts as gone: its share is dealt to the others.
    pub shard_member_ttl: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            handler_timeout: Duration::from_secs(30),
            db_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reconnect_base: Duration::from_millis(200),
            reconnect_cap: Duration::from_secs(5),
            db_retry_cap: Duration::from_secs(5),
            shard_heartbeat: Duration::from_secs(1),
            shard_member_ttl: Duration::from_secs(5),
        }
    }
}
