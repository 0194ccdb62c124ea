//! One row of a service's subscription table: routing-key pattern → handler and its consumer
//! settings.

use std::sync::Arc;

use crate::handler::{typed, Handler, MessageHandler};

/// One row of the subscription table: routing-key pattern → handler, prefetch, retries, batch.
#[derive(Clone)]
pub struct Subscription {
    /// Binding pattern on `amq.topic` (`order.payment`, `erp.*`, `#`).
    pub pattern: String,
    pub handler: Arc<dyn Handler>,
    /// Per-consumer prefetch (basic.qos, global = false).
    pub prefetch: u16,
    /// Retries before parking; attempt n (1-based) retries through tier `min(n, tiers) - 1`.
    /// `None` = one retry per tier.
    pub max_retries: Option<u32>,
    /// Up to this many messages per DB transaction (1 = one message per transaction).
    pub batch: usize,
    /// Competing workers on the work queue, each with its own channel, qos and consumer
    /// (1 = strictly sequential, the queue's order is the processing order). With n > 1,
    /// messages of one queue are handled in parallel and may complete out of order, so
    /// per-order ordering relies on the handlers' state-machine guards.
    pub concurrency: usize,
    /// Batches handled at the same time by each worker, each in its own transaction, with every
    /// message of one key ([`crate::Handler::partition_key`], the order code) always in the same
    /// partition: one order's messages stay in arrival order while different orders proceed in
    /// parallel (1 = one batch at a time). Each partition holds one database connection while
    /// it works, and acks its own deliveries one by one.
    pub partitions: usize,
    /// Shard queues for scale-out across replicas (1 = none): the work queue then feeds a
    /// sequencer (single active consumer across replicas) that forwards each message, keyed by
    /// order, to one of `shards` shard queues; each shard has one active consumer at a time,
    /// and the replicas share the shards between them. One order's messages stay in order
    /// however many replicas run (see the README, "Shards"). `concurrency` does not apply to a
    /// sharded subscription (the shards are its competing consumers).
    pub shards: usize,
    /// What the queue is for (exported in the definitions).
    pub description: String,
}

/// A subscription's consumer settings as one plain struct with defaults, for a configuration
/// layer to fill (see the fields of [`Subscription`] for their meaning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionSettings {
    pub prefetch: u16,
    pub max_retries: Option<u32>,
    pub batch: usize,
    pub concurrency: usize,
    pub partitions: usize,
    pub shards: usize,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            prefetch: 50,
            max_retries: None,
            batch: 1,
            concurrency: 1,
            partitions: 1,
            shards: 1,
        }
    }
}

impl Subscription {
    pub fn new(pattern: impl Into<String>, handler: Arc<dyn Handler>) -> Self {
        let d = SubscriptionSettings::default();
        Self {
            pattern: pattern.into(),
            handler,
            prefetch: d.prefetch,
            max_retries: d.max_retries,
            batch: d.batch,
            concurrency: d.concurrency,
            partitions: d.partitions,
            shards: d.shards,
            description: String::new(),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> SubscriptionSettings {
        SubscriptionSettings {
            prefetch: self.prefetch,
            max_retries: self.max_retries,
            batch: self.batch,
            concurrency: self.concurrency,
            partitions: self.partitions,
            shards: self.shards,
        }
    }

    /// Applies `settings` (values below 1 become 1, as with the single setters).
    pub fn with_settings(self, settings: SubscriptionSettings) -> Self {
        let mut s = self
            .prefetch(settings.prefetch)
            .batch(settings.batch)
            .concurrency(settings.concurrency)
            .partitions(settings.partitions)
            .shards(settings.shards);
        s.max_retries = settings.max_retries;
        s
    }

    /// Database connections this subscription holds at most: one per worker and partition
    /// while it handles a batch (sharded: every shard may be active on one replica, plus the
    /// membership heartbeat).
    pub fn pool_connections(&self) -> usize {
        if self.is_sharded() {
            return self.shards * self.partitions.max(1) + 1;
        }
        self.concurrency.max(1) * self.partitions.max(1)
    }

    /// True with more than one shard.
    pub fn is_sharded(&self) -> bool {
        self.shards > 1
    }
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }
    pub fn batch(mut self, k: usize) -> Self {
        self.batch = k.max(1);
        self
    }
    /// Runs `n` competing workers on this subscription (default 1). With n > 1 messages of the
    /// queue are handled in parallel (per-order ordering then relies on the handlers' guards).
    /// Each worker holds up to `prefetch` unacked deliveries and one database connection.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    /// Handles up to `n` batches at once, partitioned by order (see [`Subscription::partitions`]).
    pub fn partitions(mut self, n: usize) -> Self {
        self.partitions = n.max(1);
        self
    }
    /// Spreads the subscription over `n` shard queues shared by all replicas, keeping each
    /// order's sequence (see [`Subscription::shards`]; 1 = no shards).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.max(1);
        self
    }
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern)
            .field("prefetch", &self.prefetch)
            .field("max_retries", &self.max_retries)
            .field("batch", &self.batch)
            .field("concurrency", &self.concurrency)
            .field("partitions", &self.partitions)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription to message type `M`'s routing key with a typed handler: the key comes
    /// from the type, so a handler can never be bound to another message's queue.
    pub fn to<M, H>(handler: H) -> Subscription
    where
        M: orderbus_contracts::Message,
        H: MessageHandler<M>,
    {
        Subscription::new(M::ROUTING_KEY.as_str(), typed::<M, H>(handler))
    }
}
