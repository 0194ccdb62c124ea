//! Integration tests of orderbus-sinopac (one binary: one link step).

mod common;
mod faults;
mod fuzz;
mod notifications;
mod services;
mod vectors;
mod window;
