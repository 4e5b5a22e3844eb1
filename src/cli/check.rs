//! `backstop check`: validate everything a team lead can edit.

use std::process::ExitCode;

use super::SourceArgs;

pub fn run(args: SourceArgs) -> anyhow::Result<ExitCode> {
    let sources = args.sources();
    let (config, prompts) = sources.resolved();
    let name = |p: Option<std::path::PathBuf>| p.map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let mut report = sources.check()?;
    // The bot's own settings, when this config folder has them.
    let bot_path = super::run::bot_config_path(config.clone());
    if let (Ok(text), Ok(engine)) = (std::fs::read_to_string(&bot_path), sources.engine()) {
        if let Err(p) =
            backstop::discord::config::BotConfig::parse(&bot_path.display().to_string(), &text, engine.settings())
        {
            report.problems.extend(p.0);
        }
    }
    if report.problems.is_empty() {
        println!(
            "ok: {} rules ({}), {} phrase situations ({})",
            report.rules,
            name(config),
            report.situations,
            name(prompts)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let n = report.problems.len();
    eprintln!("{n} problem{} found:", if n == 1 { "" } else { "s" });
    for p in &report.problems {
        eprintln!("  {p}");
    }
    Ok(ExitCode::from(1))
}
