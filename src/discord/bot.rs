//! What the Discord tasks share: the serenity-free [`Coach`] and the way to send to Discord.
//! The event handler, commands, the reminder scheduler, digests and reloads all take a `Bot`;
//! none of them reach into another.

use std::sync::{Arc, OnceLock};

use super::delivery::Deliverer;
use crate::coach::Coach;

pub struct Bot {
    pub coach: Arc<Coach>,
    /// Exists once serenity's HTTP client does, which is after the event handler.
    deliverer: OnceLock<Arc<Deliverer>>,
}

impl Bot {
    pub fn new(coach: Arc<Coach>) -> Bot {
        Bot {
            coach,
            deliverer: OnceLock::new(),
        }
    }

    /// Connects the bot (and its coach) to Discord's REST API.
    pub fn attach(&self, deliverer: Arc<Deliverer>) {
        self.coach.attach(deliverer.clone());
        let _ = self.deliverer.set(deliverer);
    }

    pub fn deliverer(&self) -> Option<&Arc<Deliverer>> {
        self.deliverer.get()
    }
}
