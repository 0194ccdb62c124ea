//! The `run` entry point: HTTP server, consumers and relay as supervised tasks, graceful drain.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use orderbus_bus::{
    merged_migrator, ConsumerConfig, Consumers, Health, Relay, RelayConfig, Topology,
};
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::{db, http, telemetry};

/// Why the service stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("http listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("task {task} stopped unexpectedly: {reason}")]
    TaskEnded { task: &'static str, reason: String },
    #[error("shut down before the service was up")]
    Cancelled,
}

type RouteBuilder = Box<dyn FnOnce(PgPool) -> Router + Send>;

/// A service process: its topology, migrations and HTTP routes.
pub struct Service {
    name: String,
    topology: Topology,
    migrator: Option<&'static Migrator>,
    routes: Option<RouteBuilder>,
    config: Option<Config>,
    consumer_config: ConsumerConfig,
    relay_config: RelayConfig,
}

/// A started service (tests use its address and pool).
pub struct Running {
    addr: SocketAddr,
    pool: PgPool,
    health: Health,
    task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
    pub fn health(&self) -> &Health {
        &self.health
    }
    /// Waits until the service has drained and stopped.
    pub async fn wait(self) -> Result<(), RuntimeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::TaskEnded {
                task: "service",
                reason: e.to_string(),
            }),
        }
    }
}

impl Service {
    pub fn new(name: impl Into<String>, topology: Topology) -> Self {
        Self {
            name: name.into(),
            topology,
            migrator: None,
            routes: None,
            config: None,
            consumer_config: ConsumerConfig::default(),
            relay_config: RelayConfig::default(),
        }
    }

    /// The service's own migrations (merged after the bus's).
    pub fn migrations(mut self, migrator: &'static Migrator) -> Self {
        self.migrator = Some(migrator);
        self
    }

    /// The service's HTTP routes, built once the pool exists.
    pub fn routes(mut self, build: impl FnOnce(PgPool) -> Router + Send + 'static) -> Self {
        self.routes = Some(Box::new(build));
        self
    }

    /// Explicit configuration instead of [`Config::from_env`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    pub fn consumer_config(mut self, c: ConsumerConfig) -> Self {
        self.consumer_config = c;
        self
    }

    pub fn relay_config(mut self, c: RelayConfig) -> Self {
        self.relay_config = c;
        self
    }

    /// Runs until SIGTERM/SIGINT, then drains within the configured grace period.
    pub async fn run(self) -> Result<(), RuntimeError> {
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_listener(shutdown.clone()));
        self.start(shutdown).await?.wait().await
    }

    /// Starts everything; `shutdown` triggers the drain (in-process tests cancel it directly).
    pub async fn start(self, shutdown: CancellationToken) -> Result<Running, RuntimeError> {
        let config = match self.config {
            Some(c) => c,
            None => Config::from_env(&self.name)?,
        };
        telemetry::init_tracing(config.log_format);
        tracing::info!(service = %self.name, amqp = %config.amqp_url, database = %config.database_url, http = %config.http_addr, "starting");
        let pool = db::pool(&config)?;
        if config.run_migrations {
            let migrator = match self.migrator {
                Some(m) => merged_migrator(m),
                None => merged_migrator(&Migrator::with_migrations(Vec::new())),
            };
            migrate_with_retry(&migrator, &pool, &shutdown).await?;
        }
        let health = Health::new();
        health.set("shutdown", true);
        let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
        let addr = listener.local_addr()?;
        let mut router = http::ops_router(health.clone());
        if let Some(build) = self.routes {
            router = router.merge(build(pool.clone()));
        }

        let mut tasks: JoinSet<(&'static str, Result<(), String>)> = JoinSet::new();
        let s = shutdown.clone();
        tasks.spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
            ("http", r.map_err(|e| e.to_string()))
        });
        if !self.topology.subscriptions.is_empty() {
            let consumers = Consumers::new(
                self.topology,
                pool.clone(),
                config.amqp_url.expose(),
                health.clone(),
            )
            .with_config(self.consumer_config);
            let s = shutdown.clone();
            tasks.spawn(async move {
                (
                    "consumers",
                    consumers.run(s).await.map_err(|e| e.to_string()),
                )
            });
        }
        if config.run_relay {
            let relay = Relay::new(
                pool.clone(),
                config.amqp_url.expose(),
                self.name.clone(),
                health.clone(),
            )
            .with_config(self.relay_config);
            let s = shutdown.clone();
            tasks.spawn(async move { ("relay", relay.run(s).await.map_err(|e| e.to_string())) });
        }

        let task = tokio::spawn(supervise(
            tasks,
            shutdown,
            config.shutdown_grace,
            pool.clone(),
            health.clone(),
        ));
        Ok(Running {
            addr,
            pool,
            health,
            task,
        })
    }
}

async fn supervise(
    mut tasks: JoinSet<(&'static str, Result<(), String>)>,
    shutdown: CancellationToken,
    grace: Duration,
    pool: PgPool,
    health: Health,
) -> Result<(), RuntimeError> {
    let mut failure = None;
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        Some(joined) = tasks.join_next(), if !shutdown.is_cancelled() => {
            // Every task runs until shutdown; one that ends first takes the process down.
            let (task, reason) = match joined {
                Ok((name, Ok(()))) => (name, "returned".to_owned()),
                Ok((name, Err(e))) => (name, e),
                Err(e) => ("unknown", e.to_string()),
            };
            if shutdown.is_cancelled() {
                tracing::debug!(task, "task stopped for the shutdown");
            } else {
                tracing::error!(task, %reason, "task ended; shutting down");
                failure = Some(RuntimeError::TaskEnded { task, reason });
                shutdown.cancel();
            }
        }
    }
    health.set("shutdown", false);
    tracing::info!(?grace, "draining");
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, Err(e))) => {
                    tracing::warn!(task = name, error = %e, "task ended with error")
                }
                Ok((name, Ok(()))) => tracing::debug!(task = name, "task stopped"),
                Err(e) => tracing::warn!(error = %e, "task panicked"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over; aborting the remaining tasks");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}

async fn migrate_with_retry(
    migrator: &Migrator,
    pool: &PgPool,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let mut backoff =
        orderbus_bus::conn::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            // Connection problems are retried (the database may start after us); a broken
            // migration is not.
            Err(sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(e))) => {
                tracing::warn!(error = %e, "database unreachable; retrying migrations")
            }
            Err(sqlx::migrate::MigrateError::Execute(sqlx::Error::PoolTimedOut)) => {
                tracing::warn!("database pool timed out; retrying migrations")
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(RuntimeError::Cancelled),
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn signal_listener(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler; SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
