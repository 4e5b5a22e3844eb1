//! Drives the engine over a transcript on the transcript's own clock.
//!
//! The clock is the messages' timestamps and never runs backwards: a message stamped earlier than
//! the one before it is taken to arrive at the later time. Before each message, reminders due by
//! then fire; idle conversations are swept as the clock passes.
//!
//! Reminders are timed by a [`Timeline`], replay's counterpart of the bot's durable scheduler:
//! both ask the engine what a promise waits for next and tell it when that went out, so the
//! same messages give the same heads-ups and overdue notices live and in replay.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::engine::{Checklist, ConversationId, Detection, Engine, MessageRef, Nudge, Step};
use crate::transcript::Record;

/// What feeding messages produced: the nudges delivered and every detection, nudged or not.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub nudges: Vec<Nudge>,
    pub detections: Vec<Detection>,
    /// Each conversation's recovery checklist as its latest change left it.
    pub checklists: BTreeMap<String, Checklist>,
    /// Nudges that reached an agent when they started typing, before their reply was sent: in
    /// one message's outcome, the first `before_reply` of `nudges`.
    pub before_reply: usize,
}

impl Outcome {
    fn extend(&mut self, other: Outcome) {
        self.nudges.extend(other.nudges);
        self.detections.extend(other.detections);
        self.checklists.extend(other.checklists);
        self.before_reply += other.before_reply;
    }
}

/// The heads-ups and overdue notices of the promises an engine holds, in time order: an
/// in-memory scheduler over [`Engine::next_step`].
///
/// Like the bot's scheduler, it keeps only (when, which promise, which step) and never removes an
/// entry early: when one comes up, it fires only if the promise is still held and still waits
/// for exactly that step at exactly that time, so a promise kept, replaced, restated, snoozed or
/// chased meanwhile simply drops its old entry. Escalations are left out: they go to the team's
/// coaching channel, which only the bot has.
#[derive(Debug, Default)]
pub struct Timeline {
    queue: BTreeSet<(Timestamp, ConversationId, MessageRef, Step)>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Books the next step of the promise `engine` holds in `conversation`, if any. Call it after
    /// anything that may have made or moved one; booking the same step twice keeps one entry.
    pub fn book(&mut self, engine: &Engine, conversation: &str) {
        let Some(promise) = engine.promise(conversation) else {
            return;
        };
        // `now` only times the escalation, which replay leaves out.
        if let Some((at, step)) = engine
            .next_step(&promise, promise.made_at)
            .filter(|(_, step)| step.nudge_kind().is_some())
        {
            self.queue
                .insert((at, ConversationId::new(conversation), promise.source, step));
        }
    }

    /// When the soonest booked step falls due (it may turn out stale when it comes up).
    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.first().map(|(at, ..)| *at)
    }

    /// Sends every step due at or before `now`, soonest first, each stamped with its scheduled
    /// time, and moves its promise on; a heads-up that leaves an overdue notice due by `now`
    /// sends that too.
    pub fn fire_due(&mut self, engine: &Engine, now: Timestamp) -> Vec<Nudge> {
        let mut out = Vec::new();
        while self.queue.first().is_some_and(|(at, ..)| *at <= now) {
            let Some((at, conversation, source, step)) = self.queue.pop_first() else {
                break;
            };
            let Some(promise) = engine
                .promise(conversation.as_str())
                .filter(|p| p.source == source && engine.next_step(p, at) == Some((at, step)))
            else {
                continue;
            };
            let Some(kind) = step.nudge_kind() else {
                continue;
            };
            if engine.promise_step_sent(conversation.as_str(), source, step) {
                out.push(engine.reminder(kind, &conversation, &promise, at));
                self.book(engine, conversation.as_str());
            }
        }
        out
    }
}

/// A replay in progress.
#[derive(Debug)]
pub struct Replay<'e> {
    engine: &'e Engine,
    timeline: Timeline,
    clock: Option<Timestamp>,
    next_sweep: Option<Timestamp>,
}

impl<'e> Replay<'e> {
    pub fn new(engine: &'e Engine) -> Replay<'e> {
        Replay {
            engine,
            timeline: Timeline::new(),
            clock: None,
            next_sweep: None,
        }
    }

    /// The replay clock: the latest message time seen.
    pub fn clock(&self) -> Option<Timestamp> {
        self.clock
    }

    /// Feeds the message read from input line `line`; returns what its typing lead handed the
    /// agent, the reminders that fell due before it, then the nudges it caused, and its detections.
    pub fn feed(&mut self, line: u64, record: &Record) -> Outcome {
        let at = self.clock.map_or(record.ts, |c| c.max(record.ts));
        let mut nudges = Vec::new();
        let mut before_reply = 0;
        if let Some(started) = record.typing_started() {
            let started = self.clock.map_or(started, |c| c.max(started)).min(at);
            nudges = self.engine.typing(&record.conversation, &record.author, started);
            before_reply = nudges.len();
        }
        self.clock = Some(at);
        nudges.extend(self.timeline.fire_due(self.engine, at));
        self.sweep(at);
        let reading = self.engine.read(&record.message(at, line), false);
        if !reading.changes.is_empty() {
            self.timeline.book(self.engine, &record.conversation);
        }
        nudges.extend(reading.nudges);
        Outcome {
            nudges,
            detections: reading.detections,
            checklists: reading
                .checklist
                .map(|c| (record.conversation.clone(), c))
                .into_iter()
                .collect(),
            before_reply,
        }
    }

    /// Fires what falls due up to `until` (default: the last message's time).
    pub fn finish(&mut self, until: Option<Timestamp>) -> Vec<Nudge> {
        match until.or(self.clock) {
            Some(t) => self.timeline.fire_due(self.engine, t),
            None => Vec::new(),
        }
    }

    /// Forgets idle conversations a few times per idle period, so long replays stay small.
    fn sweep(&mut self, at: Timestamp) {
        let every = self.engine.settings().forget_idle_after / 4;
        match self.next_sweep {
            Some(next) if at < next => {}
            _ => {
                self.engine.forget_idle(at);
                self.next_sweep = at.checked_add(every).ok();
            }
        }
    }
}

/// Replays whole transcript records (numbered from line 1) and returns every nudge, reminders
/// included up to `until`, and every detection.
pub fn replay_all<'a>(
    engine: &Engine,
    records: impl IntoIterator<Item = (u64, &'a Record)>,
    until: Option<Timestamp>,
) -> Outcome {
    let mut replay = Replay::new(engine);
    let mut out = Outcome::default();
    for (line, record) in records {
        out.extend(replay.feed(line, record));
    }
    out.nudges.extend(replay.finish(until));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;
    use crate::engine::{Message, NudgeKind, PromiseState, Role};
    use crate::transcript::parse_line;

    /// Monday 2026-11-23 at `hm` UTC.
    fn t(hm: &str) -> Timestamp {
        format!("2026-11-23T{hm}:00Z").parse().unwrap()
    }

    /// Reads one message in conversation `c` as replay does: what fell due first, then the message.
    fn say(engine: &Engine, timeline: &mut Timeline, line: u64, role: Role, text: &str, at: Timestamp) -> Vec<Nudge> {
        let mut out = timeline.fire_due(engine, at);
        let author = if role == Role::Agent { "ana" } else { "cust" };
        let reading = engine.read(
            &Message {
                conversation: "c",
                author,
                role,
                text,
                at,
                source: MessageRef(line),
            },
            false,
        );
        timeline.book(engine, "c");
        out.extend(reading.nudges);
        out
    }

    fn kinds_and_times(nudges: &[Nudge]) -> Vec<(NudgeKind, Timestamp)> {
        nudges.iter().map(|n| (n.kind, n.at)).collect()
    }

    #[test]
    fn the_heads_up_and_the_overdue_notice_fire_once_each_at_their_scheduled_times() {
        let engine = Sources::default().engine().unwrap();
        let mut timeline = Timeline::new();
        say(
            &engine,
            &mut timeline,
            1,
            Role::Agent,
            "I'll call you back by 3pm with an update.",
            t("14:00"),
        );
        let promise = engine.promise("c").unwrap();
        let (remind_at, step) = engine.next_step(&promise, t("14:00")).unwrap();
        assert_eq!((timeline.next_due(), step), (Some(remind_at), Step::Reminder));
        assert!(timeline
            .fire_due(&engine, remind_at - jiff::SignedDuration::from_secs(1))
            .is_empty());
        let due = promise.due().at;
        // A clock that jumps past both sends both, in time order.
        let fired = timeline.fire_due(&engine, due + jiff::SignedDuration::from_hours(3));
        assert_eq!(
            kinds_and_times(&fired),
            [
                (NudgeKind::FollowUpReminder, remind_at),
                (NudgeKind::FollowUpOverdue, due)
            ]
        );
        assert_eq!(engine.promise("c").unwrap().state(), PromiseState::Overdue);
        // The escalation is the bot's: replay books nothing more.
        assert_eq!(timeline.next_due(), None);
        assert!(timeline
            .fire_due(&engine, due + jiff::SignedDuration::from_hours(48))
            .is_empty());
    }

    #[test]
    fn entries_of_a_promise_moved_or_kept_meanwhile_are_dropped_when_they_come_up() {
        let engine = Sources::default().engine().unwrap();
        let mut timeline = Timeline::new();
        say(
            &engine,
            &mut timeline,
            1,
            Role::Agent,
            "I'll call you back by 3pm with an update.",
            t("14:00"),
        );
        let old_due = engine.promise("c").unwrap().due().at;
        // Snoozed to later: the old heads-up and overdue times pass in silence.
        let until = old_due + jiff::SignedDuration::from_hours(2);
        assert!(engine.snooze("c", until));
        timeline.book(&engine, "c");
        assert!(timeline
            .fire_due(&engine, old_due + jiff::SignedDuration::from_mins(30))
            .is_empty());
        let fired = timeline.fire_due(&engine, until);
        assert_eq!(
            fired.iter().map(|n| n.kind).collect::<Vec<_>>(),
            [NudgeKind::FollowUpReminder, NudgeKind::FollowUpOverdue]
        );
        // A new promise, kept by the agent's return: its booked heads-up never goes out.
        say(
            &engine,
            &mut timeline,
            2,
            Role::Agent,
            "I'll email you by 6pm today.",
            t("17:10"),
        );
        assert!(timeline.next_due().is_some());
        say(
            &engine,
            &mut timeline,
            3,
            Role::Agent,
            "Here is the update I promised.",
            t("17:40"),
        );
        assert!(engine.promise("c").is_none());
        assert!(timeline.fire_due(&engine, t("23:00")).is_empty());
    }

    #[test]
    fn a_customer_chasing_the_promise_takes_the_place_of_its_overdue_notice() {
        let engine = Sources::default().engine().unwrap();
        let mut timeline = Timeline::new();
        say(
            &engine,
            &mut timeline,
            1,
            Role::Agent,
            "I'll call you back by 3pm with an update.",
            t("14:00"),
        );
        let due = engine.promise("c").unwrap().due().at;
        let chased = say(
            &engine,
            &mut timeline,
            2,
            Role::Customer,
            "you said you'd call me back!!",
            t("14:20"),
        );
        assert_eq!(
            chased.iter().map(|n| n.kind).collect::<Vec<_>>(),
            [NudgeKind::FollowUpOverdue]
        );
        assert!(timeline
            .fire_due(&engine, due + jiff::SignedDuration::from_hours(5))
            .is_empty());
    }

    /// An agent who started typing longer ago than time goes back: this panicked (found while
    /// writing the `transcript_line` fuzz target; its corpus keeps the line).
    #[test]
    fn a_typing_lead_before_the_earliest_time_starts_there() {
        let engine = Sources::default().engine().unwrap();
        let line = r#"{"conversation": "c", "author": "a", "role": "agent", "text": "hi", "ts": "-009999-01-02T02:00:00Z", "typing_ms": 99999999999}"#;
        let record = parse_line(1, line).unwrap().unwrap();
        let outcome = replay_all(&engine, [(1, &record)], None);
        assert!(outcome.nudges.is_empty());
    }
}
