//! # orderbus-testkit
//!
//! The harness every orderbus test uses to talk to the *real* PostgreSQL and RabbitMQ:
//!
//! - [`TestDb`]: a fresh PostgreSQL database per test, dropped when the value is dropped.
//! - [`TestQueue`]: a randomly named, exclusive queue bound to `amq.topic` for some routing keys,
//!   deleted by the broker when its connection closes; [`TestQueue::recv`] waits with a timeout.
//! - [`ErpPublisher`]: publishes a JSON body on `amq.topic` the way the ERP does (persistent,
//!   mandatory, with publisher confirms).
//!
//! Addresses come from `ORDERBUS_TEST_AMQP_URL` and `ORDERBUS_TEST_DATABASE_URL`, defaulting to
//! the local services `make test` starts.

use std::time::Duration;

use deadpool_lapin::lapin::{
    self,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueBindOptions, QueueDeclareOptions,
    },
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Executor};

pub mod cluster;
pub mod process;
pub mod proxy;

/// Sends the code under test's logs to the test's captured output (shown by nextest only when
/// the test fails). `RUST_LOG` overrides the default filter. Safe to call from every test.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,lapin=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The AMQP URL tests connect to.
pub fn amqp_url() -> String {
    std::env::var("ORDERBUS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10".to_owned())
}

/// The URL of the PostgreSQL server's maintenance database tests create their databases from.
pub fn admin_database_url() -> String {
    std::env::var("ORDERBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A short random suffix for names of databases, queues and services in a test.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Errors of the harness itself (the services are down, a timeout passed).
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] sqlx::Error),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm the publish (nack or returned as unroutable)")]
    NotConfirmed,
    #[error("nothing arrived within {0:?}")]
    Timeout(Duration),
    #[error("the consumer stream ended")]
    StreamEnded,
}

/// A PostgreSQL database that exists for one test.
///
/// Dropping it terminates its connections and drops the database (on a helper thread, so it works
/// from inside and outside a tokio runtime).
pub struct TestDb {
    name: String,
    url: String,
    pool: PgPool,
}

impl TestDb {
    /// Creates `orderbus_test_<random>` and connects a small pool to it.
    pub async fn create() -> Result<TestDb, TestkitError> {
        init_logging();
        let admin: PgConnectOptions = admin_database_url().parse()?;
        let name = format!("orderbus_test_{}", unique_suffix());
        let mut conn = admin.clone().connect().await?;
        // The name is ours (a fixed prefix and hex digits), so formatting it into SQL is safe.
        conn.execute(sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\""
        ))))
        .await?;
        drop(conn);
        let options = admin.database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(TestDb { name, url, pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database's URL, for code under test that connects by itself.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The pool is not closed here: its connections may belong to the (now blocked) test
        // runtime, and waiting for them would hang. `DROP DATABASE ... WITH (FORCE)` ends them
        // on the server instead.
        run_cleanup(async move {
            let Ok(admin) = admin_database_url().parse::<PgConnectOptions>() else {
                return;
            };
            let drop_it = async {
                let mut conn = admin.connect().await?;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                conn.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await
            };
            match tokio::time::timeout(Duration::from_secs(30), drop_it).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("testkit: could not drop database {name}: {e}"),
                Err(_) => eprintln!("testkit: dropping database {name} timed out"),
            }
        });
    }
}

/// Runs async clean-up from a `Drop` impl and waits for it: async work cannot run in `Drop`, so
/// a short-lived thread with its own runtime does it (this works inside and outside a tokio
/// runtime, and also while a test is unwinding from a failed assertion).
pub fn run_cleanup<F>(cleanup: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let worker = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(cleanup);
        }
    });
    let _ = worker.join();
}

/// Opens an AMQP connection to the test broker.
pub async fn connect_amqp() -> Result<Connection, TestkitError> {
    Ok(Connection::connect(&amqp_url(), ConnectionProperties::default()).await?)
}

/// Declares an exclusive, auto-deleted queue `<prefix>.<random>` with `args` and binds it to
/// `amq.topic` for each pattern; returns its name.
async fn declare_bound(
    channel: &lapin::Channel,
    prefix: &str,
    args: FieldTable,
    patterns: &[&str],
) -> Result<String, TestkitError> {
    let name = format!("{prefix}.{}", unique_suffix());
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(name.as_str().into(), options, args)
        .await?;
    for pattern in patterns {
        channel
            .queue_bind(
                name.as_str().into(),
                "amq.topic".into(),
                (*pattern).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(name)
}

/// Stands in for the subscribers a test does not run (the ERP, in production bound to every
/// key the storefront publishes): an exclusive queue with `x-max-length` 0 bound to the given
/// patterns, so those messages are routed (the publisher's `mandatory` flag is satisfied and
/// the confirm is positive) and then dropped. Without it an unroutable message stays pending in
/// the outbox and, by design, holds back that order's later messages.
pub struct RouteSink {
    _connection: Connection,
}

impl RouteSink {
    pub async fn bind(patterns: &[&str]) -> Result<RouteSink, TestkitError> {
        let connection = connect_amqp().await?;
        let channel = connection.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(0));
        declare_bound(&channel, "test.sink", args, patterns).await?;
        let _ = channel.close(200, "bound".into()).await;
        Ok(RouteSink {
            _connection: connection,
        })
    }
}

/// A message received by a [`TestQueue`].
#[derive(Debug, Clone)]
pub struct Received {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    pub redelivered: bool,
}

impl Received {
    /// The body as JSON (panics are fine here: this is test code reading its own broker).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An exclusive, randomly named queue bound to `amq.topic` for the given patterns. The broker
/// deletes it when the test's connection closes, so nothing is left behind.
pub struct TestQueue {
    name: String,
    connection: Connection,
    consumer: lapin::Consumer,
    /// Messages received by [`TestQueue::recv_where`] that its filter did not want, kept for
    /// later calls: two independent answers may arrive in either order.
    held: std::collections::VecDeque<Received>,
}

impl TestQueue {
    /// Declares `test.<random>` and binds it to `amq.topic` for each pattern (`#` for everything).
    pub async fn bind(patterns: &[&str]) -> Result<TestQueue, TestkitError> {
        init_logging();
        let connection = connect_amqp().await?;
        let channel = connection.create_channel().await?;
        let name = declare_bound(&channel, "test", FieldTable::default(), patterns).await?;
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                format!("{name}.consumer").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(TestQueue {
            name,
            connection,
            consumer,
            held: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Binds one more routing-key pattern (e.g. a route that ops add later).
    pub async fn bind_more(&self, pattern: &str) -> Result<(), TestkitError> {
        let channel = self.connection.create_channel().await?;
        channel
            .queue_bind(
                self.name.as_str().into(),
                "amq.topic".into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "bound".into()).await;
        Ok(())
    }

    /// Waits up to `timeout` for the next message and acks it.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Received, TestkitError> {
        let next = tokio::time::timeout(timeout, self.consumer.next())
            .await
            .map_err(|_| TestkitError::Timeout(timeout))?;
        let delivery = next.ok_or(TestkitError::StreamEnded)??;
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(Received {
            routing_key: delivery.routing_key.to_string(),
            body: delivery.data,
            properties: delivery.properties,
            redelivered: delivery.redelivered,
        })
    }

    /// Waits up to `timeout` for a message `wanted` accepts: first among those held back by
    /// earlier calls, then from the queue, holding back the others.
    pub async fn recv_where(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Received) -> bool,
    ) -> Result<Received, TestkitError> {
        if let Some(i) = self.held.iter().position(&wanted) {
            if let Some(message) = self.held.remove(i) {
                return Ok(message);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.recv(left).await?;
            if wanted(&message) {
                return Ok(message);
            }
            self.held.push_back(message);
        }
    }

    /// Collects every message that arrives until nothing comes for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(message) = self.recv(quiet).await {
            out.push(message);
        }
        out
    }
}

/// Publishes on `amq.topic` as the ERP would: persistent JSON, mandatory, confirmed.
pub struct ErpPublisher {
    _connection: Connection,
    channel: Channel,
}

impl ErpPublisher {
    pub async fn connect() -> Result<ErpPublisher, TestkitError> {
        let connection = connect_amqp().await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(ErpPublisher {
            _connection: connection,
            channel,
        })
    }

    /// Publishes `body` with `routing_key` and waits for a positive, unreturned confirm.
    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), TestkitError> {
        self.publish_with(routing_key, body, erp_properties()).await
    }

    /// Publishes with explicit properties (e.g. a fixed `message_id` to simulate a redelivery).
    pub async fn publish_with(
        &self,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), TestkitError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = self
            .channel
            .basic_publish(
                "amq.topic".into(),
                routing_key.into(),
                options,
                body,
                properties,
            )
            .await?
            .await?;
        if confirm.is_ack() && confirm.take_message().is_none() {
            Ok(())
        } else {
            Err(TestkitError::NotConfirmed)
        }
    }
}

/// The properties the ERP stand-in uses: persistent JSON with a fresh message id.
pub fn erp_properties() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(uuid::Uuid::new_v4().to_string().as_str().into())
        .with_app_id("erp".into())
}
