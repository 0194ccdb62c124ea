//! Integration tests of the contracts: the golden fixtures of the MQ spec through the decoder, and
//! the committed `schemas/` against the types. One test binary, one module per concern.

mod golden;
mod schemas;
