//! # orderbus-storefront
//!
//! The shop's order service: orders (with JIT split children), exchange and return orders, a
//! per-order timeline, one explicit state machine per kind ([`machine`]), an HTTP API
//! ([`http`], OpenAPI at `/openapi.json`), typed consumers for the ERP's and the payment
//! service's messages ([`consumers`]), and the unpaid-order auto-cancel sweep ([`autocancel`]).
//! Every state change commits with its outgoing message through the bus's outbox.

pub mod autocancel;
pub mod consumers;
pub mod http;
pub mod ids;
pub mod machine;
pub mod metrics;
pub mod store;

use std::time::Duration;

use orderbus_bus::Topology;
use orderbus_contracts::RoutingKey;
use orderbus_runtime::auth::{ORDERS_READ, ORDERS_WRITE};
use orderbus_runtime::{CancellationToken, Config, Policy, Running, RuntimeError, Service};

/// The service's own migrations (merged with the bus's by the runtime).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Storefront settings beyond the runtime's [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Queue-name prefix (`<name>.<routing key>`); `storefront` in production.
    pub service_name: String,
    /// Unpaid orders older than this are cancelled (906).
    pub auto_cancel_after: Duration,
    /// How often the auto-cancel sweep runs; `None` = no sweeper in this process.
    pub sweep_interval: Option<Duration>,
    /// Orders cancelled per sweep transaction.
    pub sweep_batch: i64,
    /// Delay tiers of the retry chain.
    pub retry_tiers: Vec<Duration>,
    /// Request body limit in bytes.
    pub body_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            service_name: "storefront".into(),
            auto_cancel_after: Duration::from_secs(30 * 60),
            sweep_interval: Some(Duration::from_secs(30)),
            sweep_batch: 100,
            retry_tiers: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(300),
            ],
            body_limit: 64 * 1024,
        }
    }
}

/// Consumed keys with many messages per order and one order per message.
const HIGH_VOLUME: [&str; 2] = [
    RoutingKey::OrderErpStatus.as_str(),
    RoutingKey::OrderUpdateExpressInfo.as_str(),
];

/// The subscription table: one quorum queue per consumed routing key.
pub fn topology(settings: &Settings) -> Topology {
    let mut t =
        Topology::new(settings.service_name.clone()).retry_tiers(settings.retry_tiers.clone());
    for sub in consumers::subscriptions() {
        // Up to 20 already-prefetched messages share one transaction (a failure redoes them
        // one by one); one worker per queue keeps arrival order. The two high-volume streams,
        // each message about one order, run 4 batches at once partitioned by order code, so
        // one order's events still apply in arrival order.
        let partitions = if HIGH_VOLUME.contains(&sub.pattern.as_str()) {
            4
        } else {
            1
        };
        let description = format!("storefront consumer of {}", sub.pattern);
        t = t.subscribe(
            sub.prefetch(100)
                .batch(20)
                .partitions(partitions)
                .describe(description),
        );
    }
    t
}

/// Paths of the API anyone may read without a key.
pub const PUBLIC_PATHS: [&str; 1] = ["/openapi.json"];

/// Starts HTTP (the API needs `orders:read` for GET/HEAD and `orders:write` otherwise),
/// consumers, relay and (if configured) the auto-cancel sweep as a background task.
/// Cancelling `shutdown` drains everything.
pub async fn start(
    config: Config,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<Running, RuntimeError> {
    let body_limit = settings.body_limit;
    let mut service = Service::new(settings.service_name.clone(), topology(&settings))
        .migrations(&MIGRATIONS)
        .api(move |pool, auth| {
            // The order timeline ops assembles across services (orderbus-timeline, ops:read).
            let mut timeline = orderbus_timeline::standard_sources(&pool, "storefront");
            timeline.push(http::timeline_source::source(
                pool.clone(),
                "storefront".into(),
            ));
            auth.protect(
                http::router(pool, body_limit),
                Policy::read_write(ORDERS_READ, ORDERS_WRITE),
                &PUBLIC_PATHS,
            )
            .merge(orderbus_timeline::mount(&auth, "storefront", timeline))
        })
        .config(config);
    if let Some(interval) = settings.sweep_interval {
        let (deadline, batch) = (settings.auto_cancel_after, settings.sweep_batch);
        // Not a readiness gate: a failing sweep delays cancellations, while the API and the
        // consumers still serve correctly (a database outage shows as `database` anyway).
        service = service.task("auto-cancel", move |ctx| {
            autocancel::run(
                ctx.pool().clone(),
                deadline,
                interval,
                batch,
                ctx.shutdown().clone(),
            )
        });
    }
    service.start(shutdown).await
}
