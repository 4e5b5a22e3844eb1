//! Detection quality on the hand-written, labelled transcripts in `tests/fixtures/`.
//!
//! Each file is replayed on its own, with the clock run on three days past its last message so
//! every open promise reaches its reminder and overdue notice; the nudges are scored against the
//! labels. The test prints precision and recall per kind and category, and fails if any kind falls
//! below 0.9 on either. The fixtures are a measuring stick: fix rules for the paraphrase, never
//! for the line.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use backstop::eval::{evaluate, Evaluation, Score};
use backstop::transcript::parse_all;

const FLOOR: f64 = 0.9;

/// The coaching moments added after the first three (`details_before_ownership`,
/// `generic_apology`, `cold_transfer`) are held to their target on the fixtures (precision 0.9,
/// recall 0.85; this floor is the lower of the two) and, on the hold-out, to a lower precision
/// that guards against regressions at the figures measured there (see the README).
const NEW_MOMENTS: [&str; 3] = ["details_before_ownership", "generic_apology", "cold_transfer"];
const NEW_MOMENT_FLOOR: f64 = 0.85;
const NEW_MOMENT_HOLD_OUT_PRECISION: f64 = 0.6;

/// The recovery checklist, judged per step over `checklist.jsonl`'s conversations: a regression
/// guard at the figures measured when it landed. Most misses there are failure cues the rules do
/// not see, which leave the whole checklist unopened.
const CHECKLIST_FLOOR: f64 = 0.7;
const CHECKLIST_HOLD_OUT_PRECISION: f64 = 0.6;

fn is_new_moment(kind: &str) -> bool {
    NEW_MOMENTS.iter().any(|m| kind.ends_with(m))
}

/// Replays every `.jsonl` in `dir` and scores it; prints misses and false alarms. Returns the
/// score and the number of conversations.
fn score_dir(dir: &str) -> (Evaluation, usize) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sources = common::shipped();
    let dir = root.join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    let engine = sources.engine().expect("shipped config loads");
    let mut total = Evaluation::default();
    let mut conversations = BTreeSet::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let records = parse_all(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        // `evaluate` replays each file on a fresh engine sharing the compiled rules.
        let e = evaluate(&engine, &name, &text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (part, s) in [
            ("detection", &e.detections),
            ("nudge", &e.nudges),
            ("checklist", &e.checklist.as_score()),
        ] {
            for m in &s.misses {
                println!(
                    "{part} miss   {name}:{} {} | {}",
                    m.line,
                    m.label,
                    text_of(&records, m.line)
                );
            }
            for m in &s.false_alarms {
                println!(
                    "{part} extra  {name}:{} {} | {}",
                    m.line,
                    m.label,
                    text_of(&records, m.line)
                );
            }
        }
        conversations.extend(records.iter().map(|(_, r)| r.conversation.clone()));
        total.merge(e);
    }
    println!(
        "\n{} conversations in {} files\ndetections\n{}\nnudges\n{}\nrecovery checklist\n{}",
        conversations.len(),
        files.len(),
        total.detections,
        total.nudges,
        total.checklist
    );
    (total, conversations.len())
}

fn each_kind(score: &Score, part: &str, check: impl Fn(&str, &backstop::eval::Counts)) {
    for (kind, c) in &score.by_kind {
        check(&format!("{part} {kind}"), c);
    }
}

#[test]
fn precision_and_recall_per_kind_meet_the_floor() {
    let (total, conversations) = score_dir("tests/fixtures");
    assert!(
        conversations >= 60,
        "the fixtures hold at least 60 conversations, found {conversations}"
    );
    for (part, score) in [("detections", &total.detections), ("nudges", &total.nudges)] {
        each_kind(score, part, |kind, c| {
            assert!(c.true_pos + c.false_neg > 0, "{kind}: no labelled examples");
            let floor = if is_new_moment(kind) { NEW_MOMENT_FLOOR } else { FLOOR };
            let precision_floor = FLOOR.max(floor);
            assert!(
                c.precision() >= precision_floor && c.recall() >= floor,
                "{kind}: precision {:.3}, recall {:.3} (floor {floor})",
                c.precision(),
                c.recall()
            );
        });
    }
}

#[test]
fn the_recovery_checklist_is_judged_step_by_step() {
    let (total, _) = score_dir("tests/fixtures");
    let c = &total.checklist;
    assert!(c.conversations >= 15, "checklist conversations: {}", c.conversations);
    assert_eq!(c.by_step.len(), 6, "every step is scored");
    for (step, counts) in &c.by_step {
        assert!(counts.true_pos + counts.false_neg > 0, "{step}: no labelled example");
        assert!(
            counts.f1() >= CHECKLIST_FLOOR,
            "{step}: precision {:.3}, recall {:.3} (F1 floor {CHECKLIST_FLOOR})",
            counts.precision(),
            counts.recall()
        );
    }
    let (blind, _) = score_dir("tests/holdout");
    for (step, counts) in &blind.checklist.by_step {
        assert!(
            counts.precision() >= CHECKLIST_HOLD_OUT_PRECISION,
            "{step}: precision {:.3} on the hold-out",
            counts.precision()
        );
    }
}

/// The blind hold-out (never tuned on): precision must hold on unseen text; recall is reported.
#[test]
fn precision_holds_on_the_blind_hold_out() {
    let (total, _) = score_dir("tests/holdout");
    for (part, score) in [("detections", &total.detections), ("nudges", &total.nudges)] {
        each_kind(score, part, |kind, c| {
            let floor = if is_new_moment(kind) {
                NEW_MOMENT_HOLD_OUT_PRECISION
            } else {
                FLOOR
            };
            assert!(
                c.precision() >= floor,
                "{kind}: precision {:.3} on the hold-out (floor {floor})",
                c.precision()
            );
        });
    }
}

fn text_of(records: &[(u64, backstop::transcript::Record)], line: u64) -> String {
    records
        .iter()
        .find(|(l, _)| *l == line)
        .map(|(_, r)| r.text.chars().take(140).collect())
        .unwrap_or_default()
}
