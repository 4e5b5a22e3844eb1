//! The coach: what the bot does with Discord's events once they are plain values, free of
//! serenity. It holds the engines (one per guild), decides what is a watched conversation and
//! who is an agent or a lead, puts each conversation's events in order, brings stored state
//! back, records promises and nudges, mutes and de-duplicates. The serenity layer
//! (`crate::discord`) translates events into calls here and implements [`Platform`], the little
//! the coach asks of Discord.
//!
//! - [`config`]: backstop.toml (guilds, watch lists, roles, storage) and the token.
//! - [`guilds`]: one engine per configured guild.
//! - [`order`]: each conversation's events in Discord's order, whatever order they arrive in.
//! - [`schedule`]: the time-ordered index of pending reminder steps.

pub mod config;
pub mod guilds;
pub mod order;
pub mod schedule;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::{DashMap, DashSet};
use jiff::Timestamp;

use crate::clock::Clock;
use crate::engine::{self, Context as Recovery, Engine, Nudge, NudgeKind, PromiseChange, Role};
use crate::store::records::nudge_key;
use crate::store::writer::{Write, Writer};
use crate::store::{
    from_ms, NewNudge, NewPromise, PromiseState, Reschedule, ShardRange, Store, StoreError, StoredChecklist,
};
use config::{BotConfig, Delivery, GuildConfig};
use guilds::Guilds;
use order::Lanes;
use schedule::Reminders;

/// A message as the coach needs it: who wrote what, where and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub guild: u64,
    pub channel: u64,
    pub id: u64,
    pub author: u64,
    /// The author's roles when the event carried them; otherwise the last ones seen.
    pub roles: Option<Vec<u64>>,
    pub text: String,
    pub at: Timestamp,
}

/// An agent starting to type.
#[derive(Debug, Clone, PartialEq)]
pub struct Typing {
    pub guild: u64,
    pub channel: u64,
    pub user: u64,
    pub roles: Option<Vec<u64>>,
    /// Discord gives the second typing started.
    pub second: i64,
}

/// A conversation's event, waiting in its lane.
#[derive(Debug)]
pub enum Event {
    Message(Posted),
    /// An edit: the message as it is now, when the event carried it.
    Edit {
        guild: u64,
        channel: u64,
        id: u64,
        now: Option<Posted>,
    },
    Typing(Typing),
}

/// Where a delivered nudge went, in words for the log.
pub type Destination = String;

/// What the coach asks of Discord. The serenity layer implements it; tests can too.
#[async_trait::async_trait]
pub trait Platform: Send + Sync {
    /// Sends a nudge privately to its agent, the way `how` says (DM or coaching thread).
    async fn deliver(
        &self,
        guild: &GuildConfig,
        how: Delivery,
        nudge: &Nudge,
        jump: String,
    ) -> Result<Destination, String>;
    /// A channel's parent (a thread's channel, a channel's category), when Discord knows the
    /// channel at all.
    async fn parent_of(&self, channel: u64) -> Option<Option<u64>>;
    /// A message as it is now, for an edit event that came without it.
    async fn message(&self, guild: u64, channel: u64, id: u64) -> Option<Posted>;
}

/// Counts work in progress; shutdown waits for it to drain.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    drained: tokio::sync::Notify,
}

/// Held while an event is handled.
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Waits until nothing is in flight, or `limit` passes.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let drained = self.drained.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Names of the figures the coach records with the `metrics` facade.
pub mod figures {
    pub const MESSAGES: &str = "backstop_messages_seen_total";
    pub const NUDGES: &str = "backstop_nudges_total";
    /// Cues whose first agent reply already apologized for the failure by name (no nudge needed).
    pub const RECOVERED_UNPROMPTED: &str = "backstop_recovered_unprompted_total";
    pub const DELIVERY_FAILURES: &str = "backstop_delivery_failures_total";
    pub const ENGINE_TIME: &str = "backstop_engine_seconds";
    /// Events that reached the engine after a later event of their conversation (see [`super::order`]).
    pub const EVENTS_LATE: &str = "backstop_events_late_total";
    /// Messages the engine read after a later message of their conversation: what ordering prevents.
    pub const OUT_OF_ORDER: &str = "backstop_messages_out_of_order_total";
}

/// The coach: one per bot process.
pub struct Coach {
    pub config: Arc<BotConfig>,
    pub guilds: Arc<Guilds>,
    /// Promises, the nudge log, mutes and conversation context outlive the process here.
    pub store: Store,
    /// Writes to `store`, in order, retried through outages.
    pub writer: Writer,
    /// The durable scheduler's index of pending reminder steps.
    pub reminders: Arc<Reminders>,
    /// Where rules and prompts came from, for reloads.
    pub sources: Option<crate::config::Sources>,
    /// Events being handled right now, so shutdown can let their sends finish.
    pub in_flight: InFlight,
    /// Messages handled so far (for benchmarks, tests and `/metrics`).
    pub messages_seen: AtomicU64,
    /// Messages the engine read after a later one of their conversation (ordering failed).
    pub out_of_order: AtomicU64,
    /// Each conversation's messages, edits and typing, put back in Discord's order.
    pub order: Arc<Lanes<Event>>,
    platform: OnceLock<Arc<dyn Platform>>,
    connected: AtomicBool,
    /// Channels and threads seen: their parent.
    channels: DashMap<u64, Option<u64>>,
    /// Member roles by (guild, user), from GUILD_CREATE and messages.
    roles: DashMap<(u64, u64), Vec<u64>>,
    /// (message, kind) pairs nudged, with when (the bot's clock), so an edit does not nudge
    /// twice. Housekeeping drops pairs older than [`NUDGED_KEPT`] ([`Coach::forget_nudged`]), so
    /// the map does not grow with every nudge for as long as the bot runs (the soak bench found
    /// it growing).
    nudged: DashMap<(u64, NudgeKind), Timestamp>,
    /// Conversations with state in the store: only these are looked up when the engine does not
    /// hold them, so a brand-new conversation costs no database round trip.
    stored: DashSet<u64>,
    /// Conversations whose context changed since it was last written: (conversation → guild).
    /// Written in a batch every half second rather than once per message.
    dirty: DashMap<u64, u64>,
    /// Agents who muted coaching, until when: (guild, user).
    mutes: DashMap<(u64, u64), Timestamp>,
    /// Agents' own delivery choice over the guild's: (guild, user).
    delivery: DashMap<(u64, u64), Delivery>,
}

/// How long the coach remembers which messages it nudged about: an edit within this time does
/// not nudge again.
pub const NUDGED_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Nudge kinds an agent's mute silences; follow-up reminders are promises and still come.
fn silenced_by_mute(kind: NudgeKind) -> bool {
    matches!(
        kind,
        NudgeKind::PriorFailure
            | NudgeKind::ExplainBeforeApology
            | NudgeKind::FollowUpPromised
            | NudgeKind::FollowUpNoTimeframe
    )
}

/// Nudge kinds sent once per message, however often it is edited.
fn once_per_message(kind: NudgeKind) -> bool {
    silenced_by_mute(kind)
        || matches!(
            kind,
            NudgeKind::DetailsBeforeOwnership | NudgeKind::GenericApology | NudgeKind::ColdTransfer
        )
}

impl Coach {
    /// Builds the coach over an open store: loads pending reminders, mutes, delivery choices and
    /// which conversations have stored state, and starts the store's writer.
    pub async fn open(
        base: &Engine,
        config: Arc<BotConfig>,
        store: Store,
        clock: Clock,
        shards: Option<ShardRange>,
        sources: Option<crate::config::Sources>,
    ) -> Result<Coach, StoreError> {
        let now = clock.now();
        let reminders = Reminders::load(&store, shards).await?;
        tracing::info!(pending = reminders.len(), "reminders loaded");
        let mutes = store.mutes(now.as_millisecond()).await?;
        let delivery = store.deliveries().await?;
        let stored = store.stored_conversations(shards).await?;
        let guilds = Arc::new(Guilds::new(base, &config, clock));
        let writer = Writer::spawn(store.clone());
        Ok(Coach {
            config,
            guilds,
            store,
            writer,
            reminders: Arc::new(reminders),
            sources,
            in_flight: InFlight::default(),
            messages_seen: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            order: Default::default(),
            platform: OnceLock::new(),
            connected: AtomicBool::new(false),
            channels: DashMap::new(),
            roles: DashMap::new(),
            nudged: DashMap::new(),
            stored: stored.into_iter().collect(),
            dirty: DashMap::new(),
            mutes: mutes
                .into_iter()
                .map(|(g, a, until)| ((g, a), from_ms(until)))
                .collect(),
            delivery: delivery
                .into_iter()
                .filter_map(|(g, a, d)| Some(((g, a), Delivery::parse(&d)?)))
                .collect(),
        })
    }

    /// Connects the coach to Discord. Until then nudges are read but not delivered.
    pub fn attach(&self, platform: Arc<dyn Platform>) {
        let _ = self.platform.set(platform);
    }

    /// Notes that a gateway session is up (for `/healthz`).
    pub fn set_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn now(&self) -> Timestamp {
        self.guilds.clock().now()
    }

    /// Remembers a channel or thread and its parent.
    pub fn learn_channel(&self, channel: u64, parent: Option<u64>) {
        self.channels.insert(channel, parent);
    }

    /// Remembers a member's roles.
    pub fn learn_member(&self, guild: u64, user: u64, roles: Vec<u64>) {
        self.roles.insert((guild, user), roles);
    }

    fn is_watched(&self, guild: &GuildConfig, channel: u64) -> bool {
        let mut current = Some(channel);
        // Walk up: thread → channel → category; any watched step counts.
        for _ in 0..3 {
            let Some(id) = current else { return false };
            if guild.watch_channels.contains(&id) || guild.watch_categories.contains(&id) {
                return true;
            }
            current = self.channels.get(&id).and_then(|c| *c);
        }
        false
    }

    /// Whether `user` is an agent in `guild`: named in the config, or holding an agent role
    /// (`roles` from the event, else the last ones seen).
    pub fn is_agent(&self, guild: &GuildConfig, user: u64, roles: Option<&[u64]>) -> bool {
        if guild.agent_users.contains(&user) {
            return true;
        }
        let known = self.roles.get(&(guild.id, user));
        let roles = roles.or(known.as_deref().map(Vec::as_slice)).unwrap_or(&[]);
        roles.iter().any(|r| guild.agent_roles.contains(r))
    }

    /// Whether someone with `roles` (and Manage Server, or not) is a lead in `guild`.
    pub fn is_lead(&self, guild: u64, roles: &[u64], manages_server: bool) -> bool {
        manages_server
            || self
                .config
                .guild(guild)
                .is_some_and(|g| roles.iter().any(|r| g.lead_roles.contains(r)))
    }

    fn muted(&self, guild: u64, nudge: &Nudge) -> bool {
        let Some(agent) = nudge.agent.as_ref().and_then(snowflake) else {
            return false;
        };
        silenced_by_mute(nudge.kind) && self.mutes.get(&(guild, agent)).is_some_and(|until| *until > self.now())
    }

    /// Pauses an agent's coaching nudges until `until`; `None` turns them back on.
    pub fn mute(&self, guild: u64, agent: u64, until: Option<Timestamp>) {
        match until {
            Some(until) => {
                self.mutes.insert((guild, agent), until);
            }
            None => {
                self.mutes.remove(&(guild, agent));
            }
        }
        self.writer.send(Write::Mute {
            guild,
            agent,
            until: until.map(|t| t.as_millisecond()),
            now: self.now().as_millisecond(),
        });
    }

    /// An agent's own choice of where nudges reach them.
    pub fn choose_delivery(&self, guild: u64, agent: u64, how: Delivery) {
        self.delivery.insert((guild, agent), how);
        self.writer.send(Write::Delivery {
            guild,
            agent,
            delivery: Some(how.as_str()),
            now: self.now().as_millisecond(),
        });
    }

    /// Records an agent's 👍/👎 on a nudge.
    pub fn feedback(&self, message: u64, kind: &str, helpful: bool, by: u64) {
        self.writer.send(Write::Feedback {
            key: nudge_key(message, kind),
            helpful,
            by,
            at: self.now().as_millisecond(),
        });
    }

    /// Sends nudges for a conversation in `guild`, once per (message, kind), and logs them.
    pub async fn send(&self, guild: &GuildConfig, channel: u64, nudges: Vec<Nudge>) {
        for entry in self.deliver(guild, channel, nudges).await {
            self.writer.send(Write::Nudge(entry));
        }
    }

    /// Delivers nudges (skipping muted agents and repeats) and returns their log rows, for the
    /// caller to store: queued by [`Coach::send`], or with the promise step they belong to.
    pub async fn deliver(&self, guild: &GuildConfig, channel: u64, nudges: Vec<Nudge>) -> Vec<NewNudge> {
        let mut log = Vec::new();
        let Some(platform) = self.platform.get() else {
            return log;
        };
        for nudge in nudges {
            if nudge.agent.is_none() || self.muted(guild.id, &nudge) {
                continue;
            }
            if once_per_message(nudge.kind) && self.nudged.insert((nudge.source.0, nudge.kind), self.now()).is_some() {
                continue;
            }
            let jump = jump_link(guild.id, channel, nudge.source.0.max(1));
            let how = nudge
                .agent
                .as_ref()
                .and_then(snowflake)
                .and_then(|a| self.delivery.get(&(guild.id, a)).map(|d| *d))
                .unwrap_or(guild.delivery);
            let delivered = match platform.deliver(guild, how, &nudge, jump).await {
                Ok(to) => {
                    tracing::info!(kind = %nudge.kind, conversation = %nudge.conversation, %to, "nudge delivered");
                    metrics::counter!(figures::NUDGES, "kind" => nudge.kind.as_str()).increment(1);
                    true
                }
                Err(e) => {
                    tracing::error!(kind = %nudge.kind, conversation = %nudge.conversation, error = %e, "nudge not delivered");
                    metrics::counter!(figures::DELIVERY_FAILURES, "kind" => nudge.kind.as_str()).increment(1);
                    false
                }
            };
            log.push(log_entry(guild.id, channel, &nudge, delivered));
        }
        log
    }

    /// Drops the marks of messages nudged more than [`NUDGED_KEPT`] before `now`; an edit after
    /// that may nudge again.
    pub fn forget_nudged(&self, now: Timestamp) {
        if let Ok(kept_from) = now.checked_sub(NUDGED_KEPT) {
            self.nudged.retain(|_, at| *at >= kept_from);
        }
    }

    /// Messages marked as nudged (for tests and the soak bench).
    pub fn nudged_marks(&self) -> usize {
        self.nudged.len()
    }

    /// Queues the context of every conversation changed since the last call.
    pub fn flush_contexts(&self) {
        let now = self.now().as_millisecond();
        let changed: Vec<(u64, u64)> = self.dirty.iter().map(|e| (*e.key(), *e.value())).collect();
        for (conversation, guild) in changed {
            self.dirty.remove(&conversation);
            let Some(context) = self
                .guilds
                .engine(guild)
                .and_then(|e| e.context(&conversation.to_string()))
            else {
                continue;
            };
            self.stored.insert(conversation);
            self.writer.send(Write::Context {
                guild,
                conversation,
                context: Box::new(context),
                now,
            });
        }
    }

    /// Counts a message the bot saw and leaves unread (a bot's, a webhook's, another guild's), so
    /// `messages_seen` counts every message event, as it always has.
    pub fn pass_over(&self) {
        self.messages_seen.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(figures::MESSAGES).increment(1);
    }

    /// Takes a conversation's message in Discord's order (see [`order`]).
    pub async fn message(&self, posted: Posted) {
        let (channel, at, id) = (posted.channel, posted.at.as_millisecond(), posted.id);
        self.in_order(channel, at, id, Event::Message(posted)).await;
    }

    /// Takes an edit, at the time it was made.
    pub async fn edit(&self, guild: u64, channel: u64, id: u64, edited_at: Timestamp, now: Option<Posted>) {
        let edit = Event::Edit {
            guild,
            channel,
            id,
            now,
        };
        self.in_order(channel, edited_at.as_millisecond(), id, edit).await;
    }

    /// Takes an agent's typing. Discord gives only its second: it goes at the start of that
    /// second, but never before what already reached the engine.
    pub async fn typing(&self, typing: Typing) {
        let channel = typing.channel;
        let second = typing.second.saturating_mul(1000);
        let (at, snowflake) = match self.order.last_released(channel) {
            Some((at, snowflake)) if at >= second => (at, snowflake),
            _ => (second, 0),
        };
        self.in_order(channel, at, snowflake, Event::Typing(typing)).await;
    }

    /// Puts an event in its conversation's lane; the task that finds the lane idle lets the
    /// lane's events out to the engine in order.
    async fn in_order(&self, conversation: u64, at_ms: i64, snowflake: u64, event: Event) {
        let _busy = self.in_flight.enter();
        let Some(mut drain) = self.order.push(conversation, at_ms, snowflake, event) else {
            return;
        };
        while let Some(released) = drain.next().await {
            if released.late {
                metrics::counter!(figures::EVENTS_LATE).increment(1);
                tracing::debug!(
                    conversation,
                    "an event reached the engine after a later one of its conversation"
                );
            }
            match released.event {
                Event::Message(posted) => {
                    self.read(&posted, false).await;
                    self.messages_seen.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(figures::MESSAGES).increment(1);
                }
                Event::Edit {
                    guild,
                    channel,
                    id,
                    now,
                } => {
                    let now = match (now, self.platform.get()) {
                        (Some(posted), _) => Some(posted),
                        (None, Some(platform)) => platform.message(guild, channel, id).await,
                        (None, None) => None,
                    };
                    // Re-read the edited text; (message, kind) bookkeeping in `send` stops double nudges.
                    if let Some(posted) = now {
                        self.read(&posted, true).await;
                    }
                }
                Event::Typing(typing) => self.read_typing(&typing).await,
            }
        }
    }

    async fn learn_parent(&self, channel: u64) {
        if self.channels.contains_key(&channel) {
            return;
        }
        if let Some(parent) = match self.platform.get() {
            Some(p) => p.parent_of(channel).await,
            None => None,
        } {
            self.channels.insert(channel, parent);
        }
    }

    async fn read(&self, msg: &Posted, edited: bool) {
        let Some(guild) = self.config.guild(msg.guild) else {
            return;
        };
        self.learn_parent(msg.channel).await;
        if !self.is_watched(guild, msg.channel) {
            return;
        }
        if let Some(r) = &msg.roles {
            self.roles.insert((guild.id, msg.author), r.clone());
        }
        let role = if self.is_agent(guild, msg.author, msg.roles.as_deref()) {
            Role::Agent
        } else {
            Role::Customer
        };
        let Some(engine) = self.guilds.engine(guild.id) else {
            return;
        };
        let channel = msg.channel;
        self.recall(engine, channel).await;
        let conversation = channel.to_string();
        let author = msg.author.to_string();
        let message = engine::Message {
            conversation: &conversation,
            author: &author,
            role,
            text: &msg.text,
            at: msg.at,
            source: engine::MessageRef(msg.id),
        };
        // A first reply claims an earlier unanswered cue in the same step (see observe_claiming).
        let started = std::time::Instant::now();
        let reading = engine.read(&message, !edited);
        metrics::histogram!(figures::ENGINE_TIME).record(started.elapsed().as_secs_f64());
        if reading.out_of_order {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(figures::OUT_OF_ORDER).increment(1);
            tracing::warn!(
                conversation,
                message = msg.id,
                "read a message after a later one of its conversation"
            );
        }
        if !reading.changes.is_empty() {
            self.record(guild.id, engine, channel, reading.changes).await;
        }
        for cue in &reading.unprompted {
            tracing::info!(conversation = %cue.conversation, category = ?cue.category, "recovered unprompted: no nudge needed");
            metrics::counter!(figures::RECOVERED_UNPROMPTED).increment(1);
            // Logged, never delivered: digests and /coach me count it as a win.
            let mut row = log_entry(guild.id, channel, cue, false);
            row.kind = crate::digest::RECOVERED_UNPROMPTED.to_string();
            row.key = nudge_key(cue.source.0, &row.kind);
            self.writer.send(Write::Nudge(row));
        }
        if let Some(checklist) = &reading.checklist {
            let row = StoredChecklist::of(guild.id, channel, checklist, msg.at.as_millisecond());
            self.writer.send(Write::Checklist(Box::new(row)));
        }
        if reading.recovered {
            self.writer.send(Write::Recovered {
                conversation: channel,
                at: msg.at.as_millisecond(),
            });
        }
        self.dirty.insert(channel, guild.id);
        self.send(guild, channel, reading.nudges).await;
    }

    async fn read_typing(&self, typing: &Typing) {
        let Some(guild) = self.config.guild(typing.guild) else {
            return;
        };
        if !self.is_agent(guild, typing.user, typing.roles.as_deref()) || !self.is_watched(guild, typing.channel) {
            return;
        }
        let Some(engine) = self.guilds.engine(guild.id) else {
            return;
        };
        let nudges = engine.typing(&typing.channel.to_string(), &typing.user.to_string(), self.now());
        if !nudges.is_empty() {
            self.send(guild, typing.channel, nudges).await;
        }
    }

    /// Brings a conversation's stored context and open promise back into the engine, when the
    /// engine does not hold it (after a restart, or after it was forgotten while idle). A slow or
    /// absent database does not hold up coaching: the conversation then starts afresh.
    async fn recall(&self, engine: &Engine, conversation: u64) {
        let key = conversation.to_string();
        if engine.knows(&key) || !self.stored.contains(&conversation) {
            return;
        }
        let load = async {
            let context = self.store.context(conversation).await?;
            let promise = self.store.open_promise_in(conversation).await?;
            Ok::<_, StoreError>((context, promise))
        };
        match tokio::time::timeout(Duration::from_secs(1), load).await {
            Ok(Ok((None, None))) => {}
            Ok(Ok((context, promise))) => {
                let context = context
                    .or_else(|| promise.as_ref().map(|p| Recovery::new(from_ms(p.made_at))))
                    .unwrap_or_else(|| Recovery::new(self.now()));
                engine.restore(&key, context, promise.map(|p| p.to_engine()));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, conversation, "cannot read a conversation's stored context"),
            Err(_) => tracing::warn!(
                conversation,
                "the database is slow; reading the conversation without its stored context"
            ),
        }
    }

    /// Stores what happened to the conversation's promise. A new or moved promise is committed
    /// before this returns, so its acknowledgement never goes out for a promise not yet stored.
    async fn record(&self, guild: u64, engine: &Engine, conversation: u64, changes: Vec<PromiseChange>) {
        let now = self.now().as_millisecond();
        let close = |source: engine::MessageRef, state| {
            self.writer.send(Write::Close {
                guild,
                message: source.0,
                state,
                now,
            })
        };
        for change in changes {
            let (message, due_words) = match change {
                PromiseChange::Made(p) => {
                    let Some(agent) = snowflake(&p.agent) else {
                        // The coach names authors by their snowflake, so this is a bug, not data.
                        tracing::error!(agent = %p.agent, conversation, "a promise's agent is not a Discord id; not stored");
                        continue;
                    };
                    let next = engine.next_step(&p, from_ms(now)).map(|(t, s)| (t.as_millisecond(), s));
                    let row = NewPromise {
                        guild,
                        conversation,
                        agent,
                        customer: p.customer.as_ref().and_then(snowflake),
                        message: p.source.0,
                        rule: p.rule.to_string(),
                        evidence: p.evidence.clone(),
                        excerpt: p.quote.clone(),
                        made_at: p.made_at.as_millisecond(),
                        due_at: p.due().at.as_millisecond(),
                        due_words: stated(&p.due().source),
                        next,
                    };
                    if let (Some(id), Some((at, _))) = (self.writer.promise(row).await, next) {
                        self.reminders.add(at, id);
                    }
                    continue;
                }
                PromiseChange::Kept { source, .. } => {
                    close(source, PromiseState::Done);
                    continue;
                }
                PromiseChange::Superseded { source, .. } => {
                    close(source, PromiseState::Superseded);
                    continue;
                }
                PromiseChange::Restated { source, due } => (source, stated(&due.source)),
                PromiseChange::Chased { source, .. } => (source, None),
            };
            // Restated or chased: the engine holds the promise with its new due time and state.
            let Some(promise) = engine
                .promise(&conversation.to_string())
                .filter(|p| p.source == message)
            else {
                continue;
            };
            let change = Reschedule {
                guild,
                message: message.0,
                due_at: promise.due().at.as_millisecond(),
                due_words,
                state: promise.state(),
                next: engine
                    .next_step(&promise, from_ms(now))
                    .map(|(t, s)| (t.as_millisecond(), s)),
            };
            self.reschedule(change, now).await;
        }
    }

    /// Moves a stored promise and schedules its next step once the move is committed.
    async fn reschedule(&self, change: Reschedule, now: i64) {
        let next = change.next;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer.send(Write::Reschedule {
            change,
            now,
            stored: Some(tx),
        });
        if let (Ok(Some(id)), Some((at, _))) = (rx.await, next) {
            self.reminders.add(at, id);
        }
    }

    /// Closes or snoozes the open promise of a conversation from a button or command: the
    /// store's record first (it survives restarts), then the engine's copy. Returns whether a
    /// promise was open.
    pub async fn settle_promise(&self, conversation: u64, snooze_until: Option<Timestamp>) -> bool {
        let key = conversation.to_string();
        let now = self.now();
        let stored = match self.store.open_promise_in(conversation).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, conversation, "cannot read the promise; using the engine's copy");
                None
            }
        };
        let in_memory = self.guilds.all().find(|(_, e)| e.promise(&key).is_some());
        let (guild, message) = match (&stored, in_memory) {
            (Some(p), _) => (p.guild, p.message),
            (None, Some((g, e))) => (g, e.promise(&key).map_or(0, |p| p.source.0)),
            (None, None) => return false,
        };
        let Some(engine) = self.guilds.engine(guild) else {
            return false;
        };
        match snooze_until {
            None => {
                engine.promise_kept(&key);
                // Closed in the store before answering, so a reminder due meanwhile finds it done;
                // if the database is away, the queue closes it when it is back.
                let now = now.as_millisecond();
                if let Err(e) = self.store.close_promise(guild, message, PromiseState::Done, now).await {
                    tracing::warn!(error = %e, "cannot close the promise now; queued");
                    self.writer.send(Write::Close {
                        guild,
                        message,
                        state: PromiseState::Done,
                        now,
                    });
                }
            }
            Some(until) => {
                engine.snooze(&key, until);
                let mut promise = match (&stored, engine.promise(&key)) {
                    (_, Some(p)) => p,
                    (Some(p), None) => p.to_engine(),
                    (None, None) => return false,
                };
                // A copy the engine held is snoozed already (snoozing it again changes nothing);
                // one read from the store is moved here the same way.
                if promise.snooze(until).is_err() {
                    return false;
                }
                let change = Reschedule {
                    guild,
                    message,
                    due_at: until.as_millisecond(),
                    due_words: None,
                    state: promise.state(),
                    next: engine.next_step(&promise, now).map(|(t, s)| (t.as_millisecond(), s)),
                };
                self.reschedule(change, now.as_millisecond()).await;
            }
        }
        true
    }

    /// Loads and checks the rule book and prompts again, and puts them in place in every guild.
    /// Returns a summary, or why the old ones are still running.
    pub fn reload(&self) -> Result<String, String> {
        let Some(sources) = &self.sources else {
            return Err("this bot was started without rule folders to reload from".into());
        };
        let engine = sources.engine().map_err(|e| e.to_string())?;
        let problems = engine.rules().self_test();
        if !problems.is_empty() {
            return Err(engine::Problems(problems).to_string());
        }
        let (rules, prompts) = (engine.rules(), engine.prompts());
        for (_, e) in self.guilds.all() {
            e.adopt_book(&engine);
        }
        let summary = format!(
            "{} rules and {} phrase situations are live.",
            rules.rules().len(),
            prompts.situations().len()
        );
        tracing::info!(%summary, "rules reloaded");
        Ok(summary)
    }
}

/// A person's Discord id. The engine names people with text (transcripts use names); the coach
/// gives it snowflakes written out, so this reads them back.
fn snowflake(user: &engine::UserId) -> Option<u64> {
    user.as_str().parse().ok()
}

/// A jump link to a message.
pub fn jump_link(guild: u64, channel: u64, message: u64) -> String {
    format!("https://discord.com/channels/{guild}/{channel}/{message}")
}

/// The nudge-log row for a nudge.
pub fn log_entry(guild: u64, channel: u64, nudge: &Nudge, delivered: bool) -> NewNudge {
    let id = |u: &Option<engine::UserId>| u.as_ref().and_then(snowflake);
    NewNudge {
        key: nudge_key(nudge.source.0, nudge.kind.as_str()),
        guild,
        conversation: channel,
        message: nudge.source.0,
        agent: id(&nudge.agent),
        customer: id(&nudge.customer),
        kind: nudge.kind.as_str().to_string(),
        category: nudge.category.map(|c| c.as_str().to_string()),
        rule: nudge.rule.to_string(),
        evidence: nudge.evidence.clone(),
        excerpt: nudge.quote.clone(),
        at: nudge.at.as_millisecond(),
        delivered,
    }
}

/// The words of a stated due time; `None` when the default applied.
fn stated(source: &engine::DueSource) -> Option<String> {
    match source {
        engine::DueSource::Stated(words) => Some(words.clone()),
        engine::DueSource::Default => None,
    }
}

#[cfg(test)]
mod tests;
