//! `orderbus-payments`: Sinopac QPay payments (HTTP API + bank notifications + bus consumers +
//! the OrderQuery reconciliation sweep).

use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use orderbus_payments::deadline::Deadlines;
use orderbus_payments::reconcile::SweepSettings;
use orderbus_payments::{start, BankSettings, Settings};
use orderbus_runtime::{ApiKeyArgs, CancellationToken, RuntimeArgs};
use orderbus_sinopac::HashId;

/// The payments service: POST/GET /payments/{order_code} (OpenAPI at /openapi.json; bearer API
/// keys, orders:read for GET and payments:write for POST), the bank's BackendURL
/// (/sinopac/backend) and ReturnURL (/sinopac/return), consumers of order.submit and
/// order.orderStatus, publisher of order.payment, and the OrderQuery reconciliation sweep.
#[derive(Debug, Parser)]
#[command(
    name = "orderbus-payments",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Queue-name prefix; the same for every replica of one deployment.
    #[arg(long, env = "PAYMENTS_SERVICE_NAME", default_value = "payments")]
    service_name: String,
    /// Sinopac QPay API base (no trailing /Order), e.g.
    /// https://apisbx.sinopac.com/funBIZ-Sbx/QPay.WebAPI/api; the sandbox simulator is
    /// http://127.0.0.1:7102.
    #[arg(
        long,
        env = "PAYMENTS_SINOPAC_BASE_URL",
        default_value = "http://127.0.0.1:7102"
    )]
    sinopac_base_url: String,
    /// ShopNo (secret).
    #[arg(long, env = "PAYMENTS_SINOPAC_SHOP_NO", hide_env_values = true)]
    sinopac_shop_no: Option<String>,
    /// Key A1 (16 hex, secret).
    #[arg(long, env = "PAYMENTS_SINOPAC_A1", hide_env_values = true)]
    sinopac_a1: Option<String>,
    /// Key A2 (16 hex, secret).
    #[arg(long, env = "PAYMENTS_SINOPAC_A2", hide_env_values = true)]
    sinopac_a2: Option<String>,
    /// Key B1 (16 hex, secret).
    #[arg(long, env = "PAYMENTS_SINOPAC_B1", hide_env_values = true)]
    sinopac_b1: Option<String>,
    /// Key B2 (16 hex, secret).
    #[arg(long, env = "PAYMENTS_SINOPAC_B2", hide_env_values = true)]
    sinopac_b2: Option<String>,
    /// X-KeyID header value (secret).
    #[arg(long, env = "PAYMENTS_SINOPAC_KEY_ID", hide_env_values = true)]
    sinopac_key_id: Option<String>,
    /// Use the public demo shop NA0249_001 and its published keys (sandbox simulator only:
    /// make run and tests). Refused together with any PAYMENTS_SINOPAC_* key.
    #[arg(long, env = "PAYMENTS_SINOPAC_DEMO_KEYS")]
    sinopac_demo_keys: bool,
    /// The bank's local time offset from UTC in hours (Taiwan: 8).
    #[arg(long, env = "PAYMENTS_SINOPAC_UTC_OFFSET_HOURS", default_value_t = 8)]
    sinopac_utc_offset_hours: i64,
    /// Our base URL as the bank reaches it (BackendURL/ReturnURL are built from it).
    #[arg(
        long,
        env = "PAYMENTS_PUBLIC_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    public_url: String,
    /// Where ReturnURL sends the customer's browser (303).
    #[arg(
        long,
        env = "PAYMENTS_RETURN_REDIRECT_URL",
        default_value = "http://127.0.0.1:8080/"
    )]
    return_redirect_url: String,
    /// MUST equal the storefront's STOREFRONT_AUTO_CANCEL_AFTER_SECS: every payment method's
    /// validity ends before it (ATM ExpireDate, card ExpMinutes).
    #[arg(
        long,
        env = "PAYMENTS_STOREFRONT_AUTO_CANCEL_AFTER_SECS",
        default_value_t = 1800
    )]
    storefront_auto_cancel_after_secs: u64,
    /// Safety margin before the auto-cancel, seconds.
    #[arg(long, env = "PAYMENTS_DEADLINE_MARGIN_SECS", default_value_t = 300)]
    deadline_margin_secs: u64,
    /// Longest ATM validity, in bank days after today.
    #[arg(long, env = "PAYMENTS_ATM_MAX_DAYS", default_value_t = 3)]
    atm_max_days: u32,
    /// Card page validity (CardParam.ExpMinutes, 1-30).
    #[arg(long, env = "PAYMENTS_CARD_MINUTES", default_value_t = 10)]
    card_minutes: u8,
    /// Seconds between reconciliation sweeps.
    #[arg(long, env = "PAYMENTS_SWEEP_INTERVAL_SECS", default_value_t = 300)]
    sweep_interval_secs: u64,
    /// Leave a new attempt to its notifications this many seconds before sweeping it.
    #[arg(long, env = "PAYMENTS_SWEEP_AFTER_SECS", default_value_t = 600)]
    sweep_after_secs: u64,
    /// Up to this many due payments are queried by OrderNo; more by order-date window.
    #[arg(long, env = "PAYMENTS_SWEEP_BY_ORDER_NO_MAX", default_value_t = 20)]
    sweep_by_order_no_max: usize,
    /// Looks per payment before it is escalated (stuck).
    #[arg(long, env = "PAYMENTS_SWEEP_MAX_ATTEMPTS", default_value_t = 10)]
    sweep_max_attempts: i32,
    /// Backoff between looks at one payment: base * 2^n seconds...
    #[arg(long, env = "PAYMENTS_SWEEP_BACKOFF_BASE_SECS", default_value_t = 300)]
    sweep_backoff_base_secs: u64,
    /// ...at most this many seconds.
    #[arg(long, env = "PAYMENTS_SWEEP_BACKOFF_MAX_SECS", default_value_t = 7200)]
    sweep_backoff_max_secs: u64,
    /// Do not run the sweep scheduler in this process.
    #[arg(long, env = "PAYMENTS_NO_SWEEP")]
    no_sweep: bool,
    /// This replica's name in the scheduler's claim rows (the pod name).
    #[arg(long, env = "PAYMENTS_REPLICA", default_value = "payments-0")]
    replica: String,
    /// Create the database named in ORDERBUS_DATABASE_URL if missing (local development).
    #[arg(long, env = "PAYMENTS_CREATE_DATABASE")]
    create_database: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint an API key: prints the key once and the ORDERBUS_API_KEYS entry (its SHA-256).
    ApiKey(ApiKeyArgs),
}

/// The runtime's HTTP settings re-defaulted to this service's local port, 127.0.0.1:8081
/// (deployments set ORDERBUS_HTTP_ADDR=0.0.0.0).
fn command() -> clap::Command {
    Args::command()
        .mut_arg("http_addr", |a| a.default_value("127.0.0.1"))
        .mut_arg("http_port", |a| a.default_value("8081"))
}

fn bank_settings(args: &Args) -> anyhow::Result<BankSettings> {
    let keys = [
        &args.sinopac_shop_no,
        &args.sinopac_a1,
        &args.sinopac_a2,
        &args.sinopac_b1,
        &args.sinopac_b2,
    ];
    let demo = Settings::local_demo(&args.sinopac_base_url).bank;
    if args.sinopac_demo_keys {
        if keys.iter().any(|k| k.is_some()) || args.sinopac_key_id.is_some() {
            anyhow::bail!("--sinopac-demo-keys cannot be combined with PAYMENTS_SINOPAC_* keys");
        }
        tracing::warn!("using the PUBLIC DEMO shop NA0249_001 (sandbox only)");
        return Ok(BankSettings {
            utc_offset_hours: args.sinopac_utc_offset_hours,
            ..demo
        });
    }
    let (Some(shop), Some(a1), Some(a2), Some(b1), Some(b2)) = (
        &args.sinopac_shop_no,
        &args.sinopac_a1,
        &args.sinopac_a2,
        &args.sinopac_b1,
        &args.sinopac_b2,
    ) else {
        anyhow::bail!(
            "Sinopac credentials missing: set PAYMENTS_SINOPAC_SHOP_NO, _A1, _A2, _B1, _B2 (and _KEY_ID), or PAYMENTS_SINOPAC_DEMO_KEYS=true against the sandbox simulator"
        );
    };
    let hash_id =
        HashId::from_keys(a1, a2, b1, b2).map_err(|e| anyhow::anyhow!("Sinopac keys: {e}"))?;
    Ok(BankSettings {
        base_url: args.sinopac_base_url.clone(),
        shop_no: shop.clone(),
        hash_id,
        key_id: args.sinopac_key_id.clone(),
        utc_offset_hours: args.sinopac_utc_offset_hours,
        bank_code: "807".into(),
    })
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
    let bank = bank_settings(&args)?;
    let s = Duration::from_secs;
    let settings = Settings {
        service_name: args.service_name.clone(),
        bank,
        public_url: orderbus_payments::PublicUrl::new(args.public_url.clone()),
        return_redirect: args.return_redirect_url.clone(),
        deadlines: Deadlines {
            auto_cancel_after: s(args.storefront_auto_cancel_after_secs),
            margin: s(args.deadline_margin_secs),
            atm_max_days: args.atm_max_days,
            card_minutes: args.card_minutes.clamp(1, 30),
            utc_offset_hours: args.sinopac_utc_offset_hours,
        },
        sweep: SweepSettings {
            interval: s(args.sweep_interval_secs.max(1)),
            after: s(args.sweep_after_secs),
            by_order_no_max: args.sweep_by_order_no_max,
            batch: 2000,
            max_attempts: args.sweep_max_attempts.max(1),
            backoff_base: s(args.sweep_backoff_base_secs.max(1)),
            backoff_max: s(args.sweep_backoff_max_secs.max(1)),
        },
        sweep_enabled: !args.no_sweep,
        replica: args.replica.clone(),
        ..Settings::local_demo(&args.sinopac_base_url)
    };
    let shutdown = CancellationToken::new();
    orderbus_runtime::cancel_on_signal(shutdown.clone());
    start(config, settings, shutdown).await?.wait().await?;
    Ok(())
}
