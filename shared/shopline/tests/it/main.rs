//! SHOPLINE integration tests (one binary: vectors, verification matrix, sender ↔ receiver over
//! real HTTP, property tests).

mod common;
mod props;
mod sender;
mod vectors;
mod verify;
