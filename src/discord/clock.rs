//! The bot's notion of now. Real time in production; a clock the tests and the demo move by hand,
//! so reminders due "tomorrow at 5pm" are exercised without waiting a day.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::Notify;

/// Where the scheduler gets the time from.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(Arc<ManualClock>),
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
    moved: Notify,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
            moved: Notify::new(),
        })
    }

    /// Moves the clock forward to `t` (never backwards) and wakes everyone waiting on it.
    pub fn advance_to(&self, t: Timestamp) {
        {
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            *now = (*now).max(t);
        }
        self.moved.notify_waiters();
    }

    pub fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Waits until the clock reads `t` or later.
    pub async fn sleep_until(&self, t: Timestamp) {
        match self {
            Clock::System => {
                let wait = (t - Timestamp::now())
                    .total(jiff::Unit::Millisecond)
                    .unwrap_or(0.0)
                    .max(0.0);
                tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
            }
            Clock::Manual(m) => loop {
                let moved = m.moved.notified();
                if m.now() >= t {
                    return;
                }
                moved.await;
            },
        }
    }
}
