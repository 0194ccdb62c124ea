//! orderbus-runtime: the service kit on top of `orderbus-bus`.
//!
//! - [`Config`]: settings from the environment with local defaults; URLs are [`Secret`]s
//!   (passwords redacted in Debug/Display).
//! - [`init_tracing`]: human or JSON logs (`ORDERBUS_LOG_FORMAT`), filter from `RUST_LOG`.
//! - [`ops_router`]: `/healthz`, `/readyz` (false while a connection rebuilds or during drain),
//!   `/metrics` (Prometheus).
//! - [`pool`]: lazy PgPool with acquire timeout, server-side `statement_timeout`, idle probe.
//! - [`Service`]: migrations (bus + service), HTTP server, consumers and relay as supervised
//!   tasks, graceful drain on SIGTERM/SIGINT within the grace period.

pub mod config;
pub mod db;
pub mod http;
pub mod service;
pub mod telemetry;

pub use config::{redact_url, Config, ConfigError, LogFormat, Secret};
pub use db::{create_database_if_missing, pool, CreateDatabaseError};
pub use http::{ops_router, prometheus};
pub use service::{Running, RuntimeError, Service};
pub use telemetry::init_tracing;
pub use tokio_util::sync::CancellationToken;
