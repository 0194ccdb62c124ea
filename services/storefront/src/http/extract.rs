//! `ApiJson<T>`: the JSON body extractor whose rejections are JSON errors naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// Semantic checks after decoding; `Err((field path, reason))`.
pub trait Check {
    fn check(&self) -> Result<(), (String, String)>;
}

/// A decoded, checked JSON body plus a hash of the request (method, path, canonical body) for
/// Idempotency-Key comparison.
pub struct ApiJson<T> {
    pub value: T,
    pub request_hash: String,
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Check,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::invalid("body", e.body_text())
            }
        })?;
        // An empty body is `{}` (the action endpoints need no body); anything else must be JSON.
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else if !json_type {
            return Err(ApiError::MediaType(
                "expected Content-Type: application/json".into(),
            ));
        } else {
            bytes
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid("body", format!("malformed JSON: {e}")))?;
        let mut h = Sha256::new();
        h.update(method.as_str());
        h.update(b" ");
        h.update(path.as_bytes());
        h.update(b"\n");
        h.update(value.to_string().as_bytes());
        let request_hash = hex::encode(h.finalize());
        let decoded: T = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_owned(),
                None => msg,
            };
            ApiError::invalid(field_name(&path), msg)
        })?;
        decoded
            .check()
            .map_err(|(field, message)| ApiError::invalid(field, message))?;
        Ok(ApiJson {
            value: decoded,
            request_hash,
        })
    }
}

/// The JSON path of the offending field (serde_path_to_error includes an unknown field's own
/// name); `body` for the whole document.
fn field_name(path: &str) -> String {
    if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    }
}
