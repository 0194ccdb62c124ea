//! Connection setup and the capped backoff shared by the supervisors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_lapin::lapin::{
    options::{BasicConsumeOptions, BasicQosOptions},
    types::{FieldTable, LongString, ShortString},
    Channel, Connection, ConnectionProperties, Consumer,
};
use rand::Rng;

use crate::error::BusError;

/// Where the next [`connect`] starts in a list of broker addresses: after a failure it moves
/// on, so a reconnect tries the other nodes first instead of the one that just failed.
static NEXT_ADDRESS: AtomicUsize = AtomicUsize::new(0);

/// The broker addresses in `url`: one AMQP URL, or several separated by commas or whitespace
/// (`amqp://u:p@node-1:5672/%2f,amqp://u:p@node-2:5672/%2f`), the nodes of one cluster. A comma
/// that does not start a new `amqp://` / `amqps://` URL belongs to the previous one (a
/// password may contain one).
pub fn broker_urls(url: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in url.split(|c: char| c == ',' || c.is_whitespace()) {
        let starts = part.starts_with("amqp://") || part.starts_with("amqps://");
        if part.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if !starts => {
                last.push(',');
                last.push_str(part);
            }
            _ => out.push(part.to_owned()),
        }
    }
    if out.is_empty() {
        out.push(url.to_owned());
    }
    out
}

/// Opens one long-lived AMQP connection. `heartbeat=10` is added to the URL when it has none.
/// `url` may list several brokers ([`broker_urls`]): they are tried in turn, each within
/// `timeout`, starting after the one that failed last; the first that accepts is used.
pub async fn connect(url: &str, name: &str, timeout: Duration) -> Result<Connection, BusError> {
    let urls = broker_urls(url);
    let start = NEXT_ADDRESS.load(Ordering::Relaxed);
    let mut last_err = None;
    for i in 0..urls.len() {
        let index = (start + i) % urls.len();
        match connect_one(&urls[index], name, timeout).await {
            Ok(conn) => {
                if urls.len() > 1 {
                    tracing::info!(broker = index + 1, of = urls.len(), "amqp connected");
                }
                return Ok(conn);
            }
            Err(e) => {
                if urls.len() > 1 {
                    tracing::warn!(broker = index + 1, of = urls.len(), error = %crate::error::Chain(&e), "amqp connect failed; trying the next broker");
                }
                NEXT_ADDRESS.store(index + 1, Ordering::Relaxed);
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or(BusError::ConnectionClosed { role: "connect" }))
}

async fn connect_one(url: &str, name: &str, timeout: Duration) -> Result<Connection, BusError> {
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

/// The channel of a consumer, holding the consumer registered until the channel is closed.
///
/// Dropping the last handle of a lapin `Consumer` sends `basic.cancel`. On a
/// single-active-consumer queue the broker then activates the next consumer at once, while the
/// deliveries this one has not acked stay checked out to it; they return to the queue only
/// when the channel closes, behind what the next consumer has received meanwhile: one order's
/// messages out of sequence. Closing the channel while the consumer is still registered
/// returns them and activates the next consumer in one step, unacked deliveries first. So the
/// worker drops its handle whenever it likes; this one goes only after the channel is closed,
/// on every path (also when its task is aborted: see `Drop`).
pub(crate) struct ConsumingChannel {
    channel: Channel,
    registered: Option<Consumer>,
}

impl ConsumingChannel {
    /// Closes the channel (at most 2 s), then lets the consumer go.
    pub(crate) async fn close(mut self) {
        close_channel_quietly(&self.channel).await;
        self.registered = None;
    }
}

impl Drop for ConsumingChannel {
    fn drop(&mut self) {
        let Some(consumer) = self.registered.take() else {
            return;
        };
        if !self.channel.status().connected() {
            return;
        }
        // Not closed by its owner (an aborted task, an error path): close it in the background
        // first, then drop the consumer; outside a runtime the process is ending anyway.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let channel = self.channel.clone();
            rt.spawn(async move {
                close_channel_quietly(&channel).await;
                drop(consumer);
            });
        }
    }
}

/// A new channel consuming `queue` (tag `tag`) with `prefetch` unacked deliveries at most;
/// every step bounded by `timeout`. Close it with [`ConsumingChannel::close`].
pub(crate) async fn subscribe(
    conn: &Connection,
    queue: &str,
    tag: &str,
    prefetch: u16,
    timeout: Duration,
) -> Result<(ConsumingChannel, Consumer), BusError> {
    let timed_out = |what| BusError::Timeout {
        what,
        after: timeout,
    };
    let channel = tokio::time::timeout(timeout, conn.create_channel())
        .await
        .map_err(|_| timed_out("create channel"))??;
    tokio::time::timeout(
        timeout,
        channel.basic_qos(prefetch, BasicQosOptions::default()),
    )
    .await
    .map_err(|_| timed_out("basic.qos"))??;
    let consumer = tokio::time::timeout(
        timeout,
        channel.basic_consume(
            ShortString::from(queue),
            ShortString::from(tag),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .map_err(|_| timed_out("basic.consume"))??;
    let held = ConsumingChannel {
        channel,
        registered: Some(consumer.clone()),
    };
    Ok((held, consumer))
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
    fn broker_lists() {
        assert_eq!(broker_urls("amqp://h/%2f"), vec!["amqp://h/%2f"]);
        assert_eq!(
            broker_urls("amqp://a:1/%2f, amqp://b:2/%2f\namqps://c:3/%2f"),
            vec!["amqp://a:1/%2f", "amqp://b:2/%2f", "amqps://c:3/%2f"]
        );
        // A comma inside a password stays in its URL.
        assert_eq!(
            broker_urls("amqp://u:p,w@a/%2f,amqp://b/%2f"),
            vec!["amqp://u:p,w@a/%2f", "amqp://b/%2f"]
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
