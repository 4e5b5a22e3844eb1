//! Drives the engine over a transcript on the transcript's own clock.
//!
//! The clock is the messages' timestamps and never runs backwards: a message stamped earlier than
//! the one before it is taken to arrive at the later time. Before each message, reminders due by
//! then fire; idle conversations are swept as the clock passes.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::engine::{Checklist, Detection, Engine, Nudge};
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

/// A replay in progress.
#[derive(Debug)]
pub struct Replay<'e> {
    engine: &'e Engine,
    clock: Option<Timestamp>,
    next_sweep: Option<Timestamp>,
}

impl<'e> Replay<'e> {
    pub fn new(engine: &'e Engine) -> Replay<'e> {
        Replay {
            engine,
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
        nudges.extend(self.engine.fire_due(at));
        self.sweep(at);
        let reading = self.engine.read(&record.message(at, line), false);
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
            Some(t) => self.engine.fire_due(t),
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
    use crate::transcript::parse_line;

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
