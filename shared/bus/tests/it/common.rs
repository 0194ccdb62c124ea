//! Shared helpers of the bus's integration tests (real RabbitMQ + PostgreSQL, isolated per test:
//! own database, own service name and routing-key prefix, queues deleted afterwards).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_lapin::lapin::{
    options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    BasicProperties,
};
use orderbus_bus::{
    ConsumerConfig, Consumers, Delivery, Handler, HandlerError, HandlerFuture, Health, Outbox,
    RelayConfig, Subscription, Topology,
};
use orderbus_testkit::{unique_suffix, TestDb};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub fn rabbit_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5672))
}
pub fn postgres_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5432))
}

/// One test's world: database (bus tables + an `effects` table), service name and key prefix.
pub struct World {
    pub db: TestDb,
    pub service: String,
    pub prefix: String,
}

impl World {
    pub async fn new() -> Result<World, Box<dyn std::error::Error + Send + Sync>> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let db = TestDb::create().await?;
        orderbus_bus::MIGRATOR.run(db.pool()).await?;
        sqlx::query(
            "CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, attempt INT NOT NULL, \
             message_id TEXT NOT NULL)",
        )
        .execute(db.pool())
        .await?;
        let sfx = unique_suffix();
        Ok(World {
            db,
            service: format!("bt{sfx}"),
            prefix: format!("bt{sfx}"),
        })
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// A routing key unique to this test.
    pub fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    pub async fn effects(&self) -> Result<Vec<(String, i32)>, sqlx::Error> {
        sqlx::query_as("SELECT key, attempt FROM effects ORDER BY id")
            .fetch_all(self.pool())
            .await
    }

    pub async fn effect_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM effects")
            .fetch_one(self.pool())
            .await
    }

    /// Waits (upper bound `limit`) until at least `n` effects exist.
    pub async fn wait_effects(&self, n: i64, limit: Duration) -> Result<i64, String> {
        wait_until(limit, || async {
            let c = self.effect_count().await.unwrap_or(0);
            (c >= n).then_some(c)
        })
        .await
        .ok_or_else(|| format!("fewer than {n} effects within {limit:?}"))
    }

    /// Asserts `expected` distinct keys, each exactly once.
    pub async fn assert_exactly_once(&self, expected: usize) -> TestResult {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key, count(*) FROM effects GROUP BY key")
                .fetch_all(self.pool())
                .await?;
        let dups: Vec<_> = rows.iter().filter(|(_, n)| *n > 1).collect();
        assert!(dups.is_empty(), "duplicate effects: {dups:?}");
        assert_eq!(rows.len(), expected, "lost effects");
        Ok(())
    }
}

impl World {
    /// Asserts that the effects `o<order>-<seq>` of every order were applied in sequence (0,
    /// 1, 2, … in the order of `effects.id`: one order's effects are never concurrent, so a
    /// later id is a later commit).
    pub async fn assert_each_order_in_sequence(&self) -> TestResult {
        let mut last_seq = std::collections::HashMap::<String, u32>::new();
        for (effect, _) in self.effects().await? {
            let (order, seq) = effect.split_once('-').ok_or("effect key")?;
            let seq: u32 = seq.parse()?;
            let expected = last_seq.get(order).map_or(0, |s| s + 1);
            assert_eq!(seq, expected, "order {order} out of sequence");
            last_seq.insert(order.to_owned(), seq);
        }
        Ok(())
    }
}

/// Polls `f` every 50 ms until it returns Some or `limit` passes.
pub async fn wait_until<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of test messages.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TestMsg {
    pub key: String,
    /// Fail transiently while `attempt <= fail_times`.
    #[serde(default)]
    pub fail_times: u32,
    /// Routing key of a follow-up message enqueued through the outbox in the same transaction.
    #[serde(default)]
    pub follow_up: Option<String>,
}

pub fn body(key: impl Into<String>) -> Vec<u8> {
    serde_json::to_vec(&TestMsg {
        key: key.into(),
        ..TestMsg::default()
    })
    .unwrap_or_default()
}

/// Records one row in `effects` per handled message; simulates transient failures.
#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: Arc<AtomicUsize>,
    pub delay: Duration,
}

impl Recorder {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Handler for Recorder {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let msg: TestMsg = d.json()?;
            if d.attempt <= msg.fail_times {
                return Err(HandlerError::retry(format!(
                    "simulated 503 on attempt {}",
                    d.attempt
                )));
            }
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            sqlx::query("INSERT INTO effects (key, attempt, message_id) VALUES ($1, $2, $3)")
                .bind(&msg.key)
                .bind(d.attempt as i32)
                .bind(&d.message_id)
                .execute(&mut *conn)
                .await?;
            if let Some(rk) = &msg.follow_up {
                let out = d.follow_up(rk.clone(), body(msg.key.clone()));
                Outbox::new().enqueue_raw(conn, &out).await?;
            }
            Ok(())
        })
    }
}

pub fn fast_consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        handler_timeout: Duration::from_secs(10),
        db_timeout: Duration::from_secs(3),
        publish_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(3),
        reconnect_base: Duration::from_millis(100),
        reconnect_cap: Duration::from_millis(500),
        db_retry_cap: Duration::from_millis(300),
        ..ConsumerConfig::default()
    }
}

pub fn fast_relay_config() -> RelayConfig {
    RelayConfig {
        batch_size: 100,
        max_in_flight_batches: 3,
        lease: Duration::from_secs(5),
        sweep_interval: Duration::from_millis(200),
        idle_recheck: Duration::from_millis(20),
        linger: Duration::from_millis(500),
        linger_poll: Duration::from_millis(5),
        publish_timeout: Duration::from_secs(3),
        db_timeout: Duration::from_secs(3),
        max_row_backoff: Duration::from_millis(500),
        retention: Duration::from_secs(3600),
        inbox_retention: Duration::from_secs(3600),
        reconnect_base: Duration::from_millis(100),
        reconnect_cap: Duration::from_millis(500),
    }
}

/// A topology with short test tiers (200 ms, 500 ms) and one subscription.
pub fn topology(
    world: &World,
    pattern: &str,
    sub: impl FnOnce(Subscription) -> Subscription,
    handler: Arc<dyn Handler>,
) -> Topology {
    Topology::new(world.service.clone())
        .retry_tiers([Duration::from_millis(200), Duration::from_millis(500)])
        .subscribe(sub(Subscription::new(pattern, handler)))
}

/// Running consumers (stopped and their queues deleted on drop).
pub struct Running {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), orderbus_bus::BusError>>,
    pub health: Health,
}

pub fn spawn_consumers(topology: Topology, pool: PgPool, amqp_url: &str) -> Running {
    let health = Health::new();
    let shutdown = CancellationToken::new();
    let consumers = Consumers::new(topology, pool, amqp_url, health.clone())
        .with_config(fast_consumer_config());
    let task = tokio::spawn(consumers.run(shutdown.clone()));
    Running {
        shutdown,
        task,
        health,
    }
}

impl Running {
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        wait_until(limit, || async { self.health.is_ready().then_some(()) })
            .await
            .ok_or_else(|| "consumers not ready".to_owned())
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Deletes a topology's queues and tier exchanges when dropped (also after a failed test).
pub struct Cleanup {
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
}

impl Cleanup {
    pub fn of(t: &Topology) -> Cleanup {
        Cleanup {
            queues: t.queues().into_iter().map(|q| q.name).collect(),
            exchanges: t.exchanges(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(conn) = orderbus_testkit::connect_amqp().await else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else {
                    return;
                };
                for q in queues {
                    let _ = ch
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for e in exchanges {
                    let _ = ch
                        .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = conn.close(200, "cleanup".into()).await;
            });
        })
        .join();
    }
}

/// Messages currently in `queue` (passive declare).
pub async fn queue_depth(queue: &str) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let conn = orderbus_testkit::connect_amqp().await?;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let n = q.message_count();
    let _ = conn.close(200, "ok".into()).await;
    Ok(n)
}

/// Takes every message out of `queue` (basic.get + ack): (body, properties).
pub async fn take_all(
    queue: &str,
) -> Result<Vec<(Vec<u8>, BasicProperties)>, Box<dyn std::error::Error + Send + Sync>> {
    let conn = orderbus_testkit::connect_amqp().await?;
    let ch = conn.create_channel().await?;
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await?
    {
        out.push((m.delivery.data.clone(), m.delivery.properties.clone()));
    }
    let _ = conn.close(200, "ok".into()).await;
    Ok(out)
}

/// A header value of a message as a string.
pub fn header(props: &BasicProperties, name: &str) -> Option<String> {
    use deadpool_lapin::lapin::types::AMQPValue;
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}
