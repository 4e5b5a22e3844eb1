//! One word index per role: which of a role's phrases could match a message, checked exactly.
//!
//! The lexicon has already turned every spelling into one canonical word, so a phrase is a short
//! sequence over a small alphabet. Each role's words are grouped into *symbols* (words that every
//! phrase treats alike share one). Every phrase has *required* symbol sets: a match must contain a
//! word from each (the words of a sequence, one of each alternative's words). The index maps each
//! symbol to the phrases whose rarest required set holds it (their *trigger*). Reading a message
//! is then: one table lookup per word to get its symbol, the trigger lists of the symbols present,
//! a bit test of each candidate's other required sets, and the exact matcher only for the few
//! candidates left. Nothing grows with traffic; building takes milliseconds.
//!
//! Why not one DFA over all phrases: measured on the shared corpus with the rewritten book, an
//! unanchored multi-phrase DFA keeps meeting new combinations of partial matches (gaps make every
//! word a possible continuation of many phrases): a lazy DFA built ~100,000 states, over 100 MiB,
//! and still ran at 38,000 messages/s because real text kept making new ones; fully determinised
//! it took over a second per role to build. The index does the same job, exactly, in bounded
//! memory, because it never tracks combinations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use regex_automata::util::pool::Pool;
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

/// The symbol of every word no phrase of this role mentions.
const OTHER: u16 = 1;
/// Symbols fit in 16 bits.
const MAX_SYMBOLS: usize = u16::MAX as usize;

/// One phrase of the index and what it belongs to.
#[derive(Debug, Clone)]
pub struct Entry {
    pub node: Node,
    /// The owner's index (a rule).
    pub owner: usize,
}

/// A phrase kept beside the index, never triggering anything: the `unless` phrases, checked only
/// in sentences where their rule matched.
#[derive(Debug, Clone)]
pub struct Guard {
    pub node: Node,
    pub owner: usize,
}

/// Sizes for `backstop check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Distinct symbols the role's words fall into.
    pub symbols: usize,
    /// Bytes of the index (symbol tables, trigger lists, required sets).
    pub bytes: usize,
    pub build: Duration,
}

/// What reading sample text cost: how many phrases had to be checked exactly.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Warmth {
    pub messages: usize,
    /// Phrases triggered, on average per message.
    pub triggered: f64,
    /// Phrases that passed the bit test and were run exactly, on average per message.
    pub checked: f64,
}

/// Why an index could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the phrases use more than {MAX_SYMBOLS} distinct words")]
    TooManyWords,
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
    /// The three-letter starts of the stems, as bits: most unknown words start otherwise and need
    /// no lookup at all.
    stem_heads: Vec<u64>,
    /// Symbols per atom (a word id or a stem).
    of_word: FxHashMap<WordId, Vec<u16>>,
    of_stem: FxHashMap<Box<str>, Vec<u16>>,
    len: usize,
}

/// A phrase found in a message: its index and its matches as ranges of words.
pub type Found = (usize, Vec<std::ops::Range<usize>>);

/// What the index found in one message.
#[derive(Debug, Default)]
pub struct Findings {
    pub found: Vec<Found>,
    /// The symbol of each word (empty when nothing was found).
    syms: Vec<u16>,
}

/// A set of symbols as a sparse bit set: (word index, bits).
type SymbolSet = Vec<(u32, u64)>;

fn set_of(symbols: &[u16]) -> SymbolSet {
    let mut words: BTreeMap<u32, u64> = BTreeMap::new();
    for &s in symbols {
        *words.entry(u32::from(s) / 64).or_default() |= 1 << (s % 64);
    }
    words.into_iter().collect()
}

fn hits(set: &SymbolSet, present: &[u64]) -> bool {
    set.iter().any(|&(w, bits)| present[w as usize] & bits != 0)
}

/// The per-thread buffers a search needs.
struct Scratch {
    /// The symbol of each word of the message.
    syms: Vec<u16>,
    present: Vec<u64>,
    seen: Vec<u32>,
    stamp: u32,
    candidates: Vec<usize>,
}

type ScratchPool =
    Pool<Scratch, Box<dyn Fn() -> Scratch + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>>;

/// A role's phrases, indexed by word.
pub struct Automaton {
    alphabet: Alphabet,
    entries: Vec<Entry>,
    /// For each symbol, the phrases it triggers.
    triggers: Vec<Vec<u32>>,
    /// For each phrase, the symbol sets a match needs a word from.
    required: Vec<Vec<SymbolSet>>,
    /// Each phrase over symbols, for the exact check.
    compiled: Vec<Compiled>,
    /// Each owner's `unless` phrases over symbols.
    guarded: FxHashMap<usize, Vec<Compiled>>,
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
    fn build<'n>(nodes: impl Iterator<Item = &'n Node>, lexicon: &Lexicon) -> Result<Alphabet, BuildError> {
        let mut words = Vec::new();
        let mut stems = Vec::new();
        for node in nodes {
            node.atoms(&mut words, &mut stems);
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
        let mut stem_heads = vec![0u64; HEADS.div_ceil(64)];
        for stem in &stems {
            match head(stem.as_bytes()) {
                Some(h) => stem_heads[h / 64] |= 1 << (h % 64),
                // A stem starting with a digit or an apostrophe: every unknown word is looked up.
                None => stem_heads.iter_mut().for_each(|w| *w = u64::MAX),
            }
        }
        Ok(Alphabet {
            known,
            stems: stem_symbols,
            stem_lens,
            stem_heads,
            of_word,
            of_stem,
            len,
        })
    }

    fn symbol(&self, token: &Token, scan: &[u8]) -> u16 {
        if token.word != UNKNOWN {
            return self.known.get(token.word as usize).copied().unwrap_or(OTHER);
        }
        let raw = &scan[token.start as usize..token.end as usize];
        match head(raw) {
            Some(h) if self.stem_heads[h / 64] & (1 << (h % 64)) == 0 => return OTHER,
            None if self.stem_heads.first() != Some(&u64::MAX) => return OTHER,
            _ => {}
        }
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

/// Three lowercase letters as a number below [`HEADS`], or `None` when the word does not start so.
const HEADS: usize = 26 * 26 * 26;

fn head(word: &[u8]) -> Option<usize> {
    let letter = |b: u8| {
        b.is_ascii_alphabetic()
            .then(|| usize::from(b.to_ascii_lowercase() - b'a'))
    };
    match word {
        [a, b, c, ..] => Some((letter(*a)? * 26 + letter(*b)?) * 26 + letter(*c)?),
        _ => None,
    }
}

impl Alphabet {
    fn atom(&self, node: &Node) -> Vec<u16> {
        match node {
            Node::Word(w) => self.of_word.get(w).cloned().unwrap_or_default(),
            Node::Stem(s) => self.of_stem.get(s).cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Every symbol a match of `node` could consist of.
    fn any(&self, node: &Node, out: &mut Vec<u16>) {
        match node {
            Node::Word(_) | Node::Stem(_) => out.extend(self.atom(node)),
            Node::Seq(items) | Node::Alt(items) => items.iter().for_each(|n| self.any(n, out)),
            Node::Opt(inner) => self.any(inner, out),
            Node::Gap(_) => {}
        }
    }

    /// Symbol sets every match of `node` takes a word from.
    fn required(&self, node: &Node) -> Vec<Vec<u16>> {
        match node {
            Node::Word(_) | Node::Stem(_) => vec![self.atom(node)],
            Node::Seq(items) => items.iter().flat_map(|n| self.required(n)).collect(),
            Node::Opt(_) | Node::Gap(_) => Vec::new(),
            Node::Alt(options) => {
                // One of the options matches: each contributes the words it cannot do without.
                let mut union = Vec::new();
                for option in options {
                    let sets = self.required(option);
                    match sets.into_iter().min_by_key(Vec::len) {
                        Some(set) => union.extend(set),
                        None => return Vec::new(),
                    }
                }
                union.sort_unstable();
                union.dedup();
                vec![union]
            }
        }
    }
}

/// How often each symbol turns up in the sample text, to pick each phrase's rarest trigger.
pub type Commonness = Vec<u32>;

impl Automaton {
    /// Indexes phrases; `sample` is text of this role, to pick each phrase's rarest trigger.
    pub fn build(
        entries: Vec<Entry>,
        guards: Vec<Guard>,
        lexicon: &std::sync::Arc<Lexicon>,
        sample: &[(Tokens, Vec<u8>)],
    ) -> Result<Automaton, BuildError> {
        let started = Instant::now();
        let nodes = entries.iter().map(|e| &e.node).chain(guards.iter().map(|g| &g.node));
        let alphabet = Alphabet::build(nodes, lexicon)?;
        let mut common: Commonness = vec![0; alphabet.len];
        for (tokens, scan) in sample {
            for t in &tokens.tokens {
                common[usize::from(alphabet.symbol(t, scan))] += 1;
            }
        }
        let mut triggers: Vec<Vec<u32>> = vec![Vec::new(); alphabet.len];
        let mut required = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let mut sets = alphabet.required(&e.node);
            sets.retain(|s| !s.is_empty());
            // The rarest set on the sample triggers the phrase (fewest symbols breaks ties).
            let cost = |s: &Vec<u16>| {
                (
                    s.iter().map(|&x| u64::from(common[usize::from(x)])).sum::<u64>(),
                    s.len(),
                )
            };
            let trigger = match sets.iter().min_by_key(|s| cost(s)) {
                Some(s) => s.clone(),
                None => {
                    // No word is required (cannot happen for a phrase that parsed); every word triggers it.
                    let mut all = Vec::new();
                    alphabet.any(&e.node, &mut all);
                    all
                }
            };
            for &s in &trigger {
                triggers[usize::from(s)].push(i as u32);
            }
            required.push(sets.iter().map(|s| set_of(s)).collect::<Vec<_>>());
        }
        for t in &mut triggers {
            t.sort_unstable();
            t.dedup();
        }
        let words = alphabet.len.div_ceil(64);
        let compiled: Vec<Compiled> = entries
            .iter()
            .map(|e| Compiled::new(&e.node, &alphabet, words))
            .collect();
        let mut guarded: FxHashMap<usize, Vec<Compiled>> = FxHashMap::default();
        for g in &guards {
            guarded
                .entry(g.owner)
                .or_default()
                .push(Compiled::new(&g.node, &alphabet, words));
        }
        let bytes = alphabet.known.len() * 2
            + compiled.iter().map(Compiled::bytes).sum::<usize>()
            + triggers.iter().map(|t| t.len() * 4 + 24).sum::<usize>()
            + required.iter().flatten().map(|s| s.len() * 12 + 24).sum::<usize>();
        let cost = Cost {
            symbols: alphabet.len,
            bytes,
            build: started.elapsed(),
        };
        let n = entries.len();
        let scratch: ScratchPool = Pool::new(Box::new(move || Scratch {
            syms: Vec::new(),
            present: vec![0; words],
            seen: vec![0; n],
            stamp: 0,
            candidates: Vec::new(),
        }));
        Ok(Automaton {
            alphabet,
            entries,
            triggers,
            required,
            compiled,
            guarded,
            scratch,
            cost,
        })
    }

    pub fn cost(&self) -> Cost {
        self.cost
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads sample messages and reports how much exact checking they needed.
    pub fn warm<'t>(&self, texts: impl IntoIterator<Item = (&'t Tokens, &'t [u8])>) -> Warmth {
        let (mut messages, mut triggered, mut checked) = (0usize, 0usize, 0usize);
        for (tokens, scan) in texts {
            let (t, c, _) = self.search(tokens, scan, None);
            messages += 1;
            triggered += t;
            checked += c;
        }
        let per = |n: usize| if messages == 0 { 0.0 } else { n as f64 / messages as f64 };
        Warmth {
            messages,
            triggered: per(triggered),
            checked: per(checked),
        }
    }

    /// How often each phrase was triggered on sample text (to name the costliest).
    pub fn triggered_by_entry<'t>(&self, texts: impl IntoIterator<Item = (&'t Tokens, &'t [u8])>) -> Vec<usize> {
        let mut counts = vec![0; self.entries.len()];
        let mut scratch = self.scratch.get();
        for (tokens, scan) in texts {
            self.candidates(tokens, scan, &mut scratch);
            for &c in &scratch.candidates {
                counts[c] += 1;
            }
        }
        counts
    }

    /// Every phrase found in the message, with each of its matches as a range of words (leftmost
    /// first, the longest from each word), phrases in increasing order; and a way to ask whether
    /// an owner's `unless` phrases hold in a sentence.
    pub fn find(&self, tokens: &Tokens, scan: &[u8]) -> Findings {
        let mut found = Vec::new();
        let syms = self.search(tokens, scan, Some(&mut found)).2;
        Findings { found, syms }
    }

    /// Whether one of `owner`'s `unless` phrases matches in sentence `s` of the message.
    pub fn guarded(&self, owner: usize, findings: &Findings, tokens: &Tokens, s: usize) -> bool {
        let Some(guards) = self.guarded.get(&owner) else {
            return false;
        };
        let walker = Walker {
            syms: &findings.syms,
            tokens,
        };
        let sentence = &tokens.sentences[s];
        guards.iter().any(|g| walker.any_in(g, sentence))
    }

    /// Marks the symbols present and collects the phrases they trigger.
    fn candidates(&self, tokens: &Tokens, scan: &[u8], scratch: &mut Scratch) {
        let Scratch {
            syms,
            present,
            seen,
            stamp,
            candidates,
        } = scratch;
        candidates.clear();
        syms.clear();
        present.iter_mut().for_each(|w| *w = 0);
        *stamp = stamp.wrapping_add(1);
        if *stamp == 0 {
            seen.iter_mut().for_each(|s| *s = 0);
            *stamp = 1;
        }
        for t in &tokens.tokens {
            let s = self.alphabet.symbol(t, scan);
            syms.push(s);
            let (w, bit) = (usize::from(s) / 64, 1u64 << (s % 64));
            if present[w] & bit != 0 {
                continue;
            }
            present[w] |= bit;
            for &e in &self.triggers[usize::from(s)] {
                if seen[e as usize] != *stamp {
                    seen[e as usize] = *stamp;
                    candidates.push(e as usize);
                }
            }
        }
    }

    /// Finds the phrases present (into `found`, when given); returns (triggered, checked exactly,
    /// the words' symbols when something was found).
    fn search(&self, tokens: &Tokens, scan: &[u8], mut found: Option<&mut Vec<Found>>) -> (usize, usize, Vec<u16>) {
        if self.entries.is_empty() || tokens.tokens.is_empty() {
            return (0, 0, Vec::new());
        }
        let mut scratch = self.scratch.get();
        self.candidates(tokens, scan, &mut scratch);
        let triggered = scratch.candidates.len();
        let mut checked = 0;
        scratch.candidates.sort_unstable();
        for &e in &scratch.candidates {
            if !self.required[e].iter().all(|set| hits(set, &scratch.present)) {
                continue;
            }
            checked += 1;
            let walker = Walker {
                syms: &scratch.syms,
                tokens,
            };
            let matches = walker.all(&self.compiled[e]);
            if !matches.is_empty() {
                if let Some(found) = found.as_deref_mut() {
                    found.push((e, matches));
                }
            }
        }
        let any = found.is_some_and(|f| !f.is_empty());
        let syms = if any { scratch.syms.clone() } else { Vec::new() };
        (triggered, checked, syms)
    }
}

/// A phrase over a role's symbols: each word test is one bit test.
#[derive(Debug, Clone)]
enum SNode {
    /// Any word whose symbol is in this set.
    Set(Box<[u64]>),
    Seq(Vec<SNode>),
    Alt(Vec<SNode>),
    Opt(Box<SNode>),
    Gap(u8),
}

/// A phrase compiled for the exact check: its symbol tree and the symbols a match can start with.
#[derive(Debug, Clone)]
struct Compiled {
    node: SNode,
    /// `None` when a match can start on any word.
    starts: Option<Box<[u64]>>,
}

fn bits_of(symbols: &[u16], words: usize) -> Box<[u64]> {
    let mut bits = vec![0u64; words];
    for &s in symbols {
        bits[usize::from(s) / 64] |= 1 << (s % 64);
    }
    bits.into_boxed_slice()
}

fn union(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a |= *b;
    }
}

impl SNode {
    fn new(node: &Node, alphabet: &Alphabet, words: usize) -> SNode {
        match node {
            Node::Word(_) | Node::Stem(_) => SNode::Set(bits_of(&alphabet.atom(node), words)),
            Node::Seq(items) => SNode::Seq(items.iter().map(|n| SNode::new(n, alphabet, words)).collect()),
            Node::Opt(inner) => SNode::Opt(Box::new(SNode::new(inner, alphabet, words))),
            Node::Gap(n) => SNode::Gap(*n),
            Node::Alt(options) => {
                // Single words among the options become one set: one bit test instead of many.
                let mut single = vec![0u64; words];
                let mut rest = Vec::new();
                for o in options {
                    match SNode::new(o, alphabet, words) {
                        SNode::Set(bits) => union(&mut single, &bits),
                        other => rest.push(other),
                    }
                }
                if rest.is_empty() {
                    return SNode::Set(single.into_boxed_slice());
                }
                if single.iter().any(|w| *w != 0) {
                    rest.insert(0, SNode::Set(single.into_boxed_slice()));
                }
                SNode::Alt(rest)
            }
        }
    }

    fn nullable(&self) -> bool {
        match self {
            SNode::Set(_) => false,
            SNode::Seq(items) => items.iter().all(SNode::nullable),
            SNode::Alt(options) => options.iter().any(SNode::nullable),
            SNode::Opt(_) | SNode::Gap(_) => true,
        }
    }

    /// Adds the symbols a match can start with; false when any word can start one.
    fn starts(&self, into: &mut [u64]) -> bool {
        match self {
            SNode::Set(bits) => {
                union(into, bits);
                true
            }
            SNode::Seq(items) => {
                for item in items {
                    if !item.starts(into) {
                        return false;
                    }
                    if !item.nullable() {
                        return true;
                    }
                }
                true
            }
            SNode::Alt(options) => options.iter().all(|o| o.starts(into)),
            SNode::Opt(inner) => inner.starts(into),
            SNode::Gap(_) => false,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            SNode::Set(bits) => bits.len() * 8 + 16,
            SNode::Seq(items) | SNode::Alt(items) => 24 + items.iter().map(SNode::bytes).sum::<usize>(),
            SNode::Opt(inner) => 16 + inner.bytes(),
            SNode::Gap(_) => 16,
        }
    }
}

impl Compiled {
    fn new(node: &Node, alphabet: &Alphabet, words: usize) -> Compiled {
        let node = SNode::new(node, alphabet, words);
        let mut starts = vec![0u64; words];
        let starts = node.starts(&mut starts).then(|| starts.into_boxed_slice());
        Compiled { node, starts }
    }

    fn bytes(&self) -> usize {
        self.node.bytes() + self.starts.as_ref().map_or(0, |s| s.len() * 8)
    }
}

/// What the backtracking matcher needs of a phrase tree: its shape, so one matcher serves both
/// the compiled phrases (word tests are bit tests) and the plain ones (word tests read the lexicon).
enum Shape<'a, T> {
    Atom,
    Seq(&'a [T]),
    Alt(&'a [T]),
    Opt(&'a T),
    Gap(u8),
}

trait Tree: Sized {
    fn shape(&self) -> Shape<'_, Self>;
}

impl Tree for Node {
    fn shape(&self) -> Shape<'_, Node> {
        match self {
            Node::Word(_) | Node::Stem(_) => Shape::Atom,
            Node::Seq(items) => Shape::Seq(items),
            Node::Alt(options) => Shape::Alt(options),
            Node::Opt(inner) => Shape::Opt(inner),
            Node::Gap(n) => Shape::Gap(*n),
        }
    }
}

impl Tree for SNode {
    fn shape(&self) -> Shape<'_, SNode> {
        match self {
            SNode::Set(_) => Shape::Atom,
            SNode::Seq(items) => Shape::Seq(items),
            SNode::Alt(options) => Shape::Alt(options),
            SNode::Opt(inner) => Shape::Opt(inner),
            SNode::Gap(n) => Shape::Gap(*n),
        }
    }
}

/// Tries `node` from word `at` (no further than `limit`), calling `k` with every place a match
/// can end until it returns true. `test` says whether an atom matches a word.
fn walk<T: Tree>(
    node: &T,
    at: usize,
    limit: usize,
    test: &dyn Fn(&T, usize) -> bool,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    match node.shape() {
        Shape::Atom => at < limit && test(node, at) && k(at + 1),
        Shape::Seq(items) => seq(items, at, limit, test, k),
        Shape::Alt(options) => options.iter().any(|o| walk(o, at, limit, test, k)),
        Shape::Opt(inner) => walk(inner, at, limit, test, k) || k(at),
        Shape::Gap(n) => (0..=usize::from(n)).take_while(|g| at + g <= limit).any(|g| k(at + g)),
    }
}

fn seq<T: Tree>(
    items: &[T],
    at: usize,
    limit: usize,
    test: &dyn Fn(&T, usize) -> bool,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    match items.split_first() {
        None => k(at),
        Some((first, rest)) => walk(first, at, limit, test, &mut |next| seq(rest, next, limit, test, k)),
    }
}

/// Runs compiled phrases over one message's word symbols.
struct Walker<'a> {
    syms: &'a [u16],
    tokens: &'a Tokens,
}

fn has(bits: &[u64], s: u16) -> bool {
    bits[usize::from(s) / 64] & (1 << (s % 64)) != 0
}

impl Walker<'_> {
    fn walk(&self, node: &SNode, at: usize, limit: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        let test = |n: &SNode, at: usize| matches!(n, SNode::Set(bits) if has(bits, self.syms[at]));
        walk(node, at, limit, &test, k)
    }

    /// Whether the phrase matches anywhere in one sentence.
    fn any_in(&self, phrase: &Compiled, s: &super::tokens::Sentence) -> bool {
        let (first, last) = (s.first as usize, s.last as usize);
        (first..last).any(|start| {
            if let Some(starts) = &phrase.starts {
                if !has(starts, self.syms[start]) {
                    return false;
                }
            }
            self.walk(&phrase.node, start, last, &mut |e| e > start)
        })
    }

    /// Every match as a range of words, leftmost first, at most one per start word; never across a
    /// sentence end.
    fn all(&self, phrase: &Compiled) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        for s in &self.tokens.sentences {
            let (first, last) = (s.first as usize, s.last as usize);
            for start in first..last {
                if let Some(starts) = &phrase.starts {
                    if !has(starts, self.syms[start]) {
                        continue;
                    }
                }
                // The longest match from this word: the fullest evidence.
                let mut end = None;
                self.walk(&phrase.node, start, last, &mut |e| {
                    end = end.max(Some(e));
                    e == last
                });
                if let Some(end) = end.filter(|&e| e > start) {
                    out.push(start..end);
                }
            }
        }
        out
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
        walk(node, at, limit, &|n: &Node, at: usize| self.test(n, at), k)
    }

    /// Every match of `node` as token ranges, leftmost first, the longest from each start word.
    pub fn all(&self, node: &Node, sentences: &[super::tokens::Sentence]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        for s in sentences {
            let (first, last) = (s.first as usize, s.last as usize);
            for start in first..last {
                let mut end = None;
                self.walk(node, start, last, &mut |e| {
                    end = end.max(Some(e));
                    e == last
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
    use crate::text::Prepared;
    use std::sync::Arc;

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

    fn index(entries: Vec<Entry>, lex: Lexicon) -> (Automaton, Arc<Lexicon>) {
        let lex = Arc::new(lex);
        (Automaton::build(entries, Vec::new(), &lex, &[]).unwrap(), lex)
    }

    fn found(automaton: &Automaton, lex: &Lexicon, text: &str) -> Vec<usize> {
        let p = Prepared::new(text);
        let t = Tokens::read(p.scan(), lex);
        automaton.find(&t, p.scan()).found.into_iter().map(|(e, _)| e).collect()
    }

    #[test]
    fn finds_phrases_with_gaps_options_and_stems_within_a_sentence() {
        let mut lex = lexicon();
        let havent = word(&mut lex, "haven't");
        let received = word(&mut lex, "received");
        let still = word(&mut lex, "still");
        let entries = vec![
            Entry {
                node: Node::Seq(vec![havent, Node::Gap(2), received]),
                owner: 0,
            },
            Entry {
                node: Node::Seq(vec![Node::Opt(Box::new(still)), Node::Stem("deliver".into())]),
                owner: 1,
            },
        ];
        let (index, lex) = index(entries, lex);
        let f = |t: &str| found(&index, &lex, t);
        assert_eq!(f("I havent actually recvd it"), [0]);
        assert_eq!(f("I havent, sadly, recvd it"), [0], "punctuation is not a word");
        assert!(f("I havent been sent or recvd it").is_empty(), "gap of three");
        assert!(f("I havent. recvd it").is_empty(), "never across a sentence");
        assert_eq!(f("it was deliverd"), [1], "stems read unknown words too");
        assert_eq!(f("Delivery failed, havent recvd"), [0, 1]);
        assert!(f("").is_empty());
    }

    #[test]
    fn matches_are_the_longest_from_each_word() {
        let mut lex = lexicon();
        let node = Node::Seq(vec![
            word(&mut lex, "the"),
            Node::Alt(vec![
                word(&mut lex, "courier"),
                Node::Seq(vec![word(&mut lex, "courier"), word(&mut lex, "company")]),
            ]),
        ]);
        let (index, lex) = index(vec![Entry { node, owner: 0 }], lex);
        let p = Prepared::new("blame the courier company today");
        let t = Tokens::read(p.scan(), &lex);
        let found = index.find(&t, p.scan());
        assert_eq!(found.found[0].1, vec![1..4]);
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
        let span = t.tokens[all[0].start].start as usize..t.tokens[all[0].end - 1].end as usize;
        assert_eq!(p.original(span), "havent yet recvd");
    }

    #[test]
    fn sample_text_measures_how_much_is_checked() {
        let mut lex = lexicon();
        let node = Node::Seq(vec![
            word(&mut lex, "haven't"),
            Node::Gap(2),
            word(&mut lex, "received"),
        ]);
        let (index, lex) = index(vec![Entry { node, owner: 0 }], lex);
        let texts: Vec<(Prepared, Tokens)> = ["I havent recvd it", "all good thanks", "havent got it"]
            .into_iter()
            .map(|t| {
                let p = Prepared::new(t);
                let tokens = Tokens::read(p.scan(), &lex);
                (p, tokens)
            })
            .collect();
        let warmth = index.warm(texts.iter().map(|(p, t)| (t, p.scan())));
        assert_eq!(warmth.messages, 3);
        // "received" is the rarer trigger in no sample, so "haven't" or "received" triggers: two
        // messages hold a trigger, one holds both required words.
        assert!(
            warmth.triggered > 0.0 && warmth.triggered <= 2.0 / 3.0 + 1e-9,
            "{warmth:?}"
        );
        assert!((warmth.checked - 1.0 / 3.0).abs() < 1e-9, "{warmth:?}");
    }
}
