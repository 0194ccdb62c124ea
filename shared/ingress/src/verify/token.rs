//! "No signature, but an unguessable per-callback token in the URL we registered" (SweetTracker,
//! whose `secret_value` is documented as unused). Tokens are issued by
//! [`crate::CallbackTokens::issue`] and stored hashed; this verifier looks the hash up.

use sqlx::PgPool;

use super::{Verdict, Verified, Verifier, VerifyError, VerifyFuture};
use crate::request::InboundRequest;
use crate::store::{CallbackTokens, TokenState};

/// Where the token sits in the callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    /// A path parameter of the route template (e.g. `token` in `/webhooks/st/{token}`).
    Path(&'static str),
    /// A query parameter (e.g. `?t=...`).
    Query(&'static str),
}

/// Looks up the token of the request URL among the tokens issued for `partner`.
#[derive(Debug, Clone)]
pub struct UrlTokenVerifier {
    partner: String,
    location: TokenLocation,
}

impl UrlTokenVerifier {
    /// Tokens issued for `partner`, read from `location`.
    pub fn new(partner: impl Into<String>, location: TokenLocation) -> Self {
        Self {
            partner: partner.into(),
            location,
        }
    }
}

impl Verifier for UrlTokenVerifier {
    fn scheme(&self) -> &'static str {
        "url-token"
    }

    fn verify<'a>(&'a self, request: &'a InboundRequest, pool: &'a PgPool) -> VerifyFuture<'a> {
        Box::pin(async move {
            let token = match &self.location {
                TokenLocation::Path(name) => request.path_params.get(*name).cloned(),
                TokenLocation::Query(name) => request.query_param(name),
            }
            .filter(|t| !t.is_empty())
            .ok_or_else(|| VerifyError::new(Verdict::Missing, "callback token missing"))?;
            match CallbackTokens::lookup(pool, &self.partner, &token).await {
                Ok(TokenState::Active { order }) => Ok(Verified {
                    order,
                    ..Verified::default()
                }),
                Ok(TokenState::Revoked) => {
                    Err(VerifyError::new(Verdict::Invalid, "callback token revoked"))
                }
                Ok(TokenState::Unknown) => {
                    Err(VerifyError::new(Verdict::Invalid, "callback token unknown"))
                }
                Err(e) => Err(VerifyError::with_source(
                    Verdict::Unavailable,
                    "callback token lookup failed",
                    e,
                )),
            }
        })
    }
}
