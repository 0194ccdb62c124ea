//! The API's error type: every error is JSON `{"error", "message", "field"?, "current_status"?}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind: `invalid_request`, `unsupported_media_type`, `payload_too_large`,
    /// `not_found`, `illegal_transition`, `idempotency_key_reused`, `internal`.
    pub error: String,
    pub message: String,
    /// The offending field (JSON path such as `items[0].quantity`, or a header / path name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `illegal_transition`: the state the subject is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<String>,
}

/// The timeline subject of a refused HTTP action.
#[derive(Debug)]
pub struct Record {
    pub order_code: i64,
    pub subject: String,
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
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] orderbus_bus::OutboxError),
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
    pub fn on(mut self, order_code: i64, subject: impl Into<String>, event: &'static str) -> Self {
        if let ApiError::Conflict { record, .. } = &mut self {
            *record = Some(Box::new(Record {
                order_code,
                subject: subject.into(),
                event,
            }));
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Db(_) | ApiError::Outbox(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (error, field, current_status) = match self {
            ApiError::Invalid { field, .. } => ("invalid_request", Some(field.clone()), None),
            ApiError::MediaType(_) => ("unsupported_media_type", None, None),
            ApiError::TooLarge => ("payload_too_large", None, None),
            ApiError::NotFound(_) => ("not_found", None, None),
            ApiError::Conflict { current, .. } => {
                ("illegal_transition", None, Some(current.clone()))
            }
            ApiError::KeyReused => (
                "idempotency_key_reused",
                Some("Idempotency-Key".to_owned()),
                None,
            ),
            ApiError::Db(_) | ApiError::Outbox(_) => ("internal", None, None),
        };
        let message = match self {
            ApiError::Invalid { message, .. } => message.clone(),
            ApiError::Conflict { message, .. } => message.clone(),
            // Internal details go to the log, not to the client.
            ApiError::Db(_) | ApiError::Outbox(_) => "internal error".to_owned(),
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
        if matches!(self, ApiError::Db(_) | ApiError::Outbox(_)) {
            tracing::error!(error = %self, "request failed");
        }
        (self.status(), Json(self.body())).into_response()
    }
}
