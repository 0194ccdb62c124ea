//! Routes that accept requests without any credential, on purpose (e.g. Sinopac's BackendURL:
//! the notification is only a hint, the service then asks the bank for the signed truth).

use sqlx::PgPool;

use super::{Verified, Verifier, VerifyFuture};
use crate::request::InboundRequest;

/// Accepts every request; the log records the verdict `unsigned`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsigned;

impl Verifier for Unsigned {
    fn scheme(&self) -> &'static str {
        "none"
    }

    fn verify<'a>(&'a self, _request: &'a InboundRequest, _pool: &'a PgPool) -> VerifyFuture<'a> {
        Box::pin(async {
            Ok(Verified {
                unsigned: true,
                ..Verified::default()
            })
        })
    }
}
