//! Turning a chat message into the text rules are matched against.
//!
//! Rules are matched against a *scan text*: pure ASCII, one byte per character of the message, in
//! which typography is folded (curly quotes to straight, dashes to `-`, odd spaces to ` `), quoted
//! lines and code are blanked, and every other non-ASCII character stands in as `_` if it is a word
//! character (an accented letter) or as `\x01` if it is not (emoji, currency signs). Because the
//! stand-ins keep each character's word/non-word nature, `\b`, `\w` and counted repetitions mean the
//! same on the scan text as on the message — so one fast byte-oriented automaton gives exact results
//! for every message, including the ones with accents and emoji (see `docs` in the README).
//!
//! Nothing here allocates for the common case: a plain ASCII message without quotes or code is
//! scanned as it is.

use std::borrow::Cow;
use std::ops::Range;

/// Stand-in for a non-ASCII character that is not a word character (emoji, symbols).
const OTHER: u8 = 0x01;
/// Stand-in for text that is not the author's own words (quote lines, code).
const BLANK: u8 = 0x02;
/// Stand-in for a non-ASCII word character (accented letters, other scripts, combining marks).
const WORD: u8 = b'_';

/// A message ready for matching: the scan text plus the way back to the original words.
#[derive(Debug)]
pub struct Prepared<'a> {
    original: &'a str,
    scan: Cow<'a, [u8]>,
    /// For each scan byte, the byte offset in `original` it came from, plus one final entry for the
    /// end. `None` when the scan text is the original itself.
    origin: Option<Vec<u32>>,
}

impl<'a> Prepared<'a> {
    pub fn new(text: &'a str) -> Prepared<'a> {
        if is_plain(text) {
            return Prepared {
                original: text,
                scan: Cow::Borrowed(text.as_bytes()),
                origin: None,
            };
        }
        let (scan, origin) = fold(text);
        Prepared {
            original: text,
            scan: Cow::Owned(scan),
            origin: Some(origin),
        }
    }

    /// The ASCII scan text.
    pub fn scan(&self) -> &[u8] {
        &self.scan
    }

    /// The original words behind a span of the scan text.
    pub fn original(&self, span: Range<usize>) -> &'a str {
        match &self.origin {
            None => &self.original[span],
            Some(origin) => {
                let start = origin[span.start.min(origin.len() - 1)] as usize;
                let end = origin[span.end.min(origin.len() - 1)] as usize;
                self.original.get(start..end.max(start)).unwrap_or("")
            }
        }
    }

    /// The sentence around scan position `pos`: its span, and whether it ends in a question mark.
    ///
    /// Sentences end at `.`, `!`, `?`, a newline or blanked text. Good enough for chat, where the
    /// question is "are these words in the same thought", not grammar.
    pub fn sentence(&self, pos: usize) -> Sentence {
        let scan = self.scan();
        let pos = pos.min(scan.len());
        let start = scan[..pos]
            .iter()
            .rposition(|&b| is_sentence_end(b))
            .map_or(0, |i| i + 1);
        let mut end = scan[pos..]
            .iter()
            .position(|&b| is_sentence_end(b))
            .map_or(scan.len(), |i| pos + i);
        // Take in a run of terminators ("?!", "...") so the question mark is seen.
        let mut question = false;
        while end < scan.len() && matches!(scan[end], b'.' | b'!' | b'?') {
            question |= scan[end] == b'?';
            end += 1;
        }
        Sentence {
            span: start..end,
            question,
        }
    }
}

/// A sentence of the scan text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    pub span: Range<usize>,
    pub question: bool,
}

fn is_sentence_end(b: u8) -> bool {
    matches!(b, b'.' | b'!' | b'?' | b'\n' | BLANK)
}

/// True when the text can be scanned as it is: ASCII, no code, no quote lines, no control bytes
/// that could be confused with the stand-ins.
fn is_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'>') {
        return false;
    }
    let mut prev = 0u8;
    for &b in bytes {
        if b >= 0x80 || b == b'`' || b < 0x03 || (b == b'>' && prev == b'\n') {
            return false;
        }
        prev = b;
    }
    true
}

/// Where we are in Discord markdown while folding.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Own,
    QuoteLine,
    QuoteRest,
    InlineCode,
    CodeBlock,
}

fn fold(text: &str) -> (Vec<u8>, Vec<u32>) {
    let mut scan = Vec::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    let mut region = Region::Own;
    let mut at_line_start = true;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let rest = &text[i..];
        if at_line_start && region == Region::Own {
            let trimmed = rest.trim_start_matches([' ', '\t']);
            if trimmed.starts_with(">>> ") {
                region = Region::QuoteRest;
            } else if trimmed.starts_with("> ") || trimmed.starts_with(">\n") || trimmed == ">" {
                region = Region::QuoteLine;
            }
        }
        at_line_start = c == '\n';
        match (region, c) {
            (Region::Own, '`') if rest.starts_with("```") => {
                region = Region::CodeBlock;
                push_n(&mut scan, &mut origin, BLANK, i, 3);
                chars.next();
                chars.next();
                continue;
            }
            (Region::Own, '`') => {
                region = Region::InlineCode;
                push_n(&mut scan, &mut origin, BLANK, i, 1);
                continue;
            }
            (Region::CodeBlock, '`') if rest.starts_with("```") => {
                region = Region::Own;
                push_n(&mut scan, &mut origin, BLANK, i, 3);
                chars.next();
                chars.next();
                continue;
            }
            (Region::InlineCode, '`') => {
                region = Region::Own;
                push_n(&mut scan, &mut origin, BLANK, i, 1);
                continue;
            }
            (Region::QuoteLine, '\n') => {
                region = Region::Own;
                push_n(&mut scan, &mut origin, b'\n', i, 1);
                continue;
            }
            (Region::Own, _) => {}
            (_, '\n') => {
                push_n(&mut scan, &mut origin, b'\n', i, 1);
                continue;
            }
            (_, _) => {
                push_n(&mut scan, &mut origin, BLANK, i, 1);
                continue;
            }
        }
        match fold_char(c) {
            Folded::Byte(b) => push_n(&mut scan, &mut origin, b, i, 1),
            Folded::Ellipsis => push_n(&mut scan, &mut origin, b'.', i, 3),
            Folded::Drop => {}
        }
    }
    origin.push(text.len() as u32);
    (scan, origin)
}

fn push_n(scan: &mut Vec<u8>, origin: &mut Vec<u32>, b: u8, at: usize, n: usize) {
    for _ in 0..n {
        scan.push(b);
        origin.push(at as u32);
    }
}

enum Folded {
    Byte(u8),
    Ellipsis,
    Drop,
}

fn fold_char(c: char) -> Folded {
    Folded::Byte(match c {
        // Control bytes that would collide with the stand-ins.
        '\u{0}'..='\u{2}' => b' ',
        c if c.is_ascii() => c as u8,
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' | '\u{00B4}' => b'\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}' | '\u{00BB}' => b'"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => b'-',
        '\u{2026}' => return Folded::Ellipsis,
        '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => b' ',
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => return Folded::Drop,
        // Unicode case folding maps these onto ASCII letters; keep that meaning.
        '\u{212A}' => b'k',
        '\u{017F}' => b's',
        // Fullwidth ASCII (common from some keyboards) reads as the letter it shows.
        '\u{FF01}'..='\u{FF5E}' => (c as u32 - 0xFF01 + 0x21) as u8,
        c if c.is_alphanumeric() || is_combining_mark(c) => WORD,
        _ => OTHER,
    })
}

fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}' | '\u{0483}'..='\u{0489}' | '\u{0591}'..='\u{05BD}'
        | '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}' | '\u{0900}'..='\u{0903}'
        | '\u{093A}'..='\u{094F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> String {
        String::from_utf8(Prepared::new(text).scan().to_vec()).unwrap()
    }

    #[test]
    fn plain_ascii_is_borrowed() {
        let p = Prepared::new("I haven't received it.");
        assert!(matches!(p.scan, Cow::Borrowed(_)));
        assert_eq!(p.original(2..9), "haven't");
    }

    #[test]
    fn typography_is_folded() {
        assert_eq!(
            scan("I haven’t “received” it – yet…"),
            "I haven't \"received\" it - yet..."
        );
        assert_eq!(scan("a\u{200B}b\u{00A0}c"), "ab c");
    }

    #[test]
    fn non_ascii_keeps_one_byte_per_character_and_its_word_nature() {
        assert_eq!(scan("café 😡 ₹500"), "caf_ \x01 \x01500");
        assert_eq!(scan("नमस्ते"), "______");
    }

    #[test]
    fn spans_map_back_to_the_original_words() {
        let p = Prepared::new("I haven’t recieved it 😡");
        let s = std::str::from_utf8(p.scan()).unwrap();
        let at = s.find("haven't recieved").unwrap();
        assert_eq!(p.original(at..at + 16), "haven’t recieved");
    }

    #[test]
    fn quote_lines_and_code_are_blanked() {
        let s = scan("> I never got it\nwell I did get it");
        assert!(!s.contains("never"), "{s:?}");
        assert!(s.ends_with("\nwell I did get it"));
        let s = scan("look: ```I never got it``` ok `never got` fine");
        assert!(!s.contains("never"), "{s:?}");
        assert!(s.ends_with(" ok \x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02 fine"));
        let s = scan("hi\n>>> I never got it\nstill quoted");
        assert_eq!(s.trim_end_matches(['\x02', '\n']), "hi");
    }

    #[test]
    fn a_greater_than_sign_mid_line_is_not_a_quote() {
        assert_eq!(scan("3 > 2, I never got it"), "3 > 2, I never got it");
    }

    #[test]
    fn sentences_and_questions() {
        let p = Prepared::new("Our courier lost it. Did the courier call you? ok");
        let s = std::str::from_utf8(p.scan()).unwrap();
        let first = p.sentence(s.find("courier").unwrap());
        assert_eq!(first.span, 0..20);
        assert!(!first.question);
        let second = p.sentence(s.rfind("courier").unwrap());
        assert!(second.question);
    }

    #[test]
    fn odd_input_never_panics() {
        for text in ["", "`", "```", ">", "> ", "\u{FEFF}", "…", "\u{0}\u{1}\u{2}", "a\r\nb"] {
            let p = Prepared::new(text);
            let n = p.scan().len();
            let _ = p.original(0..n);
            let _ = p.sentence(n);
            let _ = p.sentence(0);
        }
    }
}
