//! `backstop forget` and `backstop export`: what a team does with the stored data.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use backstop::checklist::{ChecklistRates, ChecklistReport};
use backstop::discord::config::BotConfig;
use backstop::engine::RecoveryStep;
use backstop::report::RuleReport;
use backstop::store::{StorageConfig, Store};

use super::run::{bot_config_path, StorageArgs};
use super::SourceArgs;

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    storage: StorageArgs,
    /// The Discord user id (customer or agent) to delete everything about.
    #[arg(long, value_name = "ID")]
    user: u64,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    storage: StorageArgs,
    /// Only what happened since then: a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// What to report on: `rules` (fires, feedback and helpful rate per rule) or `checklist`
    /// (how often each step of the recovery checklist was done: team, weeks, agents).
    #[arg(value_parser = ["rules", "checklist"])]
    what: String,
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    storage: StorageArgs,
    /// Only nudges since then: a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Print JSON Lines: one rule a line, or one line per team, week and agent.
    #[arg(long)]
    json: bool,
}

/// What a problem looks like before an agent's reply, so an explanation can be judged in
/// context: it opens a problem without being a prior-failure cue itself.
const CONTEXT_LINE: &str = "There is a problem with my order.";

/// `[storage]` from backstop.toml when there is one, else the defaults; then the overrides.
fn storage_config(sources: &SourceArgs, args: &StorageArgs) -> anyhow::Result<StorageConfig> {
    let sources = sources.sources();
    let path = bot_config_path(sources.resolved().0);
    let base = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let engine = sources.engine()?;
            BotConfig::parse(&path.display().to_string(), &text, engine.settings())?.storage
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StorageConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(args.apply(base))
}

fn parse_since(text: &str) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        anyhow::anyhow!("--since {text:?}: write a date like 2026-11-01 or a time like 2026-11-01T09:00:00Z")
    })?;
    Ok(date.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
}

/// The async runtime and the open store, for a command that reads or writes it once.
fn open_store(config: &StorageConfig) -> anyhow::Result<(tokio::runtime::Runtime, Store)> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = runtime.block_on(Store::open(config))?;
    Ok((runtime, store))
}

/// `--since` as Unix milliseconds; everything when absent.
fn since_ms(since: Option<&str>) -> anyhow::Result<i64> {
    Ok(since
        .map(parse_since)
        .transpose()?
        .map_or(i64::MIN, |t| t.as_millisecond()))
}

/// `-o FILE`, or standard output.
fn output(path: Option<&PathBuf>) -> anyhow::Result<Box<dyn std::io::Write>> {
    Ok(match path {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

pub fn forget(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let (runtime, store) = open_store(&storage_config(&args.sources, &args.storage)?)?;
    let gone = runtime.block_on(store.forget_user(args.user))?;
    runtime.block_on(store.close());
    println!(
        "Forgot user {}: {} promises, {} nudge log entries, {} conversation contexts, {} settings, {} recovery checklists ({} records) removed from {}.",
        args.user,
        gone.promises,
        gone.nudges,
        gone.conversations,
        gone.settings,
        gone.checklists,
        gone.total(),
        store.place()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.what == "checklist" {
        return report_checklist(args);
    }
    let since = since_ms(args.since.as_deref())?;
    let (runtime, store) = open_store(&storage_config(&args.sources, &args.storage)?)?;
    let report = runtime.block_on(RuleReport::load(&store, since, None))?;
    runtime.block_on(store.close());
    if args.json {
        for r in &report.rows {
            let line = serde_json::json!({
                "rule": r.rule, "kind": r.kind, "fires": r.fires, "helpful": r.helpful,
                "not_helpful": r.unhelpful, "helpful_rate": r.helpful_rate(), "noisy": r.is_noisy(),
                "not_helpful_evidence": r.unhelpful_evidence,
            });
            println!("{line}");
        }
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `backstop report checklist`: the recovery checklist's rates from the store, weeks in the
/// engine's schedule time zone.
fn report_checklist(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let since = since_ms(args.since.as_deref())?;
    let tz = args.sources.sources().engine()?.settings().schedule.time_zone.clone();
    let (runtime, store) = open_store(&storage_config(&args.sources, &args.storage)?)?;
    let report = runtime.block_on(ChecklistReport::load(&store, since, None, &tz))?;
    runtime.block_on(store.close());
    if !args.json {
        print!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    let steps = |r: &ChecklistRates| {
        RecoveryStep::ALL
            .into_iter()
            .map(|s| (s.as_str().to_string(), serde_json::json!(r.done[s as usize])))
            .collect::<serde_json::Map<_, _>>()
    };
    println!(
        "{}",
        serde_json::json!({"scope": "team", "conversations": report.total.conversations, "done": steps(&report.total)})
    );
    for (week, r) in &report.by_week {
        println!(
            "{}",
            serde_json::json!({"scope": "week", "week": week.to_string(), "conversations": r.conversations, "done": steps(r)})
        );
    }
    for (agent, r) in &report.by_agent {
        println!(
            "{}",
            serde_json::json!({"scope": "agent", "agent": agent.to_string(), "conversations": r.conversations, "done": steps(r)})
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns agents' 👍/👎 into labelled transcript lines for `backstop eval`: a 👍 keeps the nudge's
/// label on its message, a 👎 says nothing should have fired there. Only the text judgments are
/// exported (prior-failure cues and explanations); reminders depend on time, not words.
pub fn export_labels(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let since = since_ms(args.since.as_deref())?;
    let (runtime, store) = open_store(&storage_config(&args.sources, &args.storage)?)?;
    let rated = runtime.block_on(store.rated_nudges(since))?;
    runtime.block_on(store.close());
    let mut out = output(args.output.as_ref())?;
    let (mut lines, mut kept) = (0, 0);
    for rated in rated {
        let (kind, excerpt) = (&rated.kind, &rated.excerpt);
        let at = backstop::store::from_ms(rated.at);
        let conversation = format!("feedback-{}", rated.id);
        let label = match (kind.as_str(), &rated.category) {
            ("prior_failure", Some(c)) => format!("{kind}:{c}"),
            _ => kind.clone(),
        };
        let labels: Vec<String> = if rated.helpful { vec![label] } else { vec![] };
        let line = |role: &str, author: &str, text: &str, ts: jiff::Timestamp, labels: &[String]| {
            serde_json::json!({"conversation": conversation, "author": author, "role": role, "text": text,
                               "ts": ts.to_string(), "labels": labels})
        };
        match kind.as_str() {
            "prior_failure" => {
                writeln!(out, "{}", line("customer", "customer", excerpt, at, &labels))?;
                lines += 1;
            }
            "explain_before_apology" => {
                let before = at.checked_sub(jiff::SignedDuration::from_mins(1)).unwrap_or(at);
                writeln!(out, "{}", line("customer", "customer", CONTEXT_LINE, before, &[]))?;
                writeln!(out, "{}", line("agent", "agent", excerpt, at, &labels))?;
                lines += 2;
            }
            _ => continue,
        }
        kept += 1;
    }
    out.flush().context("writing the labels")?;
    eprintln!("{kept} rated nudges written as {lines} labelled lines");
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let since = since_ms(args.since.as_deref())?;
    let (runtime, store) = open_store(&storage_config(&args.sources, &args.storage)?)?;
    let nudges = runtime.block_on(store.export_nudges(since))?;
    let promises = runtime.block_on(store.export_promises(since))?;
    runtime.block_on(store.close());
    let mut out = output(args.output.as_ref())?;
    for row in nudges.iter().chain(&promises) {
        writeln!(out, "{row}").context("writing the export")?;
    }
    out.flush().context("writing the export")?;
    eprintln!("exported {} nudges and {} promises", nudges.len(), promises.len());
    Ok(ExitCode::SUCCESS)
}
