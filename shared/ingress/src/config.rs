//! Limits and logging policy shared by every webhook route.

use std::time::Duration;

use axum::http::HeaderName;

/// Ingress settings. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Largest accepted body; larger ones get 413 as soon as the limit is crossed (or at once
    /// when `Content-Length` already says so), without reading the rest.
    pub body_limit: usize,
    /// Deadline for the whole request: reading the body (408 past it), verification, the effect
    /// and the commit (503 past it; the transaction is rolled back, the partner retries).
    pub request_timeout: Duration,
    /// How long a duplicate waits for a concurrent first request with the same key to commit
    /// before it is answered 409 (retryable). It is the transaction's PostgreSQL `lock_timeout`,
    /// so it also bounds the effect's own lock waits (503, retryable, past it).
    pub duplicate_wait: Duration,
    /// How many leading body bytes the ingress log keeps (length and SHA-256 cover all of it).
    pub log_body_limit: usize,
    /// Request headers recorded in the ingress log (besides the ones a verifier names).
    pub logged_headers: Vec<HeaderName>,
    /// Headers whose value is never stored, even when listed above: replaced by `[redacted]`.
    pub redacted_headers: Vec<HeaderName>,
    /// Deadline for writing the log row of a request with nothing to commit (an applied
    /// request's row commits with its effect).
    pub log_timeout: Duration,
}

/// Default body limit: 256 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;
/// Default bound of the body bytes kept in the ingress log: 64 KiB.
pub const DEFAULT_LOG_BODY_LIMIT: usize = 64 * 1024;
/// The value stored in place of a redacted header.
pub const REDACTED: &str = "[redacted]";

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(10),
            duplicate_wait: Duration::from_secs(5),
            log_body_limit: DEFAULT_LOG_BODY_LIMIT,
            logged_headers: [
                "content-type",
                "content-length",
                "user-agent",
                "traceparent",
                "x-forwarded-for",
                "x-request-id",
            ]
            .into_iter()
            .map(HeaderName::from_static)
            .collect(),
            redacted_headers: [
                "authorization",
                "proxy-authorization",
                "cookie",
                "x-api-key",
            ]
            .into_iter()
            .map(HeaderName::from_static)
            .collect(),
            log_timeout: Duration::from_secs(5),
        }
    }
}
