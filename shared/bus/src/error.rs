//! Error types of the bus.

use std::time::Duration;

/// Why a publish did not count as "sent".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `mandatory` publish that no queue was bound for (lapin 4: `Confirmation::Ack(Some(returned))`).
    #[error("message returned by the broker: {reply_code} {reply_text}")]
    Returned { reply_code: u16, reply_text: String },
    /// The broker nacked the message (internal queue error, or a full `reject-publish` queue).
    #[error("message nacked by the broker")]
    Nacked,
    /// The channel was not in confirm mode: a bug, never treated as success.
    #[error("publisher confirms were not enabled on the channel")]
    ConfirmNotRequested,
    #[error("publish or confirm timed out after {0:?}")]
    Timeout(Duration),
    #[error("amqp error: {0}")]
    Amqp(#[from] deadpool_lapin::lapin::Error),
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl PublishError {
    /// True when the channel/connection is probably unusable and must be rebuilt.
    pub fn is_connection_failure(&self) -> bool {
        matches!(self, PublishError::Timeout(_) | PublishError::Amqp(_))
    }
}

/// Errors of the long-running bus tasks (consumers, relay) and of topology declaration.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("amqp error: {0}")]
    Amqp(#[from] deadpool_lapin::lapin::Error),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publish failed: {0}")]
    Publish(#[from] PublishError),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// The consumer stream ended without us cancelling it (server-side `basic.cancel`, e.g. the
    /// queue was deleted): lapin 4 just ends the stream.
    #[error("consumer on {queue} ended unexpectedly (server-side cancel?)")]
    ConsumerEnded { queue: String },
    /// `Acker::ack` returned `Ok(false)`: the channel was poisoned or the ack already used.
    #[error("ack on {queue} was not sent (channel closed)")]
    NotAcked { queue: String },
    #[error("connection error: {0}")]
    Connection(String),
    #[error("invalid topology: {0}")]
    Topology(String),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Errors of [`crate::Outbox`] enqueueing.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("could not serialize message: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A handler's failure. `Ok(())` from a handler means Done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Transient (DB unavailable, timeout, provider 5xx): next delay tier, parking after the last.
    #[error("retry: {0}")]
    Retry(String),
    /// Permanent (undecodable, schema-invalid, unknown code, illegal transition): parking now.
    #[error("park: {0}")]
    Park(String),
}

/// The handler's own DB errors are transient.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        HandlerError::Retry(format!("database: {e}"))
    }
}

impl From<OutboxError> for HandlerError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Db(e) => e.into(),
            OutboxError::Serialize(e) => HandlerError::Park(format!("outgoing message: {e}")),
        }
    }
}
