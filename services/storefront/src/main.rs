//! `orderbus-storefront`: the shop's order service (HTTP API + bus consumers + auto-cancel).

use std::time::Duration;

use clap::Parser;
use orderbus_runtime::{CancellationToken, Config};
use orderbus_storefront::{start, Settings};

/// The shop's order service: HTTP API (OpenAPI at /openapi.json), consumers of the ERP's and
/// the payment service's messages, and the unpaid-order auto-cancel sweep.
#[derive(Debug, Parser)]
#[command(
    name = "orderbus-storefront",
    version,
    after_help = "Connection settings come from the environment: ORDERBUS_AMQP_URL, \
ORDERBUS_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/<service name>; see --create-database), \
ORDERBUS_HTTP_ADDR / ORDERBUS_HTTP_PORT (0.0.0.0:8080), ORDERBUS_LOG_FORMAT (human|json), \
ORDERBUS_SHUTDOWN_GRACE_SECS, ORDERBUS_RELAY, ORDERBUS_RUN_MIGRATIONS, ORDERBUS_DB_* (see orderbus-runtime)."
)]
struct Args {
    /// Queue-name prefix (`<name>.<routing key>`, `<name>.parking`, ...). Every replica of one
    /// deployment must use the same name; a second name is a second, independent consumer.
    #[arg(long, env = "STOREFRONT_SERVICE_NAME", default_value = "storefront")]
    service_name: String,
    /// Cancel unpaid orders older than this many seconds (order.orderStatus 906).
    #[arg(
        long,
        env = "STOREFRONT_AUTO_CANCEL_AFTER_SECS",
        default_value_t = 1800
    )]
    auto_cancel_after_secs: u64,
    /// Seconds between auto-cancel sweeps; 0 disables the sweeper in this process.
    #[arg(long, env = "STOREFRONT_SWEEP_INTERVAL_SECS", default_value_t = 30)]
    sweep_interval_secs: u64,
    /// Orders cancelled per sweep transaction.
    #[arg(long, env = "STOREFRONT_SWEEP_BATCH", default_value_t = 100)]
    sweep_batch: i64,
    /// Create the database named in ORDERBUS_DATABASE_URL if it does not exist (local
    /// development; production databases are provisioned).
    #[arg(long, env = "STOREFRONT_CREATE_DATABASE")]
    create_database: bool,
    /// Maximum request body size in bytes.
    #[arg(long, env = "STOREFRONT_BODY_LIMIT", default_value_t = 65536)]
    body_limit: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::from_env(&args.service_name)?;
    if args.create_database {
        orderbus_runtime::create_database_if_missing(config.database_url.expose()).await?;
    }
    let settings = Settings {
        service_name: args.service_name.clone(),
        auto_cancel_after: Duration::from_secs(args.auto_cancel_after_secs),
        sweep_interval: (args.sweep_interval_secs > 0)
            .then(|| Duration::from_secs(args.sweep_interval_secs)),
        sweep_batch: args.sweep_batch.max(1),
        body_limit: args.body_limit,
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    start(config, settings, shutdown).await?.wait().await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
