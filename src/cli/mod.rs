//! Command-line interface: argument definitions and one module per subcommand.

mod check;
mod phrase;
mod replay;

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
    /// Validate rules, settings and prompts, listing every problem at once.
    Check(SourceArgs),
    /// List the phrase library's situations, or the phrases for one.
    Phrase(phrase::PhraseArgs),
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
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Check(args) => check::run(args),
        Command::Phrase(args) => phrase::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("backstop: {e:#}");
            ExitCode::from(1)
        }
    }
}
