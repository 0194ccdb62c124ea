//! Topology as data: one table per service, declared idempotently at start and after every
//! reconnect, and exportable as RabbitMQ definitions JSON.
//!
//! Retry-tier routing: each delay tier is a fanout exchange `<service>.retry.<delay>` bound to a
//! quorum queue of the same name with a per-queue `x-message-ttl`. A retried message is published
//! to the tier exchange **with the work queue's name as its routing key** (fanout ignores it); the
//! tier queue dead-letters to the default exchange without a dead-letter routing key, so RabbitMQ
//! reuses the message's own routing key and the message lands back in exactly the work queue it
//! came from. One tier queue serves every work queue of the service and never mixes TTLs.

use std::time::Duration;

use deadpool_lapin::lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, ExchangeKind,
};
use serde_json::{json, Value};

use crate::error::BusError;
pub use crate::names::{delay_label, TOPIC_EXCHANGE};
use crate::names::{parking_queue, shard_queue, tier_name, work_queue};
pub use crate::subscription::Subscription;

/// What a queue must survive without losing a message from a publisher that does not use
/// confirms (the ERP): its peak rate for the length of a consumer outage.
///
/// A full work queue (`reject-publish`) refuses new messages; a publisher with confirms (our
/// relay) sees the nack and keeps the row, a publisher without confirms loses the message
/// silently. The limits are therefore sized so a queue holds `peak_messages_per_second ×
/// outage` messages, and the byte limit leaves room for messages `byte_headroom` times the mean
/// size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutageBudget {
    /// The busiest publisher's peak rate into one queue.
    pub peak_messages_per_second: u32,
    /// How long a consumer may be down (a night until someone fixes it) without loss.
    pub outage: Duration,
    /// Mean message size in bytes (body and properties).
    pub mean_message_bytes: u32,
    /// Byte limit = messages × mean size × this factor (≥ 1), so the count limit binds first
    /// unless messages are much larger than the mean.
    pub byte_headroom: u32,
}

impl Default for OutageBudget {
    /// 20 msg/s for 12 hours at 1 KiB (×2 headroom): 864 000 messages, 1.65 GiB per queue.
    fn default() -> Self {
        Self {
            peak_messages_per_second: 20,
            outage: Duration::from_secs(12 * 3600),
            mean_message_bytes: 1024,
            byte_headroom: 2,
        }
    }
}

impl OutageBudget {
    /// Messages a queue must hold: peak rate × outage.
    pub fn messages(&self) -> i64 {
        i64::from(self.peak_messages_per_second).saturating_mul(self.outage.as_secs() as i64)
    }

    /// Bytes a queue must hold: messages × mean size × headroom.
    pub fn bytes(&self) -> i64 {
        self.messages()
            .saturating_mul(i64::from(self.mean_message_bytes))
            .saturating_mul(i64::from(self.byte_headroom.max(1)))
    }
}

/// Broker-side limits applied to every queue (all explicit, so 3.10 and 3.13/4.x agree).
/// Plain fields with defaults; [`QueueLimits::for_budget`] derives the length limits from an
/// [`OutageBudget`]. The values are queue arguments: RabbitMQ refuses to redeclare an existing
/// queue with different ones (`PRECONDITION_FAILED`), so changing them for queues that exist
/// takes a policy or a new queue (see the README).
#[derive(Clone, Debug, PartialEq)]
pub struct QueueLimits {
    /// `x-delivery-limit` on work queues: redeliveries (crash loops) beyond it dead-letter to
    /// parking. Well above the expected number of crashes while holding a message.
    pub delivery_limit: i64,
    /// `x-max-length` of work and tier queues (with `reject-publish`).
    pub max_length: i64,
    /// `x-max-length-bytes` of work and tier queues (with `reject-publish`).
    pub max_length_bytes: i64,
    /// `x-max-length` of the parking queue.
    pub parking_max_length: i64,
    /// `x-max-length-bytes` of the parking queue.
    pub parking_max_length_bytes: i64,
    /// `x-quorum-initial-group-size` (capped by the broker to the cluster size).
    pub group_size: i64,
}

impl QueueLimits {
    /// Work and tier queues hold `budget`; parking keeps its defaults.
    pub fn for_budget(budget: &OutageBudget) -> Self {
        Self {
            max_length: budget.messages(),
            max_length_bytes: budget.bytes(),
            ..Self::default()
        }
    }
}

impl Default for QueueLimits {
    /// [`OutageBudget::default`] for work and tier queues (864 000 messages, 1.65 GiB); parking
    /// 1 000 000 messages, 2 GiB.
    fn default() -> Self {
        let budget = OutageBudget::default();
        Self {
            delivery_limit: 10,
            max_length: budget.messages(),
            max_length_bytes: budget.bytes(),
            parking_max_length: 1_000_000,
            parking_max_length_bytes: 2 * 1024 * 1024 * 1024,
            group_size: 3,
        }
    }
}

/// A service's whole topology.
#[derive(Clone, Debug)]
pub struct Topology {
    pub service: String,
    pub retry_tiers: Vec<Duration>,
    pub limits: QueueLimits,
    pub subscriptions: Vec<Subscription>,
}

/// A queue argument value.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Arg {
    /// The value as JSON (definitions export).
    pub fn to_json(&self) -> Value {
        match self {
            Arg::Str(s) => json!(s),
            Arg::Int(i) => json!(i),
            Arg::Bool(b) => json!(b),
        }
    }
}

/// A queue as declared and as exported.
#[derive(Clone, Debug)]
pub struct QueueSpec {
    pub name: String,
    pub arguments: Vec<(&'static str, Arg)>,
    pub description: String,
}

/// An exchange → queue binding.
#[derive(Clone, Debug)]
pub struct BindingSpec {
    pub exchange: String,
    pub queue: String,
    pub routing_key: String,
}

impl Topology {
    /// A topology with the production delay tiers 5 s, 30 s, 5 min.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            retry_tiers: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(300),
            ],
            limits: QueueLimits::default(),
            subscriptions: Vec::new(),
        }
    }
    pub fn retry_tiers(mut self, tiers: impl IntoIterator<Item = Duration>) -> Self {
        self.retry_tiers = tiers.into_iter().collect();
        self
    }
    pub fn limits(mut self, limits: QueueLimits) -> Self {
        self.limits = limits;
        self
    }
    pub fn subscribe(mut self, sub: Subscription) -> Self {
        self.subscriptions.push(sub);
        self
    }

    /// `<service>.<pattern>`.
    pub fn work_queue(&self, pattern: &str) -> String {
        work_queue(&self.service, pattern)
    }
    /// The shard queues of the subscription to `pattern` (none unless it is sharded).
    pub fn shard_queues(&self, pattern: &str) -> Vec<String> {
        let work = self.work_queue(pattern);
        self.subscriptions
            .iter()
            .filter(|s| s.pattern == pattern && s.is_sharded())
            .flat_map(|s| (0..s.shards).map(|i| shard_queue(&work, i)))
            .collect()
    }
    /// `<service>.parking`.
    pub fn parking_queue(&self) -> String {
        parking_queue(&self.service)
    }
    /// `<service>.retry.<delay>` (both the tier exchange and its queue).
    pub fn tier_name(&self, delay: Duration) -> String {
        tier_name(&self.service, delay)
    }

    /// Database connections the consumers of this topology hold at most (size the pool at
    /// least this plus [`crate::RelayConfig::pool_connections`]).
    pub fn pool_connections(&self) -> usize {
        self.subscriptions
            .iter()
            .map(Subscription::pool_connections)
            .sum()
    }

    /// The retry-tier queue names, shortest delay first.
    pub fn tier_queues(&self) -> Vec<String> {
        self.retry_tiers
            .iter()
            .map(|t| self.tier_name(*t))
            .collect()
    }

    /// The service's own fanout exchanges: one per delay tier and `<service>.parking`, each
    /// bound to the queue of the same name. The bus publishes retries and parked messages to
    /// them (never to the default exchange, which least-privilege users may not write to).
    /// Sharded subscriptions add one fanout exchange per shard queue, likewise named and bound:
    /// the sequencer publishes to them.
    pub fn exchanges(&self) -> Vec<String> {
        let mut out = self.tier_queues();
        out.push(self.parking_queue());
        for s in &self.subscriptions {
            out.extend(self.shard_queues(&s.pattern));
        }
        out
    }

    /// Checks names and tiers before anything is declared.
    pub fn validate(&self) -> Result<(), BusError> {
        if self.service.is_empty() || self.service.contains(char::is_whitespace) {
            return Err(BusError::Topology(format!(
                "bad service name {:?}",
                self.service
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.subscriptions {
            if !seen.insert(s.pattern.as_str()) {
                return Err(BusError::Topology(format!(
                    "pattern {} subscribed twice",
                    s.pattern
                )));
            }
            if s.pattern.contains("parking") || s.pattern.starts_with("retry.") {
                return Err(BusError::Topology(format!(
                    "pattern {} collides with the kit's queue names",
                    s.pattern
                )));
            }
        }
        let mut labels = std::collections::HashSet::new();
        for t in &self.retry_tiers {
            if t.is_zero() || !labels.insert(delay_label(*t)) {
                return Err(BusError::Topology(format!("bad or duplicate tier {t:?}")));
            }
        }
        Ok(())
    }

    /// Every queue of the service with its explicit arguments.
    pub fn queues(&self) -> Vec<QueueSpec> {
        let l = &self.limits;
        let quorum = |max_len: i64, max_bytes: i64| {
            vec![
                ("x-queue-type", Arg::Str("quorum".into())),
                ("x-quorum-initial-group-size", Arg::Int(l.group_size)),
                ("x-max-length", Arg::Int(max_len)),
                ("x-max-length-bytes", Arg::Int(max_bytes)),
                ("x-overflow", Arg::Str("reject-publish".into())),
            ]
        };
        let mut out = Vec::new();
        for s in &self.subscriptions {
            let mut args = quorum(l.max_length, l.max_length_bytes);
            args.extend([
                ("x-delivery-limit", Arg::Int(l.delivery_limit)),
                ("x-dead-letter-exchange", Arg::Str(String::new())),
                ("x-dead-letter-routing-key", Arg::Str(self.parking_queue())),
                ("x-dead-letter-strategy", Arg::Str("at-least-once".into())),
            ]);
            let what = if s.description.is_empty() {
                format!("work queue: {} from {TOPIC_EXCHANGE}", s.pattern)
            } else {
                s.description.clone()
            };
            let dead_letters = format!(
                "crash-looping messages (> {} deliveries) dead-letter to {}",
                l.delivery_limit,
                self.parking_queue()
            );
            if !s.is_sharded() {
                out.push(QueueSpec {
                    name: self.work_queue(&s.pattern),
                    arguments: args,
                    description: format!("{what}; {dead_letters}"),
                });
                continue;
            }
            // One active consumer at a time on the sequencer's input and on every shard,
            // whichever replicas are subscribed: that is what keeps an order's sequence.
            args.push(("x-single-active-consumer", Arg::Bool(true)));
            out.push(QueueSpec {
                name: self.work_queue(&s.pattern),
                arguments: args.clone(),
                description: format!(
                    "{what}; sharded: one replica's sequencer at a time forwards each message by \
                     order code to one of {} shard queues {}.shard.<n>; {dead_letters}",
                    s.shards,
                    self.work_queue(&s.pattern)
                ),
            });
            for (i, shard) in self.shard_queues(&s.pattern).into_iter().enumerate() {
                out.push(QueueSpec {
                    name: shard,
                    arguments: args.clone(),
                    description: format!(
                        "shard {i} of {}: the orders whose code hashes here, in sequence; one \
                         replica consumes it at a time, the others wait to take over; \
                         {dead_letters}",
                        self.work_queue(&s.pattern)
                    ),
                });
            }
        }
        for t in &self.retry_tiers {
            let mut args = quorum(l.max_length, l.max_length_bytes);
            args.extend([
                ("x-message-ttl", Arg::Int(t.as_millis() as i64)),
                ("x-dead-letter-exchange", Arg::Str(String::new())),
                ("x-dead-letter-strategy", Arg::Str("at-least-once".into())),
            ]);
            out.push(QueueSpec {
                name: self.tier_name(*t),
                arguments: args,
                description: format!(
                    "retry delay tier {}: messages wait here, then dead-letter via the default \
                     exchange back to the work queue named by their routing key",
                    delay_label(*t)
                ),
            });
        }
        out.push(QueueSpec {
            name: self.parking_queue(),
            arguments: quorum(l.parking_max_length, l.parking_max_length_bytes),
            description: "parking: poison messages and exhausted retries, with x-orderbus-park-* \
                          headers naming reason, routing key, queue and attempts; replay by hand"
                .into(),
        });
        out
    }

    /// Every binding of the service.
    pub fn bindings(&self) -> Vec<BindingSpec> {
        let mut out: Vec<BindingSpec> = self
            .subscriptions
            .iter()
            .map(|s| BindingSpec {
                exchange: TOPIC_EXCHANGE.into(),
                queue: self.work_queue(&s.pattern),
                routing_key: s.pattern.clone(),
            })
            .collect();
        for exchange in self.exchanges() {
            out.push(BindingSpec {
                exchange: exchange.clone(),
                queue: exchange,
                routing_key: String::new(),
            });
        }
        out
    }

    /// Removes what [`Topology::declare`] created (tests, tear-down of a retired service).
    ///
    /// Unbinds from `amq.topic` first and waits `settle` before deleting: RabbitMQ 3.10 can fail
    /// the channel of whoever publishes a message routed to a quorum queue at the moment it is
    /// deleted (INTERNAL_ERROR), which would hit another publisher on these keys, not us.
    pub async fn remove(&self, channel: &Channel, settle: Duration) -> Result<(), BusError> {
        for b in self.bindings() {
            if b.exchange == TOPIC_EXCHANGE {
                channel
                    .queue_unbind(
                        ShortString::from(b.queue),
                        ShortString::from(b.exchange),
                        ShortString::from(b.routing_key),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        tokio::time::sleep(settle).await;
        for q in self.queues() {
            channel
                .queue_delete(ShortString::from(q.name), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in self.exchanges() {
            channel
                .exchange_delete(
                    ShortString::from(exchange),
                    ExchangeDeleteOptions::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Sets the gauges `orderbus_queue_max_length{queue}` and
    /// `orderbus_queue_max_length_bytes{queue}` to each queue's limits, so alerting can compare
    /// a queue's depth (RabbitMQ's `rabbitmq_queue_messages`) with the point where it starts
    /// refusing messages. Called by [`Topology::declare`].
    pub fn report_limits(&self) {
        for q in self.queues() {
            for (arg, gauge) in [
                ("x-max-length", "orderbus_queue_max_length"),
                ("x-max-length-bytes", "orderbus_queue_max_length_bytes"),
            ] {
                if let Some((_, Arg::Int(limit))) = q.arguments.iter().find(|(k, _)| *k == arg) {
                    metrics::gauge!(gauge, "queue" => q.name.clone()).set(*limit as f64);
                }
            }
        }
    }

    /// Declares everything (idempotent: same names, same arguments).
    pub async fn declare(&self, channel: &Channel) -> Result<(), BusError> {
        self.validate()?;
        self.report_limits();
        for exchange in self.exchanges() {
            channel
                .exchange_declare(
                    ShortString::from(exchange),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        for q in self.queues() {
            channel
                .queue_declare(
                    ShortString::from(q.name.clone()),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    field_table(&q.arguments),
                )
                .await?;
        }
        for b in self.bindings() {
            channel
                .queue_bind(
                    ShortString::from(b.queue),
                    ShortString::from(b.exchange),
                    ShortString::from(b.routing_key),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// RabbitMQ definitions JSON (importable with `rabbitmqctl import_definitions`); the
    /// per-queue descriptions are in the extra top-level `orderbus_descriptions` map, which
    /// the importer ignores.
    pub fn definitions(&self, vhost: &str) -> Value {
        let queues: Vec<Value> = self
            .queues()
            .into_iter()
            .map(|q| {
                let args: serde_json::Map<String, Value> = q
                    .arguments
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.to_json()))
                    .collect();
                json!({"name": q.name, "vhost": vhost, "durable": true, "auto_delete": false, "arguments": args})
            })
            .collect();
        let exchanges: Vec<Value> = self
            .exchanges()
            .into_iter()
            .map(|name| json!({"name": name, "vhost": vhost, "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}))
            .collect();
        let bindings: Vec<Value> = self
            .bindings()
            .into_iter()
            .map(|b| json!({"source": b.exchange, "vhost": vhost, "destination": b.queue, "destination_type": "queue", "routing_key": b.routing_key, "arguments": {}}))
            .collect();
        let descriptions: serde_json::Map<String, Value> = self
            .queues()
            .into_iter()
            .map(|q| (q.name, json!(q.description)))
            .collect();
        json!({
            "queues": queues,
            "exchanges": exchanges,
            "bindings": bindings,
            "orderbus_descriptions": descriptions,
        })
    }
}

pub(crate) fn field_table(args: &[(&'static str, Arg)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in args {
        let v = match v {
            Arg::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            Arg::Int(i) => AMQPValue::LongLongInt(*i),
            Arg::Bool(b) => AMQPValue::Boolean(*b),
        };
        t.insert(ShortString::from(*k), v);
    }
    t
}
