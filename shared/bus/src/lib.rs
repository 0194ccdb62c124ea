//! orderbus-bus: the delivery chain every orderbus service publishes and consumes through.
//!
//! - [`Topology`] / [`Subscription`]: the service's subscription table, declared idempotently
//!   at start and after every reconnect, exportable with [`Topology::definitions`].
//! - [`Publisher`]: confirm-mode, mandatory publishing; returned / nacked / timed-out = failure.
//! - [`Outbox`] + [`Relay`]: transactional outbox in PostgreSQL and its multi-replica relay.
//! - [`Consumers`]: supervised consumers with inbox dedup, retry tiers and parking; handlers
//!   implement [`MessageHandler`] (typed) or [`Handler`] (raw).
//! - [`Health`]: readiness flags the runtime's `/readyz` reads.
//! - [`MIGRATOR`]: the bus's own tables (versions 900000000000..=900000000999).
//!
//! See README.md for the design choices.

pub mod config;
pub mod conn;
pub mod delivery;
pub mod error;
pub mod handler;
pub mod health;
pub mod inbox;
mod members;
pub mod names;
pub mod outbox;
mod partition;
pub mod publish;
pub mod relay;
mod sequencer;
mod shards;
pub mod subscription;
pub mod supervisor;
pub mod topology;
pub mod trace;
mod worker;

pub use config::ConsumerConfig;
pub use delivery::Delivery;
pub use error::{BusError, Disposition, HandlerError, OutboxError, PublishError};
pub use handler::{typed, typed_with, Handler, HandlerFuture, MessageHandler};
pub use health::Health;
pub use inbox::prune_inbox;
pub use names::{
    HEADER_ATTEMPT, HEADER_PARK_ATTEMPTS, HEADER_PARK_QUEUE, HEADER_PARK_REASON,
    HEADER_ROUTING_KEY, TOPIC_EXCHANGE,
};
pub use outbox::{outbox_lag, Outbox};
pub use publish::{new_traceparent, OutgoingMessage, PendingConfirms, Publisher, TRACEPARENT};
pub use relay::{Relay, RelayConfig, RoundStats};
pub use subscription::{Subscription, SubscriptionSettings};
pub use supervisor::Consumers;
pub use topology::{OutageBudget, QueueLimits, Topology};
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
