//! `backstop forget` and `backstop export`: what a team does with the stored data.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use backstop::discord::config::BotConfig;
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
    /// What to report on: `rules` (fires, feedback and helpful rate per rule).
    #[arg(value_parser = ["rules"])]
    what: String,
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    storage: StorageArgs,
    /// Only nudges since then: a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Print JSON Lines, one rule a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ExportLabelsArgs {
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    storage: StorageArgs,
    /// Only feedback on nudges since then: a date (2026-11-01) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
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

pub fn forget(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let config = storage_config(&args.sources, &args.storage)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(&config).await?;
        let gone = store.forget_user(args.user).await?;
        store.close().await;
        println!(
            "Forgot user {}: {} promises, {} nudge log entries, {} conversation contexts, {} settings ({} records) removed from {}.",
            args.user,
            gone.promises,
            gone.nudges,
            gone.conversations,
            gone.settings,
            gone.total(),
            store.place()
        );
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = storage_config(&args.sources, &args.storage)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let store = Store::open(&config).await?;
        let report = RuleReport::load(&store, since.map_or(i64::MIN, |t| t.as_millisecond()), None).await?;
        store.close().await;
        Ok::<_, anyhow::Error>(report)
    })?;
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

/// Turns agents' 👍/👎 into labelled transcript lines for `backstop eval`: a 👍 keeps the nudge's
/// label on its message, a 👎 says nothing should have fired there. Only the text judgments are
/// exported (prior-failure cues and explanations); reminders depend on time, not words.
pub fn export_labels(args: ExportLabelsArgs) -> anyhow::Result<ExitCode> {
    let config = storage_config(&args.sources, &args.storage)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let rated = runtime.block_on(async {
        let store = Store::open(&config).await?;
        let rated = store
            .rated_nudges(since.map_or(i64::MIN, |t| t.as_millisecond()))
            .await?;
        store.close().await;
        Ok::<_, anyhow::Error>(rated)
    })?;
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let (mut lines, mut kept) = (0, 0);
    for (id, kind, category, excerpt, at, helpful) in rated {
        let at = backstop::store::from_ms(at);
        let conversation = format!("feedback-{id}");
        let label = match (&kind[..], &category) {
            ("prior_failure", Some(c)) => format!("{kind}:{c}"),
            _ => kind.clone(),
        };
        let labels: Vec<String> = if helpful { vec![label] } else { vec![] };
        let line = |role: &str, author: &str, text: &str, ts: jiff::Timestamp, labels: &[String]| {
            serde_json::json!({"conversation": conversation, "author": author, "role": role, "text": text,
                               "ts": ts.to_string(), "labels": labels})
        };
        match kind.as_str() {
            "prior_failure" => {
                writeln!(out, "{}", line("customer", "customer", &excerpt, at, &labels))?;
                lines += 1;
            }
            "explain_before_apology" => {
                let before = at.checked_sub(jiff::SignedDuration::from_mins(1)).unwrap_or(at);
                writeln!(out, "{}", line("customer", "customer", CONTEXT_LINE, before, &[]))?;
                writeln!(out, "{}", line("agent", "agent", &excerpt, at, &labels))?;
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
    let config = storage_config(&args.sources, &args.storage)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let since_ms = since.map_or(i64::MIN, |t| t.as_millisecond());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (nudges, promises) = runtime.block_on(async {
        let store = Store::open(&config).await?;
        let nudges = store.export_nudges(since_ms).await?;
        let promises = store.export_promises(since_ms).await?;
        store.close().await;
        Ok::<_, anyhow::Error>((nudges, promises))
    })?;
    let mut out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for row in nudges.iter().chain(&promises) {
        writeln!(out, "{row}").context("writing the export")?;
    }
    out.flush().context("writing the export")?;
    eprintln!("exported {} nudges and {} promises", nudges.len(), promises.len());
    Ok(ExitCode::SUCCESS)
}
