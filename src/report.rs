//! The rule-quality report: how often each rule fired and what agents said of it with 👍/👎,
//! so a lead can spot a noisy rule. Read from the nudge log by `backstop report rules` and
//! `/coach rules`.

use std::collections::BTreeMap;
use std::fmt;

use crate::store::{Store, StoreError};

/// Below this helpful rate, over at least [`MIN_SAMPLE`] presses, a rule is called noisy.
pub const FLOOR: f64 = 0.5;
/// Feedback presses needed before a rate means anything.
pub const MIN_SAMPLE: i64 = 5;
/// 👎 snippets shown per rule.
const SNIPPETS: usize = 3;

/// One rule's line in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    pub rule: String,
    pub kind: String,
    pub fires: i64,
    pub helpful: i64,
    pub unhelpful: i64,
    /// The evidence of its latest 👎 nudges, newest first.
    pub unhelpful_evidence: Vec<String>,
}

impl RuleRow {
    pub fn feedback(&self) -> i64 {
        self.helpful + self.unhelpful
    }

    /// Share of presses that were 👍; `None` before any feedback.
    pub fn helpful_rate(&self) -> Option<f64> {
        (self.feedback() > 0).then(|| self.helpful as f64 / self.feedback() as f64)
    }

    /// Enough feedback, and mostly 👎.
    pub fn is_noisy(&self) -> bool {
        self.feedback() >= MIN_SAMPLE && self.helpful_rate().is_some_and(|r| r < FLOOR)
    }
}

/// Every rule that fired in the period, noisiest first, then by fires.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleReport {
    pub rows: Vec<RuleRow>,
}

impl RuleReport {
    /// The report since `since` (Unix ms), for one guild or all of them.
    pub async fn load(store: &Store, since: i64, guild: Option<u64>) -> Result<RuleReport, StoreError> {
        let figures = store.rule_figures(since, guild).await?;
        let mut evidence: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (rule, text) in store.unhelpful_evidence(since, guild, 1000).await? {
            let list = evidence.entry(rule).or_default();
            if list.len() < SNIPPETS {
                list.push(text);
            }
        }
        let mut rows: Vec<RuleRow> = figures
            .into_iter()
            .map(|f| RuleRow {
                unhelpful_evidence: evidence.get(&f.rule).cloned().unwrap_or_default(),
                rule: f.rule,
                kind: f.kind,
                fires: f.fires,
                helpful: f.helpful,
                unhelpful: f.unhelpful,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.is_noisy()
                .cmp(&a.is_noisy())
                .then(b.fires.cmp(&a.fires))
                .then(a.rule.cmp(&b.rule))
        });
        Ok(RuleReport { rows })
    }

    /// A short version for Discord: the `limit` first rows, one line each plus 👎 snippets.
    pub fn for_discord(&self, limit: usize) -> String {
        if self.rows.is_empty() {
            return "No nudges in this period.".into();
        }
        let mut out = String::from("**Rules** (fires · feedback · helpful)\n");
        for row in self.rows.iter().take(limit) {
            let rate = row
                .helpful_rate()
                .map_or("–".to_string(), |r| format!("{:.0}%", r * 100.0));
            let flag = if row.is_noisy() { " ⚠️ noisy" } else { "" };
            out.push_str(&format!(
                "`{}` {} · {} · {rate}{flag}\n",
                row.rule,
                row.fires,
                row.feedback()
            ));
            for e in &row.unhelpful_evidence {
                out.push_str(&format!("  👎 \"{e}\"\n"));
            }
        }
        if self.rows.len() > limit {
            out.push_str(&format!(
                "…and {} more: `backstop report rules` lists all.",
                self.rows.len() - limit
            ));
        }
        out
    }
}

impl fmt::Display for RuleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<44} {:<24} {:>6} {:>9} {:>8}",
            "rule", "kind", "fires", "feedback", "helpful"
        )?;
        for row in &self.rows {
            let rate = row
                .helpful_rate()
                .map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0));
            let flag = if row.is_noisy() { "  noisy" } else { "" };
            writeln!(
                f,
                "{:<44} {:<24} {:>6} {:>9} {:>8}{flag}",
                row.rule,
                row.kind,
                row.fires,
                row.feedback(),
                rate
            )?;
            for e in &row.unhelpful_evidence {
                writeln!(f, "    not helpful: \"{e}\"")?;
            }
        }
        writeln!(
            f,
            "\nnoisy: helpful below {:.0}% over at least {MIN_SAMPLE} presses",
            FLOOR * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(helpful: i64, unhelpful: i64) -> RuleRow {
        RuleRow {
            rule: "r".into(),
            kind: "prior_failure".into(),
            fires: 10,
            helpful,
            unhelpful,
            unhelpful_evidence: vec![],
        }
    }

    #[test]
    fn a_rule_is_noisy_only_with_enough_mostly_negative_feedback() {
        assert!(row(1, 4).is_noisy());
        assert!(!row(0, 4).is_noisy(), "four presses are too few to judge");
        assert!(!row(3, 3).is_noisy());
        assert_eq!(row(0, 0).helpful_rate(), None);
    }
}
