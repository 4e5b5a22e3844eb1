//! `backstop phrase`: browse the phrase library from the terminal.

use std::process::ExitCode;

use clap::Args;

use super::SourceArgs;

#[derive(Debug, Args)]
pub struct PhraseArgs {
    /// A situation id (see the list printed without arguments).
    situation: Option<String>,
    /// Find phrases by words instead.
    #[arg(long, value_name = "TEXT", conflicts_with = "situation")]
    search: Option<String>,
    #[command(flatten)]
    sources: SourceArgs,
}

pub fn run(args: PhraseArgs) -> anyhow::Result<ExitCode> {
    let prompts = args.sources.sources().prompts()?;
    if let Some(query) = &args.search {
        let found = prompts.search(query);
        if found.is_empty() {
            eprintln!("no phrases match {query:?}");
            return Ok(ExitCode::from(1));
        }
        for (situation, phrase) in found.iter().take(10) {
            println!("[{}] {phrase}", situation.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match &args.situation {
        None => {
            let width = prompts.situations().iter().map(|s| s.id.len()).max().unwrap_or(0);
            for s in prompts.situations() {
                println!("{:<width$}  {} ({} phrases)", s.id, s.title, s.phrases.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(id) => match prompts.situation(id) {
            Some(s) => {
                println!("{}", s.title);
                for p in &s.phrases {
                    println!("  • {p}");
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                let ids: Vec<_> = prompts.situations().iter().map(|s| s.id.as_str()).collect();
                eprintln!("unknown situation {id:?}; known: {}", ids.join(", "));
                Ok(ExitCode::from(2))
            }
        },
    }
}
