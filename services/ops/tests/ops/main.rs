//! The ops service against the real broker and database (one test binary).

mod common;
mod journal;
mod monitor;
mod parking;
mod timeline;
