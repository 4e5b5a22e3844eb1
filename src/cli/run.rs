//! `backstop run`: the Discord bot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use backstop::discord::clock::Clock;
use backstop::discord::config::{BotConfig, Token};
use backstop::discord::{start, Endpoint};

use super::SourceArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    sources: SourceArgs,
    /// A Discord-compatible endpoint (a REST proxy, or `backstop stand-in`). Its gateway URL is
    /// used too, and serenity's own rate limiter is off because the endpoint owns rate limits.
    #[arg(long, value_name = "URL", env = "BACKSTOP_DISCORD_API")]
    discord_api: Option<String>,
}

/// The bot's settings file inside a config folder.
pub fn bot_config_path(config: Option<PathBuf>) -> PathBuf {
    config.unwrap_or_else(|| PathBuf::from("config")).join("backstop.toml")
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let sources = args.sources.sources();
    let engine = sources.engine()?;
    let path = bot_config_path(sources.resolved().0);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: copy config/backstop.example.toml there and fill in your ids",
            path.display()
        )
    })?;
    let config = BotConfig::parse(&path.display().to_string(), &text, engine.settings())?;
    let token = Token::load(std::env::var("DISCORD_TOKEN").ok(), config.token_file.as_deref())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let endpoint = Endpoint { api: args.discord_api };
        let bot = start(&engine, Arc::new(config), &token, &endpoint, Clock::System).await?;
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight sends");
        bot.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
