//! Detection rules: parsing `config/rules.toml`, compiling them, and finding them in a message.
//!
//! A rule is a kind, a category and phrases in the phrase language ([`super::phrase`]), read over
//! the words the lexicon normalised ([`super::tokens`]). All of a role's phrases go into one word
//! index ([`super::automaton`]) that reads each message once and checks exactly only the phrases
//! its words could match; those are then run to find where they matched, for the evidence, the
//! sentence (questions, `unless`) and the order of cues. `unless` phrases are only looked for in
//! the sentences where their rule matched. Raw regexes remain as an
//! escape hatch: matched one by one over the scan text, and flagged by `backstop check`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;

use super::automaton::{Automaton, Cost, Entry, Guard, Matcher, Node, Warmth};
use super::learned::Featurizer;
use super::lexicon::{self, Lexicon};
use super::model::{Category, Role};
use super::phrase::{self, Ast};
use super::problem::{line_of, toml_problem, Problem, Problems};
use super::text::Prepared;
use super::timeframe::{TimeWords, Timeframe, TIME_CLASSES};
use super::tokens::Tokens;

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
    /// Agent: takes the problem on ("I'll sort this out", "leave it with me").
    Ownership,
    /// Agent: asks the customer for details (order number, email, "DM us your details").
    DetailsRequest,
    /// Agent: names what went wrong (the parcel, the wait, the missed call); an apology in the
    /// same sentence is then specific.
    FailureNamed,
    /// Agent: sends the customer to another team, person, company or channel.
    Transfer,
    /// Agent: one part of a warm hand-off; its category says which (`who`, `how`, `next`).
    Handoff,
    /// Agent: something that will happen for the customer (a call, a refund landing, a reship);
    /// with a time in the same sentence it is the checklist's "what happens next and when".
    NextStep,
    /// Agent: thanks the customer.
    Gratitude,
}

impl RuleKind {
    /// The kind as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::PriorFailure => "prior_failure",
            RuleKind::Complaint => "complaint",
            RuleKind::ReasonRequest => "reason_request",
            RuleKind::Apology => "apology",
            RuleKind::Explanation => "explanation",
            RuleKind::ApologyEraser => "apology_eraser",
            RuleKind::FollowUp => "follow_up",
            RuleKind::Ownership => "ownership",
            RuleKind::DetailsRequest => "details_request",
            RuleKind::FailureNamed => "failure_named",
            RuleKind::Transfer => "transfer",
            RuleKind::Handoff => "handoff",
            RuleKind::NextStep => "next_step",
            RuleKind::Gratitude => "gratitude",
        }
    }

    pub fn role(self) -> Role {
        match self {
            RuleKind::PriorFailure | RuleKind::Complaint | RuleKind::ReasonRequest => Role::Customer,
            _ => Role::Agent,
        }
    }

    /// Kinds that only feed the recovery checklist (not a detection of their own), so the learned
    /// layer does not read them.
    pub fn is_record_keeping(self) -> bool {
        matches!(self, RuleKind::NextStep | RuleKind::Gratitude)
    }

    /// Kinds whose matches in a question ("did the courier call you?") do not count: a question is
    /// not an excuse, and "shall I call you back?" is an offer, not a promise.
    fn ignores_questions(self) -> bool {
        matches!(self, RuleKind::Explanation | RuleKind::FollowUp | RuleKind::NextStep)
    }
}

/// The parts of a warm hand-off, as `handoff` rules name them in `category`: who the customer is
/// going to, how they get there, and what happens next.
pub const HANDOFF_PARTS: [&str; 3] = ["who", "how", "next"];

/// A rule as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    kind: RuleKind,
    category: Option<String>,
    description: Option<String>,
    #[serde(default)]
    phrases: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    /// Escape hatch: raw regular expressions over the message text, matched one by one.
    #[serde(default)]
    regex: Vec<String>,
    #[serde(default)]
    unless_regex: Vec<String>,
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

/// One phrase of a rule: as written, parsed, and compiled against the lexicon.
#[derive(Debug, Clone)]
pub struct Phrase {
    pub text: String,
    pub ast: Ast,
    pub node: Node,
    /// The line it is written on.
    pub line: usize,
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
    pub description: Option<String>,
    pub examples: Vec<String>,
    pub counter_examples: Vec<String>,
    /// Where the rule was written, for messages.
    pub file: String,
    pub line: usize,
    pub phrases: Vec<Phrase>,
    pub unless: Vec<Phrase>,
    /// Raw regular expressions (the escape hatch), as written.
    pub regex: Vec<String>,
    pub unless_regex: Vec<String>,
}

/// Where a rule fired in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`RuleSet::rules`].
    pub rule: usize,
    /// Span in the scan text.
    pub span: Range<usize>,
}

/// A raw regular expression and the rule it belongs to.
#[derive(Debug)]
struct Raw {
    rule: usize,
    unless: bool,
    regex: regex::bytes::Regex,
}

/// Where a phrase matched: its sentence and its span in the scan text.
type Place = (usize, Range<usize>);

/// Everything of one role: the automaton over its phrases plus its raw regexes.
#[derive(Debug)]
struct RoleMatcher {
    automaton: Automaton,
    raw: Vec<Raw>,
}

/// What compiling the book cost, per role, for `backstop check`.
#[derive(Debug, Clone)]
pub struct BookCost {
    pub role: Role,
    pub phrases: usize,
    pub cost: Cost,
    /// What reading the sample text took (the rules' own examples and a day of support).
    pub warm: Warmth,
}

/// The compiled rule book.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    lexicon: Arc<Lexicon>,
    customer: RoleMatcher,
    agent: RoleMatcher,
    /// Things `check` flags without refusing the book (raw regexes, long phrases).
    warnings: Vec<Problem>,
    /// The lexicon classes the engine itself reads, compiled.
    engine_classes: HashMap<&'static str, Node>,
    /// The timeframe vocabulary, compiled.
    time_words: TimeWords,
    /// Phrases a role may need to check exactly per message, on average over the sample.
    budget: f64,
    /// Hashes of the lexicon's words, for the learned layer's features.
    featurizer: Featurizer,
}

/// Lexicon classes the engine reads itself, and why; a lexicon without them is refused.
pub const ENGINE_CLASSES: [(&str, &str); 1] = [(
    "contact",
    "words for getting in touch (call, email, reply, hear back): a customer cue with one of them while \
     a promise is open is the customer chasing that promise",
)];

/// The budget when engine.toml sets none: phrases checked exactly per message, on average. Agent
/// messages carry the most rules (excuses, promises, ownership, details, hand-off parts); the
/// shipped book checks about 8 per agent message on `check`'s sample.
pub const DEFAULT_BUDGET: f64 = 10.0;

/// Longest phrase a lead should write; longer ones are flagged by `check`.
const LONG_PHRASE: usize = 200;

fn compile_raw(pattern: &str) -> Result<regex::bytes::Regex, String> {
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

/// Compiles a parsed phrase: words read through the lexicon, classes inlined.
fn compile_ast(ast: &Ast, lexicon: &mut Lexicon) -> Result<Node, String> {
    Ok(match ast {
        Ast::Word(w) => {
            let tokens = Tokens::read(w.as_bytes(), lexicon);
            let mut words = Vec::new();
            for t in &tokens.tokens {
                let piece = &w[t.start as usize..t.end as usize];
                let id = match t.word {
                    lexicon::DIGITS | lexicon::NTH => {
                        return Err(format!(
                            "{w:?}: numbers are read as a shape, not a word: write {{digits}} (any number) or {{nth}} (2nd, 3rd)"
                        ))
                    }
                    lexicon::UNKNOWN => lexicon.intern(&piece.to_ascii_lowercase()),
                    id => id,
                };
                words.push(Node::Word(id));
            }
            match words.len() {
                0 => return Err(format!("{w:?} is not a word")),
                1 => words.pop().expect("one word"),
                _ => Node::Seq(words),
            }
        }
        Ast::Stem(s) => Node::Stem(s.to_ascii_lowercase().into()),
        Ast::Class(name) => {
            if let Some(id) = Lexicon::built_in(name) {
                Node::Word(id)
            } else {
                let members = lexicon
                    .class(name)
                    .ok_or_else(|| format!("unknown class {{{name}}}{}", lexicon.suggest_class(name)))?
                    .parsed
                    .clone();
                let mut options = Vec::with_capacity(members.len());
                for m in &members {
                    options.push(compile_ast(m, lexicon)?);
                }
                if options.len() == 1 {
                    options.pop().expect("one member")
                } else {
                    Node::Alt(options)
                }
            }
        }
        Ast::Gap(n) => Node::Gap(*n),
        Ast::Optional(inner) => Node::Opt(Box::new(compile_ast(inner, lexicon)?)),
        Ast::Seq(items) => Node::Seq(
            items
                .iter()
                .map(|i| compile_ast(i, lexicon))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Alt(options) => Node::Alt(
            options
                .iter()
                .map(|i| compile_ast(i, lexicon))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// The line a phrase is written on: searched from its rule's line, the rule's line when not found.
fn line_of_phrase(text: &str, rule_offset: usize, phrase: &str) -> Option<usize> {
    text.get(rule_offset..)?
        .find(phrase)
        .map(|at| line_of(text, rule_offset + at))
}

impl RuleSet {
    /// Parses and compiles rule files given as `(file name, contents)` against a lexicon, within
    /// a budget (phrases checked exactly per message, checked by [`RuleSet::self_test`]),
    /// reporting every problem.
    pub fn parse(lexicon: &Lexicon, files: &[(String, String)], budget: f64) -> Result<RuleSet, Problems> {
        let mut lexicon = lexicon.clone();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
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
                let offset = spanned.span().start;
                let line = line_of(text, offset);
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
                let at = |l: usize, msg: String| Problem::new(file, Some(l), Some(format!("rule {:?}", def.id)), msg);
                let here = |msg: String| at(line, msg);
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
                    (RuleKind::Handoff, Some(part)) if HANDOFF_PARTS.contains(&part.as_str()) => {
                        (None, Some(part.clone()))
                    }
                    (RuleKind::Handoff, part) => {
                        problems.push(here(format!(
                            "handoff rules need a category naming the part of a warm hand-off they find, \
                             one of {}; found {}",
                            HANDOFF_PARTS.join(", "),
                            part.as_deref().map_or("none".to_string(), |p| format!("{p:?}"))
                        )));
                        (None, None)
                    }
                    (_, Some(_)) => {
                        problems.push(here(
                            "category is only used by prior_failure, explanation and handoff rules".into(),
                        ));
                        (None, None)
                    }
                    (_, None) => (None, None),
                };
                if def.phrases.is_empty() && def.regex.is_empty() {
                    problems.push(here("needs at least one phrase".into()));
                }
                let mut compiled: [Vec<Phrase>; 2] = [Vec::new(), Vec::new()];
                for (slot, (field, list)) in [("phrases", &def.phrases), ("unless", &def.unless)]
                    .into_iter()
                    .enumerate()
                {
                    for (i, p) in list.iter().enumerate() {
                        let l = line_of_phrase(text, offset, p).unwrap_or(line);
                        let ast = match phrase::parse(p) {
                            Ok(ast) => ast,
                            Err(e) => {
                                problems.push(at(l, format!("{field}[{i}] {p:?}: {e}")));
                                continue;
                            }
                        };
                        match compile_ast(&ast, &mut lexicon) {
                            Ok(node) => compiled[slot].push(Phrase {
                                text: p.clone(),
                                ast,
                                node,
                                line: l,
                            }),
                            Err(e) => problems.push(at(l, format!("{field}[{i}] {p:?}: {e}"))),
                        }
                        if p.len() > LONG_PHRASE {
                            warnings.push(at(
                                l,
                                format!(
                                    "{field}[{i}] is {} characters long; split it into phrases of under {LONG_PHRASE} \
                                     or move word lists into a class",
                                    p.len()
                                ),
                            ));
                        }
                    }
                }
                for (field, list) in [("regex", &def.regex), ("unless_regex", &def.unless_regex)] {
                    for (i, p) in list.iter().enumerate() {
                        let l = line_of_phrase(text, offset, p).unwrap_or(line);
                        match compile_raw(p) {
                            Err(e) => problems.push(at(l, format!("{field}[{i}]: {e}"))),
                            Ok(_) => warnings.push(at(
                                l,
                                format!(
                                    "{field}[{i}] is a raw regex: it is matched on its own, outside the word index, \
                                     and sees the message unnormalised; write a phrase if you can"
                                ),
                            )),
                        }
                    }
                }
                seen.entry(def.id.clone()).or_insert((file.clone(), line));
                if problems.len() == before {
                    let [phrases, unless] = compiled;
                    rules.push(Rule {
                        id: Arc::from(def.id.as_str()),
                        kind: def.kind,
                        category,
                        label,
                        description: def.description,
                        examples: def.examples,
                        counter_examples: def.counter_examples,
                        file: file.clone(),
                        line,
                        phrases,
                        unless,
                        regex: def.regex,
                        unless_regex: def.unless_regex,
                    });
                }
            }
        }
        if rules.is_empty() && problems.is_empty() {
            let names: Vec<_> = files.iter().map(|(f, _)| f.as_str()).collect();
            problems.push(Problem::new(&names.join(", "), None, None, "no rules defined"));
        }
        let mut engine_classes = HashMap::new();
        for (name, why) in ENGINE_CLASSES.into_iter().chain(TIME_CLASSES) {
            match compile_ast(&Ast::Class(name.to_string()), &mut lexicon) {
                Ok(node) => {
                    engine_classes.insert(name, node);
                }
                // Missing: that part of the engine reads nothing, and `check` says so.
                Err(_) => {
                    engine_classes.insert(name, Node::Alt(Vec::new()));
                    warnings.push(Problem::new(
                        "lexicon.toml",
                        None,
                        Some(format!("class {name:?}")),
                        format!("missing: the engine reads {{{name}}}, {why}; without it nothing matches there"),
                    ));
                }
            }
        }
        let mut numbers = Vec::new();
        for (ast, value) in lexicon.numbers().to_vec() {
            match compile_ast(&ast, &mut lexicon) {
                Ok(node) => numbers.push((node, value)),
                Err(e) => problems.push(Problem::new("lexicon.toml", None, Some(format!("number {ast}")), e)),
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let time_words = TimeWords::new(
            TIME_CLASSES
                .iter()
                .filter_map(|(name, _)| engine_classes.get(name).map(|n| (*name, n.clone())))
                .collect(),
            numbers,
        );
        // Each class's single words, for the learned layer's class features.
        let class_names: Vec<String> = lexicon.classes().map(|c| c.name.clone()).collect();
        let mut class_words = Vec::new();
        for name in class_names {
            if let Ok(node) = compile_ast(&Ast::Class(name.clone()), &mut lexicon) {
                let mut words = Vec::new();
                single_words(&node, &mut words);
                class_words.push((name, words));
            }
        }
        let lexicon = Arc::new(lexicon);
        let sample = |role: Role| -> Vec<(Tokens, Vec<u8>)> {
            sample_texts(&rules, role)
                .iter()
                .map(|text| {
                    let prepared = Prepared::new(text);
                    (Tokens::read(prepared.scan(), &lexicon), prepared.scan().to_vec())
                })
                .collect()
        };
        let customer = RoleMatcher::build(&rules, Role::Customer, &lexicon, &sample(Role::Customer));
        let agent = RoleMatcher::build(&rules, Role::Agent, &lexicon, &sample(Role::Agent));
        match (customer, agent) {
            (Ok(customer), Ok(agent)) => Ok(RuleSet {
                rules,
                featurizer: Featurizer::new(lexicon.clone(), &class_words),
                lexicon,
                customer,
                agent,
                warnings,
                engine_classes,
                time_words,
                budget,
            }),
            (c, a) => {
                for e in [c.err(), a.err()].into_iter().flatten() {
                    problems.push(e);
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

    /// Feature hashing for the learned layer, over this book's lexicon.
    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    /// The lexicon these rules were compiled with, including every word they use.
    pub fn lexicon(&self) -> &Arc<Lexicon> {
        &self.lexicon
    }

    /// Whether a sentence of the message holds a word of one of [`ENGINE_CLASSES`].
    pub fn sentence_has(&self, class: &str, tokens: &Tokens, scan: &[u8], sentence: usize) -> bool {
        let (Some(node), Some(s)) = (self.engine_classes.get(class), tokens.sentences.get(sentence)) else {
            return false;
        };
        let matcher = Matcher {
            tokens,
            scan,
            lexicon: Some(&self.lexicon),
        };
        matcher.first(node, std::slice::from_ref(s)).is_some()
    }

    /// The time a promise names, read from its sentence (`sentence` indexes `tokens.sentences`).
    pub fn timeframe(&self, text: &Prepared<'_>, tokens: &Tokens, sentence: usize) -> Option<Timeframe> {
        Timeframe::read(&self.time_words, &self.lexicon, text, tokens, sentence)
    }

    /// What `check` flags without refusing the book.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Each role's word index: phrases, symbols, size, build time, and what the sample cost.
    pub fn costs(&self) -> Vec<BookCost> {
        [(Role::Customer, &self.customer), (Role::Agent, &self.agent)]
            .into_iter()
            .map(|(role, m)| {
                let texts = sample_texts(&self.rules, role);
                let sample = self.read_all(&texts);
                BookCost {
                    role,
                    phrases: m.automaton.entries().len(),
                    cost: m.automaton.cost(),
                    warm: m.automaton.warm(sample.iter().map(|(p, t)| (t, p.scan()))),
                }
            })
            .collect()
    }

    fn read_all<'t>(&self, texts: &'t [String]) -> Vec<(Prepared<'t>, Tokens)> {
        texts
            .iter()
            .map(|text| {
                let prepared = Prepared::new(text);
                let tokens = self.tokens(&prepared);
                (prepared, tokens)
            })
            .collect()
    }

    /// The rules whose phrases the sample triggered most, as "id (N per 100 messages)".
    fn costliest(&self, role: Role) -> Vec<String> {
        let matcher = match role {
            Role::Customer => &self.customer,
            Role::Agent => &self.agent,
        };
        let texts = sample_texts(&self.rules, role);
        let sample = self.read_all(&texts);
        let counts = matcher
            .automaton
            .triggered_by_entry(sample.iter().map(|(p, t)| (t, p.scan())));
        let mut by_rule: HashMap<usize, usize> = HashMap::new();
        for (entry, n) in matcher.automaton.entries().iter().zip(counts) {
            *by_rule.entry(entry.owner).or_default() += n;
        }
        let mut ranked: Vec<(usize, usize)> = by_rule.into_iter().collect();
        ranked.sort_by_key(|&(rule, n)| (std::cmp::Reverse(n), rule));
        let per = sample.len().max(1) as f64;
        ranked
            .into_iter()
            .take(5)
            .map(|(rule, n)| {
                format!(
                    "{} ({:.0} per 100 messages)",
                    self.rules[rule].id,
                    n as f64 * 100.0 / per
                )
            })
            .collect()
    }

    /// Reads a message into words with this book's lexicon.
    pub fn tokens(&self, text: &Prepared<'_>) -> Tokens {
        Tokens::read(text.scan(), &self.lexicon)
    }

    /// The rules that fire on a message from `role`, earliest first, one hit per rule.
    pub fn scan(&self, role: Role, text: &Prepared<'_>, tokens: &Tokens) -> Vec<Hit> {
        let matcher = match role {
            Role::Customer => &self.customer,
            Role::Agent => &self.agent,
        };
        matcher.scan(&self.rules, &self.lexicon, text, tokens)
    }

    /// [`RuleSet::scan`] for a plain string (tests, examples, `check`).
    pub fn scan_text(&self, role: Role, text: &str) -> Vec<Hit> {
        let prepared = Prepared::new(text);
        let tokens = self.tokens(&prepared);
        self.scan(role, &prepared, &tokens)
    }

    /// Runs every rule's own examples and counter-examples, reporting the ones that misbehave, and
    /// reads sample text to check each role's automaton stays within its budget.
    pub fn self_test(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for cost in self.costs().into_iter().filter(|c| c.warm.checked > self.budget) {
            problems.push(Problem::new(
                "rules",
                None,
                None,
                format!(
                    "the {} rules are over budget: on the sample text each message needs {:.1} phrases checked \
                     word by word (budget {:.1}); the rules triggered most are {}. Start their phrases with rarer \
                     words or classes, or raise [rules] check_budget in engine.toml",
                    cost.role.as_str(),
                    cost.warm.checked,
                    self.budget,
                    self.costliest(cost.role).join(", ")
                ),
            ));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let fires = |text: &str| self.scan_text(rule.kind.role(), text).iter().any(|h| h.rule == index);
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

    /// Every phrase of `role`'s rules, compiled, for benchmarks that run them one at a time.
    pub fn phrase_nodes(&self, role: Role) -> Vec<&Node> {
        self.rules
            .iter()
            .filter(|r| r.kind.role() == role)
            .flat_map(|r| r.phrases.iter().chain(&r.unless).map(|p| &p.node))
            .collect()
    }
}

/// The single words a compiled class can be (its one-word members, through nested classes).
fn single_words(node: &Node, out: &mut Vec<u32>) {
    match node {
        Node::Word(w) => out.push(*w),
        Node::Alt(options) => options.iter().for_each(|o| single_words(o, out)),
        _ => {}
    }
}

/// Text a role's index is measured on: its rules' examples and counter-examples, and a built-in
/// day of support.
fn sample_texts(rules: &[Rule], role: Role) -> Vec<String> {
    let own = rules
        .iter()
        .filter(|r| r.kind.role() == role)
        .flat_map(|r| r.examples.iter().chain(&r.counter_examples).cloned());
    own.chain(sample_day(role)).collect()
}

/// Texts of one role from the built-in day of support.
fn sample_day(role: Role) -> impl Iterator<Item = String> {
    include_str!("../../../examples/support-day.jsonl")
        .lines()
        .filter_map(move |line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            if v.get("role")?.as_str()? != role.as_str() {
                return None;
            }
            Some(v.get("text")?.as_str()?.to_string())
        })
}

/// A rule's phrases as index entries. Its `unless` phrases stay out of the index: they
/// are only looked for in the sentences where the rule matched, so they cost nothing elsewhere.
fn entries_of(rule: &Rule, owner: usize) -> Vec<Entry> {
    rule.phrases
        .iter()
        .map(|p| Entry {
            node: p.node.clone(),
            owner,
        })
        .collect()
}

impl RoleMatcher {
    fn build(
        rules: &[Rule],
        role: Role,
        lexicon: &Arc<Lexicon>,
        sample: &[(Tokens, Vec<u8>)],
    ) -> Result<RoleMatcher, Problem> {
        let mut entries = Vec::new();
        let mut guards = Vec::new();
        let mut raw = Vec::new();
        for (index, rule) in rules.iter().enumerate().filter(|(_, r)| r.kind.role() == role) {
            entries.extend(entries_of(rule, index));
            guards.extend(rule.unless.iter().map(|u| Guard {
                node: u.node.clone(),
                owner: index,
            }));
            let all = rule
                .regex
                .iter()
                .map(|p| (false, p))
                .chain(rule.unless_regex.iter().map(|p| (true, p)));
            for (unless, p) in all {
                let regex = compile_raw(p)
                    .map_err(|e| Problem::new(&rule.file, Some(rule.line), Some(format!("rule {:?}", rule.id)), e))?;
                raw.push(Raw {
                    rule: index,
                    unless,
                    regex,
                });
            }
        }
        let automaton = Automaton::build(entries, guards, lexicon, sample)
            .map_err(|e| Problem::new("rules", None, None, format!("the {} rules: {e}", role.as_str())))?;
        Ok(RoleMatcher { automaton, raw })
    }

    fn scan(&self, rules: &[Rule], lexicon: &Lexicon, text: &Prepared<'_>, tokens: &Tokens) -> Vec<Hit> {
        let scan = text.scan();
        let findings = self.automaton.find(tokens, scan);
        let raw_hits: Vec<(&Raw, Vec<Range<usize>>)> = self
            .raw
            .iter()
            .filter_map(|r| {
                let spans: Vec<Range<usize>> = r.regex.find_iter(scan).map(|m| m.range()).collect();
                (!spans.is_empty()).then_some((r, spans))
            })
            .collect();
        if findings.found.is_empty() && raw_hits.iter().all(|(r, _)| r.unless) {
            return Vec::new();
        }
        let matcher = Matcher {
            tokens,
            scan,
            lexicon: Some(lexicon),
        };
        let entries = self.automaton.entries();
        // Where each rule's phrases (and raw regexes) matched, as (sentence, scan span).
        let mut found: Vec<(usize, Vec<Place>)> = Vec::new();
        let mut add = |rule: usize, spans: Vec<(usize, Range<usize>)>| match found.iter_mut().find(|(r, _)| *r == rule)
        {
            Some((_, all)) => all.extend(spans),
            None => found.push((rule, spans)),
        };
        for (e, ranges) in &findings.found {
            let entry = &entries[*e];
            let spans = ranges
                .iter()
                .map(|r| {
                    let (a, b) = (&tokens.tokens[r.start], &tokens.tokens[r.end - 1]);
                    (a.sentence as usize, a.start as usize..b.end as usize)
                })
                .collect();
            add(entry.owner, spans);
        }
        for (r, spans) in raw_hits.iter().filter(|(r, _)| !r.unless) {
            let spans = spans
                .iter()
                .map(|s| (tokens.sentence_of(s.start).unwrap_or(0), s.clone()))
                .collect();
            add(r.rule, spans);
        }
        let mut hits: Vec<Hit> = Vec::new();
        for (owner, mut spans) in found {
            let rule = &rules[owner];
            spans.sort_by_key(|(_, span)| (span.start, span.end));
            // `unless` phrases are only looked for where the rule matched: the sentences it matched in.
            let mut suppressed: Vec<usize> = Vec::new();
            for (sentence, _) in &spans {
                if suppressed.contains(sentence) {
                    continue;
                }
                let guarded = if findings.found.is_empty() {
                    // Only raw regexes matched: their rule's `unless` phrases run the slow way.
                    let one = std::slice::from_ref(&tokens.sentences[*sentence]);
                    rule.unless.iter().any(|u| matcher.first(&u.node, one).is_some())
                } else {
                    self.automaton.guarded(owner, &findings, tokens, *sentence)
                };
                if guarded {
                    suppressed.push(*sentence);
                }
            }
            for (r, raw_spans) in raw_hits.iter().filter(|(r, _)| r.unless && r.rule == owner) {
                debug_assert!(r.unless);
                suppressed.extend(raw_spans.iter().filter_map(|s| tokens.sentence_of(s.start)));
            }
            let first = spans.iter().find(|(sentence, _)| {
                let question = tokens.sentences[*sentence].question;
                let asked = rule.kind.ignores_questions() && question;
                !asked && !suppressed.contains(sentence)
            });
            if let Some((_, span)) = first {
                hits.push(Hit {
                    rule: owner,
                    span: span.clone(),
                });
            }
        }
        hits.sort_by_key(|h| (h.span.start, h.rule));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEXICON: &str = r#"
[spellings]
received = ["recieved", "recvd"]
"haven't" = ["havent", "hvnt"]
[classes]
negation = ["not", "never", "haven't", "hasn't", "have not"]
receive = ["received", "got"]
contact = ["call", "email"]
complaint_word = ["complaint", "complaints", "issue", "issues"]
"#;

    fn lexicon() -> Lexicon {
        Lexicon::parse(&[("lexicon.toml".into(), LEXICON.into())]).unwrap()
    }

    fn parse(text: &str) -> Result<RuleSet, Problems> {
        RuleSet::parse(
            &lexicon(),
            &[("rules.toml".to_string(), text.to_string())],
            DEFAULT_BUDGET,
        )
    }

    const BASIC: &str = r#"
[[rule]]
id = "nr"
kind = "prior_failure"
category = "not_received"
phrases = ["{negation} yet? ~1 {receive}"]
unless = ["any {complaint_word}"]
examples = ["I haven’t received it", "i hvnt even recvd it"]
counter_examples = ["we haven't received any complaints", "I received it"]

[[rule]]
id = "courier"
kind = "explanation"
category = "third_party"
phrases = ["the courier (lost | delayed)"]
"#;

    #[test]
    fn finds_rules_with_spans_in_order() {
        let set = parse(BASIC).unwrap();
        let hits = set.scan_text(Role::Customer, "Hi. I haven’t received my parcel");
        assert_eq!(hits.len(), 1);
        let text = Prepared::new("Hi. I haven’t received my parcel");
        assert_eq!(text.original(hits[0].span.clone()), "haven’t received");
        assert!(
            set.scan_text(Role::Agent, "Hi. I haven’t received my parcel")
                .is_empty(),
            "customer rules never read agent messages"
        );
        assert!(set.self_test().is_empty(), "{:?}", set.self_test());
    }

    #[test]
    fn typos_and_variants_match_through_the_lexicon() {
        let set = parse(BASIC).unwrap();
        for text in [
            "i havent recvd it",
            "I HVNT recieved",
            "i have not yet recieved",
            "never got it",
        ] {
            assert_eq!(set.scan_text(Role::Customer, text).len(), 1, "{text}");
        }
        assert!(
            set.scan_text(Role::Customer, "I havé not recievéd").is_empty(),
            "non-ASCII stays exact"
        );
    }

    #[test]
    fn unless_suppresses_only_its_own_sentence() {
        let set = parse(BASIC).unwrap();
        let hits = |t: &str| set.scan_text(Role::Customer, t).len();
        assert_eq!(hits("We haven't received any complaints"), 0);
        assert_eq!(hits("No complaints from me. But I haven't received it"), 1);
        assert_eq!(hits("I haven't received it. Not any complaints otherwise"), 1);
    }

    #[test]
    fn explanations_in_questions_do_not_count() {
        let set = parse(BASIC).unwrap();
        let hits = |t: &str| set.scan_text(Role::Agent, t).len();
        assert_eq!(hits("Did you hear the courier lost it?"), 0);
        assert_eq!(hits("The courier lost it."), 1);
    }

    #[test]
    fn quoted_words_never_fire() {
        let set = parse(BASIC).unwrap();
        assert!(set
            .scan_text(Role::Customer, "> I haven't received it\nthanks, all good")
            .is_empty());
    }

    #[test]
    fn raw_regex_is_an_escape_hatch_that_check_flags() {
        let set =
            parse("[[rule]]\nid = \"r\"\nkind = \"apology\"\nregex = ['''\\bsorr+y\\b''']\nexamples = [\"sorrrry\"]\n")
                .unwrap();
        assert_eq!(set.scan_text(Role::Agent, "so sorrrry about that").len(), 1);
        assert!(set.self_test().is_empty());
        let warnings: Vec<String> = set.warnings().iter().map(ToString::to_string).collect();
        assert!(
            warnings[0].contains("rules.toml:4: rule \"r\": regex[0] is a raw regex"),
            "{warnings:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let err = parse(
            r#"
[[rule]]
id = "a"
kind = "prior_failure"
category = "lost"
phrases = ["never (got"]

[[rule]]
id = "a"
kind = "apology"
phrases = ["sorry"]
patern = "typo"

[[rule]]
id = "b"
kind = "apology"
phrases = [
  "sorry",
  "{apolgy} for",
]
category = "x"

[[rule]]
id = "c"
kind = "follow_up"
phrases = ["call you back", "caf\u00e9", "in 3 days"]
regex = ['''(unclosed''']
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        let want = [
            "rules.toml:2: rule \"a\": unknown category \"lost\"",
            "rules.toml:6: rule \"a\": phrases[0] \"never (got\": '(' without a closing ')' (column 7)",
            "rules.toml:8: rule \"a\": unknown field `patern`",
            "rules.toml:14: rule \"b\": category is only used",
            "rules.toml:19: rule \"b\": phrases[1] \"{apolgy} for\": unknown class {apolgy}",
            // An escaped phrase is not found verbatim in the file: the rule's own line is named.
            "rules.toml:23: rule \"c\": phrases[1] \"caf\u{e9}\": unexpected 'é'",
            "rules.toml:26: rule \"c\": phrases[2] \"in 3 days\": \"3\": numbers are read as a shape",
            "rules.toml:27: rule \"c\": regex[0]: invalid regex",
        ];
        for w in want {
            assert!(text.contains(w), "missing {w:?} in\n{text}");
        }
        assert_eq!(err.0.len(), want.len(), "{text}");
    }

    #[test]
    fn duplicate_ids_name_the_first_definition() {
        let err = parse(
            "[[rule]]\nid = \"a\"\nkind = \"apology\"\nphrases = [\"sorry\"]\n\
             [[rule]]\nid = \"a\"\nkind = \"apology\"\nphrases = [\"sorry\"]\n",
        )
        .unwrap_err();
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

    #[test]
    fn a_book_over_budget_names_its_costliest_rules() {
        // "the" is in every sample sentence, so a phrase that needs only common words is checked
        // word by word on every message.
        let book = "[[rule]]\nid = \"small\"\nkind = \"apology\"\nphrases = [\"sorry\"]\n\
                    [[rule]]\nid = \"common\"\nkind = \"apology\"\nphrases = [\"(the | a | to | you | i) ~6 (the | a | to | you | i | it)\"]\n";
        let set = RuleSet::parse(&lexicon(), &[("rules.toml".into(), book.into())], 1.0).unwrap();
        let text: Vec<String> = set.self_test().iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("the agent rules are over budget")
                    && t.contains("the rules triggered most are common")),
            "{text:?}"
        );
    }

    #[test]
    fn the_lexicon_must_hold_the_classes_the_engine_reads() {
        let lexicon = Lexicon::parse(&[("lexicon.toml".into(), "[spellings]\n".into())]).unwrap();
        let book = "[[rule]]\nid = \"a\"\nkind = \"apology\"\nphrases = [\"sorry\"]\n";
        let set = RuleSet::parse(&lexicon, &[("rules.toml".into(), book.into())], DEFAULT_BUDGET).unwrap();
        let warnings: Vec<String> = set.warnings().iter().map(ToString::to_string).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("class \"contact\": missing: the engine reads {contact}")),
            "{warnings:?}"
        );
    }

    #[test]
    fn failing_examples_are_reported() {
        let set = parse(
            "[[rule]]\nid = \"a\"\nkind = \"apology\"\nphrases = [\"sorry\"]\nexamples = [\"my apologies\"]\ncounter_examples = [\"so sorry\"]\n",
        )
        .unwrap();
        let problems = set.self_test();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    /// The automaton must report exactly the phrases that match when each is run alone.
    mod agreement {
        use super::*;
        use proptest::prelude::*;

        /// The project's config folder: `lexicon.toml` then `lexicon/*.toml`, or `rules/*.toml`.
        fn shipped_files(kind: &str) -> Vec<(String, String)> {
            let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
            let mut files = Vec::new();
            if kind == "lexicon" {
                let core = config.join("lexicon.toml");
                files.push((core.display().to_string(), std::fs::read_to_string(&core).unwrap()));
            }
            let mut paths: Vec<_> = std::fs::read_dir(config.join(kind))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for p in paths {
                files.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
            files
        }

        fn shipped() -> &'static RuleSet {
            static SET: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
            SET.get_or_init(|| {
                let lexicon = Lexicon::parse(&shipped_files("lexicon")).expect("shipped lexicon");
                RuleSet::parse(&lexicon, &shipped_files("rules"), DEFAULT_BUDGET).expect("shipped rules")
            })
        }

        fn agree(text: &str) -> Result<(), TestCaseError> {
            let set = shipped();
            let prepared = Prepared::new(text);
            let tokens = set.tokens(&prepared);
            for matcher in [&set.customer, &set.agent] {
                let findings = matcher.automaton.find(&tokens, prepared.scan());
                let fast: Vec<usize> = findings.found.iter().map(|(e, _)| *e).collect();
                let alone = Matcher {
                    tokens: &tokens,
                    scan: prepared.scan(),
                    lexicon: Some(set.lexicon()),
                };
                let entries = matcher.automaton.entries();
                let slow: Vec<usize> = (0..entries.len())
                    .filter(|&i| alone.first(&entries[i].node, &tokens.sentences).is_some())
                    .collect();
                prop_assert_eq!(&fast, &slow, "text {:?}", text);
                // Where the index found something, `unless` phrases agree with running them alone.
                if !findings.found.is_empty() {
                    for (owner, rule) in set.rules.iter().enumerate().filter(|(_, r)| !r.unless.is_empty()) {
                        for s in 0..tokens.sentences.len() {
                            let one = std::slice::from_ref(&tokens.sentences[s]);
                            let slow = rule.unless.iter().any(|u| alone.first(&u.node, one).is_some());
                            if rule.kind.role() == matcher_role(set, matcher) {
                                let fast = matcher.automaton.guarded(owner, &findings, &tokens, s);
                                prop_assert_eq!(fast, slow, "unless of {} in {:?}", rule.id, text);
                            }
                        }
                    }
                }
            }
            Ok(())
        }

        fn matcher_role(set: &RuleSet, m: &RoleMatcher) -> Role {
            if std::ptr::eq(m, &set.customer) {
                Role::Customer
            } else {
                Role::Agent
            }
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
                "3",
                "2nd",
                "deliverd",
                "follow-up",
            ]);
            prop::collection::vec(vocab, 0..40).prop_map(|w| w.join(" "))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            #[test]
            fn automata_agree_with_phrases_run_alone(text in prop_oneof![words(), any::<String>()]) {
                agree(&text)?;
            }
        }

        #[test]
        fn agree_on_the_example_day() {
            for line in include_str!("../../../examples/support-day.jsonl").lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                agree(v["text"].as_str().unwrap()).unwrap();
            }
        }
    }
}
