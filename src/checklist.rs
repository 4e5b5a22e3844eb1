//! Recovery checklist figures: how often each step of the craft was done, for the team, each
//! agent and each week. Digests, `/coach me` and `backstop report checklist` read them from the
//! stored checklists.

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::ToSpan;

use crate::engine::RecoveryStep;
use crate::store::{from_ms, Store, StoreError, StoredChecklist};

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

    /// "1 conversation with a failure cue", "4 conversations with a failure cue".
    pub fn counted(&self) -> String {
        let s = if self.conversations == 1 { "" } else { "s" };
        format!("{} conversation{s} with a failure cue", self.conversations)
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

/// The checklist report: the team's rates overall and by week (weeks start on Monday, in the
/// given time zone), and each agent's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChecklistReport {
    pub total: ChecklistRates,
    pub by_week: BTreeMap<Date, ChecklistRates>,
    pub by_agent: BTreeMap<u64, ChecklistRates>,
}

impl ChecklistReport {
    /// Counts the rows an agent has answered.
    pub fn of(rows: &[StoredChecklist], tz: &TimeZone) -> ChecklistReport {
        let mut report = ChecklistReport::default();
        for row in rows.iter().filter(|r| r.replies > 0) {
            report.total.add(row);
            let day = from_ms(row.opened_at).to_zoned(tz.clone()).date();
            let monday = day
                .checked_sub((day.weekday().to_monday_zero_offset() as i64).days())
                .unwrap_or(day);
            report.by_week.entry(monday).or_default().add(row);
            if let Some(agent) = row.agent {
                report.by_agent.entry(agent).or_default().add(row);
            }
        }
        report
    }

    /// The report over checklists opened since `since` (Unix ms), for one guild or all.
    pub async fn load(
        store: &Store,
        since: i64,
        guild: Option<u64>,
        tz: &TimeZone,
    ) -> Result<ChecklistReport, StoreError> {
        Ok(ChecklistReport::of(
            &store.checklists(guild, since, i64::MAX).await?,
            tz,
        ))
    }
}

impl fmt::Display for ChecklistReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total.conversations == 0 {
            return writeln!(
                f,
                "No conversation with a failure cue has had an agent reply in this period."
            );
        }
        let weeks: Vec<(&Date, &ChecklistRates)> = self.by_week.iter().rev().take(4).rev().collect();
        write!(f, "{:<36} {:>12}", "step", "all")?;
        for (week, _) in &weeks {
            write!(f, " {:>9}", week.strftime("wk %-d %b").to_string())?;
        }
        writeln!(f)?;
        let cell =
            |r: &ChecklistRates, step: RecoveryStep| r.percent(step).map_or("-".to_string(), |p| format!("{p}%"));
        for step in RecoveryStep::ALL {
            let all = format!(
                "{} ({}/{})",
                cell(&self.total, step),
                self.total.done[step as usize],
                self.total.conversations
            );
            write!(f, "{:<36} {all:>12}", step.describe())?;
            for (_, rates) in &weeks {
                write!(f, " {:>9}", cell(rates, step))?;
            }
            writeln!(f)?;
        }
        write!(f, "{:<36} {:>12}", "conversations", self.total.conversations)?;
        for (_, rates) in &weeks {
            write!(f, " {:>9}", rates.conversations)?;
        }
        writeln!(f)?;
        if !self.by_agent.is_empty() {
            writeln!(f, "\nby agent (conversations, then each step in the order above)")?;
            for (agent, rates) in &self.by_agent {
                let steps: Vec<String> = RecoveryStep::ALL.into_iter().map(|s| cell(rates, s)).collect();
                writeln!(f, "{agent:<20} {:>4}  {}", rates.conversations, steps.join("  "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(agent: u64, opened: &str, replies: i64, done: [bool; 6]) -> StoredChecklist {
        StoredChecklist {
            conversation: 1,
            guild: 1,
            agent: Some(agent),
            opened_at: opened.parse::<jiff::Timestamp>().unwrap().as_millisecond(),
            updated_at: 0,
            replies,
            done,
        }
    }

    #[test]
    fn rates_round_and_compare_in_points() {
        let mut now = ChecklistRates::default();
        let mut before = ChecklistRates::default();
        now.add(&row(
            7,
            "2026-11-23T09:00:00Z",
            1,
            [true, true, true, false, false, false],
        ));
        now.add(&row(
            7,
            "2026-11-23T10:00:00Z",
            1,
            [true, false, false, false, false, true],
        ));
        now.add(&row(
            8,
            "2026-11-23T11:00:00Z",
            2,
            [false, false, false, true, false, false],
        ));
        before.add(&row(
            7,
            "2026-11-16T09:00:00Z",
            1,
            [true, false, false, false, false, false],
        ));
        assert_eq!(now.percent(RecoveryStep::Apologized), Some(67));
        assert_eq!(now.percent(RecoveryStep::NextStep), Some(0));
        assert_eq!(ChecklistRates::default().percent(RecoveryStep::Apologized), None);
        let line = now.line(Some(&before));
        assert!(
            line.starts_with("apologized 67% (▼33 pts) · apologized for the failure by name 33% (▲33 pts)"),
            "{line}"
        );
        assert!(line.ends_with("thanked the customer 33% (▲33 pts)"), "{line}");
    }

    #[test]
    fn the_report_groups_by_week_and_agent_and_skips_unanswered_checklists() {
        let rows = [
            row(7, "2026-11-17T09:00:00Z", 1, [true, true, true, true, true, true]),
            row(7, "2026-11-24T09:00:00Z", 3, [true, false, true, true, false, false]),
            row(8, "2026-11-26T09:00:00Z", 1, [false, false, false, true, false, true]),
            row(8, "2026-11-26T10:00:00Z", 0, [false; 6]),
        ];
        let report = ChecklistReport::of(&rows, &TimeZone::UTC);
        assert_eq!(report.total.conversations, 3);
        assert_eq!(report.total.done, [2, 1, 2, 3, 1, 2]);
        let weeks: Vec<String> = report.by_week.keys().map(|d| d.to_string()).collect();
        assert_eq!(weeks, ["2026-11-16", "2026-11-23"]);
        assert_eq!(report.by_agent[&8].conversations, 1);
        let shown = report.to_string();
        assert!(
            shown.contains("apologized                              67% (2/3)      100%       50%"),
            "{shown}"
        );
        assert!(
            shown.contains("conversations                                   3         1         2"),
            "{shown}"
        );
        assert!(
            shown.contains("7                       2  100%  50%  100%  100%  50%  50%"),
            "{shown}"
        );
    }
}
