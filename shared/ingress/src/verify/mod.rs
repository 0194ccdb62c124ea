//! Verifiers: one per partner scheme behind one small trait. They see the raw bytes only.

mod hmac;
mod shopline;
mod token;
mod unsigned;

use futures::future::BoxFuture;
use sqlx::PgPool;

pub use self::hmac::{HmacSha256Verifier, SignatureEncoding};
pub use self::shopline::ShoplineVerifier;
pub use self::token::{TokenLocation, UrlTokenVerifier};
pub use self::unsigned::Unsigned;

use crate::request::InboundRequest;

/// The future a verifier returns.
pub type VerifyFuture<'a> = BoxFuture<'a, Result<Verified, VerifyError>>;

/// Checks that a request comes from the partner, before anything parses the body.
pub trait Verifier: Send + Sync + 'static {
    /// Short scheme name for logs (`hmac-sha256`, `shopline-rsa`, `url-token`, `none`).
    fn scheme(&self) -> &'static str;

    /// Headers this scheme reads that are recorded in the ingress log as they are.
    fn logged_headers(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Headers carrying the credential itself (signature, token): the log records that they
    /// were sent, as `[redacted]`, because with the stored body they would let anyone who reads
    /// the log replay the request.
    fn credential_headers(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Verifies `request`. `pool` is there for schemes that look something up (URL tokens).
    fn verify<'a>(&'a self, request: &'a InboundRequest, pool: &'a PgPool) -> VerifyFuture<'a>;
}

/// What a successful verification established.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// The partner's idempotency key, when the scheme carries one.
    pub idempotency_key: Option<String>,
    /// The order the request concerns, when the credential itself names it (a callback token
    /// issued for one order).
    pub order: Option<String>,
    /// True when nothing was verified (the route accepts unsigned requests on purpose).
    pub unsigned: bool,
}

/// The verification verdict recorded in the ingress log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credential checked out.
    Passed,
    /// Accepted without any credential (the route is declared unsigned).
    Unsigned,
    /// The credential (signature header, token) is absent.
    Missing,
    /// The credential is present but wrong.
    Invalid,
    /// The request's timestamp is outside the accepted window.
    Stale,
    /// A header the scheme needs is malformed, or the body cannot be canonicalised.
    Malformed,
    /// The verifier could not decide (its lookup failed); the partner should retry.
    Unavailable,
    /// The request was refused before verification (body too large, too slow).
    NotChecked,
}

impl Verdict {
    /// The label stored in the log and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Unsigned => "unsigned",
            Verdict::Missing => "missing",
            Verdict::Invalid => "invalid",
            Verdict::Stale => "stale",
            Verdict::Malformed => "malformed",
            Verdict::Unavailable => "unavailable",
            Verdict::NotChecked => "not_checked",
        }
    }
}

/// Why verification refused a request.
#[derive(Debug, thiserror::Error)]
#[error("{verdict:?}: {message}")]
pub struct VerifyError {
    /// The verdict (never `Passed` / `Unsigned` / `NotChecked`).
    pub verdict: Verdict,
    /// A description safe to send back (never contains the secret or the expected value).
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl VerifyError {
    /// A refusal without an underlying error.
    pub fn new(verdict: Verdict, message: impl Into<String>) -> Self {
        Self {
            verdict,
            message: message.into(),
            source: None,
        }
    }

    /// A refusal caused by `source`.
    pub fn with_source(
        verdict: Verdict,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            verdict,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}
