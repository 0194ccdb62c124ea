//! `orderbus-storefront`: the shop's order service (HTTP API + bus consumers + auto-cancel).

use std::time::Duration;

use clap::{Parser, Subcommand};
use orderbus_runtime::{ApiKeyArgs, CancellationToken, RuntimeArgs};
use orderbus_storefront::{start, Settings};

/// The shop's order service: HTTP API (OpenAPI at /openapi.json; bearer API keys with
/// orders:read for GET and orders:write otherwise), consumers of the ERP's and the payment
/// service's messages, and the unpaid-order auto-cancel sweep.
#[derive(Debug, Parser)]
#[command(
    name = "orderbus-storefront",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
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
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint an API key: prints the key once and the ORDERBUS_API_KEYS entry (its SHA-256).
    ApiKey(ApiKeyArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::ApiKey(mint)) = &args.command {
        print!("{}", mint.run()?);
        return Ok(());
    }
    let config = args.runtime.config(&args.service_name)?;
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
    orderbus_runtime::cancel_on_signal(shutdown.clone());
    start(config, settings, shutdown).await?.wait().await?;
    Ok(())
}
