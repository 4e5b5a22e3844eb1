//! The phrase language rules are written in.
//!
//! A phrase is words in order, read after the lexicon has normalised the message:
//!
//! | write | matches |
//! |---|---|
//! | `never received` | the two words, next to each other |
//! | `{negation}` | any member of a lexicon class |
//! | `{negation} ~2 {receive}` | up to two other words in between |
//! | `still?` | an optional word (any item can take `?`) |
//! | `(call \| ring) back` | alternatives, grouped |
//! | `deliver*` | a stem: delivered, delivery, deliveries… |
//!
//! A phrase never reaches across a sentence end (`.`, `!`, `?`, a new line). Punctuation inside a
//! sentence is not a word and is skipped. This module only parses; [`super::automaton`] compiles.

use std::collections::BTreeSet;
use std::fmt;

/// Longest gap a phrase may ask for: longer gaps match across unrelated clauses and cost the
/// automaton dearly.
pub const MAX_GAP: u8 = 6;
/// Shortest stem: shorter ones match too many unrelated words.
pub const MIN_STEM: usize = 3;

/// A parsed phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ast {
    /// A word as written (lowercase); the lexicon normalises it when compiled.
    Word(String),
    /// A stem: any word starting with these letters.
    Stem(String),
    /// A lexicon class by name.
    Class(String),
    /// Up to this many words of anything, within the sentence.
    Gap(u8),
    Optional(Box<Ast>),
    Seq(Vec<Ast>),
    Alt(Vec<Ast>),
}

/// Why a phrase could not be read, with the character column where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (column {column})")]
pub struct PhraseError {
    pub column: usize,
    pub message: String,
}

fn err(column: usize, message: impl Into<String>) -> PhraseError {
    PhraseError {
        column: column + 1,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Lex {
    Word(String),
    Class(String),
    Gap(u8),
    Star,
    Question,
    Open,
    Close,
    Bar,
}

fn lex(text: &str) -> Result<Vec<(usize, Lex)>, PhraseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => out.push((i, Lex::Open)),
            b')' => out.push((i, Lex::Close)),
            b'|' => out.push((i, Lex::Bar)),
            b'?' => out.push((i, Lex::Question)),
            b'*' => out.push((i, Lex::Star)),
            b'~' => {
                let digits: String = text[i + 1..].chars().take_while(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    return Err(err(i, "a gap needs a number: ~2 means up to two words"));
                }
                let n: u8 = digits.parse().unwrap_or(u8::MAX);
                if n == 0 || n > MAX_GAP {
                    return Err(err(i, format!("gaps run from ~1 to ~{MAX_GAP}")));
                }
                out.push((i, Lex::Gap(n)));
                i += 1 + digits.len();
                continue;
            }
            b'{' => {
                let Some(end) = text[i..].find('}') else {
                    return Err(err(i, "'{' without a closing '}'"));
                };
                let name = text[i + 1..i + end].trim();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
                {
                    return Err(err(
                        i,
                        format!("{{{name}}}: class names are lowercase letters, digits and '_'"),
                    ));
                }
                out.push((i, Lex::Class(name.to_string())));
                i += end + 1;
                continue;
            }
            b if b.is_ascii_alphanumeric() || b == b'\'' || b == b'-' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'\'' || bytes[i] == b'-') {
                    i += 1;
                }
                out.push((start, Lex::Word(text[start..i].to_ascii_lowercase())));
                continue;
            }
            _ => {
                let c = text[i..].chars().next().unwrap_or('?');
                let hint = if c.is_ascii() {
                    "write words, {classes}, ~N gaps, ( | ) groups, ? and *; punctuation is not matched"
                } else {
                    "phrases are ASCII; curly quotes and dashes in messages are read as ' and -"
                };
                return Err(err(i, format!("unexpected {c:?}: {hint}")));
            }
        }
        i += 1;
    }
    Ok(out)
}

struct Parser {
    items: Vec<(usize, Lex)>,
    at: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Lex> {
        self.items.get(self.at).map(|(_, l)| l)
    }

    fn column(&self) -> usize {
        self.items.get(self.at).map_or(self.len, |(c, _)| *c)
    }

    fn alt(&mut self) -> Result<Ast, PhraseError> {
        let mut options = vec![self.seq()?];
        while self.peek() == Some(&Lex::Bar) {
            self.at += 1;
            options.push(self.seq()?);
        }
        Ok(if options.len() == 1 {
            options.pop().expect("one option")
        } else {
            Ast::Alt(options)
        })
    }

    fn seq(&mut self) -> Result<Ast, PhraseError> {
        let mut items = Vec::new();
        loop {
            let column = self.column();
            let item = match self.peek().cloned() {
                None | Some(Lex::Bar) | Some(Lex::Close) => break,
                Some(Lex::Word(w)) => {
                    self.at += 1;
                    if self.peek() == Some(&Lex::Star) {
                        self.at += 1;
                        if w.len() < MIN_STEM {
                            return Err(err(
                                column,
                                format!("stem {w:?}* is too short: at least {MIN_STEM} letters"),
                            ));
                        }
                        Ast::Stem(w)
                    } else {
                        Ast::Word(w)
                    }
                }
                Some(Lex::Class(c)) => {
                    self.at += 1;
                    Ast::Class(c)
                }
                Some(Lex::Gap(n)) => {
                    self.at += 1;
                    Ast::Gap(n)
                }
                Some(Lex::Open) => {
                    self.at += 1;
                    let inner = self.alt()?;
                    if self.peek() != Some(&Lex::Close) {
                        return Err(err(column, "'(' without a closing ')'"));
                    }
                    self.at += 1;
                    inner
                }
                Some(Lex::Star) => return Err(err(column, "'*' goes straight after a word: deliver*")),
                Some(Lex::Question) => return Err(err(column, "'?' goes straight after a word, class or group")),
            };
            let item = if self.peek() == Some(&Lex::Question) {
                if matches!(item, Ast::Gap(_)) {
                    return Err(err(
                        self.column(),
                        "a gap is already optional: ~2 means zero to two words",
                    ));
                }
                self.at += 1;
                Ast::Optional(Box::new(item))
            } else {
                item
            };
            items.push(item);
        }
        if items.is_empty() {
            return Err(err(self.column(), "empty phrase or alternative"));
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Ast::Seq(items)
        })
    }
}

/// Parses one phrase.
pub fn parse(text: &str) -> Result<Ast, PhraseError> {
    let items = lex(text)?;
    let mut parser = Parser {
        items,
        at: 0,
        len: text.len(),
    };
    let ast = parser.alt()?;
    if let Some((column, _)) = parser.items.get(parser.at) {
        return Err(err(*column, "')' without an opening '('"));
    }
    if ast.min_len() == 0 {
        return Err(err(
            0,
            "the phrase can match nothing at all: make at least one word required",
        ));
    }
    if ast.starts_with_gap() || ast.ends_with_gap() {
        return Err(err(0, "a gap at the start or end of a phrase adds nothing: remove it"));
    }
    Ok(ast)
}

impl Ast {
    /// The fewest words this can match.
    pub fn min_len(&self) -> usize {
        match self {
            Ast::Word(_) | Ast::Stem(_) | Ast::Class(_) => 1,
            Ast::Gap(_) | Ast::Optional(_) => 0,
            Ast::Seq(items) => items.iter().map(Ast::min_len).sum(),
            Ast::Alt(options) => options.iter().map(Ast::min_len).min().unwrap_or(0),
        }
    }

    fn starts_with_gap(&self) -> bool {
        match self {
            Ast::Gap(_) => true,
            Ast::Seq(items) => items.first().is_some_and(Ast::starts_with_gap),
            Ast::Alt(options) => options.iter().any(Ast::starts_with_gap),
            _ => false,
        }
    }

    fn ends_with_gap(&self) -> bool {
        match self {
            Ast::Gap(_) => true,
            Ast::Seq(items) => items.last().is_some_and(Ast::ends_with_gap),
            Ast::Alt(options) => options.iter().any(Ast::ends_with_gap),
            _ => false,
        }
    }

    pub fn has_gap(&self) -> bool {
        match self {
            Ast::Gap(_) => true,
            Ast::Optional(inner) => inner.has_gap(),
            Ast::Seq(items) | Ast::Alt(items) => items.iter().any(Ast::has_gap),
            _ => false,
        }
    }

    /// Every class name used, directly.
    pub fn classes(&self, out: &mut BTreeSet<String>) {
        match self {
            Ast::Class(c) => {
                out.insert(c.clone());
            }
            Ast::Optional(inner) => inner.classes(out),
            Ast::Seq(items) | Ast::Alt(items) => items.iter().for_each(|i| i.classes(out)),
            _ => {}
        }
    }

    /// Every literal word used, directly.
    pub fn words(&self, out: &mut Vec<String>) {
        match self {
            Ast::Word(w) => out.push(w.clone()),
            Ast::Optional(inner) => inner.words(out),
            Ast::Seq(items) | Ast::Alt(items) => items.iter().for_each(|i| i.words(out)),
            _ => {}
        }
    }
}

impl fmt::Display for Ast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ast::Word(w) => f.write_str(w),
            Ast::Stem(s) => write!(f, "{s}*"),
            Ast::Class(c) => write!(f, "{{{c}}}"),
            Ast::Gap(n) => write!(f, "~{n}"),
            Ast::Optional(inner) => match **inner {
                Ast::Seq(_) | Ast::Alt(_) => write!(f, "({inner})?"),
                _ => write!(f, "{inner}?"),
            },
            Ast::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    match item {
                        Ast::Alt(_) => write!(f, "({item})")?,
                        _ => write!(f, "{item}")?,
                    }
                }
                Ok(())
            }
            Ast::Alt(options) => {
                for (i, option) in options.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{option}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Ast {
        Ast::Word(s.into())
    }

    #[test]
    fn words_classes_gaps_options_and_stems() {
        assert_eq!(
            parse("{negation} ~2 {receive}").unwrap(),
            Ast::Seq(vec![
                Ast::Class("negation".into()),
                Ast::Gap(2),
                Ast::Class("receive".into())
            ])
        );
        assert_eq!(
            parse("still? (call | ring) back").unwrap(),
            Ast::Seq(vec![
                Ast::Optional(Box::new(w("still"))),
                Ast::Alt(vec![w("call"), w("ring")]),
                w("back")
            ])
        );
        assert_eq!(parse("Deliver*").unwrap(), Ast::Stem("deliver".into()));
        assert_eq!(parse("haven't").unwrap(), w("haven't"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "{negation} ~2 {receive}",
            "still? (call | ring) back",
            "(i | we) 'll?",
            "a (b c)? dee*",
        ] {
            let ast = parse(text).unwrap();
            assert_eq!(parse(&ast.to_string()).unwrap(), ast, "{text} -> {ast}");
        }
    }

    #[test]
    fn bad_phrases_say_what_and_where() {
        let cases = [
            ("never (got", "'(' without a closing ')' (column 7)"),
            ("never got)", "')' without an opening '(' (column 10)"),
            ("never ~9 got", "gaps run from ~1 to ~6 (column 7)"),
            ("never ~ got", "a gap needs a number"),
            ("~2 got", "a gap at the start or end"),
            ("got?", "can match nothing"),
            ("de* x", "too short"),
            ("never, got", "unexpected ','"),
            ("caf\u{e9}", "phrases are ASCII"),
            ("{Neg}", "class names are lowercase"),
            ("a | | b", "empty phrase or alternative"),
            ("a ~2? b", "a gap is already optional"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
