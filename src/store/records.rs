//! Rows as Rust types: what goes into the store and what comes back out.

use std::sync::Arc;

use serde_json::json;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::from_ms;
use crate::engine::{Checklist, Due, DueSource, MessageRef, Promise, RecoveryStep, Step, UserId};

/// Where a promise is in its life: the engine's state machine, stored as the text of
/// [`PromiseState::as_str`]. The store persists states and checks no moves of its own, except
/// that a closed promise (done, superseded) is never reopened by an update.
pub use crate::engine::PromiseState;

/// A promise to record. Times are Unix milliseconds; ids are Discord snowflakes.
#[derive(Debug, Clone)]
pub struct NewPromise {
    pub guild: u64,
    pub conversation: u64,
    pub agent: u64,
    pub customer: Option<u64>,
    pub message: u64,
    pub rule: String,
    pub evidence: String,
    pub excerpt: String,
    pub made_at: i64,
    pub due_at: i64,
    /// The stated timeframe ("tomorrow by 3pm"); `None` when the default applied.
    pub due_words: Option<String>,
    /// The first step and when.
    pub next: Option<(i64, Step)>,
}

/// A new due time for an open promise (restated, snoozed, or chased early).
#[derive(Debug, Clone)]
pub struct Reschedule {
    pub guild: u64,
    pub message: u64,
    pub due_at: i64,
    /// The newly stated timeframe; `None` keeps the stored words.
    pub due_words: Option<String>,
    pub state: PromiseState,
    pub next: Option<(i64, Step)>,
}

/// A promise as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPromise {
    pub id: i64,
    pub guild: u64,
    pub conversation: u64,
    pub agent: u64,
    pub customer: Option<u64>,
    pub message: u64,
    pub rule: String,
    pub evidence: String,
    pub excerpt: String,
    pub made_at: i64,
    pub due_at: i64,
    pub due_words: Option<String>,
    pub state: PromiseState,
    pub next_step: Option<Step>,
    pub next_at: Option<i64>,
    /// How many scheduled steps went out (reminder, overdue, escalation).
    pub reminders: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    /// When it was posted to the team as lapsed.
    pub escalated_at: Option<i64>,
}

impl StoredPromise {
    /// The engine's view, in its stored state, for rendering a reminder or restoring a
    /// conversation.
    pub fn to_engine(&self) -> Promise {
        Promise::new(
            UserId::new(&self.agent.to_string()),
            self.customer.map(|c| UserId::new(&c.to_string())),
            Arc::from(self.rule.as_str()),
            MessageRef(self.message),
            from_ms(self.made_at),
            Due {
                at: from_ms(self.due_at),
                source: match &self.due_words {
                    Some(w) => DueSource::Stated(w.clone()),
                    None => DueSource::Default,
                },
            },
            self.evidence.clone(),
            self.excerpt.clone(),
        )
        .in_state(self.state)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "type": "promise",
            "id": self.id,
            "guild": self.guild.to_string(),
            "conversation": self.conversation.to_string(),
            "agent": self.agent.to_string(),
            "customer": self.customer.map(|c| c.to_string()),
            "message": self.message.to_string(),
            "rule": self.rule,
            "evidence": self.evidence,
            "excerpt": self.excerpt,
            "made_at": from_ms(self.made_at).to_string(),
            "due_at": from_ms(self.due_at).to_string(),
            "due_words": self.due_words,
            "state": self.state.as_str(),
            "next_step": self.next_step.map(Step::as_str),
            "next_at": self.next_at.map(|t| from_ms(t).to_string()),
            "reminders": self.reminders,
            "updated_at": from_ms(self.updated_at).to_string(),
            "closed_at": self.closed_at.map(|t| from_ms(t).to_string()),
        })
    }
}

/// A scheduled step of a promise that was attempted: what the row moves to, and its nudge's log
/// row, written together by [`super::Store::step_sent`].
#[derive(Debug, Clone)]
pub struct SentStep {
    pub id: i64,
    /// The `next_at` the scheduler fired for; the row moves only if it still holds it.
    pub expected_at: i64,
    pub state: PromiseState,
    pub next: Option<(i64, Step)>,
    /// When it went out.
    pub now: i64,
    /// Whether it reached anyone; only deliveries count towards `reminders`.
    pub delivered: bool,
    pub log: Option<NewNudge>,
}

/// A nudge to log.
#[derive(Debug, Clone)]
pub struct NewNudge {
    /// Unique per nudge: the source message and kind (see [`nudge_key`]).
    pub key: String,
    pub guild: u64,
    pub conversation: u64,
    pub message: u64,
    pub agent: Option<u64>,
    pub customer: Option<u64>,
    pub kind: String,
    pub category: Option<String>,
    pub rule: String,
    pub evidence: String,
    /// The message's one-line excerpt (redacted when stored).
    pub excerpt: String,
    pub at: i64,
    /// Whether it reached the agent (false: muted, or delivery failed).
    pub delivered: bool,
}

/// The key that ties a nudge's feedback buttons to its log row.
pub fn nudge_key(message: u64, kind: &str) -> String {
    format!("{message}:{kind}")
}

/// A nudge-log row as a digest reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestNudge {
    pub kind: String,
    pub category: Option<String>,
    pub agent: Option<u64>,
    pub at: i64,
    /// When the agent apologized after it (prior-failure cues only).
    pub recovered_at: Option<i64>,
}

/// A conversation's recovery checklist as stored (one row per conversation with a failure cue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChecklist {
    pub conversation: u64,
    pub guild: u64,
    /// The agent who answered the cue first.
    pub agent: Option<u64>,
    pub opened_at: i64,
    pub updated_at: i64,
    pub replies: i64,
    /// Whether each step is done, in [`RecoveryStep::ALL`] order.
    pub done: [bool; 6],
}

impl StoredChecklist {
    /// The row for an engine checklist (an agent id that is not a Discord id is stored as none).
    pub fn of(guild: u64, conversation: u64, checklist: &Checklist, now: i64) -> StoredChecklist {
        StoredChecklist {
            conversation,
            guild,
            agent: checklist.agent.as_ref().and_then(|a| a.as_str().parse().ok()),
            opened_at: checklist.opened.as_millisecond(),
            updated_at: now,
            replies: i64::from(checklist.replies),
            done: RecoveryStep::ALL.map(|s| checklist.done(s)),
        }
    }

    pub fn done(&self, step: RecoveryStep) -> bool {
        self.done[step as usize]
    }
}

/// A nudge an agent rated with 👍 or 👎, as `backstop export-labels` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedNudge {
    pub id: i64,
    pub kind: String,
    pub category: Option<String>,
    /// The message's redacted one-line excerpt.
    pub excerpt: String,
    pub at: i64,
    pub helpful: bool,
}

/// Which gateway shards a process runs, and how many there are in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    pub first: u32,
    pub last: u32,
    pub total: u32,
}

impl ShardRange {
    /// Whether a guild's events arrive on one of these shards (Discord's rule).
    pub fn owns(&self, guild: u64) -> bool {
        let shard = ((guild >> 22) % u64::from(self.total.max(1))) as u32;
        (self.first..=self.last).contains(&shard)
    }

    /// Whether this range is every shard there is.
    pub fn is_all(&self) -> bool {
        self.first == 0 && self.last + 1 >= self.total
    }
}

/// What `retention_days` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub nudges: u64,
    pub promises: u64,
    pub conversations: u64,
    pub checklists: u64,
}

/// What `backstop forget --user` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub promises: u64,
    pub nudges: u64,
    pub conversations: u64,
    pub settings: u64,
    pub checklists: u64,
}

impl Forgotten {
    pub fn total(&self) -> u64 {
        self.promises + self.nudges + self.conversations + self.settings + self.checklists
    }
}

/// One rule's record in the nudge log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFigures {
    pub rule: String,
    pub kind: String,
    pub fires: i64,
    pub helpful: i64,
    pub unhelpful: i64,
}

pub(crate) const PROMISE_COLUMNS: &str =
    "id, guild_id, conversation, agent_id, customer_id, message_id, rule, evidence, \
     excerpt, made_at, due_at, due_words, state, next_step, next_at, reminders, updated_at, closed_at, escalated_at";

/// Decodes a row selected with [`PROMISE_COLUMNS`], from either backend.
pub(crate) fn promise_from_row<R>(r: &R) -> Result<StoredPromise, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: for<'a> Decode<'a, R::Database> + Type<R::Database>,
    String: for<'a> Decode<'a, R::Database> + Type<R::Database>,
{
    let state: String = r.try_get(12)?;
    let next_step: Option<String> = r.try_get(13)?;
    Ok(StoredPromise {
        id: r.try_get(0)?,
        guild: r.try_get::<i64, _>(1)? as u64,
        conversation: r.try_get::<i64, _>(2)? as u64,
        agent: r.try_get::<i64, _>(3)? as u64,
        customer: r.try_get::<Option<i64>, _>(4)?.map(|c| c as u64),
        message: r.try_get::<i64, _>(5)? as u64,
        rule: r.try_get(6)?,
        evidence: r.try_get(7)?,
        excerpt: r.try_get(8)?,
        made_at: r.try_get(9)?,
        due_at: r.try_get(10)?,
        due_words: r.try_get(11)?,
        state: PromiseState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown promise state {state:?}").into()))?,
        next_step: next_step.as_deref().and_then(Step::parse),
        next_at: r.try_get(14)?,
        reminders: r.try_get(15)?,
        updated_at: r.try_get(16)?,
        closed_at: r.try_get(17)?,
        escalated_at: r.try_get(18)?,
    })
}

/// A nudge-log row as exported.
pub(crate) fn nudge_json<R>(r: &R) -> Result<serde_json::Value, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: for<'a> Decode<'a, R::Database> + Type<R::Database>,
    String: for<'a> Decode<'a, R::Database> + Type<R::Database>,
{
    let id = |i: usize| -> Result<Option<String>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(i)?.map(|v| (v as u64).to_string()))
    };
    Ok(json!({
        "type": "nudge",
        "id": r.try_get::<i64, _>(0)?,
        "guild": id(1)?,
        "conversation": id(2)?,
        "message": id(3)?,
        "agent": id(4)?,
        "customer": id(5)?,
        "kind": r.try_get::<String, _>(6)?,
        "category": r.try_get::<Option<String>, _>(7)?,
        "rule": r.try_get::<String, _>(8)?,
        "evidence": r.try_get::<String, _>(9)?,
        "at": from_ms(r.try_get::<i64, _>(10)?).to_string(),
        "delivered": r.try_get::<i64, _>(11)? == 1,
        "feedback": match r.try_get::<Option<i64>, _>(12)? { Some(1) => Some("helpful"), Some(_) => Some("not_helpful"), None => None },
        "feedback_at": r.try_get::<Option<i64>, _>(13)?.map(|t| from_ms(t).to_string()),
        "excerpt": r.try_get::<String, _>(14)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_promise_comes_back_to_the_engine_in_its_stored_state() {
        let row = |state| StoredPromise {
            id: 1,
            guild: 2,
            conversation: 3,
            agent: 4,
            customer: None,
            message: 5,
            rule: "r".into(),
            evidence: "I'll call you".into(),
            excerpt: "I'll call you by 3pm".into(),
            made_at: 1_000,
            due_at: 61_000,
            due_words: Some("by 3pm".into()),
            state,
            next_step: None,
            next_at: None,
            reminders: 0,
            updated_at: 1_000,
            closed_at: None,
            escalated_at: None,
        };
        for state in PromiseState::ALL {
            let promise = row(state).to_engine();
            assert_eq!(promise.state(), state);
            assert_eq!(promise.due().at, from_ms(61_000));
            assert_eq!(promise.source, MessageRef(5));
        }
    }
}
