//! Extractors whose rejections are JSON errors naming the field: `ApiJson<T>` (the body),
//! `IdPath<T>` (a positive id in the path), `ApiQuery` (query parameters).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::json;
use crate::ids::{ExchangeId, OrderCode, ReturnId};

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

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
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
            .is_some_and(is_json);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
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
        let value = json::parse(&bytes).map_err(|e| ApiError::invalid(e.field, e.message))?;
        let request_hash = request_hash(method.as_str(), &path, &bytes)?;
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

/// SHA-256 over `METHOD path\n<canonical body>`: the same request with its keys in another
/// order or other whitespace has the same hash.
fn request_hash(method: &str, path: &str, body: &[u8]) -> Result<String, ApiError> {
    let canonical =
        json::canonical(body).ok_or_else(|| ApiError::invalid("body", "malformed JSON"))?;
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    Ok(hex::encode(h.finalize()))
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

/// An id type that appears as a path parameter.
pub trait PathId: Sized {
    /// The parameter's name in the route and in errors.
    const PARAM: &'static str;
    fn from_positive(v: i64) -> Self;
}

impl PathId for OrderCode {
    const PARAM: &'static str = "order_code";
    fn from_positive(v: i64) -> Self {
        OrderCode(v)
    }
}

impl PathId for ExchangeId {
    const PARAM: &'static str = "id";
    fn from_positive(v: i64) -> Self {
        ExchangeId(v)
    }
}

impl PathId for ReturnId {
    const PARAM: &'static str = "id";
    fn from_positive(v: i64) -> Self {
        ReturnId(v)
    }
}

/// Parses a positive integer (`1..=i64::MAX`, decimal digits) from a path or query parameter.
pub fn positive(field: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::invalid(field, "must be a positive integer"))
}

/// The route's one id parameter; a bad one (not digits, not UTF-8 after percent-decoding) is a
/// JSON 400 naming the parameter.
pub struct IdPath<T>(pub T);

impl<S, T> FromRequestParts<S> for IdPath<T>
where
    S: Send + Sync,
    T: PathId,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid(T::PARAM, "must be a positive integer"))?;
        positive(T::PARAM, &raw).map(|v| IdPath(T::from_positive(v)))
    }
}

/// Query parameters by name (the last one wins when repeated); a malformed query string is a
/// JSON 400.
pub struct ApiQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::invalid("query", e.body_text()))
    }
}
