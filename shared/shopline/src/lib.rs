//! # orderbus-shopline
//!
//! SHOPLINE open-platform **payment app** `pay-api-*` protocol (not SHOPLINE Payments, not the
//! Admin-API HMAC webhooks), both sides:
//!
//! * [`signing`] — canonical string of a JSON body, SHA1withRSA (RSASSA-PKCS1-v1_5 + SHA-1) with
//!   PKCS#8 private / X.509 SubjectPublicKeyInfo public keys in Base64 DER, Base64 signatures.
//! * [`webhook`] — our receiving side: [`webhook::Verifier`] checks `pay-api-signature`,
//!   `pay-api-version`, `pay-api-idempotency-key`, `pay-api-timestamp`; decodes the "Report
//!   Logistics Information" body; [`webhook::Reply`] builds and signs the reply.
//! * [`sim`] (cargo feature `sim`) — a SHOPLINE stand-in that signs and posts logistics reports, verifies our signed
//!   reply and retries with the same idempotency key until `SUCCESS` or its retry cap.
//!
//! ## Choices where the reference is \[inferred\] or \[unknown\]
//!
//! * Canonical string: numbers are emitted exactly as written in the raw body (own lexeme-keeping
//!   parser; `1.50` stays `1.50`); empty arrays skipped; `null` elements of scalar arrays skipped; arrays
//!   mixing scalars and containers handled element by element; a top-level non-object is treated
//!   as a value under an empty key; duplicate keys: last wins. Keys sorted by UTF-16 code units
//!   (Java order). When signing a `serde_json::Value` ([`signing::canonical_string`]) numbers are
//!   rendered by `serde_json`; SHOPLINE's own rendering of non-integer numbers is unknown (all
//!   documented bodies use strings).
//! * `yyyyMMddHHmmss` timestamps: zone assumed UTC+8 (configurable,
//!   [`webhook::VerifierConfig::datetime_offset`]). 16 digits = µs, 13 digits = ms.
//! * Timestamp tolerance: default ±24 h (configurable, `None` disables). The timestamp is not
//!   signed, so this is only a sanity filter; wide because a retry may reuse the original
//!   timestamp ("same parameters"). The simulator reuses it by default
//!   ([`sim::SenderConfig::reuse_timestamp_on_retry`]).
//! * "Expected response" = HTTP 200 + `pay-api-signature` verifying over the reply body +
//!   `returnCode == "SUCCESS"`. Anything else makes the simulator retry.
//! * Retry schedule/cap: unknown; simulator default 1 m, 5 m, 15 m, 1 h, 6 h (6 attempts),
//!   configurable through [`sim::SenderConfig::retry_delays`].
//! * `trackingStatus` vocabulary: unknown (free text); the simulator's default scenario uses
//!   `SHIPPED`, `IN_TRANSIT`, `OUT_FOR_DELIVERY`, `DELIVERED`.
//! * Rejections (bad signature etc.) are answered by our side with a *signed* `FAIL` reply and
//!   HTTP 401/400 (see [`webhook::WebhookError::status`]); SHOPLINE's expectation is unknown.
//!
//! Constant time: the scheme is asymmetric, so no shared secret is ever compared by this crate;
//! the only comparison of secret-derived bytes is the PKCS#1 v1.5 encoded-message check inside
//! OpenSSL's RSA verification, which is constant-time.

pub mod signing;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

pub use signing::{
    canonical_string, canonical_string_from_bytes, PrivateKey, PublicKey, SigningError,
};
pub use webhook::{LogisticsReport, Reply, TrackingInfo, Verifier, VerifierConfig, WebhookError};
