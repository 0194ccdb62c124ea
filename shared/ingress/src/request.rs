//! What a verifier and an effect see of a webhook request.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use orderbus_bus::TraceContext;

use crate::verify::Verified;

/// A received request: the raw body bytes exactly as sent, before any parsing.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// The partner the route belongs to (e.g. `shopline`).
    pub partner: String,
    /// The route template (e.g. `/webhooks/sweettracker/{token}`).
    pub route: String,
    /// HTTP method.
    pub method: Method,
    /// Request headers.
    pub headers: HeaderMap,
    /// Path parameters of the route template, by name.
    pub path_params: BTreeMap<String, String>,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The raw body.
    pub body: Bytes,
    /// The request's trace context (continued from `traceparent`, or a new root).
    pub trace: TraceContext,
}

impl InboundRequest {
    /// A header as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Content-Type` without parameters, lowercased.
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// The first value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
        pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// A request that passed verification, as handed to the [`crate::Effect`].
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The request.
    pub request: InboundRequest,
    /// What verification established (idempotency key, the order a callback token belongs to).
    pub verified: Verified,
    /// The key this request is deduplicated under.
    pub dedupe_key: String,
}

impl Inbound {
    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.request.body
    }

    /// The trace id of the request.
    pub fn trace_id(&self) -> &str {
        self.request.trace.trace_id()
    }
}
