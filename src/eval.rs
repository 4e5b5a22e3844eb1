//! Scoring against labelled transcripts: precision, recall and F1 per kind and category, for
//! detections and for nudges apart.
//!
//! A line's `labels` name the detections it holds (`kind` or `kind:category`, by
//! `docs/labelling.md`); its `nudges`, when given, the nudges it should cause, and otherwise the
//! nudges expected are its labels. Detections are scored against the labels of the detection
//! kinds, every detection counting whether or not the nudge policy let it through; nudges are
//! scored against the nudges expected. Reminders are labelled on the promise's line, which is the
//! line their nudges carry. A finding matches a label on the same line with the same kind; where
//! the label names a category, the category is scored too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::engine::{Category, Checklist, Detection, Nudge, NudgeKind, RecoveryStep};

/// The kinds a message itself can hold; the other nudge kinds are about a promise's timing.
pub const DETECTION_KINDS: [NudgeKind; 7] = [
    NudgeKind::PriorFailure,
    NudgeKind::ExplainBeforeApology,
    NudgeKind::FollowUpPromised,
    NudgeKind::FollowUpNoTimeframe,
    NudgeKind::DetailsBeforeOwnership,
    NudgeKind::GenericApology,
    NudgeKind::ColdTransfer,
];

/// Something Backstop found on a line: (line, kind, category).
pub type Finding = (u64, NudgeKind, Option<Category>);

/// Nudges as findings. Hand-off briefs are information for the agent, not a detection to score.
pub fn of_nudges(nudges: &[Nudge]) -> Vec<Finding> {
    nudges
        .iter()
        .filter(|n| n.kind != NudgeKind::HandoffBrief)
        .map(|n| (n.source.0, n.kind, n.category))
        .collect()
}

/// Detections as findings: every one, nudged or not.
pub fn of_detections(detections: &[Detection]) -> Vec<Finding> {
    detections.iter().map(|d| (d.source.0, d.kind, d.category)).collect()
}

/// A line's labels of the detection kinds.
pub fn detection_labels(labels: &[String]) -> Vec<String> {
    labels
        .iter()
        .filter(|l| {
            let kind = l.split(':').next().unwrap_or("");
            DETECTION_KINDS.iter().any(|k| k.as_str() == kind)
        })
        .cloned()
        .collect()
}

/// One transcript's (or several merged) detection and nudge scores.
#[derive(Debug, Default, Clone)]
pub struct Evaluation {
    pub detections: Score,
    pub nudges: Score,
    pub checklist: ChecklistScore,
}

impl Evaluation {
    pub fn merge(&mut self, other: Evaluation) {
        self.detections.merge(other.detections);
        self.nudges.merge(other.nudges);
        self.checklist.merge(other.checklist);
    }
}

/// The recovery checklist scored step by step: a step the engine marks done is a true positive
/// when the conversation's label lists it, a false alarm when not; a labelled step it leaves
/// undone is a miss. Only files that label checklists are scored, and there every conversation
/// either side has a checklist for counts (a checklist opened on a cue the labels do not hold
/// scores its done steps as false alarms).
#[derive(Debug, Default, Clone)]
pub struct ChecklistScore {
    pub by_step: BTreeMap<RecoveryStep, Counts>,
    /// Conversations scored.
    pub conversations: usize,
    /// Conversations whose every step the engine judged as labelled.
    pub exact: usize,
    /// Mismatches on the conversation's last line, as `checklist:<step>`.
    pub misses: Vec<Mismatch>,
    pub false_alarms: Vec<Mismatch>,
}

impl ChecklistScore {
    pub fn merge(&mut self, other: ChecklistScore) {
        for (k, c) in other.by_step {
            add(self.by_step.entry(k).or_default(), c);
        }
        self.conversations += other.conversations;
        self.exact += other.exact;
        self.misses.extend(other.misses);
        self.false_alarms.extend(other.false_alarms);
    }

    /// The mismatches as a [`Score`], so [`Comparison::of`] can set two runs side by side.
    pub fn as_score(&self) -> Score {
        Score {
            misses: self.misses.clone(),
            false_alarms: self.false_alarms.clone(),
            ..Score::default()
        }
    }
}

/// The head of a score table, `first` naming its rows.
fn table_head(f: &mut fmt::Formatter<'_>, first: &str) -> fmt::Result {
    writeln!(
        f,
        "{:<44} {:>4} {:>4} {:>4} {:>9} {:>7} {:>6}",
        first, "tp", "fp", "fn", "precision", "recall", "f1"
    )
}

/// One line of a score table: a name, the counts and the three rates.
fn table_row(f: &mut fmt::Formatter<'_>, name: &str, c: &Counts) -> fmt::Result {
    writeln!(
        f,
        "{:<44} {:>4} {:>4} {:>4} {:>9.3} {:>7.3} {:>6.3}",
        name,
        c.true_pos,
        c.false_pos,
        c.false_neg,
        c.precision(),
        c.recall(),
        c.f1()
    )
}

impl fmt::Display for ChecklistScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table_head(
            f,
            &format!("step ({} conversations, {} exact)", self.conversations, self.exact),
        )?;
        for (step, c) in &self.by_step {
            table_row(f, step.as_str(), c)?;
        }
        Ok(())
    }
}

/// Scores checklists against labels: `labelled` maps a conversation to its label line and steps;
/// `found` to the engine's checklist and the line of the conversation's last message.
pub fn score_checklists(
    labelled: &BTreeMap<String, (u64, Vec<String>)>,
    found: &BTreeMap<String, (u64, Checklist)>,
) -> Result<ChecklistScore, LabelError> {
    let mut score = ChecklistScore::default();
    let conversations: BTreeSet<&String> = labelled.keys().chain(found.keys()).collect();
    for conversation in conversations {
        let (line, want) = match labelled.get(conversation) {
            Some((line, steps)) => {
                let mut want = BTreeSet::new();
                for step in steps {
                    want.insert(RecoveryStep::parse(step).ok_or_else(|| LabelError {
                        line: *line,
                        label: format!("checklist:{step}"),
                    })?);
                }
                (*line, want)
            }
            None => (found[conversation].0, BTreeSet::new()),
        };
        let got: BTreeSet<RecoveryStep> = found
            .get(conversation)
            .map(|(_, c)| c.steps_done().into_iter().collect())
            .unwrap_or_default();
        score.conversations += 1;
        score.exact += usize::from(want == got);
        for step in RecoveryStep::ALL {
            let counts = score.by_step.entry(step).or_default();
            let mismatch = || Mismatch {
                file: String::new(),
                line,
                label: format!("checklist:{step}"),
            };
            match (want.contains(&step), got.contains(&step)) {
                (true, true) => counts.true_pos += 1,
                (true, false) => {
                    counts.false_neg += 1;
                    score.misses.push(mismatch());
                }
                (false, true) => {
                    counts.false_pos += 1;
                    score.false_alarms.push(mismatch());
                }
                (false, false) => {}
            }
        }
    }
    Ok(score)
}

/// True/false positive and false negative counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub true_pos: usize,
    pub false_pos: usize,
    pub false_neg: usize,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// 1.0 for 0/0: nothing expected and nothing fired is a perfect score.
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// A label that was expected but not produced, or produced but not expected.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mismatch {
    /// The transcript it is in, when the caller named it (so lines of two files stay apart).
    pub file: String,
    pub line: u64,
    pub label: String,
}

/// The score of one run.
#[derive(Debug, Default, Clone)]
pub struct Score {
    pub by_kind: BTreeMap<NudgeKind, Counts>,
    pub by_category: BTreeMap<(NudgeKind, Category), Counts>,
    pub misses: Vec<Mismatch>,
    pub false_alarms: Vec<Mismatch>,
}

/// A label that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: unknown label {label:?} (expected a nudge kind, optionally \":category\")")]
pub struct LabelError {
    pub line: u64,
    pub label: String,
}

fn parse_label(line: u64, label: &str) -> Result<(NudgeKind, Option<Category>), LabelError> {
    let err = || LabelError {
        line,
        label: label.to_string(),
    };
    let (kind, category) = match label.split_once(':') {
        Some((k, c)) => (k, Some(c)),
        None => (label, None),
    };
    let kind = NudgeKind::parse(kind).ok_or_else(err)?;
    let category = match category {
        None => None,
        Some(c) => Some(
            Category::parse(c)
                .filter(|c| kind.categories().contains(c))
                .ok_or_else(err)?,
        ),
    };
    Ok((kind, category))
}

fn label_of(kind: NudgeKind, category: Option<Category>) -> String {
    match category {
        Some(c) => format!("{kind}:{c}"),
        None => kind.to_string(),
    }
}

/// Scores findings against the labels of each line (`(line, labels)`).
pub fn score<'a>(
    expected: impl IntoIterator<Item = (u64, &'a [String])>,
    found: &[Finding],
) -> Result<Score, LabelError> {
    let mut want: BTreeMap<(u64, NudgeKind), Option<Category>> = BTreeMap::new();
    for (line, labels) in expected {
        for label in labels {
            let (kind, category) = parse_label(line, label)?;
            want.insert((line, kind), category);
        }
    }
    let got: BTreeMap<(u64, NudgeKind), Option<Category>> = found.iter().map(|(l, k, c)| ((*l, *k), *c)).collect();
    let mut score = Score::default();
    let keys: BTreeSet<_> = want.keys().chain(got.keys()).copied().collect();
    for key @ (line, kind) in keys {
        let counts = score.by_kind.entry(kind).or_default();
        match (want.get(&key), got.get(&key)) {
            (Some(w), Some(g)) => {
                counts.true_pos += 1;
                if let Some(w) = w {
                    if Some(*w) == *g {
                        score.by_category.entry((kind, *w)).or_default().true_pos += 1;
                    } else {
                        score.by_category.entry((kind, *w)).or_default().false_neg += 1;
                        if let Some(g) = g {
                            score.by_category.entry((kind, *g)).or_default().false_pos += 1;
                        }
                        score.misses.push(Mismatch {
                            file: String::new(),
                            line,
                            label: label_of(kind, Some(*w)),
                        });
                        score.false_alarms.push(Mismatch {
                            file: String::new(),
                            line,
                            label: label_of(kind, *g),
                        });
                    }
                }
            }
            (Some(w), None) => {
                counts.false_neg += 1;
                if let Some(w) = w {
                    score.by_category.entry((kind, *w)).or_default().false_neg += 1;
                }
                score.misses.push(Mismatch {
                    file: String::new(),
                    line,
                    label: label_of(kind, *w),
                });
            }
            (None, Some(g)) => {
                counts.false_pos += 1;
                if let (Some(g), true) = (g, kind == NudgeKind::PriorFailure) {
                    score.by_category.entry((kind, *g)).or_default().false_pos += 1;
                }
                score.false_alarms.push(Mismatch {
                    file: String::new(),
                    line,
                    label: label_of(kind, *g),
                });
            }
            (None, None) => {}
        }
    }
    Ok(score)
}

impl Score {
    /// Adds another run's score (e.g. another file) to this one.
    pub fn merge(&mut self, other: Score) {
        for (k, c) in other.by_kind {
            add(self.by_kind.entry(k).or_default(), c);
        }
        for (k, c) in other.by_category {
            add(self.by_category.entry(k).or_default(), c);
        }
        self.misses.extend(other.misses);
        self.false_alarms.extend(other.false_alarms);
    }
}

fn add(into: &mut Counts, c: Counts) {
    into.true_pos += c.true_pos;
    into.false_pos += c.false_pos;
    into.false_neg += c.false_neg;
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table_head(f, "kind / category")?;
        for (kind, c) in &self.by_kind {
            table_row(f, &kind.to_string(), c)?;
            for ((k, cat), c) in self.by_category.iter().filter(|((k, _), _)| k == kind) {
                table_row(f, &format!("  {k}:{cat}"), c)?;
            }
        }
        Ok(())
    }
}

/// Replays one labelled transcript through a fresh engine sharing `engine`'s rules and scores
/// it. The clock runs on three days past the last message, so every promise reaches its
/// reminder and overdue notice.
pub fn evaluate(engine: &crate::engine::Engine, file: &str, text: &str) -> Result<Evaluation, EvalError> {
    let records = crate::transcript::parse_all(text)?;
    let engine = engine.with_settings(engine.settings().clone());
    let until = records
        .iter()
        .map(|(_, r)| r.ts)
        .max()
        .and_then(|last| last.checked_add(jiff::SignedDuration::from_hours(72)).ok());
    let outcome = crate::replay::replay_all(&engine, records.iter().map(|(l, r)| (*l, r)), until);
    let wanted: Vec<(u64, Vec<String>)> = records.iter().map(|(l, r)| (*l, detection_labels(&r.labels))).collect();
    let mut detections = score(
        wanted.iter().map(|(l, v)| (*l, v.as_slice())),
        &of_detections(&outcome.detections),
    )?;
    let mut nudges = score(
        records
            .iter()
            .map(|(l, r)| (*l, r.nudges.as_deref().unwrap_or(r.labels.as_slice()))),
        &of_nudges(&outcome.nudges),
    )?;
    let mut checklist = ChecklistScore::default();
    if records.iter().any(|(_, r)| r.checklist.is_some()) {
        let labelled = records
            .iter()
            .filter_map(|(l, r)| Some((r.conversation.clone(), (*l, r.checklist.clone()?))))
            .collect();
        let last_line: BTreeMap<&str, u64> = records.iter().map(|(l, r)| (r.conversation.as_str(), *l)).collect();
        let found = outcome
            .checklists
            .iter()
            .filter(|(_, c)| c.replies > 0)
            .map(|(conv, c)| (conv.clone(), (last_line[conv.as_str()], c.clone())))
            .collect();
        checklist = score_checklists(&labelled, &found)?;
    }
    for m in [&mut detections, &mut nudges]
        .into_iter()
        .flat_map(|s| s.misses.iter_mut().chain(s.false_alarms.iter_mut()))
        .chain(checklist.misses.iter_mut())
        .chain(checklist.false_alarms.iter_mut())
    {
        m.file = file.to_string();
    }
    Ok(Evaluation {
        detections,
        nudges,
        checklist,
    })
}

/// Why a labelled transcript could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Line(#[from] crate::transcript::LineError),
    #[error(transparent)]
    Label(#[from] LabelError),
}

/// What a rule change gains and loses on the same transcripts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Missed before, caught now.
    pub fixed_misses: Vec<Mismatch>,
    /// Caught before, missed now.
    pub new_misses: Vec<Mismatch>,
    /// False alarms before, quiet now.
    pub fixed_false_alarms: Vec<Mismatch>,
    /// Quiet before, false alarms now.
    pub new_false_alarms: Vec<Mismatch>,
}

impl Comparison {
    pub fn of(old: &Score, new: &Score) -> Comparison {
        let set = |v: &[Mismatch]| v.iter().cloned().collect::<BTreeSet<_>>();
        let (old_miss, new_miss) = (set(&old.misses), set(&new.misses));
        let (old_fa, new_fa) = (set(&old.false_alarms), set(&new.false_alarms));
        Comparison {
            fixed_misses: old_miss.difference(&new_miss).cloned().collect(),
            new_misses: new_miss.difference(&old_miss).cloned().collect(),
            fixed_false_alarms: old_fa.difference(&new_fa).cloned().collect(),
            new_false_alarms: new_fa.difference(&old_fa).cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ConversationId, MessageRef};

    fn nudge(line: u64, kind: NudgeKind, category: Option<Category>) -> Nudge {
        Nudge {
            kind,
            category,
            conversation: ConversationId::new("c"),
            agent: None,
            customer: None,
            rule: "r".into(),
            evidence: String::new(),
            quote: String::new(),
            at: jiff::Timestamp::UNIX_EPOCH,
            due: None,
            source: MessageRef(line),
            title: String::new(),
            text: String::new(),
            phrases: Vec::new(),
        }
    }

    #[test]
    fn counts_kinds_and_categories() {
        let labels = [
            (1, vec!["prior_failure:not_received".to_string()]),
            (2, vec!["prior_failure:still_waiting".to_string()]),
            (3, vec!["explain_before_apology".to_string()]),
            (4, vec![]),
        ];
        let nudges = [
            nudge(1, NudgeKind::PriorFailure, Some(Category::NotReceived)),
            nudge(2, NudgeKind::PriorFailure, Some(Category::NotReceived)),
            nudge(4, NudgeKind::ExplainBeforeApology, Some(Category::InsteadOfApology)),
        ];
        let s = score(labels.iter().map(|(l, v)| (*l, v.as_slice())), &of_nudges(&nudges)).unwrap();
        let pf = s.by_kind[&NudgeKind::PriorFailure];
        assert_eq!((pf.true_pos, pf.false_pos, pf.false_neg), (2, 0, 0));
        let nr = s.by_category[&(NudgeKind::PriorFailure, Category::NotReceived)];
        assert_eq!((nr.true_pos, nr.false_pos, nr.false_neg), (1, 1, 0));
        let ex = s.by_kind[&NudgeKind::ExplainBeforeApology];
        assert_eq!((ex.true_pos, ex.false_pos, ex.false_neg), (0, 1, 1));
        assert_eq!(ex.precision(), 0.0);
        assert_eq!(s.misses.len(), 2);
        assert_eq!(s.false_alarms.len(), 2);
    }

    #[test]
    fn unknown_labels_are_errors() {
        let labels = [(9, vec!["prior_failure:lost".to_string()])];
        let err = score(labels.iter().map(|(l, v)| (*l, v.as_slice())), &[]).unwrap_err();
        assert_eq!(err.line, 9);
    }

    #[test]
    fn a_comparison_lists_what_changed_both_ways() {
        let m = |line: u64, label: &str| Mismatch {
            file: "a.jsonl".into(),
            line,
            label: label.into(),
        };
        let old = Score {
            misses: vec![m(1, "prior_failure"), m(2, "prior_failure")],
            false_alarms: vec![m(5, "explain_before_apology")],
            ..Score::default()
        };
        let new = Score {
            misses: vec![m(2, "prior_failure"), m(3, "follow_up_promised")],
            false_alarms: vec![m(6, "explain_before_apology")],
            ..Score::default()
        };
        let c = Comparison::of(&old, &new);
        assert_eq!(c.fixed_misses, vec![m(1, "prior_failure")]);
        assert_eq!(c.new_misses, vec![m(3, "follow_up_promised")]);
        assert_eq!(c.fixed_false_alarms, vec![m(5, "explain_before_apology")]);
        assert_eq!(c.new_false_alarms, vec![m(6, "explain_before_apology")]);
    }
}
