//! The stand-in's tests, one binary (one link, one harness): the built binary's commands,
//! the order lifecycle and the after-sales walks over the real broker and database.

mod after_sales;
mod cli;
mod common;
mod lifecycle;
