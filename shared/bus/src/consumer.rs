//! Consumers: manual ack after commit, inbox dedup, retry tiers, parking, supervision.

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_lapin::lapin::{
    message::Delivery as RawDelivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Connection, Consumer, Event,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::conn::{close_channel_quietly, close_quietly, connect, Backoff};
use crate::error::{BusError, OutboxError};
use crate::health::Health;
use crate::publish::{OutgoingMessage, Publisher, TRACEPARENT};
use crate::topology::{Subscription, Topology};

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

pub type HandlerFuture<'a> = BoxFuture<'a, Result<(), HandlerError>>;

/// A message handler. It runs inside the transaction the kit opened (the inbox row is written
/// in the same transaction and the kit commits, then acks). Enqueue outgoing messages with
/// [`crate::Outbox`] on the same `conn`.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        delivery: &'a Delivery,
        conn: &'a mut PgConnection,
    ) -> HandlerFuture<'a>;

    /// What a delivery's ordering is about (the order code), read from its body, for
    /// subscriptions with several partitions: messages with the same key are always handled in
    /// one partition, in arrival order. `None` (the default): the AMQP `correlation_id` decides,
    /// and without one the message goes to the first partition.
    fn partition_key(&self, _body: &[u8]) -> Option<String> {
        None
    }
}

/// What a handler sees of a delivery.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The original routing key (also for retried messages).
    pub routing_key: String,
    /// The work queue it was consumed from.
    pub queue: String,
    pub body: Vec<u8>,
    /// AMQP `message_id`, or `sha256:<hex>` of routing key + body when the publisher set none.
    pub message_id: String,
    pub redelivered: bool,
    /// 1 for the first delivery, n + 1 after n retries.
    pub attempt: u32,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    headers: FieldTable,
}

impl Delivery {
    /// Builds a delivery for tests or for custom adapters.
    pub fn new(routing_key: impl Into<String>, queue: impl Into<String>, body: Vec<u8>) -> Self {
        let routing_key = routing_key.into();
        let message_id = hash_id(&routing_key, &body);
        Self {
            routing_key,
            queue: queue.into(),
            body,
            message_id,
            redelivered: false,
            attempt: 1,
            correlation_id: None,
            traceparent: None,
            headers: FieldTable::default(),
        }
    }

    fn from_raw(raw: &RawDelivery, queue: &str) -> Self {
        let headers = raw.properties.headers().clone().unwrap_or_default();
        let routing_key = header_string(&headers, HEADER_ROUTING_KEY)
            .unwrap_or_else(|| raw.routing_key.as_str().to_owned());
        let message_id = raw
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| hash_id(&routing_key, &raw.data));
        let attempt = header_string(&headers, HEADER_ATTEMPT)
            .and_then(|a| a.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        Self {
            routing_key,
            queue: queue.to_owned(),
            body: raw.data.clone(),
            message_id,
            redelivered: raw.redelivered,
            attempt,
            correlation_id: raw
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            traceparent: header_string(&headers, TRACEPARENT),
            headers,
        }
    }

    /// A header as a string (string and integer values).
    pub fn header(&self, name: &str) -> Option<String> {
        header_string(&self.headers, name)
    }

    /// Decodes the body as JSON; a failure parks with serde's message.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HandlerError::Park(format!("undecodable JSON: {e}")))
    }

    /// An outgoing message that continues this delivery's trace and correlation id.
    pub fn follow_up(&self, routing_key: impl Into<String>, body: Vec<u8>) -> OutgoingMessage {
        OutgoingMessage::new(routing_key, body)
            .child_of(self.traceparent.as_deref())
            .correlation_id(self.correlation_id.clone())
    }
}

fn hash_id(routing_key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(routing_key.as_bytes());
    h.update(b"\n");
    h.update(body);
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn header_string(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(i) => Some(i.to_string()),
        AMQPValue::LongInt(i) => Some(i.to_string()),
        AMQPValue::LongUInt(i) => Some(i.to_string()),
        AMQPValue::ShortInt(i) => Some(i.to_string()),
        AMQPValue::ShortUInt(i) => Some(i.to_string()),
        AMQPValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn put(headers: &mut FieldTable, name: &str, value: impl Into<String>) {
    let v: String = value.into();
    headers.insert(
        ShortString::from(name),
        AMQPValue::LongString(LongString::from(v.as_str())),
    );
}

/// A handler for one message type, decoded before the call. Implement it with a plain
/// `async fn handle(&self, message: M, delivery: &Delivery, conn: &mut PgConnection) ->
/// Result<(), HandlerError>`; only the type-erasing adapter ([`typed`]) boxes the future.
pub trait MessageHandler<M>: Send + Sync + 'static {
    fn handle(
        &self,
        message: M,
        delivery: &Delivery,
        conn: &mut PgConnection,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

struct Typed<M, H> {
    handler: H,
    decode: fn(&[u8]) -> Result<M, String>,
    key: fn(&M) -> Option<String>,
}

impl<M: Send + Sync + 'static, H: MessageHandler<M>> Handler for Typed<M, H> {
    fn handle<'a>(
        &'a self,
        delivery: &'a Delivery,
        conn: &'a mut PgConnection,
    ) -> HandlerFuture<'a> {
        match (self.decode)(&delivery.body) {
            Ok(m) => Box::pin(self.handler.handle(m, delivery, conn)),
            Err(e) => Box::pin(async move { Err(HandlerError::Park(format!("undecodable: {e}"))) }),
        }
    }

    fn partition_key(&self, body: &[u8]) -> Option<String> {
        (self.decode)(body).ok().and_then(|m| (self.key)(&m))
    }
}

/// Adapts a typed handler: a decode failure parks with the decoder's message (for contract
/// messages the contracts' `decode` names the JSON path of the bad field).
pub fn typed<M, H>(handler: H) -> Arc<dyn Handler>
where
    M: orderbus_contracts::Message,
    H: MessageHandler<M>,
{
    fn decode<M: orderbus_contracts::Message>(body: &[u8]) -> Result<M, String> {
        orderbus_contracts::decode::<M>(body).map_err(|e| e.to_string())
    }
    Arc::new(Typed {
        handler,
        decode: decode::<M>,
        key: <M as orderbus_contracts::Message>::correlation_id,
    })
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

/// Like [`typed`] with a custom decoder (for bodies that are not contract messages).
pub fn typed_with<M, H>(decode: fn(&[u8]) -> Result<M, String>, handler: H) -> Arc<dyn Handler>
where
    M: Send + Sync + 'static,
    H: MessageHandler<M>,
{
    Arc::new(Typed {
        handler,
        decode,
        key: |_| None,
    })
}

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
        }
    }
}

/// All consumers of a service on one supervised connection.
pub struct Consumers {
    topology: Arc<Topology>,
    pool: PgPool,
    amqp_url: String,
    config: ConsumerConfig,
    health: Health,
    generation: Arc<AtomicU64>,
}

impl Consumers {
    pub fn new(
        topology: Topology,
        pool: PgPool,
        amqp_url: impl Into<String>,
        health: Health,
    ) -> Self {
        let consumers = Self {
            topology: Arc::new(topology),
            pool,
            amqp_url: amqp_url.into(),
            config: ConsumerConfig::default(),
            health,
            generation: Arc::new(AtomicU64::new(0)),
        };
        // Registered (not ready) at construction, so /readyz cannot say ready because another
        // component came up before this task first ran.
        consumers.health.set(&consumers.health_key(), false);
        consumers
    }

    pub fn with_config(mut self, config: ConsumerConfig) -> Self {
        self.config = config;
        self
    }

    fn health_key(&self) -> String {
        format!("consumers:{}", self.topology.service)
    }

    /// Runs until `shutdown`, rebuilding connection → channels → qos → topology → consumers on
    /// any error or unrequested end of a consumer stream. On shutdown: stop consuming, finish
    /// in-flight messages, ack, close. (The caller bounds the drain with its grace period.)
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        self.topology.validate()?;
        let key = self.health_key();
        self.health.set(&key, false);
        let mut backoff = Backoff::new(self.config.reconnect_base, self.config.reconnect_cap);
        while !shutdown.is_cancelled() {
            let gen = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            match self.generation_run(gen, &shutdown, &mut backoff).await {
                Ok(()) => break,
                Err(e) => {
                    self.health.set(&key, false);
                    metrics::counter!("orderbus_connection_rebuilds_total", "role" => "consumers")
                        .increment(1);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, generation = gen, ?delay, "consumers: rebuilding");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.health.set(&key, false);
        Ok(())
    }

    async fn generation_run(
        &self,
        gen: u64,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), BusError> {
        let conn = connect(
            &self.amqp_url,
            &format!("{} consumers g{gen}", self.topology.service),
            self.config.connect_timeout,
        )
        .await?;
        let result = self.serve(&conn, gen, shutdown, backoff).await;
        close_quietly(&conn).await;
        result
    }

    async fn serve(
        &self,
        conn: &Connection,
        gen: u64,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), BusError> {
        let t = self.config.connect_timeout;
        let timeout_err = |what| BusError::Timeout { what, after: t };
        let mut events = conn.events_listener();
        let topo_channel = tokio::time::timeout(t, conn.create_channel())
            .await
            .map_err(|_| timeout_err("create channel"))??;
        tokio::time::timeout(t, self.topology.declare(&topo_channel))
            .await
            .map_err(|_| timeout_err("declare topology"))??;
        let _ = tokio::time::timeout(t, topo_channel.close(200, "declared".into())).await;

        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        // Every channel of this generation, closed before the connection on a clean shutdown.
        let mut channels = Vec::new();
        for (i, sub) in self.topology.subscriptions.iter().enumerate() {
            let queue = self.topology.work_queue(&sub.pattern);
            // Competing consumers: each worker has its own channel, so its acks and its
            // generation check only ever concern deliveries of that channel.
            for w in 0..sub.concurrency.max(1) {
                let channel = tokio::time::timeout(t, conn.create_channel())
                    .await
                    .map_err(|_| timeout_err("create channel"))??;
                tokio::time::timeout(
                    t,
                    channel.basic_qos(sub.prefetch, BasicQosOptions::default()),
                )
                .await
                .map_err(|_| timeout_err("basic.qos"))??;
                let consumer = tokio::time::timeout(
                    t,
                    channel.basic_consume(
                        ShortString::from(queue.clone()),
                        ShortString::from(format!("{queue}.g{gen}.{i}.{w}")),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    ),
                )
                .await
                .map_err(|_| timeout_err("basic.consume"))??;
                channels.push(channel.clone());
                // Own confirm channel per worker and partition: one publish in flight per
                // channel keeps returned-message attribution exact.
                let mut lanes = Vec::with_capacity(sub.partitions.max(1));
                for _ in 0..sub.partitions.max(1) {
                    let publisher = Publisher::open(
                        conn,
                        self.topology.service.clone(),
                        self.config.publish_timeout,
                    )
                    .await?;
                    channels.push(publisher.channel().clone());
                    lanes.push(Worker {
                        topology: self.topology.clone(),
                        sub: sub.clone(),
                        queue: queue.clone(),
                        pool: self.pool.clone(),
                        publisher,
                        config: self.config.clone(),
                        gen,
                        current: self.generation.clone(),
                    });
                }
                match (lanes.len(), lanes.pop()) {
                    (1, Some(worker)) => tasks.spawn(worker.run(consumer, stop.clone())),
                    _ => tasks.spawn(run_partitioned(lanes, consumer, stop.clone())),
                };
            }
        }
        self.health.set(&self.health_key(), true);
        backoff.reset();
        tracing::info!(generation = gen, service = %self.topology.service, "consumers running");

        let outcome = loop {
            // Workers watch a child of `shutdown`: on shutdown one of them may end first, and
            // that is the drain starting, not a failure to rebuild from.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                Some(joined) = tasks.join_next() => {
                    if shutdown.is_cancelled() {
                        break Ok(());
                    }
                    break Err(match joined {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => BusError::Connection("consumer task stopped".into()),
                        Err(e) => BusError::Connection(format!("consumer task failed: {e}")),
                    });
                }
                ev = events.next() => match ev {
                    Some(Event::Error(e)) => break Err(BusError::Amqp(e)),
                    Some(_) => {}
                    None => break Err(BusError::Connection("connection event stream ended".into())),
                },
            }
        };
        self.health.set(&self.health_key(), false);
        match outcome {
            Ok(()) => {
                // Drain: workers stop taking deliveries, finish (commit + ack) the current ones.
                stop.cancel();
                while let Some(joined) = tasks.join_next().await {
                    if let Ok(Err(e)) = joined {
                        tracing::warn!(error = %e, "consumer ended with an error during drain");
                    }
                }
                for channel in &channels {
                    close_channel_quietly(channel).await;
                }
                Ok(())
            }
            Err(e) => {
                stop.cancel();
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                Err(e)
            }
        }
    }
}

/// Logs and counts work given up because its channel is gone (the broker redelivers it).
fn abandoned(queue: &str, e: BusError) -> BusError {
    tracing::warn!(queue = %queue, error = %e, "channel lost while handling; the broker redelivers the batch");
    metrics::counter!("orderbus_batches_abandoned_total", "queue" => queue.to_owned()).increment(1);
    e
}

/// Which of `n` partitions handles `key` (stable for the life of the process, which is all
/// that ordering needs: a redelivery after a restart starts from the queue's order again).
fn partition_of(key: &str, n: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

/// A worker with several partitions ([`Subscription::partitions`]): this task keeps reading
/// the channel and hands each delivery to the partition of its key (the handler's
/// [`Handler::partition_key`], else the AMQP `correlation_id`, else the first partition), so
/// one order's messages are handled one after the other in arrival order while other orders
/// proceed in parallel. If the channel is lost, every partition's work is abandoned at once (as
/// in [`Worker::run`]); on shutdown the partitions finish their current batch and what they
/// had not started stays unacked for the broker to requeue.
async fn run_partitioned(
    lanes: Vec<Worker>,
    mut consumer: Consumer,
    stop: CancellationToken,
) -> Result<(), BusError> {
    let Some(first) = lanes.first() else {
        return Ok(());
    };
    let (queue, handler, n) = (first.queue.clone(), first.sub.handler.clone(), lanes.len());
    let busy = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    for lane in lanes {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        tasks.spawn(lane.run_partition(rx, stop.clone(), busy.clone()));
    }
    let lost = |e: BusError| {
        if busy.load(Ordering::SeqCst) > 0 {
            abandoned(&queue, e)
        } else {
            e
        }
    };
    let failure = loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                drop(senders);
                while let Some(joined) = tasks.join_next().await {
                    if let Ok(Err(e)) = joined {
                        return Err(e);
                    }
                }
                return Ok(());
            }
            Some(joined) = tasks.join_next() => break match joined {
                Ok(Err(e)) => e,
                Ok(Ok(())) => BusError::Connection(format!("a partition of {queue} stopped")),
                Err(e) => BusError::Connection(format!("a partition of {queue} failed: {e}")),
            },
            next = consumer.next() => match next {
                Some(Ok(d)) => {
                    let key = handler.partition_key(&d.data).or_else(|| {
                        d.properties.correlation_id().as_ref().map(|c| c.as_str().to_owned())
                    });
                    let i = key.map_or(0, |k| partition_of(&k, n));
                    if senders[i].send(d).is_err() {
                        break BusError::Connection(format!("a partition of {queue} stopped"));
                    }
                }
                Some(Err(e)) => break lost(e.into()),
                None => break lost(BusError::ConsumerEnded { queue: queue.clone() }),
            },
        }
    };
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Err(failure)
}

enum TxOutcome {
    /// Committed; per delivery: true if it was a duplicate (inbox hit).
    Committed(Vec<bool>),
    /// Rolled back because of the delivery at this index.
    Failed(usize, HandlerError),
    /// Shutdown while waiting for the database: leave the deliveries unacked.
    Stopped,
}

struct Worker {
    topology: Arc<Topology>,
    sub: Subscription,
    queue: String,
    pool: PgPool,
    publisher: Publisher,
    config: ConsumerConfig,
    gen: u64,
    current: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self, mut consumer: Consumer, stop: CancellationToken) -> Result<(), BusError> {
        // Deliveries that arrived while a batch was being processed (see below).
        let mut buffered: VecDeque<RawDelivery> = VecDeque::new();
        loop {
            let first = match buffered.pop_front() {
                Some(d) => d,
                None => {
                    let next = tokio::select! {
                        biased;
                        _ = stop.cancelled() => return Ok(()),
                        next = consumer.next() => next,
                    };
                    match next {
                        None => {
                            return Err(BusError::ConsumerEnded {
                                queue: self.queue.clone(),
                            })
                        }
                        Some(Err(e)) => return Err(e.into()),
                        Some(Ok(d)) => d,
                    }
                }
            };
            if stop.is_cancelled() {
                // Draining: leave it unacked; the broker requeues it when the channel closes.
                return Ok(());
            }
            let mut batch = vec![first];
            let mut pending_err = None;
            // Batch only what is already here (prefetched): no added latency.
            while batch.len() < self.sub.batch {
                if let Some(d) = buffered.pop_front() {
                    batch.push(d);
                    continue;
                }
                match consumer.next().now_or_never() {
                    Some(Some(Ok(d))) => batch.push(d),
                    Some(Some(Err(e))) => {
                        pending_err = Some(BusError::from(e));
                        break;
                    }
                    Some(None) => {
                        pending_err = Some(BusError::ConsumerEnded {
                            queue: self.queue.clone(),
                        });
                        break;
                    }
                    None => break,
                }
            }
            // Keep reading the channel while the handler runs: if the broker closes it (ack
            // timeout, queue deleted, connection trouble) the batch's deliveries are already
            // requeued by the broker and can never be acked here, so the work is abandoned at
            // once (its transaction rolls back) instead of finishing into a failed ack.
            let work = self.process(batch, &stop);
            tokio::pin!(work);
            loop {
                tokio::select! {
                    biased;
                    done = &mut work => {
                        done?;
                        break;
                    }
                    next = consumer.next(), if pending_err.is_none() => match next {
                        Some(Ok(d)) => buffered.push_back(d),
                        Some(Err(e)) => return Err(self.abandoned(e.into())),
                        None => {
                            return Err(self.abandoned(BusError::ConsumerEnded {
                                queue: self.queue.clone(),
                            }))
                        }
                    },
                }
            }
            if let Some(e) = pending_err {
                return Err(e);
            }
        }
    }

    fn abandoned(&self, e: BusError) -> BusError {
        abandoned(&self.queue, e)
    }

    /// One partition of [`run_partitioned`]: batches what its dispatcher handed it (never
    /// waiting for more) and handles it like [`Worker::run`] does.
    async fn run_partition(
        self,
        mut deliveries: mpsc::UnboundedReceiver<RawDelivery>,
        stop: CancellationToken,
        busy: Arc<AtomicUsize>,
    ) -> Result<(), BusError> {
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                next = deliveries.recv() => match next {
                    Some(d) => d,
                    None => return Ok(()),
                },
            };
            let mut batch = vec![first];
            while batch.len() < self.sub.batch {
                match deliveries.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
            busy.fetch_add(1, Ordering::SeqCst);
            let done = self.process(batch, &stop).await;
            busy.fetch_sub(1, Ordering::SeqCst);
            done?;
        }
    }

    async fn process(
        &self,
        batch: Vec<RawDelivery>,
        stop: &CancellationToken,
    ) -> Result<(), BusError> {
        if batch.len() == 1 {
            return self.process_one(&batch[0], stop).await;
        }
        let ds: Vec<Delivery> = batch
            .iter()
            .map(|r| Delivery::from_raw(r, &self.queue))
            .collect();
        let started = Instant::now();
        match self.run_tx(&ds, stop).await {
            TxOutcome::Committed(dups) => {
                if self.sub.partitions > 1 {
                    // Other partitions' deliveries interleave with ours: a multi-ack would
                    // ack their uncommitted work.
                    let acks = batch.iter().map(|raw| self.ack(&raw.acker, false));
                    futures::future::try_join_all(acks).await?;
                } else if let Some(last) = batch.last() {
                    self.ack(&last.acker, true).await?;
                }
                self.observe(started, ds.len());
                for dup in dups {
                    self.count(if dup { "duplicate" } else { "done" });
                }
                Ok(())
            }
            TxOutcome::Stopped => Ok(()),
            TxOutcome::Failed(i, e) => {
                tracing::debug!(index = i, error = %e, "batch failed; processing one by one");
                for raw in &batch {
                    self.process_one(raw, stop).await?;
                }
                Ok(())
            }
        }
    }

    async fn process_one(
        &self,
        raw: &RawDelivery,
        stop: &CancellationToken,
    ) -> Result<(), BusError> {
        let d = Delivery::from_raw(raw, &self.queue);
        let started = Instant::now();
        match self.run_tx(std::slice::from_ref(&d), stop).await {
            TxOutcome::Stopped => Ok(()),
            TxOutcome::Committed(dups) => {
                self.ack(&raw.acker, false).await?;
                self.observe(started, 1);
                self.count(if dups.first().copied().unwrap_or(false) {
                    "duplicate"
                } else {
                    "done"
                });
                Ok(())
            }
            TxOutcome::Failed(_, HandlerError::Retry(reason)) => {
                let max = self
                    .sub
                    .max_retries
                    .unwrap_or(self.topology.retry_tiers.len() as u32);
                if d.attempt <= max && !self.topology.retry_tiers.is_empty() {
                    let idx = (d.attempt as usize - 1).min(self.topology.retry_tiers.len() - 1);
                    let tier = self.topology.tier_name(self.topology.retry_tiers[idx]);
                    let mut headers = d.headers.clone();
                    put(&mut headers, HEADER_ATTEMPT, (d.attempt + 1).to_string());
                    put(&mut headers, HEADER_ROUTING_KEY, d.routing_key.clone());
                    put(&mut headers, HEADER_RETRY_REASON, truncate(&reason));
                    let props = raw
                        .properties
                        .clone()
                        .with_message_id(ShortString::from(d.message_id.as_str()))
                        .with_headers(headers);
                    // Routing key = work queue: the tier dead-letters back through the default
                    // exchange with it.
                    self.publisher
                        .publish_raw(&tier, &self.queue, &raw.data, props)
                        .await?;
                    self.ack(&raw.acker, false).await?;
                    tracing::info!(queue = %self.queue, message_id = %d.message_id, attempt = d.attempt, %tier, %reason, "retrying later");
                    metrics::counter!("orderbus_messages_retried_total", "queue" => self.queue.clone()).increment(1);
                    self.count("retried");
                    Ok(())
                } else {
                    self.park(
                        raw,
                        &d,
                        &format!("retries exhausted after {} attempts: {reason}", d.attempt),
                    )
                    .await
                }
            }
            TxOutcome::Failed(_, HandlerError::Park(reason)) => self.park(raw, &d, &reason).await,
        }
    }

    async fn park(&self, raw: &RawDelivery, d: &Delivery, reason: &str) -> Result<(), BusError> {
        let mut headers = d.headers.clone();
        put(&mut headers, HEADER_PARK_REASON, truncate(reason));
        put(&mut headers, HEADER_ROUTING_KEY, d.routing_key.clone());
        put(&mut headers, HEADER_PARK_QUEUE, self.queue.clone());
        put(&mut headers, HEADER_PARK_ATTEMPTS, d.attempt.to_string());
        put(
            &mut headers,
            HEADER_PARKED_AT,
            chrono::Utc::now().to_rfc3339(),
        );
        let props = raw
            .properties
            .clone()
            .with_message_id(ShortString::from(d.message_id.as_str()))
            .with_headers(headers);
        self.publisher
            .publish_raw("", &self.topology.parking_queue(), &raw.data, props)
            .await?;
        self.ack(&raw.acker, false).await?;
        tracing::warn!(queue = %self.queue, message_id = %d.message_id, %reason, "parked");
        metrics::counter!("orderbus_messages_parked_total", "queue" => self.queue.clone())
            .increment(1);
        self.count("parked");
        Ok(())
    }

    async fn ack(
        &self,
        acker: &deadpool_lapin::lapin::Acker,
        multiple: bool,
    ) -> Result<(), BusError> {
        // A delivery of an older generation must never be acked on a newer channel.
        if self.current.load(Ordering::SeqCst) != self.gen {
            return Err(BusError::NotAcked {
                queue: self.queue.clone(),
            });
        }
        let acked = tokio::time::timeout(
            self.config.publish_timeout,
            acker.ack(BasicAckOptions { multiple }),
        )
        .await
        .map_err(|_| BusError::Timeout {
            what: "basic.ack",
            after: self.config.publish_timeout,
        })??;
        if acked {
            Ok(())
        } else {
            Err(BusError::NotAcked {
                queue: self.queue.clone(),
            })
        }
    }

    fn observe(&self, started: Instant, n: usize) {
        let per = started.elapsed().as_secs_f64() / n.max(1) as f64;
        metrics::histogram!("orderbus_handler_duration_seconds", "queue" => self.queue.clone())
            .record(per);
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!("orderbus_messages_consumed_total", "queue" => self.queue.clone(), "outcome" => outcome)
            .increment(1);
    }

    /// Opens a transaction, waiting (not nacking) while the database is unavailable.
    async fn begin(&self, stop: &CancellationToken) -> Option<Transaction<'static, Postgres>> {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.config.db_retry_cap);
        loop {
            match tokio::time::timeout(self.config.db_timeout, self.pool.begin()).await {
                Ok(Ok(tx)) => return Some(tx),
                Ok(Err(e)) => {
                    tracing::warn!(queue = %self.queue, error = %e, "database unavailable; pausing")
                }
                Err(_) => tracing::warn!(queue = %self.queue, "database begin timed out; pausing"),
            }
            metrics::counter!("orderbus_db_unavailable_total", "queue" => self.queue.clone())
                .increment(1);
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Inserts the batch's inbox rows; returns the message ids that were not there before.
    async fn claim_inbox(
        &self,
        ds: &[Delivery],
        tx: &mut Transaction<'static, Postgres>,
    ) -> Result<std::collections::HashSet<String>, sqlx::Error> {
        let ids: Vec<&str> = ds.iter().map(|d| d.message_id.as_str()).collect();
        let keys: Vec<&str> = ds.iter().map(|d| d.routing_key.as_str()).collect();
        let rows: Vec<String> = sqlx::query_scalar(
            "INSERT INTO orderbus_inbox (consumer, message_id, routing_key) \
             SELECT $1, m, k FROM UNNEST($2::text[], $3::text[]) AS t(m, k) \
             ON CONFLICT DO NOTHING RETURNING message_id",
        )
        .bind(&self.queue)
        .bind(&ids)
        .bind(&keys)
        .fetch_all(&mut **tx)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn run_tx(&self, ds: &[Delivery], stop: &CancellationToken) -> TxOutcome {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.config.db_retry_cap);
        'outer: loop {
            let Some(mut tx) = self.begin(stop).await else {
                return TxOutcome::Stopped;
            };
            // One inbox statement for the whole batch: the ids it inserted are new, the others
            // were processed before (or appear twice in this batch) and are acked as duplicates.
            let inserted =
                tokio::time::timeout(self.config.db_timeout, self.claim_inbox(ds, &mut tx)).await;
            let mut fresh = match inserted {
                Ok(Ok(ids)) => ids,
                Ok(Err(e)) => {
                    // Infrastructure, not the handler: pause and start over.
                    tracing::warn!(queue = %self.queue, error = %e, "inbox insert failed; pausing");
                    drop(tx);
                    tokio::select! {
                        _ = stop.cancelled() => return TxOutcome::Stopped,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue 'outer,
                    }
                }
                Err(_) => {
                    drop(tx);
                    tokio::select! {
                        _ = stop.cancelled() => return TxOutcome::Stopped,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue 'outer,
                    }
                }
            };
            let mut dups = Vec::with_capacity(ds.len());
            for (i, d) in ds.iter().enumerate() {
                if !fresh.remove(d.message_id.as_str()) {
                    dups.push(true);
                    continue;
                }
                dups.push(false);
                let fut = std::panic::AssertUnwindSafe(self.sub.handler.handle(d, &mut tx))
                    .catch_unwind();
                let res = match tokio::time::timeout(self.config.handler_timeout, fut).await {
                    Err(_) => Err(HandlerError::Retry(format!(
                        "handler timed out after {:?}",
                        self.config.handler_timeout
                    ))),
                    Ok(Err(_panic)) => Err(HandlerError::Park("handler panicked".into())),
                    Ok(Ok(r)) => r,
                };
                if let Err(e) = res {
                    let _ = tokio::time::timeout(self.config.db_timeout, tx.rollback()).await;
                    return TxOutcome::Failed(i, e);
                }
            }
            return match tokio::time::timeout(self.config.db_timeout, tx.commit()).await {
                Ok(Ok(())) => TxOutcome::Committed(dups),
                Ok(Err(e)) => {
                    TxOutcome::Failed(0, HandlerError::Retry(format!("commit failed: {e}")))
                }
                Err(_) => TxOutcome::Failed(0, HandlerError::Retry("commit timed out".into())),
            };
        }
    }
}

fn truncate(s: &str) -> String {
    // Header values stay readable in the management UI.
    s.chars().take(1000).collect()
}
