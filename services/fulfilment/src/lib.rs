//! # orderbus-fulfilment
//!
//! Frotel (فروتل) fulfils the orders of the shop's Frotel warehouses: shipping quotes for the
//! checkout ([`quotes`]), registration of each order with the right `registerOrder*` method
//! ([`register`]), Frotel's bank payment with `pay` / `checkPay` / `orderPay` / `continuePay`
//! ([`payment`]) and tracking polls on the shared scheduler ([`tracking`]), every call through
//! the failover client of `orderbus-frotel` and logged in the partner call log. See the README
//! for every choice made where the issue was silent.

pub mod consumers;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod payment;
pub mod quotes;
pub mod register;
pub mod store;
pub mod tracking;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orderbus_bus::Topology;
use orderbus_frotel::{ClientConfig, FrotelClient};
use orderbus_partner::CallLog;
use orderbus_runtime::{CancellationToken, Config, Running, RuntimeError, Service};
use orderbus_tracking_vocabulary::Vocabulary;
use sqlx::PgPool;

pub use mapping::Mapping;

/// The service's own migrations (merged with the bus's, the scheduler's, the ingress' and the
/// partner call log's by the runtime).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The partner name in the call log, the ingress log and metrics.
pub const PARTNER: &str = "frotel";

/// Fulfilment settings beyond the runtime's [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Queue-name prefix; `fulfilment` in production.
    pub service_name: String,
    /// The Frotel client (API key, the three mirrors, timeouts, breaker).
    pub frotel: ClientConfig,
    /// Warehouses, SKUs, cities, gender, Rial conversion.
    pub mapping: Mapping,
    /// Operator vocabulary files loaded after the built-in tables.
    pub vocabulary_files: Vec<PathBuf>,
    /// Base URL the customer's browser reaches this service at (bank callback).
    pub public_base_url: String,
    /// How long a quote is reused for the same inputs.
    pub quote_cache_ttl: Duration,
    /// Shipping price (Rial) quoted when no mirror answers; `None` = a 503 instead.
    pub default_shipping_price: Option<i64>,
    /// How often the registration worker looks for due orders.
    pub register_interval: Duration,
    /// Backoff after "nothing reached Frotel" (doubles per attempt, capped).
    pub register_retry_base: Duration,
    pub register_retry_cap: Duration,
    /// A `sending` row older than this is "outcome unknown" (a process died mid-call).
    pub stale_sending: Duration,
    /// How often the checkPay worker and the payment escalation run.
    pub check_interval: Duration,
    /// checkPay retry backoff (doubles per attempt, capped).
    pub check_retry_base: Duration,
    pub check_retry_cap: Duration,
    /// A callback whose checkPay has not answered after this is escalated (still retried).
    pub check_escalate_after: Duration,
    /// A Frotel bank payment not verified this long after registration is escalated.
    pub payment_deadline: Duration,
    /// Tracking poll slot (whole seconds).
    pub tracking_interval: Duration,
    /// Parallel tracking calls.
    pub tracking_concurrency: usize,
    /// Orders polled per slot.
    pub tracking_batch: i64,
    /// Backoff cap for a factor whose tracking keeps failing.
    pub tracking_backoff_cap: Duration,
    /// Delay tiers of the retry chain.
    pub retry_tiers: Vec<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service_name: "fulfilment".into(),
            frotel: ClientConfig::new("change-me"),
            mapping: Mapping::empty(),
            vocabulary_files: Vec::new(),
            public_base_url: "http://127.0.0.1:8083".into(),
            quote_cache_ttl: Duration::from_secs(60),
            default_shipping_price: None,
            register_interval: Duration::from_millis(500),
            register_retry_base: Duration::from_secs(5),
            register_retry_cap: Duration::from_secs(300),
            stale_sending: Duration::from_secs(120),
            check_interval: Duration::from_millis(500),
            check_retry_base: Duration::from_secs(2),
            check_retry_cap: Duration::from_secs(120),
            check_escalate_after: Duration::from_secs(30 * 60),
            payment_deadline: Duration::from_secs(24 * 3600),
            tracking_interval: Duration::from_secs(300),
            tracking_concurrency: 8,
            tracking_batch: 500,
            tracking_backoff_cap: Duration::from_secs(6 * 3600),
            retry_tiers: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(300),
            ],
        }
    }
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Frotel client: {0}")]
    Frotel(#[from] orderbus_frotel::Error),
    #[error("tracking vocabulary: {0}")]
    Vocabulary(#[from] orderbus_tracking_vocabulary::VocabularyError),
    #[error("tracking schedule: {0}")]
    Schedule(#[from] orderbus_scheduler::ScheduleError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// What every part of the service shares.
pub struct Shared {
    pub settings: Settings,
    pub client: FrotelClient,
    pub vocabulary: Vocabulary,
    pub quotes: quotes::QuoteCache,
}

/// A handle for handlers, tasks and routes.
#[derive(Clone)]
pub struct App {
    pub pool: PgPool,
    pub shared: Arc<Shared>,
    pub calls: CallLog,
}

impl App {
    pub fn new(pool: PgPool, shared: Arc<Shared>) -> App {
        App {
            calls: CallLog::new(pool.clone()),
            pool,
            shared,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub fn client(&self) -> &FrotelClient {
        &self.shared.client
    }

    pub fn mapping(&self) -> &Mapping {
        &self.shared.settings.mapping
    }

    /// Publishes the mirrors' breaker view as gauges.
    pub fn report_mirrors(&self) {
        metrics::mirrors(&self.client().mirror_health());
    }
}

/// The subscription table.
pub fn topology(settings: &Settings) -> Topology {
    consumers::subscriptions(Arc::new(settings.mapping.clone()))
        .into_iter()
        .fold(
            Topology::new(settings.service_name.clone()).retry_tiers(settings.retry_tiers.clone()),
            |t, s| t.subscribe(s),
        )
}

fn shared(settings: Settings) -> Result<Shared, StartError> {
    let client = FrotelClient::new(settings.frotel.clone())?;
    let vocabulary = Vocabulary::load(&settings.vocabulary_files)?;
    let quotes = quotes::QuoteCache::new(settings.quote_cache_ttl);
    Ok(Shared {
        settings,
        client,
        vocabulary,
        quotes,
    })
}

/// Starts HTTP, consumers, relay, the registration and checkPay workers and the tracking
/// scheduler. Cancelling `shutdown` drains everything.
pub async fn start(
    config: Config,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let shared = Arc::new(shared(settings.clone())?);
    let tracking_schedule = orderbus_scheduler::Schedule::every(settings.tracking_interval)?;
    let owner = format!("{}-{}", settings.service_name, uuid_like());
    let (s_routes, s_api, s_reg, s_check, s_track) = (
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
    );
    let service = Service::new(settings.service_name.clone(), topology(&settings))
        .migrations(&MIGRATIONS)
        .migrations(&orderbus_scheduler::MIGRATOR)
        .migrations(&orderbus_ingress::MIGRATOR)
        .migrations(&orderbus_partner::MIGRATOR)
        .routes(move |pool| http::public_router(App::new(pool, s_routes)))
        .api(move |pool, auth| http::api_router(App::new(pool, s_api), &auth))
        .task("frotel-registration", move |ctx| {
            register::run(
                App::new(ctx.pool().clone(), s_reg.clone()),
                ctx.shutdown().clone(),
            )
        })
        .task("frotel-check-pay", move |ctx| {
            payment::run_checks(
                App::new(ctx.pool().clone(), s_check.clone()),
                ctx.shutdown().clone(),
            )
        })
        .task("frotel-tracking", move |ctx| {
            let job = tracking::TrackingJob::new(
                App::new(ctx.pool().clone(), s_track.clone()),
                tracking_schedule.clone(),
            );
            let scheduler = orderbus_scheduler::Scheduler::new(
                ctx.pool().clone(),
                orderbus_scheduler::SystemClock,
                owner.clone(),
            )
            .job(job);
            let shutdown = ctx.shutdown().clone();
            async move { scheduler.run(shutdown).await }
        })
        .config(config);
    Ok(service.start(shutdown).await?)
}

/// A short random id for the scheduler owner (pod name when set).
fn uuid_like() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| {
        let n: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!("{:x}", n ^ u64::from(std::process::id()))
    })
}
