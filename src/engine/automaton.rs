//! One automaton per role over normalised words: compiling phrases, and finding them in a message.
//!
//! Why words and not characters: the lexicon has already turned every spelling into one canonical
//! word, so a phrase is a short sequence over a small alphabet. Each role's words are grouped into
//! *symbols* (words that every phrase treats alike share one), a message becomes one symbol per
//! word with a boundary symbol between sentences, and all of a role's phrases (and their `unless`
//! phrases) compile into one DFA over that sequence. A message is read once; only the few phrases
//! the automaton reports are then run alone over the words to find where they matched (for the
//! evidence, the sentence and `unless`).
//!
//! Why a lazy DFA: determinising a role's phrases in full takes over a second (thousands of
//! states, most of which no message ever reaches), far too slow for every start and reload. The
//! lazy DFA builds a state the first time a message needs it and keeps it in a per-thread cache of
//! bounded size (the book's budget); real text revisits a few thousand states, so the cache warms
//! in the first messages and then serves every word from a table lookup. A cache that fills is
//! cleared and rebuilt, never abandoned for a slower engine: a burst of odd text costs time, not
//! correctness or memory.
//!
//! Symbols are written as two bytes, the first with its high bit set and the second without, so
//! a match can never start in the middle of a word's code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::pool::Pool;
use regex_automata::{Input, MatchKind, PatternSet};
use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, Hir, Repetition};
use rustc_hash::FxHashMap;

use super::lexicon::{Lexicon, WordId, UNKNOWN};
use super::tokens::{Token, Tokens};

/// A compiled phrase: words resolved to ids, classes inlined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Word(WordId),
    Stem(Box<str>),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Opt(Box<Node>),
    Gap(u8),
}

/// The symbol between sentences (and at both ends of a message).
const BOUNDARY: u16 = 0;
/// The symbol of every word no phrase of this role mentions.
const OTHER: u16 = 1;
/// Symbols fit in 14 bits (two 7-bit halves).
const MAX_SYMBOLS: usize = 1 << 14;

/// One phrase of the automaton and what it belongs to.
#[derive(Debug, Clone)]
pub struct Entry {
    pub node: Node,
    /// The owner's index (a rule).
    pub owner: usize,
}

/// Sizes for `backstop check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// States of the compiled NFA (what each lazily built DFA state is made of).
    pub nfa_states: usize,
    /// Bytes of the compiled NFA and the automaton itself, without any cache.
    pub bytes: usize,
    /// Bytes one DFA state takes in the cache.
    pub bytes_per_state: usize,
    pub build: Duration,
}

/// What warming an automaton on sample text used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Warmth {
    /// Cache bytes in use after the sample.
    pub cache_bytes: usize,
    /// How many times the cache filled and was cleared while reading the sample.
    pub clears: usize,
}

/// Why an automaton could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the automaton would need more than the budget of {budget} bytes")]
    OverBudget { budget: usize },
    #[error("the phrases use more than {MAX_SYMBOLS} distinct words")]
    TooManyWords,
    #[error("compiling the automaton failed: {0}")]
    Other(String),
}

/// How words map onto a role's symbols.
#[derive(Debug)]
struct Alphabet {
    /// Symbol of every known word, by id.
    known: Vec<u16>,
    /// Symbol of an unknown word whose longest matching stem is this one.
    stems: FxHashMap<Box<[u8]>, u16>,
    /// Lengths of the stems, longest first, to look an unknown word's prefixes up.
    stem_lens: Vec<usize>,
    /// Symbols per atom (a word id or a stem).
    of_word: FxHashMap<WordId, Vec<u16>>,
    of_stem: FxHashMap<Box<str>, Vec<u16>>,
    len: usize,
}

/// The per-thread buffers a search needs: the lazy DFA's cache, the message's codes, the result.
struct Scratch {
    cache: Cache,
    codes: Vec<u8>,
    set: PatternSet,
}

type ScratchPool =
    Pool<Scratch, Box<dyn Fn() -> Scratch + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>>;

/// A role's phrases compiled into one automaton.
pub struct Automaton {
    dfa: std::sync::Arc<DFA>,
    alphabet: Alphabet,
    entries: Vec<Entry>,
    scratch: ScratchPool,
    cost: Cost,
}

impl std::fmt::Debug for Automaton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Automaton")
            .field("phrases", &self.entries.len())
            .field("symbols", &self.alphabet.len)
            .field("cost", &self.cost)
            .finish()
    }
}

impl Node {
    fn atoms(&self, words: &mut Vec<WordId>, stems: &mut Vec<Box<str>>) {
        match self {
            Node::Word(w) => words.push(*w),
            Node::Stem(s) => stems.push(s.clone()),
            Node::Seq(items) | Node::Alt(items) => items.iter().for_each(|n| n.atoms(words, stems)),
            Node::Opt(inner) => inner.atoms(words, stems),
            Node::Gap(_) => {}
        }
    }
}

impl Alphabet {
    fn build(entries: &[Entry], lexicon: &Lexicon) -> Result<Alphabet, BuildError> {
        let mut words = Vec::new();
        let mut stems = Vec::new();
        for e in entries {
            e.node.atoms(&mut words, &mut stems);
        }
        words.sort_unstable();
        words.dedup();
        stems.sort_unstable();
        stems.dedup();
        // A word's signature: the atoms it satisfies. Words with the same signature share a symbol.
        let mut by_signature: BTreeMap<Vec<u32>, u16> = BTreeMap::new();
        let mut symbol_of = |signature: Vec<u32>| -> Result<u16, BuildError> {
            if signature.is_empty() {
                return Ok(OTHER);
            }
            let next = by_signature.len() + 2;
            if next >= MAX_SYMBOLS {
                return Err(BuildError::TooManyWords);
            }
            Ok(*by_signature.entry(signature).or_insert(next as u16))
        };
        let word_atom = |w: WordId| words.binary_search(&w).ok().map(|i| i as u32);
        let stem_atom = |i: usize| (words.len() + i) as u32;
        let mut known = vec![OTHER; lexicon.len()];
        for (id, slot) in known.iter_mut().enumerate() {
            let id = id as WordId;
            let text = lexicon.word(id);
            let mut signature: Vec<u32> = word_atom(id).into_iter().collect();
            for (i, stem) in stems.iter().enumerate() {
                if text.starts_with(&**stem) {
                    signature.push(stem_atom(i));
                }
            }
            *slot = symbol_of(signature)?;
        }
        let mut stem_symbols = FxHashMap::default();
        for stem in &stems {
            let signature: Vec<u32> = stems
                .iter()
                .enumerate()
                .filter(|(_, s)| stem.starts_with(&***s))
                .map(|(i, _)| stem_atom(i))
                .collect();
            stem_symbols.insert(stem.as_bytes().into(), symbol_of(signature)?);
        }
        let len = by_signature.len() + 2;
        // Which symbols carry each atom.
        let mut of_word: FxHashMap<WordId, Vec<u16>> = FxHashMap::default();
        let mut of_stem: FxHashMap<Box<str>, Vec<u16>> = FxHashMap::default();
        for (signature, &symbol) in &by_signature {
            for &atom in signature {
                let atom = atom as usize;
                if atom < words.len() {
                    of_word.entry(words[atom]).or_default().push(symbol);
                } else {
                    of_stem
                        .entry(stems[atom - words.len()].clone())
                        .or_default()
                        .push(symbol);
                }
            }
        }
        let mut stem_lens: Vec<usize> = stems.iter().map(|s| s.len()).collect();
        stem_lens.sort_unstable_by(|a, b| b.cmp(a));
        stem_lens.dedup();
        Ok(Alphabet {
            known,
            stems: stem_symbols,
            stem_lens,
            of_word,
            of_stem,
            len,
        })
    }

    fn symbol(&self, token: &Token, scan: &[u8]) -> u16 {
        if token.word != UNKNOWN {
            return self.known.get(token.word as usize).copied().unwrap_or(OTHER);
        }
        if self.stem_lens.is_empty() {
            return OTHER;
        }
        let raw = &scan[token.start as usize..token.end as usize];
        let mut buf = [0u8; 64];
        if raw.len() > buf.len() {
            return OTHER;
        }
        let lower = &mut buf[..raw.len()];
        lower.copy_from_slice(raw);
        lower.make_ascii_lowercase();
        for &n in &self.stem_lens {
            if n <= lower.len() {
                if let Some(&symbol) = self.stems.get(&lower[..n]) {
                    return symbol;
                }
            }
        }
        OTHER
    }
}

fn code(symbol: u16) -> [u8; 2] {
    [0x80 | (symbol >> 7) as u8, (symbol & 0x7F) as u8]
}

/// Any one of these symbols, as a regular expression over their two-byte codes.
fn any_of(symbols: &[u16]) -> Hir {
    let mut by_high: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for &s in symbols {
        let [hi, lo] = code(s);
        by_high.entry(hi).or_default().push(lo);
    }
    let options: Vec<Hir> = by_high
        .into_iter()
        .map(|(hi, los)| {
            let ranges = los.into_iter().map(|b| ClassBytesRange::new(b, b));
            Hir::concat(vec![
                Hir::literal([hi]),
                Hir::class(Class::Bytes(ClassBytes::new(ranges))),
            ])
        })
        .collect();
    Hir::alternation(options)
}

/// Any word (any symbol but the sentence boundary).
fn any_word() -> Hir {
    let [b_hi, _] = code(BOUNDARY);
    Hir::alternation(vec![
        Hir::concat(vec![
            Hir::literal([b_hi]),
            Hir::class(Class::Bytes(ClassBytes::new([ClassBytesRange::new(0x01, 0x7F)]))),
        ]),
        Hir::concat(vec![
            Hir::class(Class::Bytes(ClassBytes::new([ClassBytesRange::new(b_hi + 1, 0xFF)]))),
            Hir::class(Class::Bytes(ClassBytes::new([ClassBytesRange::new(0x00, 0x7F)]))),
        ]),
    ])
}

impl Alphabet {
    fn hir(&self, node: &Node) -> Hir {
        match node {
            Node::Word(w) => any_of(self.of_word.get(w).map_or(&[][..], Vec::as_slice)),
            Node::Stem(s) => any_of(self.of_stem.get(s).map_or(&[][..], Vec::as_slice)),
            Node::Seq(items) => Hir::concat(items.iter().map(|n| self.hir(n)).collect()),
            Node::Alt(options) => Hir::alternation(options.iter().map(|n| self.hir(n)).collect()),
            Node::Opt(inner) => Hir::repetition(Repetition {
                min: 0,
                max: Some(1),
                greedy: true,
                sub: Box::new(self.hir(inner)),
            }),
            Node::Gap(n) => Hir::repetition(Repetition {
                min: 0,
                max: Some(u32::from(*n)),
                greedy: false,
                sub: Box::new(any_word()),
            }),
        }
    }
}

impl Automaton {
    /// Compiles phrases into one automaton whose cache may use up to `budget` bytes per thread.
    pub fn build(entries: Vec<Entry>, lexicon: &Lexicon, budget: usize) -> Result<Automaton, BuildError> {
        let started = Instant::now();
        let alphabet = Alphabet::build(&entries, lexicon)?;
        let hirs: Vec<Hir> = entries.iter().map(|e| alphabet.hir(&e.node)).collect();
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .shrink(false)
                    .which_captures(thompson::WhichCaptures::None)
                    .nfa_size_limit(Some(budget)),
            )
            .build_many_from_hir(&hirs)
            .map_err(|e| {
                if e.to_string().contains("exceeded") {
                    BuildError::OverBudget { budget }
                } else {
                    BuildError::Other(e.to_string())
                }
            })?;
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(budget)
                    // Never give up on the lazy DFA: clear the cache and carry on.
                    .minimum_cache_clear_count(None),
            )
            .build_from_nfa(nfa)
            .map_err(|e| {
                if e.to_string().contains("cache capacity") {
                    BuildError::OverBudget { budget }
                } else {
                    BuildError::Other(e.to_string())
                }
            })?;
        let dfa = std::sync::Arc::new(dfa);
        let bytes_per_state = dfa.byte_classes().alphabet_len().next_power_of_two() * std::mem::size_of::<u32>();
        let cost = Cost {
            nfa_states: dfa.get_nfa().states().len(),
            bytes: dfa.memory_usage() + dfa.get_nfa().memory_usage(),
            bytes_per_state,
            build: started.elapsed(),
        };
        let patterns = dfa.pattern_len();
        let for_pool = dfa.clone();
        let scratch: ScratchPool = Pool::new(Box::new(move || Scratch {
            cache: for_pool.create_cache(),
            codes: Vec::with_capacity(256),
            set: PatternSet::new(patterns),
        }));
        Ok(Automaton {
            dfa,
            alphabet,
            entries,
            scratch,
            cost,
        })
    }

    /// Reads sample messages with a fresh cache and reports what it took: how warm the cache is
    /// afterwards and whether it had to be cleared (the book thrashes its budget).
    pub fn warm<'t>(&self, texts: impl IntoIterator<Item = (&'t Tokens, &'t [u8])>) -> Warmth {
        let mut cache = self.dfa.create_cache();
        let mut codes = Vec::new();
        let mut set = PatternSet::new(self.dfa.pattern_len());
        for (tokens, scan) in texts {
            self.encode(tokens, scan, &mut codes);
            set.clear();
            let _ = self
                .dfa
                .try_which_overlapping_matches(&mut cache, &Input::new(&codes[..]), &mut set);
        }
        Warmth {
            cache_bytes: cache.memory_usage(),
            clears: cache.clear_count(),
        }
    }

    fn encode(&self, tokens: &Tokens, scan: &[u8], codes: &mut Vec<u8>) {
        codes.clear();
        codes.extend_from_slice(&code(BOUNDARY));
        let mut sentence = 0;
        for t in &tokens.tokens {
            if t.sentence != sentence {
                codes.extend_from_slice(&code(BOUNDARY));
                sentence = t.sentence;
            }
            codes.extend_from_slice(&code(self.alphabet.symbol(t, scan)));
        }
        codes.extend_from_slice(&code(BOUNDARY));
    }

    pub fn cost(&self) -> Cost {
        self.cost
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many distinct symbols the role's words fall into.
    pub fn symbols(&self) -> usize {
        self.alphabet.len
    }

    /// Indexes (into [`Automaton::entries`]) of every phrase found somewhere in the message, in
    /// increasing order.
    pub fn matching(&self, tokens: &Tokens, scan: &[u8], out: &mut Vec<usize>) {
        out.clear();
        if self.entries.is_empty() || tokens.tokens.is_empty() {
            return;
        }
        let mut scratch = self.scratch.get();
        let Scratch { cache, codes, set } = &mut *scratch;
        self.encode(tokens, scan, codes);
        set.clear();
        match self
            .dfa
            .try_which_overlapping_matches(cache, &Input::new(&codes[..]), set)
        {
            Ok(()) => out.extend(set.iter().map(|p| p.as_usize())),
            // The lazy DFA never quits on these codes (it has no look-around and never gives up);
            // should it, the exact slow path.
            Err(_) => out.extend((0..self.entries.len()).filter(|&i| {
                let m = Matcher {
                    tokens,
                    scan,
                    lexicon: None,
                };
                m.first(&self.entries[i].node, &tokens.sentences).is_some()
            })),
        }
    }
}

/// Runs one compiled phrase over a message's words (the exact, slow path behind the automaton).
pub struct Matcher<'a> {
    pub tokens: &'a Tokens,
    pub scan: &'a [u8],
    /// For stems of known words; `None` reads stems off the message's own letters only.
    pub lexicon: Option<&'a Lexicon>,
}

impl Matcher<'_> {
    fn test(&self, node: &Node, at: usize) -> bool {
        let t = &self.tokens.tokens[at];
        match node {
            Node::Word(w) => t.word == *w,
            Node::Stem(prefix) => {
                let text: &[u8] = match (t.word, self.lexicon) {
                    (UNKNOWN, _) | (_, None) => &self.scan[t.start as usize..t.end as usize],
                    (id, Some(lex)) => lex.word(id).as_bytes(),
                };
                text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
            _ => false,
        }
    }

    fn walk(&self, node: &Node, at: usize, limit: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match node {
            Node::Word(_) | Node::Stem(_) => at < limit && self.test(node, at) && k(at + 1),
            Node::Seq(items) => self.seq(items, at, limit, k),
            Node::Alt(options) => options.iter().any(|o| self.walk(o, at, limit, k)),
            Node::Opt(inner) => self.walk(inner, at, limit, k) || k(at),
            Node::Gap(n) => (0..=usize::from(*n)).take_while(|g| at + g <= limit).any(|g| k(at + g)),
        }
    }

    fn seq(&self, items: &[Node], at: usize, limit: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match items.split_first() {
            None => k(at),
            Some((first, rest)) => self.walk(first, at, limit, &mut |next| self.seq(rest, next, limit, k)),
        }
    }

    /// Every match of `node` as token ranges, leftmost first, at most one per start word.
    pub fn all(&self, node: &Node, sentences: &[super::tokens::Sentence]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        for s in sentences {
            let (first, last) = (s.first as usize, s.last as usize);
            for start in first..last {
                let mut end = None;
                self.walk(node, start, last, &mut |e| {
                    end = Some(e);
                    true
                });
                if let Some(end) = end.filter(|&e| e > start) {
                    out.push(start..end);
                }
            }
        }
        out
    }

    /// Every place a match of `node` starting at token `start` can end (no further than `limit`).
    pub fn ends(&self, node: &Node, start: usize, limit: usize) -> Vec<usize> {
        let mut out = Vec::new();
        self.walk(node, start, limit.min(self.tokens.tokens.len()), &mut |e| {
            out.push(e);
            false
        });
        out
    }

    /// The leftmost match of `node`, if any.
    pub fn first(&self, node: &Node, sentences: &[super::tokens::Sentence]) -> Option<std::ops::Range<usize>> {
        self.all(node, sentences).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::text::Prepared;

    fn lexicon() -> Lexicon {
        Lexicon::parse(&[(
            "lexicon.toml".into(),
            "[spellings]\nreceived = [\"recvd\"]\n\"haven't\" = [\"havent\"]\n".into(),
        )])
        .unwrap()
    }

    fn word(lex: &mut Lexicon, w: &str) -> Node {
        Node::Word(lex.intern_normalised(w))
    }

    #[test]
    fn finds_phrases_with_gaps_options_and_stems_within_a_sentence() {
        let mut lex = lexicon();
        let havent = word(&mut lex, "haven't");
        let received = word(&mut lex, "received");
        let still = word(&mut lex, "still");
        let entries = vec![
            Entry {
                node: Node::Seq(vec![havent.clone(), Node::Gap(2), received.clone()]),
                owner: 0,
            },
            Entry {
                node: Node::Seq(vec![Node::Opt(Box::new(still.clone())), Node::Stem("deliver".into())]),
                owner: 1,
            },
        ];
        let automaton = Automaton::build(entries, &lex, 1 << 20).unwrap();
        let found = |text: &str| {
            let p = Prepared::new(text);
            let t = Tokens::read(p.scan(), &lex);
            let mut out = Vec::new();
            automaton.matching(&t, p.scan(), &mut out);
            out
        };
        assert_eq!(found("I havent actually recvd it"), [0]);
        assert_eq!(found("I havent, sadly, recvd it"), [0], "punctuation is not a word");
        assert!(found("I havent been sent or recvd it").is_empty(), "gap of three");
        assert!(found("I havent. recvd it").is_empty(), "never across a sentence");
        assert_eq!(found("it was deliverd"), [1], "stems read unknown words too");
        assert_eq!(found("Delivery failed, havent recvd"), [0, 1]);
        assert!(found("").is_empty());
    }

    #[test]
    fn the_slow_path_finds_where() {
        let mut lex = lexicon();
        let node = Node::Seq(vec![
            word(&mut lex, "haven't"),
            Node::Gap(2),
            word(&mut lex, "received"),
        ]);
        let p = Prepared::new("Hi. I havent yet recvd it, havent recvd");
        let t = Tokens::read(p.scan(), &lex);
        let m = Matcher {
            tokens: &t,
            scan: p.scan(),
            lexicon: Some(&lex),
        };
        let all = m.all(&node, &t.sentences);
        assert_eq!(all.len(), 2);
        let span = &t.tokens[all[0].start].start..&t.tokens[all[0].end - 1].end;
        assert_eq!(p.original(*span.start as usize..*span.end as usize), "havent yet recvd");
    }

    #[test]
    fn a_budget_too_small_is_refused() {
        let mut lex = lexicon();
        let node = Node::Seq(vec![
            word(&mut lex, "a"),
            Node::Gap(6),
            word(&mut lex, "b"),
            Node::Gap(6),
            word(&mut lex, "c"),
        ]);
        let entries = vec![Entry { node, owner: 0 }];
        assert!(matches!(
            Automaton::build(entries, &lex, 1000),
            Err(BuildError::OverBudget { .. })
        ));
    }
}
