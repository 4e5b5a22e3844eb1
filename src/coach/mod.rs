//! The coaching layer between Discord and the engine, free of serenity: what the bot does with
//! events once they are plain values.
//!
//! - [`order`]: each conversation's events in Discord's order, whatever order serenity's tasks
//!   start in.

pub mod order;
