//! One tracking vocabulary for every source of shipment events.
//!
//! Each source's status strings (SweetTracker levels, SHOPLINE `trackingStatus`, Frotel's Persian
//! order statuses, the MQ spec's `order.updateExpressInfo` `state`) map to one set of
//! [`Stage`]s. The tables are data (`data/*.toml`, compiled in) that an operator extends or
//! overrides per source and per carrier with their own files, loaded and validated at start.
//! A status that is in no table is [`Unmapped`]: recorded and counted, never guessed.
//! [`Stage::progress_from`] is the forward-only rule every consumer applies.

mod stage;
mod text;
mod vocabulary;

pub use stage::{Progress, Stage, UnknownStage};
pub use text::normalise;
pub use vocabulary::{
    Unmapped, Vocabulary, VocabularyError, EXPRESS_INFO, FROTEL, SHOPLINE, SWEETTRACKER,
};
