//! Problems found in user-edited files (rules, prompts, settings), each naming its place.
//!
//! Loading collects every problem it can find before giving up, so a team lead fixing a rule file
//! sees the whole list at once rather than one error per run.

use std::fmt;

/// One thing wrong with a user-edited file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user named it (e.g. `config/rules.toml`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What the problem belongs to: `rule "not_received.havent"`, `template prior_failure`, a key.
    pub item: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(file: &str, line: Option<usize>, item: Option<String>, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_string(),
            line,
            item,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(item) = &self.item {
            write!(f, "{item}: ")?;
        }
        // Multi-line messages (a regex error's caret diagram) stay readable under a list item.
        for (i, line) in self.message.lines().enumerate() {
            if i > 0 {
                f.write_str("\n      ")?;
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

/// Every problem found in one load, as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{} found:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// The 1-based line of a byte offset in a file's text.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Turns a TOML parse error into a problem with its line.
pub fn toml_problem(file: &str, text: &str, err: &toml::de::Error) -> Problem {
    let line = err.span().map(|s| line_of(text, s.start));
    let mut message = err.message().trim().to_string();
    if message.is_empty() {
        // The toml crate gives some errors no words (a control character in a comment): name the
        // character and its column.
        message = match err.span() {
            Some(span) => {
                let column = text
                    .get(..span.start)
                    .map_or(0, |t| t.chars().rev().take_while(|&c| c != '\n').count())
                    + 1;
                match text.get(span.start..).and_then(|t| t.chars().next()) {
                    Some(c) => format!("column {column}: {c:?} (U+{:04X}) is not allowed here", u32::from(c)),
                    None => format!("column {column}: the file ends too soon"),
                }
            }
            None => "not valid TOML".to_string(),
        };
    }
    Problem::new(file, line, None, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing `config_toml`: the toml crate's error for a control character in a comment
    /// has an empty message, which left the problem without words.
    #[test]
    fn a_toml_error_without_words_names_the_character() {
        let text = "# rules\n# bad \0 here\n[[rule]]\n";
        let err = toml::from_str::<toml::Value>(text).unwrap_err();
        let problem = toml_problem("rules.toml", text, &err);
        assert_eq!(problem.line, Some(2));
        assert_eq!(problem.message, "column 7: '\\0' (U+0000) is not allowed here");
        assert_eq!(
            problem.to_string(),
            "rules.toml:2: column 7: '\\0' (U+0000) is not allowed here"
        );
    }
}
