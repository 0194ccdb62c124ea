//! The client's error type: transport, protocol and business failures are separate variants
//! because callers handle them differently (retry, alert, or report to the customer).

use crate::crypto::CryptoError;

/// Everything a QPay call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bank could not be reached or answered with a 5xx: safe to retry later.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The bank answered, but not in the agreed protocol (bad JSON, bad Sign, undecryptable
    /// message, missing fields). Do not trust the reply; alert.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// The bank understood the request and said no (`Status` other than `S`).
    #[error("business failure {code}: {message}")]
    Business {
        /// The code at the start of `Description` (e.g. `E0602`), empty if there was none.
        code: String,
        /// The rest of `Description`.
        message: String,
    },
    /// The request was refused locally before anything was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An OrderQuery window could not be split below the 300-row cap (more than 300 rows in
    /// one minute).
    #[error("more than {cap} rows in the one-minute window starting {start}")]
    WindowTooDense {
        start: chrono::NaiveDateTime,
        cap: usize,
    },
}

impl Error {
    /// Worth retrying later (only transport failures are).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transport(_))
    }

    /// Builds a [`Error::Business`] from a `Description` such as `E0602 – 收款方式未啟用`.
    pub fn business(description: &str) -> Error {
        let (code, message) = split_description(description);
        Error::Business { code, message }
    }
}

/// Splits `"E0602 – 收款方式未啟用"` into `("E0602", "收款方式未啟用")`.
pub fn split_description(description: &str) -> (String, String) {
    let d = description.trim();
    let code: String = d
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    // A code is a letter followed by digits; anything else is plain text.
    let looks_like_code = code.len() >= 2
        && code.starts_with(|c: char| c.is_ascii_alphabetic())
        && code[1..].chars().all(|c| c.is_ascii_digit());
    if !looks_like_code {
        return (String::new(), d.to_owned());
    }
    let rest = d[code.len()..]
        .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '–' | '-' | ':' | '：'));
    (code, rest.trim().to_owned())
}

/// The bank could not be reached or failed on its side.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connect failed: {0}")]
    Connect(#[source] reqwest::Error),
    #[error("timed out: {0}")]
    Timeout(#[source] reqwest::Error),
    #[error("server error: HTTP {0}")]
    ServerStatus(u16),
    #[error("http: {0}")]
    Other(#[source] reqwest::Error),
}

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            TransportError::Timeout(e)
        } else if e.is_connect() {
            TransportError::Connect(e)
        } else {
            TransportError::Other(e)
        }
    }
}

/// The reply does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unexpected HTTP status {0}")]
    HttpStatus(u16),
    #[error("reply body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("reply is not JSON: {0}")]
    BadJson(String),
    #[error("reply is not a JSON object")]
    NotAnObject,
    #[error("reply lacks field {0}")]
    MissingField(&'static str),
    #[error("cannot decrypt Message: {0}")]
    Decrypt(#[from] CryptoError),
    #[error("Sign does not match the decrypted message")]
    BadSignature,
    #[error("reply is for {got}, expected {expected}")]
    ServiceMismatch { expected: String, got: String },
    #[error("decrypted message is malformed: {0}")]
    BadMessage(String),
}
