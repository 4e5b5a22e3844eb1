//! A follow-up promise and its whole life, in one place: the states it can be in, the steps a
//! scheduler sends, and which moves between states are allowed.
//!
//! Everything that moves a promise goes through here. The engine moves the promises it holds as
//! messages arrive (kept, superseded, restated, chased); the bot's durable scheduler and replay's
//! in-memory timeline both ask [`Promise::next_step`] what comes next and when, and move the
//! promise with [`Promise::advance`] once it went out; the store persists [`PromiseState`] as the
//! text of [`PromiseState::as_str`]. So a new state or a new rule for timing is one change here,
//! and the live bot and replay cannot drift apart. Time is always an argument.
//!
//! ```text
//!            reminder             overdue              escalate
//!   open ─────────────▶ reminded ─────────▶ overdue ─────────────▶ escalated
//!    │ ▲                                      ▲
//!    │ └── restate (from any open state)      │ overdue: due sooner than the lead,
//!    └────────────────────────────────────────┘ or the customer chased it first
//!
//!   snooze: any open state ──▶ snoozed, which then goes on as open does
//!   done, supersede: any open state ──▶ done | superseded, where the promise ends
//! ```

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;

use super::model::{Due, MessageRef, NudgeKind, UserId};
use super::settings::Settings;

/// Where a promise is in its life.
///
/// A snoozed promise carries no time of its own: snoozing moves the promise's due time, which
/// is the one place the deadline is kept (a second copy in the state could disagree with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PromiseState {
    /// Made; nothing sent yet.
    Open,
    /// The heads-up went out.
    Reminded,
    /// Past due: the overdue notice went out (or the customer chased it).
    Overdue,
    /// Still open after the grace period: the team was told.
    Escalated,
    /// The agent pushed it back; waiting for the new time.
    Snoozed,
    /// Kept: the agent pressed Done or came back to the conversation.
    Done,
    /// A newer promise in the same conversation replaced it.
    Superseded,
}

/// A move that [`PromiseState`] refused, and the state it was refused in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a promise that is {from} cannot {attempted}")]
pub struct Refused {
    pub from: PromiseState,
    pub attempted: Move,
}

/// A move a promise can be asked to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// A scheduled step went out.
    Sent(Step),
    Snooze,
    Restate,
    Done,
    Supersede,
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Move::Sent(step) => write!(f, "have its {} sent", step.as_str()),
            Move::Snooze => f.write_str("be snoozed"),
            Move::Restate => f.write_str("be restated"),
            Move::Done => f.write_str("be done"),
            Move::Supersede => f.write_str("be superseded"),
        }
    }
}

impl fmt::Display for PromiseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PromiseState {
    /// Every state, open ones first.
    pub const ALL: [PromiseState; 7] = [
        PromiseState::Open,
        PromiseState::Reminded,
        PromiseState::Overdue,
        PromiseState::Escalated,
        PromiseState::Snoozed,
        PromiseState::Done,
        PromiseState::Superseded,
    ];

    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            PromiseState::Open => "open",
            PromiseState::Reminded => "reminded",
            PromiseState::Overdue => "overdue",
            PromiseState::Escalated => "escalated",
            PromiseState::Snoozed => "snoozed",
            PromiseState::Done => "done",
            PromiseState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<PromiseState> {
        PromiseState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Still owed to the customer: not done and not replaced.
    pub fn is_open(self) -> bool {
        !matches!(self, PromiseState::Done | PromiseState::Superseded)
    }

    /// The overdue notice has gone out (or the customer chased it first).
    pub fn is_overdue(self) -> bool {
        matches!(self, PromiseState::Overdue | PromiseState::Escalated)
    }

    /// The state once `step` has gone out. A heads-up goes out only before anything else has; the
    /// overdue notice at most once, heads-up or not; the team is told only after the agent had
    /// the overdue notice.
    pub fn advance(self, step: Step) -> Result<PromiseState, Refused> {
        use PromiseState::*;
        match (self, step) {
            (Open | Snoozed, Step::Reminder) => Ok(Reminded),
            (Open | Snoozed | Reminded, Step::Overdue) => Ok(Overdue),
            (Overdue, Step::Escalate) => Ok(Escalated),
            _ => Err(self.refuse(Move::Sent(step))),
        }
    }

    /// The state once the agent pushed the promise back (from any open state, snoozed included).
    pub fn snooze(self) -> Result<PromiseState, Refused> {
        self.open_to(PromiseState::Snoozed, Move::Snooze)
    }

    /// The state once the agent restated the promise with a new time: it starts over.
    pub fn restate(self) -> Result<PromiseState, Refused> {
        self.open_to(PromiseState::Open, Move::Restate)
    }

    /// The state once the promise was kept.
    pub fn done(self) -> Result<PromiseState, Refused> {
        self.open_to(PromiseState::Done, Move::Done)
    }

    /// The state once a newer promise replaced this one.
    pub fn supersede(self) -> Result<PromiseState, Refused> {
        self.open_to(PromiseState::Superseded, Move::Supersede)
    }

    /// `to`, if this state is still open: a kept or replaced promise never moves again.
    fn open_to(self, to: PromiseState, attempted: Move) -> Result<PromiseState, Refused> {
        if self.is_open() {
            Ok(to)
        } else {
            Err(self.refuse(attempted))
        }
    }

    fn refuse(self, attempted: Move) -> Refused {
        Refused { from: self, attempted }
    }
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

    /// The nudge the agent gets for this step; the escalation goes to the team instead.
    pub fn nudge_kind(self) -> Option<NudgeKind> {
        match self {
            Step::Reminder => Some(NudgeKind::FollowUpReminder),
            Step::Overdue => Some(NudgeKind::FollowUpOverdue),
            Step::Escalate => None,
        }
    }
}

/// A promise to get back to the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    pub agent: UserId,
    pub customer: Option<UserId>,
    pub rule: Arc<str>,
    /// The agent's message that made the promise: its identity across restarts.
    pub source: MessageRef,
    pub made_at: Timestamp,
    /// When it falls due. Moved only by [`Promise::snooze`] and [`Promise::restate`], which
    /// also set the state to go with it.
    due: Due,
    /// The promise's own words, and a short excerpt of its message, for the reminder.
    pub evidence: String,
    pub quote: String,
    /// Moved only by the transitions below, so every change is one the state machine allows.
    state: PromiseState,
}

impl Promise {
    /// A new promise, open and with nothing sent yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
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
            agent,
            customer,
            rule,
            source,
            made_at,
            due,
            evidence,
            quote,
            state: PromiseState::Open,
        }
    }

    /// This promise as it was stored in `state`: restoring a promise is not a move, so any state
    /// is taken as it is.
    pub fn in_state(mut self, state: PromiseState) -> Promise {
        self.state = state;
        self
    }

    pub fn state(&self) -> PromiseState {
        self.state
    }

    pub fn due(&self) -> &Due {
        &self.due
    }

    /// The overdue notice has gone out (or the customer chased it first).
    pub fn is_overdue(&self) -> bool {
        self.state.is_overdue()
    }

    /// The next step this promise waits for and when, or `None` once nothing more will go out.
    ///
    /// `now` is when the last step went out. The team is told `escalate_after` after the overdue
    /// notice actually reached the agent: after an outage the late notice and the escalation do
    /// not go out together, and the agent still gets their chance first.
    pub fn next_step(&self, settings: &Settings, now: Timestamp) -> Option<(Timestamp, Step)> {
        match self.state {
            PromiseState::Open | PromiseState::Snoozed => {
                let remind_at = self.due.at.checked_sub(settings.reminder_lead).unwrap_or(self.due.at);
                // A promise due sooner than the lead gets no heads-up, only the overdue notice.
                if remind_at > self.made_at {
                    Some((remind_at, Step::Reminder))
                } else {
                    Some((self.due.at, Step::Overdue))
                }
            }
            PromiseState::Reminded => Some((self.due.at, Step::Overdue)),
            PromiseState::Overdue => {
                let noticed = self.due.at.max(now);
                let at = noticed.checked_add(settings.escalate_after).unwrap_or(noticed);
                Some((at, Step::Escalate))
            }
            PromiseState::Escalated | PromiseState::Done | PromiseState::Superseded => None,
        }
    }

    /// The step that actually goes out at `at` for a scheduled `step`: a heads-up whose time has
    /// passed the due time (the bot was down) would say "coming up" about something already
    /// late, so the overdue notice goes instead.
    pub fn sending(&self, step: Step, at: Timestamp) -> Step {
        match step {
            Step::Reminder if at >= self.due.at => Step::Overdue,
            step => step,
        }
    }

    /// Records that `step` went out.
    pub fn advance(&mut self, step: Step) -> Result<(), Refused> {
        self.state = self.state.advance(step)?;
        Ok(())
    }

    /// Pushes the promise back to `until`; its heads-up and overdue notice go out again.
    pub fn snooze(&mut self, until: Timestamp) -> Result<(), Refused> {
        self.state = self.state.snooze()?;
        self.due.at = until;
        Ok(())
    }

    /// The agent said it again with a new time: one promise, newest time, started over.
    pub fn restate(&mut self, due: Due) -> Result<(), Refused> {
        self.state = self.state.restate()?;
        self.due = due;
        Ok(())
    }

    /// The promise was kept.
    pub fn done(&mut self) -> Result<(), Refused> {
        self.state = self.state.done()?;
        Ok(())
    }

    /// A newer promise replaced this one.
    pub fn supersede(&mut self) -> Result<(), Refused> {
        self.state = self.state.supersede()?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::PromiseState::*;
    use super::*;
    use crate::model::DueSource;

    /// Monday 2026-11-23 at `hm` UTC.
    fn t(hm: &str) -> Timestamp {
        format!("2026-11-23T{hm}:00Z").parse().unwrap()
    }

    /// A promise made at 14:00, due at `due`.
    fn promise(due: &str) -> Promise {
        Promise::new(
            UserId::new("ana"),
            Some(UserId::new("cust")),
            Arc::from("r"),
            MessageRef(1),
            t("14:00"),
            Due {
                at: t(due),
                source: DueSource::Stated("by 3pm".into()),
            },
            "I'll call you back by 3pm".into(),
            "I'll call you back by 3pm".into(),
        )
    }

    #[test]
    fn names_round_trip_and_only_done_and_superseded_are_closed() {
        for state in PromiseState::ALL {
            assert_eq!(PromiseState::parse(state.as_str()), Some(state));
            assert_eq!(state.is_open(), !matches!(state, Done | Superseded));
        }
        assert_eq!(PromiseState::parse("lapsed"), None);
        assert!(Overdue.is_overdue() && Escalated.is_overdue());
        assert!(!Open.is_overdue() && !Reminded.is_overdue() && !Snoozed.is_overdue());
    }

    #[test]
    fn steps_move_a_promise_forward_only() {
        assert_eq!(Open.advance(Step::Reminder), Ok(Reminded));
        assert_eq!(Snoozed.advance(Step::Reminder), Ok(Reminded));
        assert_eq!(Open.advance(Step::Overdue), Ok(Overdue), "due sooner than the lead");
        assert_eq!(Reminded.advance(Step::Overdue), Ok(Overdue));
        assert_eq!(Snoozed.advance(Step::Overdue), Ok(Overdue));
        assert_eq!(Overdue.advance(Step::Escalate), Ok(Escalated));
    }

    #[test]
    fn steps_out_of_order_or_twice_are_refused() {
        let refused = |from: PromiseState, step: Step| {
            assert_eq!(
                from.advance(step),
                Err(Refused {
                    from,
                    attempted: Move::Sent(step)
                }),
                "{from} then {step:?}"
            )
        };
        refused(Reminded, Step::Reminder);
        refused(Overdue, Step::Reminder);
        refused(Escalated, Step::Reminder);
        refused(Overdue, Step::Overdue);
        refused(Escalated, Step::Overdue);
        // The team hears only after the agent had the overdue notice.
        refused(Open, Step::Escalate);
        refused(Reminded, Step::Escalate);
        refused(Snoozed, Step::Escalate);
        refused(Escalated, Step::Escalate);
        for step in [Step::Reminder, Step::Overdue, Step::Escalate] {
            refused(Done, step);
            refused(Superseded, step);
        }
    }

    #[test]
    fn open_promises_can_be_snoozed_restated_kept_or_replaced_and_closed_ones_cannot() {
        for from in [Open, Reminded, Overdue, Escalated, Snoozed] {
            assert_eq!(from.snooze(), Ok(Snoozed));
            assert_eq!(from.restate(), Ok(Open));
            assert_eq!(from.done(), Ok(Done));
            assert_eq!(from.supersede(), Ok(Superseded));
        }
        for from in [Done, Superseded] {
            assert_eq!(from.snooze().unwrap_err().attempted, Move::Snooze);
            assert_eq!(from.restate().unwrap_err().attempted, Move::Restate);
            assert_eq!(from.done().unwrap_err().attempted, Move::Done);
            assert_eq!(from.supersede().unwrap_err().attempted, Move::Supersede);
        }
    }

    #[test]
    fn a_refusal_says_what_and_where() {
        assert_eq!(
            Done.advance(Step::Reminder).unwrap_err().to_string(),
            "a promise that is done cannot have its reminder sent"
        );
        assert_eq!(
            Superseded.snooze().unwrap_err().to_string(),
            "a promise that is superseded cannot be snoozed"
        );
    }

    #[test]
    fn the_timeline_runs_heads_up_overdue_escalation_then_nothing() {
        let s = Settings::default();
        let mut p = promise("15:00");
        assert_eq!(p.next_step(&s, t("14:00")), Some((t("14:45"), Step::Reminder)));
        p.advance(Step::Reminder).unwrap();
        assert_eq!(p.next_step(&s, t("14:45")), Some((t("15:00"), Step::Overdue)));
        p.advance(Step::Overdue).unwrap();
        assert_eq!(p.next_step(&s, t("15:00")), Some((t("15:30"), Step::Escalate)));
        p.advance(Step::Escalate).unwrap();
        assert_eq!(p.next_step(&s, t("15:30")), None);
        assert_eq!(p.state(), Escalated);
    }

    #[test]
    fn escalation_is_timed_from_when_the_overdue_notice_went_out() {
        let s = Settings::default();
        let mut p = promise("15:00");
        p.advance(Step::Overdue).unwrap();
        // Two hours late (the bot was down): the agent still gets the full window first.
        assert_eq!(p.next_step(&s, t("17:00")), Some((t("17:30"), Step::Escalate)));
        // Chased before the due time: timed from the due time, not from the chase.
        assert_eq!(p.next_step(&s, t("14:20")), Some((t("15:30"), Step::Escalate)));
    }

    #[test]
    fn a_promise_due_sooner_than_the_lead_waits_only_for_the_overdue() {
        let p = promise("14:10");
        assert_eq!(
            p.next_step(&Settings::default(), t("14:00")),
            Some((t("14:10"), Step::Overdue))
        );
    }

    #[test]
    fn closed_promises_wait_for_nothing() {
        let s = Settings::default();
        let mut kept = promise("15:00");
        kept.done().unwrap();
        assert_eq!(kept.next_step(&s, t("14:00")), None);
        assert!(kept.advance(Step::Reminder).is_err());
        assert!(kept.snooze(t("18:00")).is_err());
        assert_eq!(kept.due().at, t("15:00"), "a refused snooze moves nothing");
        let mut replaced = promise("15:00");
        replaced.supersede().unwrap();
        assert_eq!(replaced.next_step(&s, t("14:00")), None);
        assert!(replaced.done().is_err());
    }

    #[test]
    fn snoozing_moves_the_due_time_and_rearms_the_heads_up() {
        let s = Settings::default();
        let mut p = promise("15:00");
        p.advance(Step::Reminder).unwrap();
        p.advance(Step::Overdue).unwrap();
        p.snooze(t("16:00")).unwrap();
        assert_eq!((p.state(), p.due().at), (Snoozed, t("16:00")));
        assert_eq!(p.next_step(&s, t("15:10")), Some((t("15:45"), Step::Reminder)));
        p.snooze(t("17:00")).unwrap();
        assert_eq!(p.next_step(&s, t("15:10")), Some((t("16:45"), Step::Reminder)));
    }

    #[test]
    fn restating_starts_the_promise_over_at_its_new_time() {
        let mut p = promise("15:00");
        p.advance(Step::Reminder).unwrap();
        let due = Due {
            at: t("17:00"),
            source: DueSource::Stated("by 5pm".into()),
        };
        p.restate(due.clone()).unwrap();
        assert_eq!((p.state(), p.due()), (Open, &due));
        assert_eq!(
            p.next_step(&Settings::default(), t("14:05")),
            Some((t("16:45"), Step::Reminder))
        );
    }

    #[test]
    fn a_late_heads_up_goes_out_as_the_overdue_notice() {
        let p = promise("15:00");
        assert_eq!(p.sending(Step::Reminder, t("14:45")), Step::Reminder);
        assert_eq!(p.sending(Step::Reminder, t("15:00")), Step::Overdue);
        assert_eq!(p.sending(Step::Escalate, t("18:00")), Step::Escalate);
    }

    #[test]
    fn settings_change_the_timing() {
        let s = Settings {
            reminder_lead: SignedDuration::from_hours(1),
            escalate_after: SignedDuration::from_hours(2),
            ..Settings::default()
        };
        let mut p = promise("16:00");
        assert_eq!(p.next_step(&s, t("14:00")), Some((t("15:00"), Step::Reminder)));
        p.advance(Step::Overdue).unwrap();
        assert_eq!(p.next_step(&s, t("16:00")), Some((t("18:00"), Step::Escalate)));
    }
}
