//! The consumers' supervisor: one connection per generation, rebuilt on any error, drained on
//! shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_lapin::lapin::{Connection, Event};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::conn::{
    close_channel_quietly, close_quietly, connect, subscribe, Backoff, ConsumingChannel,
};
use crate::error::{BusError, Chain};
use crate::health::Health;
use crate::partition::run_partitioned;
use crate::publish::Publisher;
use crate::sequencer::Sequencer;
use crate::shards::ShardSet;
use crate::topology::Topology;
use crate::worker::Worker;

/// All consumers of a service on one supervised connection.
pub struct Consumers {
    topology: Arc<Topology>,
    pool: PgPool,
    amqp_url: String,
    config: ConsumerConfig,
    health: Health,
    generation: Arc<AtomicU64>,
    /// This process's name among the replicas sharing sharded subscriptions: the pod name
    /// (`HOSTNAME`) and a random suffix, so a restarted pod is a new member.
    member: String,
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
            member: format!(
                "{}-{:06x}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into()),
                rand::random::<u32>() & 0xff_ffff
            ),
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
                    tracing::warn!(error = %Chain(&e), generation = gen, ?delay, "consumers: rebuilding");
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
        // Shared with the shard sets, which open channels while they run.
        let conn = Arc::new(conn);
        let result = self.serve(&conn, gen, shutdown, backoff).await;
        close_quietly(&conn).await;
        result
    }

    async fn serve(
        &self,
        conn: &Arc<Connection>,
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
        // Every channel of this generation, closed before the connection on a clean shutdown;
        // the consuming ones first, each before its consumer is let go (`ConsumingChannel`).
        let mut consuming = Vec::new();
        let mut channels = Vec::new();
        for (i, sub) in self.topology.subscriptions.iter().enumerate() {
            let queue = self.topology.work_queue(&sub.pattern);
            if sub.is_sharded() {
                let (sequencing, publishing) = self
                    .start_sharded(conn, sub, i, gen, &stop, &mut tasks)
                    .await?;
                consuming.push(sequencing);
                channels.push(publishing);
                continue;
            }
            // Competing consumers: each worker has its own channel, so its acks and its
            // generation check only ever concern deliveries of that channel.
            for w in 0..sub.concurrency.max(1) {
                let (channel, consumer) = subscribe(
                    conn,
                    &queue,
                    &format!("{queue}.g{gen}.{i}.{w}"),
                    sub.prefetch,
                    t,
                )
                .await?;
                consuming.push(channel);
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
                        tier_queues: self.topology.tier_queues(),
                        shard_deliveries: None,
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
                        Ok(Ok(())) => BusError::TaskStopped { task: "a consumer task".into() },
                        Err(source) => BusError::TaskFailed { task: "a consumer task".into(), source },
                    });
                }
                ev = events.next() => match ev {
                    Some(Event::Error(e)) => break Err(BusError::Amqp(e)),
                    Some(_) => {}
                    None => break Err(BusError::ConnectionClosed { role: "consumers" }),
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
                        tracing::warn!(error = %Chain(&e), "consumer ended with an error during drain");
                    }
                }
                for channel in consuming {
                    channel.close().await;
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
                for channel in consuming {
                    channel.close().await;
                }
                Err(e)
            }
        }
    }

    /// A sharded subscription: its sequencer on the work queue and its shard set. Returns the
    /// sequencer's consuming and publishing channels (the shard set closes its own).
    async fn start_sharded(
        &self,
        conn: &Arc<Connection>,
        sub: &crate::Subscription,
        i: usize,
        gen: u64,
        stop: &CancellationToken,
        tasks: &mut JoinSet<Result<(), BusError>>,
    ) -> Result<(ConsumingChannel, deadpool_lapin::lapin::Channel), BusError> {
        let queue = self.topology.work_queue(&sub.pattern);
        let (channel, consumer) = subscribe(
            conn,
            &queue,
            &format!("{queue}.g{gen}.{i}.sequencer.{}", self.member),
            sub.prefetch,
            self.config.connect_timeout,
        )
        .await?;
        let publisher = Publisher::open(
            conn,
            self.topology.service.clone(),
            self.config.publish_timeout,
        )
        .await?;
        let publishing = publisher.channel().clone();
        let sequencer = Sequencer {
            queue,
            shards: self.topology.shard_queues(&sub.pattern),
            handler: sub.handler.clone(),
            publisher,
            tier_queues: self.topology.tier_queues(),
            window: usize::from(sub.prefetch),
            gen,
            current: self.generation.clone(),
            ack_timeout: self.config.publish_timeout,
        };
        tasks.spawn(sequencer.run(consumer, stop.clone()));
        let shard_set = ShardSet {
            conn: conn.clone(),
            topology: self.topology.clone(),
            sub: sub.clone(),
            pool: self.pool.clone(),
            config: self.config.clone(),
            gen,
            current: self.generation.clone(),
            member: self.member.clone(),
        };
        tasks.spawn(shard_set.run(stop.clone()));
        Ok((channel, publishing))
    }
}
