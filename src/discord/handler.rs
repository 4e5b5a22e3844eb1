//! The serenity event handler: a thin translation from Discord's events to [`Coach`] calls.
//! Conversions from serenity types live in [`super::convert`]; every decision is the coach's.

use std::sync::Arc;

use serenity::all::{
    ComponentInteraction, Context, CreateInteractionResponse, CreateInteractionResponseMessage, EventHandler,
    GuildChannel, GuildId, Interaction, Message, MessageUpdateEvent, Ready, TypingStartEvent,
};

use super::bot::Bot;
use super::commands;
use super::convert;
use crate::coach::{Coach, Typing};

/// The event handler: one per bot.
pub struct Handler {
    pub bot: Arc<Bot>,
    /// Signals the first READY to whoever waits for it.
    pub ready: Arc<tokio::sync::Notify>,
}

impl Handler {
    fn coach(&self) -> &Coach {
        &self.bot.coach
    }

    /// Whether an event comes from a guild this bot coaches.
    fn configured(&self, guild: Option<GuildId>) -> bool {
        guild.is_some_and(|g| self.coach().config.guild(g.get()).is_some())
    }

    /// Buttons on nudges: `bs:<action>:<conversation>:<message>:<kind>`.
    async fn on_component(&self, ctx: &Context, c: &ComponentInteraction) {
        let coach = self.coach();
        let reply = match convert::Button::parse(&c.data.custom_id) {
            Some(convert::Button::Feedback { helpful, message, kind }) => {
                coach.feedback(message, &kind, helpful, c.user.id.get());
                "Thanks, noted. Your feedback tunes which nudges Backstop sends.".to_string()
            }
            Some(convert::Button::Done { conversation }) => {
                if coach.settle_promise(conversation, None).await {
                    "Marked done. Nice follow-through.".into()
                } else {
                    "That promise was already closed.".into()
                }
            }
            Some(convert::Button::Snooze { conversation }) => {
                let now = coach.now();
                let until = now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
                if coach.settle_promise(conversation, Some(until)).await {
                    "Snoozed for an hour. I'll remind you again before it's due.".into()
                } else {
                    "That promise was already closed.".into()
                }
            }
            None => "This button is no longer active.".to_string(),
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
        self.coach().set_connected();
        for guild in &self.coach().config.guilds {
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
        let coach = self.coach();
        for (id, c) in &guild.channels {
            coach.learn_channel(id.get(), convert::parent(c));
        }
        for t in &guild.threads {
            coach.learn_channel(t.id.get(), convert::parent(t));
        }
        for (user, m) in &guild.members {
            coach.learn_member(guild.id.get(), user.get(), convert::roles(&m.roles));
        }
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        self.coach().learn_channel(thread.id.get(), convert::parent(&thread));
    }

    async fn channel_create(&self, _ctx: Context, channel: GuildChannel) {
        self.coach().learn_channel(channel.id.get(), convert::parent(&channel));
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if !self.configured(msg.guild_id)
            || msg.author.bot
            || msg.webhook_id.is_some()
            || msg.author.id == ctx.cache.current_user().id
        {
            self.coach().pass_over();
            return;
        }
        if let Some(d) = self.bot.deliverer() {
            let nick = msg.member.as_ref().and_then(|m| m.nick.as_deref());
            d.remember_name(msg.author.id, nick.unwrap_or(msg.author.display_name()));
        }
        match convert::posted(&msg, None) {
            Some(posted) => self.coach().message(posted).await,
            None => self.coach().pass_over(),
        }
    }

    async fn message_update(
        &self,
        ctx: Context,
        _old: Option<Message>,
        new: Option<Message>,
        event: MessageUpdateEvent,
    ) {
        let Some(guild) = event.guild_id.filter(|g| self.configured(Some(*g))) else {
            return;
        };
        if event
            .author
            .as_ref()
            .is_some_and(|a| a.bot || a.id == ctx.cache.current_user().id)
        {
            return;
        }
        // An edit takes its place at the time it was made.
        let at = event
            .edited_timestamp
            .or(event.timestamp)
            .map(|t| convert::timestamp(&t))
            .unwrap_or_else(|| convert::snowflake_time(event.id.get()));
        let now = new.as_ref().and_then(|m| convert::posted(m, Some(guild.get())));
        self.coach()
            .edit(guild.get(), event.channel_id.get(), event.id.get(), at, now)
            .await;
    }

    async fn typing_start(&self, ctx: Context, event: TypingStartEvent) {
        let Some(guild) = event.guild_id.filter(|g| self.configured(Some(*g))) else {
            return;
        };
        if event.user_id == ctx.cache.current_user().id {
            return;
        }
        let typing = Typing {
            guild: guild.get(),
            channel: event.channel_id.get(),
            user: event.user_id.get(),
            roles: event.member.as_ref().map(|m| convert::roles(&m.roles)),
            second: i64::try_from(event.timestamp).unwrap_or(i64::MAX),
        };
        self.coach().typing(typing).await;
    }

    /// Commands and autocomplete go to poise (see [`commands`]); buttons come here.
    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        if let Interaction::Component(c) = interaction {
            let _busy = self.coach().in_flight.enter();
            self.on_component(&ctx, &c).await;
        }
    }
}
