//! `backstop replay`: a transcript through the engine, nudges out, on the transcript's clock.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use owo_colors::{OwoColorize, Stream, Style};
use serde::Serialize;

use backstop::engine::{Category, Detection, DueSource, Nudge, NudgeKind};
use backstop::replay::Replay;
use backstop::transcript::parse_line;

use super::SourceArgs;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Transcript in JSON Lines, or - for standard input.
    file: PathBuf,
    /// One JSON object per nudge, and per detection the nudge policy held back (with
    /// "suppressed"), on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// Fire reminders due up to this time at the end (RFC 3339). Default: the last message's time.
    #[arg(long, value_name = "RFC3339")]
    until: Option<Timestamp>,
    /// Report and count invalid lines instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
    /// Say why each detection fired: the rule and its words, or the model's probability and the
    /// features that weighed most.
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    sources: SourceArgs,
}

/// A nudge as printed by `--json`.
#[derive(Serialize)]
struct Line<'a> {
    kind: NudgeKind,
    category: Option<Category>,
    conversation: &'a str,
    line: u64,
    at: String,
    agent: Option<&'a str>,
    customer: Option<&'a str>,
    rule: &'a str,
    evidence: &'a str,
    due: Option<String>,
    due_from: Option<&'a str>,
    title: &'a str,
    text: &'a str,
    phrases: &'a [String],
    /// With `--explain`: the rule and its words, or the model and its strongest features.
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

/// A detection the nudge policy held back, as printed by `--json`: no delivery, and why.
#[derive(Serialize)]
struct Held<'a> {
    kind: NudgeKind,
    category: Option<Category>,
    conversation: &'a str,
    line: u64,
    at: String,
    rule: &'a str,
    evidence: &'a str,
    suppressed: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    why: &'a [(String, f32)],
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let engine = args.sources.sources().engine()?;
    let engine = if args.explain { engine.explaining() } else { engine };
    let started = Instant::now();
    let (input, size): (Box<dyn Read>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let progress = match size {
        Some(len) if len > 4 << 20 && io::stderr().is_terminal() => {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}").expect("valid template"),
            );
            Some(bar)
        }
        _ => None,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut replay = Replay::new(&engine);
    let mut counts: BTreeMap<NudgeKind, usize> = BTreeMap::new();
    let (mut messages, mut invalid, mut detections, mut held) = (0u64, 0u64, 0u64, 0u64);
    let mut before_reply = 0usize;
    let mut reader = BufReader::new(input);
    let mut raw = Vec::new();
    let mut line_no = 0u64;
    loop {
        raw.clear();
        let read = reader
            .read_until(b'\n', &mut raw)
            .with_context(|| format!("reading {}", args.file.display()))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        if let Some(bar) = &progress {
            bar.inc(read as u64);
        }
        // A line that is not UTF-8 is one bad line, not the end of the stream.
        let parsed = match std::str::from_utf8(&raw) {
            Ok(text) => parse_line(line_no, text),
            Err(e) => Err(backstop::transcript::LineError {
                line: line_no,
                problem: format!("not valid UTF-8 (byte {})", e.valid_up_to() + 1),
            }),
        };
        let record = match parsed {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) if args.skip_invalid => {
                invalid += 1;
                eprintln!("skipped {e}");
                continue;
            }
            Err(e) => {
                out.flush()?;
                eprintln!("backstop: {}: {e}", args.file.display());
                return Ok(ExitCode::from(2));
            }
        };
        messages += 1;
        let outcome = replay.feed(line_no, &record);
        // Cue nudges handed to an agent as they start typing were already counted (unaddressed)
        // when the cue arrived; they are printed again, addressed, and counted apart.
        let mut claimed: BTreeMap<NudgeKind, usize> = BTreeMap::new();
        for (i, nudge) in outcome.nudges.iter().enumerate() {
            let counts = if i < outcome.before_reply {
                &mut claimed
            } else {
                &mut counts
            };
            let why = args
                .explain
                .then(|| {
                    outcome
                        .detections
                        .iter()
                        .find(|d| d.source == nudge.source && d.kind == nudge.kind)
                        .map(explanation)
                })
                .flatten();
            emit(&mut out, nudge, args.json, counts, why)?;
        }
        before_reply += outcome.before_reply;
        detections += outcome.detections.len() as u64;
        for d in outcome.detections.iter().filter(|d| d.suppressed.is_some()) {
            held += 1;
            emit_held(&mut out, d, args.json)?;
        }
    }
    for nudge in replay.finish(args.until) {
        emit(&mut out, &nudge, args.json, &mut counts, None)?;
    }
    out.flush()?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let total: usize = counts.values().sum();
    let mut summary = format!(
        "{messages} messages, {detections} detections ({held} held back by the nudge policy), {total} nudges in {:.2}s ({:.0} messages/s)",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    if invalid > 0 {
        summary.push_str(&format!(", {invalid} invalid lines skipped"));
    }
    if before_reply > 0 {
        summary.push_str(&format!(
            ", {before_reply} reached the agent as they started typing, before their reply"
        ));
    }
    let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if !by_kind.is_empty() {
        summary.push_str(&format!("\n  {}", by_kind.join(", ")));
    }
    if args.json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a detection fired, in a line: its rule and words, or the model and its strongest features.
fn explanation(d: &Detection) -> String {
    match d.score {
        None => format!("rule {} on \"{}\"", d.rule, d.evidence),
        Some(p) => {
            let top: Vec<String> = d.why.iter().map(|(f, w)| format!("{f} {w:+.2}")).collect();
            format!(
                "model p={p:.2} on \"{}\"; strongest features: {}",
                d.evidence,
                top.join(", ")
            )
        }
    }
}

fn emit_held(out: &mut impl Write, d: &Detection, json: bool) -> anyhow::Result<()> {
    let suppressed = d.suppressed.map_or("", |s| s.as_str());
    if json {
        let line = Held {
            kind: d.kind,
            category: d.category,
            conversation: d.conversation.as_str(),
            line: d.source.0,
            at: d.at.to_string(),
            rule: &d.rule,
            evidence: &d.evidence,
            suppressed,
            score: d.score,
            why: &d.why,
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)?;
        return Ok(());
    }
    let what = match d.category {
        Some(c) => format!("{}/{c}", d.kind),
        None => d.kind.to_string(),
    };
    let line = format!(
        "{}  {what:<40} {}  \"{}\"  (held back: {suppressed}; {})",
        d.at.strftime("%m-%d %H:%M"),
        d.conversation,
        d.evidence,
        explanation(d)
    );
    writeln!(out, "{}", line.if_supports_color(Stream::Stdout, |t| t.dimmed()))?;
    Ok(())
}

fn emit(
    out: &mut impl Write,
    nudge: &Nudge,
    json: bool,
    counts: &mut BTreeMap<NudgeKind, usize>,
    why: Option<String>,
) -> anyhow::Result<()> {
    *counts.entry(nudge.kind).or_default() += 1;
    if json {
        let line = Line {
            kind: nudge.kind,
            category: nudge.category,
            conversation: nudge.conversation.as_str(),
            line: nudge.source.0,
            at: nudge.at.to_string(),
            agent: nudge.agent.as_ref().map(|a| a.as_str()),
            customer: nudge.customer.as_ref().map(|c| c.as_str()),
            rule: &nudge.rule,
            evidence: &nudge.evidence,
            due: nudge.due.as_ref().map(|d| d.at.to_string()),
            due_from: nudge.due.as_ref().map(|d| match &d.source {
                DueSource::Stated(words) => words.as_str(),
                DueSource::Default => "default",
            }),
            title: &nudge.title,
            text: &nudge.text,
            phrases: &nudge.phrases,
            why,
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)?;
        return Ok(());
    }
    let style = match nudge.kind {
        NudgeKind::PriorFailure => Style::new().yellow(),
        NudgeKind::ExplainBeforeApology => Style::new().red(),
        NudgeKind::FollowUpPromised | NudgeKind::FollowUpNoTimeframe => Style::new().cyan(),
        NudgeKind::FollowUpReminder => Style::new().magenta(),
        NudgeKind::FollowUpOverdue => Style::new().bright_red().bold(),
        NudgeKind::DetailsBeforeOwnership | NudgeKind::GenericApology => Style::new().bright_yellow(),
        NudgeKind::ColdTransfer => Style::new().green(),
        NudgeKind::HandoffBrief => Style::new().blue(),
    };
    let what = match nudge.category {
        Some(c) => format!("{}/{c}", nudge.kind),
        None => nudge.kind.to_string(),
    };
    let when = nudge.at.strftime("%m-%d %H:%M");
    let agent = nudge.agent.as_ref().map_or("(no agent yet)", |a| a.as_str());
    let due = nudge
        .due
        .as_ref()
        .map(|d| format!("  due {}", d.at.strftime("%m-%d %H:%M")))
        .unwrap_or_default();
    writeln!(
        out,
        "{when}  {:<40} {} → {agent}  \"{}\"{due}  {}",
        what.if_supports_color(Stream::Stdout, |t| t.style(style)),
        nudge.conversation,
        nudge.evidence,
        format!("[{} · line {}]", nudge.rule, nudge.source.0).if_supports_color(Stream::Stdout, |t| t.dimmed()),
    )?;
    if let Some(why) = why {
        writeln!(out, "      why: {why}")?;
    }
    Ok(())
}
