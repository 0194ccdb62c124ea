//! # orderbus-sinopac — Sinopac QPay (永豐銀行 豐收款) Order API
//!
//! Both sides of the bank's protocol:
//!
//! * [`crypto`] — HashID from A1/A2/B1/B2, IV from a nonce, AES-256-CBC/PKCS#7 with upper-case
//!   hex, the Sign digest and its constant-time check.
//! * [`envelope`] — the six-field `POST {base}/Order` envelope: [`envelope::seal`],
//!   [`envelope::open`], [`envelope::decode_response`] (never panics on any body).
//! * [`client`] — [`Client`]: `Nonce`, then `OrderCreate`, `OrderPayQuery`, `OrderQuery` and the
//!   date-window splitter [`Client::order_query_window`] for the 300-row cap.
//! * [`notify`] — BackendURL/ReturnURL bodies (`{ShopNo, PayToken}`, JSON or form).
//! * [`sim`] (cargo feature `sim`) — [`sim::Simulator`], an axum 0.8 router playing the bank, with state, timed
//!   payments, BackendURL pushes with retries and fault injection.
//! * [`types`] — typed messages with the bank's exact field names; [`Amount`] carries the two
//!   implied decimals in its constructors (`Amount::from_twd(500)` is sent as `50000`).
//!
//! ## Errors
//!
//! [`Error`] separates `Transport` (connect, timeout, 5xx: retry later), `Protocol` (bad JSON,
//! bad Sign, undecryptable Message, missing fields: do not trust), `Business` (the bank said no:
//! `code` such as `E0602` and `message`) and `InvalidRequest` (refused locally).
//!
//! ## Choices made where the reference is \[unknown\] or \[inferred\]
//!
//! | point | choice | configurable in the simulator |
//! |---|---|---|
//! | nonce lifetime | single use; 5 min TTL | `SimConfig::nonce_ttl` |
//! | failure reply shape (bad Sign, nonce, fields) | HTTP 200, signed+encrypted envelope with `Status=F`; plain `{"Status":"F","Description"}` when the shop is unknown; the client accepts both, and never accepts an unsigned success | `SimConfig::error_shape` |
//! | failure codes | `E0100`-`E0111` invented (see `sim::codes`); `E0602` 收款方式未啟用 as observed; Description `"<code> – <text>"` with U+2013 | — |
//! | more than 300 matches | truncate to the oldest 300 with `Status=S`; the client splits any window whose reply reaches the cap, or that fails with `E0107` | `SimConfig::over_cap`, `row_cap` |
//! | PayStatus codes | `1` + PayType + `100` unpaid / `400` paid / `410` expired | — |
//! | notification encoding | the sim sends JSON; the decoder accepts JSON or form | — |
//! | acknowledgement | any 2xx counts; handlers should answer `{"Status":"S"}` ([`notify::ACK_BODY`]) | `SimConfig::require_ack_body` |
//! | retries | 1 first attempt + 5 retries, 10 min apart | `push_max_retries`, `push_retry_interval` |
//! | sandbox "never paid" orders | OrderNo ending in `9` | `never_pay_suffix`, `amount_outcomes`, `Simulator::set_outcome` |
//! | ATM payment delay | sandbox ~10 min; sim default 10 s | `atm_pay_delay` |
//! | card payment | the sim "customer" pays after 5 s and posts the ReturnURL form once | `card_pay_delay`, `post_return_url` |
//! | expiry | no notification on expiry | `Outcome::Expire` |
//! | time zone of `yyyyMMddHHmm` | Taiwan local time (UTC+8) | `utc_offset_hours` |
//! | boolean scalars in Sign | rendered `true`/`false` (no known field is boolean) | — |
//! | date windows | inclusive at both ends, minute precision | — |

pub mod client;
pub mod crypto;
pub mod envelope;
pub mod error;
pub mod notify;
#[cfg(feature = "sim")]
pub mod sim;
pub mod types;

pub use client::{Client, ClientConfig};
pub use crypto::HashId;
pub use error::{Error, ProtocolError, TransportError};
pub use notify::{decode_notification, Notification};
pub use types::{
    Amount, CardOptions, DateField, DateWindow, OrderCreateRequest, OrderQuery, PayFlag, PayType,
    PaymentMethod,
};
