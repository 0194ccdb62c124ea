//! The shard consumers of a sharded subscription on one replica.
//!
//! Every replica subscribes to every shard queue. The queues are single-active-consumer, so
//! the broker lets exactly one replica work a shard at a time, the others wait in line and the
//! next one takes over the moment the active one's channel goes (crash, `kill -9`, drain): an
//! order's messages are never worked by two replicas at once, whatever the replicas believe.
//!
//! RabbitMQ 3.10 makes the first subscriber active and never rebalances, so the replicas share
//! the shards themselves: each renews its row in `orderbus_shard_members` every
//! `shard_heartbeat`, and whenever the set of live members changes, every replica *yields* the
//! shards that are not its share (shard `i` belongs to the `i mod m`-th of the `m` sorted
//! members): it finishes the batch in hand, closes that shard's channel (the broker puts the
//! unstarted deliveries back at the head of the queue and activates the next consumer in line,
//! in one step; the consumer must still be registered then, see [`ConsumingChannel`]) and
//! subscribes again at the end of the line. Views can differ for a moment (a member sees
//! two of three, another all three), and a yield made under such a view can leave the owner
//! behind a non-owner; so at every heartbeat a replica also yields a shard that is not its
//! share but delivered to it since the last one (only the active consumer receives
//! deliveries). Every such yield puts a non-owner behind the owner, so the owner ends first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_lapin::lapin::{Channel, Connection};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::conn::{close_channel_quietly, subscribe, ConsumingChannel};
use crate::error::{BusError, Chain};
use crate::members;
use crate::partition::run_partitioned;
use crate::publish::Publisher;
use crate::subscription::Subscription;
use crate::topology::Topology;
use crate::worker::Worker;

pub(crate) struct ShardSet {
    pub(crate) conn: Arc<Connection>,
    pub(crate) topology: Arc<Topology>,
    pub(crate) sub: Subscription,
    pub(crate) pool: PgPool,
    pub(crate) config: ConsumerConfig,
    pub(crate) gen: u64,
    pub(crate) current: Arc<AtomicU64>,
    /// This replica's name in the membership table (stable for the process).
    pub(crate) member: String,
}

/// One shard's consumer on this replica.
struct Lane {
    stop: CancellationToken,
    /// The worker task (a set of one, so dropping the lane aborts it).
    task: JoinSet<Result<(), BusError>>,
    /// The shard's consuming channel, closed before its consumer goes (see
    /// [`ConsumingChannel`]: that is what keeps a yield under traffic in sequence).
    consuming: Option<ConsumingChannel>,
    /// The workers' publishing channels.
    channels: Vec<Channel>,
    /// Times it went to the back of the shard's line (for the consumer tag).
    round: usize,
    /// Deliveries its worker received (only the shard's active consumer receives any).
    deliveries: Arc<AtomicU64>,
    /// `deliveries` at the previous heartbeat.
    seen: u64,
}

impl Lane {
    /// Whether deliveries arrived since the last call: this replica is the shard's active
    /// consumer.
    fn got_deliveries(&mut self) -> bool {
        let now = self.deliveries.load(Ordering::Relaxed);
        let got = now != self.seen;
        self.seen = now;
        got
    }
}

impl ShardSet {
    /// Consumes every shard until `stop`, yielding shards on membership changes; an error of
    /// any shard's worker ends it (the generation is rebuilt).
    pub(crate) async fn run(self, stop: CancellationToken) -> Result<(), BusError> {
        let work = self.topology.work_queue(&self.sub.pattern);
        let shards = self.topology.shard_queues(&self.sub.pattern);
        let mut lanes = Vec::with_capacity(shards.len());
        for (i, shard) in shards.iter().enumerate() {
            lanes.push(self.open(shard, i, 0, &stop).await?);
        }
        let mut view: Vec<String> = Vec::new();
        let mut tick = tokio::time::interval(self.config.shard_heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break Ok(()),
                (joined, i, _) = futures::future::select_all(
                    lanes.iter_mut().map(|lane| Box::pin(lane.task.join_next())),
                ) => {
                    if stop.is_cancelled() {
                        break Ok(());
                    }
                    let task = format!("the consumer of {}", shards[i]);
                    break Err(match joined {
                        Some(Ok(Err(e))) => e,
                        Some(Ok(Ok(()))) | None => BusError::TaskStopped { task },
                        Some(Err(source)) => BusError::TaskFailed { task, source },
                    });
                }
                _ = tick.tick() => {}
            }
            let Some(live) = self.heartbeat(&work).await else {
                continue;
            };
            let changed = live != view;
            let mine = members::preferred(shards.len(), &live, &self.member);
            if changed {
                let share: Vec<usize> = (0..shards.len()).filter(|i| mine[*i]).collect();
                tracing::info!(queue = %work, replicas = live.len(), shards = ?share, "shard members changed; yielding the other shards");
                metrics::gauge!("orderbus_shard_members", "queue" => work.clone())
                    .set(live.len() as f64);
                view = live;
            }
            for (i, lane) in lanes.iter_mut().enumerate() {
                // On a change of members every shard that is not ours goes to the back of its
                // line; and at any heartbeat a shard that is not ours but delivered to us since
                // the last one (we are its active consumer: members whose views differed for a
                // moment may have yielded in an order that left its owner behind us) goes
                // too, so the owner ends up first.
                let active = lane.got_deliveries();
                if !mine[i] && (changed || active) {
                    if active && !changed {
                        tracing::debug!(shard = %shards[i], "active on a shard that is not ours; yielding it");
                    }
                    let round = lane.round + 1;
                    self.close(lane).await?;
                    *lane = self.open(&shards[i], i, round, &stop).await?;
                }
            }
        };
        for lane in &mut lanes {
            lane.stop.cancel();
        }
        match outcome {
            Ok(()) => {
                // Drain: every shard finishes its batch, then its channel closes.
                for lane in &mut lanes {
                    self.close(lane).await?;
                }
                let left = tokio::time::timeout(
                    self.config.db_timeout,
                    members::leave(&self.pool, &work, &self.member),
                )
                .await;
                if !matches!(left, Ok(Ok(()))) {
                    tracing::warn!(queue = %work, "could not leave the shard membership; it expires by itself");
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Renews this replica's membership; the live members, or None (logged) if the database
    /// did not answer: the shards stay as they are until it does.
    async fn heartbeat(&self, work: &str) -> Option<Vec<String>> {
        let renewed = tokio::time::timeout(
            self.config.db_timeout,
            members::heartbeat(&self.pool, work, &self.member, self.config.shard_member_ttl),
        )
        .await;
        match renewed {
            Ok(Ok(live)) => Some(live),
            Ok(Err(e)) => {
                tracing::warn!(queue = %work, error = %Chain(&e), "shard membership heartbeat failed; keeping the current shards");
                None
            }
            Err(_) => {
                tracing::warn!(queue = %work, "shard membership heartbeat timed out; keeping the current shards");
                None
            }
        }
    }

    /// Subscribes to one shard queue (at the end of its line) and starts its worker.
    async fn open(
        &self,
        shard: &str,
        i: usize,
        round: usize,
        stop: &CancellationToken,
    ) -> Result<Lane, BusError> {
        let (consuming, consumer) = subscribe(
            &self.conn,
            shard,
            &format!("{shard}.g{}.{}.r{round}", self.gen, self.member),
            self.sub.prefetch,
            self.config.connect_timeout,
        )
        .await?;
        let mut channels = Vec::new();
        let deliveries = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::with_capacity(self.sub.partitions.max(1));
        for _ in 0..self.sub.partitions.max(1) {
            let publisher = Publisher::open(
                &self.conn,
                self.topology.service.clone(),
                self.config.publish_timeout,
            )
            .await?;
            channels.push(publisher.channel().clone());
            workers.push(Worker {
                topology: self.topology.clone(),
                sub: self.sub.clone(),
                queue: shard.to_owned(),
                pool: self.pool.clone(),
                publisher,
                config: self.config.clone(),
                gen: self.gen,
                current: self.current.clone(),
                tier_queues: self.topology.tier_queues(),
                shard_deliveries: Some(deliveries.clone()),
            });
        }
        let lane_stop = stop.child_token();
        let mut task = JoinSet::new();
        match (workers.len(), workers.pop()) {
            (1, Some(worker)) => task.spawn(worker.run(consumer, lane_stop.clone())),
            _ => task.spawn(run_partitioned(workers, consumer, lane_stop.clone())),
        };
        tracing::debug!(shard = %shard, index = i, round, "subscribed to shard");
        Ok(Lane {
            stop: lane_stop,
            task,
            consuming: Some(consuming),
            channels,
            round,
            deliveries,
            seen: 0,
        })
    }

    /// Lets the lane's worker finish its batch, then closes its channels, the consuming one
    /// while its consumer is still registered: the broker returns what the worker had not
    /// started to the head of the queue and activates the next consumer in the same step.
    async fn close(&self, lane: &mut Lane) -> Result<(), BusError> {
        lane.stop.cancel();
        while let Some(joined) = lane.task.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(source) => {
                    return Err(BusError::TaskFailed {
                        task: "a shard consumer".into(),
                        source,
                    })
                }
            }
        }
        if let Some(consuming) = lane.consuming.take() {
            consuming.close().await;
        }
        for channel in &lane.channels {
            close_channel_quietly(channel).await;
        }
        Ok(())
    }
}
