//! Masks customers' personal data in excerpts before anything is stored or logged.
//!
//! Backstop keeps a few words of a message so a reminder can say what was promised; those words
//! can hold an email address, a phone or card number, an order or tracking number. The database
//! must never become a store of such data, so every excerpt passes through a [`Redactor`] first.
//! Teams add their own patterns (account formats, ticket ids) in `backstop.toml`.

use regex::Regex;
use serde::Deserialize;

use crate::engine::Problem;

/// One masking rule: what to find, and what to put in its place.
#[derive(Debug, Clone)]
pub struct Mask {
    pub name: String,
    pattern: Regex,
    replace: String,
    /// A match with fewer digits than this is left alone ("$45.99" is not a phone number).
    min_digits: usize,
}

/// A pattern as written in `[[storage.redact]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskDef {
    pub name: String,
    pub pattern: String,
    #[serde(default = "default_replacement")]
    pub replace: String,
}

fn default_replacement() -> String {
    "[redacted]".to_string()
}

/// The built-in masks, in the order they run: the most specific shapes first, so an email's
/// digits are not half-masked as a phone number.
const DEFAULTS: &[(&str, &str, &str, usize)] = &[
    (
        "email",
        r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b",
        "[email]",
        0,
    ),
    // 12–19 digits with optional spaces or dashes: payment cards, bank accounts, IBAN tails.
    ("card_or_account", r"\b\d(?:[ -]?\d){11,18}\b", "[number]", 0),
    // Phone numbers: optional +country, then groups with the usual separators; 8 digits or more.
    (
        "phone",
        r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,5}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}\b|\+\d{8,15}\b",
        "[phone]",
        8,
    ),
    // Order, tracking, reference and ticket numbers: a token with a digit and 6+ characters,
    // optionally led by a few letters ("ORD-123456", "1Z999AA10123456784", "#4471234").
    ("order_or_tracking", r"(?i)#?\b[a-z]{0,4}-?\d[a-z0-9-]{4,}\b", "[id]", 0),
];

/// Applies the masks in order.
#[derive(Debug, Clone)]
pub struct Redactor {
    masks: Vec<Mask>,
}

impl Default for Redactor {
    fn default() -> Redactor {
        Redactor::new(&[], "built-in").unwrap_or(Redactor { masks: Vec::new() })
    }
}

impl Redactor {
    /// The built-in masks followed by `extra`. Bad patterns are problems naming the file and mask.
    pub fn new(extra: &[MaskDef], file: &str) -> Result<Redactor, Vec<Problem>> {
        let mut masks = Vec::new();
        let mut problems = Vec::new();
        for (name, pattern, replace, min_digits) in DEFAULTS {
            let pattern = Regex::new(pattern).expect("built-in redaction pattern");
            masks.push(Mask {
                name: (*name).to_string(),
                pattern,
                replace: (*replace).to_string(),
                min_digits: *min_digits,
            });
        }
        for (i, def) in extra.iter().enumerate() {
            match Regex::new(&def.pattern) {
                Ok(pattern) => masks.push(Mask {
                    name: def.name.clone(),
                    pattern,
                    replace: def.replace.clone(),
                    min_digits: 0,
                }),
                Err(e) => problems.push(Problem::new(
                    file,
                    None,
                    Some(format!("storage.redact[{i}] \"{}\"", def.name)),
                    format!("not a valid pattern: {e}"),
                )),
            }
        }
        if problems.is_empty() {
            Ok(Redactor { masks })
        } else {
            Err(problems)
        }
    }

    /// The text with every match of every mask replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for m in &self.masks {
            if m.pattern.is_match(&out) {
                out = m
                    .pattern
                    .replace_all(&out, |c: &regex::Captures<'_>| {
                        let found = &c[0];
                        if found.chars().filter(char::is_ascii_digit).count() >= m.min_digits {
                            m.replace.clone()
                        } else {
                            found.to_string()
                        }
                    })
                    .into_owned();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> String {
        Redactor::default().redact(text)
    }

    #[test]
    fn masks_emails() {
        assert_eq!(
            r("write to jane.doe+orders@example.co.uk today"),
            "write to [email] today"
        );
    }

    #[test]
    fn masks_phone_numbers_in_common_shapes() {
        for phone in [
            "+44 20 7946 0958",
            "(555) 123-4567",
            "555-123-4567",
            "07946 095812",
            "+14155550123",
        ] {
            let out = r(&format!("call me on {phone} please"));
            assert!(
                !out.chars().any(|c| c.is_ascii_digit()),
                "{phone} left digits in {out:?}"
            );
        }
    }

    #[test]
    fn masks_card_and_account_numbers() {
        assert_eq!(r("card 4111 1111 1111 1111 was charged"), "card [number] was charged");
        assert_eq!(r("acct 123456789012"), "acct [number]");
    }

    #[test]
    fn masks_order_and_tracking_numbers() {
        for id in ["ORD-123456", "1Z999AA10123456784", "#4471234", "AB12345678"] {
            let out = r(&format!("about order {id}, still nothing"));
            assert!(!out.contains(id), "{id} kept in {out:?}");
            assert!(out.contains("still nothing"));
        }
    }

    #[test]
    fn leaves_ordinary_words_times_and_amounts_alone() {
        let text = "I'll call you back tomorrow by 3pm, sorry about the wait of 2 weeks";
        assert_eq!(r(text), text);
        assert_eq!(r("refund of $45.99 on 12 May"), "refund of $45.99 on 12 May");
    }

    #[test]
    fn team_patterns_run_after_the_built_in_ones() {
        let extra = [MaskDef {
            name: "member".into(),
            pattern: r"\bMEM[A-Z]{3}\b".into(),
            replace: "[member]".into(),
        }];
        let red = Redactor::new(&extra, "config/backstop.toml").unwrap();
        assert_eq!(
            red.redact("member MEMXYZ, mail a@b.io"),
            "member [member], mail [email]"
        );
    }

    #[test]
    fn a_bad_team_pattern_names_its_place() {
        let extra = [MaskDef {
            name: "broken".into(),
            pattern: "(unclosed".into(),
            replace: "x".into(),
        }];
        let problems = Redactor::new(&extra, "config/backstop.toml").unwrap_err();
        let shown = problems[0].to_string();
        assert!(shown.contains("config/backstop.toml"), "{shown}");
        assert!(shown.contains("storage.redact[0] \"broken\""), "{shown}");
    }
}
