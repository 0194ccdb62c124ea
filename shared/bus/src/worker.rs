//! One worker: reads its channel, runs each batch in one transaction (inbox row + handler),
//! then commits and acks; retries through the delay tiers, parks poison.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_lapin::lapin::{
    message::Delivery as RawDelivery, options::BasicAckOptions, types::ShortString, Consumer,
};
use futures::{FutureExt, StreamExt};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ConsumerConfig;
use crate::conn::Backoff;
use crate::delivery::{put, Delivery};
use crate::error::{is_permanent_db_error, BusError, Chain, Disposition, HandlerError};
use crate::inbox;
use crate::names::{
    HEADER_ATTEMPT, HEADER_PARKED_AT, HEADER_PARK_ATTEMPTS, HEADER_PARK_QUEUE, HEADER_PARK_REASON,
    HEADER_RETRY_REASON, HEADER_ROUTING_KEY,
};
use crate::publish::Publisher;
use crate::subscription::Subscription;
use crate::topology::Topology;
use crate::trace;

/// Logs and counts work given up because its channel is gone (the broker redelivers it).
pub(crate) fn abandoned(queue: &str, e: BusError) -> BusError {
    tracing::warn!(queue = %queue, error = %Chain(&e), "channel lost while handling; the broker redelivers the batch");
    metrics::counter!("orderbus_batches_abandoned_total", "queue" => queue.to_owned()).increment(1);
    e
}

/// The generation a consumer task belongs to, checked before every ack.
pub(crate) struct Generation<'a> {
    pub(crate) gen: u64,
    pub(crate) current: &'a AtomicU64,
}

impl Generation<'_> {
    /// Acks `acker` (up to it with `multiple`) unless a newer generation has started: a
    /// delivery of an older generation must never be acked on a newer channel.
    pub(crate) async fn ack(
        &self,
        acker: &deadpool_lapin::lapin::Acker,
        multiple: bool,
        queue: &str,
        timeout: Duration,
    ) -> Result<(), BusError> {
        let not_acked = || BusError::NotAcked {
            queue: queue.to_owned(),
        };
        if self.current.load(Ordering::SeqCst) != self.gen {
            return Err(not_acked());
        }
        let acked = tokio::time::timeout(timeout, acker.ack(BasicAckOptions { multiple }))
            .await
            .map_err(|_| BusError::Timeout {
                what: "basic.ack",
                after: timeout,
            })??;
        if acked {
            Ok(())
        } else {
            Err(not_acked())
        }
    }
}

enum TxOutcome {
    /// Committed; per delivery: true if it was a duplicate (inbox hit).
    Committed(Vec<bool>),
    /// Rolled back because of the delivery at this index.
    Failed(usize, HandlerError),
    /// Shutdown while waiting for the database: leave the deliveries unacked.
    Stopped,
}

pub(crate) struct Worker {
    pub(crate) topology: Arc<Topology>,
    pub(crate) sub: Subscription,
    pub(crate) queue: String,
    pub(crate) pool: PgPool,
    pub(crate) publisher: Publisher,
    pub(crate) config: ConsumerConfig,
    pub(crate) gen: u64,
    pub(crate) current: Arc<AtomicU64>,
    /// Names of the service's retry-tier queues: only deliveries returning from them keep
    /// their `x-orderbus-*` headers.
    pub(crate) tier_queues: Vec<String>,
    /// Set when it consumes a shard queue (fed by the service's own sequencer, see
    /// [`Delivery::from_raw`]): counts the deliveries it receives, so the shard set knows which
    /// shards this replica is the active consumer of.
    pub(crate) shard_deliveries: Option<Arc<AtomicU64>>,
}

impl Worker {
    pub(crate) async fn run(
        self,
        mut consumer: Consumer,
        stop: CancellationToken,
    ) -> Result<(), BusError> {
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
            self.count_delivery();
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

    /// Notes that a delivery arrived (shard queues only).
    pub(crate) fn count_delivery(&self) {
        if let Some(n) = &self.shard_deliveries {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn abandoned(&self, e: BusError) -> BusError {
        abandoned(&self.queue, e)
    }

    pub(crate) async fn process(
        &self,
        batch: Vec<RawDelivery>,
        stop: &CancellationToken,
    ) -> Result<(), BusError> {
        if batch.len() == 1 {
            return self.process_one(&batch[0], stop).await;
        }
        let ds: Vec<Delivery> = batch
            .iter()
            .map(|r| {
                Delivery::from_raw(
                    r,
                    &self.queue,
                    &self.tier_queues,
                    self.shard_deliveries.is_some(),
                )
            })
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
                // One counter update per outcome and batch (each `counter!` with labels is a
                // registry lookup).
                let duplicates = dups.iter().filter(|d| **d).count() as u64;
                self.count_n("duplicate", duplicates);
                self.count_n("done", dups.len() as u64 - duplicates);
                Ok(())
            }
            TxOutcome::Stopped => Ok(()),
            TxOutcome::Failed(i, e) => {
                tracing::debug!(index = i, error = %Chain(&e), "batch failed; processing one by one");
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
        let d = Delivery::from_raw(
            raw,
            &self.queue,
            &self.tier_queues,
            self.shard_deliveries.is_some(),
        );
        let span = d.span();
        self.settle_one(raw, d, stop).instrument(span).await
    }

    /// Handles one delivery in its own transaction and settles it: ack, retry tier or parking.
    async fn settle_one(
        &self,
        raw: &RawDelivery,
        d: Delivery,
        stop: &CancellationToken,
    ) -> Result<(), BusError> {
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
            TxOutcome::Failed(_, e) if e.disposition() == Disposition::Retry => {
                let reason = e.describe();
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
            TxOutcome::Failed(_, e) => self.park(raw, &d, &e.describe()).await,
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
        // Through the service's parking exchange: publishers (our own users included) may not
        // write to the default exchange.
        let parking = self.topology.parking_queue();
        self.publisher
            .publish_raw(&parking, &parking, &raw.data, props)
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
        Generation {
            gen: self.gen,
            current: &self.current,
        }
        .ack(acker, multiple, &self.queue, self.config.publish_timeout)
        .await
    }

    fn observe(&self, started: Instant, n: usize) {
        let per = started.elapsed().as_secs_f64() / n.max(1) as f64;
        metrics::histogram!("orderbus_handler_duration_seconds", "queue" => self.queue.clone())
            .record(per);
    }

    fn count(&self, outcome: &'static str) {
        self.count_n(outcome, 1);
    }

    fn count_n(&self, outcome: &'static str, n: u64) {
        if n > 0 {
            metrics::counter!("orderbus_messages_consumed_total", "queue" => self.queue.clone(), "outcome" => outcome)
                .increment(n);
        }
    }

    /// Opens a transaction, waiting (not nacking) while the database is unavailable.
    async fn begin(&self, stop: &CancellationToken) -> Option<Transaction<'static, Postgres>> {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.config.db_retry_cap);
        loop {
            match tokio::time::timeout(self.config.db_timeout, self.pool.begin()).await {
                Ok(Ok(tx)) => return Some(tx),
                Ok(Err(e)) => {
                    tracing::warn!(queue = %self.queue, error = %Chain(&e), "database unavailable; pausing")
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

    async fn run_tx(&self, ds: &[Delivery], stop: &CancellationToken) -> TxOutcome {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.config.db_retry_cap);
        'outer: loop {
            let Some(mut tx) = self.begin(stop).await else {
                return TxOutcome::Stopped;
            };
            // One inbox statement for the whole batch: the ids it inserted are new, the others
            // were processed before (or appear twice in this batch) and are acked as duplicates.
            let inserted = tokio::time::timeout(
                self.config.db_timeout,
                inbox::claim(&mut tx, &self.queue, ds),
            )
            .await;
            let mut fresh = match inserted {
                Ok(Ok(ids)) => ids,
                // A message id or routing key the table refuses (NUL, …) fails every time:
                // park the message instead of pausing on it forever.
                Ok(Err(e)) if is_permanent_db_error(&e) => {
                    drop(tx);
                    return TxOutcome::Failed(0, HandlerError::from(e).context("inbox"));
                }
                Ok(Err(e)) => {
                    // Infrastructure, not the handler: pause and start over.
                    tracing::warn!(queue = %self.queue, error = %Chain(&e), "inbox insert failed; pausing");
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
                // One message: `settle_one` already runs in its span. A batch: each handler
                // call in its own. Either way the handler runs in the message's trace context,
                // so the outbox rows it writes continue that trace.
                let span = if ds.len() == 1 {
                    tracing::Span::current()
                } else {
                    d.span()
                };
                let handled = trace::in_context(
                    d.trace_context().clone(),
                    self.sub.handler.handle(d, &mut tx),
                );
                let fut = std::panic::AssertUnwindSafe(handled)
                    .catch_unwind()
                    .instrument(span.clone());
                let res = match tokio::time::timeout(self.config.handler_timeout, fut).await {
                    Err(_) => Err(HandlerError::retry(format!(
                        "handler timed out after {:?}",
                        self.config.handler_timeout
                    ))),
                    Ok(Err(panic)) => Err(HandlerError::park(panic_reason(panic.as_ref()))),
                    Ok(Ok(r)) => r,
                };
                if let Err(e) = res {
                    let _ = tokio::time::timeout(self.config.db_timeout, tx.rollback()).await;
                    return TxOutcome::Failed(i, e);
                }
                // One line per applied message, in its span (trace id, key, message id), so a
                // trace can be followed through every consumer at debug level.
                span.in_scope(|| tracing::debug!("handled"));
            }
            return match tokio::time::timeout(self.config.db_timeout, tx.commit()).await {
                Ok(Ok(())) => TxOutcome::Committed(dups),
                // Classified like the handler's own database errors (a deferred constraint
                // fails here).
                Ok(Err(e)) => TxOutcome::Failed(0, HandlerError::from(e).context("commit")),
                Err(_) => TxOutcome::Failed(0, HandlerError::retry("commit timed out")),
            };
        }
    }
}

/// `handler panicked: <message>` when the panic carried a message.
fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    match message {
        Some(m) => format!("handler panicked: {m}"),
        None => "handler panicked".to_owned(),
    }
}

fn truncate(s: &str) -> String {
    // Header values stay readable in the management UI.
    s.chars().take(1000).collect()
}
