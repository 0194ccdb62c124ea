//! HMAC-SHA256 over the raw body, compared in constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::{Verdict, Verified, Verifier, VerifyError, VerifyFuture};
use crate::request::InboundRequest;

/// How the signature header encodes the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Hex, either case.
    Hex,
    /// Standard Base64 with padding.
    Base64,
}

/// `header: [prefix]encode(HMAC-SHA256(secret, raw body))`.
#[derive(Clone)]
pub struct HmacSha256Verifier {
    signature_header: &'static str,
    secret: Vec<u8>,
    encoding: SignatureEncoding,
    prefix: Option<String>,
    idempotency_header: Option<&'static str>,
}

impl std::fmt::Debug for HmacSha256Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("HmacSha256Verifier")
            .field("signature_header", &self.signature_header)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field("idempotency_header", &self.idempotency_header)
            .finish_non_exhaustive()
    }
}

impl HmacSha256Verifier {
    /// Hex-encoded MAC in `signature_header` (lowercase header name), no prefix.
    pub fn new(signature_header: &'static str, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            signature_header,
            secret: secret.into(),
            encoding: SignatureEncoding::Hex,
            prefix: None,
            idempotency_header: None,
        }
    }

    /// How the MAC is encoded.
    pub fn encoding(mut self, encoding: SignatureEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// A scheme prefix in front of the encoded MAC (e.g. `sha256=`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The header carrying the partner's idempotency key (lowercase name).
    pub fn idempotency_header(mut self, header: &'static str) -> Self {
        self.idempotency_header = Some(header);
        self
    }

    /// The header value a sender would put on `body` (for tests and simulators).
    pub fn sign(&self, body: &[u8]) -> String {
        let mac = self.mac(body);
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(mac),
            SignatureEncoding::Base64 => B64.encode(mac),
        };
        format!("{}{encoded}", self.prefix.as_deref().unwrap_or(""))
    }

    fn mac(&self, body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a signature header value against `body`.
    pub fn check(&self, header_value: &str, body: &[u8]) -> Result<(), VerifyError> {
        let value = header_value.trim();
        let encoded = match &self.prefix {
            Some(p) => value.strip_prefix(p.as_str()).ok_or_else(|| {
                VerifyError::new(
                    Verdict::Invalid,
                    format!("signature lacks the {p:?} prefix"),
                )
            })?,
            None => value,
        };
        let given = match self.encoding {
            SignatureEncoding::Hex => hex::decode(encoded).map_err(|e| {
                VerifyError::with_source(Verdict::Invalid, "signature is not hex", e)
            })?,
            SignatureEncoding::Base64 => B64.decode(encoded).map_err(|e| {
                VerifyError::with_source(Verdict::Invalid, "signature is not base64", e)
            })?,
        };
        let expected = self.mac(body);
        // Lengths are public (always 32); the content comparison is constant-time.
        if expected.len() == given.len() && bool::from(expected.ct_eq(&given)) {
            Ok(())
        } else {
            Err(VerifyError::new(
                Verdict::Invalid,
                "signature does not match the body",
            ))
        }
    }
}

impl Verifier for HmacSha256Verifier {
    fn scheme(&self) -> &'static str {
        "hmac-sha256"
    }

    fn logged_headers(&self) -> Vec<&'static str> {
        self.idempotency_header.into_iter().collect()
    }

    fn credential_headers(&self) -> Vec<&'static str> {
        vec![self.signature_header]
    }

    fn verify<'a>(&'a self, request: &'a InboundRequest, _pool: &'a PgPool) -> VerifyFuture<'a> {
        Box::pin(async move {
            let value = match request.headers.get(self.signature_header) {
                None => {
                    return Err(VerifyError::new(
                        Verdict::Missing,
                        format!("missing header {}", self.signature_header),
                    ))
                }
                Some(v) => v.to_str().map_err(|e| {
                    VerifyError::with_source(Verdict::Invalid, "signature header is not text", e)
                })?,
            };
            self.check(value, &request.body)?;
            let idempotency_key = self
                .idempotency_header
                .and_then(|h| request.header(h))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            Ok(Verified {
                idempotency_key,
                ..Verified::default()
            })
        })
    }
}
