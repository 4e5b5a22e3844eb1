//! `backstop check`: validate everything a team lead can edit, and explain a rule.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Args;

use backstop::engine::{Ast, Lexicon, Matcher, Node, Prepared, Role, Rule, RuleSet, Settings};

use super::SourceArgs;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Show how one rule reads: its phrases as compiled, the classes it uses, and what its
    /// examples match.
    #[arg(long, value_name = "RULE_ID")]
    explain: Option<String>,
    /// Show which rules fire on a message, and on which words (`--role` says who wrote it).
    #[arg(long = "try", value_name = "MESSAGE")]
    try_text: Option<String>,
    /// Who wrote the `--try` message: `customer` or `agent`.
    #[arg(long, value_name = "ROLE", default_value = "customer", requires = "try_text")]
    role: String,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let sources = args.sources.sources();
    let (config, prompts) = sources.resolved();
    let name = |p: Option<std::path::PathBuf>| p.map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let mut report = sources.check()?;
    // The bot's own settings, when this config folder has them.
    let bot_path = super::run::bot_config_path(config.clone());
    let engine = sources.engine().ok();
    if let (Ok(text), Some(engine)) = (std::fs::read_to_string(&bot_path), &engine) {
        if let Err(p) =
            backstop::discord::config::BotConfig::parse(&bot_path.display().to_string(), &text, engine.settings())
        {
            report.problems.extend(p.0);
        }
    }
    if let (Some(text), Some(rules)) = (&args.try_text, &report.rules) {
        let role = match args.role.as_str() {
            "customer" => Role::Customer,
            "agent" => Role::Agent,
            other => {
                eprintln!("--role {other:?}: expected customer or agent");
                return Ok(ExitCode::from(2));
            }
        };
        try_message(rules, role, text);
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(id), Some(rules)) = (&args.explain, &report.rules) {
        let Some(rule) = rules.rules().iter().find(|r| &*r.id == id.as_str()) else {
            let ids: Vec<&str> = rules.rules().iter().map(|r| &*r.id).collect();
            let near = ids
                .iter()
                .min_by_key(|i| backstop::engine::edit_distance(i, id))
                .map(|i| format!(" (did you mean {i:?}?)"))
                .unwrap_or_default();
            eprintln!("no rule {id:?}{near}");
            return Ok(ExitCode::from(1));
        };
        explain(rules, rule);
        return Ok(if report.problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if let Some(rules) = &report.rules {
        let phrases: usize = rules.rules().iter().map(|r| r.phrases.len() + r.unless.len()).sum();
        let lexicon = rules.lexicon();
        println!(
            "{} rules, {phrases} phrases ({}); {} phrase situations ({})",
            rules.rules().len(),
            name(config),
            report.situations,
            name(prompts)
        );
        println!(
            "lexicon: {} words, {} spellings, {} classes",
            lexicon.len(),
            lexicon.spellings(),
            lexicon.classes().count()
        );
        let budget = engine
            .as_ref()
            .map_or_else(|| Settings::default().check_budget, |e| e.settings().check_budget);
        println!(
            "{:<9} {:>7} {:>7} {:>9} {:>9} {:>10} {:>8}",
            "index", "phrases", "symbols", "size", "build", "triggered", "checked"
        );
        for c in rules.costs() {
            println!(
                "{:<9} {:>7} {:>7} {:>9} {:>9} {:>10.2} {:>8.2}",
                c.role.as_str(),
                c.phrases,
                c.cost.symbols,
                size(c.cost.bytes),
                format!("{:.1} ms", c.cost.build.as_secs_f64() * 1000.0),
                c.warm.triggered,
                c.warm.checked,
            );
        }
        println!(
            "triggered / checked: phrases per message on the sample (the rules' own examples and a built-in \
             day of support) whose words were present / that were then checked word by word; budget {budget:.1} \
             checked ([rules] check_budget in engine.toml)"
        );
        let warnings = rules.warnings();
        if !warnings.is_empty() {
            println!(
                "{} warning{}:",
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            );
            for w in warnings {
                println!("  {w}");
            }
        }
    }
    if report.problems.is_empty() {
        println!("ok");
        return Ok(ExitCode::SUCCESS);
    }
    let n = report.problems.len();
    eprintln!("{n} problem{} found:", if n == 1 { "" } else { "s" });
    for p in &report.problems {
        eprintln!("  {p}");
    }
    Ok(ExitCode::from(1))
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Prints how a rule reads, for a lead debugging it.
fn explain(rules: &RuleSet, rule: &Rule) {
    let lexicon = rules.lexicon();
    let category = rule
        .category
        .map(|c| c.as_str().to_string())
        .or_else(|| rule.label.clone())
        .map(|c| format!(", {c}"))
        .unwrap_or_default();
    println!(
        "rule {:?} ({}{category}), {}:{}",
        &*rule.id,
        rule.kind.as_str(),
        rule.file,
        rule.line
    );
    if let Some(d) = &rule.description {
        println!("  {d}");
    }
    let mut classes = BTreeSet::new();
    for (title, list) in [("phrases", &rule.phrases), ("unless", &rule.unless)] {
        if list.is_empty() {
            continue;
        }
        println!("{title}:");
        for (i, p) in list.iter().enumerate() {
            p.ast.classes(&mut classes);
            println!("  [{i}] line {}: {}", p.line, p.text);
            println!("      compiled: {}", show(&p.node, lexicon));
        }
    }
    for (title, list) in [
        ("regex (escape hatch)", &rule.regex),
        ("unless_regex (escape hatch)", &rule.unless_regex),
    ] {
        if !list.is_empty() {
            println!("{title}:");
            for p in list {
                println!("  {p}");
            }
        }
    }
    if !classes.is_empty() {
        println!("classes:");
        let mut seen = BTreeSet::new();
        let mut queue: Vec<String> = classes.into_iter().collect();
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            match lexicon.class(&name) {
                Some(class) => {
                    println!(
                        "  {{{name}}} ({}:{}): {}",
                        class.file,
                        class.line,
                        class.members.join(", ")
                    );
                    let mut inner = BTreeSet::new();
                    class.parsed.iter().for_each(|a: &Ast| a.classes(&mut inner));
                    queue.extend(inner);
                }
                None => println!("  {{{name}}}: built in"),
            }
        }
    }
    let index = rules.rules().iter().position(|r| r.id == rule.id).unwrap_or(0);
    for (title, list, want) in [
        ("examples", &rule.examples, true),
        ("counter_examples", &rule.counter_examples, false),
    ] {
        if list.is_empty() {
            continue;
        }
        println!("{title}:");
        for text in list {
            let prepared = Prepared::new(text);
            let tokens = rules.tokens(&prepared);
            let hits = rules.scan(rule.kind.role(), &prepared, &tokens);
            let hit = hits.iter().find(|h| h.rule == index);
            let ok = hit.is_some() == want;
            let words: Vec<String> = tokens.words(prepared.scan(), lexicon).map(|w| w.into_owned()).collect();
            let outcome = match hit {
                Some(h) => format!("matches {:?}", prepared.original(h.span.clone())),
                None => {
                    // Say whether a phrase matched but was held back (a question, an unless).
                    let m = Matcher {
                        tokens: &tokens,
                        scan: prepared.scan(),
                        lexicon: Some(lexicon),
                    };
                    if rule
                        .phrases
                        .iter()
                        .any(|p| m.first(&p.node, &tokens.sentences).is_some())
                    {
                        "a phrase matches, but its sentence is a question or an unless phrase holds it back".into()
                    } else {
                        "no match".to_string()
                    }
                }
            };
            println!("  {} {text:?}: {outcome}", if ok { "ok  " } else { "FAIL" });
            println!("        read as: {}", words.join(" "));
        }
    }
}

/// A compiled phrase as words: classes expanded, gaps as `~N`.
fn show(node: &Node, lexicon: &Lexicon) -> String {
    // Parentheses wherever a part is more than one item, so the reading is unambiguous.
    let grouped = |n: &Node| match n {
        Node::Seq(_) | Node::Alt(_) => format!("({})", show(n, lexicon)),
        _ => show(n, lexicon),
    };
    match node {
        Node::Word(w) => lexicon.word(*w).to_string(),
        Node::Stem(s) => format!("{s}*"),
        Node::Gap(n) => format!("~{n}"),
        Node::Opt(inner) => format!("{}?", grouped(inner)),
        Node::Seq(items) => items.iter().map(grouped).collect::<Vec<_>>().join(" "),
        Node::Alt(options) => options
            .iter()
            .map(|o| match o {
                Node::Alt(_) => show(o, lexicon),
                _ => grouped(o),
            })
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

/// Prints the rules that fire on one message, with the words each matched: how a lead sees why a
/// line was (or was not) coached without reading the rule book.
fn try_message(rules: &RuleSet, role: Role, text: &str) {
    let prepared = Prepared::new(text);
    let tokens = rules.tokens(&prepared);
    let hits = rules.scan(role, &prepared, &tokens);
    if role == Role::Agent {
        // Promises and next steps take their due time from these words.
        for sentence in 0..tokens.sentences.len() {
            if let Some(time) = rules.timeframe(&prepared, &tokens, sentence) {
                let vague = if time.is_vague() { " (vague: no real time)" } else { "" };
                println!(
                    "{:<16} {:<44} \"{}\"",
                    "time",
                    format!("sentence {}{vague}", sentence + 1),
                    time.words
                );
            }
        }
    }
    if hits.is_empty() {
        println!("no {} rule fires on this message", role.as_str());
        return;
    }
    for hit in hits {
        let rule = rules.rule(hit.rule);
        let part = rule
            .category
            .map(|c| c.as_str().to_string())
            .or_else(|| rule.label.clone());
        println!(
            "{:<16} {:<44} \"{}\"",
            match part {
                Some(p) => format!("{}/{p}", rule.kind.as_str()),
                None => rule.kind.as_str().to_string(),
            },
            rule.id,
            prepared.original(hit.span.clone())
        );
    }
}
