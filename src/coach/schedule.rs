//! The time-ordered index of pending reminder steps (heads-ups, overdue notices, escalations)
//! for every stored promise this process owns.
//!
//! The database is the source of truth; this holds only (when, promise id), loaded at start-up
//! and kept up to date as promises are made, moved and closed. Entries are never removed
//! eagerly: when one falls due, the scheduler reads the promise row back and drops an entry whose
//! time no longer matches the row (done, snoozed, restated). So the index costs 16 bytes a
//! promise plus the tree's overhead, and the scheduler never polls.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::store::{ShardRange, Store, StoreError};

/// The time-ordered index of pending steps.
#[derive(Debug, Default)]
pub struct Reminders {
    queue: Mutex<BTreeSet<(i64, i64)>>,
    wake: Notify,
}

impl Reminders {
    /// Loads every pending step of the promises this process owns.
    pub async fn load(store: &Store, shards: Option<ShardRange>) -> Result<Reminders, StoreError> {
        let pending = store.pending(shards).await?;
        Ok(Reminders::from_pending(pending))
    }

    /// Builds the index from (when, id) pairs in any order.
    pub fn from_pending(pending: Vec<(i64, i64)>) -> Reminders {
        Reminders {
            queue: Mutex::new(pending.into_iter().collect()),
            wake: Notify::new(),
        }
    }

    /// Schedules a promise's next step at `at` (Unix ms) and wakes the scheduler.
    pub fn add(&self, at: i64, id: i64) {
        self.lock().insert((at, id));
        self.wake.notify_one();
    }

    /// Resolves when an entry is added (the scheduler waits on this beside its timer).
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The soonest entry's time.
    pub fn next_at(&self) -> Option<i64> {
        self.lock().first().map(|(at, _)| *at)
    }

    /// Takes every entry due at or before `now`, soonest first.
    pub fn take_due(&self, now: i64) -> Vec<(i64, i64)> {
        let mut queue = self.lock();
        let mut out = Vec::new();
        while let Some(first) = queue.first().copied() {
            if first.0 > now {
                break;
            }
            queue.pop_first();
            out.push(first);
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(i64, i64)>> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Reminders;

    #[test]
    fn takes_due_entries_in_time_order_and_leaves_the_rest() {
        let r = Reminders::from_pending(vec![(30, 3), (10, 1), (20, 2), (40, 4)]);
        assert_eq!(r.take_due(25), vec![(10, 1), (20, 2)]);
        assert_eq!(r.next_at(), Some(30));
        r.add(5, 9);
        assert_eq!(r.take_due(5), vec![(5, 9)]);
        assert_eq!(r.len(), 2);
    }
}
