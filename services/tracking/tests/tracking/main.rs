//! Integration tests of the tracking service (one binary): real PostgreSQL and RabbitMQ, the
//! SweetTracker simulator and SHOPLINE's sender simulator over real HTTP.

mod callbacks;
mod common;
mod delivery;
mod registration;
mod shopline;
mod sigterm;
