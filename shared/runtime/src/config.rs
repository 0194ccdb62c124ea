//! Configuration: one clap struct, [`RuntimeArgs`], flattened into every binary's parser, so
//! each setting is a flag and an `ORDERBUS_*` environment variable, listed by `--help`.
//! [`RuntimeArgs::config`] resolves it into a [`Config`]. Secrets never reach logs or `--help`:
//! URLs are kept in [`Secret`] (password redacted in Debug/Display) and their env values are
//! hidden.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use orderbus_bus::{ConsumerConfig, OutageBudget, QueueLimits, RelayConfig, Topology};

use crate::auth::{ApiKeys, AuthSettings};

/// The local broker.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10";

/// A URL holding credentials. Debug/Display show it with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The real value, for connecting. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_urls(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_urls(&self.0))
    }
}

/// [`redact_url`] of every URL of a broker list (`amqp://a,amqp://b`, see
/// [`orderbus_bus::conn::broker_urls`]); a single URL is redacted as by `redact_url`.
pub fn redact_urls(urls: &str) -> String {
    orderbus_bus::conn::broker_urls(urls)
        .iter()
        .map(|u| redact_url(u))
        .collect::<Vec<_>>()
        .join(",")
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`; also redacts a
/// `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                let end = rest_start + at;
                out.replace_range(start..end, "***");
            }
        }
    }
    if let Some(q) = out.find("password=") {
        let start = q + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
    }
    out
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[value(alias = "text", alias = "pretty")]
    Human,
    Json,
}

/// Whether HTTP APIs require API keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every API route needs a bearer key with the route's scope.
    Keys,
    /// No authentication (local development only; logged as a WARN at every start).
    Open,
}

/// Parses `250ms`, `2s`, `1m`, `1.5s` or plain seconds (`3`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

/// Logging settings alone, for binaries that use no broker or database.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log format; the filter comes from RUST_LOG (default info).
    #[arg(
        long,
        env = "ORDERBUS_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "human",
        help_heading = "Runtime"
    )]
    pub log_format: LogFormat,
}

/// Every runtime setting, as flags and `ORDERBUS_*` environment variables. Flatten it into a
/// binary's `clap::Parser` with `#[command(flatten)]`.
#[derive(Clone, Debug, clap::Args)]
pub struct RuntimeArgs {
    /// RabbitMQ URL, or the URLs of the nodes of one cluster separated by commas (tried in
    /// turn; a reconnect starts with the node after the one that failed).
    #[arg(long, env = "ORDERBUS_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true, hide_default_value = true, help_heading = "Runtime")]
    pub amqp_url: Secret,
    /// PostgreSQL URL [default: postgres://postgres@127.0.0.1:5432/<service name>].
    #[arg(
        long,
        env = "ORDERBUS_DATABASE_URL",
        hide_env_values = true,
        help_heading = "Runtime"
    )]
    pub database_url: Option<Secret>,
    /// Fallback for ORDERBUS_DATABASE_URL (the name sqlx tools use).
    #[arg(long = "database-url-fallback", env = "DATABASE_URL", hide = true)]
    pub database_url_fallback: Option<Secret>,
    /// Address of the HTTP server (API and /healthz, /readyz, /metrics).
    #[arg(long, env = "ORDERBUS_HTTP_ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED), help_heading = "Runtime")]
    pub http_addr: IpAddr,
    /// Port of the HTTP server (0 = any free port).
    #[arg(
        long,
        env = "ORDERBUS_HTTP_PORT",
        default_value_t = 8080,
        help_heading = "Runtime"
    )]
    pub http_port: u16,
    #[command(flatten)]
    pub log: LogArgs,
    /// Drain time after SIGTERM/SIGINT, in seconds (keep it below the pod's
    /// terminationGracePeriodSeconds).
    #[arg(
        long,
        env = "ORDERBUS_SHUTDOWN_GRACE_SECS",
        default_value_t = 20,
        help_heading = "Runtime"
    )]
    pub shutdown_grace_secs: u64,
    /// PostgreSQL pool size: one per consumer worker or partition while it works, plus the
    /// relay, its LISTEN and HTTP; replicas × this must fit the server's limit.
    #[arg(
        long,
        env = "ORDERBUS_DB_MAX_CONNECTIONS",
        default_value_t = 20,
        help_heading = "Database"
    )]
    pub db_max_connections: u32,
    /// Longest wait for a pooled connection, in ms.
    #[arg(
        long,
        env = "ORDERBUS_DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 5000,
        help_heading = "Database"
    )]
    pub db_acquire_timeout_ms: u64,
    /// Server-side statement_timeout, in ms.
    #[arg(
        long,
        env = "ORDERBUS_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 10000,
        help_heading = "Database"
    )]
    pub db_statement_timeout_ms: u64,
    /// How often readiness probes the database (`database` flag of /readyz), in ms.
    #[arg(
        long,
        env = "ORDERBUS_DB_PROBE_INTERVAL_MS",
        default_value_t = 2000,
        help_heading = "Database"
    )]
    pub db_probe_interval_ms: u64,
    /// Timeout of one readiness probe (connect + SELECT 1), in ms.
    #[arg(
        long,
        env = "ORDERBUS_DB_PROBE_TIMEOUT_MS",
        default_value_t = 1000,
        help_heading = "Database"
    )]
    pub db_probe_timeout_ms: u64,
    /// Run the service's migrations at start (false when a Job or init container migrates).
    #[arg(long, env = "ORDERBUS_RUN_MIGRATIONS", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), help_heading = "Database")]
    pub run_migrations: bool,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// Consumer settings. The `Option`s override what the service's topology declares.
#[derive(Clone, Debug, clap::Args)]
pub struct ConsumerArgs {
    /// Longest a handler may run before the delivery is retried, in ms.
    #[arg(
        long,
        env = "ORDERBUS_HANDLER_TIMEOUT_MS",
        default_value_t = 30000,
        help_heading = "Consumers"
    )]
    pub handler_timeout_ms: u64,
    /// Prefetch of every subscription [default: the service's, e.g. storefront 100].
    #[arg(long, env = "ORDERBUS_CONSUMER_PREFETCH", help_heading = "Consumers")]
    pub consumer_prefetch: Option<u16>,
    /// Messages applied in one transaction [default: the service's, e.g. storefront 20].
    #[arg(long, env = "ORDERBUS_CONSUMER_BATCH", help_heading = "Consumers")]
    pub consumer_batch: Option<usize>,
    /// Partitions of the subscriptions the service partitions (those declared with more than
    /// one) [default: the service's, e.g. storefront 4].
    #[arg(long, env = "ORDERBUS_CONSUMER_PARTITIONS", help_heading = "Consumers")]
    pub consumer_partitions: Option<usize>,
    /// Shard queues per subscription for running several replicas while keeping each order's
    /// messages in sequence (1 = none; see the bus README, "Shards"). Changing it changes the
    /// queues: drain the work queues first [default: 1].
    #[arg(long, env = "ORDERBUS_CONSUMER_SHARDS", help_heading = "Consumers")]
    pub consumer_shards: Option<usize>,
    /// Delay tiers of the retry chain, comma-separated (e.g. 5s,30s,5m) [default: the
    /// service's].
    #[arg(long, env = "ORDERBUS_RETRY_TIERS", value_delimiter = ',', value_parser = parse_duration, help_heading = "Consumers")]
    pub retry_tiers: Option<Vec<Duration>>,
    /// Outage budget of every work and retry queue: the peak rate (msg/s) one publisher may
    /// send into a queue. The queues' `x-max-length` is rate × outage hours, so a publisher
    /// without confirms loses nothing while a consumer is down that long [default: 20].
    #[arg(long, env = "ORDERBUS_QUEUE_PEAK_RATE", help_heading = "Queue limits")]
    pub queue_peak_rate: Option<u32>,
    /// Outage budget: hours a consumer may be down without a full queue [default: 12].
    #[arg(
        long,
        env = "ORDERBUS_QUEUE_OUTAGE_HOURS",
        help_heading = "Queue limits"
    )]
    pub queue_outage_hours: Option<u32>,
    /// Outage budget: mean message size in bytes; `x-max-length-bytes` is messages × this ×
    /// 2 [default: 1024].
    #[arg(
        long,
        env = "ORDERBUS_QUEUE_MEAN_MESSAGE_BYTES",
        help_heading = "Queue limits"
    )]
    pub queue_mean_message_bytes: Option<u32>,
}

/// Outbox relay settings.
#[derive(Clone, Debug, clap::Args)]
pub struct RelayArgs {
    /// Run the outbox relay in this process (false for a replica that must not relay).
    #[arg(long = "relay", env = "ORDERBUS_RELAY", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), help_heading = "Relay")]
    pub run_relay: bool,
    /// Outbox rows claimed and published per round.
    #[arg(long, env = "ORDERBUS_RELAY_BATCH", default_value_t = RelayConfig::default().batch_size, help_heading = "Relay")]
    pub relay_batch: i64,
    /// Batches published but not yet confirmed at once (1 = stop-and-go).
    #[arg(long, env = "ORDERBUS_RELAY_WINDOW", default_value_t = RelayConfig::default().max_in_flight_batches, help_heading = "Relay")]
    pub relay_window: usize,
    /// How long a relay's claim on rows is valid, in seconds (a crashed relay's rows are
    /// claimable after it).
    #[arg(long, env = "ORDERBUS_RELAY_LEASE_SECS", default_value_t = RelayConfig::default().lease.as_secs(), help_heading = "Relay")]
    pub relay_lease_secs: u64,
    /// Periodic sweep for rows LISTEN/NOTIFY missed, in ms.
    #[arg(long, env = "ORDERBUS_RELAY_SWEEP_MS", default_value_t = RelayConfig::default().sweep_interval.as_millis() as u64, help_heading = "Relay")]
    pub relay_sweep_ms: u64,
}

/// API authentication settings.
#[derive(Clone, Debug, clap::Args)]
pub struct AuthArgs {
    /// `keys` (default): API routes need a bearer key; `open`: no authentication (local
    /// development only, logged as a WARN at every start).
    #[arg(
        long,
        env = "ORDERBUS_AUTH",
        value_enum,
        ignore_case = true,
        default_value = "keys",
        help_heading = "Authentication"
    )]
    pub auth: AuthMode,
    /// API clients: `client=NAME;scopes=S1,S2;sha256=HEX` entries separated by whitespace or
    /// `|` (the SHA-256 of each key, never the key; mint one with the `api-key` command).
    #[arg(
        long,
        env = "ORDERBUS_API_KEYS",
        hide_env_values = true,
        help_heading = "Authentication"
    )]
    pub api_keys: Option<String>,
    /// A file with the same entries (one or more per line, `#` comments).
    #[arg(long, env = "ORDERBUS_API_KEYS_FILE", help_heading = "Authentication")]
    pub api_keys_file: Option<PathBuf>,
}

impl ConsumerArgs {
    /// The outage budget the queue-limit settings describe (`None` when none is set).
    fn queue_budget(&self) -> Result<Option<OutageBudget>, ConfigError> {
        if self.queue_peak_rate.is_none()
            && self.queue_outage_hours.is_none()
            && self.queue_mean_message_bytes.is_none()
        {
            return Ok(None);
        }
        let default = OutageBudget::default();
        let budget = OutageBudget {
            peak_messages_per_second: match self.queue_peak_rate {
                Some(r) => positive(r, "ORDERBUS_QUEUE_PEAK_RATE")?,
                None => default.peak_messages_per_second,
            },
            outage: match self.queue_outage_hours {
                Some(h) => Duration::from_secs(
                    u64::from(positive(h, "ORDERBUS_QUEUE_OUTAGE_HOURS")?) * 3600,
                ),
                None => default.outage,
            },
            mean_message_bytes: match self.queue_mean_message_bytes {
                Some(b) => positive(b, "ORDERBUS_QUEUE_MEAN_MESSAGE_BYTES")?,
                None => default.mean_message_bytes,
            },
            ..default
        };
        Ok(Some(budget))
    }
}

/// Overrides of the topology a service declares (from [`ConsumerArgs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyOverrides {
    pub prefetch: Option<u16>,
    pub batch: Option<usize>,
    pub partitions: Option<usize>,
    /// Shards of every subscription.
    pub shards: Option<usize>,
    pub retry_tiers: Option<Vec<Duration>>,
    /// Work and retry queue limits from this outage budget instead of the default one.
    pub queue_budget: Option<OutageBudget>,
}

impl TopologyOverrides {
    /// Applies the overrides: prefetch and batch to every subscription, partitions to those
    /// declared with more than one, the retry tiers to the whole topology.
    pub fn apply(&self, mut topology: Topology) -> Topology {
        if let Some(tiers) = &self.retry_tiers {
            topology.retry_tiers = tiers.clone();
        }
        if let Some(budget) = &self.queue_budget {
            let sized = QueueLimits::for_budget(budget);
            topology.limits.max_length = sized.max_length;
            topology.limits.max_length_bytes = sized.max_length_bytes;
        }
        for sub in &mut topology.subscriptions {
            if let Some(p) = self.prefetch {
                sub.prefetch = p;
            }
            if let Some(b) = self.batch {
                sub.batch = b;
            }
            if let (Some(n), true) = (self.partitions, sub.partitions > 1) {
                sub.partitions = n;
            }
            if let Some(n) = self.shards {
                sub.shards = n;
            }
        }
        topology
    }
}

/// Runtime settings of one service process, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    pub service: String,
    pub amqp_url: Secret,
    pub database_url: Secret,
    pub http_addr: SocketAddr,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    /// Server-side `statement_timeout`.
    pub db_statement_timeout: Duration,
    /// Interval and timeout of the database readiness probe.
    pub db_probe_interval: Duration,
    pub db_probe_timeout: Duration,
    pub run_relay: bool,
    pub run_migrations: bool,
    pub consumer: ConsumerConfig,
    pub relay: RelayConfig,
    pub topology: TopologyOverrides,
    pub auth: AuthSettings,
}

/// A malformed setting.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

/// Parses only the runtime settings (from the environment when `args` has just a program name).
#[derive(clap::Parser, Debug)]
#[command(no_binary_name = false)]
struct RuntimeOnly {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

impl RuntimeArgs {
    /// Parses the runtime settings alone from `args` (the first is the program name) and the
    /// environment; for tests and for services without their own parser.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        RuntimeOnly::try_parse_from(args).map(|r| r.runtime)
    }

    /// The resolved settings for `service` (the default database is named after it).
    pub fn config(&self, service: &str) -> Result<Config, ConfigError> {
        let defaults = Config::local(service);
        let database_url = self
            .database_url
            .clone()
            .or_else(|| self.database_url_fallback.clone())
            .unwrap_or(defaults.database_url);
        let consumer = ConsumerConfig {
            handler_timeout: Duration::from_millis(self.consumer.handler_timeout_ms),
            ..ConsumerConfig::default()
        };
        let relay = RelayConfig {
            batch_size: positive(self.relay.relay_batch, "ORDERBUS_RELAY_BATCH")?,
            max_in_flight_batches: positive(self.relay.relay_window, "ORDERBUS_RELAY_WINDOW")?,
            lease: Duration::from_secs(positive(
                self.relay.relay_lease_secs,
                "ORDERBUS_RELAY_LEASE_SECS",
            )?),
            sweep_interval: Duration::from_millis(at_most(
                positive(self.relay.relay_sweep_ms, "ORDERBUS_RELAY_SWEEP_MS")?,
                MAX_RELAY_SWEEP_MS,
                "ORDERBUS_RELAY_SWEEP_MS",
            )?),
            ..RelayConfig::default()
        };
        let topology = TopologyOverrides {
            prefetch: self
                .consumer
                .consumer_prefetch
                .map(|p| positive(p, "ORDERBUS_CONSUMER_PREFETCH"))
                .transpose()?,
            batch: self
                .consumer
                .consumer_batch
                .map(|b| positive(b, "ORDERBUS_CONSUMER_BATCH"))
                .transpose()?,
            partitions: self
                .consumer
                .consumer_partitions
                .map(|p| positive(p, "ORDERBUS_CONSUMER_PARTITIONS"))
                .transpose()?,
            shards: self
                .consumer
                .consumer_shards
                .map(|n| positive(n, "ORDERBUS_CONSUMER_SHARDS"))
                .transpose()?,
            retry_tiers: self.consumer.retry_tiers.clone(),
            queue_budget: self.consumer.queue_budget()?,
        };
        Ok(Config {
            service: service.to_owned(),
            amqp_url: self.amqp_url.clone(),
            database_url,
            http_addr: SocketAddr::new(self.http_addr, self.http_port),
            log_format: self.log.log_format,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            db_max_connections: positive(self.db_max_connections, "ORDERBUS_DB_MAX_CONNECTIONS")?,
            db_acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
            db_statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
            db_probe_interval: Duration::from_millis(positive(
                self.db_probe_interval_ms,
                "ORDERBUS_DB_PROBE_INTERVAL_MS",
            )?),
            db_probe_timeout: Duration::from_millis(positive(
                self.db_probe_timeout_ms,
                "ORDERBUS_DB_PROBE_TIMEOUT_MS",
            )?),
            run_relay: self.relay.run_relay,
            run_migrations: self.run_migrations,
            consumer,
            relay,
            topology,
            auth: self.auth.settings()?,
        })
    }
}

impl AuthArgs {
    fn settings(&self) -> Result<AuthSettings, ConfigError> {
        let mut text = self.api_keys.clone().unwrap_or_default();
        if let Some(path) = &self.api_keys_file {
            let file = std::fs::read_to_string(path).map_err(|e| ConfigError {
                name: "ORDERBUS_API_KEYS_FILE",
                reason: format!("reading {}: {e}", path.display()),
            })?;
            text.push('\n');
            text.push_str(&file);
        }
        let keys = ApiKeys::parse(&text).map_err(|e| ConfigError {
            name: "ORDERBUS_API_KEYS",
            reason: e.to_string(),
        })?;
        Ok(AuthSettings {
            mode: self.auth,
            keys,
        })
    }
}

/// A waiting relay renews its announcement at every sweep, and an announcement counts for a
/// minute (shared/bus migration 900000000003): the sweep must stay well inside that.
const MAX_RELAY_SWEEP_MS: u64 = 30_000;

fn at_most(value: u64, max: u64, name: &'static str) -> Result<u64, ConfigError> {
    if value <= max {
        Ok(value)
    } else {
        Err(ConfigError {
            name,
            reason: format!("{value} must be at most {max}"),
        })
    }
}

fn positive<T: PartialOrd + Default + fmt::Display>(
    value: T,
    name: &'static str,
) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError {
            name,
            reason: format!("{value} must be greater than 0"),
        })
    }
}

impl Config {
    /// Local defaults for `service` (what [`RuntimeArgs`] yields with no flags and no
    /// environment), with authentication required and no keys.
    pub fn local(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            amqp_url: Secret::new(DEFAULT_AMQP_URL),
            database_url: Secret::new(format!("postgres://postgres@127.0.0.1:5432/{service}")),
            http_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
            log_format: LogFormat::Human,
            shutdown_grace: Duration::from_secs(20),
            db_max_connections: 20,
            db_acquire_timeout: Duration::from_secs(5),
            db_statement_timeout: Duration::from_secs(10),
            db_probe_interval: Duration::from_secs(2),
            db_probe_timeout: Duration::from_secs(1),
            run_relay: true,
            run_migrations: true,
            consumer: ConsumerConfig::default(),
            relay: RelayConfig::default(),
            topology: TopologyOverrides::default(),
            auth: AuthSettings::default(),
        }
    }

    /// The runtime settings from the environment alone (no command-line flags).
    pub fn from_env(service: &str) -> Result<Self, ConfigError> {
        let args = RuntimeArgs::try_parse_from([service]).map_err(|e| ConfigError {
            name: "environment",
            reason: e.to_string(),
        })?;
        args.config(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let s = Secret::new("amqp://guest:s3cr3t@rabbit:5672/%2f?heartbeat=10");
        assert_eq!(
            s.to_string(),
            "amqp://guest:***@rabbit:5672/%2f?heartbeat=10"
        );
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert_eq!(
            redact_url("postgres://u@h/db?password=x&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        // Every node of a broker list.
        assert_eq!(
            Secret::new("amqp://u:p1@a:5672/%2f,amqp://u:p2@b:5673/%2f").to_string(),
            "amqp://u:***@a:5672/%2f,amqp://u:***@b:5673/%2f"
        );
        let c = Config::local("svc");
        assert!(!format!("{c:?}").contains("guest:guest"));
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["svc"];
        all.extend_from_slice(args);
        RuntimeArgs::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .config("svc")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_override_defaults() {
        let c = parse(&[
            "--http-port",
            "0",
            "--log-format",
            "JSON",
            "--database-url",
            "postgres://x@db/y",
            "--shutdown-grace-secs",
            "7",
            "--relay",
            "false",
            "--retry-tiers",
            "200ms,1s,2m",
            "--consumer-prefetch",
            "5",
        ])
        .unwrap();
        assert_eq!(c.http_addr.port(), 0);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.database_url.expose(), "postgres://x@db/y");
        assert_eq!(c.shutdown_grace, Duration::from_secs(7));
        assert!(c.amqp_url.expose().contains("heartbeat=10"));
        assert!(!c.run_relay);
        assert_eq!(
            c.topology.retry_tiers,
            Some(vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(120)
            ])
        );
        assert_eq!(c.topology.prefetch, Some(5));
        assert!(parse(&["--http-port", "x"]).is_err());
        assert!(parse(&["--db-max-connections", "0"]).is_err());
        assert!(parse(&["--log-format", "xml"]).is_err());
    }

    #[test]
    fn queue_limits_follow_the_configured_outage_budget() {
        let c = parse(&["--queue-peak-rate", "100", "--queue-outage-hours", "24"]).unwrap();
        let budget = c.topology.queue_budget.clone().expect("a budget");
        assert_eq!(budget.peak_messages_per_second, 100);
        assert_eq!(budget.outage, Duration::from_secs(24 * 3600));
        assert_eq!(
            budget.mean_message_bytes,
            OutageBudget::default().mean_message_bytes
        );
        let topology = c.topology.apply(Topology::new("svc"));
        assert_eq!(topology.limits.max_length, 100 * 24 * 3600);
        assert_eq!(
            topology.limits.max_length_bytes,
            QueueLimits::for_budget(&budget).max_length_bytes
        );
        // Delivery limit and parking keep their defaults.
        assert_eq!(
            topology.limits.delivery_limit,
            QueueLimits::default().delivery_limit
        );
        assert!(parse(&["--queue-peak-rate", "0"]).is_err());
        assert_eq!(parse(&[]).unwrap().topology.queue_budget, None);
    }

    #[test]
    fn shards_apply_to_every_subscription() {
        use orderbus_bus::{Handler, HandlerFuture, Subscription};
        struct Noop;
        impl Handler for Noop {
            fn handle<'a>(
                &'a self,
                _: &'a orderbus_bus::Delivery,
                _: &'a mut sqlx::PgConnection,
            ) -> HandlerFuture<'a> {
                Box::pin(async { Ok(()) })
            }
        }
        let c = parse(&["--consumer-shards", "6"]).unwrap();
        let topology = c.topology.apply(
            Topology::new("svc")
                .subscribe(Subscription::new("a", std::sync::Arc::new(Noop)))
                .subscribe(Subscription::new("b", std::sync::Arc::new(Noop)).partitions(2)),
        );
        assert!(topology.subscriptions.iter().all(|s| s.shards == 6));
        assert_eq!(topology.shard_queues("b").len(), 6);
        assert!(parse(&["--consumer-shards", "0"]).is_err());
        assert_eq!(parse(&[]).unwrap().topology.shards, None);
    }

    #[test]
    fn defaults_match_local() {
        let c = parse(&[]).unwrap();
        let l = Config::local("svc");
        assert_eq!(c.http_addr, l.http_addr);
        assert_eq!(c.shutdown_grace, l.shutdown_grace);
        assert_eq!(c.db_max_connections, l.db_max_connections);
        assert_eq!(c.relay.batch_size, l.relay.batch_size);
        assert_eq!(c.relay.lease, l.relay.lease);
        assert_eq!(c.consumer.handler_timeout, l.consumer.handler_timeout);
        assert_eq!(c.topology, TopologyOverrides::default());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
