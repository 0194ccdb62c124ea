//! `orderbus-tracking`: shipments, SweetTracker registration + callbacks, SHOPLINE logistics
//! reports, `order.updateExpressInfo`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use orderbus_runtime::{ApiKeyArgs, CancellationToken, RuntimeArgs};
use orderbus_shopline::{PrivateKey, PublicKey, VerifierConfig};
use orderbus_sweettracker::ClientConfig;
use orderbus_tracking::{start, CarrierTable, Settings, ShoplineKeys};

/// Tracking service: shipments from order.erpstatus 600 (re-deliveries from
/// erp.createChangeOrder), SweetTracker's daily registration (12:00 Asia/Seoul, once across
/// replicas) and callbacks (POST /delivery/tracking_receive?token=...), SHOPLINE's signed
/// logistics reports (POST /webhooks/shopline/logistics), order.updateExpressInfo for each new
/// tracking event. API (bearer keys, tracking:read / tracking:write): GET
/// /v1/orders/{code}/shipments, GET /v1/shipments/stale, PUT /v1/shopline/transactions/{id}.
#[derive(Debug, Parser)]
#[command(
    name = "orderbus-tracking",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Queue-name prefix (`<name>.<routing key>`); the same for every replica.
    #[arg(long, env = "TRACKING_SERVICE_NAME", default_value = "tracking")]
    service_name: String,
    /// SweetTracker's host (seed dev: http://trace-api-dev.sweettracker.net:8102, prod:
    /// http://trace-api.sweettracker.net/).
    #[arg(
        long,
        env = "TRACKING_SWEETTRACKER_URL",
        default_value = orderbus_sweettracker::client::DEV_HOST
    )]
    sweettracker_url: String,
    /// SweetTracker `tier` (dev: testuser).
    #[arg(long, env = "TRACKING_SWEETTRACKER_TIER", default_value = "testuser")]
    sweettracker_tier: String,
    /// SweetTracker `key` (dev: testuser).
    #[arg(
        long,
        env = "TRACKING_SWEETTRACKER_KEY",
        default_value = "testuser",
        hide_env_values = true,
        hide_default_value = true
    )]
    sweettracker_key: String,
    /// Our public base URL SweetTracker calls back: {site}/delivery/tracking_receive?token=...
    #[arg(
        long,
        env = "TRACKING_SITE_DOMAIN",
        default_value = "http://127.0.0.1:8082"
    )]
    site_domain: String,
    /// Cron expression of the daily registration (5 fields, or 6 with seconds first).
    #[arg(long, env = "TRACKING_REGISTRATION_CRON", default_value = "0 12 * * *")]
    registration_cron: String,
    /// IANA time zone of the cron expression.
    #[arg(long, env = "TRACKING_REGISTRATION_TZ", default_value = "Asia/Seoul")]
    registration_tz: String,
    /// Parallel add_invoice calls at most.
    #[arg(long, env = "TRACKING_REGISTRATION_CONCURRENCY", default_value_t = 8)]
    registration_concurrency: usize,
    /// Run the registration scheduler in this replica (every replica may: one fires per slot).
    #[arg(long, env = "TRACKING_SCHEDULER", default_value_t = true, action = clap::ArgAction::Set)]
    scheduler: bool,
    /// ERP express_id → SweetTracker carrier code, e.g. "23=04,5=05" (codes are 2+ digits).
    #[arg(long, env = "TRACKING_CARRIER_CODES", default_value = orderbus_tracking::carriers::DEFAULT_TABLE)]
    carrier_codes: CarrierTable,
    /// The channel of our shipments (seed: only online malls are registered).
    #[arg(long, env = "TRACKING_CHANNEL", default_value = "online")]
    channel: String,
    /// A shipment with no event for this long is stale (e.g. 72h, 30m).
    #[arg(long, env = "TRACKING_STALE_AFTER", default_value = "72h", value_parser = parse_duration)]
    stale_after: Duration,
    /// Operator tracking vocabulary files (TOML, comma-separated), loaded over the built-in
    /// tables and validated at start.
    #[arg(long, env = "ORDERBUS_TRACKING_VOCABULARY", value_delimiter = ',')]
    tracking_vocabulary: Vec<PathBuf>,
    /// SHOPLINE's public key (Base64 X.509 SubjectPublicKeyInfo, or PEM). Without it and the
    /// merchant key there is no SHOPLINE route.
    #[arg(long, env = "TRACKING_SHOPLINE_PUBLIC_KEY")]
    shopline_public_key: Option<String>,
    /// Our merchant private key signing the replies (Base64 PKCS#8, or PEM).
    #[arg(long, env = "TRACKING_SHOPLINE_PRIVATE_KEY", hide_env_values = true)]
    shopline_private_key: Option<String>,
    /// DEVELOPMENT ONLY (`make run`): use SHOPLINE's published test key pair for both sides,
    /// as the sandbox's SHOPLINE sender does. Never in production.
    #[arg(long, env = "TRACKING_SHOPLINE_SANDBOX_KEYS", conflicts_with_all = ["shopline_public_key", "shopline_private_key"])]
    shopline_sandbox_keys: bool,
    /// Accepted |now - pay-api-timestamp| (e.g. 24h); 0 disables the check.
    #[arg(long, env = "TRACKING_SHOPLINE_TIMESTAMP_WINDOW", default_value = "24h", value_parser = parse_duration)]
    shopline_timestamp_window: Duration,
    /// This replica's name in the scheduler's claim rows (default: $HOSTNAME or a random one).
    #[arg(long, env = "TRACKING_REPLICA")]
    replica: Option<String>,
    /// Create the database named in ORDERBUS_DATABASE_URL if it does not exist (local
    /// development; production databases are provisioned).
    #[arg(long, env = "TRACKING_CREATE_DATABASE")]
    create_database: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint an API key: prints the key once and the ORDERBUS_API_KEYS entry (its SHA-256).
    ApiKey(ApiKeyArgs),
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 72h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// The runtime's HTTP defaults, tracking's own: 127.0.0.1:8082.
fn command() -> clap::Command {
    Args::command()
        .mut_arg("http_addr", |a| a.default_value("127.0.0.1"))
        .mut_arg("http_port", |a| a.default_value("8082"))
}

fn shopline_keys(args: &Args) -> anyhow::Result<Option<ShoplineKeys>> {
    use orderbus_shopline::signing::test_keys;
    let sandbox = (
        Some(test_keys::PUBLIC_KEY_SPKI_B64.to_owned()),
        Some(test_keys::PRIVATE_KEY_PKCS8_B64.to_owned()),
    );
    let (public, private) = if args.shopline_sandbox_keys {
        (&sandbox.0, &sandbox.1)
    } else {
        (&args.shopline_public_key, &args.shopline_private_key)
    };
    match (public, private) {
        (None, None) => Ok(None),
        (Some(public), Some(private)) => {
            let public = PublicKey::from_spki_base64(public)
                .map_err(|e| anyhow::anyhow!("TRACKING_SHOPLINE_PUBLIC_KEY: {e}"))?;
            let our_key = PrivateKey::from_pkcs8_base64(private)
                .map_err(|e| anyhow::anyhow!("TRACKING_SHOPLINE_PRIVATE_KEY: {e}"))?;
            let mut verifier = VerifierConfig::new(public);
            verifier.tolerance = (!args.shopline_timestamp_window.is_zero())
                .then_some(args.shopline_timestamp_window);
            Ok(Some(ShoplineKeys { verifier, our_key }))
        }
        _ => anyhow::bail!(
            "set both TRACKING_SHOPLINE_PUBLIC_KEY and TRACKING_SHOPLINE_PRIVATE_KEY, or neither"
        ),
    }
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
    let shopline = shopline_keys(&args)?;
    if shopline.is_none() {
        tracing::warn!(
            "no SHOPLINE keys configured: POST /webhooks/shopline/logistics is not served"
        );
    }
    let settings = Settings {
        service_name: args.service_name.clone(),
        sweettracker: ClientConfig {
            base_url: args.sweettracker_url.clone(),
            tier: args.sweettracker_tier.clone(),
            key: args.sweettracker_key.clone(),
            ..ClientConfig::dev()
        },
        site_domain: orderbus_tracking::SiteDomain::new(args.site_domain.clone()),
        registration_cron: args.registration_cron.clone(),
        registration_tz: args.registration_tz.clone(),
        registration_concurrency: args.registration_concurrency.max(1),
        carriers: args.carrier_codes.clone(),
        channel: args.channel.clone(),
        stale_after: args.stale_after,
        vocabulary_files: args.tracking_vocabulary.clone(),
        shopline,
        scheduler: args.scheduler,
        replica: args
            .replica
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| Settings::default().replica),
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    orderbus_runtime::cancel_on_signal(shutdown.clone());
    start(config, settings, shutdown).await?.wait().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn defaults_listen_on_8082() {
        let m = command()
            .try_get_matches_from(["orderbus-tracking"])
            .expect("parses");
        let args = Args::from_arg_matches(&m).expect("args");
        let config = args.runtime.config("tracking").expect("config");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8082");
        assert_eq!(args.carrier_codes.code(23), Some("04"));
    }
}
