//! # orderbus-contracts
//!
//! The messages orderbus and the ERP exchange on RabbitMQ's `amq.topic`, one Rust type per routing
//! key of the ERP's MQ spec. The spec's JSON samples are the
//! contract: every one of them is a golden fixture under `tests/fixtures/mq-spec/` that must decode
//! and re-encode to the same JSON value.
//!
//! - [`RoutingKey`] maps each key to its type ([`Message::ROUTING_KEY`]) and back
//!   ([`BusMessage::decode`]), and knows who publishes and subscribes to it.
//! - [`decode`] validates a body and names the offending field on error.
//! - [`strict`] parses JSON refusing duplicate keys and U+0000; every decode goes through it.
//! - [`rules`] holds the field rules (required text, lengths, URLs, digits) every message obeys.
//! - [`wire`] holds the encodings the spec uses inconsistently (numbers sent as strings).
//! - [`codes`] holds the status codes as closed enums: an unknown code is a decode error.
//! - [`schema`] generates `schemas/` (JSON Schema per message and the AsyncAPI document).

pub mod codes;
pub mod messages;
pub mod routing;
pub mod rules;
pub mod schema;
pub mod strict;
pub mod wire;

pub use codes::*;
pub use messages::*;
pub use routing::{
    decode, encode, BusMessage, DecodeError, Message, Party, RoutingKey, UnknownRoutingKey,
    Validate,
};
pub use strict::StrictError;
pub use wire::Decimal;
