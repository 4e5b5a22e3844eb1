//! Discord's order for each conversation, restored after concurrent dispatch.
//!
//! Serenity hands every gateway event to its own task, so two messages of one conversation that
//! arrive a few milliseconds apart can start in either order, and an agent's reply could reach
//! the engine before the customer message it answers. Discord's own order is in the events:
//! a message's timestamp and snowflake, an edit's time, a typing event's second. So each event
//! is held for a short window in a per-conversation lane and let out in that order; events of
//! different conversations never wait on each other.
//!
//! The window bounds how far apart two tasks of one burst may start. An event that still comes
//! after a later one of its conversation has gone to the engine is let through at once (losing
//! it would be worse than reading it late) and counted as late.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// How long an event waits for earlier ones of its conversation: longer than serenity takes to
/// start the tasks of one burst, short beside the seconds a person takes to type.
pub const WINDOW: Duration = Duration::from_millis(20);

/// Where an event sits in its conversation's order: Discord's time in milliseconds, then the
/// message snowflake, then arrival (for events that share both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub at_ms: i64,
    pub snowflake: u64,
    arrival: u64,
}

/// What the lanes have done, for tests and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderStats {
    /// Events let out to the engine.
    pub released: u64,
    /// Events that arrived before one already let out: the lane put them back in their place.
    pub reordered: u64,
    /// Events that reached the engine after a later event of their conversation.
    pub late: u64,
    /// The most conversations being let out at the same moment.
    pub peak_lanes: usize,
}

/// Per-conversation lanes of events of type `E`.
pub struct Lanes<E> {
    inner: Mutex<HashMap<u64, Lane<E>>>,
    window: Duration,
    arrivals: AtomicU64,
    released: AtomicU64,
    reordered: AtomicU64,
    late: AtomicU64,
    active: AtomicUsize,
    peak: AtomicUsize,
}

struct Lane<E> {
    pending: BTreeMap<Position, (Instant, E)>,
    /// The last position let out, to tell a late event.
    last: Option<Position>,
    /// The arrival number of the last event let out, to count reorderings.
    last_arrival: u64,
    /// Whether a task is letting this lane's events out.
    draining: bool,
    /// When the lane last let an event out; an empty lane is kept a while to tell late events.
    active_at: Instant,
}

impl<E> Default for Lanes<E> {
    fn default() -> Self {
        Lanes::with_window(WINDOW)
    }
}

impl<E> Lanes<E> {
    pub fn with_window(window: Duration) -> Lanes<E> {
        Lanes {
            inner: Mutex::new(HashMap::new()),
            window,
            arrivals: AtomicU64::new(0),
            released: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            late: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Lane<E>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts an event in its conversation's lane. When no task is letting that lane out, the
    /// caller becomes that task: it gets a [`Drain`] and must run it to the end.
    pub fn push(self: &Arc<Self>, conversation: u64, at_ms: i64, snowflake: u64, event: E) -> Option<Drain<E>> {
        let arrival = self.arrivals.fetch_add(1, Ordering::Relaxed) + 1;
        let position = Position {
            at_ms,
            snowflake,
            arrival,
        };
        let mut lanes = self.lock();
        let lane = lanes.entry(conversation).or_insert_with(|| Lane {
            pending: BTreeMap::new(),
            last: None,
            last_arrival: 0,
            draining: false,
            active_at: Instant::now(),
        });
        lane.pending.insert(position, (Instant::now(), event));
        if lane.draining {
            return None;
        }
        lane.draining = true;
        drop(lanes);
        let active = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(active, Ordering::Relaxed);
        Some(Drain {
            lanes: self.clone(),
            conversation,
            done: false,
        })
    }

    /// The time and snowflake of the last event a lane let out. An event that knows its time
    /// only to the second goes no earlier than this: what already reached the engine came first.
    pub fn last_released(&self, conversation: u64) -> Option<(i64, u64)> {
        let lanes = self.lock();
        let last = lanes.get(&conversation)?.last?;
        Some((last.at_ms, last.snowflake))
    }

    /// Removes empty lanes that let nothing out for `idle`, so memory follows the busy
    /// conversations; returns how many went.
    pub fn prune(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut lanes = self.lock();
        let before = lanes.len();
        lanes.retain(|_, lane| lane.draining || !lane.pending.is_empty() || now - lane.active_at < idle);
        before - lanes.len()
    }

    pub fn stats(&self) -> OrderStats {
        OrderStats {
            released: self.released.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            peak_lanes: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Conversations with a lane right now.
    pub fn open(&self) -> usize {
        self.lock().len()
    }
}

/// The right to let one lane's events out, in order. Dropping it early hands the lane back, so
/// the next event pushed starts a new drain.
pub struct Drain<E> {
    lanes: Arc<Lanes<E>>,
    conversation: u64,
    done: bool,
}

/// What a drain lets out.
#[derive(Debug)]
pub struct Released<E> {
    pub event: E,
    /// It came after a later event of its conversation had already been let out.
    pub late: bool,
}

impl<E> Drain<E> {
    /// The lane's next event in order, once it has waited its window; `None` when the lane is
    /// empty (and then gone).
    pub async fn next(&mut self) -> Option<Released<E>> {
        if self.done {
            return None;
        }
        loop {
            let wait_until = {
                let mut lanes = self.lanes.lock();
                // A draining lane is never pruned, so it is there; if not, there is nothing to let out.
                let Some(lane) = lanes.get_mut(&self.conversation) else {
                    drop(lanes);
                    self.finish();
                    return None;
                };
                let Some((&position, &(arrived, _))) = lane.pending.first_key_value() else {
                    lane.draining = false;
                    drop(lanes);
                    self.finish();
                    return None;
                };
                let ready = arrived + self.lanes.window;
                if Instant::now() >= ready {
                    let Some((_, (_, event))) = lane.pending.pop_first() else {
                        continue;
                    };
                    let late = lane.last.is_some_and(|last| position < last);
                    if late {
                        self.lanes.late.fetch_add(1, Ordering::Relaxed);
                    } else {
                        lane.last = Some(position);
                    }
                    if position.arrival < lane.last_arrival {
                        self.lanes.reordered.fetch_add(1, Ordering::Relaxed);
                    }
                    lane.last_arrival = lane.last_arrival.max(position.arrival);
                    lane.active_at = Instant::now();
                    self.lanes.released.fetch_add(1, Ordering::Relaxed);
                    return Some(Released { event, late });
                }
                ready
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.lanes.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<E> Drop for Drain<E> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(lane) = self.lanes.lock().get_mut(&self.conversation) {
                lane.draining = false;
            }
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain_all(mut drain: Drain<u32>) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        while let Some(r) = drain.next().await {
            out.push((r.event, r.late));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn events_pushed_out_of_order_within_the_window_come_out_in_order() {
        let lanes = Arc::new(Lanes::default());
        let drain = lanes.push(7, 1_000, 30, 3).expect("first push drains");
        assert!(lanes.push(7, 1_000, 10, 1).is_none(), "one drain per lane");
        assert!(lanes.push(7, 900, 99, 0).is_none());
        assert!(lanes.push(7, 1_000, 20, 2).is_none());
        assert_eq!(
            drain_all(drain).await,
            vec![(0, false), (1, false), (2, false), (3, false)]
        );
        let stats = lanes.stats();
        assert_eq!((stats.released, stats.late), (4, 0));
        assert_eq!(stats.reordered, 2, "1 and 3 arrived before 0, which went out first");
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_after_its_window_is_let_out_late_never_lost() {
        let lanes = Arc::new(Lanes::default());
        let first = lanes.push(1, 2_000, 2, 20).expect("drain");
        assert_eq!(drain_all(first).await, vec![(20, false)]);
        let again = lanes.push(1, 1_000, 1, 10).expect("an emptied lane starts a new drain");
        assert_eq!(drain_all(again).await, vec![(10, true)]);
        assert_eq!(lanes.stats().late, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_waits_its_window_before_it_is_let_out() {
        let lanes = Arc::new(Lanes::<u32>::default());
        let start = Instant::now();
        let mut drain = lanes.push(1, 0, 1, 1).expect("drain");
        drain.next().await.expect("one event");
        assert!(Instant::now() - start >= WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn conversations_drain_side_by_side() {
        let lanes = Arc::new(Lanes::default());
        let a = lanes.push(1, 0, 1, 1).expect("lane 1");
        let b = lanes.push(2, 0, 2, 2).expect("lane 2");
        let (a, b) = tokio::join!(drain_all(a), drain_all(b));
        assert_eq!((a, b), (vec![(1, false)], vec![(2, false)]));
        assert_eq!(lanes.stats().peak_lanes, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_drain_hands_the_lane_back() {
        let lanes = Arc::new(Lanes::default());
        let drain = lanes.push(1, 0, 1, 1).expect("drain");
        drop(drain);
        let again = lanes.push(1, 0, 2, 2).expect("the lane is free again");
        assert_eq!(drain_all(again).await, vec![(1, false), (2, false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn last_released_is_the_newest_let_out_and_idle_lanes_are_pruned() {
        let lanes = Arc::new(Lanes::default());
        assert_eq!(lanes.last_released(1), None);
        let drain = lanes.push(1, 5, 50, 1).expect("drain");
        lanes.push(1, 3, 30, 2);
        assert_eq!(lanes.last_released(1), None, "nothing let out yet");
        drain_all(drain).await;
        assert_eq!(lanes.last_released(1), Some((5, 50)));
        assert_eq!(lanes.prune(Duration::from_secs(60)), 0, "recently active");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(lanes.prune(Duration::from_secs(60)), 1);
        assert_eq!(lanes.open(), 0);
    }
}
