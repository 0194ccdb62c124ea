//! Our receiving side of SHOPLINE → app calls (here: "Report Logistics Information"):
//! header checks, signature verification over the raw body, body decoding, signed reply.

use crate::signing::{PrivateKey, PublicKey, SigningError};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Header: Base64 SHA1withRSA signature of the body.
pub const HEADER_SIGNATURE: &str = "pay-api-signature";
/// Header: API version configured in the extension.
pub const HEADER_VERSION: &str = "pay-api-version";
/// Header: idempotency key (same key ⇒ duplicate request).
pub const HEADER_IDEMPOTENCY_KEY: &str = "pay-api-idempotency-key";
/// Header: request time (µs, ms or `yyyyMMddHHmmss`).
pub const HEADER_TIMESTAMP: &str = "pay-api-timestamp";
/// Header: store handle (present on pay requests, absent on logistics reports).
pub const HEADER_STORE_HANDLE: &str = "pay-api-store-handle";

/// `returnCode` meaning success.
pub const RETURN_CODE_SUCCESS: &str = "SUCCESS";

/// Why an incoming request was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A required `pay-api-*` header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but not visible ASCII.
    #[error("header {0} is not valid text")]
    InvalidHeader(&'static str),
    /// `pay-api-version` not in the accepted list.
    #[error("unsupported pay-api-version {0:?}")]
    UnsupportedVersion(String),
    /// `pay-api-timestamp` is in none of the known formats.
    #[error("bad pay-api-timestamp {0:?}")]
    BadTimestamp(String),
    /// Timestamp outside the tolerance window.
    #[error("stale pay-api-timestamp: {skew_secs}s away from now (tolerance {tolerance_secs}s)")]
    Stale {
        /// |now - timestamp| in seconds.
        skew_secs: i64,
        /// Configured tolerance in seconds.
        tolerance_secs: u64,
    },
    /// Signature missing the Base64 form or not matching the body.
    #[error("bad signature: {0}")]
    BadSignature(SigningError),
    /// Body is not JSON or misses required fields.
    #[error("bad body: {0}")]
    BadBody(String),
}

impl WebhookError {
    /// HTTP status to answer with: 401 for authentication failures, 400 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Parsed `pay-api-timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// 16-digit microseconds since the Unix epoch (v1.0.0 docs).
    Micros,
    /// 13-digit milliseconds since the Unix epoch.
    Millis,
    /// `yyyyMMddHHmmss` (v2.0.0 docs), interpreted in the configured offset.
    DateTime,
}

/// Parses a `pay-api-timestamp` in any of the three known forms.
///
/// The zone of `yyyyMMddHHmmss` is \[inferred\]; `datetime_offset` says which one to assume.
pub fn parse_timestamp(
    text: &str,
    datetime_offset: FixedOffset,
) -> Result<(DateTime<Utc>, TimestampFormat), WebhookError> {
    let t = text.trim();
    let bad = || WebhookError::BadTimestamp(t.chars().take(64).collect());
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match t.len() {
        16 => {
            let us: i64 = t.parse().map_err(|_| bad())?;
            DateTime::from_timestamp_micros(us)
                .map(|d| (d, TimestampFormat::Micros))
                .ok_or_else(bad)
        }
        13 => {
            let ms: i64 = t.parse().map_err(|_| bad())?;
            DateTime::from_timestamp_millis(ms)
                .map(|d| (d, TimestampFormat::Millis))
                .ok_or_else(bad)
        }
        14 => {
            let naive = NaiveDateTime::parse_from_str(t, "%Y%m%d%H%M%S").map_err(|_| bad())?;
            datetime_offset
                .from_local_datetime(&naive)
                .single()
                .map(|d| (d.with_timezone(&Utc), TimestampFormat::DateTime))
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// Formats a timestamp the way the simulator sends it.
pub fn format_timestamp(at: DateTime<Utc>, format: TimestampFormat, offset: FixedOffset) -> String {
    match format {
        TimestampFormat::Micros => at.timestamp_micros().to_string(),
        TimestampFormat::Millis => at.timestamp_millis().to_string(),
        TimestampFormat::DateTime => at.with_timezone(&offset).format("%Y%m%d%H%M%S").to_string(),
    }
}

/// UTC+8, the default zone assumed for `yyyyMMddHHmmss` timestamps \[inferred\].
pub fn default_datetime_offset() -> FixedOffset {
    // 8 h is always a valid offset; the fallback is unreachable but avoids a panic path.
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix())
}

/// Verification policy.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// SHOPLINE's public key (shown on the payment-app home page).
    pub shopline_public_key: PublicKey,
    /// Reject if |now - pay-api-timestamp| exceeds this. `None` disables the check. The timestamp
    /// is not signed, so this is a sanity filter, not a security control; keep it wide because a
    /// retry may carry the first attempt's timestamp \[inferred\].
    pub tolerance: Option<Duration>,
    /// Zone for `yyyyMMddHHmmss` timestamps (default UTC+8 \[inferred\]).
    pub datetime_offset: FixedOffset,
    /// If set, only these `pay-api-version` values are accepted.
    pub accepted_versions: Option<Vec<String>>,
}

impl VerifierConfig {
    /// Defaults: 24 h tolerance, UTC+8, any version.
    pub fn new(shopline_public_key: PublicKey) -> Self {
        Self {
            shopline_public_key,
            tolerance: Some(Duration::from_secs(24 * 3600)),
            datetime_offset: default_datetime_offset(),
            accepted_versions: None,
        }
    }
}

/// A request whose headers and signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    /// `pay-api-version`.
    pub version: String,
    /// `pay-api-idempotency-key`: store the reply under it and replay it for duplicates.
    pub idempotency_key: String,
    /// `pay-api-timestamp`, normalised to UTC.
    pub timestamp: DateTime<Utc>,
    /// Which timestamp form was used.
    pub timestamp_format: TimestampFormat,
    /// `pay-api-store-handle`, if sent.
    pub store_handle: Option<String>,
}

/// Verifies SHOPLINE → app requests.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: VerifierConfig,
}

fn header_text(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, WebhookError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|_| WebhookError::InvalidHeader(name)),
    }
}

fn required_header(headers: &HeaderMap, name: &'static str) -> Result<String, WebhookError> {
    match header_text(headers, name)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(WebhookError::MissingHeader(name)),
    }
}

impl Verifier {
    /// New verifier.
    pub fn new(config: VerifierConfig) -> Self {
        Self { config }
    }

    /// The policy in use.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Checks headers, timestamp window and the signature over the raw `body` bytes, against the
    /// current time.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedRequest, WebhookError> {
        self.verify_at(headers, body, Utc::now())
    }

    /// As [`Verifier::verify`] with an explicit "now".
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<VerifiedRequest, WebhookError> {
        let signature = required_header(headers, HEADER_SIGNATURE)?;
        let version = required_header(headers, HEADER_VERSION)?;
        let idempotency_key = required_header(headers, HEADER_IDEMPOTENCY_KEY)?;
        let ts_text = required_header(headers, HEADER_TIMESTAMP)?;
        let store_handle = header_text(headers, HEADER_STORE_HANDLE)?;

        if let Some(accepted) = &self.config.accepted_versions {
            if !accepted.iter().any(|v| v == &version) {
                return Err(WebhookError::UnsupportedVersion(version));
            }
        }
        let (timestamp, timestamp_format) = parse_timestamp(&ts_text, self.config.datetime_offset)?;
        if let Some(tol) = self.config.tolerance {
            let skew = now
                .signed_duration_since(timestamp)
                .num_seconds()
                .saturating_abs();
            let tol_secs = tol.as_secs();
            if u64::try_from(skew).unwrap_or(u64::MAX) > tol_secs {
                return Err(WebhookError::Stale {
                    skew_secs: skew,
                    tolerance_secs: tol_secs,
                });
            }
        }
        // Body JSON errors surface as BadBody, signature problems as BadSignature.
        let canonical = crate::signing::canonical_string_from_bytes(body)
            .map_err(|e| WebhookError::BadBody(e.to_string()))?;
        self.config
            .shopline_public_key
            .verify_canonical(&canonical, &signature)
            .map_err(WebhookError::BadSignature)?;
        Ok(VerifiedRequest {
            version,
            idempotency_key,
            timestamp,
            timestamp_format,
            store_handle,
        })
    }
}

impl Verifier {
    /// Verifies the request and decodes a "Report Logistics Information" body in one step.
    pub fn verify_logistics_report(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(VerifiedRequest, LogisticsReport), WebhookError> {
        let verified = self.verify(headers, body)?;
        let report = decode_logistics_report(body)?;
        Ok((verified, report))
    }
}

/// One entry of `trackingList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingInfo {
    /// Shipment (waybill) number.
    pub tracking_no: String,
    /// Logistics website.
    pub site: String,
    /// Who added the information (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Logistics status (free text).
    pub tracking_status: String,
    /// Carrier.
    pub carrier: String,
}

/// Body of "Report Logistics Information". Unknown extra fields are ignored here (they were
/// covered by the signature check on the raw body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogisticsReport {
    /// The app's payment transaction id.
    pub channel_order_transaction_id: String,
    /// One or more tracking entries.
    pub tracking_list: Vec<TrackingInfo>,
}

/// Decodes (and checks required fields of) a logistics report body.
pub fn decode_logistics_report(body: &[u8]) -> Result<LogisticsReport, WebhookError> {
    let report: LogisticsReport =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadBody(e.to_string()))?;
    if report.channel_order_transaction_id.is_empty() {
        return Err(WebhookError::BadBody(
            "channelOrderTransactionId is empty".into(),
        ));
    }
    Ok(report)
}

/// Reply body `{returnCode, returnMessage, returnMessageId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// `SUCCESS` or a failure code (e.g. `FAIL`).
    pub return_code: String,
    /// Failure reason.
    #[serde(default)]
    pub return_message: Option<String>,
    /// Trace id.
    #[serde(default)]
    pub return_message_id: Option<String>,
}

impl Reply {
    /// `returnCode: SUCCESS`.
    pub fn success(message_id: impl Into<String>) -> Self {
        Self {
            return_code: RETURN_CODE_SUCCESS.into(),
            return_message: None,
            return_message_id: Some(message_id.into()),
        }
    }

    /// A failure reply; SHOPLINE will retry.
    pub fn failure(
        code: impl Into<String>,
        message: impl Into<String>,
        message_id: impl Into<String>,
    ) -> Self {
        Self {
            return_code: code.into(),
            return_message: Some(message.into()),
            return_message_id: Some(message_id.into()),
        }
    }

    /// `FAIL` reply describing a rejected request (SHOPLINE will retry).
    pub fn for_error(error: &WebhookError, message_id: impl Into<String>) -> Self {
        Self::failure("FAIL", error.to_string(), message_id)
    }

    /// True if `returnCode == "SUCCESS"`.
    pub fn is_success(&self) -> bool {
        self.return_code == RETURN_CODE_SUCCESS
    }

    /// Signs a rejection: `FAIL` body, HTTP status from [`WebhookError::status`].
    pub fn sign_error(
        error: &WebhookError,
        message_id: impl Into<String>,
        key: &PrivateKey,
    ) -> Result<SignedReply, SigningError> {
        let mut signed = Self::for_error(error, message_id).sign(key)?;
        signed.status = error.status();
        Ok(signed)
    }

    /// Serialises and signs with our private key.
    pub fn sign(&self, key: &PrivateKey) -> Result<SignedReply, SigningError> {
        let body = serde_json::to_vec(self).map_err(|e| SigningError::BadJson(e.to_string()))?;
        let signature = key.sign_body(&body)?;
        Ok(SignedReply {
            status: StatusCode::OK,
            body,
            signature,
        })
    }
}

/// A serialised reply and its `pay-api-signature`; usable directly as an axum response.
#[derive(Debug, Clone)]
pub struct SignedReply {
    /// HTTP status (200 unless changed).
    pub status: StatusCode,
    /// Exact body bytes that were signed.
    pub body: Vec<u8>,
    /// Base64 signature for the `pay-api-signature` header.
    pub signature: String,
}

impl IntoResponse for SignedReply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Base64 is always a valid header value; skip the header rather than panic otherwise.
        if let Ok(v) = HeaderValue::from_str(&self.signature) {
            headers.insert(HEADER_SIGNATURE, v);
        }
        resp
    }
}
