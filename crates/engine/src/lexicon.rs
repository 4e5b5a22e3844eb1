//! The lexicon: how Backstop reads words before any rule sees them.
//!
//! `config/lexicon.toml` maps spellings, typos and txt-speak onto one canonical word (`recvd`,
//! `recieved` → `received`; `u` → `you`) and names word classes (`{negation}`, `{parcel}`) that
//! rules use instead of spelling every variant out. Text preparation tokenises a message once and
//! reads every token through this table, so rules, the learned model and the timeframe reader all
//! see the same normalised words. A token the lexicon does not know stays as it was written; a
//! token with non-ASCII letters never matches an ASCII word, so accented text stays exact.
//!
//! Pure data plus lookups: no I/O. Loading reports every problem with its file, line and entry.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::phrase::{self, Ast};
use super::problem::{line_of, toml_problem, Problem, Problems};

/// A canonical word's number. Ids below [`FIRST_WORD`] are the built-in token shapes.
pub type WordId = u32;

/// Any run of digits: "3", "2015", "8004337300".
pub const DIGITS: WordId = 0;
/// A numeric ordinal: "2nd", "3rd", "21st".
pub const NTH: WordId = 1;
/// A web address: "https://…", "www.…".
pub const LINK: WordId = 2;
/// An @handle.
pub const MENTION: WordId = 3;
/// The first id of a real word.
pub const FIRST_WORD: WordId = 4;
/// A token the lexicon does not know.
pub const UNKNOWN: WordId = WordId::MAX;

/// Built-in classes for token shapes, usable in rules and in the lexicon's own classes.
pub const BUILT_IN: [(&str, WordId, &str); 4] = [
    ("digits", DIGITS, "any number written in digits: 3, 24, 2015"),
    ("nth", NTH, "an ordinal written in digits: 2nd, 3rd, 21st"),
    ("link", LINK, "a web address: https://…, www.…"),
    ("mention", MENTION, "an @handle"),
];

/// Longest token looked up in the lexicon; longer ones are read as unknown words.
const MAX_WORD: usize = 40;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    #[serde(default)]
    spellings: BTreeMap<String, toml::Spanned<Vec<String>>>,
    #[serde(default)]
    classes: BTreeMap<String, toml::Spanned<ClassEntry>>,
    #[serde(default)]
    numbers: BTreeMap<String, toml::Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClassEntry {
    Members(Vec<String>),
    Described { description: String, members: Vec<String> },
}

/// A word class: a name for a set of words or short phrases.
#[derive(Debug, Clone)]
pub struct Class {
    pub name: String,
    pub description: Option<String>,
    /// The members as written.
    pub members: Vec<String>,
    /// The members parsed (classes inside are still names; see [`Lexicon::expand`]).
    pub parsed: Vec<Ast>,
    pub file: String,
    pub line: usize,
}

/// Spellings and classes, plus every word the rules use.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    /// Canonical words by id (the first [`FIRST_WORD`] are the shapes' names).
    words: Vec<Box<str>>,
    /// Canonical words to their ids.
    ids: FxHashMap<Box<str>, WordId>,
    /// Every known spelling, lowercase, to its canonical word.
    surface: FxHashMap<Box<[u8]>, WordId>,
    /// Spelling variants as written, canonical word → variants (for `check --explain`).
    variants: BTreeMap<WordId, Vec<String>>,
    classes: BTreeMap<String, Class>,
    /// Counts written as words ("two", "a couple of", "half an"), as phrases with their values.
    numbers: Vec<(Ast, f64)>,
}

impl Lexicon {
    /// An empty lexicon that knows only the built-in token shapes.
    pub fn empty() -> Lexicon {
        let mut lexicon = Lexicon::default();
        for (name, id, _) in BUILT_IN {
            debug_assert_eq!(lexicon.words.len() as WordId, id);
            lexicon.words.push(format!("{{{name}}}").into_boxed_str());
        }
        lexicon
    }

    /// Parses `config/lexicon.toml` (or several files, merged in order), reporting every problem.
    pub fn parse(files: &[(String, String)]) -> Result<Lexicon, Problems> {
        let mut lexicon = Lexicon::empty();
        let mut problems = Vec::new();
        // Where each spelling was first given, to report a spelling given two meanings.
        let mut spelled_at: FxHashMap<String, (String, String, usize)> = FxHashMap::default();
        for (file, text) in files {
            let parsed: LexiconFile = match toml::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(toml_problem(file, text, &e));
                    continue;
                }
            };
            for (canonical, spanned) in &parsed.spellings {
                let line = line_of(text, spanned.span().start);
                let here = |msg: String| Problem::new(file, Some(line), Some(format!("spelling {canonical:?}")), msg);
                let canonical_lower = canonical.to_ascii_lowercase();
                if let Err(e) = check_word(&canonical_lower) {
                    problems.push(here(e));
                    continue;
                }
                let id = lexicon.intern(&canonical_lower);
                for variant in spanned.get_ref() {
                    let v = variant.to_ascii_lowercase();
                    if let Err(e) = check_word(&v) {
                        problems.push(here(format!("variant {variant:?}: {e}")));
                        continue;
                    }
                    if let Some((other, other_file, other_line)) = spelled_at.get(&v) {
                        if *other != canonical_lower {
                            problems.push(here(format!(
                                "variant {variant:?} is already read as {other:?} ({other_file}:{other_line}); \
                                 a spelling can mean one word only"
                            )));
                            continue;
                        }
                    }
                    spelled_at.insert(v.clone(), (canonical_lower.clone(), file.clone(), line));
                    lexicon.surface.insert(v.clone().into_bytes().into_boxed_slice(), id);
                    lexicon.variants.entry(id).or_default().push(v);
                }
            }
            for (name, spanned) in parsed.classes {
                let line = line_of(text, spanned.span().start);
                let here = |msg: String| Problem::new(file, Some(line), Some(format!("class {name:?}")), msg);
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    || name.is_empty()
                {
                    problems.push(here("class names are lowercase letters, digits and '_'".into()));
                    continue;
                }
                if BUILT_IN.iter().any(|(n, _, _)| *n == name) {
                    problems.push(here(format!("{{{name}}} is built in and cannot be redefined")));
                    continue;
                }
                if let Some(other) = lexicon.classes.get(&name) {
                    problems.push(here(format!(
                        "class defined twice (first at {}:{})",
                        other.file, other.line
                    )));
                    continue;
                }
                let (description, members) = match spanned.into_inner() {
                    ClassEntry::Members(m) => (None, m),
                    ClassEntry::Described { description, members } => (Some(description), members),
                };
                if members.is_empty() {
                    problems.push(here("a class needs at least one member".into()));
                    continue;
                }
                let mut parsed_members = Vec::new();
                let before = problems.len();
                for member in &members {
                    match phrase::parse(member) {
                        Ok(ast) if ast.has_gap() => problems.push(here(format!(
                            "member {member:?}: gaps (~N) belong in rules, not classes"
                        ))),
                        Ok(ast) => parsed_members.push(ast),
                        Err(e) => problems.push(here(format!("member {member:?}: {e}"))),
                    }
                }
                if problems.len() == before {
                    lexicon.classes.insert(
                        name.clone(),
                        Class {
                            name,
                            description,
                            members,
                            parsed: parsed_members,
                            file: file.clone(),
                            line,
                        },
                    );
                }
            }
        }
        // Counts in words, for reading "in two hours".
        for (file, text) in files {
            let Ok(parsed) = toml::from_str::<LexiconFile>(text) else {
                continue;
            };
            for (words, value) in parsed.numbers {
                let line = line_of(text, value.span().start);
                let here = |msg: String| Problem::new(file, Some(line), Some(format!("number {words:?}")), msg);
                match phrase::parse(&words) {
                    Ok(ast) if ast.has_gap() => problems.push(here("a count is plain words".into())),
                    Ok(_) if !(value.get_ref().is_finite() && *value.get_ref() > 0.0) => {
                        problems.push(here("the value must be a positive number".into()))
                    }
                    Ok(ast) => lexicon.numbers.push((ast, *value.get_ref())),
                    Err(e) => problems.push(here(e.to_string())),
                }
            }
        }
        // Classes may name other classes; every name must exist and none may contain itself.
        let names: Vec<String> = lexicon.classes.keys().cloned().collect();
        for name in &names {
            let class = &lexicon.classes[name];
            let mut used = BTreeSet::new();
            for ast in &class.parsed {
                ast.classes(&mut used);
            }
            for inner in &used {
                if !lexicon.has_class(inner) {
                    problems.push(Problem::new(
                        &class.file,
                        Some(class.line),
                        Some(format!("class {name:?}")),
                        format!("unknown class {{{inner}}}{}", lexicon.suggest_class(inner)),
                    ));
                }
            }
            if lexicon.reaches(name, name, &mut BTreeSet::new()) {
                problems.push(Problem::new(
                    &class.file,
                    Some(class.line),
                    Some(format!("class {name:?}")),
                    "the class contains itself (through its members)",
                ));
            }
        }
        if problems.is_empty() {
            // Intern every word the classes use, so their spellings normalise too.
            let words: Vec<String> = lexicon
                .classes
                .values()
                .flat_map(|c| c.parsed.iter())
                .flat_map(|a| {
                    let mut w = Vec::new();
                    a.words(&mut w);
                    w
                })
                .collect();
            for w in words {
                lexicon.intern_normalised(&w);
            }
            Ok(lexicon)
        } else {
            Err(Problems(problems))
        }
    }

    fn reaches(&self, from: &str, target: &str, seen: &mut BTreeSet<String>) -> bool {
        let Some(class) = self.classes.get(from) else {
            return false;
        };
        let mut used = BTreeSet::new();
        for ast in &class.parsed {
            ast.classes(&mut used);
        }
        for inner in used {
            if inner == target {
                return true;
            }
            if seen.insert(inner.clone()) && self.reaches(&inner, target, seen) {
                return true;
            }
        }
        false
    }

    /// A hint naming the closest class, for "unknown class" messages.
    pub fn suggest_class(&self, name: &str) -> String {
        let all = self
            .classes
            .keys()
            .map(String::as_str)
            .chain(BUILT_IN.iter().map(|(n, _, _)| *n));
        match all.min_by_key(|c| edit_distance(c, name)) {
            Some(best) if edit_distance(best, name) <= 3 => format!(" (did you mean {{{best}}}?)"),
            _ => " (classes are defined in lexicon.toml under [classes])".to_string(),
        }
    }

    /// Counts written as words, with their values.
    pub fn numbers(&self) -> &[(Ast, f64)] {
        &self.numbers
    }

    pub fn has_class(&self, name: &str) -> bool {
        self.classes.contains_key(name) || BUILT_IN.iter().any(|(n, _, _)| *n == name)
    }

    pub fn class(&self, name: &str) -> Option<&Class> {
        self.classes.get(name)
    }

    pub fn classes(&self) -> impl Iterator<Item = &Class> {
        self.classes.values()
    }

    /// The built-in shape a class name stands for, if it is one.
    pub fn built_in(name: &str) -> Option<WordId> {
        BUILT_IN.iter().find(|(n, _, _)| *n == name).map(|(_, id, _)| *id)
    }

    /// The canonical word with this id.
    pub fn word(&self, id: WordId) -> &str {
        self.words.get(id as usize).map_or("", |w| w)
    }

    /// How many canonical words (including the built-in shapes) the lexicon knows.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.len() <= FIRST_WORD as usize
    }

    /// How many spellings map onto canonical words.
    pub fn spellings(&self) -> usize {
        self.surface.len()
    }

    /// The spellings read as this word (not including the word itself).
    pub fn variants_of(&self, id: WordId) -> &[String] {
        self.variants.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The id of a canonical word, adding it when new. `word` must be lowercase ASCII.
    pub fn intern(&mut self, word: &str) -> WordId {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = self.words.len() as WordId;
        self.words.push(word.into());
        self.ids.insert(word.into(), id);
        self.surface.entry(word.as_bytes().into()).or_insert(id);
        id
    }

    /// Interns a word as a rule or class wrote it: through the lexicon first, so "recieved" in a
    /// rule means the same as "received".
    pub fn intern_normalised(&mut self, word: &str) -> WordId {
        let lower = word.to_ascii_lowercase();
        if let Some(&id) = self.surface.get(lower.as_bytes()) {
            return id;
        }
        self.intern(&lower)
    }

    /// The canonical id of one token as written (any case), or [`UNKNOWN`].
    pub fn lookup(&self, token: &[u8]) -> WordId {
        if token.len() > MAX_WORD {
            return UNKNOWN;
        }
        let mut buf = [0u8; MAX_WORD];
        let lower = &mut buf[..token.len()];
        lower.copy_from_slice(token);
        lower.make_ascii_lowercase();
        self.surface.get(&*lower).copied().unwrap_or(UNKNOWN)
    }
}

/// Whether a spelling can be looked up: one token of ASCII letters, digits, `'` or `-`.
fn check_word(word: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err("empty word".into());
    }
    if !word.is_ascii() {
        return Err("not ASCII: the lexicon maps ASCII spellings; words with other letters are kept exact".into());
    }
    if word.len() > MAX_WORD {
        return Err(format!("longer than {MAX_WORD} characters"));
    }
    if !word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'\'' || b == b'-')
    {
        return Err("one word only: letters, digits, ' and -".into());
    }
    Ok(())
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j + 1] + 1).min(cur[j] + 1).min(prev[j] + cost));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Lexicon, Problems> {
        Lexicon::parse(&[("lexicon.toml".to_string(), text.to_string())])
    }

    #[test]
    fn spellings_map_to_one_word() {
        let lex = parse(
            "[spellings]\nreceived = [\"recieved\", \"RECVD\", \"rcvd\"]\n\"haven't\" = [\"havent\", \"hvnt\"]\n",
        )
        .unwrap();
        let received = lex.lookup(b"received");
        assert_ne!(received, UNKNOWN);
        for v in [&b"recieved"[..], b"Recvd", b"rcvd"] {
            assert_eq!(lex.lookup(v), received, "{}", String::from_utf8_lossy(v));
        }
        assert_eq!(lex.word(lex.lookup(b"hvnt")), "haven't");
        assert_eq!(lex.lookup(b"parcel"), UNKNOWN);
    }

    #[test]
    fn a_spelling_with_two_meanings_is_refused_with_its_place() {
        let err = parse("[spellings]\nreceived = [\"rcvd\"]\nreceipt = [\"rcvd\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("variant \"rcvd\" is already read as"), "{text}");
        assert!(text.contains("a spelling can mean one word only"), "{text}");
    }

    #[test]
    fn classes_must_exist_and_not_contain_themselves() {
        let err = parse("[classes]\na = [\"x\", \"{b}\"]\nb = [\"{a}\"]\nc = [\"{nope}\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("class \"a\": the class contains itself"), "{text}");
        assert!(
            text.contains("lexicon.toml:4: class \"c\": unknown class {nope}"),
            "{text}"
        );
        let err = parse("[classes]\ndigits = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("built in"), "{err}");
    }

    #[test]
    fn bad_spellings_are_named() {
        let err = parse("[spellings]\ncafe = [\"caf\u{e9}\", \"two words\"]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("variant \"caf\u{e9}\": not ASCII"), "{text}");
        assert!(text.contains("variant \"two words\": one word only"), "{text}");
    }

    #[test]
    fn suggestions_name_the_closest_class() {
        let lex = parse("[classes]\nnegation = [\"not\"]\n").unwrap();
        assert_eq!(lex.suggest_class("negaton"), " (did you mean {negation}?)");
    }
}
