//! # orderbus-ingress
//!
//! One way to receive partner webhooks, so no service does it ad hoc:
//!
//! - the raw body is read under a size limit while it streams in ([`body`]) and verified before
//!   anything parses it ([`verify`]: HMAC-SHA256, SHOPLINE SHA1withRSA, unguessable URL tokens,
//!   or explicitly unsigned);
//! - the request is deduplicated by the partner's idempotency key (or the SHA-256 of the body) in
//!   the **same transaction** as the service's [`Effect`] and its outbox rows, and a duplicate gets
//!   the first request's stored reply byte for byte ([`store`]);
//! - every request is written to the ingress log with its verdicts and outcome;
//! - replies are built per partner by a [`Replies`] hook (SHOPLINE's are signed).
//!
//! [`Ingress::router`] turns a set of [`Webhook`]s into an axum router. [`MIGRATOR`] holds the
//! tables (versions 920000000000..=920000000999). See README.md for the guarantees.

pub mod body;
pub mod config;
pub mod effect;
pub mod metrics;
pub mod reply;
pub mod request;
pub mod store;
pub mod verify;
pub mod webhook;

pub use config::IngressConfig;
pub use effect::{effect_fn, Applied, Effect, EffectError, EffectFuture, Outcome};
pub use reply::{
    JsonReplies, Rejection, RejectionKind, Replies, Reply, ReplyContext, ReplyError,
    ShoplineReplies, SinopacReplies, SweetTrackerReplies,
};
pub use request::{Inbound, InboundRequest};
pub use store::{prune_dedupe, prune_log, CallbackToken, CallbackTokens, StoreError};
pub use verify::{
    HmacSha256Verifier, ShoplineVerifier, SignatureEncoding, TokenLocation, Unsigned,
    UrlTokenVerifier, Verdict, Verified, Verifier, VerifyError, VerifyFuture,
};
pub use webhook::{Ingress, Webhook};

/// The ingress tables. Run it alongside the bus's migrations, e.g. by merging both into the
/// service's migrator (the version ranges do not overlap).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
