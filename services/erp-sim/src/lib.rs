//! # orderbus-erp-sim — DEVELOPMENT/TEST STAND-IN for the ERP (not deployed to production)
//!
//! Plays the ERP on RabbitMQ's `amq.topic` exactly as the MQ spec describes, so that `make run`
//! shows an order's whole lifecycle and end-to-end tests have a counterpart:
//!
//! - consumes every routing key the ERP consumes (queues `<service>.<routing key>` through the
//!   bus kit: inbox, retry tiers, parking) and answers through the transactional outbox;
//! - delays answers with [`scheduler`] (a `erp_sim_scheduled` table swept into the outbox);
//! - [`publish`] sends any spec message from JSON, validated by the contracts first.
//!
//! See README.md for exactly what it answers to what.

use std::time::{Duration, Instant};

use orderbus_bus::{OutgoingMessage, Publisher};
use orderbus_contracts::{BusMessage, RoutingKey};
use orderbus_runtime::{CancellationToken, Running, Service};
use sqlx::PgPool;

pub mod config;
pub mod handlers;
pub mod scheduler;
pub mod store;

pub use config::{Delays, SimConfig};
pub use handlers::topology;

/// The line every start logs and `--help` shows.
pub const STAND_IN_NOTICE: &str = "orderbus-erp-sim is a DEVELOPMENT/TEST STAND-IN for the ERP. \
It is NOT the ERP and is NOT deployed to production.";

/// The stand-in's own tables (versions 2026…; the bus owns 900000000000..=900000000999).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Everything that can go wrong in the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum ErpSimError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] orderbus_bus::OutboxError),
    #[error("service runtime: {0}")]
    Runtime(#[from] orderbus_runtime::RuntimeError),
    #[error("broker: {0}")]
    Bus(#[from] orderbus_bus::BusError),
    #[error("publish: {0}")]
    Publish(#[from] orderbus_bus::PublishError),
    #[error("broker: {0}")]
    Amqp(#[from] deadpool_lapin::lapin::Error),
    #[error("encoding a message: {0}")]
    Encode(#[from] serde_json::Error),
    /// The body does not satisfy the contract of its routing key (names the field).
    #[error("refused: {0}")]
    Invalid(#[from] orderbus_contracts::DecodeError),
    #[error("refused: {0} (known keys: order.submit, order.erpstatus, erp.createChangeOrder, …)")]
    UnknownKey(#[from] orderbus_contracts::UnknownRoutingKey),
    #[error("reading the message: {0}")]
    Io(#[from] std::io::Error),
    #[error("not ready within {0:?} (is RabbitMQ up and the database created?)")]
    NotReady(Duration),
    #[error("{0}")]
    Other(String),
}

/// Entry point of the in-process API.
pub struct ErpSim;

impl ErpSim {
    /// Migrates the database, starts consumers, outbox relay, scheduler and the ops HTTP server,
    /// and returns once the consumers are bound and consuming (or after 30 s with an error).
    pub async fn start(config: SimConfig) -> Result<RunningErpSim, ErpSimError> {
        // Our stop request is the parent of the runtime's token: the runtime also cancels its
        // own token when a task fails, and `wait` must tell the two apart.
        let stop = CancellationToken::new();
        let shutdown = stop.child_token();
        let sweep_interval = config.sweep_interval;
        let running = Service::new(config.service.clone(), topology(&config))
            .migrations(&MIGRATIONS)
            .config(config.runtime.clone())
            .task("scheduler", move |ctx| async move {
                scheduler::run(ctx.pool().clone(), sweep_interval, ctx.shutdown().clone()).await;
                Ok::<(), std::convert::Infallible>(())
            })
            .start(shutdown.clone())
            .await?;
        tracing::warn!(stand_in = true, service = %config.service, auto_pay = config.auto_pay, "{STAND_IN_NOTICE}");
        if config.auto_pay {
            tracing::warn!(stand_in = true, "AUTO-PAY is ON: erp-sim publishes order.payment for every order.submit, standing in for the payments service (development convenience only)");
        }
        let sim = RunningErpSim {
            running,
            stop,
            config,
        };
        let limit = Duration::from_secs(30);
        let started = Instant::now();
        // `is_ready` alone is true before the consumers task has registered its flag: wait for
        // the consumers (queues declared and bound) and the relay explicitly.
        let components = [
            format!("consumers:{}", sim.config.service),
            format!("relay:{}", sim.config.service),
        ];
        let up = |sim: &RunningErpSim| {
            let flags = sim.running.health().snapshot();
            sim.running.health().is_ready()
                && components
                    .iter()
                    .all(|c| flags.get(c).copied().unwrap_or(false))
        };
        while !up(&sim) {
            if started.elapsed() > limit {
                let _ = sim.shutdown().await;
                return Err(ErpSimError::NotReady(limit));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(sim)
    }
}

/// A started stand-in.
pub struct RunningErpSim {
    running: Running,
    /// Cancelled when someone asked the stand-in to stop (parent of the runtime's token).
    stop: CancellationToken,
    config: SimConfig,
}

impl RunningErpSim {
    /// The stand-in's database (its tables, the bus inbox and outbox).
    pub fn pool(&self) -> &PgPool {
        self.running.pool()
    }

    /// Address of the ops HTTP server (`/healthz`, `/readyz`, `/metrics`).
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.running.addr()
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// A token that stops the stand-in when cancelled (the binary cancels it on a signal).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops consuming, drains in-flight messages, stops relay and scheduler.
    pub async fn shutdown(self) -> Result<(), ErpSimError> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the stand-in stops (after [`RunningErpSim::shutdown_token`] is cancelled, or
    /// when one of its tasks fails).
    pub async fn wait(self) -> Result<(), ErpSimError> {
        let result = self.running.wait().await;
        let requested = self.stop.is_cancelled();
        self.stop.cancel();
        match result {
            // After a requested stop, a task that ends first (the HTTP server returns as soon
            // as the token is cancelled) is the drain, not a failure.
            Err(orderbus_runtime::RuntimeError::TaskEnded { task, reason }) if requested => {
                tracing::debug!(%task, %reason, "task ended during the requested shutdown");
                Ok(())
            }
            other => Ok(other?),
        }
    }
}

/// Deletes the queues and retry exchanges of the stand-in's topology (tests use a unique
/// service name each, and clean up after themselves with this).
pub async fn delete_topology(config: &SimConfig) -> Result<(), ErpSimError> {
    let topo = topology(config);
    let conn = orderbus_bus::conn::connect(
        config.runtime.amqp_url.expose(),
        "erp-sim cleanup",
        Duration::from_secs(10),
    )
    .await?;
    let channel = conn.create_channel().await?;
    topo.remove(&channel, Duration::from_millis(500)).await?;
    orderbus_bus::conn::close_quietly(&conn).await;
    Ok(())
}

/// What [`publish`] sent.
#[derive(Debug, Clone)]
pub struct Published {
    pub routing_key: RoutingKey,
    pub message_id: String,
    pub correlation_id: Option<String>,
    /// The body as sent: the contract's re-encoding (exactly the spec's JSON shape).
    pub body: Vec<u8>,
}

/// Validates `body` against the contract of `routing_key` (refusing with the decoder's
/// field-naming error), then publishes its contract encoding on `amq.topic`: persistent,
/// mandatory, with publisher confirms and the kit's properties (message id, timestamp,
/// `app_id`, content type, correlation id = order code, traceparent).
pub async fn publish(
    amqp_url: &str,
    app_id: &str,
    routing_key: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Published, ErpSimError> {
    let key: RoutingKey = routing_key.parse()?;
    let message = BusMessage::decode(key, body)?;
    let encoded = serde_json::to_vec(&message.to_json()?)?;
    let msg = OutgoingMessage::new(key.as_str(), encoded.clone())
        .correlation_id(message.correlation_id());
    let conn = orderbus_bus::conn::connect(amqp_url, "erp-sim publish", timeout).await?;
    let result = async {
        let publisher = Publisher::open(&conn, app_id, timeout).await?;
        publisher.publish(&msg).await?;
        Ok::<_, ErpSimError>(())
    }
    .await;
    orderbus_bus::conn::close_quietly(&conn).await;
    result?;
    Ok(Published {
        routing_key: key,
        message_id: msg.message_id,
        correlation_id: msg.correlation_id,
        body: encoded,
    })
}
