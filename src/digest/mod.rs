//! Coaching digests: what a team's period looked like, from the nudge log and the promises, as
//! text for the coaching channel and a chart image.
//!
//! Pure over stored rows: the bot reads the rows and posts; this module only counts, compares
//! with the previous period and draws. Layout: this file (periods, figures, text), `chart`
//! (the PNG).

mod chart;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

pub use chart::{render as chart, ChartError};

use crate::engine::RecoveryStep;
use crate::report::RuleRow;
use crate::store::records::DigestNudge;
use crate::store::{PromiseState, StoredChecklist, StoredPromise};

/// How often a digest is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Every day at this local time.
    Daily(Time),
    /// Every week on this day at this local time.
    Weekly(Weekday, Time),
}

impl Cadence {
    /// "daily" or "weekly", for keys and titles.
    pub fn name(self) -> &'static str {
        match self {
            Cadence::Daily(_) => "daily",
            Cadence::Weekly(..) => "weekly",
        }
    }

    fn length(self) -> SignedDuration {
        match self {
            Cadence::Daily(_) => SignedDuration::from_hours(24),
            Cadence::Weekly(..) => SignedDuration::from_hours(24 * 7),
        }
    }

    /// The latest posting time at or before `now`, in `tz`.
    pub fn latest_slot(self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = now.to_zoned(tz.clone());
        let mut date = local.date();
        for _ in 0..8 {
            let fits = match self {
                Cadence::Daily(_) => true,
                Cadence::Weekly(day, _) => date.weekday() == day,
            };
            let time = match self {
                Cadence::Daily(t) | Cadence::Weekly(_, t) => t,
            };
            if fits {
                if let Ok(slot) = date.to_datetime(time).to_zoned(tz.clone()) {
                    if slot.timestamp() <= now {
                        return Some(slot.timestamp());
                    }
                }
            }
            date = date.checked_sub(1.day()).ok()?;
        }
        None
    }

    /// The first posting time after `now`.
    pub fn next_slot(self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let ahead = now.checked_add(self.length()).ok()?;
        self.latest_slot(ahead, tz).filter(|t| *t > now)
    }

    /// The period a digest posted at `slot` covers, and the one before it.
    pub fn periods(self, slot: Timestamp) -> (Period, Period) {
        let start = slot.checked_sub(self.length()).unwrap_or(slot);
        let before = start.checked_sub(self.length()).unwrap_or(start);
        (
            Period { start, end: slot },
            Period {
                start: before,
                end: start,
            },
        )
    }

    /// Reads `"17:30"` (daily) or `"fri 17:30"` (weekly).
    pub fn parse(text: &str, weekly: bool) -> Result<Cadence, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let time = |t: &str| {
            t.parse::<Time>()
                .map_err(|_| format!("{t:?} is not a time like \"17:30\""))
        };
        match (weekly, words.as_slice()) {
            (false, [t]) => Ok(Cadence::Daily(time(t)?)),
            (true, [day, t]) => {
                let day = match day.to_ascii_lowercase().get(..3) {
                    Some("mon") => Weekday::Monday,
                    Some("tue") => Weekday::Tuesday,
                    Some("wed") => Weekday::Wednesday,
                    Some("thu") => Weekday::Thursday,
                    Some("fri") => Weekday::Friday,
                    Some("sat") => Weekday::Saturday,
                    Some("sun") => Weekday::Sunday,
                    _ => return Err(format!("{day:?} is not a day like \"mon\"")),
                };
                Ok(Cadence::Weekly(day, time(t)?))
            }
            (false, _) => Err(format!("{text:?}: write a time like \"17:30\"")),
            (true, _) => Err(format!("{text:?}: write a day and a time like \"fri 17:30\"")),
        }
    }
}

/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// The nudge-log kind of a cue the agent recovered before any nudge (logged, never delivered).
pub const RECOVERED_UNPROMPTED: &str = "recovered_unprompted";

/// How often the recovery checklist's steps were done, over conversations with a failure cue
/// that an agent answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecklistRates {
    pub conversations: i64,
    /// Conversations with each step done, in [`RecoveryStep::ALL`] order.
    pub done: [i64; 6],
}

impl ChecklistRates {
    pub fn add(&mut self, row: &StoredChecklist) {
        self.conversations += 1;
        for (n, done) in self.done.iter_mut().zip(row.done) {
            *n += i64::from(done);
        }
    }

    /// The share of conversations with `step` done, as a whole percentage.
    pub fn percent(&self, step: RecoveryStep) -> Option<i64> {
        (self.conversations > 0).then(|| (self.done[step as usize] * 100 + self.conversations / 2) / self.conversations)
    }

    /// "apologized 80% (▲5 pts) · …": each step's rate, with the change against `before` when
    /// both periods had conversations.
    pub fn line(&self, before: Option<&ChecklistRates>) -> String {
        RecoveryStep::ALL
            .into_iter()
            .filter_map(|step| {
                let now = self.percent(step)?;
                let change = match before.and_then(|b| b.percent(step)).map(|was| now - was) {
                    Some(0) => " (=)".to_string(),
                    Some(d) if d > 0 => format!(" (▲{d} pts)"),
                    Some(d) => format!(" (▼{} pts)", -d),
                    None => String::new(),
                };
                Some(format!("{} {now}%{change}", step.describe()))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// One agent's share of a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFigures {
    pub cues: i64,
    /// Coaching-moment nudges: details before ownership, generic apologies, cold hand-offs.
    pub craft: i64,
    /// Cues this agent answered with a specific apology before any nudge.
    pub unprompted: i64,
    pub explained_first: i64,
    pub promised: i64,
    pub kept_on_time: i64,
    pub lapsed: i64,
    /// The checklists of conversations whose cue this agent answered first.
    pub checklist: ChecklistRates,
}

/// What happened in a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Prior-failure cues caught, by category.
    pub cues: BTreeMap<String, i64>,
    /// Replies that explained before (or instead of) apologizing.
    pub explained_first: i64,
    /// Coaching-moment nudges by kind (`details_before_ownership`, `generic_apology`,
    /// `cold_transfer`).
    pub craft: BTreeMap<String, i64>,
    /// Cues whose first reply already apologized for the failure by name: wins, no nudge sent.
    pub unprompted: i64,
    /// Promises made in the period.
    pub promised: i64,
    /// Promises due in the period that were done by their time.
    pub kept_on_time: i64,
    /// Promises due in the period that were not.
    pub lapsed: i64,
    /// Promises posted to the team in the period.
    pub escalated: i64,
    /// Median time from a customer's cue to the agent's apology.
    pub median_to_apology: Option<SignedDuration>,
    /// Kept and lapsed promises by local day of their due time.
    pub by_day: BTreeMap<Date, (i64, i64)>,
    pub by_agent: BTreeMap<u64, AgentFigures>,
    /// The recovery checklist over conversations whose cue arrived in the period.
    pub checklist: ChecklistRates,
}

impl Figures {
    pub fn compute(period: Period, nudges: &[DigestNudge], promises: &[StoredPromise], tz: &TimeZone) -> Figures {
        let (start, end) = (period.start.as_millisecond(), period.end.as_millisecond());
        let within = |t: i64| t >= start && t < end;
        let mut f = Figures::default();
        let mut waits = Vec::new();
        for n in nudges.iter().filter(|n| within(n.at)) {
            let agent = n.agent.map(|a| f.by_agent.entry(a).or_default());
            match n.kind.as_str() {
                "prior_failure" => {
                    *f.cues.entry(n.category.clone().unwrap_or_default()).or_default() += 1;
                    if let Some(a) = agent {
                        a.cues += 1;
                    }
                    if let Some(r) = n.recovered_at {
                        waits.push(r - n.at);
                    }
                }
                "explain_before_apology" => {
                    f.explained_first += 1;
                    if let Some(a) = agent {
                        a.explained_first += 1;
                    }
                }
                kind @ ("details_before_ownership" | "generic_apology" | "cold_transfer") => {
                    *f.craft.entry(kind.to_string()).or_default() += 1;
                    if let Some(a) = agent {
                        a.craft += 1;
                    }
                }
                RECOVERED_UNPROMPTED => {
                    f.unprompted += 1;
                    if let Some(a) = agent {
                        a.unprompted += 1;
                    }
                }
                _ => {}
            }
        }
        let days: Vec<Date> = {
            let mut d = period.start.to_zoned(tz.clone()).date();
            let last = period
                .end
                .checked_sub(SignedDuration::from_millis(1))
                .unwrap_or(period.end);
            let last = last.to_zoned(tz.clone()).date();
            let mut out = Vec::new();
            while d <= last && out.len() < 8 {
                out.push(d);
                d = match d.checked_add(1.day()) {
                    Ok(next) => next,
                    Err(_) => break,
                };
            }
            out
        };
        for d in days {
            f.by_day.insert(d, (0, 0));
        }
        for p in promises {
            let agent = f.by_agent.entry(p.agent).or_default();
            if within(p.made_at) {
                f.promised += 1;
                agent.promised += 1;
            }
            if p.escalated_at.is_some_and(within) {
                f.escalated += 1;
            }
            if !within(p.due_at) || p.state == PromiseState::Superseded {
                continue;
            }
            let kept = p.state == PromiseState::Done && p.closed_at.is_some_and(|c| c <= p.due_at);
            let day = crate::store::from_ms(p.due_at).to_zoned(tz.clone()).date();
            let slot = f.by_day.entry(day).or_default();
            if kept {
                f.kept_on_time += 1;
                agent.kept_on_time += 1;
                slot.0 += 1;
            } else {
                f.lapsed += 1;
                agent.lapsed += 1;
                slot.1 += 1;
            }
        }
        f.by_agent.retain(|_, a| *a != AgentFigures::default());
        waits.sort_unstable();
        f.median_to_apology = waits.get(waits.len() / 2).map(|ms| SignedDuration::from_millis(*ms));
        f
    }

    /// Counts the checklists opened in the period, for the team and for the agent each belongs
    /// to. Checklists no agent has answered yet are left out: they have nothing to judge.
    pub fn count_checklists(&mut self, period: Period, rows: &[StoredChecklist]) {
        let (start, end) = (period.start.as_millisecond(), period.end.as_millisecond());
        for row in rows
            .iter()
            .filter(|r| r.opened_at >= start && r.opened_at < end && r.replies > 0)
        {
            self.checklist.add(row);
            if let Some(agent) = row.agent {
                self.by_agent.entry(agent).or_default().checklist.add(row);
            }
        }
    }

    pub fn total_cues(&self) -> i64 {
        self.cues.values().sum()
    }
}

/// "12 (▲3)", "12 (▼2)", "12 (=)".
fn trend(now: i64, before: i64) -> String {
    match now - before {
        0 => format!("{now} (=)"),
        d if d > 0 => format!("{now} (▲{d})"),
        d => format!("{now} (▼{})", -d),
    }
}

fn minutes(d: SignedDuration) -> String {
    let m = d.as_secs() / 60;
    if m < 1 {
        format!("{}s", d.as_secs().max(0))
    } else if m < 120 {
        format!("{m} min")
    } else {
        format!("{:.1} h", m as f64 / 60.0)
    }
}

/// The digest's text: team figures with the trend against the previous period, noisy rules, and
/// per-agent lines only when the guild opted in.
pub fn text(now: &Figures, before: &Figures, per_agent: bool, noisy: &[RuleRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**Prior-failure cues caught:** {}",
        trend(now.total_cues(), before.total_cues())
    );
    for (category, n) in &now.cues {
        let label = crate::engine::Category::parse(category).map_or(category.as_str(), |c| c.label());
        let _ = writeln!(out, "• {label}: {n}");
    }
    let _ = writeln!(
        out,
        "**Explained before apologizing:** {}",
        trend(now.explained_first, before.explained_first)
    );
    let craft = |kind: &str, f: &Figures| f.craft.get(kind).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "**Recovery craft:** {} asked for details before owning it · {} generic apologies · {} cold hand-offs",
        trend(
            craft("details_before_ownership", now),
            craft("details_before_ownership", before)
        ),
        trend(craft("generic_apology", now), craft("generic_apology", before)),
        trend(craft("cold_transfer", now), craft("cold_transfer", before))
    );
    let _ = writeln!(
        out,
        "**Recovered unprompted** (a specific apology before any nudge): {}",
        trend(now.unprompted, before.unprompted)
    );
    if now.checklist.conversations > 0 {
        let _ = writeln!(
            out,
            "**Recovery checklist** ({} conversations with a failure cue): {}",
            now.checklist.conversations,
            now.checklist.line(Some(&before.checklist))
        );
    }
    let _ = writeln!(
        out,
        "**Follow-ups:** {} promised · {} kept on time · {} overdue · {} escalated",
        trend(now.promised, before.promised),
        trend(now.kept_on_time, before.kept_on_time),
        trend(now.lapsed, before.lapsed),
        trend(now.escalated, before.escalated)
    );
    let median = now
        .median_to_apology
        .map_or("no apologies after a cue yet".to_string(), minutes);
    let was = before
        .median_to_apology
        .map_or(String::new(), |d| format!(" (was {})", minutes(d)));
    let _ = writeln!(
        out,
        "**Median time from a customer's cue to the apology:** {median}{was}"
    );
    if !noisy.is_empty() {
        let _ = writeln!(out, "**Rules agents find unhelpful** (below 50% 👍):");
        for r in noisy {
            let rate = r.helpful_rate().unwrap_or(0.0) * 100.0;
            let _ = writeln!(out, "• `{}`: {rate:.0}% helpful over {} presses", r.rule, r.feedback());
        }
    }
    if per_agent && !now.by_agent.is_empty() {
        let _ = writeln!(
            out,
            "**By agent** (cues · explained first · promised · kept · overdue):"
        );
        for (agent, a) in &now.by_agent {
            let _ = writeln!(
                out,
                "• <@{agent}>: {} · {} · {} · {} · {}",
                a.cues, a.explained_first, a.promised, a.kept_on_time, a.lapsed
            );
        }
    }
    out
}

/// One agent's own figures, for `/coach me`.
pub fn agent_text(agent: u64, now: &Figures) -> String {
    let a = now.by_agent.get(&agent).cloned().unwrap_or_default();
    let checklist = if a.checklist.conversations > 0 {
        format!(
            "\nRecovery checklist over your {} conversations with a failure cue: {}\nTeam: {}",
            a.checklist.conversations,
            a.checklist.line(None),
            now.checklist.line(None)
        )
    } else {
        String::new()
    };
    format!(
        "**Your last 7 days**\nPrior-failure cues you were coached on: {}\nCues you answered with a specific apology before any nudge: {}\nReplies that explained before apologizing: {}\nOwnership, apology and hand-off nudges: {}\nPromises made: {} · kept on time: {} · overdue: {}{checklist}",
        a.cues, a.unprompted, a.explained_first, a.craft, a.promised, a.kept_on_time, a.lapsed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn slots_follow_the_local_clock() {
        let tz = TimeZone::get("Europe/London").unwrap();
        let daily = Cadence::parse("17:30", false).unwrap();
        assert_eq!(
            daily.latest_slot(ts("2026-11-24T18:00:00Z"), &tz),
            Some(ts("2026-11-24T17:30:00Z"))
        );
        assert_eq!(
            daily.latest_slot(ts("2026-11-24T17:00:00Z"), &tz),
            Some(ts("2026-11-23T17:30:00Z"))
        );
        assert_eq!(
            daily.next_slot(ts("2026-11-24T17:30:00Z"), &tz),
            Some(ts("2026-11-25T17:30:00Z"))
        );
        // Summer time: 17:30 in London is 16:30 UTC.
        assert_eq!(
            daily.latest_slot(ts("2026-07-01T20:00:00Z"), &tz),
            Some(ts("2026-07-01T16:30:00Z"))
        );
        let weekly = Cadence::parse("fri 09:00", true).unwrap();
        // 2026-11-24 is a Tuesday: the latest Friday 09:00 is the 20th.
        assert_eq!(
            weekly.latest_slot(ts("2026-11-24T12:00:00Z"), &tz),
            Some(ts("2026-11-20T09:00:00Z"))
        );
        assert!(Cadence::parse("someday 9", true).is_err());
        assert!(Cadence::parse("25:00", false).is_err());
    }

    #[test]
    fn figures_count_kept_lapsed_and_time_to_apology() {
        let tz = TimeZone::UTC;
        let period = Period {
            start: ts("2026-11-23T00:00:00Z"),
            end: ts("2026-11-24T00:00:00Z"),
        };
        let ms = |s: &str| ts(s).as_millisecond();
        let nudge = |kind: &str, at: &str, recovered: Option<&str>| DigestNudge {
            kind: kind.into(),
            category: (kind == "prior_failure").then(|| "not_received".into()),
            agent: Some(7),
            at: ms(at),
            recovered_at: recovered.map(ms),
        };
        let nudges = [
            nudge("prior_failure", "2026-11-23T09:00:00Z", Some("2026-11-23T09:04:00Z")),
            nudge("prior_failure", "2026-11-23T10:00:00Z", Some("2026-11-23T10:10:00Z")),
            nudge("prior_failure", "2026-11-23T11:00:00Z", Some("2026-11-23T11:02:00Z")),
            nudge("explain_before_apology", "2026-11-23T12:00:00Z", None),
            nudge("generic_apology", "2026-11-23T12:10:00Z", None),
            nudge("generic_apology", "2026-11-23T12:20:00Z", None),
            nudge("cold_transfer", "2026-11-23T12:30:00Z", None),
            nudge(RECOVERED_UNPROMPTED, "2026-11-23T13:00:00Z", None),
            nudge("prior_failure", "2026-11-22T12:00:00Z", None),
        ];
        let promise = |made: &str, due: &str, state: PromiseState, closed: Option<&str>| StoredPromise {
            id: 1,
            guild: 1,
            conversation: 1,
            agent: 7,
            customer: None,
            message: 1,
            rule: "r".into(),
            evidence: String::new(),
            excerpt: String::new(),
            made_at: ms(made),
            due_at: ms(due),
            due_words: None,
            state,
            next_step: None,
            next_at: None,
            reminders: 0,
            updated_at: 0,
            closed_at: closed.map(ms),
            escalated_at: None,
        };
        let promises = [
            promise(
                "2026-11-23T09:00:00Z",
                "2026-11-23T15:00:00Z",
                PromiseState::Done,
                Some("2026-11-23T14:00:00Z"),
            ),
            promise(
                "2026-11-23T09:00:00Z",
                "2026-11-23T16:00:00Z",
                PromiseState::Done,
                Some("2026-11-23T17:00:00Z"),
            ),
            promise(
                "2026-11-23T09:00:00Z",
                "2026-11-23T16:00:00Z",
                PromiseState::Overdue,
                None,
            ),
            promise("2026-11-23T09:00:00Z", "2026-11-25T16:00:00Z", PromiseState::Open, None),
        ];
        let f = Figures::compute(period, &nudges, &promises, &tz);
        assert_eq!(f.total_cues(), 3);
        assert_eq!(f.explained_first, 1);
        assert_eq!((f.promised, f.kept_on_time, f.lapsed), (4, 1, 2));
        assert_eq!(f.median_to_apology, Some(SignedDuration::from_mins(4)));
        assert_eq!(f.by_day.values().copied().collect::<Vec<_>>(), [(1, 2)]);
        let shown = text(&f, &Figures::default(), false, &[]);
        assert!(shown.contains("**Prior-failure cues caught:** 3 (▲3)"), "{shown}");
        assert!(shown.contains("1 (▲1) kept on time"), "{shown}");
        assert!(shown.contains("4 min"), "{shown}");
        assert!(
            shown.contains("**Recovery craft:** 0 (=) asked for details before owning it · 2 (▲2) generic apologies · 1 (▲1) cold hand-offs"),
            "{shown}"
        );
        assert!(
            shown.contains("**Recovered unprompted** (a specific apology before any nudge): 1 (▲1)"),
            "{shown}"
        );
        assert!(agent_text(7, &f).contains("before any nudge: 1"));
        assert!(agent_text(7, &f).contains("hand-off nudges: 3"));
        assert!(!shown.contains("<@7>"), "no per-agent lines unless opted in");
        assert!(text(&f, &Figures::default(), true, &[]).contains("<@7>: 3 · 1 · 4 · 1 · 2"));
    }
}
