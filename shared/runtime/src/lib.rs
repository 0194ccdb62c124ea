//! orderbus-runtime: the service kit on top of `orderbus-bus`.
//!
//! - [`RuntimeArgs`]: every setting as a clap flag with its `ORDERBUS_*` environment variable,
//!   flattened into each binary's parser; resolved into a [`Config`]. URLs are [`Secret`]s
//!   (passwords redacted in Debug/Display, env values hidden from `--help`).
//! - [`init_tracing`]: human or JSON logs (`ORDERBUS_LOG_FORMAT`), filter from `RUST_LOG`.
//! - [`ops_router`]: `/healthz`, `/readyz` (false while a connection rebuilds, the database is
//!   unreachable, a gating task fails, or during drain), `/metrics` (Prometheus).
//! - [`pool`]: lazy PgPool with acquire timeout, server-side `statement_timeout`, idle probe;
//!   [`is_unavailable`] / [`unavailable_response`] for 503 + `Retry-After` answers.
//! - [`Auth`]: bearer API keys with scopes for the services' APIs.
//! - [`Service`]: migrations (bus + service + building blocks), HTTP server (a `request` span
//!   per request, continuing `traceparent`), consumers, relay and background tasks as
//!   supervised tasks, graceful drain on SIGTERM/SIGINT within the grace period.

pub mod auth;
pub mod config;
pub mod db;
pub mod http;
pub mod migrate;
pub mod serve;
pub mod service;
pub mod signal;
pub mod task;
pub mod telemetry;

pub use auth::{ApiKeyArgs, ApiKeys, Auth, AuthSettings, Policy};
pub use config::{
    parse_duration, redact_url, AuthMode, Config, ConfigError, LogArgs, LogFormat, RuntimeArgs,
    Secret, TopologyOverrides,
};
pub use db::{
    create_database_if_missing, is_unavailable, pool, unavailable_response, CreateDatabaseError,
};
pub use http::{ops_router, prometheus, trace_requests};
pub use service::{Running, RuntimeError, Service};
pub use signal::{cancel_on_signal, shutdown_signal};
pub use task::{error_chain, TaskContext, TaskOptions};
pub use telemetry::{init_tracing, json_layer};
pub use tokio_util::sync::CancellationToken;
