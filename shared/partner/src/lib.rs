//! # orderbus-partner
//!
//! Outbound partner calls, the same way in every service:
//!
//! - [`http_client`]: one reqwest client setup (connect/read/total timeouts, user agent
//!   `orderbus/<version> (<service>)`, no proxy taken from the environment, no redirects);
//! - [`CallLog::record`]: wraps one provider call, times it, classifies a failure
//!   ([`ErrorClass`] through [`ClassifyError`], implemented here for the four provider crates'
//!   error types and for `reqwest::Error`), writes a `partner_calls` row for the order it
//!   concerns and updates the metrics;
//! - [`prune_calls`]: batched retention.
//!
//! [`MIGRATOR`] holds the table (versions 930000000000..=930000000999). The provider crates stay
//! protocol-only. See README.md.

pub mod calls;
pub mod class;
pub mod client;
pub mod metrics;

pub use calls::{prune_calls, CallLog, CallRecord};
pub use class::{ClassifyError, ErrorClass};
pub use client::{http_client, ClientError, HttpClientConfig};

/// The partner-call tables. Run it alongside the bus's migrations (disjoint version ranges).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
