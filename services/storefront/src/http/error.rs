//! The API's error type: every error is JSON `{"error", "message", "field"?, "current_status"?}`.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::ids::{ExchangeId, OrderCode, ReturnId};

/// Seconds a client is asked to wait (`Retry-After`) when the database is unreachable.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind: `invalid_request`, `unsupported_media_type`, `payload_too_large`,
    /// `not_found`, `method_not_allowed`, `illegal_transition`, `idempotency_key_reused`,
    /// `unavailable`, `unauthorized`, `forbidden`, `internal`.
    pub error: String,
    pub message: String,
    /// The offending field (JSON path such as `items[0].quantity`, or a header / path name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `illegal_transition`: the state the subject is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<String>,
}

/// What a timeline entry is about: the order itself, or one of its exchanges or returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Order,
    Exchange(ExchangeId),
    Return(ReturnId),
}

impl fmt::Display for Subject {
    /// The timeline's `subject` column: `order`, `exchange:<id>`, `return:<id>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Order => f.write_str("order"),
            Subject::Exchange(id) => write!(f, "exchange:{id}"),
            Subject::Return(id) => write!(f, "return:{id}"),
        }
    }
}

/// The timeline subject of a refused HTTP action.
#[derive(Debug)]
pub struct Record {
    pub order_code: OrderCode,
    pub subject: Subject,
    pub event: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("unsupported media type: {0}")]
    MediaType(String),
    #[error("body too large")]
    TooLarge,
    #[error("{0} not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message} (current status {current})")]
    Conflict {
        current: String,
        message: String,
        /// `duplicate` / `late` / `terminal` / `illegal` from the machine, `not_allowed` for guards.
        reason: &'static str,
        /// Where to record the refusal on the timeline (committed with the 409).
        record: Option<Box<Record>>,
    },
    #[error("Idempotency-Key reused with a different request")]
    KeyReused,
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] orderbus_bus::OutboxError),
    #[error("could not encode the response: {0}")]
    Encode(#[source] serde_json::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(current: impl ToString, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            current: current.to_string(),
            message: message.into(),
            reason: "not_allowed",
            record: None,
        }
    }

    /// Sets the refusal reason of a conflict.
    pub fn because(mut self, why: &'static str) -> Self {
        if let ApiError::Conflict { reason, .. } = &mut self {
            *reason = why;
        }
        self
    }

    /// Records a conflict on the timeline of `order_code` (subject, event) when answered.
    pub fn on(mut self, order_code: OrderCode, subject: Subject, event: &'static str) -> Self {
        if let ApiError::Conflict { record, .. } = &mut self {
            *record = Some(Box::new(Record {
                order_code,
                subject,
                event,
            }));
        }
        self
    }

    /// The database (directly or under the outbox) could not be reached: retry later.
    fn unavailable(&self) -> bool {
        match self {
            ApiError::Db(e) | ApiError::Outbox(orderbus_bus::OutboxError::Db(e)) => {
                orderbus_runtime::is_unavailable(e)
            }
            _ => false,
        }
    }

    pub fn status(&self) -> StatusCode {
        if self.unavailable() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Db(_) | ApiError::Outbox(_) | ApiError::Encode(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub fn body(&self) -> ErrorBody {
        if self.unavailable() {
            return ErrorBody {
                error: "unavailable".to_owned(),
                message: "the database is unreachable; retry later".to_owned(),
                field: None,
                current_status: None,
            };
        }
        let (error, field, current_status) = match self {
            ApiError::Invalid { field, .. } => ("invalid_request", Some(field.clone()), None),
            ApiError::MediaType(_) => ("unsupported_media_type", None, None),
            ApiError::TooLarge => ("payload_too_large", None, None),
            ApiError::NotFound(_) => ("not_found", None, None),
            ApiError::MethodNotAllowed => ("method_not_allowed", None, None),
            ApiError::Conflict { current, .. } => {
                ("illegal_transition", None, Some(current.clone()))
            }
            ApiError::KeyReused => (
                "idempotency_key_reused",
                Some("Idempotency-Key".to_owned()),
                None,
            ),
            ApiError::Timeout(_) => ("unavailable", None, None),
            ApiError::Db(_) | ApiError::Outbox(_) | ApiError::Encode(_) => ("internal", None, None),
        };
        let message = match self {
            ApiError::Invalid { message, .. } => message.clone(),
            ApiError::Conflict { message, .. } => message.clone(),
            // Internal details go to the log, not to the client.
            ApiError::Db(_) | ApiError::Outbox(_) | ApiError::Encode(_) => {
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        ErrorBody {
            error: error.to_owned(),
            message,
            field,
            current_status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "request not served");
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// Encodes a response body, keeping the error if it cannot be.
pub fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::Encode)
}
