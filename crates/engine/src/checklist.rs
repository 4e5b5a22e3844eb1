//! The recovery checklist: for a conversation where the customer said the company already failed
//! them, which steps of the service-recovery craft the agents took. Leads read team rates from it
//! and agents their own; it is a record, not a nudge.
//!
//! The steps are judged over agent messages after the first failure cue, by the definitions in
//! `docs/labelling.md`. Each step only moves one way: once done it stays done, and the two steps
//! about order (`before_explaining`, `owned_first`) are settled by the first message that decides
//! them.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::UserId;

/// One step of the recovery checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStep {
    /// An agent apologized and did not take it back in the same message.
    Apologized,
    /// An apology named what went wrong.
    Specific,
    /// The first apology came before any explanation or excuse.
    BeforeExplaining,
    /// The first reply owned the problem before asking for the customer's details.
    OwnedFirst,
    /// An agent said what happens next, and when.
    NextStep,
    /// An agent thanked the customer.
    Thanked,
}

impl RecoveryStep {
    pub const ALL: [RecoveryStep; 6] = [
        RecoveryStep::Apologized,
        RecoveryStep::Specific,
        RecoveryStep::BeforeExplaining,
        RecoveryStep::OwnedFirst,
        RecoveryStep::NextStep,
        RecoveryStep::Thanked,
    ];

    /// The step as labelled in transcripts and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryStep::Apologized => "apologized",
            RecoveryStep::Specific => "specific",
            RecoveryStep::BeforeExplaining => "before_explaining",
            RecoveryStep::OwnedFirst => "owned_first",
            RecoveryStep::NextStep => "next_step",
            RecoveryStep::Thanked => "thanked",
        }
    }

    pub fn parse(s: &str) -> Option<RecoveryStep> {
        RecoveryStep::ALL.into_iter().find(|step| step.as_str() == s)
    }

    /// How leads read the step in digests and reports.
    pub fn describe(self) -> &'static str {
        match self {
            RecoveryStep::Apologized => "apologized",
            RecoveryStep::Specific => "apologized for the failure by name",
            RecoveryStep::BeforeExplaining => "apologized before explaining",
            RecoveryStep::OwnedFirst => "owned it before asking for details",
            RecoveryStep::NextStep => "said what happens next and when",
            RecoveryStep::Thanked => "thanked the customer",
        }
    }
}

impl fmt::Display for RecoveryStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The checklist of one conversation. It holds no message text, so it is stored with the
/// conversation's context and survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checklist {
    /// When the customer's first failure cue arrived.
    pub opened: Timestamp,
    /// The agent who answered the cue first: the checklist counts towards their figures.
    pub agent: Option<UserId>,
    /// Agent messages since the cue. A checklist with none has nothing to judge yet.
    pub replies: u32,
    /// The steps done so far, in [`RecoveryStep::ALL`] order.
    done: [bool; 6],
    /// An excuse came before any apology, so `before_explaining` can no longer be done.
    excused_first: bool,
}

/// What one agent message shows, as the engine read it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplyFacts {
    /// An apology that stands (not taken back in the message).
    pub apology: bool,
    /// The apology names what went wrong.
    pub names_failure: bool,
    /// A reason, excuse or blame offered before or instead of an apology.
    pub excuse: bool,
    /// Asks for the customer's details with no ownership and no apology.
    pub details_unowned: bool,
    /// Says what will happen and when.
    pub next_step: bool,
    pub thanks: bool,
}

impl Checklist {
    pub fn new(opened: Timestamp) -> Checklist {
        Checklist {
            opened,
            agent: None,
            replies: 0,
            done: [false; 6],
            excused_first: false,
        }
    }

    pub fn done(&self, step: RecoveryStep) -> bool {
        self.done[step as usize]
    }

    /// The steps done, in order.
    pub fn steps_done(&self) -> Vec<RecoveryStep> {
        RecoveryStep::ALL.into_iter().filter(|s| self.done(*s)).collect()
    }

    fn mark(&mut self, step: RecoveryStep) {
        self.done[step as usize] = true;
    }

    /// Takes in one agent message after the cue. Returns whether anything changed.
    pub(crate) fn reply(&mut self, agent: &str, facts: ReplyFacts) -> bool {
        let before = self.clone();
        self.replies = self.replies.saturating_add(1);
        if self.agent.is_none() {
            self.agent = Some(UserId::new(agent));
        }
        if self.replies == 1 && !facts.details_unowned {
            self.mark(RecoveryStep::OwnedFirst);
        }
        let first_apology = facts.apology && !self.done(RecoveryStep::Apologized);
        if facts.excuse && !self.done(RecoveryStep::Apologized) {
            self.excused_first = true;
        }
        if facts.apology {
            self.mark(RecoveryStep::Apologized);
            if facts.names_failure {
                self.mark(RecoveryStep::Specific);
            }
            if first_apology && !self.excused_first {
                self.mark(RecoveryStep::BeforeExplaining);
            }
        }
        if facts.next_step {
            self.mark(RecoveryStep::NextStep);
        }
        if facts.thanks {
            self.mark(RecoveryStep::Thanked);
        }
        *self != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        "2026-11-30T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_full_recovery_ticks_every_step() {
        let mut c = Checklist::new(at());
        let all = ReplyFacts {
            apology: true,
            names_failure: true,
            excuse: false,
            details_unowned: false,
            next_step: true,
            thanks: true,
        };
        assert!(c.reply("a1", all));
        assert_eq!(c.steps_done(), RecoveryStep::ALL.to_vec());
        assert_eq!(c.agent.as_ref().map(UserId::as_str), Some("a1"));
        // A second agent's message changes the count but not whose checklist it is.
        assert!(c.reply("a2", ReplyFacts::default()));
        assert_eq!(c.agent.as_ref().map(UserId::as_str), Some("a1"));
        assert_eq!(c.replies, 2);
    }

    #[test]
    fn order_steps_are_settled_by_the_first_message_that_decides_them() {
        let mut c = Checklist::new(at());
        c.reply(
            "a1",
            ReplyFacts {
                details_unowned: true,
                excuse: true,
                ..ReplyFacts::default()
            },
        );
        c.reply(
            "a1",
            ReplyFacts {
                apology: true,
                ..ReplyFacts::default()
            },
        );
        assert_eq!(c.steps_done(), vec![RecoveryStep::Apologized]);
        // An excuse after the apology does not undo it.
        let mut d = Checklist::new(at());
        d.reply(
            "a1",
            ReplyFacts {
                apology: true,
                ..ReplyFacts::default()
            },
        );
        d.reply(
            "a1",
            ReplyFacts {
                excuse: true,
                ..ReplyFacts::default()
            },
        );
        assert_eq!(
            d.steps_done(),
            vec![
                RecoveryStep::Apologized,
                RecoveryStep::BeforeExplaining,
                RecoveryStep::OwnedFirst
            ]
        );
    }

    #[test]
    fn steps_read_back_from_their_names() {
        for step in RecoveryStep::ALL {
            assert_eq!(RecoveryStep::parse(step.as_str()), Some(step));
        }
        assert_eq!(RecoveryStep::parse("apologised"), None);
    }
}
