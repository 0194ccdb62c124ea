//! Integration tests of orderbus-scheduler against the real PostgreSQL: a fresh database per test,
//! a [`ManualClock`](orderbus_scheduler::ManualClock) shared by the schedulers of one test.

mod common;

mod exactly_once;
mod failing;
mod faults;
mod lease;
mod missed;
mod resume;
mod retention;
mod time_zone;
