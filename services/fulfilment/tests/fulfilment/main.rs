//! The fulfilment service against the real broker and database and the Frotel simulator's
//! three mirrors over HTTP.

mod common;
mod flows;
mod hostile;
mod mirrors;
mod rules;
mod storefront;
