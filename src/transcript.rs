//! The transcript format: JSON Lines, one message per line.
//!
//! `{"conversation": "c1", "author": "u1", "role": "customer"|"agent", "text": "...", "ts": "RFC3339"}`
//! plus, in labelled files, `"labels": ["prior_failure:not_received", ...]` (the detections the
//! message holds, by `docs/labelling.md`) and, where the nudges expected differ from them,
//! `"nudges": [...]`; on a conversation's last line, `"checklist": ["apologized", ...]` (the recovery
//! checklist's steps done). An agent message may carry `"typing_ms": 4000`: the agent started typing
//! that long before it was sent, which is when a cue waiting for an agent reaches them. Unknown
//! fields are ignored so transcripts can carry more than Backstop reads.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::{Message, MessageRef, Role};

/// One message of a transcript.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    pub conversation: String,
    pub author: String,
    pub role: Role,
    pub text: String,
    pub ts: Timestamp,
    #[serde(default)]
    pub labels: Vec<String>,
    /// The nudges this message should cause, when they differ from its detections (a repeated
    /// cue merged into the first one's nudge, a reminder due on a promise).
    #[serde(default)]
    pub nudges: Option<Vec<String>>,
    /// The recovery checklist's steps done by the end of the conversation (labelled on its last line).
    #[serde(default)]
    pub checklist: Option<Vec<String>>,
    /// How long before sending the author started typing.
    #[serde(default)]
    pub typing_ms: Option<u64>,
}

impl Record {
    /// When an agent started typing this message, from its `typing_ms` lead (a lead reaching
    /// before the earliest time there is starts at that time). `None` for customers and for
    /// messages without a lead.
    pub fn typing_started(&self) -> Option<Timestamp> {
        let lead = self.typing_ms.filter(|_| self.role == Role::Agent)?;
        let lead = jiff::SignedDuration::from_millis(i64::try_from(lead).unwrap_or(i64::MAX));
        Some(self.ts.checked_sub(lead).unwrap_or(Timestamp::MIN))
    }

    /// This record as the engine's message, arriving at `at` (the replay clock), from input `line`.
    pub fn message(&self, at: Timestamp, line: u64) -> Message<'_> {
        Message {
            conversation: &self.conversation,
            author: &self.author,
            role: self.role,
            text: &self.text,
            at,
            source: MessageRef(line),
        }
    }
}

/// A transcript line that could not be read, naming the line and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct LineError {
    pub line: u64,
    pub problem: String,
}

/// Reads one line. Blank lines are `Ok(None)`.
pub fn parse_line(line: u64, text: &str) -> Result<Option<Record>, LineError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Record>(text) {
        Ok(r) if !r.conversation.is_empty() && !r.author.is_empty() => Ok(Some(r)),
        _ => Err(LineError {
            line,
            problem: diagnose(text),
        }),
    }
}

/// Reads a whole transcript held in memory, numbering records by their 1-based line.
pub fn parse_all(text: &str) -> Result<Vec<(u64, Record)>, LineError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if let Some(r) = parse_line(n, line)? {
            out.push((n, r));
        }
    }
    Ok(out)
}

/// Works out, field by field, what is wrong with a line the fast path refused.
fn diagnose(text: &str) -> String {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return format!("invalid JSON: {e}"),
    };
    let Value::Object(map) = value else {
        return "expected a JSON object with conversation, author, role, text and ts".into();
    };
    for field in ["conversation", "author", "role", "text", "ts"] {
        let Some(v) = map.get(field) else {
            return format!("missing field `{field}`");
        };
        let Some(s) = v.as_str() else {
            return format!("field `{field}`: expected a string, found {v}");
        };
        match field {
            "conversation" | "author" if s.is_empty() => return format!("field `{field}`: must not be empty"),
            "role" if s != "customer" && s != "agent" => {
                return format!("field `role`: unknown role {s:?} (expected \"customer\" or \"agent\")")
            }
            "ts" => {
                if let Err(e) = s.parse::<Timestamp>() {
                    return format!("field `ts`: invalid RFC 3339 timestamp {s:?}: {e}");
                }
            }
            _ => {}
        }
    }
    if let Some(v) = map.get("typing_ms") {
        if !v.is_u64() {
            return format!("field `typing_ms`: expected a whole number of milliseconds, found {v}");
        }
    }
    for field in ["labels", "nudges", "checklist"] {
        if let Some(list) = map.get(field) {
            if !list.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                return format!("field `{field}`: expected an array of strings");
            }
        }
    }
    match serde_json::from_str::<Record>(text) {
        Err(e) => e.to_string(),
        Ok(_) => "unreadable line".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"conversation": "c1", "author": "u1", "role": "customer", "text": "hi", "ts": "2026-11-23T10:00:00Z"}"#;

    #[test]
    fn reads_a_line_and_skips_blank_ones() {
        let r = parse_line(1, GOOD).unwrap().unwrap();
        assert_eq!(r.role, Role::Customer);
        assert_eq!(r.ts.to_string(), "2026-11-23T10:00:00Z");
        assert_eq!(parse_line(2, "   ").unwrap(), None);
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = |s: &str| parse_line(7, s).unwrap_err().to_string();
        assert!(err("{not json").starts_with("line 7: invalid JSON"));
        assert_eq!(err(r#"{"conversation": "c1"}"#), "line 7: missing field `author`");
        assert!(err(&GOOD.replace("\"customer\"", "\"bot\"")).contains("field `role`: unknown role \"bot\""));
        assert!(err(&GOOD.replace("2026-11-23T10:00:00Z", "yesterday"))
            .contains("field `ts`: invalid RFC 3339 timestamp \"yesterday\""));
        assert!(err(&GOOD.replace("\"hi\"", "42")).contains("field `text`: expected a string, found 42"));
        assert!(err(&GOOD.replace("\"c1\"", "\"\"")).contains("field `conversation`: must not be empty"));
        assert!(err("[1,2]").contains("expected a JSON object"));
        let typed = |v: &str| GOOD.replace("}", &format!(r#", "typing_ms": {v}}}"#));
        assert!(err(&typed("-5")).contains("field `typing_ms`: expected a whole number of milliseconds, found -5"));
        assert_eq!(parse_line(1, &typed("4000")).unwrap().unwrap().typing_ms, Some(4000));
        let listed = GOOD.replace("}", r#", "checklist": "apologized"}"#);
        assert!(err(&listed).contains("field `checklist`: expected an array of strings"));
    }
}
