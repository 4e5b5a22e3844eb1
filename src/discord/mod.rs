//! The Discord adapter: serenity's gateway and REST client drive the same engine as `replay`.
//!
//! Only this module imports serenity. Layout: [`config`] (backstop.toml and the token), `handler`
//! (events in, nudges out), `delivery` (DM or coaching thread, with retries), `commands` (slash
//! commands), `convert` (serenity types to ours), [`clock`] (real or hand-moved time), the
//! scheduler below (reminders, overdue notices, escalations), and [`stand_in`], a local Discord for
//! tests and the demo.

pub mod clock;
mod commands;
pub mod config;
mod convert;
mod delivery;
mod handler;
#[cfg(feature = "stand-in")]
pub mod stand_in;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serenity::all::{ChannelId, ClientBuilder, CreateEmbed, CreateMessage, GatewayIntents, HttpBuilder};
use tokio::sync::Notify;

use crate::engine::{format_due, Engine, NudgeKind, Prompts};
use clock::Clock;
use config::BotConfig;
use delivery::Deliverer;
use handler::Handler;

/// One engine per configured guild (its own settings and state), sharing rules and prompts.
pub struct Guilds {
    engines: HashMap<u64, Arc<Engine>>,
    wake: HashMap<u64, Arc<Notify>>,
    clock: Clock,
}

impl Guilds {
    pub fn new(base: &Engine, config: &BotConfig, clock: Clock) -> Guilds {
        let mut engines = HashMap::new();
        let mut wake = HashMap::new();
        for g in &config.guilds {
            engines.insert(g.id, Arc::new(base.with_settings(g.settings.clone())));
            wake.insert(g.id, Arc::new(Notify::new()));
        }
        Guilds { engines, wake, clock }
    }

    pub fn engine(&self, guild: u64) -> Option<&Arc<Engine>> {
        self.engines.get(&guild)
    }

    pub fn all(&self) -> impl Iterator<Item = (u64, &Arc<Engine>)> {
        self.engines.iter().map(|(id, e)| (*id, e))
    }

    /// The prompts every guild's engine shares.
    pub fn prompts(&self) -> &Prompts {
        self.engines
            .values()
            .next()
            .map(|e| e.prompts())
            .expect("at least one guild")
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Tells a guild's scheduler that its next deadline may have moved.
    pub fn wake(&self, guild: u64) {
        if let Some(n) = self.wake.get(&guild) {
            n.notify_one();
        }
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
}

/// A running bot, for tests and the demo: stop it with [`Running::shutdown`].
pub struct Running {
    pub handler: Arc<Handler>,
    shard_manager: Arc<serenity::all::ShardManager>,
    task: tokio::task::JoinHandle<Result<(), BotError>>,
    schedulers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops taking events, lets in-flight sends finish, and returns.
    pub async fn shutdown(self) -> Result<(), BotError> {
        self.shard_manager.shutdown_all().await;
        self.handler.in_flight.drain(std::time::Duration::from_secs(15)).await;
        for s in &self.schedulers {
            s.abort();
        }
        match self.task.await {
            Ok(r) => r,
            Err(_) => Ok(()),
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

/// Starts the bot in the background: the gateway client and one scheduler per guild.
pub async fn start(
    base: &Engine,
    config: Arc<BotConfig>,
    token: &config::Token,
    endpoint: &Endpoint,
    clock: Clock,
) -> Result<Running, BotError> {
    let mut http = HttpBuilder::new(token.expose());
    if let Some(api) = &endpoint.api {
        // The endpoint owns rate limits; serenity's limiter would also bypass the proxy.
        http = http.proxy(api.trim_end_matches('/')).ratelimiter_disabled(true);
    }
    let http = http.build();
    let guilds = Arc::new(Guilds::new(base, &config, clock));
    let deliverer = Arc::new(handler::OnceDeliverer::new());
    let handler = Arc::new(Handler {
        config: config.clone(),
        guilds: guilds.clone(),
        deliverer: deliverer.clone(),
        channels: Default::default(),
        roles: Default::default(),
        nudged: Default::default(),
        ready: Notify::new(),
        feedback: Default::default(),
        mutes: Default::default(),
        delivered: Default::default(),
        in_flight: Default::default(),
        messages_seen: Default::default(),
    });
    let mut client = ClientBuilder::new_with_http(http, INTENTS)
        .event_handler_arc(handler.clone())
        .await
        .map_err(BotError::Client)?;
    let _ = deliverer.set(Deliverer::new(client.http.clone()));
    let shard_manager = client.shard_manager.clone();
    let mut schedulers = Vec::new();
    for g in &config.guilds {
        schedulers.push(tokio::spawn(scheduler(handler.clone(), g.id)));
    }
    let task = tokio::spawn(async move { client.start().await.map_err(BotError::Gateway) });
    Ok(Running {
        handler,
        shard_manager,
        task,
        schedulers,
    })
}

/// One step of a guild's scheduler: fire what is due at `now`, deliver it, and post escalations
/// for promises overdue longer than the grace. Returns when to look again.
async fn fire(
    handler: &Handler,
    guild: u64,
    escalations: &mut BTreeMap<jiff::Timestamp, Vec<(String, u64)>>,
) -> Option<jiff::Timestamp> {
    let config = handler.config.guild(guild)?;
    let engine = handler.guilds.engine(guild)?.clone();
    let now = handler.guilds.clock().now();
    let due = engine.fire_due(now);
    for n in &due {
        if n.kind == NudgeKind::FollowUpOverdue {
            let at = n
                .due
                .as_ref()
                .map_or(n.at, |d| d.at)
                .checked_add(config.escalate_after)
                .unwrap_or(n.at);
            escalations
                .entry(at)
                .or_default()
                .push((n.conversation.to_string(), n.source.0));
        }
    }
    for n in due {
        let channel = n.conversation.as_str().parse().unwrap_or(0);
        handler.send(config, channel, vec![n]).await;
    }
    let ready: Vec<jiff::Timestamp> = escalations.range(..=now).map(|(t, _)| *t).collect();
    for t in ready {
        for (conversation, source) in escalations.remove(&t).unwrap_or_default() {
            let still_open = engine
                .open_promises()
                .into_iter()
                .find(|p| p.conversation.as_str() == conversation && p.source.0 == source);
            let (Some(p), Some(coaching), Some(deliverer)) =
                (still_open, config.coaching_channel, handler.deliverer.get())
            else {
                continue;
            };
            let link = delivery::jump_link(
                guild,
                conversation.parse().unwrap_or(0),
                serenity::all::MessageId::new(source.max(1)),
            );
            let embed = CreateEmbed::new()
                .title("A promised follow-up has lapsed")
                .description(format!(
                    "<@{}> promised \"{}\", due {}. It is still open. [Jump to the promise]({link})",
                    p.agent,
                    p.evidence,
                    format_due(p.due.at, &config.settings.schedule)
                ))
                .colour(0xC0392B);
            if let Err(e) = deliverer
                .post(ChannelId::new(coaching), CreateMessage::new().embed(embed))
                .await
            {
                tracing::error!(error = %e, "could not post an escalation");
            }
        }
    }
    [engine.next_due(), escalations.keys().next().copied()]
        .into_iter()
        .flatten()
        .min()
}

/// A guild's scheduler: sleeps until the next deadline, or until woken because one moved.
async fn scheduler(handler: Arc<Handler>, guild: u64) {
    let Some(wake) = handler.guilds.wake.get(&guild).cloned() else {
        return;
    };
    let mut escalations = BTreeMap::new();
    loop {
        let next = fire(&handler, guild, &mut escalations).await;
        let clock = handler.guilds.clock().clone();
        match next {
            Some(t) => tokio::select! {
                _ = clock.sleep_until(t) => {}
                _ = wake.notified() => {}
            },
            None => wake.notified().await,
        }
    }
}
