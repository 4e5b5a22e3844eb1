//! What the engine remembers per conversation, kept small: it is multiplied by every live
//! conversation on a busy server.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::{MessageRef, Nudge, NudgeKind, UserId};
use super::promise::Promise;

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
