//! # orderbus-ops
//!
//! The ops service: the journal of every message on `amq.topic` ([`journal`]), parked
//! messages of every service with selectors, dry-run replay and purge, and an audit
//! ([`parking`]), unrouted capture, the MQ spec's monitoring intake ([`monitor`]), one
//! timeline per order across services ([`timeline`]), and the queue overview ([`queues`]).
//! `orderbus-ops` (the binary) is both the service and the CLI operators run.

pub mod amqp;
pub mod extract;
pub mod http;
pub mod journal;
pub mod monitor;
pub mod parking;
pub mod queues;
pub mod store;
pub mod timeline;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orderbus_bus::Topology;
use orderbus_runtime::auth::{OPS_READ, OPS_REPLAY};
use orderbus_runtime::{
    CancellationToken, Config, Policy, Running, RuntimeError, Service, TaskOptions,
};
use orderbus_timeline::{FanOut, Peer};

/// The service's own migrations (merged with the bus's by the runtime).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Scope of the monitoring intake's API keys (the senders that report their publishes).
pub const OPS_REPORT: &str = "ops:report";

/// Ops settings beyond the runtime's [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    pub journal: journal::JournalConfig,
    /// Services whose `<service>.parking` queue ops takes in.
    pub parking_services: Vec<String>,
    /// Services asked for their timeline entries.
    pub peers: Vec<Peer>,
    /// The API key ops presents to them (a key with `ops:read` on each service).
    pub peer_api_key: Option<String>,
    pub peer_timeout: Duration,
    pub journal_retention: Duration,
    pub retention_every: Duration,
    /// A reported message not seen on the bus within this window is missing.
    pub monitor_window: Duration,
    pub reconcile_every: Duration,
    pub replay_tier: String,
    pub replay_tier_overrides: HashMap<String, String>,
    pub replay_rate: f64,
    /// Most messages one selection (list, replay, purge) covers.
    pub max_selection: i64,
}

impl Settings {
    /// Local defaults against `amqp_url`.
    pub fn local(amqp_url: &str) -> Self {
        Self {
            journal: journal::JournalConfig {
                amqp_url: amqp_url.to_owned(),
                exchange: orderbus_bus::TOPIC_EXCHANGE.to_owned(),
                keys: orderbus_contracts::RoutingKey::ALL
                    .iter()
                    .map(|k| k.as_str().to_owned())
                    .collect(),
                journal_queue: "ops.journal".into(),
                unrouted_exchange: "ops.unrouted".into(),
                unrouted_queue: "ops.unrouted".into(),
                prefetch: 500,
                batch: 200,
                db_retry: Duration::from_secs(1),
            },
            parking_services: ["storefront", "payments", "tracking", "fulfilment"]
                .map(String::from)
                .to_vec(),
            peers: orderbus_timeline::parse_peers(DEFAULT_PEERS).unwrap_or_default(),
            peer_api_key: None,
            peer_timeout: Duration::from_secs(2),
            journal_retention: Duration::from_secs(30 * 86_400),
            retention_every: Duration::from_secs(300),
            monitor_window: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(5),
            replay_tier: "5s".into(),
            replay_tier_overrides: HashMap::new(),
            replay_rate: 50.0,
            max_selection: 100_000,
        }
    }
}

/// The services under `make run` (Kubernetes: `storefront=http://storefront:8080,…`).
pub const DEFAULT_PEERS: &str = "storefront=http://127.0.0.1:8080,payments=http://127.0.0.1:8081,\
tracking=http://127.0.0.1:8082,fulfilment=http://127.0.0.1:8083";

/// A background task's failure (the runtime logs its chain and restarts the task).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct TaskFailed(pub anyhow::Error);

async fn wrap(f: impl std::future::Future<Output = anyhow::Result<()>>) -> Result<(), TaskFailed> {
    f.await.map_err(TaskFailed)
}

/// Paths open without a key.
pub const PUBLIC_PATHS: [&str; 0] = [];

/// The ops topology for the bus: no subscriptions of the bus kind (the journal, unrouted and
/// parking consumers are ops' own, see [`journal`] and [`parking`]).
pub fn topology() -> Topology {
    Topology::new("ops").retry_tiers([])
}

/// The queues ops declares itself (for deploy/).
pub fn queues() -> Vec<amqp::OpsQueue> {
    vec![
        amqp::journal_queue("ops.journal"),
        amqp::unrouted_queue("ops.unrouted"),
    ]
}

/// Starts the HTTP API, the journal and unrouted consumers, the parking intake of every
/// configured service, retention and reconciliation, and resumes replays a previous process
/// left running.
pub async fn start(
    config: Config,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<Running, RuntimeError> {
    let fanout = Arc::new(FanOut::new(
        settings.peers.clone(),
        settings.peer_api_key.clone(),
        settings.peer_timeout,
    ));
    let replay = Arc::new(parking::ReplayConfig {
        amqp_url: settings.journal.amqp_url.clone(),
        tier: settings.replay_tier.clone(),
        tier_overrides: settings.replay_tier_overrides.clone(),
        default_rate: settings.replay_rate,
    });
    let running = parking::Running::default();
    let app_shutdown = shutdown.clone();
    let max_selection = settings.max_selection;
    let api_replay = replay.clone();
    let api_running = running.clone();
    let mut service = Service::new("ops", topology())
        .migrations(&MIGRATIONS)
        .api(move |pool, auth| {
            let app = http::App {
                pool: pool.clone(),
                fanout,
                replay: api_replay,
                running: api_running,
                shutdown: app_shutdown,
                max_selection,
            };
            auth.protect(
                http::api(app),
                Policy::read_write(OPS_READ, OPS_REPLAY),
                &PUBLIC_PATHS,
            )
            .merge(auth.protect(
                http::intake(pool, monitor::REPORT_LIMIT),
                Policy::Scope(OPS_REPORT),
                &[],
            ))
        })
        .config(config);
    let gate = TaskOptions {
        gates_readiness: true,
        ..TaskOptions::default()
    };
    let j = settings.journal.clone();
    service = service.task_with("journal", gate.clone(), move |ctx| {
        wrap(journal::run(
            ctx.pool().clone(),
            j.clone(),
            journal::Via::Journal,
            ctx.shutdown().clone(),
        ))
    });
    let j = settings.journal.clone();
    service = service.task_with("unrouted", gate, move |ctx| {
        wrap(journal::run(
            ctx.pool().clone(),
            j.clone(),
            journal::Via::Unrouted,
            ctx.shutdown().clone(),
        ))
    });
    for svc in settings.parking_services.clone() {
        let url = settings.journal.amqp_url.clone();
        let name: &'static str = Box::leak(format!("parking:{svc}").into_boxed_str());
        service = service.task(name, move |ctx| {
            wrap(parking::intake(
                ctx.pool().clone(),
                url.clone(),
                svc.clone(),
                ctx.shutdown().clone(),
            ))
        });
    }
    let (retention, every) = (settings.journal_retention, settings.retention_every);
    service = service.task("journal-retention", move |ctx| {
        wrap(journal::retention(
            ctx.pool().clone(),
            retention,
            every,
            10_000,
            ctx.shutdown().clone(),
        ))
    });
    let (window, each) = (settings.monitor_window, settings.reconcile_every);
    service = service.task("monitor-reconcile", move |ctx| {
        wrap(monitor::reconcile(
            ctx.pool().clone(),
            window,
            each,
            ctx.shutdown().clone(),
        ))
    });
    let resume_cfg = (*replay).clone();
    let resume_running = running.clone();
    let rate = settings.replay_rate;
    service = service.task("replay-resume", move |ctx| {
        let (pool, cfg, running, token) = (
            ctx.pool().clone(),
            resume_cfg.clone(),
            resume_running.clone(),
            ctx.shutdown().clone(),
        );
        wrap(async move {
            // Replays a stopped process left running go on from their first unsent item.
            for id in store::running_audits(&pool).await? {
                if let Some(a) = store::audit(&pool, id).await? {
                    if a.state == "running" {
                        tracing::info!(audit_id = id, "resuming replay");
                        parking::spawn_replay(
                            pool.clone(),
                            cfg.clone(),
                            running.clone(),
                            id,
                            rate,
                            &token,
                        );
                    }
                }
            }
            token.cancelled().await;
            Ok(())
        })
    });
    service.start(shutdown).await
}
