//! orderbus-ingress integration tests: a real axum server on 127.0.0.1:0, real PostgreSQL
//! (a fresh database per test), reqwest and raw TCP clients.

mod common;
mod dedupe;
mod limits;
mod log;
mod metrics;
mod props;
mod shopline;
mod signatures;
mod tokens;
