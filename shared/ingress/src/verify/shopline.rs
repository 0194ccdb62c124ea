//! SHOPLINE `pay-api-signature` (SHA1withRSA over the canonical string of the body), with the
//! timestamp window, through `orderbus-shopline`'s verifier.

use orderbus_shopline::webhook::{
    WebhookError, HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_VERSION,
};
use sqlx::PgPool;

use super::{Verdict, Verified, Verifier, VerifyError, VerifyFuture};
use crate::request::InboundRequest;

/// Verifies SHOPLINE → app requests; the idempotency key is `pay-api-idempotency-key`.
#[derive(Debug, Clone)]
pub struct ShoplineVerifier {
    inner: orderbus_shopline::Verifier,
}

impl ShoplineVerifier {
    /// Wraps the shopline crate's verifier (public key, timestamp tolerance, versions).
    pub fn new(config: orderbus_shopline::VerifierConfig) -> Self {
        Self {
            inner: orderbus_shopline::Verifier::new(config),
        }
    }
}

fn refusal(e: WebhookError) -> VerifyError {
    let verdict = match &e {
        WebhookError::MissingHeader(HEADER_SIGNATURE) => Verdict::Missing,
        WebhookError::BadSignature(_) => Verdict::Invalid,
        WebhookError::Stale { .. } => Verdict::Stale,
        WebhookError::MissingHeader(_)
        | WebhookError::InvalidHeader(_)
        | WebhookError::UnsupportedVersion(_)
        | WebhookError::BadTimestamp(_)
        | WebhookError::BadBody(_) => Verdict::Malformed,
    };
    VerifyError::with_source(verdict, e.to_string(), e)
}

impl Verifier for ShoplineVerifier {
    fn scheme(&self) -> &'static str {
        "shopline-rsa"
    }

    fn credential_headers(&self) -> Vec<&'static str> {
        vec![HEADER_SIGNATURE]
    }

    fn logged_headers(&self) -> Vec<&'static str> {
        vec![
            HEADER_VERSION,
            HEADER_IDEMPOTENCY_KEY,
            HEADER_TIMESTAMP,
            orderbus_shopline::webhook::HEADER_STORE_HANDLE,
        ]
    }

    fn verify<'a>(&'a self, request: &'a InboundRequest, _pool: &'a PgPool) -> VerifyFuture<'a> {
        Box::pin(async move {
            let verified = self
                .inner
                .verify(&request.headers, &request.body)
                .map_err(refusal)?;
            Ok(Verified {
                idempotency_key: Some(verified.idempotency_key),
                ..Verified::default()
            })
        })
    }
}
