//! # orderbus-payments
//!
//! Sinopac QPay (永豐 豐收款) payments for the storefront's orders, on the bus:
//! - consumes `order.submit` (a payment to collect; JIT children are paid through their
//!   parent) and `order.orderStatus` 900/906 (cancelled) ([`consumers`]);
//! - the HTTP API: the customer's method → a bank order ([`http`]);
//! - BackendURL / ReturnURL through the shared webhook ingress, then `OrderPayQuery`
//!   ([`notify`]);
//! - the OrderQuery reconciliation sweep on the shared scheduler ([`reconcile`]);
//! - every source of truth through one race-safe transition that publishes `order.payment`
//!   exactly once, through the outbox ([`settle`]);
//! - payment deadlines that end before the storefront's auto-cancel ([`deadline`]).

pub mod bank;
pub mod consumers;
pub mod deadline;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod notify;
pub mod reconcile;
pub mod settle;
pub mod store;

use std::time::Duration;

use orderbus_bus::Topology;
use orderbus_ingress::IngressConfig;
use orderbus_partner::CallLog;
use orderbus_runtime::auth::{ORDERS_READ, PAYMENTS_WRITE};
use orderbus_runtime::{CancellationToken, Config, Policy, Running, RuntimeError, Service};
use orderbus_scheduler::{Schedule, Scheduler, SystemClock};
use orderbus_sinopac::{Client, ClientConfig, HashId};

use crate::bank::Bank;
use crate::deadline::Deadlines;
use crate::reconcile::{Reconciler, SweepJob, SweepSettings};

/// The service's own migrations (merged with the bus's, the ingress's, the scheduler's and the
/// partner call log's by the runtime).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How to reach the bank. The keys are secrets: never logged (Debug redacts them).
#[derive(Clone)]
pub struct BankSettings {
    /// e.g. `https://apisbx.sinopac.com/funBIZ-Sbx/QPay.WebAPI/api`.
    pub base_url: String,
    pub shop_no: String,
    pub hash_id: HashId,
    pub key_id: Option<String>,
    /// The bank's local offset from UTC (Taiwan: 8).
    pub utc_offset_hours: i64,
    /// Bank code shown for ATM transfers when the reply carries none (Sinopac: 807).
    pub bank_code: String,
}

impl std::fmt::Debug for BankSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankSettings")
            .field("base_url", &self.base_url)
            .field("shop_no", &"[redacted]")
            .field("hash_id", &"[redacted]")
            .field("key_id", &self.key_id.as_ref().map(|_| "[redacted]"))
            .field("utc_offset_hours", &self.utc_offset_hours)
            .finish()
    }
}

/// Our public base URL as the bank reaches it. Shared, so a test (or a proxy in front of us)
/// can set it once the listener's port is known.
#[derive(Clone, Debug)]
pub struct PublicUrl(std::sync::Arc<std::sync::RwLock<String>>);

impl PublicUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(url.into())))
    }

    pub fn get(&self) -> String {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn set(&self, url: impl Into<String>) {
        if let Ok(mut s) = self.0.write() {
            *s = url.into();
        }
    }
}

/// Settings beyond the runtime's [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Queue-name prefix; `payments` in production.
    pub service_name: String,
    pub bank: BankSettings,
    /// Our base URL as the bank reaches it (BackendURL = `<public_url>/sinopac/backend`).
    pub public_url: PublicUrl,
    /// Where the ReturnURL sends the customer's browser (303).
    pub return_redirect: String,
    pub deadlines: Deadlines,
    pub sweep: SweepSettings,
    /// Run the sweep scheduler in this process.
    pub sweep_enabled: bool,
    /// This replica's name in the scheduler's claim rows (the pod name).
    pub replica: String,
    pub retry_tiers: Vec<Duration>,
}

impl Settings {
    /// Local defaults against the sandbox's simulator (demo shop, demo keys): for `make run`
    /// and tests only.
    pub fn local_demo(bank_base_url: &str) -> Settings {
        Settings {
            service_name: "payments".into(),
            bank: BankSettings {
                base_url: bank_base_url.to_owned(),
                shop_no: "NA0249_001".into(),
                hash_id: HashId::demo_na0249(),
                key_id: Some("b5e6986d-8636-4aa0-8c93-441ad14b2098".into()),
                utc_offset_hours: 8,
                bank_code: "807".into(),
            },
            public_url: PublicUrl::new("http://127.0.0.1:8081"),
            return_redirect: "http://127.0.0.1:8080/".into(),
            deadlines: Deadlines {
                auto_cancel_after: Duration::from_secs(1800),
                margin: Duration::from_secs(300),
                atm_max_days: 3,
                card_minutes: 10,
                utc_offset_hours: 8,
            },
            sweep: SweepSettings::default(),
            sweep_enabled: true,
            replica: "payments-local".into(),
            retry_tiers: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(300),
            ],
        }
    }
}

impl Default for Settings {
    /// [`Settings::local_demo`] against the sandbox simulator on :7102.
    fn default() -> Self {
        Settings::local_demo("http://127.0.0.1:7102")
    }
}

/// The subscription table.
pub fn topology(settings: &Settings) -> Topology {
    let mut t =
        Topology::new(settings.service_name.clone()).retry_tiers(settings.retry_tiers.clone());
    for sub in consumers::subscriptions() {
        let description = format!("payments consumer of {}", sub.pattern);
        t = t.subscribe(sub.prefetch(50).batch(10).describe(description));
    }
    t
}

/// The bank client of these settings (no database: see [`Bank::new`]).
pub fn bank_client(settings: &BankSettings) -> Result<Client, orderbus_sinopac::Error> {
    let mut cfg = ClientConfig::new(
        settings.base_url.clone(),
        settings.shop_no.clone(),
        settings.hash_id.clone(),
    );
    cfg.key_id.clone_from(&settings.key_id);
    cfg.read_timeout = Duration::from_secs(10);
    Client::new(cfg)
}

/// The bank with its call log in `pool`.
pub fn bank(client: &Client, settings: &BankSettings, pool: sqlx::PgPool) -> Bank {
    Bank::new(
        client.clone(),
        CallLog::new(pool),
        settings.utc_offset_hours,
    )
}

/// Paths anyone may read without a key.
pub const PUBLIC_PATHS: [&str; 1] = ["/openapi.json"];

/// Errors of [`start`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("bank client: {0}")]
    Bank(#[from] orderbus_sinopac::Error),
    #[error("sweep schedule: {0}")]
    Schedule(String),
}

/// Starts HTTP (API behind keys: GET `orders:read`, POST `payments:write`; the bank's
/// notification routes open), consumers, relay and the sweep scheduler.
pub async fn start(
    config: Config,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    for w in settings.deadlines.startup_warnings() {
        tracing::warn!("{w}");
    }
    let client = bank_client(&settings.bank)?;
    let schedule = Schedule::every(settings.sweep.interval)
        .map_err(|e| StartError::Schedule(e.to_string()))?;
    let (api_client, hook_client, sweep_client) = (client.clone(), client.clone(), client);
    let (api_s, hook_s) = (settings.clone(), settings.clone());
    let mut service = Service::new(settings.service_name.clone(), topology(&settings))
        .migrations(&MIGRATIONS)
        .migrations(&orderbus_ingress::MIGRATOR)
        .migrations(&orderbus_scheduler::MIGRATOR)
        .migrations(&orderbus_partner::MIGRATOR)
        .routes(move |pool| {
            let b = bank(&hook_client, &hook_s.bank, pool.clone());
            notify::router(
                pool,
                b,
                hook_s.return_redirect.clone(),
                IngressConfig::default(),
            )
        })
        .api(move |pool, auth| {
            let s = api_s;
            let api = http::Api {
                bank: bank(&api_client, &s.bank, pool.clone()),
                pool,
                deadlines: s.deadlines.clone(),
                public_url: s.public_url.clone(),
                first_sweep_after: s.sweep.after,
                bank_code: s.bank.bank_code.clone(),
            };
            // Ops' per-order timeline: this service's Sinopac calls and notifications (ops:read).
            let timeline = orderbus_timeline::standard_sources(&api.pool, "payments");
            auth.protect(
                http::router(api),
                Policy::read_write(ORDERS_READ, PAYMENTS_WRITE),
                &PUBLIC_PATHS,
            )
            .merge(orderbus_timeline::mount(&auth, "payments", timeline))
        })
        .config(config);
    if settings.sweep_enabled {
        let (bank_s, sweep) = (settings.bank.clone(), settings.sweep.clone());
        let replica = settings.replica.clone();
        service = service.task("reconcile", move |ctx| {
            let job = SweepJob {
                reconciler: Reconciler {
                    pool: ctx.pool().clone(),
                    bank: bank(&sweep_client, &bank_s, ctx.pool().clone()),
                    settings: sweep.clone(),
                },
                schedule: schedule.clone(),
            };
            let scheduler =
                Scheduler::new(ctx.pool().clone(), SystemClock, replica.clone()).job(job);
            let shutdown = ctx.shutdown().clone();
            async move { scheduler.run(shutdown).await }
        });
    }
    Ok(service.start(shutdown).await?)
}
