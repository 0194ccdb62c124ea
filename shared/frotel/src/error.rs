//! The client's error type: one variant per thing a caller must handle differently.

/// What went wrong with a Frotel call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused locally, before anything was sent.
    #[error("invalid request field `{field}`: {reason}")]
    Validation {
        /// Wire name of the offending field (e.g. `cheeta_length`, `basket[0][count]`).
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// The client could not be built from its configuration.
    #[error("invalid Frotel client configuration: {0}")]
    Config(String),
    /// No mirror could be reached (or every mirror answered 5xx / timed out) for a call that is
    /// safe to repeat, or the request was provably never sent.
    #[error("transport failure at {mirror} after trying {attempts} mirror(s): {detail}")]
    Transport {
        /// Base URL of the last mirror tried.
        mirror: String,
        /// How many mirrors were tried.
        attempts: usize,
        /// Underlying cause.
        detail: String,
    },
    /// A mirror answered something that is not a Frotel envelope (non-JSON, missing
    /// `code`/`message`/`result`) or whose `result` does not have the documented shape.
    #[error("protocol error from {mirror}: {detail}")]
    Protocol {
        /// Base URL of the mirror that answered.
        mirror: String,
        /// What did not match.
        detail: String,
    },
    /// Frotel answered `code != 0`. `message` is Persian text meant for the buyer.
    #[error("Frotel refused the request (code {code}): {message}")]
    Business {
        /// The envelope's `code`.
        code: i64,
        /// The envelope's `message`.
        message: String,
    },
    /// A non-idempotent call (`registerOrder*`, `pay`, `continuePay`, `checkPay`) reached a mirror
    /// but no usable answer came back: the order/payment may or may not exist. Not retried;
    /// reconcile (e.g. via tracking or the Frotel panel) before trying again.
    #[error("outcome of {method} unknown at {mirror}: {detail}")]
    OutcomeUnknown {
        /// Method path (e.g. `order/registerOrder.json`).
        method: &'static str,
        /// Base URL of the mirror that received the request.
        mirror: String,
        /// What happened after sending.
        detail: String,
    },
}

impl Error {
    pub(crate) fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// True for [`Error::OutcomeUnknown`].
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }
}
