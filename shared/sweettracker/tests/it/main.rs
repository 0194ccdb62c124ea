//! SweetTracker integration tests (one binary): registration e_codes through the client against
//! the simulator, callbacks to a receiver built with the crate's decoder, fault modes, property
//! tests. Everything over real HTTP on 127.0.0.1.

mod common;
mod decode;
mod delivery;
mod props;
mod registration;
