//! `backstop run`: the Discord bot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use backstop::clock::{Clock, ScaledClock};
use backstop::discord::config::{BotConfig, Token};
use backstop::discord::{start, Endpoint, Options};
use backstop::store::{ShardRange, StorageConfig, Store};

use super::SourceArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    storage: StorageArgs,
    /// A Discord-compatible endpoint (a REST proxy, or `backstop stand-in`). Its gateway URL is
    /// used too, and serenity's own rate limiter is off because the endpoint owns rate limits.
    #[arg(long, value_name = "URL", env = "BACKSTOP_DISCORD_API")]
    discord_api: Option<String>,
    /// Run only these gateway shards, e.g. `0-3` or `2`. Other processes run the rest and share
    /// one PostgreSQL database.
    #[arg(long, value_name = "FIRST-LAST", requires = "total_shards")]
    shards: Option<String>,
    /// How many shards there are across all processes.
    #[arg(long, value_name = "N", requires = "shards")]
    total_shards: Option<u32>,
    /// Serve /healthz and Prometheus /metrics here, e.g. 127.0.0.1:9100 (overrides [metrics] listen).
    #[arg(long, value_name = "ADDR", env = "BACKSTOP_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Run on a sped-up clock: START,REAL_START,SPEED (tests and rehearsals).
    #[arg(long, hide = true, env = "BACKSTOP_CLOCK")]
    clock: Option<String>,
}

/// Where state is kept: overrides of `[storage]` in backstop.toml.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// A postgres:// URL (overrides storage.url).
    #[arg(long, value_name = "URL", env = "BACKSTOP_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The SQLite database's folder (overrides storage.data_dir; default `data`).
    #[arg(long, value_name = "DIR", env = "BACKSTOP_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl StorageArgs {
    /// `[storage]` from the file (or the defaults) with these overrides applied.
    pub fn apply(&self, mut config: StorageConfig) -> StorageConfig {
        if let Some(url) = self.database_url.clone().filter(|u| !u.trim().is_empty()) {
            config.url = Some(url);
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        config
    }
}

/// The bot's settings file inside a config folder.
pub fn bot_config_path(config: Option<PathBuf>) -> PathBuf {
    config.unwrap_or_else(|| PathBuf::from("config")).join("backstop.toml")
}

/// Reads `--shards 0-3 --total-shards 8`.
fn shard_range(shards: Option<&str>, total: Option<u32>) -> anyhow::Result<Option<ShardRange>> {
    let (Some(text), Some(total)) = (shards, total) else {
        return Ok(None);
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
        None => (text.trim().parse::<u32>(), text.trim().parse::<u32>()),
    };
    let (Ok(first), Ok(last)) = (first, last) else {
        anyhow::bail!("--shards {text:?}: write a shard number or a range like 0-3");
    };
    if total == 0 || first > last || last >= total {
        anyhow::bail!(
            "--shards {text} does not fit --total-shards {total}: shards are numbered 0 to {}",
            total.saturating_sub(1)
        );
    }
    Ok(Some(ShardRange { first, last, total }))
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
    let mut config = BotConfig::parse(&path.display().to_string(), &text, engine.settings())?;
    config.storage = args.storage.apply(config.storage);
    let shards = shard_range(args.shards.as_deref(), args.total_shards)?;
    if let Some(s) = shards.filter(|s| !s.is_all()) {
        if config.storage.url.is_none() {
            anyhow::bail!(
                "--shards {}-{} of {} leaves the other shards to other processes, and they cannot share a SQLite file. \
                 Set storage.url in {} (or BACKSTOP_DATABASE_URL) to a PostgreSQL database they all use",
                s.first,
                s.last,
                s.total,
                path.display()
            );
        }
    }
    let clock = match &args.clock {
        Some(text) => Clock::Scaled(ScaledClock::parse(text).map_err(|e| anyhow::anyhow!("--clock {e}"))?),
        None => Clock::System,
    };
    let token = Token::load(std::env::var("DISCORD_TOKEN").ok(), config.token_file.as_deref())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = Store::open(&config.storage).await?;
        tracing::info!(backend = store.backend(), place = store.place(), "storage open");
        let options = Options {
            endpoint: Endpoint { api: args.discord_api },
            clock,
            shards,
            metrics: args.metrics_listen.or(config.metrics_listen),
            sources: Some(sources),
        };
        let bot = start(&engine, Arc::new(config), &token, store, options).await?;
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight sends and queued writes");
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

#[cfg(test)]
mod tests {
    use super::shard_range;

    #[test]
    fn shard_ranges_are_checked() {
        let r = shard_range(Some("0-3"), Some(8)).unwrap().unwrap();
        assert_eq!((r.first, r.last, r.total), (0, 3, 8));
        assert_eq!(shard_range(Some("2"), Some(4)).unwrap().unwrap().first, 2);
        assert!(shard_range(Some("3-9"), Some(8)).is_err());
        assert!(shard_range(Some("a-b"), Some(8)).is_err());
    }
}
