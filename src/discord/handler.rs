//! Discord events in, engine calls out. Decides what is a watched conversation, who is an agent,
//! and hands every nudge to delivery. Conversions from serenity types live in [`super::convert`].

use std::sync::Arc;

use dashmap::{DashMap, DashSet};
use serenity::all::{
    ChannelId, ComponentInteraction, Context, CreateAutocompleteResponse, CreateInteractionResponse,
    CreateInteractionResponseMessage, EventHandler, GuildChannel, GuildId, Interaction, Message, MessageUpdateEvent,
    Ready, TypingStartEvent,
};

use super::commands;
use super::config::{BotConfig, GuildConfig};
use super::convert::{self, ChannelInfo};
use super::delivery::{jump_link, Deliverer};
use super::reminders::Reminders;
use super::Guilds;
use crate::engine::{self, Context as Recovery, Engine, Nudge, NudgeKind, PromiseChange, Role};
use crate::store::records::nudge_key;
use crate::store::writer::{Write, Writer};
use crate::store::{from_ms, NewNudge, NewPromise, PromiseState, Reschedule, Store, StoreError, StoredChecklist};

/// The event handler: one per bot.
pub struct Handler {
    pub config: Arc<BotConfig>,
    pub guilds: Arc<Guilds>,
    pub deliverer: Arc<OnceDeliverer>,
    /// Channels and threads seen, with their kind and parent.
    pub channels: DashMap<u64, ChannelInfo>,
    /// Member roles by (guild, user), from GUILD_CREATE and messages.
    pub roles: DashMap<(u64, u64), Vec<u64>>,
    /// (message, kind) pairs nudged, with when (the bot's clock), so an edit does not nudge
    /// twice. Housekeeping drops pairs older than [`super::NUDGED_KEPT`], so the set does not grow
    /// with every nudge for as long as the bot runs (the soak bench found it growing).
    pub nudged: DashMap<(u64, NudgeKind), jiff::Timestamp>,
    /// Signals the first READY to whoever waits for it.
    pub ready: tokio::sync::Notify,
    /// Where rules and prompts came from, for reloads.
    pub sources: Option<crate::config::Sources>,
    /// Set once a gateway session is up, for `/healthz`.
    pub connected: std::sync::atomic::AtomicBool,
    /// Promises, the nudge log, mutes and conversation context outlive the process here.
    pub store: Store,
    /// Writes to `store`, in order, retried through outages.
    pub writer: Writer,
    /// Conversations with state in the store: only these are looked up when the engine does not
    /// hold them, so a brand-new conversation costs no database round trip.
    pub stored: DashSet<u64>,
    /// Conversations whose context changed since it was last written: (conversation → guild).
    /// Written in a batch every half second rather than once per message.
    pub dirty: DashMap<u64, u64>,
    /// The durable scheduler's index of pending reminder steps.
    pub reminders: Arc<Reminders>,
    /// Agents who muted coaching, until when: (guild, user). Loaded from the store at start.
    pub mutes: DashMap<(u64, u64), jiff::Timestamp>,
    /// Agents' own delivery choice over the guild's: (guild, user). Loaded from the store at start.
    pub delivery: DashMap<(u64, u64), super::config::Delivery>,
    /// Events being handled right now, so shutdown can let their sends finish.
    pub in_flight: InFlight,
    /// Messages handled so far (for benchmarks and, later, metrics).
    pub messages_seen: std::sync::atomic::AtomicU64,
}

/// Counts work in progress; shutdown waits for it to drain.
#[derive(Default)]
pub struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

/// Held while an event is handled.
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Waits until nothing is in flight, or `limit` passes.
    pub async fn drain(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let drained = self.drained.notified();
            if self.count.load(std::sync::atomic::Ordering::SeqCst) == 0 {
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
        if self.0.count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// The deliverer exists once serenity's HTTP client does.
pub type OnceDeliverer = std::sync::OnceLock<Deliverer>;

impl Handler {
    pub fn is_ready(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn deliverer(&self) -> Option<&Deliverer> {
        self.deliverer.get()
    }

    fn is_watched(&self, guild: &GuildConfig, channel: u64) -> bool {
        let mut current = Some(channel);
        // Walk up: thread → channel → category; any watched step counts.
        for _ in 0..3 {
            let Some(id) = current else { return false };
            if guild.watch_channels.contains(&id) || guild.watch_categories.contains(&id) {
                return true;
            }
            current = self.channels.get(&id).and_then(|c| c.parent);
        }
        false
    }

    pub(crate) fn is_agent(&self, guild: &GuildConfig, user: u64, roles: Option<&[u64]>) -> bool {
        if guild.agent_users.contains(&user) {
            return true;
        }
        let known = self.roles.get(&(guild.id, user));
        let roles = roles.or(known.as_deref().map(Vec::as_slice)).unwrap_or(&[]);
        roles.iter().any(|r| guild.agent_roles.contains(r))
    }

    async fn learn_channel(&self, ctx: &Context, id: ChannelId) {
        if self.channels.contains_key(&id.get()) {
            return;
        }
        if let Ok(serenity::all::Channel::Guild(c)) = ctx.http.get_channel(id).await {
            self.channels.insert(c.id.get(), ChannelInfo::of(&c));
        }
    }

    /// Whether the caller of a command is a lead: a lead role, or Manage Server.
    pub fn is_lead(&self, guild: u64, cmd: &serenity::all::CommandInteraction) -> bool {
        let Some(member) = &cmd.member else { return false };
        let manages = member.permissions.is_some_and(|p| p.manage_guild());
        let config = self.config.guild(guild);
        manages || config.is_some_and(|g| member.roles.iter().any(|r| g.lead_roles.contains(&r.get())))
    }

    fn muted(&self, guild: u64, nudge: &Nudge) -> bool {
        let coaching = matches!(
            nudge.kind,
            NudgeKind::PriorFailure
                | NudgeKind::ExplainBeforeApology
                | NudgeKind::FollowUpPromised
                | NudgeKind::FollowUpNoTimeframe
        );
        let Some(agent) = nudge.agent.as_ref().and_then(|a| a.as_str().parse::<u64>().ok()) else {
            return false;
        };
        coaching
            && self
                .mutes
                .get(&(guild, agent))
                .is_some_and(|until| *until > self.guilds.clock().now())
    }

    /// Sends nudges for a conversation in `guild`, once per (message, kind).
    pub async fn send(&self, guild: &GuildConfig, channel: u64, nudges: Vec<Nudge>) {
        for entry in self.deliver(guild, channel, nudges).await {
            self.writer.send(Write::Nudge(entry));
        }
    }

    /// Delivers nudges (skipping muted agents and repeats) and returns their log rows, for the
    /// caller to store: queued by [`Handler::send`], or with the promise step they belong to.
    pub async fn deliver(&self, guild: &GuildConfig, channel: u64, nudges: Vec<Nudge>) -> Vec<NewNudge> {
        let mut log = Vec::new();
        let Some(deliverer) = self.deliverer() else { return log };
        for nudge in nudges {
            if nudge.agent.is_none() || self.muted(guild.id, &nudge) {
                continue;
            }
            if matches!(
                nudge.kind,
                NudgeKind::PriorFailure
                    | NudgeKind::ExplainBeforeApology
                    | NudgeKind::FollowUpPromised
                    | NudgeKind::FollowUpNoTimeframe
                    | NudgeKind::DetailsBeforeOwnership
                    | NudgeKind::GenericApology
                    | NudgeKind::ColdTransfer
            ) && self
                .nudged
                .insert((nudge.source.0, nudge.kind), self.guilds.clock().now())
                .is_some()
            {
                continue;
            }
            let jump = Some(jump_link(
                guild.id,
                channel,
                serenity::all::MessageId::new(nudge.source.0.max(1)),
            ));
            let preference = nudge
                .agent
                .as_ref()
                .and_then(|a| a.as_str().parse::<u64>().ok())
                .and_then(|a| self.delivery.get(&(guild.id, a)).map(|d| *d))
                .unwrap_or(guild.delivery);
            let delivered = match deliverer.deliver(guild, preference, &nudge, jump).await {
                Ok(to) => {
                    tracing::info!(kind = %nudge.kind, conversation = %nudge.conversation, ?to, "nudge delivered");
                    metrics::counter!(super::metrics::NUDGES, "kind" => nudge.kind.as_str()).increment(1);
                    true
                }
                Err(e) => {
                    tracing::error!(kind = %nudge.kind, conversation = %nudge.conversation, error = %e, "nudge not delivered");
                    metrics::counter!(super::metrics::DELIVERY_FAILURES, "kind" => nudge.kind.as_str()).increment(1);
                    false
                }
            };
            log.push(log_entry(guild.id, channel, &nudge, delivered));
        }
        log
    }

    /// Queues the context of every conversation changed since the last call.
    pub fn flush_contexts(&self) {
        let now = self.guilds.clock().now().as_millisecond();
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
        match tokio::time::timeout(std::time::Duration::from_secs(1), load).await {
            Ok(Ok((None, None))) => {}
            Ok(Ok((context, promise))) => {
                let context = context
                    .or_else(|| promise.as_ref().map(|p| Recovery::new(from_ms(p.made_at))))
                    .unwrap_or_else(|| Recovery::new(self.guilds.clock().now()));
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
        let now = self.guilds.clock().now().as_millisecond();
        let close = |source: engine::MessageRef, state| {
            self.writer.send(Write::Close {
                guild,
                message: source.0,
                state,
                now,
            })
        };
        for change in changes {
            let (message, due_words, state) = match change {
                PromiseChange::Made(p) => {
                    let next = engine
                        .next_step(&p, false, from_ms(now))
                        .map(|(t, s)| (t.as_millisecond(), s));
                    let row = NewPromise {
                        guild,
                        conversation,
                        agent: p.agent.as_str().parse().unwrap_or(0),
                        customer: p.customer.as_ref().and_then(|c| c.as_str().parse().ok()),
                        message: p.source.0,
                        rule: p.rule.to_string(),
                        evidence: p.evidence.clone(),
                        excerpt: p.quote.clone(),
                        made_at: p.made_at.as_millisecond(),
                        due_at: p.due.at.as_millisecond(),
                        due_words: stated(&p.due.source),
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
                PromiseChange::Restated { source, due } => (source, stated(&due.source), PromiseState::Open),
                PromiseChange::Chased { source, .. } => (source, None, PromiseState::Overdue),
            };
            // Restated or chased: the engine holds the promise with its new due time and flags.
            let Some(promise) = engine
                .promise(&conversation.to_string())
                .filter(|p| p.source == message)
            else {
                continue;
            };
            let change = Reschedule {
                guild,
                message: message.0,
                due_at: promise.due.at.as_millisecond(),
                due_words,
                state,
                next: engine
                    .next_step(&promise, false, from_ms(now))
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

    async fn on_message(&self, ctx: &Context, msg: &Message, edited: bool) {
        let Some(guild_id) = msg.guild_id else { return };
        let Some(guild) = self.config.guild(guild_id.get()) else {
            return;
        };
        if msg.author.bot || msg.webhook_id.is_some() || msg.author.id == ctx.cache.current_user().id {
            return;
        }
        self.learn_channel(ctx, msg.channel_id).await;
        if !self.is_watched(guild, msg.channel_id.get()) {
            return;
        }
        if let Some(d) = self.deliverer() {
            let nick = msg.member.as_ref().and_then(|m| m.nick.as_deref());
            d.remember_name(msg.author.id, nick.unwrap_or(msg.author.display_name()));
        }
        let roles: Option<Vec<u64>> = msg.member.as_ref().map(|m| m.roles.iter().map(|r| r.get()).collect());
        if let Some(r) = &roles {
            self.roles.insert((guild.id, msg.author.id.get()), r.clone());
        }
        let role = if self.is_agent(guild, msg.author.id.get(), roles.as_deref()) {
            Role::Agent
        } else {
            Role::Customer
        };
        let Some(engine) = self.guilds.engine(guild.id) else {
            return;
        };
        self.recall(engine, msg.channel_id.get()).await;
        let conversation = msg.channel_id.get().to_string();
        let author = msg.author.id.get().to_string();
        let at = convert::timestamp(&msg.timestamp);
        let message = engine::Message {
            conversation: &conversation,
            author: &author,
            role,
            text: &msg.content,
            at,
            source: engine::MessageRef(msg.id.get()),
        };
        // A first reply claims an earlier unanswered cue in the same step (see observe_claiming).
        let started = std::time::Instant::now();
        let reading = engine.read(&message, !edited);
        metrics::histogram!(super::metrics::ENGINE_TIME).record(started.elapsed().as_secs_f64());
        let channel = msg.channel_id.get();
        if !reading.changes.is_empty() {
            self.record(guild.id, engine, channel, reading.changes).await;
        }
        for cue in &reading.unprompted {
            tracing::info!(conversation = %cue.conversation, category = ?cue.category, "recovered unprompted: no nudge needed");
            metrics::counter!(super::metrics::RECOVERED_UNPROMPTED).increment(1);
            // Logged, never delivered: digests and /coach me count it as a win.
            let mut row = log_entry(guild.id, channel, cue, false);
            row.kind = crate::digest::RECOVERED_UNPROMPTED.to_string();
            row.key = nudge_key(cue.source.0, &row.kind);
            self.writer.send(Write::Nudge(row));
        }
        if let Some(checklist) = &reading.checklist {
            let row = StoredChecklist::of(guild.id, channel, checklist, at.as_millisecond());
            self.writer.send(Write::Checklist(Box::new(row)));
        }
        if reading.recovered {
            self.writer.send(Write::Recovered {
                conversation: channel,
                at: at.as_millisecond(),
            });
        }
        self.dirty.insert(channel, guild.id);
        self.send(guild, channel, reading.nudges).await;
    }

    /// Closes or snoozes the open promise of a conversation from a button or command: the
    /// store's record first (it survives restarts), then the engine's copy. Returns whether a
    /// promise was open.
    pub async fn settle_promise(&self, conversation: u64, snooze_until: Option<jiff::Timestamp>) -> bool {
        let key = conversation.to_string();
        let now = self.guilds.clock().now();
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
                promise.due.at = until;
                promise.reminded = false;
                promise.overdue = false;
                let change = Reschedule {
                    guild,
                    message,
                    due_at: until.as_millisecond(),
                    due_words: None,
                    state: PromiseState::Snoozed,
                    next: engine
                        .next_step(&promise, false, now)
                        .map(|(t, s)| (t.as_millisecond(), s)),
                };
                self.reschedule(change, now.as_millisecond()).await;
            }
        }
        true
    }

    async fn on_component(&self, ctx: &Context, c: &ComponentInteraction) {
        let parts: Vec<&str> = c.data.custom_id.splitn(5, ':').collect();
        let reply = match parts.as_slice() {
            ["bs", action @ ("up" | "down"), _conv, msg, kind] => {
                self.writer.send(Write::Feedback {
                    key: nudge_key(msg.parse().unwrap_or(0), kind),
                    helpful: *action == "up",
                    by: c.user.id.get(),
                    at: self.guilds.clock().now().as_millisecond(),
                });
                "Thanks, noted. Your feedback tunes which nudges Backstop sends.".to_string()
            }
            ["bs", "done", conv, _, _] => {
                if self.settle_promise(conv.parse().unwrap_or(0), None).await {
                    "Marked done. Nice follow-through.".into()
                } else {
                    "That promise was already closed.".into()
                }
            }
            ["bs", "snooze", conv, _, _] => {
                let now = self.guilds.clock().now();
                let until = now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
                if self.settle_promise(conv.parse().unwrap_or(0), Some(until)).await {
                    "Snoozed for an hour. I'll remind you again before it's due.".into()
                } else {
                    "That promise was already closed.".into()
                }
            }
            _ => "This button is no longer active.".to_string(),
        };
        let response =
            CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content(reply).ephemeral(true));
        if let Err(e) = c.create_response(&ctx.http, response).await {
            tracing::warn!(error = %e, "could not acknowledge a button press");
        }
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to Discord");
        self.connected.store(true, std::sync::atomic::Ordering::Relaxed);
        for guild in &self.config.guilds {
            if let Err(e) = GuildId::new(guild.id)
                .set_commands(&ctx.http, commands::definitions())
                .await
            {
                tracing::warn!(guild = guild.id, error = %e, "could not register slash commands");
            }
        }
        self.ready.notify_waiters();
    }

    async fn guild_create(&self, _ctx: Context, guild: serenity::all::Guild, _is_new: Option<bool>) {
        for (id, c) in &guild.channels {
            self.channels.insert(id.get(), ChannelInfo::of(c));
        }
        for t in &guild.threads {
            self.channels.insert(t.id.get(), ChannelInfo::of(t));
        }
        for (user, m) in &guild.members {
            self.roles
                .insert((guild.id.get(), user.get()), m.roles.iter().map(|r| r.get()).collect());
        }
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        self.channels.insert(thread.id.get(), ChannelInfo::of(&thread));
    }

    async fn channel_create(&self, _ctx: Context, channel: GuildChannel) {
        self.channels.insert(channel.id.get(), ChannelInfo::of(&channel));
    }

    async fn message(&self, ctx: Context, msg: Message) {
        let _busy = self.in_flight.enter();
        self.on_message(&ctx, &msg, false).await;
        self.messages_seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(super::metrics::MESSAGES).increment(1);
    }

    async fn message_update(
        &self,
        ctx: Context,
        _old: Option<Message>,
        new: Option<Message>,
        event: MessageUpdateEvent,
    ) {
        let _busy = self.in_flight.enter();
        // Re-read the edited text; (message, kind) bookkeeping in `send` stops double nudges.
        let msg = match new {
            Some(m) => m,
            None => match ctx.http.get_message(event.channel_id, event.id).await {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        self.on_message(&ctx, &msg, true).await;
    }

    async fn typing_start(&self, ctx: Context, event: TypingStartEvent) {
        let _busy = self.in_flight.enter();
        let Some(guild_id) = event.guild_id else { return };
        let Some(guild) = self.config.guild(guild_id.get()) else {
            return;
        };
        if event.user_id == ctx.cache.current_user().id {
            return;
        }
        let roles: Option<Vec<u64>> = event.member.as_ref().map(|m| m.roles.iter().map(|r| r.get()).collect());
        if !self.is_agent(guild, event.user_id.get(), roles.as_deref())
            || !self.is_watched(guild, event.channel_id.get())
        {
            return;
        }
        let Some(engine) = self.guilds.engine(guild.id) else {
            return;
        };
        let now = self.guilds.clock().now();
        let nudges = engine.typing(
            &event.channel_id.get().to_string(),
            &event.user_id.get().to_string(),
            now,
        );
        if !nudges.is_empty() {
            self.send(guild, event.channel_id.get(), nudges).await;
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let _busy = self.in_flight.enter();
        match interaction {
            Interaction::Command(cmd) => commands::run(self, &ctx, &cmd).await,
            Interaction::Autocomplete(ac) => {
                let choices = commands::autocomplete(&self.guilds.prompts(), &ac);
                let response = CreateInteractionResponse::Autocomplete(
                    choices
                        .into_iter()
                        .fold(CreateAutocompleteResponse::new(), |r, (name, value)| {
                            r.add_string_choice(name, value)
                        }),
                );
                if let Err(e) = ac.create_response(&ctx.http, response).await {
                    tracing::warn!(error = %e, "could not answer autocomplete");
                }
            }
            Interaction::Component(c) => self.on_component(&ctx, &c).await,
            _ => {}
        }
    }
}

/// The nudge-log row for a nudge.
fn log_entry(guild: u64, channel: u64, nudge: &Nudge, delivered: bool) -> NewNudge {
    let id = |u: &Option<engine::UserId>| u.as_ref().and_then(|u| u.as_str().parse().ok());
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
