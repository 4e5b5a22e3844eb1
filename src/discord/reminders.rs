//! The durable reminder scheduler: heads-ups, overdue notices and escalations for every stored
//! promise this process owns.
//!
//! The database is the source of truth; this holds only a time-ordered index of (when, promise
//! id), loaded at start-up and kept up to date as promises are made, moved and closed. Entries
//! are never removed eagerly: when one falls due, the promise row is read back, and an entry
//! whose time no longer matches the row (done, snoozed, restated) is simply dropped. So the
//! index costs 16 bytes a promise plus the tree's overhead, and the scheduler never polls.
//!
//! Delivery is at-least-once: a step is sent first and recorded second, with the record
//! conditional on the row still waiting for that step. A crash between the two repeats that one
//! step after the restart, never more, because the restart reads the row again and the record of
//! the repeat moves it on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serenity::all::{ChannelId, CreateEmbed, CreateMessage};
use tokio::sync::Notify;

use super::delivery;
use super::handler::Handler;
use crate::engine::{format_due, ConversationId};
use crate::store::{from_ms, SentStep, ShardRange, Store, StoreError, StoredPromise};

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

/// The scheduler loop: sleeps until the next step or a wake-up, then fires what is due.
pub async fn run(handler: Arc<Handler>, mut stop: super::stop::Stop) {
    loop {
        let now = handler.guilds.clock().now().as_millisecond();
        for (at, id) in handler.reminders.take_due(now) {
            fire(&handler, at, id).await;
        }
        let clock = handler.guilds.clock().clone();
        let wake = handler.reminders.wake.notified();
        let waited = match handler.reminders.next_at() {
            Some(at) => {
                stop.wait(async {
                    tokio::select! {
                        _ = clock.sleep_until(from_ms(at)) => {}
                        _ = wake => {}
                    }
                })
                .await
            }
            None => stop.wait(wake).await,
        };
        if !waited {
            return;
        }
    }
}

/// Fires one step if the promise still waits for it.
async fn fire(handler: &Handler, at: i64, id: i64) {
    let row = match handler.store.promise(id).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(e) => {
            // The database is away: try again shortly; nothing is lost, only late.
            tracing::warn!(error = %e, promise = id, "cannot read a due promise; retrying in a second");
            tokio::time::sleep(Duration::from_secs(1)).await;
            handler.reminders.add(at, id);
            return;
        }
    };
    let (Some(step), true) = (row.next_step, row.next_at == Some(at) && row.state.is_open()) else {
        return;
    };
    let (Some(config), Some(engine)) = (handler.config.guild(row.guild), handler.guilds.engine(row.guild)) else {
        return;
    };
    let sent_at = handler.guilds.clock().now();
    let lag = sent_at.as_millisecond() - at;
    metrics::histogram!(super::metrics::REMINDER_LAG).record(lag.max(0) as f64 / 1000.0);
    let mut promise = row.to_engine();
    // The engine decides what goes out (a late heads-up becomes the overdue notice) and whether
    // the row's state allows it; a row that cannot take this step is left as it is.
    let step = promise.sending(step, sent_at);
    if let Err(refused) = promise.advance(step) {
        tracing::warn!(promise = id, %refused, "not sending a step its promise cannot take");
        return;
    }
    let (delivered, log) = match step.nudge_kind() {
        Some(kind) => {
            let conversation = ConversationId::new(&row.conversation.to_string());
            // Stamped with when it went out, not when it was scheduled: that is what the nudge
            // log, stats and digests report.
            let nudge = engine.reminder(kind, &conversation, &promise, sent_at);
            let log = handler.deliver(config, row.conversation, vec![nudge]).await.pop();
            (log.as_ref().is_some_and(|l| l.delivered), log)
        }
        None => (escalate(handler, &row, config).await, None),
    };
    let next = engine
        .next_step(&promise, sent_at)
        .map(|(t, s)| (t.as_millisecond(), s));
    engine.promise_step_sent(&row.conversation.to_string(), promise.source, step);
    let sent = SentStep {
        id,
        expected_at: at,
        state: promise.state(),
        next,
        now: handler.guilds.clock().now().as_millisecond(),
        delivered,
        log,
    };
    // Recorded before the next step is scheduled, so that step finds the row waiting for it.
    // While the database is away this waits: nothing else could be read from it either.
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = handler.store.step_sent(&sent).await {
        tracing::warn!(error = %e, promise = id, "cannot record a sent reminder; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    if let Some((t, _)) = next {
        handler.reminders.add(t, id);
    }
}

/// Posts a lapsed promise to the team's coaching channel.
/// Returns whether the post went out.
async fn escalate(handler: &Handler, row: &StoredPromise, config: &super::config::GuildConfig) -> bool {
    let (Some(coaching), Some(deliverer)) = (config.coaching_channel, handler.deliverer.get()) else {
        return false;
    };
    let link = delivery::jump_link(
        row.guild,
        row.conversation,
        serenity::all::MessageId::new(row.message.max(1)),
    );
    let embed = CreateEmbed::new()
        .title("A promised follow-up has lapsed")
        .description(format!(
            "<@{}> promised \"{}\", due {}. It is still open. [Jump to the promise]({link})",
            row.agent,
            row.evidence,
            format_due(from_ms(row.due_at), &config.settings.schedule)
        ))
        .colour(0xC0392B);
    match deliverer
        .post(ChannelId::new(coaching), CreateMessage::new().embed(embed))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "could not post an escalation");
            false
        }
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
