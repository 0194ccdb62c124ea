//! Replies: what the partner gets back, built per partner by a [`Replies`] hook, stored with the
//! dedupe row and replayed byte for byte to duplicates.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orderbus_shopline::signing::{PrivateKey, SigningError};
use orderbus_shopline::webhook::SignedReply;
use serde::Serialize;

/// A complete HTTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers (lowercase names), in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Bytes,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Result<Self, ReplyError> {
        Ok(Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(body).map_err(ReplyError::Encode)?),
        })
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a header unless one with that name is already there.
    pub fn with_default_header(mut self, name: &str, value: &str) -> Self {
        if self.header(name).is_none() {
            self.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    pub(crate) fn headers_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.headers
                .iter()
                .map(|(n, v)| serde_json::json!([n, v]))
                .collect(),
        )
    }

    pub(crate) fn from_stored(
        status: i16,
        headers: &serde_json::Value,
        body: Vec<u8>,
    ) -> Result<Self, String> {
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| format!("stored status {status} is not an HTTP status"))?;
        let pairs: Vec<(String, String)> =
            serde_json::from_value(headers.clone()).map_err(|e| format!("stored headers: {e}"))?;
        Ok(Self {
            status,
            headers: pairs,
            body: Bytes::from(body),
        })
    }
}

impl From<SignedReply> for Reply {
    fn from(signed: SignedReply) -> Self {
        Self {
            status: signed.status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    orderbus_shopline::webhook::HEADER_SIGNATURE.into(),
                    signed.signature,
                ),
            ],
            body: Bytes::from(signed.body),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        let headers = resp.headers_mut();
        for (name, value) in &self.headers {
            // Stored headers were valid when built; skip rather than panic on anything else.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
        if !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        resp
    }
}

/// A reply could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// Serialising the body failed.
    #[error("reply body: {0}")]
    Encode(#[source] serde_json::Error),
    /// Signing the body failed.
    #[error("signing the reply: {0}")]
    Sign(#[source] SigningError),
}

/// Why the ingress refused a request without (or before) applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// Body above the limit: 413.
    PayloadTooLarge,
    /// The body did not arrive within the request timeout: 408.
    BodyTimeout,
    /// Missing or wrong credential: 401.
    Unauthorized,
    /// Malformed request or body: 400.
    BadRequest,
    /// A request with the same key is still being applied: 409, retry later.
    InProgress,
    /// The service could not apply it now (database, effect asked for a retry): 503.
    Unavailable,
    /// Processing did not finish within the request timeout (rolled back): 503.
    Timeout,
}

impl RejectionKind {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            RejectionKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RejectionKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RejectionKind::Unauthorized => StatusCode::UNAUTHORIZED,
            RejectionKind::BadRequest => StatusCode::BAD_REQUEST,
            RejectionKind::InProgress => StatusCode::CONFLICT,
            RejectionKind::Unavailable | RejectionKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Machine-readable code used in generic JSON errors.
    pub fn code(self) -> &'static str {
        match self {
            RejectionKind::PayloadTooLarge => "payload_too_large",
            RejectionKind::BodyTimeout => "body_timeout",
            RejectionKind::Unauthorized => "unauthorized",
            RejectionKind::BadRequest => "bad_request",
            RejectionKind::InProgress => "in_progress",
            RejectionKind::Unavailable => "unavailable",
            RejectionKind::Timeout => "timeout",
        }
    }

    /// True when the partner should send the same request again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            RejectionKind::InProgress | RejectionKind::Unavailable | RejectionKind::Timeout
        )
    }
}

/// A refusal and a message safe to send to the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What kind.
    pub kind: RejectionKind,
    /// Human-readable reason (no secrets, no internal error text for 5xx).
    pub message: String,
}

impl Rejection {
    /// A rejection.
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// What a reply builder knows about the request.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    /// Partner of the route.
    pub partner: String,
    /// Trace id of the request (SHOPLINE echoes it as `returnMessageId`).
    pub trace_id: String,
}

/// Builds the replies a partner expects.
pub trait Replies: Send + Sync + 'static {
    /// The effect was applied.
    fn accepted(&self, ctx: &ReplyContext) -> Result<Reply, ReplyError>;
    /// The effect looked at the request and said no for good (stored and replayed).
    fn refused(&self, code: &str, message: &str, ctx: &ReplyContext) -> Result<Reply, ReplyError>;
    /// The ingress refused the request (not stored: a retry is evaluated afresh).
    fn rejected(&self, rejection: &Rejection, ctx: &ReplyContext) -> Result<Reply, ReplyError>;
}

/// `{"error":{"code","message","trace_id"}}` with the rejection's status.
pub fn json_error(rejection: &Rejection, trace_id: &str) -> Result<Reply, ReplyError> {
    Reply::json(
        rejection.kind.status(),
        &serde_json::json!({
            "error": {
                "code": rejection.kind.code(),
                "message": rejection.message,
                "trace_id": trace_id,
            }
        }),
    )
}

/// Generic JSON replies: 200 `{"status":"accepted"}`, 200 `{"status":"refused",...}` (a
/// refusal is final, a non-2xx would only make the partner retry), errors as [`json_error`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonReplies;

impl Replies for JsonReplies {
    fn accepted(&self, ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        Reply::json(
            StatusCode::OK,
            &serde_json::json!({"status": "accepted", "trace_id": ctx.trace_id}),
        )
    }

    fn refused(&self, code: &str, message: &str, ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        Reply::json(
            StatusCode::OK,
            &serde_json::json!({"status": "refused", "code": code, "message": message, "trace_id": ctx.trace_id}),
        )
    }

    fn rejected(&self, rejection: &Rejection, ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        json_error(rejection, &ctx.trace_id)
    }
}

/// SweetTracker's documented answers: `{"code":true,"message":"success"}`, and
/// `{"code":false,"message":"fail - ..."}` for refusals (200) and rejections (their status).
#[derive(Debug, Clone, Copy, Default)]
pub struct SweetTrackerReplies;

impl Replies for SweetTrackerReplies {
    fn accepted(&self, _ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        Reply::json(
            StatusCode::OK,
            &orderbus_sweettracker::CallbackReply::success(),
        )
    }

    fn refused(
        &self,
        _code: &str,
        message: &str,
        _ctx: &ReplyContext,
    ) -> Result<Reply, ReplyError> {
        Reply::json(
            StatusCode::OK,
            &orderbus_sweettracker::CallbackReply::failure(message),
        )
    }

    fn rejected(&self, rejection: &Rejection, _ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        Reply::json(
            rejection.kind.status(),
            &orderbus_sweettracker::CallbackReply::failure(&rejection.message),
        )
    }
}

/// Sinopac BackendURL: `{"Status":"S"}` as the bank's sample handler answers; a refusal is
/// `{"Status":"F","Message":...}` (the bank documents no failure body); errors as [`json_error`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SinopacReplies;

impl Replies for SinopacReplies {
    fn accepted(&self, _ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        Ok(Reply {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(orderbus_sinopac::notify::ACK_BODY.as_bytes()),
        })
    }

    fn refused(
        &self,
        _code: &str,
        message: &str,
        _ctx: &ReplyContext,
    ) -> Result<Reply, ReplyError> {
        Reply::json(
            StatusCode::OK,
            &serde_json::json!({"Status": "F", "Message": message}),
        )
    }

    fn rejected(&self, rejection: &Rejection, ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        json_error(rejection, &ctx.trace_id)
    }
}

/// SHOPLINE replies, signed with our merchant key by the shopline crate: `SUCCESS`, a refusal
/// code (200), or `FAIL` with the rejection's status. `returnMessageId` is the trace id.
#[derive(Debug, Clone)]
pub struct ShoplineReplies {
    key: PrivateKey,
}

impl ShoplineReplies {
    /// Signs with `key` (our app's private key).
    pub fn new(key: PrivateKey) -> Self {
        Self { key }
    }
}

impl Replies for ShoplineReplies {
    fn accepted(&self, ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        orderbus_shopline::Reply::success(ctx.trace_id.clone())
            .sign(&self.key)
            .map(Reply::from)
            .map_err(ReplyError::Sign)
    }

    fn refused(&self, code: &str, message: &str, ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        orderbus_shopline::Reply::failure(code, message, ctx.trace_id.clone())
            .sign(&self.key)
            .map(Reply::from)
            .map_err(ReplyError::Sign)
    }

    fn rejected(&self, rejection: &Rejection, ctx: &ReplyContext) -> Result<Reply, ReplyError> {
        let mut signed = orderbus_shopline::Reply::failure(
            "FAIL",
            rejection.message.clone(),
            ctx.trace_id.clone(),
        )
        .sign(&self.key)
        .map_err(ReplyError::Sign)?;
        signed.status = rejection.kind.status();
        Ok(Reply::from(signed))
    }
}
