//! What the engine remembers per conversation, kept small: it is multiplied by every live
//! conversation on a busy server.

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::{Due, MessageRef, Nudge, NudgeKind, UserId};

/// The kinds with a cooldown, in the order of [`Conversation::last_fired`].
pub(crate) const COOLED: [NudgeKind; 6] = [
    NudgeKind::PriorFailure,
    NudgeKind::ExplainBeforeApology,
    NudgeKind::FollowUpPromised,
    NudgeKind::DetailsBeforeOwnership,
    NudgeKind::GenericApology,
    NudgeKind::ColdTransfer,
];

/// What the engine needs to carry on a conversation where it left off: who is in it and where the
/// recovery stands. Adapters store it so a restart mid-conversation still nudges the right agent;
/// it holds no message text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub last_agent: Option<UserId>,
    pub last_customer: Option<UserId>,
    pub last_message: Timestamp,
    /// A cue or complaint the agent has not apologized for yet.
    pub problem_open: bool,
    /// The agent has apologized at some point in this conversation.
    pub apologized: bool,
    /// The customer's latest message asked why.
    pub reason_requested: bool,
    /// When each cooled kind last fired here, in the order of `COOLED`. Contexts stored before a
    /// kind was added have fewer slots; the missing ones read as never fired.
    #[serde(deserialize_with = "fired_slots")]
    pub last_fired: [Option<Timestamp>; COOLED.len()],
    /// Prior-failure categories nudged since the last agent message: a repeat of one of these
    /// before any agent reply is merged into its nudge.
    #[serde(default)]
    pub cues_since_agent: Vec<super::model::Category>,
    /// Who wrote the last message here (the learned layer reads who spoke last).
    #[serde(default)]
    pub last_role: Option<super::model::Role>,
    /// A problem opened and no agent has answered it yet: the next agent message is the first
    /// reply, which should own it before asking for details.
    #[serde(default)]
    pub awaiting_reply: bool,
    /// A prior-failure cue no agent has apologized for yet: the next apology should name it.
    #[serde(default)]
    pub cue_unapologized: bool,
    /// The recovery checklist, from the first failure cue on.
    #[serde(default)]
    pub checklist: Option<super::checklist::Checklist>,
}

fn fired_slots<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[Option<Timestamp>; COOLED.len()], D::Error> {
    let stored: Vec<Option<Timestamp>> = Deserialize::deserialize(d)?;
    let mut slots = [None; COOLED.len()];
    for (slot, at) in slots.iter_mut().zip(stored) {
        *slot = at;
    }
    Ok(slots)
}

impl Context {
    pub fn new(at: Timestamp) -> Context {
        Context {
            last_agent: None,
            last_customer: None,
            last_message: at,
            problem_open: false,
            apologized: false,
            reason_requested: false,
            last_fired: [None; COOLED.len()],
            cues_since_agent: Vec::new(),
            last_role: None,
            awaiting_reply: false,
            cue_unapologized: false,
            checklist: None,
        }
    }
}

/// A customer's failure cue, kept in memory for the hand-off brief (never stored: contexts hold
/// no message text, so a brief after a restart has the promise but not the customer's words).
#[derive(Debug, Clone)]
pub(crate) struct CueNote {
    pub category: super::model::Category,
    pub words: String,
}

/// What the hand-off brief reads: the customer's cues in their own words, the team's apology, and
/// who has been briefed already.
#[derive(Debug, Default)]
pub(crate) struct Story {
    /// The latest few cues, oldest first.
    pub cues: Vec<CueNote>,
    /// The words of the latest agent apology, if any.
    pub apology: Option<String>,
    /// When the customer first wrote.
    pub customer_since: Option<Timestamp>,
    /// Agents who have had the brief here.
    pub briefed: Vec<UserId>,
    /// The latest message, which a brief sent on typing links to.
    pub last_source: MessageRef,
}

/// Cues a brief quotes.
pub(crate) const STORY_CUES: usize = 3;

/// The state of one conversation.
#[derive(Debug)]
pub(crate) struct Conversation {
    pub context: Context,
    pub story: Story,
    /// A customer cue nudged before any agent spoke, waiting for the first agent to claim it.
    pub unclaimed: Option<Box<Nudge>>,
    /// The open follow-up promise, if any. One per conversation: a newer promise supersedes it.
    pub promise: Option<Box<Promise>>,
}

impl Conversation {
    pub fn new(at: Timestamp) -> Conversation {
        Conversation {
            context: Context::new(at),
            story: Story::default(),
            unclaimed: None,
            promise: None,
        }
    }
}

/// A promise to get back to the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    /// Unique within one engine; ties schedule entries to the promise they were made for.
    pub(crate) id: u64,
    pub agent: UserId,
    pub customer: Option<UserId>,
    pub rule: Arc<str>,
    /// The agent's message that made the promise: its identity across restarts.
    pub source: MessageRef,
    pub made_at: Timestamp,
    pub due: Due,
    /// The promise's own words, and a short excerpt of its message, for the reminder.
    pub evidence: String,
    pub quote: String,
    /// The heads-up before the due time has gone out.
    pub reminded: bool,
    /// The overdue notice has gone out (or the customer chased it first).
    pub overdue: bool,
}

impl Promise {
    /// A promise rebuilt from storage, for [`crate::Engine::restore`] and reminders.
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        agent: UserId,
        customer: Option<UserId>,
        rule: Arc<str>,
        source: MessageRef,
        made_at: Timestamp,
        due: Due,
        evidence: String,
        quote: String,
    ) -> Promise {
        Promise {
            id: 0,
            agent,
            customer,
            rule,
            source,
            made_at,
            due,
            evidence,
            quote,
            reminded: false,
            overdue: false,
        }
    }
}

/// What happened to a conversation's follow-up promise while reading a message, so an adapter
/// that keeps promises durably can record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromiseChange {
    /// A new promise. Any earlier open promise in the conversation was superseded or kept first.
    Made(Promise),
    /// The promise made by `source` was restated moments later with a new due time.
    Restated { source: MessageRef, due: Due },
    /// The agent came back to the conversation after the promise: it is kept.
    Kept { source: MessageRef, at: Timestamp },
    /// A newer promise replaced this one before it was kept.
    Superseded { source: MessageRef, at: Timestamp },
    /// The customer chased the promise before it fell due; the overdue notice went out now.
    Chased { source: MessageRef, at: Timestamp },
}

/// The next thing a promise is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The heads-up before the due time.
    Reminder,
    /// The notice at the due time.
    Overdue,
    /// The post to the team's coaching channel once it has been overdue for the grace period.
    Escalate,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reminder => "reminder",
            Step::Overdue => "overdue",
            Step::Escalate => "escalate",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Some(match s {
            "reminder" => Step::Reminder,
            "overdue" => Step::Overdue,
            "escalate" => Step::Escalate,
            _ => return None,
        })
    }
}

/// An entry in the time-ordered reminder schedule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub at: Timestamp,
    pub conversation: crate::ConversationId,
    pub promise: u64,
    pub stage: Step,
}
