//! Coaching text and the phrase library, from `prompts/nudges.toml` and `prompts/phrases.toml`.
//!
//! Templates are parsed once into literal and placeholder segments, so a typo in a placeholder is a
//! load-time problem with a line number, not a "{evidnce}" in front of an agent.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::model::{Category, NudgeKind};
use super::problem::{line_of, toml_problem, Problem, Problems};

/// A value a template can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Evidence,
    Quote,
    Customer,
    Agent,
    Due,
    Category,
    Phrases,
    LastAgent,
    Waited,
}

impl Field {
    const ALL: [(&'static str, Field); 9] = [
        ("evidence", Field::Evidence),
        ("quote", Field::Quote),
        ("customer", Field::Customer),
        ("agent", Field::Agent),
        ("due", Field::Due),
        ("category", Field::Category),
        ("phrases", Field::Phrases),
        ("last_agent", Field::LastAgent),
        ("waited", Field::Waited),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Field(Field),
}

/// A parsed piece of text with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(Vec<Segment>);

impl Text {
    fn parse(source: &str) -> Result<Text, String> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err("unmatched '}' (write '}}' for a literal brace)".into());
            }
            let Some(close) = tail.find('}') else {
                return Err("unclosed '{' (write '{{' for a literal brace)".into());
            };
            let name = &tail[1..close];
            let Some((_, field)) = Field::ALL.iter().find(|(n, _)| *n == name) else {
                let known: Vec<_> = Field::ALL.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                return Err(format!("unknown placeholder {{{name}}}; known: {}", known.join(" ")));
            };
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Field(*field));
            rest = &tail[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Text(segments))
    }

    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Field(f) => out.push_str(values.get(*f)),
            }
        }
        out.trim().to_string()
    }
}

/// The values placeholders are filled with.
#[derive(Debug, Default)]
pub struct Values<'a> {
    pub evidence: &'a str,
    pub quote: &'a str,
    pub customer: &'a str,
    pub agent: &'a str,
    pub due: &'a str,
    pub category: &'a str,
    pub phrases: &'a str,
    /// The agent before the one being coached (hand-off briefs).
    pub last_agent: &'a str,
    /// How long the customer has been waiting, e.g. "42 min" (hand-off briefs).
    pub waited: &'a str,
}

impl Values<'_> {
    fn get(&self, field: Field) -> &str {
        match field {
            Field::Evidence => self.evidence,
            Field::Quote => self.quote,
            Field::Customer => self.customer,
            Field::Agent => self.agent,
            Field::Due => self.due,
            Field::Category => self.category,
            Field::Phrases => self.phrases,
            Field::LastAgent => self.last_agent,
            Field::Waited => self.waited,
        }
    }
}

/// The coaching for one nudge kind (and category).
#[derive(Debug, Clone)]
pub struct Template {
    pub title: Text,
    pub text: Text,
    /// Phrase-library situation that supplies `{phrases}`.
    pub situation: String,
}

/// A situation of the phrase library with its recommended phrases.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Situation {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub phrases: Vec<String>,
}

/// Templates for every nudge kind plus the phrase library.
#[derive(Debug, Clone)]
pub struct Prompts {
    templates: HashMap<(NudgeKind, Option<Category>), Template>,
    situations: Vec<Situation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateDef {
    title: String,
    text: String,
    situation: String,
    #[serde(default)]
    categories: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryTemplateDef {
    title: Option<String>,
    text: Option<String>,
    situation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhrasesFile {
    #[serde(default)]
    situation: Vec<toml::Spanned<toml::Value>>,
}

impl Prompts {
    /// Parses the nudge templates and the phrase library, reporting every problem found.
    pub fn parse(nudges: (&str, &str), phrases: (&str, &str)) -> Result<Prompts, Problems> {
        let mut problems = Vec::new();
        let situations = parse_phrases(phrases.0, phrases.1, &mut problems);
        let templates = parse_nudges(nudges.0, nudges.1, &situations, &mut problems);
        if problems.is_empty() {
            Ok(Prompts { templates, situations })
        } else {
            Err(Problems(problems))
        }
    }

    /// The template for a kind and category, falling back to the kind's own.
    pub fn template(&self, kind: NudgeKind, category: Option<Category>) -> &Template {
        self.templates
            .get(&(kind, category))
            .or_else(|| self.templates.get(&(kind, None)))
            .expect("parse guarantees a template for every kind")
    }

    pub fn situations(&self) -> &[Situation] {
        &self.situations
    }

    pub fn situation(&self, id: &str) -> Option<&Situation> {
        self.situations.iter().find(|s| s.id == id)
    }

    /// Phrases whose text, situation title or keywords share words with `query`, best first.
    pub fn search(&self, query: &str) -> Vec<(&Situation, &str)> {
        let words: Vec<String> = tokens(query).collect();
        if words.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(usize, usize, &Situation, &str)> = Vec::new();
        for (order, situation) in self.situations.iter().enumerate() {
            let context: Vec<String> = tokens(&situation.title)
                .chain(situation.keywords.iter().flat_map(|k| tokens(k)))
                .chain(tokens(&situation.id.replace('_', " ")))
                .collect();
            for phrase in &situation.phrases {
                let own: Vec<String> = tokens(phrase).collect();
                let score: usize = words
                    .iter()
                    .map(|w| {
                        let in_phrase = own.iter().any(|t| t.starts_with(w.as_str()));
                        let in_context = context.iter().any(|t| t.starts_with(w.as_str()));
                        2 * usize::from(in_phrase) + usize::from(in_context)
                    })
                    .sum();
                if score > 0 {
                    scored.push((score, order, situation, phrase));
                }
            }
        }
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, _, s, p)| (s, p)).collect()
    }
}

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
}

fn parse_phrases(file: &str, text: &str, problems: &mut Vec<Problem>) -> Vec<Situation> {
    let parsed: PhrasesFile = match toml::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            problems.push(toml_problem(file, text, &e));
            return Vec::new();
        }
    };
    let mut situations: Vec<Situation> = Vec::new();
    for spanned in parsed.situation {
        let line = line_of(text, spanned.span().start);
        let situation: Situation = match spanned.into_inner().try_into() {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem::new(file, Some(line), None, e.message().trim()));
                continue;
            }
        };
        let item = Some(format!("situation {:?}", situation.id));
        if situations.iter().any(|s| s.id == situation.id) {
            problems.push(Problem::new(file, Some(line), item, "duplicate situation id"));
        } else if situation.phrases.iter().all(|p| p.trim().is_empty()) {
            problems.push(Problem::new(file, Some(line), item, "needs at least one phrase"));
        } else {
            situations.push(situation);
        }
    }
    situations
}

fn parse_nudges(
    file: &str,
    text: &str,
    situations: &[Situation],
    problems: &mut Vec<Problem>,
) -> HashMap<(NudgeKind, Option<Category>), Template> {
    let parsed: BTreeMap<String, toml::Spanned<toml::Value>> = match toml::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            problems.push(toml_problem(file, text, &e));
            return HashMap::new();
        }
    };
    let mut templates = HashMap::new();
    for (key, spanned) in parsed {
        let line = line_of(text, spanned.span().start);
        let Some(kind) = NudgeKind::parse(&key) else {
            let known: Vec<_> = NudgeKind::ALL.iter().map(|k| k.as_str()).collect();
            problems.push(Problem::new(
                file,
                Some(line),
                Some(format!("[{key}]")),
                format!("unknown nudge kind; expected one of {}", known.join(", ")),
            ));
            continue;
        };
        let def: TemplateDef = match spanned.into_inner().try_into() {
            Ok(d) => d,
            Err(e) => {
                problems.push(Problem::new(
                    file,
                    Some(line),
                    Some(format!("[{key}]")),
                    e.message().trim(),
                ));
                continue;
            }
        };
        if let Some(t) = build_template(
            &Place {
                file,
                line,
                item: format!("[{key}]"),
            },
            &def.title,
            &def.text,
            &def.situation,
            situations,
            problems,
        ) {
            templates.insert((kind, None), t);
        }
        for (name, value) in def.categories {
            // Values inside a table carry no position of their own: find the table's header.
            let line = header_line(text, &format!("{key}.categories.{name}")).unwrap_or(line);
            let item = format!("[{key}.categories.{name}]");
            let category = Category::parse(&name).filter(|c| kind.categories().contains(c));
            let Some(category) = category else {
                let known: Vec<_> = kind.categories().iter().map(|c| c.as_str()).collect();
                let expected = if known.is_empty() {
                    "this kind has no categories".to_string()
                } else {
                    format!("expected one of {}", known.join(", "))
                };
                problems.push(Problem::new(
                    file,
                    Some(line),
                    Some(item),
                    format!("unknown category; {expected}"),
                ));
                continue;
            };
            let c: CategoryTemplateDef = match value.try_into() {
                Ok(c) => c,
                Err(e) => {
                    problems.push(Problem::new(file, Some(line), Some(item), e.message().trim()));
                    continue;
                }
            };
            let title = c.title.as_deref().unwrap_or(&def.title);
            let body = c.text.as_deref().unwrap_or(&def.text);
            let situation = c.situation.as_deref().unwrap_or(&def.situation);
            if let Some(t) = build_template(
                &Place { file, line, item },
                title,
                body,
                situation,
                situations,
                problems,
            ) {
                templates.insert((kind, Some(category)), t);
            }
        }
    }
    for kind in NudgeKind::ALL {
        if !templates.contains_key(&(kind, None))
            && !problems.iter().any(|p| p.item.as_deref() == Some(&format!("[{kind}]")))
        {
            problems.push(Problem::new(
                file,
                None,
                Some(format!("[{kind}]")),
                "missing: every nudge kind needs a template",
            ));
        }
    }
    templates
}

/// The line of a `[table.header]` in a TOML file.
fn header_line(text: &str, header: &str) -> Option<usize> {
    let wanted = format!("[{header}]");
    text.lines()
        .position(|l| l.trim().replace(' ', "") == wanted)
        .map(|i| i + 1)
}

/// Where a template was written.
struct Place<'a> {
    file: &'a str,
    line: usize,
    item: String,
}

fn build_template(
    at: &Place<'_>,
    title: &str,
    body: &str,
    situation: &str,
    situations: &[Situation],
    problems: &mut Vec<Problem>,
) -> Option<Template> {
    let mut report = |msg: String| problems.push(Problem::new(at.file, Some(at.line), Some(at.item.clone()), msg));
    let title = Text::parse(title).map_err(|e| report(format!("title: {e}"))).ok();
    let text = Text::parse(body).map_err(|e| report(format!("text: {e}"))).ok();
    let known = situations.iter().any(|s| s.id == situation);
    if !known {
        report(format!("situation {situation:?} is not in the phrase library"));
    }
    Some(Template {
        title: title?,
        text: text?,
        situation: situation.to_string(),
    })
    .filter(|_| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHRASES: &str = r#"
[[situation]]
id = "general"
title = "Owning a failure"
keywords = ["apology"]
phrases = ["I'm sorry we let you down.", "That's on us, and I'll fix it now."]
"#;

    fn nudges_for_all(extra: &str) -> String {
        let mut s = String::new();
        for k in NudgeKind::ALL {
            s.push_str(&format!(
                "[{k}]\ntitle = \"t\"\ntext = \"{{evidence}} {{phrases}}\"\nsituation = \"general\"\n"
            ));
        }
        s.push_str(extra);
        s
    }

    #[test]
    fn templates_render_and_fall_back_to_the_kind() {
        let nudges = nudges_for_all("");
        let prompts = Prompts::parse(("nudges.toml", &nudges), ("phrases.toml", PHRASES)).unwrap();
        let t = prompts.template(NudgeKind::PriorFailure, Some(Category::NotReceived));
        let values = Values {
            evidence: "haven't received",
            phrases: "- sorry",
            ..Values::default()
        };
        assert_eq!(t.text.render(&values), "haven't received - sorry");
    }

    #[test]
    fn literal_braces_and_bad_placeholders() {
        assert_eq!(Text::parse("a {{b}} c").unwrap().render(&Values::default()), "a {b} c");
        assert!(Text::parse("{evidnce}")
            .unwrap_err()
            .contains("unknown placeholder {evidnce}"));
        assert!(Text::parse("oops {").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn every_problem_is_listed() {
        let nudges = "[prior_failure]\ntitle = \"t\"\ntext = \"{evidnce}\"\nsituation = \"nope\"\n[prior_failure.categories.lost]\ntext = \"x\"\n[not_a_kind]\ntitle = \"t\"\n";
        let err = Prompts::parse(("nudges.toml", nudges), ("phrases.toml", PHRASES)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("nudges.toml:1: [prior_failure]: text: unknown placeholder {evidnce}"),
            "{text}"
        );
        assert!(
            text.contains("nudges.toml:1: [prior_failure]: situation \"nope\" is not in the phrase library"),
            "{text}"
        );
        assert!(
            text.contains("[prior_failure.categories.lost]: unknown category"),
            "{text}"
        );
        assert!(
            text.contains("nudges.toml:7: [not_a_kind]: unknown nudge kind"),
            "{text}"
        );
        assert!(text.contains("[follow_up_overdue]: missing"), "{text}");
    }

    #[test]
    fn phrase_search_ranks_phrase_words_first() {
        let nudges = nudges_for_all("");
        let prompts = Prompts::parse(("nudges.toml", &nudges), ("phrases.toml", PHRASES)).unwrap();
        let found = prompts.search("fix");
        assert_eq!(found[0].1, "That's on us, and I'll fix it now.");
        assert!(prompts.search("zebra").is_empty());
    }

    #[test]
    fn phrase_library_problems() {
        let phrases = "[[situation]]\nid = \"a\"\ntitle = \"A\"\nphrases = []\n[[situation]]\nid = \"b\"\ntitel = \"B\"\nphrases = [\"x\"]\n";
        let err = Prompts::parse(("nudges.toml", ""), ("phrases.toml", phrases)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("phrases.toml:1: situation \"a\": needs at least one phrase"),
            "{text}"
        );
        assert!(text.contains("phrases.toml:5: unknown field `titel`"), "{text}");
    }
}
