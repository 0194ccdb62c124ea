//! orderbus-partner integration tests: real PostgreSQL (a fresh database per test) and real
//! local HTTP servers (the SweetTracker simulator and a small stub) on 127.0.0.1:0.

mod calls;
mod client;
mod common;
mod metrics;
mod props;
