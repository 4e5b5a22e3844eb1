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
use super::Guilds;
use crate::engine::{self, Nudge, NudgeKind, Role};

/// The event handler: one per bot.
pub struct Handler {
    pub config: Arc<BotConfig>,
    pub guilds: Arc<Guilds>,
    pub deliverer: Arc<OnceDeliverer>,
    /// Channels and threads seen, with their kind and parent.
    pub channels: DashMap<u64, ChannelInfo>,
    /// Member roles by (guild, user), from GUILD_CREATE and messages.
    pub roles: DashMap<(u64, u64), Vec<u64>>,
    /// (message, kind) pairs already nudged, so edits never nudge twice.
    pub nudged: DashSet<(u64, NudgeKind)>,
    /// Signals the first READY to whoever waits for it.
    pub ready: tokio::sync::Notify,
    /// Feedback presses by nudge kind: (helpful, not helpful). In memory until durable storage lands.
    pub feedback: DashMap<String, (u32, u32)>,
    /// Agents who muted coaching, until when: (guild, user).
    pub mutes: DashMap<(u64, u64), jiff::Timestamp>,
    /// Nudges delivered: (guild, kind, when), for `/coach stats`. In memory until durable storage lands.
    pub delivered: std::sync::Mutex<Vec<(u64, NudgeKind, jiff::Timestamp)>>,
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

    fn is_agent(&self, guild: &GuildConfig, user: u64, roles: Option<&[u64]>) -> bool {
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
        let Some(deliverer) = self.deliverer() else { return };
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
            ) && !self.nudged.insert((nudge.source.0, nudge.kind))
            {
                continue;
            }
            let jump = Some(jump_link(
                guild.id,
                channel,
                serenity::all::MessageId::new(nudge.source.0.max(1)),
            ));
            match deliverer.deliver(guild, &nudge, jump).await {
                Ok(to) => {
                    tracing::info!(kind = %nudge.kind, conversation = %nudge.conversation, ?to, "nudge delivered");
                    let now = self.guilds.clock().now();
                    self.delivered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((guild.id, nudge.kind, now));
                }
                Err(e) => {
                    tracing::error!(kind = %nudge.kind, conversation = %nudge.conversation, error = %e, "nudge not delivered")
                }
            }
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
        let nudges = if edited {
            engine.observe(&message)
        } else {
            engine.observe_claiming(&message)
        };
        if nudges.iter().any(|n| n.due.is_some()) {
            self.guilds.wake(guild.id);
        }
        self.send(guild, msg.channel_id.get(), nudges).await;
    }

    async fn on_component(&self, ctx: &Context, c: &ComponentInteraction) {
        let parts: Vec<&str> = c.data.custom_id.splitn(5, ':').collect();
        let reply = match parts.as_slice() {
            ["bs", action @ ("up" | "down"), _conv, _msg, kind] => {
                let mut entry = self.feedback.entry((*kind).to_string()).or_default();
                if *action == "up" {
                    entry.0 += 1
                } else {
                    entry.1 += 1
                }
                "Thanks, noted. Your feedback tunes which nudges Backstop sends.".to_string()
            }
            ["bs", "done", conv, _, _] => {
                let kept = self.guilds.all().any(|(_, e)| e.promise_kept(conv));
                if kept {
                    "Marked done. Nice follow-through.".into()
                } else {
                    "That promise was already closed.".into()
                }
            }
            ["bs", "snooze", conv, _, _] => {
                let until = self
                    .guilds
                    .clock()
                    .now()
                    .checked_add(jiff::SignedDuration::from_hours(1))
                    .unwrap_or_else(|_| self.guilds.clock().now());
                let moved = self.guilds.all().any(|(id, e)| {
                    let moved = e.snooze(conv, until);
                    if moved {
                        self.guilds.wake(id);
                    }
                    moved
                });
                if moved {
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
        if let Some(nudge) = engine.claim(
            &event.channel_id.get().to_string(),
            &event.user_id.get().to_string(),
            now,
        ) {
            self.send(guild, event.channel_id.get(), vec![nudge]).await;
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let _busy = self.in_flight.enter();
        match interaction {
            Interaction::Command(cmd) => commands::run(self, &ctx, &cmd).await,
            Interaction::Autocomplete(ac) => {
                let choices = commands::autocomplete(self.guilds.prompts(), &ac);
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
