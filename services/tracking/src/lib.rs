//! # orderbus-tracking
//!
//! Shipments (deliveries from `order.erpstatus` 600, exchange re-deliveries learned from
//! `erp.createChangeOrder`), SweetTracker's daily registration (on the shared scheduler: one
//! replica per day) and its callbacks (through the shared ingress, a per-shipment URL token),
//! SHOPLINE's signed logistics reports (signed replies), one tracking vocabulary that
//! normalises every source's status, and `order.updateExpressInfo` for each new event through
//! the outbox.

pub mod callbacks;
pub mod carriers;
pub mod consumers;
pub mod events;
pub mod http;
pub mod metrics;
pub mod registration;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orderbus_bus::Topology;
use orderbus_partner::CallLog;
use orderbus_runtime::{CancellationToken, Config, Policy, Running, RuntimeError, Service};
use orderbus_scheduler::{Clock, Schedule, Scheduler};
use orderbus_shopline::{PrivateKey, VerifierConfig};
use orderbus_sweettracker::{Client, ClientConfig};
use orderbus_tracking_vocabulary::Vocabulary;
use sqlx::PgPool;

pub use carriers::CarrierTable;

/// The service's own migrations (merged with the bus's, the ingress's, the scheduler's and the
/// partner call log's by the runtime).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// API scopes of the tracking service.
pub const TRACKING_READ: &str = "tracking:read";
pub const TRACKING_WRITE: &str = "tracking:write";

/// SHOPLINE keys: SHOPLINE's public key verifies its reports, ours signs the replies.
#[derive(Clone)]
pub struct ShoplineKeys {
    pub verifier: VerifierConfig,
    pub our_key: PrivateKey,
}

impl std::fmt::Debug for ShoplineKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShoplineKeys(..)")
    }
}

/// Settings beyond the runtime's [`Config`].
#[derive(Clone)]
pub struct Settings {
    /// Queue-name prefix; `tracking` in production.
    pub service_name: String,
    /// SweetTracker's host, tier and key (seed: dev `trace-api-dev.sweettracker.net:8102`,
    /// `testuser` / `testuser`).
    pub sweettracker: ClientConfig,
    /// Our public base URL: callbacks go to `{site_domain}/delivery/tracking_receive?token=…`.
    pub site_domain: SiteDomain,
    /// The daily registration's cron expression and time zone.
    pub registration_cron: String,
    pub registration_tz: String,
    /// Parallel `add_invoice` calls at most.
    pub registration_concurrency: usize,
    /// `express_id` → SweetTracker carrier code.
    pub carriers: CarrierTable,
    /// The channel every shipment belongs to (seed: only online malls are registered).
    pub channel: String,
    /// A shipment with no event for this long is stale (metric, `GET /v1/shipments/stale`).
    pub stale_after: Duration,
    /// Operator vocabulary files, loaded over the built-in tables.
    pub vocabulary_files: Vec<std::path::PathBuf>,
    /// SHOPLINE keys; `None` = no SHOPLINE route.
    pub shopline: Option<ShoplineKeys>,
    /// The scheduler's clock (tests drive a `ManualClock`).
    pub clock: Arc<dyn Clock>,
    /// This replica's name in the scheduler's claim rows.
    pub replica: String,
    /// Run the daily registration in this process.
    pub scheduler: bool,
    pub retry_tiers: Vec<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            service_name: "tracking".into(),
            sweettracker: ClientConfig::dev(),
            site_domain: SiteDomain::new("http://127.0.0.1:8082"),
            registration_cron: "0 12 * * *".into(),
            registration_tz: "Asia/Seoul".into(),
            registration_concurrency: 8,
            carriers: CarrierTable::default(),
            channel: "online".into(),
            stale_after: Duration::from_secs(3 * 24 * 3600),
            vocabulary_files: Vec::new(),
            shopline: None,
            clock: Arc::new(orderbus_scheduler::SystemClock),
            replica: format!("tracking-{}", uuid::Uuid::new_v4().simple()),
            scheduler: true,
            retry_tiers: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(300),
            ],
        }
    }
}

/// Our public base URL. Shared and settable after start, so an in-process test can point
/// SweetTracker at the port the service was given.
#[derive(Clone, Debug)]
pub struct SiteDomain(Arc<std::sync::RwLock<String>>);

impl SiteDomain {
    pub fn new(url: impl Into<String>) -> Self {
        SiteDomain(Arc::new(std::sync::RwLock::new(url.into())))
    }

    pub fn set(&self, url: impl Into<String>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = url.into();
    }

    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What handlers, effects and the job share.
pub struct Shared {
    pub vocabulary: Vocabulary,
    pub carriers: CarrierTable,
    pub channel: String,
    pub site_domain: SiteDomain,
    pub registration_concurrency: usize,
    pub stale_after: Duration,
    pub shopline: Option<ShoplineKeys>,
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    /// Shipments with no event since before this instant are stale.
    pub fn stale_before(&self) -> DateTime<Utc> {
        let age = chrono::TimeDelta::from_std(self.stale_after).unwrap_or(chrono::TimeDelta::MAX);
        self.clock
            .now()
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Counts stale shipments and sets the gauge.
    pub async fn refresh_stale(&self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        let n = store::stale_count(pool, self.stale_before()).await?;
        metrics::stale(n);
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Vocabulary(#[from] orderbus_tracking_vocabulary::VocabularyError),
    #[error("registration schedule: {0}")]
    Schedule(#[from] orderbus_scheduler::ScheduleError),
    #[error("SweetTracker client: {0}")]
    Client(#[from] orderbus_sweettracker::Error),
}

pub fn topology(settings: &Settings, shared: Arc<Shared>) -> Topology {
    let mut t =
        Topology::new(settings.service_name.clone()).retry_tiers(settings.retry_tiers.clone());
    for sub in consumers::subscriptions(shared) {
        let description = format!("tracking consumer of {}", sub.pattern);
        t = t.subscribe(sub.prefetch(50).batch(20).describe(description));
    }
    t
}

/// The topology without starting anything (deploy generation, test cleanup).
pub fn topology_for(settings: &Settings) -> Result<Topology, StartError> {
    Ok(topology(settings, Arc::new(shared(settings)?)))
}

fn shared(settings: &Settings) -> Result<Shared, StartError> {
    Ok(Shared {
        vocabulary: Vocabulary::load(&settings.vocabulary_files)?,
        carriers: settings.carriers.clone(),
        channel: settings.channel.clone(),
        site_domain: settings.site_domain.clone(),
        registration_concurrency: settings.registration_concurrency,
        stale_after: settings.stale_after,
        shopline: settings.shopline.clone(),
        clock: settings.clock.clone(),
    })
}

/// Starts HTTP (webhooks open, `/v1/*` behind `tracking:read` / `tracking:write`), consumers,
/// relay, the registration scheduler and the stale gauge.
pub async fn start(
    config: Config,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let shared = Arc::new(shared(&settings)?);
    let schedule = Schedule::cron(&settings.registration_cron, &settings.registration_tz)?;
    let client = Client::new(settings.sweettracker.clone())?;
    let webhook_shared = shared.clone();
    let api_shared = shared.clone();
    let shared_for_gauge = shared.clone();
    let mut service = Service::new(
        settings.service_name.clone(),
        topology(&settings, shared.clone()),
    )
    .migrations(&MIGRATIONS)
    .migrations(&orderbus_ingress::MIGRATOR)
    .migrations(&orderbus_scheduler::MIGRATOR)
    .migrations(&orderbus_partner::MIGRATOR)
    .routes(move |pool| callbacks::router(pool, webhook_shared))
    .api(move |pool, auth| {
        // Ops' per-order timeline: SweetTracker registrations, callbacks and SHOPLINE reports.
        let timeline = orderbus_timeline::standard_sources(&pool, "tracking");
        auth.protect(
            http::router(pool, api_shared),
            Policy::read_write(TRACKING_READ, TRACKING_WRITE),
            &[],
        )
        .merge(orderbus_timeline::mount(&auth, "tracking", timeline))
    })
    .config(config);
    if settings.scheduler {
        let (replica, clock) = (settings.replica.clone(), settings.clock.clone());
        service = service.task("registration-scheduler", move |ctx| {
            let pool = ctx.pool().clone();
            let job = registration::RegistrationJob {
                schedule: schedule.clone(),
                pool: pool.clone(),
                shared: shared.clone(),
                client: client.clone(),
                calls: CallLog::new(pool.clone()),
            };
            let scheduler = Scheduler::new(pool, ClockRef(clock.clone()), replica.clone()).job(job);
            let shutdown = ctx.shutdown().clone();
            async move { scheduler.run(shutdown).await }
        });
    }
    let stale_shared = shared_for_gauge;
    service = service.task("stale-gauge", move |ctx| {
        let (pool, shared) = (ctx.pool().clone(), stale_shared.clone());
        let shutdown = ctx.shutdown().clone();
        async move {
            loop {
                if let Err(e) = shared.refresh_stale(&pool).await {
                    tracing::warn!(error = %e, "stale shipment count failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok::<(), std::io::Error>(()),
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }
    });
    Ok(service.start(shutdown).await?)
}

/// The shared clock as the scheduler's `impl Clock`.
struct ClockRef(Arc<dyn Clock>);

impl Clock for ClockRef {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    fn sleep_until(
        &self,
        deadline: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.0.sleep_until(deadline)
    }
}
