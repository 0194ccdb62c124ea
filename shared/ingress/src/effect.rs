//! The service's side of a webhook: an effect applied inside the ingress's open transaction.

use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::request::Inbound;

/// The future an effect returns.
pub type EffectFuture<'a> = BoxFuture<'a, Result<Applied, EffectError>>;

/// What the service does with a verified, first-seen request. `tx` is the ingress's transaction:
/// write the business rows and the outbox rows through it, and they commit together with the
/// dedupe row (or not at all).
pub trait Effect: Send + Sync + 'static {
    /// Applies the request.
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, request: &'a Inbound) -> EffectFuture<'a>;
}

/// An [`Effect`] from a closure (see [`effect_fn`]).
pub struct FnEffect<F>(F);

/// Wraps a closure `|tx, request| Box::pin(async move { ... })` as an [`Effect`]. The explicit
/// bound here is what lets the compiler infer the closure's lifetimes.
pub fn effect_fn<F>(f: F) -> FnEffect<F>
where
    F: for<'a> Fn(&'a mut PgConnection, &'a Inbound) -> EffectFuture<'a> + Send + Sync + 'static,
{
    FnEffect(f)
}

impl<F> Effect for FnEffect<F>
where
    F: for<'a> Fn(&'a mut PgConnection, &'a Inbound) -> EffectFuture<'a> + Send + Sync + 'static,
{
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, request: &'a Inbound) -> EffectFuture<'a> {
        (self.0)(tx, request)
    }
}

/// The effect's decision, stored with the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Accepted,
    /// Understood and refused for good (e.g. an unknown order): the refusal is committed and
    /// replayed to duplicates like an acceptance.
    Refused {
        /// Partner-facing code (e.g. `FAIL`).
        code: String,
        /// Partner-facing reason.
        message: String,
    },
}

/// A successful effect run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Accepted or refused.
    pub outcome: Outcome,
    /// The order the request concerns, for the ingress log.
    pub order: Option<String>,
}

impl Applied {
    /// Accepted, no order known.
    pub fn accepted() -> Self {
        Self {
            outcome: Outcome::Accepted,
            order: None,
        }
    }

    /// Refused for good.
    pub fn refused(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Refused {
                code: code.into(),
                message: message.into(),
            },
            order: None,
        }
    }

    /// Names the order the request concerns.
    pub fn for_order(mut self, order: impl Into<String>) -> Self {
        self.order = Some(order.into());
        self
    }
}

/// The effect could not be applied; the transaction is rolled back and nothing is stored.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// The body is malformed or lacks what the effect needs: 400, the message goes to the
    /// partner.
    #[error("bad request: {message}")]
    BadRequest {
        /// Partner-facing reason.
        message: String,
        /// The parse error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A transient failure (database, broker, a dependency): 503, the partner retries.
    #[error("retryable failure: {0}")]
    Retry(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Understood, but it cannot be applied *yet* (e.g. a report for an order whose mapping is
    /// still on its way): rolled back and **not stored**, answered with the partner's refusal
    /// body (`Replies::refused`, e.g. a signed SHOPLINE `FAIL`, HTTP 200) so the partner
    /// retries under the same key and the retry is evaluated afresh. Logged as `deferred`.
    #[error("deferred: {code}: {message}")]
    Deferred {
        /// Partner-facing code (e.g. `FAIL`).
        code: String,
        /// Partner-facing reason.
        message: String,
    },
}

impl EffectError {
    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        EffectError::BadRequest {
            message: message.into(),
            source: None,
        }
    }

    /// A malformed request caused by `source` (its text is sent to the partner).
    pub fn bad_body(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        EffectError::BadRequest {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// Not applicable yet: refused without storing, so the partner's retry is applied once it
    /// can be.
    pub fn deferred(code: impl Into<String>, message: impl Into<String>) -> Self {
        EffectError::Deferred {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A transient failure.
    pub fn retry(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        EffectError::Retry(Box::new(source))
    }
}

impl From<sqlx::Error> for EffectError {
    fn from(e: sqlx::Error) -> Self {
        EffectError::retry(e)
    }
}

impl From<orderbus_bus::OutboxError> for EffectError {
    fn from(e: orderbus_bus::OutboxError) -> Self {
        EffectError::retry(e)
    }
}
