//! `backstop eval`: precision, recall and F1 of the rules on labelled transcripts, and what a
//! rule change gains and loses (`--compare OLD NEW`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use backstop::config::Sources;
use backstop::engine::Engine;
use backstop::eval::{evaluate, Comparison, Counts, Mismatch, Score};

use super::SourceArgs;

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// Labelled transcripts: the replay format with a `labels` list per message
    /// (`"prior_failure:not_received"`, `"explain_before_apology"`, ...).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Compare two config folders on the same transcripts: fixed misses, new false alarms.
    #[arg(long, num_args = 2, value_names = ["OLD_CONFIG_DIR", "NEW_CONFIG_DIR"])]
    compare: Option<Vec<PathBuf>>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 when any nudge kind's F1 is below this.
    #[arg(long, value_name = "F1")]
    min_f1: Option<f64>,
}

/// One scored file's mismatches, with the file and the line's text.
struct Scored {
    score: Score,
    /// (file, line, label, text) for misses and false alarms.
    misses: Vec<(String, Mismatch, String)>,
    false_alarms: Vec<(String, Mismatch, String)>,
}

fn run_files(engine: &Engine, files: &[PathBuf]) -> anyhow::Result<Scored> {
    let mut total = Score::default();
    let mut misses = Vec::new();
    let mut false_alarms = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
        let score = evaluate(engine, &name, &text).with_context(|| name.clone())?;
        let line_text = |line: u64| {
            text.lines()
                .nth(line.saturating_sub(1) as usize)
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .and_then(|v| v["text"].as_str().map(str::to_string))
                .unwrap_or_default()
        };
        misses.extend(
            score
                .misses
                .iter()
                .map(|m| (name.clone(), m.clone(), line_text(m.line))),
        );
        false_alarms.extend(
            score
                .false_alarms
                .iter()
                .map(|m| (name.clone(), m.clone(), line_text(m.line))),
        );
        total.merge(score);
    }
    Ok(Scored {
        score: total,
        misses,
        false_alarms,
    })
}

fn counts_json(c: &Counts) -> serde_json::Value {
    json!({"true_pos": c.true_pos, "false_pos": c.false_pos, "false_neg": c.false_neg,
           "precision": c.precision(), "recall": c.recall(), "f1": c.f1()})
}

fn mismatch_json(list: &[(String, Mismatch, String)]) -> Vec<serde_json::Value> {
    list.iter()
        .map(|(file, m, text)| json!({"file": file, "line": m.line, "label": m.label, "text": text}))
        .collect()
}

fn engine_for(sources: &SourceArgs, config: Option<&PathBuf>) -> anyhow::Result<Engine> {
    let mut s: Sources = sources.sources();
    if let Some(dir) = config {
        s.config = Some(dir.clone());
    }
    Ok(s.engine()?)
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(dirs) = &args.compare {
        return compare(&args, &dirs[0], &dirs[1]);
    }
    let engine = engine_for(&args.sources, None)?;
    let scored = run_files(&engine, &args.files)?;
    let score = &scored.score;
    if args.json {
        let out = json!({
            "by_kind": score.by_kind.iter().map(|(k, c)| (k.to_string(), counts_json(c))).collect::<serde_json::Map<_, _>>(),
            "by_category": score.by_category.iter().map(|((k, cat), c)| (format!("{k}:{cat}"), counts_json(c))).collect::<serde_json::Map<_, _>>(),
            "misses": mismatch_json(&scored.misses),
            "false_alarms": mismatch_json(&scored.false_alarms),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (file, m, text) in &scored.misses {
            println!("miss         {file}:{} {} | {text}", m.line, m.label);
        }
        for (file, m, text) in &scored.false_alarms {
            println!("false alarm  {file}:{} {} | {text}", m.line, m.label);
        }
        if !scored.misses.is_empty() || !scored.false_alarms.is_empty() {
            println!();
        }
        print!("{score}");
    }
    if let Some(floor) = args.min_f1 {
        let below: Vec<String> = score
            .by_kind
            .iter()
            .filter(|(_, c)| c.f1() < floor)
            .map(|(k, c)| format!("{k} {:.3}", c.f1()))
            .collect();
        if !below.is_empty() {
            eprintln!("backstop: F1 below {floor}: {}", below.join(", "));
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn compare(args: &EvalArgs, old_dir: &PathBuf, new_dir: &PathBuf) -> anyhow::Result<ExitCode> {
    let old = run_files(
        &engine_for(&args.sources, Some(old_dir)).with_context(|| format!("loading {}", old_dir.display()))?,
        &args.files,
    )?;
    let new = run_files(
        &engine_for(&args.sources, Some(new_dir)).with_context(|| format!("loading {}", new_dir.display()))?,
        &args.files,
    )?;
    let diff = Comparison::of(&old.score, &new.score);
    // The text of a line, from whichever run listed it.
    let text_of = |m: &Mismatch| {
        old.misses
            .iter()
            .chain(&old.false_alarms)
            .chain(&new.misses)
            .chain(&new.false_alarms)
            .find(|(_, x, _)| x == m)
            .map(|(f, _, t)| (f.clone(), t.clone()))
            .unwrap_or_default()
    };
    let with_text = |list: &[Mismatch]| -> Vec<(String, Mismatch, String)> {
        list.iter()
            .map(|m| {
                let (f, t) = text_of(m);
                (f, m.clone(), t)
            })
            .collect()
    };
    let sections = [
        ("fixed misses", with_text(&diff.fixed_misses)),
        ("new misses", with_text(&diff.new_misses)),
        ("fixed false alarms", with_text(&diff.fixed_false_alarms)),
        ("new false alarms", with_text(&diff.new_false_alarms)),
    ];
    if args.json {
        let kinds = |s: &Score| {
            s.by_kind
                .iter()
                .map(|(k, c)| (k.to_string(), counts_json(c)))
                .collect::<serde_json::Map<_, _>>()
        };
        let mut out = json!({"old": kinds(&old.score), "new": kinds(&new.score)});
        for (name, list) in &sections {
            out[name.replace(' ', "_")] = json!(mismatch_json(list));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{:<28} {:>8} {:>8}   (F1)", "kind", "old", "new");
        for (kind, c) in &new.score.by_kind {
            let before = old.score.by_kind.get(kind).map_or(1.0, Counts::f1);
            println!("{:<28} {:>8.3} {:>8.3}", kind.to_string(), before, c.f1());
        }
        for (name, list) in &sections {
            println!("\n{name} ({})", list.len());
            for (file, m, text) in list {
                println!("  {file}:{} {} | {text}", m.line, m.label);
            }
        }
    }
    let regressed = !diff.new_misses.is_empty() || !diff.new_false_alarms.is_empty();
    let below = args
        .min_f1
        .is_some_and(|floor| new.score.by_kind.values().any(|c| c.f1() < floor));
    Ok(if below || (regressed && args.min_f1.is_some()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
