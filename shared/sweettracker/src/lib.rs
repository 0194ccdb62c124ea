//! # orderbus-sweettracker
//!
//! SweetTracker (스마트택배) Trace API v1.5 — `add_invoice` registration and push callbacks —
//! both sides:
//!
//! * [`client`] — [`client::Client::add_invoice`] (form-encoded), typed `e_code` results
//!   ([`client::ECode`]) and an error enum separating transport, protocol and business errors.
//! * [`callback`] — decoding of the pushes in both encodings (`map` = form, `json`), `level`
//!   as int or string, and the reply `{"code":true,"message":"success"}`.
//! * [`carrier`] — typed carrier code table.
//! * [`sim`] (cargo feature `sim`) — an axum simulator: validates and remembers registrations, then drives each
//!   invoice through levels 1→6 by POSTing callbacks, retrying failures, with fault modes.
//!
//! ## Choices where the reference is \[inferred\] or \[unknown\]
//!
//! * Request encoding: the client sends form-encoded; the simulator accepts form and JSON.
//! * `add_invoice` HTTP status on failure: 200 with `success:false` (simulator knob
//!   [`sim::SimConfig::failure_http_status`]). The client parses the body whatever the status.
//! * Wrong `tier`/`key`: no e_code documented; the simulator answers `99` (knob
//!   `check_credentials`). Unusable `callback_url` (not http/https): `01`. `callback_type` is `map` or
//!   `json` in any letter case; `xml` (its push body is not specified) is refused with `01` and a
//!   message saying xml is not supported.
//! * Invoice validation (`02`): digits only, length 9..=15 (knob `invoice_len`); carrier check
//!   digits are not simulated. Unknown carrier → `04` (knob `accept_unknown_carriers`).
//! * Callback body per `callback_type`: `map` → form fields; `json` → flat object with string
//!   values; `level` sent as a string by default (observed), knob `json_level_as_string`.
//! * Times `yyyy-MM-dd HH:mm:ss` without zone, taken as KST; 30..240 min between events,
//!   `time_sweet` = `time_trans` + 1..20 min; the history ends at the registration time, so every
//!   event lies in the past or present (or it starts at `SimConfig::start_time` when set).
//! * Callback delivery failure = non-2xx, non-JSON reply, or `code != true`; retry schedule is
//!   unknown: default 1 min / 10 min / 60 min (knob `retry_delays`). After the last retry the
//!   simulator moves on to the next event.
//! * Unknown `level` values in a callback are rejected by the decoder
//!   ([`callback::CallbackError::BadLevel`]); reply `code:false` and SweetTracker may retry.
//! * `/validate` (v0.3 only, presence in v1.5 unknown) and `xml` formats are not implemented.

pub mod callback;
pub mod carrier;
pub mod client;
#[cfg(feature = "sim")]
pub mod sim;

pub use callback::{
    decode, decode_form, decode_json, Callback, CallbackError, CallbackReply, Level,
};
pub use carrier::Carrier;
pub use client::{AddInvoice, AddInvoiceAck, CallbackType, Client, ClientConfig, ECode, Error};
#[cfg(feature = "sim")]
pub use sim::{Faults, SimConfig, Simulator};
