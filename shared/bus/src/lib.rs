//! orderbus-bus: the delivery chain every orderbus service publishes and consumes through.
//!
//! - [`Topology`] / [`Subscription`]: the service's subscription table, declared idempotently
//!   at start and after every reconnect, exportable with [`Topology::definitions`].
//! - [`Publisher`]: confirm-mode, mandatory publishing; returned / nacked / timed-out = failure.
//! - [`Outbox`] + [`Relay`]: transactional outbox in PostgreSQL and its multi-replica relay.
//! - [`Consumers`]: supervised consumers with inbox dedup, retry tiers and parking.
//! - [`Health`]: readiness flags the runtime's `/readyz` reads.
//! - [`MIGRATOR`]: the bus's own tables (versions 900000000000..=900000000999).
//!
//! See README.md for the design choices.

pub mod conn;
pub mod consumer;
pub mod error;
pub mod health;
pub mod outbox;
pub mod publish;
pub mod topology;
pub mod trace;

pub use consumer::{
    typed, typed_with, ConsumerConfig, Consumers, Delivery, Handler, HandlerError, HandlerFuture,
    MessageHandler, HEADER_ATTEMPT, HEADER_PARK_ATTEMPTS, HEADER_PARK_QUEUE, HEADER_PARK_REASON,
    HEADER_ROUTING_KEY,
};
pub use error::{BusError, OutboxError, PublishError};
pub use health::Health;
pub use outbox::{outbox_lag, prune_inbox, Outbox, Relay, RelayConfig, RoundStats};
pub use publish::{new_traceparent, OutgoingMessage, PendingConfirms, Publisher, TRACEPARENT};
pub use topology::{QueueLimits, Subscription, Topology, TOPIC_EXCHANGE};
pub use trace::TraceContext;

/// The bus's own migrations (outbox, inbox). Merge with a service's migrator via
/// [`merged_migrator`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The bus's migrations followed by the service's, as one migrator (distinct version ranges:
/// the bus owns 900000000000..=900000000999).
pub fn merged_migrator(service: &sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    let mut all: Vec<sqlx::migrate::Migration> = MIGRATOR.iter().cloned().collect();
    all.extend(service.iter().cloned());
    all.sort_by_key(|m| m.version);
    let mut m = sqlx::migrate::Migrator::with_migrations(all);
    m.set_ignore_missing(true);
    m
}
