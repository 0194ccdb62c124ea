//! Configuration from the environment with local defaults. Secrets never reach logs: URLs are
//! kept in [`Secret`], whose Debug/Display redact the password.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

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
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Runtime settings of one service process.
#[derive(Clone, Debug)]
pub struct Config {
    pub service: String,
    /// `ORDERBUS_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10`.
    pub amqp_url: Secret,
    /// `ORDERBUS_DATABASE_URL` or `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/<service>`.
    pub database_url: Secret,
    /// `ORDERBUS_HTTP_ADDR` (`0.0.0.0`) + `ORDERBUS_HTTP_PORT` (8080; 0 = any free port).
    pub http_addr: SocketAddr,
    /// `ORDERBUS_LOG_FORMAT` = `json` | `human` (default human); filter from `RUST_LOG`.
    pub log_format: LogFormat,
    /// `ORDERBUS_SHUTDOWN_GRACE_SECS` (default 20; keep it below the pod's grace period).
    pub shutdown_grace: Duration,
    /// `ORDERBUS_DB_MAX_CONNECTIONS` (default 20: one per consumer worker or partition, the
    /// relay and its LISTEN, the HTTP handlers).
    pub db_max_connections: u32,
    /// `ORDERBUS_DB_ACQUIRE_TIMEOUT_MS` (default 5000).
    pub db_acquire_timeout: Duration,
    /// `ORDERBUS_DB_STATEMENT_TIMEOUT_MS` (default 10000): server-side `statement_timeout`.
    pub db_statement_timeout: Duration,
    /// `ORDERBUS_RELAY` = `false` to run no outbox relay in this process (default true).
    pub run_relay: bool,
    /// `ORDERBUS_RUN_MIGRATIONS` = `false` when a Job/init container migrates (default true).
    pub run_migrations: bool,
}

/// A malformed environment variable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

impl Config {
    /// Local defaults for `service`.
    pub fn local(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            amqp_url: Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10"),
            database_url: Secret::new(format!("postgres://postgres@127.0.0.1:5432/{service}")),
            http_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
            log_format: LogFormat::Human,
            shutdown_grace: Duration::from_secs(20),
            db_max_connections: 20,
            db_acquire_timeout: Duration::from_secs(5),
            db_statement_timeout: Duration::from_secs(10),
            run_relay: true,
            run_migrations: true,
        }
    }

    /// Reads the environment over the local defaults.
    pub fn from_env(service: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(service, |k| std::env::var(k).ok())
    }

    /// Same as [`Config::from_env`] with an explicit lookup (tests).
    pub fn from_lookup(
        service: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut c = Self::local(service);
        if let Some(v) = get("ORDERBUS_AMQP_URL") {
            c.amqp_url = Secret::new(v);
        }
        if let Some(v) = get("ORDERBUS_DATABASE_URL").or_else(|| get("DATABASE_URL")) {
            c.database_url = Secret::new(v);
        }
        let ip: IpAddr = parse(&get, "ORDERBUS_HTTP_ADDR")?.unwrap_or(c.http_addr.ip());
        let port: u16 = parse(&get, "ORDERBUS_HTTP_PORT")?.unwrap_or(c.http_addr.port());
        c.http_addr = SocketAddr::new(ip, port);
        if let Some(v) = get("ORDERBUS_LOG_FORMAT") {
            c.log_format = match v.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "human" | "text" | "pretty" => LogFormat::Human,
                other => {
                    return Err(ConfigError {
                        name: "ORDERBUS_LOG_FORMAT",
                        reason: format!("{other:?} is not json|human"),
                    })
                }
            };
        }
        if let Some(s) = parse::<u64>(&get, "ORDERBUS_SHUTDOWN_GRACE_SECS")? {
            c.shutdown_grace = Duration::from_secs(s);
        }
        if let Some(n) = parse(&get, "ORDERBUS_DB_MAX_CONNECTIONS")? {
            c.db_max_connections = n;
        }
        if let Some(ms) = parse::<u64>(&get, "ORDERBUS_DB_ACQUIRE_TIMEOUT_MS")? {
            c.db_acquire_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = parse::<u64>(&get, "ORDERBUS_DB_STATEMENT_TIMEOUT_MS")? {
            c.db_statement_timeout = Duration::from_millis(ms);
        }
        if let Some(b) = parse(&get, "ORDERBUS_RELAY")? {
            c.run_relay = b;
        }
        if let Some(b) = parse(&get, "ORDERBUS_RUN_MIGRATIONS")? {
            c.run_migrations = b;
        }
        Ok(c)
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    match get(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|e: T::Err| ConfigError {
            name,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
        let c = Config::local("svc");
        assert!(!format!("{c:?}").contains("guest:guest"));
    }

    #[test]
    fn env_overrides_defaults() {
        let env: HashMap<&str, &str> = [
            ("ORDERBUS_HTTP_PORT", "0"),
            ("ORDERBUS_LOG_FORMAT", "json"),
            ("DATABASE_URL", "postgres://x@db/y"),
            ("ORDERBUS_SHUTDOWN_GRACE_SECS", "7"),
        ]
        .into_iter()
        .collect();
        let c = Config::from_lookup("svc", |k| env.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(c.http_addr.port(), 0);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.database_url.expose(), "postgres://x@db/y");
        assert_eq!(c.shutdown_grace, Duration::from_secs(7));
        assert!(c.amqp_url.expose().contains("heartbeat=10"));
        let bad = Config::from_lookup("svc", |k| (k == "ORDERBUS_HTTP_PORT").then(|| "x".into()));
        assert!(bad.is_err());
    }
}
