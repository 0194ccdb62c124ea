//! Integration tests of the Frotel client against the simulator over real sockets.

mod common;
mod encoding;
mod failover;
mod methods;
mod props;
mod samples;
mod validation;
