//! The sequencer of a sharded subscription: the active consumer of its work queue (one at a
//! time across all replicas: `x-single-active-consumer`) forwards every message to the shard
//! queue of its order, in the order the work queue holds them, and acks them only once the
//! shard queues have confirmed the copies.
//!
//! A failure anywhere (a copy nacked or returned, a lost channel) ends the task, so the
//! generation is rebuilt and the broker hands the unacked window to the next active sequencer
//! in its original order. Copies that were confirmed before the failure are forwarded again:
//! the shard's inbox absorbs them (same `message_id`), and since a window is forwarded as a
//! prefix of the queue, an order's later message never lands ahead of an earlier one.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use deadpool_lapin::lapin::{message::Delivery as RawDelivery, types::ShortString, Consumer};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::delivery::{put, Delivery};
use crate::error::BusError;
use crate::handler::Handler;
use crate::names::{shard_of, HEADER_ROUTING_KEY};
use crate::publish::Publisher;
use crate::worker::Generation;

pub(crate) struct Sequencer {
    /// The work queue it reads.
    pub(crate) queue: String,
    /// The shard exchanges (each bound to the shard queue of the same name), by shard number.
    pub(crate) shards: Vec<String>,
    /// Gives the order key of a body (the contract's order code).
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) publisher: Publisher,
    pub(crate) tier_queues: Vec<String>,
    /// Messages forwarded per confirm round trip at most (the work queue's prefetch).
    pub(crate) window: usize,
    pub(crate) gen: u64,
    pub(crate) current: Arc<AtomicU64>,
    pub(crate) ack_timeout: Duration,
}

impl Sequencer {
    pub(crate) async fn run(
        self,
        mut consumer: Consumer,
        stop: CancellationToken,
    ) -> Result<(), BusError> {
        let ended = || BusError::ConsumerEnded {
            queue: self.queue.clone(),
        };
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(ended()),
                },
            };
            // Forward what is already here (prefetched) with the first one: no added latency.
            let mut window = vec![first];
            while window.len() < self.window {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(d))) => window.push(d),
                    Some(Some(Err(e))) => return Err(e.into()),
                    Some(None) => return Err(ended()),
                    None => break,
                }
            }
            let span =
                tracing::debug_span!("sequence", queue = %self.queue, messages = window.len());
            self.forward(&window).instrument(span).await?;
        }
    }

    /// Forwards one window and acks it (one multiple ack: this channel has one consumer, and
    /// every earlier delivery is already acked).
    async fn forward(&self, window: &[RawDelivery]) -> Result<(), BusError> {
        let mut copies = Vec::with_capacity(window.len());
        for raw in window {
            // Read like any work-queue delivery: the publisher's `x-orderbus-*` headers are
            // dropped, the message id is the one the shard's inbox will key on.
            let d = Delivery::from_raw(raw, &self.queue, &self.tier_queues, false);
            let key = self
                .handler
                .partition_key(&raw.data)
                .or_else(|| d.correlation_id.clone());
            let shard = key.as_deref().map_or(0, |k| shard_of(k, self.shards.len()));
            let mut headers = d.headers.clone();
            put(&mut headers, HEADER_ROUTING_KEY, d.routing_key.clone());
            let props = raw
                .properties
                .clone()
                .with_message_id(ShortString::from(d.message_id.as_str()))
                .with_headers(headers);
            copies.push((self.shards[shard].as_str(), raw.data.as_slice(), props));
        }
        let results = self.publisher.start_raw_many(copies).await.wait().await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e.into());
        }
        let Some(last) = window.last() else {
            return Ok(());
        };
        Generation {
            gen: self.gen,
            current: &self.current,
        }
        .ack(&last.acker, true, &self.queue, self.ack_timeout)
        .await?;
        metrics::counter!("orderbus_messages_sequenced_total", "queue" => self.queue.clone())
            .increment(window.len() as u64);
        Ok(())
    }
}
