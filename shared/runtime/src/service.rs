//! The `run` entry point: HTTP server, consumers and relay as supervised tasks, graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use orderbus_bus::{ConsumerConfig, Consumers, Health, Relay, RelayConfig, Topology};
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, NoApiKeys};
use crate::config::{Config, ConfigError};
use crate::migrate::DuplicateMigration;
use crate::task::{supervise_task, TaskContext, TaskOptions, TaskSpec};
use crate::{db, http, telemetry};

/// Why the service stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] NoApiKeys),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    DuplicateMigration(#[from] DuplicateMigration),
    #[error("http listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("task {task} stopped unexpectedly: {reason}")]
    TaskEnded { task: String, reason: String },
    #[error("shut down before the service was up")]
    Cancelled,
}

type RouteBuilder = Box<dyn FnOnce(PgPool) -> Router + Send>;
type ApiBuilder = Box<dyn FnOnce(PgPool, Auth) -> Router + Send>;

/// A service process: its topology, migrations, HTTP routes and background tasks.
pub struct Service {
    name: String,
    topology: Topology,
    migrators: Vec<&'static Migrator>,
    routes: Option<RouteBuilder>,
    api: Option<ApiBuilder>,
    tasks: Vec<TaskSpec>,
    config: Option<Config>,
    consumer_config: Option<ConsumerConfig>,
    relay_config: Option<RelayConfig>,
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
                task: "service".into(),
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
            migrators: Vec::new(),
            routes: None,
            api: None,
            tasks: Vec::new(),
            config: None,
            consumer_config: None,
            relay_config: None,
        }
    }

    /// Migrations to run with the bus's: the service's own and those of building blocks it
    /// uses (each a distinct version range). May be called several times; all are merged in
    /// version order.
    pub fn migrations(mut self, migrator: &'static Migrator) -> Self {
        self.migrators.push(migrator);
        self
    }

    /// Unauthenticated HTTP routes (webhooks that verify their own signatures, documents),
    /// built once the pool exists.
    pub fn routes(mut self, build: impl FnOnce(PgPool) -> Router + Send + 'static) -> Self {
        self.routes = Some(Box::new(build));
        self
    }

    /// The service's API, built with its [`Auth`] (protect the routes with
    /// [`Auth::protect`]). A service with an API refuses to start without API keys unless
    /// `ORDERBUS_AUTH=open`.
    pub fn api(mut self, build: impl FnOnce(PgPool, Auth) -> Router + Send + 'static) -> Self {
        self.api = Some(Box::new(build));
        self
    }

    /// A background task run beside HTTP, consumers and relay: restarted with backoff after
    /// an error or a panic, cancelled through [`TaskContext::shutdown`] and drained on
    /// shutdown. Does not gate readiness (see [`Service::task_with`]).
    pub fn task<F, Fut, E>(self, name: &'static str, factory: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.task_with(name, TaskOptions::default(), factory)
    }

    /// [`Service::task`] with explicit options (readiness flag, backoff).
    pub fn task_with<F, Fut, E>(
        mut self,
        name: &'static str,
        options: TaskOptions,
        factory: F,
    ) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.tasks.push(TaskSpec::new(name, options, factory));
        self
    }

    /// Explicit configuration instead of [`Config::from_env`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Consumer settings in code, over the configured ones.
    pub fn consumer_config(mut self, c: ConsumerConfig) -> Self {
        self.consumer_config = Some(c);
        self
    }

    /// Relay settings in code, over the configured ones.
    pub fn relay_config(mut self, c: RelayConfig) -> Self {
        self.relay_config = Some(c);
        self
    }

    /// Runs until SIGTERM/SIGINT, then drains within the configured grace period.
    pub async fn run(self) -> Result<(), RuntimeError> {
        let shutdown = CancellationToken::new();
        crate::signal::cancel_on_signal(shutdown.clone());
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
        // Before anything else: a service with an API and no keys must not come up at all.
        let auth = match &self.api {
            Some(_) => Some(Auth::from_settings(&config.auth, &self.name)?),
            None => None,
        };
        let migrator = crate::migrate::merged(&self.migrators)?;
        let pool = db::pool(&config)?;
        if config.run_migrations {
            migrate_with_retry(&migrator, &pool, &shutdown).await?;
        }
        let health = Health::new();
        health.set("shutdown", true);
        health.set(db::DATABASE_FLAG, false);
        for spec in &self.tasks {
            if let Some(flag) = spec.readiness_flag() {
                health.set(&flag, false);
            }
        }
        let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
        let addr = listener.local_addr()?;
        let mut router = http::ops_router(health.clone());
        if let Some(build) = self.routes {
            router = router.merge(build(pool.clone()));
        }
        if let (Some(build), Some(auth)) = (self.api, auth) {
            router = router.merge(build(pool.clone(), auth));
        }
        let router = http::trace_requests(router);

        let mut tasks: JoinSet<(String, Result<(), String>)> = JoinSet::new();
        let s = shutdown.clone();
        tasks.spawn(async move {
            crate::serve::serve(listener, router, s).await;
            ("http".to_owned(), Ok(()))
        });
        let (probe_config, probe_health, s) = (config.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move {
            let r = db::probe(&probe_config, probe_health, s).await;
            ("database-probe".to_owned(), r.map_err(|e| e.to_string()))
        });
        let topology = config.topology.apply(self.topology);
        let relay_config = self.relay_config.unwrap_or_else(|| config.relay.clone());
        let busiest = topology.pool_connections()
            + if config.run_relay {
                relay_config.pool_connections()
            } else {
                0
            };
        if busiest > config.db_max_connections as usize {
            // Not an error: a batch waits for a connection (ORDERBUS_DB_ACQUIRE_TIMEOUT_MS),
            // it fails nothing; but ops sizing the pool should know the ceiling.
            tracing::info!(
                pool = config.db_max_connections,
                busiest,
                "consumers and relay can use more database connections at once than the pool holds; when all are busy, batches wait for one (ORDERBUS_DB_MAX_CONNECTIONS)"
            );
        }
        if !topology.subscriptions.is_empty() {
            let consumers = Consumers::new(
                topology,
                pool.clone(),
                config.amqp_url.expose(),
                health.clone(),
            )
            .with_config(
                self.consumer_config
                    .unwrap_or_else(|| config.consumer.clone()),
            );
            let s = shutdown.clone();
            tasks.spawn(async move {
                (
                    "consumers".to_owned(),
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
            .with_config(relay_config);
            let s = shutdown.clone();
            tasks.spawn(async move {
                (
                    "relay".to_owned(),
                    relay.run(s).await.map_err(|e| e.to_string()),
                )
            });
        }
        for spec in self.tasks {
            let name = format!("task:{}", spec.name);
            let (pool, health, s) = (pool.clone(), health.clone(), shutdown.clone());
            tasks.spawn(async move {
                supervise_task(spec, pool, health, s).await;
                (name, Ok(()))
            });
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
    mut tasks: JoinSet<(String, Result<(), String>)>,
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
                Err(e) => ("unknown".to_owned(), e.to_string()),
            };
            if shutdown.is_cancelled() {
                tracing::debug!(%task, "task stopped for the shutdown");
            } else {
                tracing::error!(%task, %reason, "task ended; shutting down");
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
                    tracing::warn!(task = %name, error = %e, "task ended with error")
                }
                Ok((name, Ok(()))) => tracing::debug!(task = %name, "task stopped"),
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
