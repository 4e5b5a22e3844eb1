//! Training the learned layer from labelled transcripts (`backstop train`).
//!
//! Every message of the training files is read through the rules as the engine reads it, with the
//! conversation's standing before it, and turned into the same hashed features the engine scores
//! at run time. For each kind a logistic regression is fitted by L-BFGS (argmin), with an L2
//! penalty, over the features seen at least twice. The threshold of each kind is chosen on
//! out-of-fold probabilities (five folds by conversation): among messages the rules missed, the
//! lowest probability at which what the model adds is still at least `precision_target` precise.
//!
//! Deterministic: folds come from a fixed hash of the conversation id and the seed, the optimiser
//! is deterministic, weights are rounded and written in a fixed order, so the same files give the
//! same model file, byte for byte.

use std::collections::{BTreeMap, HashMap};

use argmin::core::{CostFunction, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use crate::engine::{
    Category, Engine, Learned, Message, MessageRef, ModelFile, NudgeKind, Prepared, Role, Standing, StoredModel,
    FORMAT_VERSION, HASH_BITS,
};
use crate::transcript::Record;

/// The precision what the model adds on its own must keep on the development folds.
pub const PRECISION_TARGET: f64 = 0.9;
const FOLDS: u64 = 5;
/// The L2 penalty when none is given.
pub const DEFAULT_L2: f64 = 3.0;
const MAX_ITERS: u64 = 300;
/// Fewer true positives than this above a threshold is too little evidence to fire on.
const MIN_SUPPORT: usize = 3;

/// What one message gives training.
#[derive(Debug, Clone)]
struct Example {
    role: Role,
    features: Vec<u32>,
    conversation: String,
    labels: Vec<String>,
    /// Kinds the rules detected on this message.
    rules: Vec<NudgeKind>,
}

impl Example {
    fn has(&self, kind: NudgeKind) -> bool {
        self.labels.iter().any(|l| l.split(':').next() == Some(kind.as_str()))
    }

    fn category(&self) -> Option<Category> {
        self.labels
            .iter()
            .find_map(|l| l.strip_prefix("prior_failure:").and_then(Category::parse))
    }
}

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{file}: {problem}")]
    Refused { file: String, problem: String },
    #[error("{file}: {source}")]
    Line {
        file: String,
        source: crate::transcript::LineError,
    },
    #[error("the optimiser failed for {kind}: {message}")]
    Optimiser { kind: String, message: String },
}

/// A training file: its name (for the model file's record) and its text.
pub type TrainingFile = (String, String);

/// Refuses text the shipped model must never learn from: the blind set, and the airline tweets
/// (CC BY-NC-SA: measured, never trained on).
fn refuse(file: &str, text: &str) -> Result<(), TrainError> {
    let refused = |problem: &str| TrainError::Refused {
        file: file.to_string(),
        problem: problem.to_string(),
    };
    if file.contains("blind") {
        return Err(refused(
            "this is a blind set: it is scored once at the end and never trained on",
        ));
    }
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v.get("source").and_then(|s| s.as_str()) == Some("airline-tweets") {
                return Err(refused(
                    "holds airline tweets (CC BY-NC-SA 4.0): use them to measure, never to train the shipped model",
                ));
            }
        }
    }
    Ok(())
}

/// Reads training files into examples, through `engine`'s rules (its learned layer is not used).
fn examples(engine: &Engine, files: &[TrainingFile]) -> Result<Vec<Example>, TrainError> {
    let mut out = Vec::new();
    for (file, text) in files {
        refuse(file, text)?;
        let records = crate::transcript::parse_all(text).map_err(|source| TrainError::Line {
            file: file.clone(),
            source,
        })?;
        // A fresh, rules-only engine per file: conversations of two files never mix.
        let engine = engine.with_settings(engine.settings().clone()).with_learned(None);
        let rules = engine.rules();
        let mut clock = None;
        // Promises move on as they would in replay, so the engine reads each message in the
        // state replay would read it in.
        let mut timeline = crate::replay::Timeline::new();
        for (line, record) in &records {
            let at = clock.map_or(record.ts, |c: jiff::Timestamp| c.max(record.ts));
            clock = Some(at);
            let _ = timeline.fire_due(&engine, at);
            out.push(example(&engine, &rules, *line, record, at));
            timeline.book(&engine, &record.conversation);
        }
    }
    Ok(out)
}

fn example(
    engine: &Engine,
    rules: &crate::engine::RuleSet,
    line: u64,
    record: &Record,
    at: jiff::Timestamp,
) -> Example {
    let text = Prepared::new(&record.text);
    let tokens = rules.tokens(&text);
    let hits = rules.scan(record.role, &text, &tokens);
    let context = engine.context(&record.conversation);
    let standing = context.map_or_else(Standing::default, |c| Standing {
        problem_open: c.problem_open,
        apologized: c.apologized,
        customer_spoke_last: c.last_role == Some(Role::Customer),
        first_reply: record.role == Role::Agent && c.problem_open && c.last_role == Some(Role::Customer),
    });
    let features = rules
        .featurizer()
        .features(&text, &tokens, &hits, rules, standing, None, false)
        .indices;
    let reading = engine.read(
        &Message {
            conversation: &record.conversation,
            author: &record.author,
            role: record.role,
            text: &record.text,
            at,
            source: MessageRef(line),
        },
        false,
    );
    Example {
        role: record.role,
        features,
        conversation: record.conversation.clone(),
        labels: record.labels.clone(),
        rules: reading.detections.iter().map(|d| d.kind).collect(),
    }
}

/// Logistic regression with an L2 penalty over compact feature indices.
struct Problem<'a> {
    rows: &'a [Vec<u32>],
    ys: &'a [f64],
    dims: usize,
    l2: f64,
}

impl Problem<'_> {
    fn margin(&self, w: &[f64], row: &[u32]) -> f64 {
        w[self.dims] + row.iter().map(|&j| w[j as usize]).sum::<f64>()
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, w: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let mut loss = 0.0;
        for (row, &y) in self.rows.iter().zip(self.ys) {
            let z = self.margin(w, row);
            // log(1 + e^z) - y z, computed without overflow.
            loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z;
        }
        let penalty: f64 = w[..self.dims].iter().map(|x| x * x).sum::<f64>() * self.l2 / 2.0;
        Ok(loss + penalty)
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, w: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        let mut g: Vec<f64> = w[..self.dims].iter().map(|x| x * self.l2).collect();
        g.push(0.0);
        for (row, &y) in self.rows.iter().zip(self.ys) {
            let p = 1.0 / (1.0 + (-self.margin(w, row)).exp());
            let d = p - y;
            for &j in row {
                g[j as usize] += d;
            }
            g[self.dims] += d;
        }
        Ok(g)
    }
}

/// Fits one model; returns compact weights with the bias last.
fn fit(kind: &str, rows: &[Vec<u32>], ys: &[f64], dims: usize, l2: f64) -> Result<Vec<f64>, TrainError> {
    let problem = Problem { rows, ys, dims, l2 };
    let fail = |e: argmin::core::Error| TrainError::Optimiser {
        kind: kind.to_string(),
        message: e.to_string(),
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
        .with_tolerance_grad(1e-6)
        .map_err(fail)?
        .with_tolerance_cost(1e-9)
        .map_err(fail)?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(vec![0.0; dims + 1]).max_iters(MAX_ITERS))
        .run()
        .map_err(fail)?;
    let state = result.state();
    Ok(state
        .best_param
        .clone()
        .or_else(|| state.param.clone())
        .unwrap_or_else(|| vec![0.0; dims + 1]))
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn fold_of(conversation: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in conversation.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 33) % FOLDS
}

/// One kind's training set: which examples, and their targets.
struct Task {
    name: String,
    role: Role,
    rows: Vec<usize>,
    ys: Vec<f64>,
    /// Rows the rules already detect (the threshold is chosen on the others).
    covered: Vec<bool>,
    /// Category models rank; they have no threshold.
    ranks: bool,
}

/// How to train.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seeds the development folds.
    pub seed: u64,
    /// The L2 penalty on the weights.
    pub l2: f64,
}

/// Trains the learned layer; `report` receives one line per kind.
pub fn train(
    engine: &Engine,
    files: &[TrainingFile],
    options: Options,
    mut report: impl FnMut(String),
) -> Result<ModelFile, TrainError> {
    let seed = options.seed;
    let examples = examples(engine, files)?;
    let mut tasks = Vec::new();
    let customers: Vec<usize> = (0..examples.len())
        .filter(|&i| examples[i].role == Role::Customer)
        .collect();
    let agents: Vec<usize> = (0..examples.len())
        .filter(|&i| examples[i].role == Role::Agent)
        .collect();
    let binary = |kind: NudgeKind, rows: &[usize]| Task {
        name: kind.as_str().to_string(),
        role: kind_role(kind),
        rows: rows.to_vec(),
        ys: rows
            .iter()
            .map(|&i| f64::from(u8::from(examples[i].has(kind))))
            .collect(),
        covered: rows.iter().map(|&i| examples[i].rules.contains(&kind)).collect(),
        ranks: false,
    };
    tasks.push(binary(NudgeKind::PriorFailure, &customers));
    let cued: Vec<usize> = customers
        .iter()
        .copied()
        .filter(|&i| examples[i].category().is_some())
        .collect();
    for c in Category::PRIOR_FAILURE {
        tasks.push(Task {
            name: format!("prior_failure:{c}"),
            role: Role::Customer,
            rows: cued.clone(),
            ys: cued
                .iter()
                .map(|&i| f64::from(u8::from(examples[i].category() == Some(c))))
                .collect(),
            covered: vec![false; cued.len()],
            ranks: true,
        });
    }
    tasks.push(binary(NudgeKind::ExplainBeforeApology, &agents));
    tasks.push(binary(NudgeKind::FollowUpPromised, &agents));

    let mut models = BTreeMap::new();
    for task in tasks {
        let positives = task.ys.iter().filter(|y| **y > 0.5).count();
        if positives < MIN_SUPPORT || positives == task.ys.len() {
            report(format!(
                "{}: {positives} positive examples, too few to learn from; left out",
                task.name
            ));
            continue;
        }
        // Compact feature space: features seen at least twice among this task's rows.
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &i in &task.rows {
            for &f in &examples[i].features {
                *counts.entry(f).or_default() += 1;
            }
        }
        let mut kept: Vec<u32> = counts.into_iter().filter(|(_, n)| *n >= 2).map(|(f, _)| f).collect();
        kept.sort_unstable();
        let compact: HashMap<u32, u32> = kept.iter().enumerate().map(|(j, &f)| (f, j as u32)).collect();
        let rows: Vec<Vec<u32>> = task
            .rows
            .iter()
            .map(|&i| {
                examples[i]
                    .features
                    .iter()
                    .filter_map(|f| compact.get(f).copied())
                    .collect()
            })
            .collect();
        let dims = kept.len();
        let (threshold, note) = if task.ranks {
            (
                None,
                "ranks prior-failure categories; no threshold of its own".to_string(),
            )
        } else {
            // Out-of-fold probabilities, by conversation.
            let mut oof = vec![0.0; rows.len()];
            for fold in 0..FOLDS {
                let in_fold = |r: usize| fold_of(&examples[task.rows[r]].conversation, seed) == fold;
                let train_rows: Vec<usize> = (0..rows.len()).filter(|&r| !in_fold(r)).collect();
                let x: Vec<Vec<u32>> = train_rows.iter().map(|&r| rows[r].clone()).collect();
                let y: Vec<f64> = train_rows.iter().map(|&r| task.ys[r]).collect();
                let w = fit(&task.name, &x, &y, dims, options.l2)?;
                for (r, p) in oof.iter_mut().enumerate().filter(|(r, _)| in_fold(*r)) {
                    *p = sigmoid(w[dims] + rows[r].iter().map(|&j| w[j as usize]).sum::<f64>());
                }
            }
            choose_threshold(&oof, &task.ys, &task.covered)
        };
        let w = fit(&task.name, &rows, &task.ys, dims, options.l2)?;
        let mut weights: Vec<(u32, f64)> = kept
            .iter()
            .zip(&w)
            .map(|(&f, &x)| (f, round(x)))
            .filter(|(_, x)| x.abs() >= 1e-3)
            .collect();
        weights.sort_unstable_by_key(|(f, _)| *f);
        report(format!(
            "{}: {} examples, {positives} positive, {dims} features; {note}",
            task.name,
            rows.len()
        ));
        models.insert(
            task.name.clone(),
            StoredModel {
                role: task.role,
                bias: round(w[dims]),
                threshold,
                note,
                weights,
            },
        );
    }
    Ok(ModelFile {
        format: "backstop-model".into(),
        version: FORMAT_VERSION,
        hash_bits: HASH_BITS,
        seed,
        l2: options.l2,
        trained_on: files
            .iter()
            .map(|(name, text)| (name.clone(), text.lines().filter(|l| !l.trim().is_empty()).count()))
            .collect(),
        precision_target: PRECISION_TARGET,
        models,
    })
}

fn kind_role(kind: NudgeKind) -> Role {
    match kind {
        NudgeKind::PriorFailure => Role::Customer,
        _ => Role::Agent,
    }
}

/// Four significant decimals: enough for the scores, and the file stays small and stable.
fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The lowest out-of-fold probability at which the model's additions (messages the rules did not
/// detect) keep the target precision with enough support; the most recall among those.
fn choose_threshold(oof: &[f64], ys: &[f64], covered: &[bool]) -> (Option<f64>, String) {
    let mut open: Vec<(f64, bool)> = oof
        .iter()
        .zip(ys)
        .zip(covered)
        .filter(|(_, c)| !**c)
        .map(|((p, y), _)| (*p, *y > 0.5))
        .collect();
    open.sort_by(|a, b| b.0.total_cmp(&a.0));
    let missed = open.iter().filter(|(_, y)| *y).count();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best: Option<(f64, usize, usize)> = None;
    for (k, (p, y)) in open.iter().enumerate() {
        if *y {
            tp += 1;
        } else {
            fp += 1;
        }
        // Only cut between distinct probabilities.
        if open.get(k + 1).is_some_and(|(next, _)| next == p) {
            continue;
        }
        let precision = tp as f64 / (tp + fp) as f64;
        if precision >= PRECISION_TARGET && tp >= MIN_SUPPORT && best.is_none_or(|(_, t, _)| tp > t) {
            best = Some((*p, tp, fp));
        }
    }
    match best {
        Some((p, tp, fp)) => (
            Some(round(p)),
            format!(
                "fires alone at p >= {:.4}: on the development folds it adds {tp} of the {missed} the rules missed, with {fp} false",
                round(p)
            ),
        ),
        None => (
            None,
            format!(
                "no threshold kept precision {PRECISION_TARGET} with {MIN_SUPPORT} or more finds on the development folds ({missed} missed by the rules); it never fires alone"
            ),
        ),
    }
}

/// Writes a model file as `backstop train` ships it: the header one field a line, each model on
/// one line (its weights are long), fixed order.
pub fn to_json(model: &ModelFile) -> String {
    let field = |v: &dyn erased::Json| v.json();
    let mut out = String::from("{\n");
    out.push_str(&format!("  \"format\": {},\n", field(&model.format)));
    out.push_str(&format!("  \"version\": {},\n", field(&model.version)));
    out.push_str(&format!("  \"hash_bits\": {},\n", field(&model.hash_bits)));
    out.push_str(&format!("  \"seed\": {},\n", field(&model.seed)));
    out.push_str(&format!("  \"l2\": {},\n", field(&model.l2)));
    out.push_str(&format!("  \"trained_on\": {},\n", field(&model.trained_on)));
    out.push_str(&format!(
        "  \"precision_target\": {},\n",
        field(&model.precision_target)
    ));
    out.push_str("  \"models\": {\n");
    let n = model.models.len();
    for (i, (name, m)) in model.models.iter().enumerate() {
        let comma = if i + 1 < n { "," } else { "" };
        out.push_str(&format!("    {}: {}{comma}\n", field(name), field(m)));
    }
    out.push_str("  }\n}\n");
    out
}

mod erased {
    /// Compact JSON of any serialisable value.
    pub trait Json {
        fn json(&self) -> String;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("model parts serialise")
        }
    }
}

/// Checks that a freshly trained model loads as the engine will load it.
pub fn check(name: &str, text: &str) -> Result<Learned, Vec<crate::engine::Problem>> {
    Learned::parse(name, text)
}

/// The kinds whose detection F1 drops from `old` to `new`, as "kind old -> new": a retrained
/// model with any of these does not replace the running one.
pub fn dropped(old: &crate::eval::Score, new: &crate::eval::Score) -> Vec<String> {
    new.by_kind
        .iter()
        .filter_map(|(kind, n)| {
            let before = old.by_kind.get(kind).map_or(0.0, |c| c.f1());
            (n.f1() + 1e-9 < before).then(|| format!("{kind} {before:.3} -> {:.3}", n.f1()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{Counts, Score};

    fn score(kind: NudgeKind, tp: usize, fp: usize, fn_: usize) -> Score {
        let mut s = Score::default();
        s.by_kind.insert(
            kind,
            Counts {
                true_pos: tp,
                false_pos: fp,
                false_neg: fn_,
            },
        );
        s
    }

    #[test]
    fn the_gate_names_every_kind_that_got_worse() {
        let old = score(NudgeKind::PriorFailure, 8, 2, 2);
        assert!(dropped(&old, &score(NudgeKind::PriorFailure, 9, 1, 1)).is_empty());
        assert!(dropped(&old, &old).is_empty(), "equal is not worse");
        let worse = dropped(&old, &score(NudgeKind::PriorFailure, 6, 2, 4));
        assert_eq!(worse, ["prior_failure 0.800 -> 0.667"]);
    }

    #[test]
    fn thresholds_keep_the_precision_target_with_support() {
        // Out-of-fold probabilities of messages the rules missed: 4 true above 0.8, one false at 0.7.
        let oof = [0.95, 0.9, 0.85, 0.81, 0.7, 0.2, 0.99];
        let ys = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0];
        let covered = [false, false, false, false, false, false, true];
        let (t, note) = choose_threshold(&oof, &ys, &covered);
        assert_eq!(t, Some(0.81), "{note}");
        assert!(
            note.contains("adds 4 of the 5 the rules missed, with 0 false"),
            "{note}"
        );
        let (none, note) = choose_threshold(&[0.9, 0.8], &[0.0, 1.0], &[false, false]);
        assert_eq!(none, None, "{note}");
    }

    #[test]
    fn the_blind_set_and_the_airline_tweets_are_refused() {
        assert!(refuse("tests/real/ibm/blind.jsonl", "").is_err());
        let airline = r#"{"conversation": "a", "source": "airline-tweets", "text": "x"}"#;
        let e = refuse("mine.jsonl", airline).unwrap_err().to_string();
        assert!(e.contains("CC BY-NC-SA"), "{e}");
        assert!(refuse("tests/real/abcd/dev.jsonl", r#"{"source": "abcd"}"#).is_ok());
    }
}
