//! Connection setup and the capped backoff shared by the supervisors.

use std::time::Duration;

use deadpool_lapin::lapin::{types::LongString, Channel, Connection, ConnectionProperties};
use rand::Rng;

use crate::error::BusError;

/// Opens one long-lived AMQP connection. `heartbeat=10` is added to the URL when it has none.
pub async fn connect(url: &str, name: &str, timeout: Duration) -> Result<Connection, BusError> {
    let url = with_heartbeat(url);
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    tokio::time::timeout(timeout, Connection::connect(&url, props))
        .await
        .map_err(|_| BusError::Timeout {
            what: "amqp connect",
            after: timeout,
        })?
        .map_err(BusError::from)
}

/// Closes a connection without waiting long on a dead socket.
pub async fn close_quietly(conn: &Connection) {
    if conn.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            conn.close(200, "orderbus shutdown".into()),
        )
        .await;
    }
}

/// Closes a channel and waits (at most 2 s) for the broker's close-ok. Done for every channel
/// before its connection closes on shutdown: a channel merely dropped is closed by lapin in the
/// background, and if the connection is already closing by then lapin logs a spurious
/// "Connection error: invalid channel state".
pub async fn close_channel_quietly(channel: &Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            channel.close(200, "orderbus shutdown".into()),
        )
        .await;
    }
}

pub(crate) fn with_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&heartbeat=10")
    } else {
        format!("{url}?heartbeat=10")
    }
}

/// Exponential backoff with jitter, capped.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = rand::rng().random_range(0.8..1.2);
        exp.mul_f64(jitter).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_added_once() {
        assert_eq!(with_heartbeat("amqp://h/%2f"), "amqp://h/%2f?heartbeat=10");
        assert_eq!(
            with_heartbeat("amqp://h/%2f?x=1"),
            "amqp://h/%2f?x=1&heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://h/?heartbeat=5"),
            "amqp://h/?heartbeat=5"
        );
    }

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..40 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
    }
}
