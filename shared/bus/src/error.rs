//! Error types of the bus.

use std::error::Error;
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
    /// A name or value AMQP cannot carry (e.g. a routing key over 255 bytes).
    #[error("invalid {what}")]
    Invalid {
        what: &'static str,
        #[source]
        source: BoxError,
    },
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
    /// A task of the generation returned without being asked to stop.
    #[error("{task} stopped without being asked to")]
    TaskStopped { task: String },
    /// A task of the generation panicked or was cancelled.
    #[error("{task} failed")]
    TaskFailed {
        task: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The AMQP connection of a role closed underneath it.
    #[error("{role} connection closed")]
    ConnectionClosed { role: &'static str },
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

/// A boxed error kept as the source of a bus error.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What the consumer does with a message whose handler failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: the next delay tier, parking after the last.
    Retry,
    /// Permanent: parking now.
    Park,
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Disposition::Retry => "retry",
            Disposition::Park => "park",
        })
    }
}

/// A handler's failure: a [`Disposition`], a reason (it goes into the retry or park header)
/// and the error that caused it, if any. `Ok(())` from a handler means Done.
///
/// `HandlerError::retry("provider 503")`, `HandlerError::park("unknown order 7")`, either with
/// `.with_source(e)`; `?` on a `sqlx::Error` classifies it by SQLSTATE (see the `From` impl).
#[derive(Debug, thiserror::Error)]
#[error("{disposition}: {reason}")]
pub struct HandlerError {
    disposition: Disposition,
    reason: String,
    #[source]
    source: Option<BoxError>,
}

/// Two failures are equal when they have the same disposition and the same header text
/// ([`HandlerError::describe`]): sources are compared by their messages.
impl PartialEq for HandlerError {
    fn eq(&self, other: &Self) -> bool {
        self.disposition == other.disposition && self.describe() == other.describe()
    }
}

impl Eq for HandlerError {}

impl HandlerError {
    /// Transient (DB unavailable, timeout, provider 5xx): next delay tier, parking after the last.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::new(Disposition::Retry, reason)
    }

    /// Permanent (undecodable, schema-invalid, unknown code, illegal transition): parking now.
    pub fn park(reason: impl Into<String>) -> Self {
        Self::new(Disposition::Park, reason)
    }

    fn new(disposition: Disposition, reason: impl Into<String>) -> Self {
        Self {
            disposition,
            reason: reason.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause (shown in logs and appended to the header reason).
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Same as [`HandlerError::retry`], in the spelling of a tuple variant, so call sites
    /// written as `HandlerError::Retry(reason)` keep compiling.
    #[allow(non_snake_case)]
    pub fn Retry(reason: String) -> Self {
        Self::retry(reason)
    }

    /// Same as [`HandlerError::park`], in the spelling of a tuple variant, so call sites
    /// written as `HandlerError::Park(reason)` keep compiling.
    #[allow(non_snake_case)]
    pub fn Park(reason: String) -> Self {
        Self::park(reason)
    }

    pub fn disposition(&self) -> Disposition {
        self.disposition
    }

    pub fn is_park(&self) -> bool {
        self.disposition == Disposition::Park
    }

    /// The reason alone, without the source.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The reason followed by its chain of sources: the text of the retry / park header.
    pub fn describe(&self) -> String {
        match &self.source {
            Some(source) => format!("{}: {}", self.reason, chain(source.as_ref())),
            None => self.reason.clone(),
        }
    }

    /// The same failure with `prefix: ` before the reason (e.g. `commit: `).
    pub(crate) fn context(mut self, prefix: &str) -> Self {
        self.reason = format!("{prefix}: {}", self.reason);
        self
    }
}

/// A database error from a handler (or from the commit after it), classified by SQLSTATE:
///
/// - class 22 (data exception: NUL in text `22021`, numeric overflow `22003`, datetime out of
///   range `22008`, invalid text representation `22P02`, …) and class 23 (integrity: unique,
///   foreign key, check, not-null) are properties of the message, so the message is **parked at
///   once**; the reason names the SQLSTATE and the constraint;
/// - an error encoding a bound value is permanent too (parked);
/// - everything else — connection (08), serialization failure / deadlock (40001, 40P01),
///   insufficient resources (53), admin shutdown (57P01-03), pool timeout or closed, I/O —
///   is **retried** through the delay tiers (and parked after the last one).
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        let permanent = match &e {
            sqlx::Error::Database(db) => db
                .code()
                .map(|code| sqlstate_is_permanent(&code))
                .map(|permanent| (permanent, describe_database_error(db.as_ref()))),
            sqlx::Error::Encode(_) => Some((true, "database: cannot encode a value".to_owned())),
            _ => None,
        };
        match permanent {
            Some((true, reason)) => HandlerError::park(reason).with_source(e),
            Some((false, reason)) => HandlerError::retry(reason).with_source(e),
            None => HandlerError::retry("database").with_source(e),
        }
    }
}

/// SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation): the same
/// statement with the same message fails again, however often it is retried.
pub fn sqlstate_is_permanent(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23")
}

/// True for the database errors [`HandlerError::from`] parks (see there).
pub fn is_permanent_db_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| sqlstate_is_permanent(&c)),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

fn describe_database_error(db: &dyn sqlx::error::DatabaseError) -> String {
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let mut reason = format!("database: SQLSTATE {code}");
    if let Some(constraint) = db.constraint() {
        reason.push_str(&format!(" on constraint {constraint}"));
    } else if let Some(table) = db.table() {
        reason.push_str(&format!(" on table {table}"));
    }
    reason
}

impl From<OutboxError> for HandlerError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Db(e) => e.into(),
            OutboxError::Serialize(_) => HandlerError::park("outgoing message").with_source(e),
        }
    }
}

/// An error followed by its sources, `outer: inner: innermost`, skipping a source whose text the
/// previous one already ends with (many errors repeat their source in their own message).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = source.source();
    }
    out
}

/// Formats an error with its whole chain of sources ([`chain`]) in a log field:
/// `tracing::warn!(error = %Chain(&e), ...)`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&chain(self.0))
    }
}
