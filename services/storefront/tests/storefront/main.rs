//! Storefront integration tests: one binary (one link step), real PostgreSQL and RabbitMQ,
//! the service in process on 127.0.0.1:0.

mod autocancel;
mod common;
mod consumers;
mod consumers_hostile;
mod fuzz;
mod hostile_input;
mod http_api;
mod outage;
mod replicas;
mod sigterm;
mod tracking;
