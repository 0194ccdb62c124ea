//! Integration tests of the payments service: real PostgreSQL and RabbitMQ, the Sinopac
//! simulator over real HTTP. The storefront end-to-end flows are in `tests/tests/payments_*.rs`.

mod common;
mod flows;
mod race;
mod sweep;
