//! What the engine remembers per conversation, kept small: it is multiplied by every live
//! conversation on a busy server.

use std::sync::Arc;

use jiff::Timestamp;

use super::model::{Due, MessageRef, Nudge, NudgeKind, UserId};

/// The kinds with a cooldown, in the order of [`Conversation::last_fired`].
pub(crate) const COOLED: [NudgeKind; 3] = [
    NudgeKind::PriorFailure,
    NudgeKind::ExplainBeforeApology,
    NudgeKind::FollowUpPromised,
];

/// The state of one conversation.
#[derive(Debug)]
pub(crate) struct Conversation {
    pub last_agent: Option<UserId>,
    pub last_customer: Option<UserId>,
    pub last_message: Timestamp,
    /// A cue or complaint the agent has not apologized for yet.
    pub problem_open: bool,
    /// The agent has apologized at some point in this conversation.
    pub apologized: bool,
    /// The customer's latest message asked why.
    pub reason_requested: bool,
    /// When each cooled kind last fired here.
    pub last_fired: [Option<Timestamp>; COOLED.len()],
    /// A customer cue nudged before any agent spoke, waiting for the first agent to claim it.
    pub unclaimed: Option<Box<Nudge>>,
    /// The open follow-up promise, if any. One per conversation: a newer promise supersedes it.
    pub promise: Option<Box<Promise>>,
}

impl Conversation {
    pub fn new(at: Timestamp) -> Conversation {
        Conversation {
            last_agent: None,
            last_customer: None,
            last_message: at,
            problem_open: false,
            apologized: false,
            reason_requested: false,
            last_fired: [None; COOLED.len()],
            unclaimed: None,
            promise: None,
        }
    }
}

/// A promise to get back to the customer.
#[derive(Debug, Clone)]
pub(crate) struct Promise {
    /// Unique within one engine; ties schedule entries to the promise they were made for.
    pub id: u64,
    pub agent: UserId,
    pub customer: Option<UserId>,
    pub rule: Arc<str>,
    pub source: MessageRef,
    pub made_at: Timestamp,
    pub due: Due,
    /// The promise's own words, and a short excerpt of its message, for the reminder.
    pub evidence: String,
    pub quote: String,
    pub reminded: bool,
    pub overdue: bool,
}

/// Which reminder a schedule entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Reminder,
    Overdue,
}

/// An entry in the time-ordered reminder schedule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub at: Timestamp,
    pub conversation: crate::engine::ConversationId,
    pub promise: u64,
    pub stage: Stage,
}
