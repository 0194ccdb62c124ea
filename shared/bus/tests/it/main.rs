//! The bus's integration tests, one binary (one link step): real RabbitMQ and PostgreSQL,
//! isolated per test (own database, own service name and routing-key prefix, queues deleted
//! afterwards).

mod ack_timeout;
mod cluster;
mod common;
mod consumer;
mod faults;
mod headers;
mod outbox;
mod shards;
mod sqlstate;
mod topology;
mod trace;
