//! Command-line interface: argument definitions and one module per subcommand.

mod check;
mod data;
#[cfg(feature = "stand-in")]
mod demo;
mod eval;
mod phrase;
mod replay;
mod run;
#[cfg(feature = "stand-in")]
mod stand_in;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use backstop::config::Sources;

/// Backstop: real-time service-recovery coaching for support agents.
#[derive(Debug, Parser)]
#[command(name = "backstop", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Feed a JSON Lines transcript through the engine and print the nudges.
    Replay(replay::ReplayArgs),
    /// Precision, recall and F1 of the rules on labelled transcripts; --compare two config folders.
    Eval(eval::EvalArgs),
    /// Fit the learned layer from labelled transcripts (gated on a labelled set with --gate).
    Train(train::TrainArgs),
    /// Validate rules, settings and prompts, listing every problem at once.
    Check(check::CheckArgs),
    /// List the phrase library's situations, or the phrases for one.
    Phrase(phrase::PhraseArgs),
    /// Run the Discord bot (config/backstop.toml, DISCORD_TOKEN).
    Run(run::RunArgs),
    /// Delete everything stored about one Discord user (customer or agent).
    Forget(data::ForgetArgs),
    /// Write the nudge log and promises as JSON Lines.
    Export(data::ExportArgs),
    /// Turn agents' 👍/👎 into labelled lines for `backstop eval`.
    ExportLabels(data::ExportArgs),
    /// Per-rule fires and agents' feedback from the nudge log (`report rules`).
    Report(data::ReportArgs),
    /// Play a day of support through the real bot on a local Discord stand-in.
    #[cfg(feature = "stand-in")]
    Demo(demo::DemoArgs),
    /// Run the local Discord stand-in on its own, printing what it receives.
    #[cfg(feature = "stand-in")]
    StandIn(stand_in::StandInArgs),
}

/// Where rules and prompts come from.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Config folder (rules.toml or rules/, engine.toml). Default: ./config if present, else built-in.
    #[arg(long, value_name = "DIR", env = "BACKSTOP_CONFIG")]
    config: Option<PathBuf>,
    /// Prompts folder (nudges.toml, phrases.toml). Default: ./prompts if present, else built-in.
    #[arg(long, value_name = "DIR", env = "BACKSTOP_PROMPTS")]
    prompts: Option<PathBuf>,
}

impl SourceArgs {
    fn sources(&self) -> Sources {
        Sources {
            config: self.config.clone(),
            prompts: self.prompts.clone(),
        }
    }
}

pub fn main() -> ExitCode {
    // Logs go to stderr; RUST_LOG tunes them. Message text is never logged at info level.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "backstop=warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Check(args) => check::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Phrase(args) => phrase::run(args),
        Command::Run(args) => run::run(args),
        Command::Forget(args) => data::forget(args),
        Command::Export(args) => data::export(args),
        Command::ExportLabels(args) => data::export_labels(args),
        Command::Report(args) => data::report(args),
        #[cfg(feature = "stand-in")]
        Command::Demo(args) => demo::run(args),
        #[cfg(feature = "stand-in")]
        Command::StandIn(args) => stand_in::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("backstop: {e:#}");
            ExitCode::from(1)
        }
    }
}
