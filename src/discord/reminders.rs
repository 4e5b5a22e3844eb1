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

use std::sync::Arc;
use std::time::Duration;

use super::bot::Bot;
use crate::coach::jump_link;
use crate::engine::{format_due, ConversationId};
use crate::store::{from_ms, SentStep, StoredPromise};
use serenity::all::{ChannelId, CreateEmbed, CreateMessage};

pub use crate::coach::schedule::Reminders;

/// The scheduler loop: sleeps until the next step or a wake-up, then fires what is due.
pub async fn run(bot: Arc<Bot>, mut stop: super::stop::Stop) {
    loop {
        let now = bot.coach.guilds.clock().now().as_millisecond();
        for (at, id) in bot.coach.reminders.take_due(now) {
            fire(&bot, at, id).await;
        }
        let clock = bot.coach.guilds.clock().clone();
        let wake = bot.coach.reminders.woken();
        let waited = match bot.coach.reminders.next_at() {
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
async fn fire(bot: &Bot, at: i64, id: i64) {
    let row = match bot.coach.store.promise(id).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(e) => {
            // The database is away: try again shortly; nothing is lost, only late.
            tracing::warn!(error = %e, promise = id, "cannot read a due promise; retrying in a second");
            tokio::time::sleep(Duration::from_secs(1)).await;
            bot.coach.reminders.add(at, id);
            return;
        }
    };
    let (Some(step), true) = (row.next_step, row.next_at == Some(at) && row.state.is_open()) else {
        return;
    };
    let (Some(config), Some(engine)) = (bot.coach.config.guild(row.guild), bot.coach.guilds.engine(row.guild)) else {
        return;
    };
    let sent_at = bot.coach.guilds.clock().now();
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
            let log = bot.coach.deliver(config, row.conversation, vec![nudge]).await.pop();
            (log.as_ref().is_some_and(|l| l.delivered), log)
        }
        None => (escalate(bot, &row, config).await, None),
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
        now: bot.coach.guilds.clock().now().as_millisecond(),
        delivered,
        log,
    };
    // Recorded before the next step is scheduled, so that step finds the row waiting for it.
    // While the database is away this waits: nothing else could be read from it either.
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = bot.coach.store.step_sent(&sent).await {
        tracing::warn!(error = %e, promise = id, "cannot record a sent reminder; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    if let Some((t, _)) = next {
        bot.coach.reminders.add(t, id);
    }
}

/// Posts a lapsed promise to the team's coaching channel.
/// Returns whether the post went out.
async fn escalate(bot: &Bot, row: &StoredPromise, config: &crate::coach::config::GuildConfig) -> bool {
    let (Some(coaching), Some(deliverer)) = (config.coaching_channel, bot.deliverer()) else {
        return false;
    };
    let link = jump_link(row.guild, row.conversation, row.message.max(1));
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
