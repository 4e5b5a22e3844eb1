//! Detection rules: parsing `config/rules.toml`, compiling them, and finding them in a message.
//!
//! A role's patterns compile into multi-pattern lazy DFAs (regex-automata's hybrid DFA in "report
//! every pattern" mode), each reading the message once. Only the few patterns that did match are
//! then run alone to find where, for evidence and order. Patterns run in byte/ASCII mode over the
//! scan text from [`super::text`], which is what keeps the automata fast and still exact for
//! non-ASCII messages.
//!
//! Why several automata per role rather than one: a DFA state records every partial match in
//! flight, and a rule book full of typo-tolerant alternations and word gaps ("refund … not
//! credited") makes the number of such combinations explode when hundreds of patterns share one
//! automaton. Measured on the shared corpus with the shipped rules: one automaton per role needs
//! ~300 MiB of cache to stop thrashing, and with any smaller cache falls to a few thousand messages
//! per second; groups of a dozen patterns with a 4 MiB cache each stay near 50–80k messages/s in
//! about 50 MiB. See the README's benchmark section.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::Deserialize;

use super::model::{Category, Role};
use super::problem::{line_of, toml_problem, Problem, Problems};
use super::text::Prepared;

/// What a rule recognises. The kind decides whose messages it reads and what the engine does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Customer: the company already failed them. Needs a prior-failure category.
    PriorFailure,
    /// Customer: something is wrong. Opens a problem the agent should apologize for.
    Complaint,
    /// Customer: asks why. An explanation after an apology is then welcome.
    ReasonRequest,
    /// Agent: an apology.
    Apology,
    /// Agent: a reason, excuse or blame.
    Explanation,
    /// Agent: "…but it's not my fault" — takes back an apology just given.
    ApologyEraser,
    /// Agent: a promise to contact the customer again.
    FollowUp,
}

impl RuleKind {
    pub fn role(self) -> Role {
        match self {
            RuleKind::PriorFailure | RuleKind::Complaint | RuleKind::ReasonRequest => Role::Customer,
            _ => Role::Agent,
        }
    }

    /// Kinds whose matches in a question ("did the courier call you?") do not count: a question is
    /// not an excuse, and "shall I call you back?" is an offer, not a promise.
    fn ignores_questions(self) -> bool {
        matches!(self, RuleKind::Explanation | RuleKind::FollowUp)
    }
}

/// A rule as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    kind: RuleKind,
    category: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    patterns: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    counter_examples: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<toml::Table>>,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Arc<str>,
    pub kind: RuleKind,
    /// For prior-failure rules, the cue's category.
    pub category: Option<Category>,
    /// For explanation rules, an optional free label (`third_party`, `policy`…).
    pub label: Option<String>,
    pub examples: Vec<String>,
    pub counter_examples: Vec<String>,
    /// Where the rule was written, for messages.
    pub file: String,
    pub line: usize,
    patterns: Vec<String>,
    unless: Vec<String>,
}

/// Where a rule fired in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`RuleSet::rules`].
    pub rule: usize,
    /// Span in the scan text.
    pub span: Range<usize>,
}

/// One compiled pattern and what it belongs to.
#[derive(Debug)]
struct Compiled {
    rule: usize,
    unless: bool,
    alone: regex::bytes::Regex,
    source: String,
}

/// Per-thread search state: one lazy-DFA cache and one result set per group.
struct Scratch {
    caches: Vec<Cache>,
    sets: Vec<PatternSet>,
}

type ScratchPool =
    Pool<Scratch, Box<dyn Fn() -> Scratch + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>>;

/// A group of consecutive patterns sharing one automaton.
struct Group {
    dfa: DFA,
    /// Index in [`RoleMatcher::patterns`] of the group's first pattern.
    first: usize,
}

/// All patterns of one role.
struct RoleMatcher {
    groups: Arc<Vec<Group>>,
    scratch: ScratchPool,
    patterns: Vec<Compiled>,
    /// For each rule of this role: indexes of its `unless` patterns in `patterns`.
    unless_of: HashMap<usize, Vec<usize>>,
}

impl std::fmt::Debug for RoleMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleMatcher")
            .field("groups", &self.groups.len())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

/// The compiled rule book.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    customer: RoleMatcher,
    agent: RoleMatcher,
}

/// Patterns per automaton: small enough that partial matches in flight do not multiply into
/// millions of states, large enough that a message is not read too many times.
const GROUP_SIZE: usize = 12;

/// Lazy-DFA cache per automaton and thread. When it fills, it is cleared and rebuilt rather than
/// abandoned for a slower engine, so a burst of unusual text costs time, never correctness.
const DFA_CACHE: usize = 4 << 20;

fn syntax_config() -> syntax::Config {
    syntax::Config::new().case_insensitive(true).unicode(false).utf8(false)
}

fn compile_alone(pattern: &str) -> Result<regex::bytes::Regex, String> {
    if !pattern.is_ascii() {
        return Err(
            "pattern is not ASCII: write plain ASCII (curly quotes and dashes in messages \
                    are folded to ' \" - before matching, accented letters match \\w)"
                .into(),
        );
    }
    regex::bytes::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .unicode(false)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

impl RuleSet {
    /// Parses and compiles rule files given as `(file name, contents)`, reporting every problem.
    pub fn parse(files: &[(String, String)]) -> Result<RuleSet, Problems> {
        let mut problems = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for (file, text) in files {
            let parsed: RulesFile = match toml::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(toml_problem(file, text, &e));
                    continue;
                }
            };
            for spanned in parsed.rule {
                let line = line_of(text, spanned.span().start);
                let table = spanned.into_inner();
                let fallback_id = table.get("id").and_then(|v| v.as_str()).map(str::to_string);
                let item = |id: &Option<String>| id.as_ref().map(|id| format!("rule {id:?}"));
                let def: RuleDef = match toml::Value::Table(table).try_into() {
                    Ok(d) => d,
                    Err(e) => {
                        problems.push(Problem::new(file, Some(line), item(&fallback_id), e.message().trim()));
                        continue;
                    }
                };
                let here = |msg: String| Problem::new(file, Some(line), Some(format!("rule {:?}", def.id)), msg);
                let before = problems.len();
                if def.id.is_empty()
                    || !def
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
                {
                    problems.push(here("id must be lowercase letters, digits, '_', '.' or '-'".into()));
                }
                if let Some((other_file, other_line)) = seen.get(&def.id) {
                    problems.push(here(format!(
                        "duplicate id: already defined at {other_file}:{other_line}"
                    )));
                }
                let (category, label) = match (def.kind, &def.category) {
                    (RuleKind::PriorFailure, Some(c)) => match Category::parse(c) {
                        Some(cat) if Category::PRIOR_FAILURE.contains(&cat) => (Some(cat), None),
                        _ => {
                            let known: Vec<_> = Category::PRIOR_FAILURE.iter().map(|c| c.as_str()).collect();
                            problems.push(here(format!(
                                "unknown category {c:?}; expected one of {}",
                                known.join(", ")
                            )));
                            (None, None)
                        }
                    },
                    (RuleKind::PriorFailure, None) => {
                        problems.push(here("prior_failure rules need a category".into()));
                        (None, None)
                    }
                    (RuleKind::Explanation, label) => (None, label.clone()),
                    (_, Some(_)) => {
                        problems.push(here(
                            "category is only used by prior_failure and explanation rules".into(),
                        ));
                        (None, None)
                    }
                    (_, None) => (None, None),
                };
                if def.patterns.is_empty() {
                    problems.push(here("needs at least one pattern".into()));
                }
                for (field, list) in [("patterns", &def.patterns), ("unless", &def.unless)] {
                    for (i, p) in list.iter().enumerate() {
                        if let Err(e) = compile_alone(p) {
                            problems.push(here(format!("{field}[{i}]: {e}")));
                        }
                    }
                }
                seen.entry(def.id.clone()).or_insert((file.clone(), line));
                if problems.len() == before {
                    rules.push(Rule {
                        id: Arc::from(def.id.as_str()),
                        kind: def.kind,
                        category,
                        label,
                        examples: def.examples,
                        counter_examples: def.counter_examples,
                        file: file.clone(),
                        line,
                        patterns: def.patterns,
                        unless: def.unless,
                    });
                }
            }
        }
        if rules.is_empty() && problems.is_empty() {
            let names: Vec<_> = files.iter().map(|(f, _)| f.as_str()).collect();
            problems.push(Problem::new(&names.join(", "), None, None, "no rules defined"));
        }
        let customer = RoleMatcher::build(&rules, Role::Customer);
        let agent = RoleMatcher::build(&rules, Role::Agent);
        match (customer, agent) {
            (Ok(customer), Ok(agent)) if problems.is_empty() => Ok(RuleSet { rules, customer, agent }),
            (c, a) => {
                for e in [c.err(), a.err()].into_iter().flatten() {
                    problems.push(Problem::new("rules", None, None, e));
                }
                Err(Problems(problems))
            }
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules[index]
    }

    /// The rules that fire on a message from `role`, earliest first, one hit per rule.
    pub fn scan(&self, role: Role, text: &Prepared<'_>) -> Vec<Hit> {
        let matcher = match role {
            Role::Customer => &self.customer,
            Role::Agent => &self.agent,
        };
        matcher.scan(&self.rules, text)
    }

    /// Runs every rule's own examples and counter-examples, reporting the ones that misbehave.
    pub fn self_test(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let fires = |text: &str| {
                let prepared = Prepared::new(text);
                self.scan(rule.kind.role(), &prepared).iter().any(|h| h.rule == index)
            };
            let here =
                |msg: String| Problem::new(&rule.file, Some(rule.line), Some(format!("rule {:?}", rule.id)), msg);
            for example in &rule.examples {
                if !fires(example) {
                    problems.push(here(format!("example does not fire: {example:?}")));
                }
            }
            for counter in &rule.counter_examples {
                if fires(counter) {
                    problems.push(here(format!("counter-example fires: {counter:?}")));
                }
            }
        }
        problems
    }

    /// Every pattern of `role`'s rules, for benchmarks that compare matching strategies.
    pub fn patterns(&self, role: Role) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|r| r.kind.role() == role)
            .flat_map(|r| r.patterns.iter().chain(&r.unless).map(String::as_str))
            .collect()
    }
}

impl RoleMatcher {
    fn build(rules: &[Rule], role: Role) -> Result<RoleMatcher, String> {
        let mut patterns = Vec::new();
        let mut unless_of: HashMap<usize, Vec<usize>> = HashMap::new();
        // Group boundaries fall between rules, so a rule's patterns share an automaton.
        let mut starts = vec![0];
        for (index, rule) in rules.iter().enumerate().filter(|(_, r)| r.kind.role() == role) {
            if patterns.len() - starts.last().copied().unwrap_or(0) >= GROUP_SIZE {
                starts.push(patterns.len());
            }
            let all = rule
                .patterns
                .iter()
                .map(|p| (false, p))
                .chain(rule.unless.iter().map(|p| (true, p)));
            for (unless, p) in all {
                if unless {
                    unless_of.entry(index).or_default().push(patterns.len());
                }
                patterns.push(Compiled {
                    rule: index,
                    unless,
                    alone: compile_alone(p)?,
                    source: p.clone(),
                });
            }
        }
        starts.push(patterns.len());
        let mut groups = Vec::new();
        for bounds in starts.windows(2).filter(|w| w[0] < w[1]) {
            let sources: Vec<&str> = patterns[bounds[0]..bounds[1]]
                .iter()
                .map(|c| c.source.as_str())
                .collect();
            let dfa = DFA::builder()
                .syntax(syntax_config())
                .thompson(thompson::Config::new().utf8(false))
                .configure(
                    DFA::config()
                        .match_kind(MatchKind::All)
                        .cache_capacity(DFA_CACHE)
                        .minimum_cache_clear_count(None),
                )
                .build_many(&sources)
                .map_err(|e| format!("compiling the {role:?} rules failed: {e}"))?;
            groups.push(Group { dfa, first: bounds[0] });
        }
        let groups = Arc::new(groups);
        let for_pool = groups.clone();
        let scratch: ScratchPool = Pool::new(Box::new(move || Scratch {
            caches: for_pool.iter().map(|g| g.dfa.create_cache()).collect(),
            sets: for_pool.iter().map(|g| PatternSet::new(g.dfa.pattern_len())).collect(),
        }));
        Ok(RoleMatcher {
            groups,
            scratch,
            patterns,
            unless_of,
        })
    }

    /// Indexes (into `patterns`) of every pattern that matches somewhere in `haystack`.
    fn matching(&self, haystack: &[u8]) -> Vec<usize> {
        let mut scratch = self.scratch.get();
        let Scratch { caches, sets } = &mut *scratch;
        let input = Input::new(haystack);
        let mut out = Vec::new();
        for ((group, cache), set) in self.groups.iter().zip(caches.iter_mut()).zip(sets.iter_mut()) {
            set.clear();
            match group.dfa.try_which_overlapping_matches(cache, &input, set) {
                Ok(()) => out.extend(set.iter().map(|pid| group.first + pid.as_usize())),
                // The automaton never quits on ASCII scan text; should it ever, the slow exact path.
                Err(_) => {
                    let end = group.first + group.dfa.pattern_len();
                    out.extend((group.first..end).filter(|&i| self.patterns[i].alone.is_match(haystack)));
                }
            }
        }
        out
    }

    fn scan(&self, rules: &[Rule], text: &Prepared<'_>) -> Vec<Hit> {
        let haystack = text.scan();
        let matched = self.matching(haystack);
        if matched.is_empty() {
            return Vec::new();
        }
        let mut hits: Vec<Hit> = Vec::new();
        for &index in &matched {
            let compiled = &self.patterns[index];
            if compiled.unless {
                continue;
            }
            let rule = &rules[compiled.rule];
            let suppressors: Vec<Range<usize>> = self
                .unless_of
                .get(&compiled.rule)
                .into_iter()
                .flatten()
                .filter(|u| matched.contains(u))
                .flat_map(|&u| self.patterns[u].alone.find_iter(haystack).map(|m| m.range()))
                .collect();
            let first = compiled.alone.find_iter(haystack).map(|m| m.range()).find(|span| {
                let sentence = text.sentence(span.start);
                if rule.kind.ignores_questions() && sentence.question {
                    return false;
                }
                !suppressors
                    .iter()
                    .any(|u| u.start < sentence.span.end && u.end > sentence.span.start)
            });
            let Some(span) = first else { continue };
            match hits.iter_mut().find(|h| h.rule == compiled.rule) {
                Some(h) if h.span.start > span.start => h.span = span,
                Some(_) => {}
                None => hits.push(Hit {
                    rule: compiled.rule,
                    span,
                }),
            }
        }
        hits.sort_by_key(|h| (h.span.start, h.rule));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleSet, Problems> {
        RuleSet::parse(&[("rules.toml".to_string(), text.to_string())])
    }

    const BASIC: &str = r#"
[[rule]]
id = "nr"
kind = "prior_failure"
category = "not_received"
patterns = ['''\bhave(?:n'?t| not) (?:yet )?received\b''']
unless = ['''\bany complaints\b''']
examples = ["I haven’t received it"]
counter_examples = ["we haven't received any complaints"]

[[rule]]
id = "courier"
kind = "explanation"
category = "third_party"
patterns = ['''\bthe courier (?:lost|delayed)\b''']
"#;

    #[test]
    fn finds_rules_with_spans_in_order() {
        let set = parse(BASIC).unwrap();
        let text = Prepared::new("Hi. I haven’t received my parcel");
        let hits = set.scan(Role::Customer, &text);
        assert_eq!(hits.len(), 1);
        assert_eq!(text.original(hits[0].span.clone()), "haven’t received");
        assert!(
            set.scan(Role::Agent, &text).is_empty(),
            "customer rules never read agent messages"
        );
        assert!(set.self_test().is_empty(), "{:?}", set.self_test());
    }

    #[test]
    fn unless_suppresses_only_its_own_sentence() {
        let set = parse(BASIC).unwrap();
        let hits = |t: &str| set.scan(Role::Customer, &Prepared::new(t)).len();
        assert_eq!(hits("We haven't received any complaints"), 0);
        assert_eq!(hits("No complaints from me. But I haven't received it"), 1);
        assert_eq!(hits("I haven't received it. Not any complaints otherwise"), 1);
    }

    #[test]
    fn explanations_in_questions_do_not_count() {
        let set = parse(BASIC).unwrap();
        let hits = |t: &str| set.scan(Role::Agent, &Prepared::new(t)).len();
        assert_eq!(hits("Did you hear the courier lost it?"), 0);
        assert_eq!(hits("The courier lost it."), 1);
    }

    #[test]
    fn quoted_words_never_fire() {
        let set = parse(BASIC).unwrap();
        assert!(set
            .scan(
                Role::Customer,
                &Prepared::new("> I haven't received it\nthanks, all good")
            )
            .is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let err = parse(
            r#"
[[rule]]
id = "a"
kind = "prior_failure"
category = "lost"
patterns = ['''(unclosed''']

[[rule]]
id = "a"
kind = "apology"
patterns = ["sorry"]
patern = "typo"

[[rule]]
id = "b"
kind = "apology"
patterns = ["sorry"]
category = "x"

[[rule]]
id = "c"
kind = "follow_up"
patterns = ["call you back", "caf\u00e9"]
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("rules.toml:2: rule \"a\": unknown category \"lost\""),
            "{text}"
        );
        assert!(
            text.contains("rules.toml:2: rule \"a\": patterns[0]: invalid regex"),
            "{text}"
        );
        assert!(
            text.contains("rules.toml:8: rule \"a\": unknown field `patern`"),
            "{text}"
        );
        assert!(
            text.contains("rules.toml:14: rule \"b\": category is only used"),
            "{text}"
        );
        assert!(
            text.contains("rules.toml:20: rule \"c\": patterns[1]: pattern is not ASCII"),
            "{text}"
        );
        assert_eq!(err.0.len(), 5, "{text}");
    }

    #[test]
    fn duplicate_ids_name_the_first_definition() {
        let err = parse("[[rule]]\nid = \"a\"\nkind = \"apology\"\npatterns = [\"sorry\"]\n[[rule]]\nid = \"a\"\nkind = \"apology\"\npatterns = [\"sorry\"]\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("rules.toml:5: rule \"a\": duplicate id: already defined at rules.toml:1"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = parse("[[rule]]\nid = \"a\"\nkind = apology\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(3), "{err}");
    }

    /// The grouped automata must find exactly the patterns that match when each is run alone.
    mod agreement {
        use super::*;
        use proptest::prelude::*;

        fn shipped() -> &'static RuleSet {
            static SET: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
            SET.get_or_init(|| {
                let text = include_str!("../../config/rules.toml");
                RuleSet::parse(&[("config/rules.toml".into(), text.into())]).expect("shipped rules")
            })
        }

        fn agree(text: &str) -> Result<(), TestCaseError> {
            let prepared = Prepared::new(text);
            for matcher in [&shipped().customer, &shipped().agent] {
                let mut fast = matcher.matching(prepared.scan());
                fast.sort_unstable();
                let slow: Vec<usize> = (0..matcher.patterns.len())
                    .filter(|&i| matcher.patterns[i].alone.is_match(prepared.scan()))
                    .collect();
                prop_assert_eq!(fast, slow, "text {:?}", text);
            }
            Ok(())
        }

        fn words() -> impl Strategy<Value = String> {
            let vocab = prop::sample::select(vec![
                "i",
                "haven't",
                "havent",
                "not",
                "received",
                "recvd",
                "my",
                "refund",
                "parcel",
                "still",
                "waiting",
                "on",
                "you",
                "said",
                "u'd",
                "call",
                "back",
                "sorry",
                "but",
                "the",
                "courier",
                "system",
                "was",
                "down",
                "policy",
                "third",
                "time",
                "transferred",
                "app",
                "website",
                "chatbot",
                "i'll",
                "get",
                "email",
                "tomorrow",
                "by",
                "3pm",
                "because",
                "due",
                "to",
                "so",
                "it",
                "is",
                "delayed",
                "again",
                "never",
                "nobody",
                "got",
                "week",
                "already",
                "’",
                "😡",
                "é",
                ".",
                "?",
                "!",
                ",",
            ]);
            prop::collection::vec(vocab, 0..40).prop_map(|w| w.join(" "))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            #[test]
            fn automata_agree_with_patterns_run_alone(text in prop_oneof![words(), any::<String>()]) {
                agree(&text)?;
            }
        }

        #[test]
        fn agree_on_the_example_day() {
            for line in include_str!("../../examples/support-day.jsonl").lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                agree(v["text"].as_str().unwrap()).unwrap();
            }
        }
    }

    #[test]
    fn failing_examples_are_reported() {
        let set = parse(
            "[[rule]]\nid = \"a\"\nkind = \"apology\"\npatterns = ['''\\bsorry\\b''']\nexamples = [\"my apologies\"]\ncounter_examples = [\"so sorry\"]\n",
        )
        .unwrap();
        let problems = set.self_test();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
