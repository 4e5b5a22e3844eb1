//! Backstop coaches customer-support agents in real time: when a customer says we already let
//! them down, when an agent explains before apologizing, and when a promised follow-up is due.
//!
//! # Layout
//! - [`engine`]: the pure coaching engine — rules, prompts, settings, per-conversation state.
//!   Messages in, nudges out; no I/O and no clock.
//! - [`config`]: loads rules, prompts and settings from disk (or the built-in defaults) and checks them.
//! - [`transcript`]: the JSON Lines transcript format, read with errors that name line and field.
//! - [`replay`]: drives the engine over a transcript, on the transcript's own clock.
//! - [`eval`]: scores detections and nudges against labelled transcripts (precision, recall, F1).
//! - [`store`]: durable state in SQLite or PostgreSQL: promises, the nudge log, settings.
//! - [`report`]: the rule-quality report from agents' 👍/👎 feedback.
//! - [`checklist`]: recovery checklist rates for the team, each agent and each week.
//! - [`clock`]: the bot's time source: real, moved by hand (tests, the demo) or sped up.
//! - [`train`]: fits the learned layer's models from labelled transcripts (`backstop train`).
//!
//! The `backstop` binary (`src/main.rs`) is a thin edge over these.

pub mod checklist;
pub mod clock;
pub mod coach;
pub mod config;
pub mod digest;
pub mod discord;
/// The pure coaching engine, a crate of its own (`crates/engine`).
pub use backstop_engine as engine;
pub mod eval;
/// The fuzz targets' bodies (`fuzz/`), shared with `tests/fuzz_corpus.rs`.
#[doc(hidden)]
pub mod fuzzing;
pub mod replay;
pub mod report;
pub mod store;
pub mod train;
pub mod transcript;
