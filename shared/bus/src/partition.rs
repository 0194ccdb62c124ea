//! Partitions of one consumer: deliveries are spread by order key, so orders proceed in
//! parallel while each order's messages stay in arrival order.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use deadpool_lapin::lapin::{message::Delivery as RawDelivery, Consumer};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::BusError;
use crate::worker::{abandoned, Worker};

/// Which of `n` partitions handles `key` (stable for the life of the process, which is all
/// that ordering needs: a redelivery after a restart starts from the queue's order again).
pub(crate) fn partition_of(key: &str, n: usize) -> usize {
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
pub(crate) async fn run_partitioned(
    lanes: Vec<Worker>,
    mut consumer: Consumer,
    stop: CancellationToken,
) -> Result<(), BusError> {
    let Some(first) = lanes.first() else {
        return Ok(());
    };
    let (queue, handler, n) = (first.queue.clone(), first.sub.handler.clone(), lanes.len());
    let shard_deliveries = first.shard_deliveries.clone();
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
                Ok(Ok(())) => BusError::TaskStopped { task: format!("a partition of {queue}") },
                Err(source) => BusError::TaskFailed { task: format!("a partition of {queue}"), source },
            },
            next = consumer.next() => match next {
                Some(Ok(d)) => {
                    if let Some(counter) = &shard_deliveries {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    let key = handler.partition_key(&d.data).or_else(|| {
                        d.properties.correlation_id().as_ref().map(|c| c.as_str().to_owned())
                    });
                    let i = key.map_or(0, |k| partition_of(&k, n));
                    if senders[i].send(d).is_err() {
                        break BusError::TaskStopped { task: format!("a partition of {queue}") };
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

impl Worker {
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
}
