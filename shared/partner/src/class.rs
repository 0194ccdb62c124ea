//! Failure classes of partner calls, and the provider crates' errors mapped onto them.

/// Why a partner call failed, in the terms an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// No answer within the timeout (the request may have been processed).
    Timeout,
    /// The connection could not be established (refused, DNS, TLS handshake).
    Connect,
    /// Another transport failure, or one whose kind the provider error does not tell.
    Transport,
    /// The partner answered 5xx.
    Http5xx,
    /// The partner answered 4xx.
    Http4xx,
    /// The answer could not be decoded (not JSON, not the documented shape).
    Decode,
    /// The answer decoded but breaks the protocol (bad signature, mismatching echo).
    Protocol,
    /// The partner understood the request and refused it (a business error code).
    Rejected,
    /// Refused locally before anything was sent (validation, configuration).
    Invalid,
}

impl ErrorClass {
    /// The label stored in `partner_calls.error_class` and used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Transport => "transport",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Decode => "decode",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Invalid => "invalid",
        }
    }

    /// The class of an unexpected HTTP status: 5xx, 4xx, anything else a protocol breach.
    pub fn from_status(status: u16) -> Self {
        match status {
            500..=599 => ErrorClass::Http5xx,
            400..=499 => ErrorClass::Http4xx,
            _ => ErrorClass::Protocol,
        }
    }
}

/// Implemented by provider error types so [`crate::CallLog::record`] can classify failures.
pub trait ClassifyError: std::error::Error {
    /// The class of this failure.
    fn error_class(&self) -> ErrorClass;
    /// The HTTP status the partner answered, when known.
    fn http_status(&self) -> Option<u16> {
        None
    }
}

impl ClassifyError for reqwest::Error {
    fn error_class(&self) -> ErrorClass {
        if self.is_timeout() {
            ErrorClass::Timeout
        } else if self.is_connect() {
            ErrorClass::Connect
        } else if let Some(status) = self.status() {
            ErrorClass::from_status(status.as_u16())
        } else if self.is_decode() {
            ErrorClass::Decode
        } else if self.is_builder() {
            ErrorClass::Invalid
        } else {
            ErrorClass::Transport
        }
    }

    fn http_status(&self) -> Option<u16> {
        self.status().map(|s| s.as_u16())
    }
}

impl ClassifyError for orderbus_sweettracker::Error {
    fn error_class(&self) -> ErrorClass {
        use orderbus_sweettracker::Error as E;
        match self {
            E::Transport(e) => e.error_class(),
            // An undocumented body: the status says whose fault it is; a 2xx with a wrong
            // shape is a decoding failure.
            E::Protocol { status, .. } if *status >= 400 => ErrorClass::from_status(*status),
            E::Protocol { .. } => ErrorClass::Decode,
            E::Business { .. } => ErrorClass::Rejected,
            E::Config(_) => ErrorClass::Invalid,
        }
    }

    fn http_status(&self) -> Option<u16> {
        match self {
            orderbus_sweettracker::Error::Protocol { status, .. } => Some(*status),
            orderbus_sweettracker::Error::Transport(e) => e.http_status(),
            _ => None,
        }
    }
}

impl ClassifyError for orderbus_sinopac::Error {
    fn error_class(&self) -> ErrorClass {
        use orderbus_sinopac::{Error as E, ProtocolError as P, TransportError as T};
        match self {
            E::Transport(T::Connect(_)) => ErrorClass::Connect,
            E::Transport(T::Timeout(_)) => ErrorClass::Timeout,
            E::Transport(T::ServerStatus(s)) => ErrorClass::from_status(*s),
            E::Transport(T::Other(e)) => e.error_class(),
            E::Protocol(P::HttpStatus(s)) => ErrorClass::from_status(*s),
            E::Protocol(
                P::BodyTooLarge(_) | P::BadJson(_) | P::NotAnObject | P::MissingField(_),
            ) => ErrorClass::Decode,
            E::Protocol(
                P::Decrypt(_) | P::BadSignature | P::ServiceMismatch { .. } | P::BadMessage(_),
            ) => ErrorClass::Protocol,
            E::Business { .. } => ErrorClass::Rejected,
            E::InvalidRequest(_) => ErrorClass::Invalid,
            // The bank's 300-row cap could not be honoured: a protocol limit, not a refusal.
            E::WindowTooDense { .. } => ErrorClass::Protocol,
        }
    }

    fn http_status(&self) -> Option<u16> {
        use orderbus_sinopac::{Error as E, ProtocolError as P, TransportError as T};
        match self {
            E::Transport(T::ServerStatus(s)) | E::Protocol(P::HttpStatus(s)) => Some(*s),
            _ => None,
        }
    }
}

impl ClassifyError for orderbus_frotel::Error {
    fn error_class(&self) -> ErrorClass {
        use orderbus_frotel::Error as E;
        match self {
            E::Validation { .. } | E::Config(_) => ErrorClass::Invalid,
            // The Frotel error carries the transport cause only as text, so timeout and
            // connect cannot be told apart here.
            E::Transport { .. } | E::OutcomeUnknown { .. } => ErrorClass::Transport,
            E::Protocol { .. } => ErrorClass::Decode,
            E::Business { .. } => ErrorClass::Rejected,
        }
    }
}

impl ClassifyError for orderbus_shopline::SigningError {
    fn error_class(&self) -> ErrorClass {
        use orderbus_shopline::SigningError as E;
        match self {
            // Our own key or request could not be used: nothing was sent.
            E::KeyEncoding(_) | E::KeyFormat { .. } | E::Sign(_) => ErrorClass::Invalid,
            E::BadJson(_) => ErrorClass::Decode,
            // A reply whose signature does not verify.
            E::SignatureEncoding | E::Mismatch => ErrorClass::Protocol,
        }
    }
}
