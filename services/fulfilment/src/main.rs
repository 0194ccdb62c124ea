//! `orderbus-fulfilment`: Frotel quotes, registration, bank payment and tracking.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use orderbus_frotel::ClientConfig;
use orderbus_fulfilment::{start, Mapping, Settings};
use orderbus_runtime::{ApiKeyArgs, CancellationToken, RuntimeArgs};

/// Frotel fulfilment: shipping quotes for the checkout (POST /fulfilment/quotes, orders:write),
/// registration of the orders of Frotel warehouses (order.submit), Frotel's bank payment
/// (GET /fulfilment/orders/{code}/pay?bank=N, the bank callback, checkPay, continue-pay →
/// order.payment) and tracking polls (→ order.updateExpressInfo, order.erpstatus 600/700),
/// across Frotel's three mirrors. Ops: GET /fulfilment/ops/attention (ops:read).
#[derive(Debug, Parser)]
#[command(
    name = "orderbus-fulfilment",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Queue-name prefix (`<name>.<routing key>`); the same for every replica.
    #[arg(long, env = "FULFILMENT_SERVICE_NAME", default_value = "fulfilment")]
    service_name: String,
    /// Frotel API key (field `api`), from fpanel.ir.
    #[arg(long, env = "FULFILMENT_FROTEL_API_KEY", hide_env_values = true)]
    frotel_api_key: Option<String>,
    /// Frotel mirror base URLs, tried in this order (comma-separated).
    #[arg(
        long,
        env = "FULFILMENT_FROTEL_MIRRORS",
        value_delimiter = ',',
        default_value = "http://webservice1.link/ws/v1/rest/,http://webservice2.link/ws/v1/rest/,http://webservice3.link/ws/v1/rest/"
    )]
    frotel_mirrors: Vec<String>,
    /// Connect timeout per mirror (ms); a connect failure means nothing was sent.
    #[arg(
        long,
        env = "FULFILMENT_FROTEL_CONNECT_TIMEOUT_MS",
        default_value_t = 3000
    )]
    frotel_connect_timeout_ms: u64,
    /// Read timeout per mirror (ms).
    #[arg(
        long,
        env = "FULFILMENT_FROTEL_READ_TIMEOUT_MS",
        default_value_t = 15000
    )]
    frotel_read_timeout_ms: u64,
    /// Whole-attempt timeout per mirror (ms).
    #[arg(
        long,
        env = "FULFILMENT_FROTEL_REQUEST_TIMEOUT_MS",
        default_value_t = 30000
    )]
    frotel_request_timeout_ms: u64,
    /// How long a failed mirror is tried last (s).
    #[arg(long, env = "FULFILMENT_FROTEL_UNHEALTHY_SECS", default_value_t = 30)]
    frotel_unhealthy_secs: u64,
    /// Mapping file (TOML): Frotel warehouses, SKUs, cities, gender, Rial conversion.
    #[arg(long, env = "FULFILMENT_MAPPING_FILE")]
    mapping_file: Option<PathBuf>,
    /// Operator tracking-vocabulary files loaded after the built-in tables (comma-separated).
    #[arg(long, env = "FULFILMENT_VOCABULARY_FILES", value_delimiter = ',')]
    vocabulary_files: Vec<PathBuf>,
    /// Base URL the customer's browser reaches this service at (the bank callback goes there).
    #[arg(
        long,
        env = "FULFILMENT_PUBLIC_BASE_URL",
        default_value = "http://127.0.0.1:8083"
    )]
    public_base_url: String,
    /// Seconds a quote is reused for the same inputs (0 = no cache).
    #[arg(long, env = "FULFILMENT_QUOTE_CACHE_SECS", default_value_t = 60)]
    quote_cache_secs: u64,
    /// Shipping price (Rial) quoted when no mirror answers; unset = 503.
    #[arg(long, env = "FULFILMENT_DEFAULT_SHIPPING_PRICE")]
    default_shipping_price: Option<i64>,
    /// Milliseconds between looks for due registrations and checkPay callbacks.
    #[arg(long, env = "FULFILMENT_WORKER_INTERVAL_MS", default_value_t = 500)]
    worker_interval_ms: u64,
    /// First retry delay (s) when no mirror was reached for a registration (doubles, capped).
    #[arg(long, env = "FULFILMENT_REGISTER_RETRY_SECS", default_value_t = 5)]
    register_retry_secs: u64,
    /// Longest registration retry delay (s).
    #[arg(
        long,
        env = "FULFILMENT_REGISTER_RETRY_CAP_SECS",
        default_value_t = 300
    )]
    register_retry_cap_secs: u64,
    /// A registration in flight longer than this (s) is "outcome unknown" (its process died).
    #[arg(long, env = "FULFILMENT_STALE_SENDING_SECS", default_value_t = 120)]
    stale_sending_secs: u64,
    /// A callback whose checkPay has not answered after this (s) is escalated (still retried).
    #[arg(long, env = "FULFILMENT_CHECK_ESCALATE_SECS", default_value_t = 1800)]
    check_escalate_secs: u64,
    /// A Frotel bank payment not verified this long (s) after registration is escalated.
    #[arg(
        long,
        env = "FULFILMENT_PAYMENT_DEADLINE_SECS",
        default_value_t = 86400
    )]
    payment_deadline_secs: u64,
    /// Tracking poll slot (s).
    #[arg(long, env = "FULFILMENT_TRACKING_INTERVAL_SECS", default_value_t = 300)]
    tracking_interval_secs: u64,
    /// Parallel tracking calls.
    #[arg(long, env = "FULFILMENT_TRACKING_CONCURRENCY", default_value_t = 8)]
    tracking_concurrency: usize,
    /// Create the database named in ORDERBUS_DATABASE_URL if it does not exist (local
    /// development).
    #[arg(long, env = "FULFILMENT_CREATE_DATABASE")]
    create_database: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint an API key: prints the key once and the ORDERBUS_API_KEYS entry (its SHA-256).
    ApiKey(ApiKeyArgs),
}

fn command() -> clap::Command {
    Args::command()
        .mut_arg("http_addr", |a| a.default_value("127.0.0.1"))
        .mut_arg("http_port", |a| a.default_value("8083"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::from_arg_matches(&command().get_matches())?;
    if let Some(Command::ApiKey(mint)) = &args.command {
        print!("{}", mint.run()?);
        return Ok(());
    }
    let config = args.runtime.config(&args.service_name)?;
    if args.create_database {
        orderbus_runtime::create_database_if_missing(config.database_url.expose()).await?;
    }
    let mapping = match &args.mapping_file {
        Some(p) => Mapping::load(p)?,
        None => Mapping::empty(),
    };
    let Some(api_key) = args.frotel_api_key.clone() else {
        anyhow::bail!("FULFILMENT_FROTEL_API_KEY (--frotel-api-key) is required");
    };
    let mut frotel = ClientConfig::new(api_key);
    frotel.mirrors = args.frotel_mirrors.clone();
    frotel.connect_timeout = Duration::from_millis(args.frotel_connect_timeout_ms);
    frotel.read_timeout = Duration::from_millis(args.frotel_read_timeout_ms);
    frotel.request_timeout = Duration::from_millis(args.frotel_request_timeout_ms);
    frotel.unhealthy_for = Duration::from_secs(args.frotel_unhealthy_secs);
    let interval = Duration::from_millis(args.worker_interval_ms.max(10));
    let settings = Settings {
        service_name: args.service_name.clone(),
        frotel,
        mapping,
        vocabulary_files: args.vocabulary_files.clone(),
        public_base_url: args.public_base_url.clone(),
        quote_cache_ttl: Duration::from_secs(args.quote_cache_secs),
        default_shipping_price: args.default_shipping_price,
        register_interval: interval,
        register_retry_base: Duration::from_secs(args.register_retry_secs.max(1)),
        register_retry_cap: Duration::from_secs(args.register_retry_cap_secs.max(1)),
        stale_sending: Duration::from_secs(args.stale_sending_secs.max(1)),
        check_interval: interval,
        check_escalate_after: Duration::from_secs(args.check_escalate_secs),
        payment_deadline: Duration::from_secs(args.payment_deadline_secs),
        tracking_interval: Duration::from_secs(args.tracking_interval_secs.max(1)),
        tracking_concurrency: args.tracking_concurrency.max(1),
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    orderbus_runtime::cancel_on_signal(shutdown.clone());
    start(config, settings, shutdown).await?.wait().await?;
    Ok(())
}
