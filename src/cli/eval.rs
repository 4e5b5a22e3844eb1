//! `backstop eval`: precision, recall and F1 on labelled transcripts, detections and nudges apart,
//! and what a rule change gains and loses (`--compare OLD NEW`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use backstop::config::Sources;
use backstop::engine::Engine;
use backstop::eval::{evaluate, ChecklistScore, Comparison, Counts, Mismatch, Score};

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
    /// Exit with status 1 when any kind's F1, for detections or for nudges, is below this.
    #[arg(long, value_name = "F1")]
    min_f1: Option<f64>,
}

/// A mismatch with its file and the line's text.
type Listed = (String, Mismatch, String);

/// One part (detections or nudges) scored over every file, mismatches with their text.
#[derive(Default)]
struct Part {
    score: Score,
    misses: Vec<Listed>,
    false_alarms: Vec<Listed>,
}

/// Both parts over every file, and the recovery checklist where files label it.
#[derive(Default)]
struct Scored {
    detections: Part,
    nudges: Part,
    checklist: ChecklistScore,
    /// The checklist's mismatches with their text (the conversation's last line).
    checklist_listed: Part,
}

impl Scored {
    /// The parts compared and held to `--min-f1`; the checklist's part holds only its mismatches.
    fn parts(&self) -> [(&'static str, &Part); 3] {
        [
            ("detections", &self.detections),
            ("nudges", &self.nudges),
            ("checklist", &self.checklist_listed),
        ]
    }
}

fn run_files(engine: &Engine, files: &[PathBuf]) -> anyhow::Result<Scored> {
    let mut total = Scored::default();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
        let evaluation = evaluate(engine, &name, &text).with_context(|| name.clone())?;
        let line_text = |line: u64| {
            text.lines()
                .nth(line.saturating_sub(1) as usize)
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .and_then(|v| v["text"].as_str().map(str::to_string))
                .unwrap_or_default()
        };
        for (part, score) in [
            (&mut total.detections, evaluation.detections),
            (&mut total.nudges, evaluation.nudges),
        ] {
            let listed = |list: &[Mismatch]| -> Vec<Listed> {
                list.iter()
                    .map(|m| (name.clone(), m.clone(), line_text(m.line)))
                    .collect()
            };
            part.misses.extend(listed(&score.misses));
            part.false_alarms.extend(listed(&score.false_alarms));
            part.score.merge(score);
        }
        let listed = |list: &[Mismatch]| -> Vec<Listed> {
            list.iter()
                .map(|m| (name.clone(), m.clone(), line_text(m.line)))
                .collect()
        };
        let c = &mut total.checklist_listed;
        c.misses.extend(listed(&evaluation.checklist.misses));
        c.false_alarms.extend(listed(&evaluation.checklist.false_alarms));
        c.score.merge(evaluation.checklist.as_score());
        total.checklist.merge(evaluation.checklist);
    }
    Ok(total)
}

fn counts_json(c: &Counts) -> serde_json::Value {
    json!({"true_pos": c.true_pos, "false_pos": c.false_pos, "false_neg": c.false_neg,
           "precision": c.precision(), "recall": c.recall(), "f1": c.f1()})
}

fn mismatch_json(list: &[Listed]) -> Vec<serde_json::Value> {
    list.iter()
        .map(|(file, m, text)| json!({"file": file, "line": m.line, "label": m.label, "text": text}))
        .collect()
}

fn kinds_json(s: &Score) -> serde_json::Map<String, serde_json::Value> {
    s.by_kind.iter().map(|(k, c)| (k.to_string(), counts_json(c))).collect()
}

fn steps_json(s: &ChecklistScore) -> serde_json::Map<String, serde_json::Value> {
    s.by_step.iter().map(|(k, c)| (k.to_string(), counts_json(c))).collect()
}

fn engine_for(sources: &SourceArgs, config: Option<&PathBuf>) -> anyhow::Result<Engine> {
    let mut s: Sources = sources.sources();
    if let Some(dir) = config {
        s.config = Some(dir.clone());
    }
    Ok(s.engine()?)
}

/// The kinds below the floor, as "part kind F1".
fn below(scored: &Scored, floor: f64) -> Vec<String> {
    scored
        .parts()
        .into_iter()
        .flat_map(|(name, part)| {
            part.score
                .by_kind
                .iter()
                .filter(|(_, c)| c.f1() < floor)
                .map(move |(k, c)| format!("{name}: {k} {:.3}", c.f1()))
        })
        .collect()
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(dirs) = &args.compare {
        return compare(&args, &dirs[0], &dirs[1]);
    }
    let engine = engine_for(&args.sources, None)?;
    let scored = run_files(&engine, &args.files)?;
    if args.json {
        let mut out = serde_json::Map::new();
        for (name, part) in [("detections", &scored.detections), ("nudges", &scored.nudges)] {
            let s = &part.score;
            out.insert(
                name.to_string(),
                json!({
                    "by_kind": kinds_json(s),
                    "by_category": s.by_category.iter().map(|((k, cat), c)| (format!("{k}:{cat}"), counts_json(c))).collect::<serde_json::Map<_, _>>(),
                    "misses": mismatch_json(&part.misses),
                    "false_alarms": mismatch_json(&part.false_alarms),
                }),
            );
        }
        if scored.checklist.conversations > 0 {
            let c = &scored.checklist;
            out.insert(
                "checklist".to_string(),
                json!({
                    "conversations": c.conversations,
                    "exact": c.exact,
                    "by_step": steps_json(c),
                    "misses": mismatch_json(&scored.checklist_listed.misses),
                    "false_alarms": mismatch_json(&scored.checklist_listed.false_alarms),
                }),
            );
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        // What the rules and model missed or over-read; nudge-only differences come after.
        let d = &scored.detections;
        for (file, m, text) in &d.misses {
            println!("miss         {file}:{} {} | {text}", m.line, m.label);
        }
        for (file, m, text) in &d.false_alarms {
            println!("false alarm  {file}:{} {} | {text}", m.line, m.label);
        }
        let n = &scored.nudges;
        let only = |list: &[Listed], other: &[Listed]| -> Vec<Listed> {
            list.iter()
                .filter(|(f, m, _)| !other.iter().any(|(g, o, _)| f == g && o == m))
                .cloned()
                .collect()
        };
        for (file, m, text) in only(&n.misses, &d.misses) {
            println!("nudge miss   {file}:{} {} | {text}", m.line, m.label);
        }
        for (file, m, text) in only(&n.false_alarms, &d.false_alarms) {
            println!("extra nudge  {file}:{} {} | {text}", m.line, m.label);
        }
        println!("\ndetections (every message that meets a definition, nudged or not)");
        print!("{}", d.score);
        println!("\nnudges (what agents receive after the nudge policy)");
        print!("{}", n.score);
        if scored.checklist.conversations > 0 {
            let c = &scored.checklist_listed;
            for (file, m, text) in &c.misses {
                println!("step missed  {file}:{} {} | {text}", m.line, m.label);
            }
            for (file, m, text) in &c.false_alarms {
                println!("step extra   {file}:{} {} | {text}", m.line, m.label);
            }
            println!("\nrecovery checklist (steps judged per conversation with a failure cue)");
            print!("{}", scored.checklist);
        }
    }
    if let Some(floor) = args.min_f1 {
        let below = below(&scored, floor);
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
    let mut json_out = serde_json::Map::new();
    let mut regressed = false;
    for ((name, old), (_, new)) in old.parts().into_iter().zip(new.parts()) {
        let diff = Comparison::of(&old.score, &new.score);
        regressed |= !diff.new_misses.is_empty() || !diff.new_false_alarms.is_empty();
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
        let with_text = |list: &[Mismatch]| -> Vec<Listed> {
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
            let mut part = json!({"old": kinds_json(&old.score), "new": kinds_json(&new.score)});
            for (section, list) in &sections {
                part[section.replace(' ', "_")] = json!(mismatch_json(list));
            }
            json_out.insert(name.to_string(), part);
        } else {
            println!("{name}\n{:<28} {:>8} {:>8}   (F1)", "kind", "old", "new");
            for (kind, c) in &new.score.by_kind {
                let before = old.score.by_kind.get(kind).map_or(1.0, Counts::f1);
                println!("{:<28} {:>8.3} {:>8.3}", kind.to_string(), before, c.f1());
            }
            for (section, list) in &sections {
                println!("\n{name}: {section} ({})", list.len());
                for (file, m, text) in list {
                    println!("  {file}:{} {} | {text}", m.line, m.label);
                }
            }
            println!();
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json_out)?);
    }
    let below = args.min_f1.is_some_and(|floor| !below(&new, floor).is_empty());
    Ok(if below || (regressed && args.min_f1.is_some()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
