//! The Discord adapter: serenity's gateway and REST client drive the same engine as `replay`.
//!
//! Only this module imports serenity. Layout: [`config`] (backstop.toml and the token), `handler`
//! (events in, nudges out), `delivery` (DM or coaching thread, with retries), `commands` (slash
//! commands), `convert` (serenity types to ours), `reminders` (the durable scheduler: heads-ups, overdue notices, escalations). The local Discord
//! that tests and the demo run against is its own crate, `backstop-stand-in`. State that must outlive the process goes
//! to [`crate::store`].

pub(crate) mod commands;
pub mod config;
pub(crate) mod convert;
pub(crate) mod delivery;
mod digests;
mod handler;
pub mod metrics;
mod reload;
pub mod reminders;
mod stop;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serenity::all::{ClientBuilder, GatewayIntents, HttpBuilder};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::engine::{Engine, Prompts};
use crate::store::writer::Writer;
use crate::store::{ShardRange, Store, StoreError};
use config::BotConfig;
use delivery::Deliverer;
use handler::Handler;
use reminders::Reminders;

/// One engine per configured guild (its own settings and state), sharing rules and prompts.
pub struct Guilds {
    engines: HashMap<u64, Arc<Engine>>,
    clock: Clock,
}

impl Guilds {
    pub fn new(base: &Engine, config: &BotConfig, clock: Clock) -> Guilds {
        let engines = config
            .guilds
            .iter()
            // Reminder timing lives in the durable scheduler, not in the engines' memory.
            .map(|g| {
                (
                    g.id,
                    Arc::new(
                        base.with_settings(g.settings.clone())
                            .without_schedule()
                            .naming(|user| format!("<@{user}>")),
                    ),
                )
            })
            .collect();
        Guilds { engines, clock }
    }

    pub fn engine(&self, guild: u64) -> Option<&Arc<Engine>> {
        self.engines.get(&guild)
    }

    pub fn all(&self) -> impl Iterator<Item = (u64, &Arc<Engine>)> {
        self.engines.iter().map(|(id, e)| (*id, e))
    }

    /// The prompts every guild's engine shares.
    pub fn prompts(&self) -> Arc<Prompts> {
        self.engines
            .values()
            .next()
            .map(|e| e.prompts())
            .expect("at least one guild")
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

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
    pub handler: Arc<Handler>,
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
        self.handler.in_flight.drain(Duration::from_secs(15)).await;
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
        self.handler.flush_contexts();
        if !self.handler.writer.flush(Duration::from_secs(10)).await {
            tracing::error!("shutting down with database writes still queued: the database is not answering");
        }
        self.handler.store.close().await;
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
        self.handler.ready.notified().await;
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
    let now = options.clock.now();
    let reminders = Reminders::load(&store, options.shards).await.map_err(BotError::Store)?;
    tracing::info!(pending = reminders.len(), "reminders loaded");
    let mutes = store.mutes(now.as_millisecond()).await.map_err(BotError::Store)?;
    let delivery = store.deliveries().await.map_err(BotError::Store)?;
    let stored = store
        .stored_conversations(options.shards)
        .await
        .map_err(BotError::Store)?;
    let guilds = Arc::new(Guilds::new(base, &config, options.clock.clone()));
    let deliverer = Arc::new(handler::OnceDeliverer::new());
    let writer = Writer::spawn(store.clone());
    let handler = Arc::new(Handler {
        config: config.clone(),
        guilds: guilds.clone(),
        deliverer: deliverer.clone(),
        store,
        writer,
        reminders: Arc::new(reminders),
        stored: stored.into_iter().collect(),
        dirty: Default::default(),
        channels: Default::default(),
        roles: Default::default(),
        nudged: Default::default(),
        ready: Notify::new(),
        connected: Default::default(),
        sources: options.sources.clone(),
        mutes: mutes
            .into_iter()
            .map(|(g, a, until)| ((g, a), crate::store::from_ms(until)))
            .collect(),
        delivery: delivery
            .into_iter()
            .filter_map(|(g, a, d)| Some(((g, a), config::Delivery::parse(&d)?)))
            .collect(),
        in_flight: Default::default(),
        messages_seen: Default::default(),
    });
    let mut client = ClientBuilder::new_with_http(http, INTENTS)
        .event_handler_arc(handler.clone())
        .await
        .map_err(BotError::Client)?;
    let _ = deliverer.set(Deliverer::new(client.http.clone()));
    let shard_manager = client.shard_manager.clone();
    let (stop_signal, stop) = stop::channel();
    let mut background = vec![
        tokio::spawn(reminders::run(handler.clone(), stop.clone())),
        tokio::spawn(housekeeping(handler.clone(), stop.clone())),
        tokio::spawn(flush_contexts(handler.clone(), stop.clone())),
        tokio::spawn(reload::watch(handler.clone(), stop.clone())),
    ];
    for g in &config.guilds {
        // Digests come from the process that owns the guild's shard, so they are posted once.
        if options.shards.is_none_or(|s| s.owns(g.id)) {
            for cadence in &g.digests {
                background.push(tokio::spawn(digests::run(
                    handler.clone(),
                    g.id,
                    *cadence,
                    stop.clone(),
                )));
            }
        }
    }
    let mut metrics_addr = None;
    if let Some(addr) = options.metrics {
        let (bound, task) = metrics::serve(addr, handler.clone(), stop.clone())
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
        handler,
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
async fn flush_contexts(handler: Arc<Handler>, mut stop: stop::Stop) {
    while stop.wait(tokio::time::sleep(Duration::from_millis(500))).await {
        handler.flush_contexts();
    }
}

/// How long the bot remembers which messages it nudged about: an edit within this time does not
/// nudge again.
pub const NUDGED_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Housekeeping: every ten minutes, drops nudged-message marks older than [`NUDGED_KEPT`] and
/// forgets conversations idle past `forget_idle_after` (their
/// context is in the store and comes back with their next message), so memory stays bounded; at
/// start and every six hours, purges nudge logs and closed promises past `retention_days`.
/// It runs on the bot's clock, so tests and the demo move it by hand.
async fn housekeeping(handler: Arc<Handler>, mut stop: stop::Stop) {
    const EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);
    const PURGE_EVERY: u32 = 36;
    let clock = handler.guilds.clock().clone();
    let mut round = 0u32;
    loop {
        let now = clock.now();
        // Only what the store holds may be forgotten: write pending contexts first, and while
        // the database is away keep everything in memory.
        handler.flush_contexts();
        if let Ok(kept_from) = now.checked_sub(NUDGED_KEPT) {
            handler.nudged.retain(|_, at| *at >= kept_from);
        }
        if handler.writer.flush(Duration::from_secs(10)).await {
            let forgotten: usize = handler.guilds.all().map(|(_, e)| e.forget_idle(now)).sum();
            if forgotten > 0 {
                tracing::debug!(forgotten, "idle conversations left to the store");
            }
        } else {
            tracing::warn!("database writes are queued; keeping idle conversations in memory for now");
        }
        if let (0, Some(days)) = (round % PURGE_EVERY, handler.config.storage.retention_days) {
            let before = now.as_millisecond() - i64::from(days) * 86_400_000;
            match handler.store.purge(before).await {
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
