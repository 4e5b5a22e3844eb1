//! The engine's vocabulary: who said what, where and when, and what Backstop tells the agent.
//!
//! Pure data: no I/O, no clock. Adapters (replay, the Discord bot) build [`Message`]s from their own
//! events and turn [`Nudge`]s into output.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Identifies one conversation: a Discord thread or channel, or a transcript's `conversation` field.
///
/// Cheap to clone (shared string), because it is stored in state, schedules and every nudge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(Arc<str>);

/// Identifies a participant (an agent or a customer) by the adapter's user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Arc<str>);

macro_rules! string_id {
    ($t:ident) => {
        impl $t {
            pub fn new(id: &str) -> Self {
                Self(Arc::from(id))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<&str> for $t {
            fn from(id: &str) -> Self {
                Self::new(id)
            }
        }
    };
}
string_id!(ConversationId);
string_id!(UserId);

/// Where a message came from, in the adapter's terms: the 1-based input line for replay, the
/// Discord message id for the bot. The engine only carries it through to nudges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageRef(pub u64);

/// Which side of the conversation wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
        }
    }
}

/// One chat message as the engine sees it. Borrowed, so feeding the engine allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub conversation: &'a str,
    pub author: &'a str,
    pub role: Role,
    pub text: &'a str,
    /// When the message was written. The engine never reads a clock: this is its only notion of now.
    pub at: Timestamp,
    pub source: MessageRef,
}

/// What a nudge is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NudgeKind {
    /// The customer says we already let them down: apologize for exactly that first.
    PriorFailure,
    /// The agent explained, excused or blamed before apologizing (or erased the apology).
    ExplainBeforeApology,
    /// The agent promised to get back to the customer; Backstop noted it.
    FollowUpPromised,
    /// The promise had no time: tell the customer when.
    FollowUpNoTimeframe,
    /// A promise is due soon and nobody has followed up yet.
    FollowUpReminder,
    /// A promise is past due (or the customer is already chasing it).
    FollowUpOverdue,
    /// The first reply to a problem asked for details before owning it.
    DetailsBeforeOwnership,
    /// The apology for a failure the customer named says sorry for nothing in particular.
    GenericApology,
    /// The customer was sent elsewhere without who, how and what happens next.
    ColdTransfer,
    /// A second agent takes over: what the customer has been through, before they write.
    HandoffBrief,
}

impl NudgeKind {
    pub const ALL: [NudgeKind; 10] = [
        NudgeKind::PriorFailure,
        NudgeKind::ExplainBeforeApology,
        NudgeKind::FollowUpPromised,
        NudgeKind::FollowUpNoTimeframe,
        NudgeKind::FollowUpReminder,
        NudgeKind::FollowUpOverdue,
        NudgeKind::DetailsBeforeOwnership,
        NudgeKind::GenericApology,
        NudgeKind::ColdTransfer,
        NudgeKind::HandoffBrief,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NudgeKind::PriorFailure => "prior_failure",
            NudgeKind::ExplainBeforeApology => "explain_before_apology",
            NudgeKind::FollowUpPromised => "follow_up_promised",
            NudgeKind::FollowUpNoTimeframe => "follow_up_no_timeframe",
            NudgeKind::FollowUpReminder => "follow_up_reminder",
            NudgeKind::FollowUpOverdue => "follow_up_overdue",
            NudgeKind::DetailsBeforeOwnership => "details_before_ownership",
            NudgeKind::GenericApology => "generic_apology",
            NudgeKind::ColdTransfer => "cold_transfer",
            NudgeKind::HandoffBrief => "handoff_brief",
        }
    }

    pub fn parse(s: &str) -> Option<NudgeKind> {
        NudgeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The categories a nudge of this kind can carry.
    pub fn categories(self) -> &'static [Category] {
        match self {
            NudgeKind::PriorFailure => &Category::PRIOR_FAILURE,
            NudgeKind::ExplainBeforeApology => &Category::EXPLAIN,
            NudgeKind::FollowUpOverdue => &Category::FOLLOW_UP_OVERDUE,
            NudgeKind::ColdTransfer => &Category::COLD_TRANSFER,
            _ => &[],
        }
    }
}

impl fmt::Display for NudgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The finer reason behind a nudge, for kinds that have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    // Prior-failure cues.
    NotReceived,
    StillWaiting,
    MissedCallback,
    RepeatContact,
    SelfServiceFailed,
    AutomatedSystem,
    Transferred,
    // Explaining before apologizing.
    BeforeApology,
    InsteadOfApology,
    ApologyErased,
    // Follow-up overdue notices.
    /// The customer is asking after the promised follow-up before it is even due.
    Chased,
    // Cold transfers: the first part of a warm hand-off that is missing.
    /// No named team or person.
    NoDestination,
    /// No way to reach them (number, link, hours) and no "I'm connecting you now".
    NoRoute,
    /// Nothing on what happens next, and the details don't travel with the customer.
    NoNextStep,
}

impl Category {
    pub const PRIOR_FAILURE: [Category; 7] = [
        Category::NotReceived,
        Category::StillWaiting,
        Category::MissedCallback,
        Category::RepeatContact,
        Category::SelfServiceFailed,
        Category::AutomatedSystem,
        Category::Transferred,
    ];
    pub const EXPLAIN: [Category; 3] = [
        Category::BeforeApology,
        Category::InsteadOfApology,
        Category::ApologyErased,
    ];
    pub const FOLLOW_UP_OVERDUE: [Category; 1] = [Category::Chased];
    pub const COLD_TRANSFER: [Category; 3] = [Category::NoDestination, Category::NoRoute, Category::NoNextStep];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::NotReceived => "not_received",
            Category::StillWaiting => "still_waiting",
            Category::MissedCallback => "missed_callback",
            Category::RepeatContact => "repeat_contact",
            Category::SelfServiceFailed => "self_service_failed",
            Category::AutomatedSystem => "automated_system",
            Category::Transferred => "transferred",
            Category::BeforeApology => "before_apology",
            Category::InsteadOfApology => "instead_of_apology",
            Category::ApologyErased => "apology_erased",
            Category::Chased => "chased",
            Category::NoDestination => "no_destination",
            Category::NoRoute => "no_route",
            Category::NoNextStep => "no_next_step",
        }
    }

    /// A short human label, for coaching text.
    pub fn label(self) -> &'static str {
        match self {
            Category::NotReceived => "something never arrived",
            Category::StillWaiting => "still waiting",
            Category::MissedCallback => "a promised call or reply never came",
            Category::RepeatContact => "contacting us again",
            Category::SelfServiceFailed => "self-service didn't work",
            Category::AutomatedSystem => "stuck in an automated system",
            Category::Transferred => "passed around between people",
            Category::BeforeApology => "explanation came before the apology",
            Category::InsteadOfApology => "explanation instead of an apology",
            Category::ApologyErased => "apology taken back with \"but\"",
            Category::Chased => "customer chased before it was due",
            Category::NoDestination => "didn't say which team or person",
            Category::NoRoute => "didn't say how to reach them",
            Category::NoNextStep => "didn't say what happens next",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::PRIOR_FAILURE
            .into_iter()
            .chain(Category::EXPLAIN)
            .chain(Category::FOLLOW_UP_OVERDUE)
            .chain(Category::COLD_TRANSFER)
            .find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a promise's due time was worked out, so coaching can say "you said tomorrow".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from", content = "words")]
pub enum DueSource {
    /// The agent named a time; the words they used.
    Stated(String),
    /// No time was given: the configured default applies.
    Default,
}

/// When a promised follow-up is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub at: Timestamp,
    pub source: DueSource,
}

/// One piece of coaching for one agent, with everything an adapter needs to deliver and record it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nudge {
    pub kind: NudgeKind,
    pub category: Option<Category>,
    pub conversation: ConversationId,
    /// Who to coach; `None` when no agent has spoken in the conversation yet.
    pub agent: Option<UserId>,
    /// The customer the nudge is about, when known.
    pub customer: Option<UserId>,
    /// Id of the rule that fired (for reminders: the rule that recognised the promise).
    pub rule: Arc<str>,
    /// The words that triggered the rule, as written.
    pub evidence: String,
    /// A short excerpt of the message the nudge is about.
    pub quote: String,
    /// When the nudge is due to be delivered.
    pub at: Timestamp,
    /// For follow-up nudges, when the promise is due.
    pub due: Option<Due>,
    /// The message that caused the nudge (for reminders: the promise).
    pub source: MessageRef,
    pub title: String,
    /// The rendered coaching text, phrases included.
    pub text: String,
    /// The suggested phrases on their own, for adapters that lay them out separately.
    pub phrases: Vec<String>,
}

/// Why a detection did not become a nudge of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppressed {
    /// The customer repeated a cue of the same category with no agent reply since its nudge.
    Repeated,
    /// The customer is chasing the open promise: the agent got the overdue notice instead.
    ChasesPromise,
    /// The same kind already nudged this agent in this conversation within the cooldown.
    Cooldown,
    /// The promise restates the open one moments after it: its time was updated.
    Restated,
}

impl Suppressed {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppressed::Repeated => "repeated",
            Suppressed::ChasesPromise => "chases_promise",
            Suppressed::Cooldown => "cooldown",
            Suppressed::Restated => "restated",
        }
    }
}

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that meets a detection's definition (`docs/labelling.md`), whether or not the nudge
/// policy turned it into a nudge. Detections and nudges are measured apart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub kind: NudgeKind,
    pub category: Option<Category>,
    pub conversation: ConversationId,
    pub source: MessageRef,
    pub at: Timestamp,
    /// The rule that fired, or `model` when the learned layer found it alone.
    pub rule: Arc<str>,
    /// The words it rests on, as written.
    pub evidence: String,
    /// Why no nudge went out for it; `None` when it was nudged.
    pub suppressed: Option<Suppressed>,
    /// The model's probability, when the learned layer found it.
    pub score: Option<f32>,
    /// For model detections while explaining: the features that weighed most, with weights.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<(String, f32)>,
}
