//! The learned layer: small linear models beside the rules, over the same normalised words.
//!
//! Rules catch what someone wrote down; real people phrase the same failure in words nobody
//! listed. Each model is a logistic regression over hashed features of one message:
//!
//! - `w:` the normalised words, `b:` pairs of neighbouring words, `f:` the first words of a
//!   message (where an apology or an excuse usually starts);
//! - `{class}` the lexicon classes a word belongs to (the rules' generalisations);
//! - `c:` character 3- and 4-grams of words the lexicon does not know (the typo tail);
//! - `r:` / `k:` the rules and rule kinds that fired;
//! - `x:` the conversation so far: a problem is open, the agent already apologised, this is the
//!   first reply to a complaint, who spoke last, the message is a question.
//!
//! A detection fires when a rule fires or a model's probability passes its kind's threshold
//! (chosen by `backstop train` so that what the model adds on its own stays precise). Weights and
//! thresholds are data (`config/model.json`), checked at load and reloadable. Scoring is a sum of
//! table lookups: no allocation beyond the feature list, no I/O, no clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::lexicon::{Lexicon, UNKNOWN};
use super::model::{Category, Role};
use super::problem::Problem;
use super::rules::{Hit, RuleSet};
use super::text::Prepared;
use super::tokens::Tokens;

/// The model file format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Feature hash space: 2^18 buckets.
pub const HASH_BITS: u32 = 18;
/// How many first words of a message get their own feature.
const FIRST_WORDS: usize = 4;

/// What the models may use about the conversation before this message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub problem_open: bool,
    pub apologized: bool,
    /// The last message in the conversation was the customer's.
    pub customer_spoke_last: bool,
    /// An agent message answering an open problem no agent has replied to yet.
    pub first_reply: bool,
}

thread_local! {
    /// Buckets already taken by the message being read: a bit each, cleared after every message,
    /// so deduplicating features costs two bit operations instead of a sort.
    static SEEN: std::cell::RefCell<Vec<u64>> = std::cell::RefCell::new(vec![0; (1usize << HASH_BITS) / 64]);
}

/// FNV-1a, 64-bit: stable across platforms and versions, so a model file means the same
/// everywhere it is loaded.
fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(a: u64, b: u64) -> u64 {
    let mut h = a ^ b.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 31;
    h.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

fn bucket(h: u64) -> u32 {
    (h >> (64 - HASH_BITS)) as u32
}

const SEED_WORD: u64 = 0x77;
const SEED_FIRST: u64 = 0x66;
const SEED_CHAR: u64 = 0x63;
const SEED_RULE: u64 = 0x72;
const SEED_KIND: u64 = 0x6b;
const SEED_CONTEXT: u64 = 0x78;
const SEED_CLASS: u64 = 0x6c;

/// Hashes of the lexicon's canonical words, computed once per rule book so a message's features
/// cost a table lookup per known word.
#[derive(Debug, Clone)]
pub struct Featurizer {
    lexicon: Arc<Lexicon>,
    word_hashes: Vec<u64>,
    /// For each word, the lexicon classes it belongs to (as feature hashes and names): the
    /// model generalises through them the way rules do.
    word_classes: Vec<Vec<(u64, Arc<str>)>>,
}

/// One message's features: hashed indices (deduplicated: presence, not counts, measured better
/// on the development folds), and their names when asked for.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub indices: Vec<u32>,
    pub names: Option<Vec<(u32, String)>>,
}

impl Features {
    fn add(&mut self, h: u64, name: impl FnOnce() -> String) {
        let i = bucket(h);
        // Presence, not counts: each bucket once, in the order first seen.
        let (w, bit) = (i as usize / 64, 1u64 << (i % 64));
        let fresh = SEEN.with_borrow_mut(|seen| {
            let new = seen[w] & bit == 0;
            seen[w] |= bit;
            new
        });
        if !fresh {
            return;
        }
        if let Some(names) = &mut self.names {
            names.push((i, name()));
        }
        self.indices.push(i);
    }

    /// Clears this message's marks from the per-thread "seen" set.
    fn finish(&mut self) {
        SEEN.with_borrow_mut(|seen| {
            for &i in &self.indices {
                seen[i as usize / 64] &= !(1u64 << (i % 64));
            }
        });
    }
}

impl Featurizer {
    /// `classes`: each lexicon class with the single words it holds.
    pub fn new(lexicon: Arc<Lexicon>, classes: &[(String, Vec<u32>)]) -> Featurizer {
        let word_hashes = (0..lexicon.len() as u32)
            .map(|id| fnv(SEED_WORD, lexicon.word(id).as_bytes()))
            .collect();
        let mut word_classes: Vec<Vec<(u64, Arc<str>)>> = vec![Vec::new(); lexicon.len()];
        for (name, words) in classes {
            let h = fnv(SEED_CLASS, name.as_bytes());
            let name: Arc<str> = Arc::from(name.as_str());
            for &w in words {
                if let Some(list) = word_classes.get_mut(w as usize) {
                    if !list.iter().any(|(x, _)| *x == h) {
                        list.push((h, name.clone()));
                    }
                }
            }
        }
        Featurizer {
            lexicon,
            word_hashes,
            word_classes,
        }
    }

    fn word_hash(&self, tokens: &Tokens, i: usize, scan: &[u8]) -> u64 {
        let t = &tokens.tokens[i];
        if t.word != UNKNOWN {
            return self.word_hashes.get(t.word as usize).copied().unwrap_or(0);
        }
        let raw = &scan[t.start as usize..t.end as usize];
        let mut buf = [0u8; 48];
        if raw.len() <= buf.len() {
            let lower = &mut buf[..raw.len()];
            lower.copy_from_slice(raw);
            lower.make_ascii_lowercase();
            fnv(SEED_WORD, lower)
        } else {
            fnv(SEED_WORD, &raw.to_ascii_lowercase())
        }
    }

    fn word_name(&self, tokens: &Tokens, i: usize, scan: &[u8]) -> String {
        super::tokens::word_text(&tokens.tokens[i], scan, &self.lexicon).into_owned()
    }

    /// The features of one message (or of one of its sentences, `only`), for `role`'s models.
    #[allow(clippy::too_many_arguments)]
    pub fn features(
        &self,
        text: &Prepared<'_>,
        tokens: &Tokens,
        hits: &[Hit],
        rules: &RuleSet,
        situation: Standing,
        only: Option<usize>,
        named: bool,
    ) -> Features {
        let scan = text.scan();
        let mut f = Features {
            indices: Vec::with_capacity(tokens.tokens.len() * 3 + 16),
            names: named.then(Vec::new),
        };
        let sentences = match only {
            Some(s) => &tokens.sentences[s..=s.min(tokens.sentences.len().saturating_sub(1))],
            None => &tokens.sentences[..],
        };
        let mut seen = 0usize;
        for s in sentences {
            let mut prev: u64 = 0x5e47;
            let mut prev_name = String::from("<s>");
            for i in s.first as usize..s.last as usize {
                let h = self.word_hash(tokens, i, scan);
                let name = || self.word_name(tokens, i, scan);
                f.add(h, || format!("w:{}", name()));
                f.add(mix(prev, h), || format!("b:{prev_name} {}", name()));
                if seen < FIRST_WORDS && only.is_none() {
                    f.add(mix(h, SEED_FIRST), || format!("f:{}", name()));
                }
                seen += 1;
                if f.names.is_some() {
                    prev_name = name();
                }
                prev = h;
                let t = &tokens.tokens[i];
                if t.word == UNKNOWN {
                    self.char_grams(&scan[t.start as usize..t.end as usize], &mut f);
                } else if let Some(classes) = self.word_classes.get(t.word as usize) {
                    for (h, name) in classes {
                        f.add(*h, || format!("{{{name}}}"));
                    }
                }
            }
        }
        if only.is_none() {
            // The checklist's record-keeping kinds are not evidence for a detection: leaving them
            // out means tuning the checklist never moves what the models fire on.
            for hit in hits.iter().filter(|h| !rules.rule(h.rule).kind.is_record_keeping()) {
                let rule = rules.rule(hit.rule);
                f.add(fnv(SEED_RULE, rule.id.as_bytes()), || format!("r:{}", rule.id));
                let kind = format!("{:?}", rule.kind);
                f.add(fnv(SEED_KIND, kind.as_bytes()), || format!("k:{kind}"));
            }
        }
        let question = sentences.iter().any(|s| s.question);
        let flags = [
            ("problem_open", situation.problem_open),
            ("apologized", situation.apologized),
            ("customer_spoke_last", situation.customer_spoke_last),
            ("first_reply", situation.first_reply),
            ("question", question),
            ("open_unapologized", situation.problem_open && !situation.apologized),
        ];
        for (name, on) in flags {
            if on {
                f.add(fnv(SEED_CONTEXT, name.as_bytes()), || format!("x:{name}"));
            }
        }
        f.finish();
        f
    }

    fn char_grams(&self, raw: &[u8], f: &mut Features) {
        if raw.len() > 24 {
            return;
        }
        let mut word = Vec::with_capacity(raw.len() + 2);
        word.push(b'^');
        word.extend(raw.iter().map(u8::to_ascii_lowercase));
        word.push(b'$');
        for n in [3usize, 4] {
            for g in word.windows(n) {
                f.add(fnv(SEED_CHAR, g), || format!("c:{}", String::from_utf8_lossy(g)));
            }
        }
    }
}

/// One model as stored: its role, bias, threshold and sparse weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoredModel {
    pub role: Role,
    pub bias: f64,
    /// Probability at or above which the model detects on its own; `null` when no threshold met
    /// the precision target on the development folds (the model then never fires alone).
    pub threshold: Option<f64>,
    /// How the threshold was chosen, for people reading the file.
    pub note: String,
    /// `[index, weight]` pairs, by index.
    pub weights: Vec<(u32, f64)>,
}

/// The model file as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    pub hash_bits: u32,
    pub seed: u64,
    /// The L2 penalty it was trained with.
    pub l2: f64,
    /// The labelled files it was trained on, with their message counts.
    pub trained_on: Vec<(String, usize)>,
    /// Precision the thresholds were chosen for.
    pub precision_target: f64,
    /// `prior_failure`, `prior_failure:<category>`, `explain_before_apology`, `follow_up_promised`.
    pub models: BTreeMap<String, StoredModel>,
}

/// A model's weights: a dense table for models that score every message, sorted pairs for the
/// ones consulted rarely (the category models, models that never fire alone), to keep memory low.
#[derive(Debug, Clone)]
enum Weights {
    Dense(Vec<f32>),
    Sparse(Vec<(u32, f32)>),
}

impl Weights {
    fn get(&self, i: u32) -> f32 {
        match self {
            Weights::Dense(w) => w[i as usize],
            Weights::Sparse(w) => w.binary_search_by_key(&i, |(j, _)| *j).map_or(0.0, |k| w[k].1),
        }
    }
}

/// A loaded model.
#[derive(Debug, Clone)]
pub struct Scorer {
    pub bias: f32,
    pub threshold: Option<f32>,
    weights: Weights,
}

impl Scorer {
    /// The probability this model gives a message with these features.
    pub fn probability(&self, f: &Features) -> f32 {
        let z: f32 = self.bias + f.indices.iter().map(|&i| self.weights.get(i)).sum::<f32>();
        1.0 / (1.0 + (-z).exp())
    }

    pub fn fires(&self, f: &Features) -> Option<f32> {
        let p = self.probability(f);
        self.threshold.filter(|t| p >= *t).map(|_| p)
    }

    /// The features that pushed the score most, strongest first, with their weights.
    pub fn top(&self, f: &Features, n: usize) -> Vec<(String, f32)> {
        let mut named: Vec<(String, f32)> = f
            .names
            .iter()
            .flatten()
            .map(|(i, name)| (name.clone(), self.weights.get(*i)))
            .filter(|(_, w)| *w != 0.0)
            .collect();
        named.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        named.dedup_by(|a, b| a.0 == b.0);
        named.truncate(n);
        named
    }
}

/// The learned layer as the engine uses it.
#[derive(Debug, Clone)]
pub struct Learned {
    pub prior_failure: Option<Scorer>,
    pub categories: Vec<(Category, Scorer)>,
    pub explain_before_apology: Option<Scorer>,
    pub follow_up_promised: Option<Scorer>,
    pub file: ModelFile,
}

impl Learned {
    /// Reads and checks a model file, naming every problem.
    pub fn parse(file: &str, text: &str) -> Result<Learned, Vec<Problem>> {
        let here = |item: Option<String>, msg: String| Problem::new(file, None, item, msg);
        let stored: ModelFile = serde_json::from_str(text).map_err(|e| {
            vec![Problem::new(
                file,
                Some(e.line()),
                None,
                format!("not a Backstop model file: {e}"),
            )]
        })?;
        let mut problems = Vec::new();
        if stored.format != "backstop-model" {
            problems.push(here(
                None,
                format!("format {:?}: expected \"backstop-model\"", stored.format),
            ));
        }
        if stored.version != FORMAT_VERSION {
            problems.push(here(
                None,
                format!(
                    "version {} is not the version this build reads ({FORMAT_VERSION}); retrain it with `backstop train`",
                    stored.version
                ),
            ));
        }
        if stored.hash_bits != HASH_BITS {
            problems.push(here(
                None,
                format!("hash_bits {} (this build uses {HASH_BITS})", stored.hash_bits),
            ));
        }
        let scorer = |name: &str, m: &StoredModel, role: Role| -> Result<Scorer, Problem> {
            let item = Some(format!("model {name:?}"));
            if m.role != role {
                return Err(here(item, format!("role must be {}", role.as_str())));
            }
            if let Some(t) = m.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
                return Err(here(item, format!("threshold {t} is not a probability")));
            }
            let size = 1usize << HASH_BITS;
            let mut pairs = Vec::with_capacity(m.weights.len());
            for &(i, w) in &m.weights {
                if (i as usize) >= size || !w.is_finite() {
                    return Err(here(item, format!("weight [{i}, {w}] is out of range")));
                }
                pairs.push((i, w as f32));
            }
            pairs.sort_unstable_by_key(|(i, _)| *i);
            pairs.dedup_by_key(|(i, _)| *i);
            // Category models rank only after another model fired: they need no dense table.
            let weights = if m.threshold.is_some() && !name.contains(':') {
                let mut dense = vec![0.0f32; size];
                for &(i, w) in &pairs {
                    dense[i as usize] = w;
                }
                Weights::Dense(dense)
            } else {
                Weights::Sparse(pairs)
            };
            Ok(Scorer {
                bias: m.bias as f32,
                threshold: m.threshold.map(|t| t as f32),
                weights,
            })
        };
        let mut learned = Learned {
            prior_failure: None,
            categories: Vec::new(),
            explain_before_apology: None,
            follow_up_promised: None,
            file: stored.clone(),
        };
        for (name, m) in &stored.models {
            let category = name.strip_prefix("prior_failure:").and_then(Category::parse);
            let role = match name.as_str() {
                "explain_before_apology" | "follow_up_promised" => Role::Agent,
                "prior_failure" => Role::Customer,
                _ if category.is_some_and(|c| Category::PRIOR_FAILURE.contains(&c)) => Role::Customer,
                _ => {
                    problems.push(here(
                        Some(format!("model {name:?}")),
                        "unknown model name: expected prior_failure, prior_failure:<category>, explain_before_apology \
                         or follow_up_promised"
                            .into(),
                    ));
                    continue;
                }
            };
            let built = match scorer(name, m, role) {
                Ok(s) => s,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            match name.as_str() {
                "prior_failure" => learned.prior_failure = Some(built),
                "explain_before_apology" => learned.explain_before_apology = Some(built),
                "follow_up_promised" => learned.follow_up_promised = Some(built),
                _ => {
                    if let Some(c) = category {
                        learned.categories.push((c, built));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(learned)
        } else {
            Err(problems)
        }
    }

    /// The prior-failure category the category models rank first.
    pub fn category(&self, f: &Features) -> Option<Category> {
        self.categories
            .iter()
            .map(|(c, s)| (*c, s.probability(f)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_stable() {
        // A model file trained anywhere must mean the same everywhere: these values never change.
        assert_eq!(fnv(SEED_WORD, b"received"), fnv(SEED_WORD, b"received"));
        assert_eq!(bucket(fnv(0, b"")), bucket(0xcbf2_9ce4_8422_2325));
        assert_eq!(fnv(0, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn bad_model_files_are_named() {
        let e = Learned::parse("model.json", "{").unwrap_err();
        assert!(
            e[0].to_string().contains("model.json:1: not a Backstop model file"),
            "{}",
            e[0]
        );
        let text = r#"{"format": "backstop-model", "version": 99, "hash_bits": 18, "seed": 1, "l2": 1.0,
            "trained_on": [], "precision_target": 0.9,
            "models": {"prior_failure": {"role": "agent", "bias": 0, "threshold": 0.5, "note": "", "weights": []},
                       "nonsense": {"role": "agent", "bias": 0, "threshold": 2.0, "note": "", "weights": []}}}"#;
        let e: Vec<String> = Learned::parse("model.json", text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(e.iter().any(|p| p.contains("version 99 is not the version")), "{e:?}");
        assert!(
            e.iter()
                .any(|p| p.contains("model \"prior_failure\": role must be customer")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|p| p.contains("model \"nonsense\": unknown model name")),
            "{e:?}"
        );
    }
}
