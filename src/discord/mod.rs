//! The Discord adapter: serenity's gateway and REST client in front of the serenity-free
//! [`Coach`], which drives the same engine as `replay`.
//!
//! Only this module imports serenity. Layout: `bot` (what the tasks below share), `handler`
//! (events in, translated to coach calls), `delivery` (DM or coaching thread, with retries; the
//! coach's [`crate::coach::Platform`]), `commands` (slash commands), `convert` (serenity types to
//! ours), `reminders` (the durable scheduler: heads-ups, overdue notices, escalations), `digests`,
//! `reload` and [`metrics`]. Each takes a `Bot` and none imports another's state. The local
//! Discord that tests and the demo run against is its own crate, `backstop-stand-in`. State that
//! must outlive the process goes to [`crate::store`].

mod bot;
pub(crate) mod commands;
pub(crate) mod convert;
pub(crate) mod delivery;
mod digests;
mod handler;
pub mod metrics;
mod reload;
pub mod reminders;
mod stop;

/// backstop.toml and the token: the coach's settings, kept at this path for callers that start
/// the bot.
pub use crate::coach::config;

use std::sync::Arc;
use std::time::Duration;

use serenity::all::{ClientBuilder, GatewayIntents, HttpBuilder};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::coach::Coach;
use crate::engine::Engine;
use crate::store::{ShardRange, Store, StoreError};
use bot::Bot;
use config::BotConfig;
use delivery::Deliverer;
use handler::Handler;

/// How to reach Discord.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    /// A Discord-compatible base URL (a REST proxy or the stand-in). `None` is Discord itself.
    pub api: Option<String>,
}

/// Why the bot could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("could not start the Discord client: {0}")]
    Client(#[source] serenity::Error),
    #[error("the gateway connection failed: {0}")]
    Gateway(#[source] serenity::Error),
    #[error("{0}")]
    Store(#[source] StoreError),
    #[error("cannot serve /metrics on {0}: {1}. Pick a free address for [metrics] listen or --metrics-listen")]
    Metrics(std::net::SocketAddr, #[source] std::io::Error),
}

/// How to run: where Discord is, which clock, which shards.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoint: Endpoint,
    pub clock: Clock,
    /// The gateway shards this process runs; `None` runs them all (one shard).
    pub shards: Option<ShardRange>,
    /// Where to serve `/healthz` and `/metrics`; `None` serves nothing.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where the rules and prompts came from, to reload them (`/coach reload`, file changes).
    pub sources: Option<crate::config::Sources>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            endpoint: Endpoint::default(),
            clock: Clock::System,
            shards: None,
            metrics: None,
            sources: None,
        }
    }
}

/// A running bot, for tests and the demo: stop it with [`Running::shutdown`].
pub struct Running {
    pub coach: Arc<Coach>,
    /// Signalled on the first READY.
    ready: Arc<Notify>,
    /// Where `/healthz` and `/metrics` are served, when they are.
    pub metrics_addr: Option<std::net::SocketAddr>,
    shard_manager: Arc<serenity::all::ShardManager>,
    task: tokio::task::JoinHandle<Result<(), BotError>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    stop: stop::StopSignal,
}

impl Running {
    /// Stops taking events, lets in-flight sends and queued writes finish, and returns.
    pub async fn shutdown(self) -> Result<(), BotError> {
        self.shard_manager.shutdown_all().await;
        self.coach.in_flight.drain(Duration::from_secs(15)).await;
        // Tasks return at their next idle point, so a reminder being sent is also recorded.
        self.stop.stop();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut cut_short = 0;
        for mut task in self.background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                cut_short += 1;
            }
        }
        if cut_short > 0 {
            tracing::warn!(
                tasks = cut_short,
                "background tasks did not stop within 10 s (the database is not answering?); stopped them"
            );
        }
        self.coach.flush_contexts();
        if !self.coach.writer.flush(Duration::from_secs(10)).await {
            tracing::error!("shutting down with database writes still queued: the database is not answering");
        }
        self.coach.store.close().await;
        // Serenity re-queues a shard that cannot reach Discord forever; do not wait on that.
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                abort.abort();
                tracing::warn!("the gateway client did not stop in time; stopped it");
                Ok(())
            }
        }
    }

    /// Waits for the gateway session to be ready.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

pub const INTENTS: GatewayIntents = GatewayIntents::GUILDS
    .union(GatewayIntents::GUILD_MESSAGES)
    .union(GatewayIntents::MESSAGE_CONTENT)
    .union(GatewayIntents::GUILD_MESSAGE_TYPING)
    .union(GatewayIntents::DIRECT_MESSAGES)
    .union(GatewayIntents::GUILD_MEMBERS);

/// Starts the bot in the background: the gateway client, the reminder scheduler and housekeeping.
///
/// `store` is open already, so a database problem stops start-up before Discord is contacted.
pub async fn start(
    base: &Engine,
    config: Arc<BotConfig>,
    token: &config::Token,
    store: Store,
    options: Options,
) -> Result<Running, BotError> {
    let mut http = HttpBuilder::new(token.expose());
    if let Some(api) = &options.endpoint.api {
        // The endpoint owns rate limits; serenity's limiter would also bypass the proxy.
        http = http.proxy(api.trim_end_matches('/')).ratelimiter_disabled(true);
    }
    let http = http.build();
    let coach = Coach::open(
        base,
        config.clone(),
        store,
        options.clock.clone(),
        options.shards,
        options.sources.clone(),
    )
    .await
    .map_err(BotError::Store)?;
    let bot = Arc::new(Bot::new(Arc::new(coach)));
    let ready = Arc::new(Notify::new());
    let handler = Arc::new(Handler {
        bot: bot.clone(),
        ready: ready.clone(),
    });
    let mut client = ClientBuilder::new_with_http(http, INTENTS)
        .event_handler_arc(handler.clone())
        .framework(commands::framework(bot.clone()))
        .await
        .map_err(BotError::Client)?;
    bot.attach(Arc::new(Deliverer::new(client.http.clone())));
    let shard_manager = client.shard_manager.clone();
    let (stop_signal, stop) = stop::channel();
    let mut background = vec![
        tokio::spawn(reminders::run(bot.clone(), stop.clone())),
        tokio::spawn(housekeeping(bot.coach.clone(), stop.clone())),
        tokio::spawn(flush_contexts(bot.coach.clone(), stop.clone())),
        tokio::spawn(reload::watch(bot.clone(), stop.clone())),
    ];
    for g in &config.guilds {
        // Digests come from the process that owns the guild's shard, so they are posted once.
        if options.shards.is_none_or(|s| s.owns(g.id)) {
            for cadence in &g.digests {
                background.push(tokio::spawn(digests::run(bot.clone(), g.id, *cadence, stop.clone())));
            }
        }
    }
    let mut metrics_addr = None;
    if let Some(addr) = options.metrics {
        let (bound, task) = metrics::serve(addr, bot.coach.clone(), stop.clone())
            .await
            .map_err(|e| BotError::Metrics(addr, e))?;
        metrics_addr = Some(bound);
        background.push(task);
        let runners = shard_manager.runners.clone();
        let mut stop = stop.clone();
        background.push(tokio::spawn(async move {
            loop {
                for (id, info) in runners.lock().await.iter() {
                    if let Some(latency) = info.latency {
                        ::metrics::gauge!(metrics::GATEWAY_LATENCY, "shard" => id.0.to_string())
                            .set(latency.as_secs_f64());
                    }
                }
                if !stop.wait(tokio::time::sleep(Duration::from_secs(10))).await {
                    return;
                }
            }
        }));
    }
    let shards = options.shards;
    let task = tokio::spawn(async move {
        match shards {
            Some(s) => client.start_shard_range(s.first..s.last, s.total).await,
            None => client.start().await,
        }
        .map_err(BotError::Gateway)
    });
    Ok(Running {
        coach: bot.coach.clone(),
        ready,
        metrics_addr,
        shard_manager,
        task,
        background,
        stop: stop_signal,
    })
}

/// Writes changed conversation contexts every half second: one write per busy conversation
/// instead of one per message. A crash loses at most that half second of context (who spoke
/// last, whether an apology came), never a promise: promises are written before they are noted.
async fn flush_contexts(coach: Arc<Coach>, mut stop: stop::Stop) {
    while stop.wait(tokio::time::sleep(Duration::from_millis(500))).await {
        coach.flush_contexts();
    }
}

/// Housekeeping: every ten minutes, drops nudged-message marks older than a day
/// ([`Coach::forget_nudged`]) and forgets conversations idle past `forget_idle_after` (their
/// context is in the store and comes back with their next message), so memory stays bounded; at
/// start and every six hours, purges nudge logs and closed promises past `retention_days`.
/// It runs on the bot's clock, so tests and the demo move it by hand.
async fn housekeeping(coach: Arc<Coach>, mut stop: stop::Stop) {
    const EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);
    const PURGE_EVERY: u32 = 36;
    let clock = coach.guilds.clock().clone();
    let mut round = 0u32;
    loop {
        let now = clock.now();
        // Only what the store holds may be forgotten: write pending contexts first, and while
        // the database is away keep everything in memory.
        coach.flush_contexts();
        coach.forget_nudged(now);
        if coach.writer.flush(Duration::from_secs(10)).await {
            let forgotten: usize = coach.guilds.all().map(|(_, e)| e.forget_idle(now)).sum();
            coach.order.prune(Duration::from_secs(600));
            if forgotten > 0 {
                tracing::debug!(forgotten, "idle conversations left to the store");
            }
        } else {
            tracing::warn!("database writes are queued; keeping idle conversations in memory for now");
        }
        if let (0, Some(days)) = (round % PURGE_EVERY, coach.config.storage.retention_days) {
            let before = now.as_millisecond() - i64::from(days) * 86_400_000;
            match coach.store.purge(before).await {
                Ok(p) if p.nudges + p.promises + p.conversations + p.checklists > 0 => {
                    tracing::info!(
                        nudges = p.nudges,
                        promises = p.promises,
                        conversations = p.conversations,
                        checklists = p.checklists,
                        days,
                        "retention purge"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention purge failed; trying again later"),
            }
        }
        round = round.wrapping_add(1);
        if !stop.wait(clock.sleep_until(now + EVERY)).await {
            return;
        }
    }
}
