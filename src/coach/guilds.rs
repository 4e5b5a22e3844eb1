//! One engine per configured guild: each with its own settings and state, sharing the rules
//! and prompts.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::BotConfig;
use crate::clock::Clock;
use crate::engine::{Engine, Prompts};

/// One engine per configured guild (its own settings and state), sharing rules and prompts.
pub struct Guilds {
    engines: HashMap<u64, Arc<Engine>>,
    clock: Clock,
}

impl Guilds {
    pub fn new(base: &Engine, config: &BotConfig, clock: Clock) -> Guilds {
        let engines = config
            .guilds
            .iter()
            // Engines keep no timers: reminders are timed by the durable scheduler.
            .map(|g| {
                (
                    g.id,
                    Arc::new(
                        base.with_settings(g.settings.clone())
                            .naming(|user| format!("<@{user}>")),
                    ),
                )
            })
            .collect();
        Guilds { engines, clock }
    }

    pub fn engine(&self, guild: u64) -> Option<&Arc<Engine>> {
        self.engines.get(&guild)
    }

    pub fn all(&self) -> impl Iterator<Item = (u64, &Arc<Engine>)> {
        self.engines.iter().map(|(id, e)| (*id, e))
    }

    /// The prompts every guild's engine shares.
    pub fn prompts(&self) -> Arc<Prompts> {
        self.engines
            .values()
            .next()
            .map(|e| e.prompts())
            .expect("at least one guild")
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}
