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
    /// Real time sped up from a fixed origin: several processes given the same origin agree on
    /// the time, so tests can kill and restart the bot mid-schedule and the demo can fast-forward.
    Scaled(ScaledClock),
}

/// `now = start + (real now - real start) × speed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaledClock {
    pub start: Timestamp,
    pub real_start: Timestamp,
    pub speed: f64,
}

impl ScaledClock {
    /// Reads `START,REAL_START,SPEED`: two RFC 3339 times and a factor, e.g.
    /// `2026-03-02T09:00:00Z,2026-11-24T10:00:00Z,600`.
    pub fn parse(text: &str) -> Result<ScaledClock, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let [start, real_start, speed] = parts.as_slice() else {
            return Err(format!("{text:?}: expected START,REAL_START,SPEED"));
        };
        let time = |t: &str| {
            t.parse::<Timestamp>()
                .map_err(|e| format!("{t:?} is not an RFC 3339 time: {e}"))
        };
        let speed: f64 = speed.parse().map_err(|_| format!("{speed:?} is not a number"))?;
        if !(speed > 0.0 && speed.is_finite()) {
            return Err(format!("speed must be above zero, not {speed}"));
        }
        Ok(ScaledClock {
            start: time(start)?,
            real_start: time(real_start)?,
            speed,
        })
    }

    pub fn now(&self) -> Timestamp {
        let real = (Timestamp::now() - self.real_start)
            .total(jiff::Unit::Millisecond)
            .unwrap_or(0.0);
        let ms = self.start.as_millisecond() as f64 + real * self.speed;
        Timestamp::from_millisecond(ms as i64).unwrap_or(self.start)
    }
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
            Clock::Scaled(s) => s.now(),
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
            Clock::Scaled(s) => {
                let wait = (t - s.now()).total(jiff::Unit::Millisecond).unwrap_or(0.0).max(0.0) / s.speed;
                tokio::time::sleep(std::time::Duration::from_millis(wait.ceil() as u64)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_fast_from_its_origin() {
        let real_start = Timestamp::now() - jiff::SignedDuration::from_secs(2);
        let text = format!("2026-03-02T09:00:00Z,{real_start},600");
        let c = ScaledClock::parse(&text).unwrap();
        let ahead = c.now().as_second() - "2026-03-02T09:00:00Z".parse::<Timestamp>().unwrap().as_second();
        // Two real seconds at 600× are twenty virtual minutes (give or take scheduling).
        assert!((1200..1300).contains(&ahead), "{ahead}");
        assert!(ScaledClock::parse("yesterday,now,2").is_err());
        assert!(ScaledClock::parse(&format!("2026-03-02T09:00:00Z,{real_start},0")).is_err());
    }
}
