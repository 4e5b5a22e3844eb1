//! Splitting a prepared message into normalised words and sentences, once per message.
//!
//! Works on the ASCII scan text from [`super::text`] (typography folded, quotes and code blanked,
//! non-ASCII letters standing in as `_`), and reads every word through the [`Lexicon`]. What
//! rules, the learned model and the timeframe reader see is this list: canonical word ids with
//! their place in the message, grouped into sentences.
//!
//! - A word is letters, digits, `_` and inner apostrophes; inner hyphens join words the lexicon
//!   knows ("e-mail") and split the rest ("follow-up" → follow, up).
//! - Digits are one shape (`{digits}`), "3rd" another (`{nth}`); "24hrs" splits into 24, hrs.
//! - "p.m.", "a.m.", "e.g." are one word each; `@handles` and web addresses are one token each.
//! - A sentence ends at `.`, `!`, `?`, a new line or blanked text; it is a question when its end
//!   holds a `?`. Other punctuation is not a word and phrases read straight across it.

use super::lexicon::{Lexicon, WordId, DIGITS, LINK, MENTION, NTH, UNKNOWN};

/// One word of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The canonical word, a shape ([`DIGITS`]…), or [`UNKNOWN`].
    pub word: WordId,
    /// Where it is in the scan text.
    pub start: u32,
    pub end: u32,
    /// Index of its sentence in [`Tokens::sentences`].
    pub sentence: u32,
}

/// One sentence: its span in the scan text (terminators included) and its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sentence {
    pub start: u32,
    pub end: u32,
    /// Tokens `first..last` belong to this sentence.
    pub first: u32,
    pub last: u32,
    pub question: bool,
}

/// A message as words and sentences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub tokens: Vec<Token>,
    pub sentences: Vec<Sentence>,
}

fn is_end(b: u8) -> bool {
    matches!(b, b'.' | b'!' | b'?' | b'\n' | 0x02)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Tokens {
    /// Tokenises a scan text (see [`super::text::Prepared::scan`]).
    pub fn read(scan: &[u8], lexicon: &Lexicon) -> Tokens {
        let mut out = Tokens {
            tokens: Vec::with_capacity(scan.len() / 5 + 1),
            sentences: Vec::new(),
        };
        let n = scan.len();
        let mut i = 0;
        let mut sentence_start = 0;
        while i < n {
            let b = scan[i];
            if is_end(b) {
                let mut j = i;
                let mut question = false;
                // A run of terminators ends one sentence: "?!", "...", "\n\n".
                while j < n && (is_end(scan[j]) || (scan[j] == b' ' && j + 1 < n && is_end(scan[j + 1]))) {
                    question |= scan[j] == b'?';
                    j += 1;
                }
                out.close(sentence_start, j, question);
                sentence_start = j;
                i = j;
                continue;
            }
            if b == b'@' && i + 1 < n && is_word(scan[i + 1]) {
                let end = run(scan, i + 1, is_word);
                out.push(MENTION, i, end);
                i = end;
                continue;
            }
            if is_link_start(&scan[i..]) {
                let mut end = run(scan, i, |c| !c.is_ascii_whitespace() && c != 0x02 && c != 0x01);
                // A link at the end of a sentence leaves its full stop to the sentence.
                while end > i + 4 && matches!(scan[end - 1], b'.' | b',' | b')' | b'!' | b'?') {
                    end -= 1;
                }
                out.push(LINK, i, end);
                i = end;
                continue;
            }
            if is_word(b) || (b == b'\'' && i + 1 < n && is_word(scan[i + 1])) {
                i = out.word(scan, i, lexicon);
                continue;
            }
            i += 1;
        }
        out.close(sentence_start, n, false);
        out
    }

    fn push(&mut self, word: WordId, start: usize, end: usize) {
        self.tokens.push(Token {
            word,
            start: start as u32,
            end: end as u32,
            sentence: self.sentences.len() as u32,
        });
    }

    fn close(&mut self, start: usize, end: usize, question: bool) {
        let first = self.sentences.last().map_or(0, |s| s.last);
        let last = self.tokens.len() as u32;
        if first == last && start == end {
            return;
        }
        if first == last {
            // Nothing but punctuation: fold it into the previous sentence's span.
            if let Some(prev) = self.sentences.last_mut() {
                prev.end = end as u32;
                prev.question |= question;
                return;
            }
        }
        self.sentences.push(Sentence {
            start: start as u32,
            end: end as u32,
            first,
            last,
            question,
        });
    }

    /// Reads one word starting at `start`; returns where it ends.
    fn word(&mut self, scan: &[u8], start: usize, lexicon: &Lexicon) -> usize {
        let n = scan.len();
        // "p.m.", "a.m.", "e.g.", "i.e.": one word, read without its dots.
        if start + 3 <= n
            && scan[start].is_ascii_alphabetic()
            && scan[start + 1] == b'.'
            && scan[start + 2].is_ascii_alphabetic()
            && (start + 3 == n || !is_word(scan[start + 3]))
            && (start == 0 || !is_word(scan[start - 1]))
        {
            let end = if start + 3 < n && scan[start + 3] == b'.' {
                start + 4
            } else {
                start + 3
            };
            let letters = [scan[start], scan[start + 2]];
            self.push(lexicon.lookup(&letters), start, end);
            return end;
        }
        let mut end = start;
        while end < n {
            let c = scan[end];
            let inner = end > start && end + 1 < n && is_word(scan[end + 1]);
            if is_word(c)
                || (c == b'\'' && (inner || end == start))
                || (c == b'-' && inner)
                || (c == b'.' && inner && scan[end - 1].is_ascii_digit() && scan[end + 1].is_ascii_digit())
            {
                end += 1;
            } else {
                break;
            }
        }
        let (mut s, mut e) = (start, end);
        while s < e && scan[s] == b'\'' {
            s += 1;
        }
        while e > s && scan[e - 1] == b'\'' {
            e -= 1;
        }
        if s < e {
            self.pieces(scan, s, e, lexicon);
        }
        end.max(start + 1)
    }

    /// Normalises one raw word, splitting it where the lexicon does not know it whole.
    fn pieces(&mut self, scan: &[u8], s: usize, e: usize, lexicon: &Lexicon) {
        let raw = &scan[s..e];
        // The lexicon first, so a team can give a number-like word its own meaning ("1st" →
        // first, "2day" → today); otherwise numbers are shapes.
        let id = lexicon.lookup(raw);
        if id != UNKNOWN {
            self.push(id, s, e);
            return;
        }
        if let Some(shape) = number_shape(raw) {
            self.push(shape, s, e);
            return;
        }
        // follow-up → follow, up (unless the lexicon knows the whole).
        if let Some(h) = raw.iter().position(|&c| c == b'-') {
            self.pieces(scan, s, s + h, lexicon);
            self.pieces(scan, s + h + 1, e, lexicon);
            return;
        }
        // 24hrs → 24, hrs; 3pm → 3, pm (unless the lexicon knows the whole, like 2day).
        if let Some(split) = (1..raw.len()).find(|&k| raw[k - 1].is_ascii_digit() != raw[k].is_ascii_digit()) {
            if raw[..split].iter().all(u8::is_ascii_digit) || raw[split..].iter().all(u8::is_ascii_digit) {
                self.pieces(scan, s, s + split, lexicon);
                self.pieces(scan, s + split, e, lexicon);
                return;
            }
        }
        // The courier's end → courier.
        if raw.len() > 3 && raw[raw.len() - 2..].eq_ignore_ascii_case(b"'s") {
            let base = lexicon.lookup(&raw[..raw.len() - 2]);
            if base != UNKNOWN {
                self.push(base, s, e);
                return;
            }
        }
        self.push(UNKNOWN, s, e);
    }

    /// The sentence a scan position falls in (the last one for positions past the end).
    pub fn sentence_at(&self, pos: usize) -> Option<&Sentence> {
        self.sentence_of(pos).map(|i| &self.sentences[i])
    }

    /// The index of the sentence a scan position falls in.
    pub fn sentence_of(&self, pos: usize) -> Option<usize> {
        if self.sentences.is_empty() {
            return None;
        }
        Some(
            self.sentences
                .partition_point(|s| (s.end as usize) <= pos)
                .min(self.sentences.len() - 1),
        )
    }

    /// The words of the message as the lexicon reads them: canonical words, shapes as `{digits}`,
    /// unknown words lowercased as written.
    pub fn words<'a>(
        &'a self,
        scan: &'a [u8],
        lexicon: &'a Lexicon,
    ) -> impl Iterator<Item = std::borrow::Cow<'a, str>> + 'a {
        self.tokens.iter().map(move |t| word_text(t, scan, lexicon))
    }
}

/// How a token reads: its canonical word, or its own letters lowercased when unknown.
pub fn word_text<'a>(t: &Token, scan: &'a [u8], lexicon: &'a Lexicon) -> std::borrow::Cow<'a, str> {
    if t.word == UNKNOWN {
        let raw = &scan[t.start as usize..t.end as usize];
        std::borrow::Cow::Owned(String::from_utf8_lossy(raw).to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(lexicon.word(t.word))
    }
}

fn run(scan: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    from + scan[from..].iter().take_while(|&&c| keep(c)).count()
}

fn is_link_start(rest: &[u8]) -> bool {
    let starts = |p: &[u8]| rest.len() > p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
    starts(b"http://") || starts(b"https://") || starts(b"www.")
}

/// `{digits}` for "3", "2015", "3.5"; `{nth}` for "3rd", "21st".
fn number_shape(raw: &[u8]) -> Option<WordId> {
    let digits = raw.iter().take_while(|c| c.is_ascii_digit() || **c == b'.').count();
    if digits == 0 || !raw[0].is_ascii_digit() {
        return None;
    }
    if digits == raw.len() {
        return Some(DIGITS);
    }
    let suffix = &raw[digits..];
    let nth = [&b"st"[..], b"nd", b"rd", b"th"];
    (digits < raw.len() && nth.iter().any(|s| suffix.eq_ignore_ascii_case(s))).then_some(NTH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Prepared;

    fn lexicon() -> Lexicon {
        Lexicon::parse(&[(
            "lexicon.toml".into(),
            r#"
[spellings]
received = ["recieved", "recvd", "rcvd"]
"haven't" = ["havent", "hvnt"]
you = ["u"]
today = ["2day"]
email = ["e-mail"]
hours = ["hrs"]
pm = []
courier = []
"#
            .into(),
        )])
        .unwrap()
    }

    fn words(text: &str) -> Vec<String> {
        let lex = lexicon();
        let p = Prepared::new(text);
        let t = Tokens::read(p.scan(), &lex);
        t.words(p.scan(), &lex).map(|w| w.into_owned()).collect()
    }

    #[test]
    fn variants_normalise() {
        assert_eq!(words("I HVNT recvd it"), ["i", "haven't", "received", "it"]);
        assert_eq!(words("i haven’t recieved"), ["i", "haven't", "received"]);
        assert_eq!(words("will u do it 2day"), ["will", "you", "do", "it", "today"]);
        assert_eq!(words("send an e-mail"), ["send", "an", "email"]);
    }

    #[test]
    fn non_ascii_words_stay_exact() {
        // An accented letter makes a different word: never read as the ASCII one.
        let w = words("recievéd café");
        assert_eq!(w, ["reciev_d", "caf_"]);
        let lex = lexicon();
        let p = Prepared::new("recievéd");
        let t = Tokens::read(p.scan(), &lex);
        assert_eq!(t.tokens[0].word, UNKNOWN);
    }

    #[test]
    fn shapes_numbers_and_splits() {
        assert_eq!(
            words("3 times, the 3rd time, 24hrs, by 3pm"),
            ["{digits}", "times", "the", "{nth}", "time", "{digits}", "hours", "by", "{digits}", "pm"]
        );
        assert_eq!(
            words("a follow-up @Support_Team https://t.co/x."),
            ["a", "follow", "up", "{mention}", "{link}"]
        );
        assert_eq!(words("at 3 p.m. today"), ["at", "{digits}", "pm", "today"]);
        assert_eq!(words("the courier's end"), ["the", "courier", "end"]);
        assert_eq!(words("'quoted' words"), ["quoted", "words"]);
        assert_eq!(words("it costs 3.50 now"), ["it", "costs", "{digits}", "now"]);
    }

    #[test]
    fn sentences_and_questions() {
        let lex = lexicon();
        let p = Prepared::new("Our courier lost it. Did the courier call you?! ok\nnext line");
        let t = Tokens::read(p.scan(), &lex);
        assert_eq!(t.sentences.len(), 4);
        assert!(!t.sentences[0].question);
        assert!(t.sentences[1].question);
        assert_eq!(t.sentences[1].last - t.sentences[1].first, 5);
        assert_eq!(t.tokens[5].sentence, 1);
        let s = &t.sentences[0];
        assert_eq!(&p.scan()[s.start as usize..s.end as usize], b"Our courier lost it.");
    }

    #[test]
    fn quoted_lines_are_not_words() {
        let lex = lexicon();
        let p = Prepared::new("> I never got it\nwell I did get it");
        let t = Tokens::read(p.scan(), &lex);
        let w: Vec<_> = t.words(p.scan(), &lex).collect();
        assert_eq!(w, ["well", "i", "did", "get", "it"]);
    }

    #[test]
    fn odd_input_never_panics() {
        let lex = lexicon();
        for text in [
            "",
            "'",
            "''",
            "-",
            "a-",
            "-a",
            "@",
            "@@a",
            "http://",
            "1.",
            ".1",
            "p.",
            "a.b",
            "3rd",
            "'s",
            "x's",
            "\u{1}\u{2}",
        ] {
            let p = Prepared::new(text);
            let t = Tokens::read(p.scan(), &lex);
            for tok in &t.tokens {
                assert!(tok.start < tok.end && tok.end as usize <= p.scan().len(), "{text:?}");
            }
        }
    }
}
