//! Getting a nudge to an agent, privately: a DM (channel cached), or, when Discord refuses the DM
//! (error 50007, DMs closed) or the guild prefers it, a private thread for that agent in the
//! coaching channel, created once and reused. Never anywhere a customer can read.
//!
//! A 429 or 5xx is retried with backoff, a bounded number of times, and logged; a send that still
//! fails is reported to the caller, never dropped silently.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serenity::all::{
    ButtonStyle, ChannelId, ChannelType, CreateActionRow, CreateButton, CreateEmbed, CreateEmbedFooter, CreateMessage,
    CreateThread, Http, HttpError, MessageId, UserId,
};

use crate::coach::config::{Delivery, GuildConfig};
use crate::coach::{Platform, Posted};
use crate::engine::{format_due, Nudge, NudgeKind, Schedule};

/// Discord's code for "Cannot send messages to this user".
const DMS_CLOSED: isize = 50007;
/// Attempts per send, counting the first.
const ATTEMPTS: u32 = 5;

/// Where a nudge went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Dm(ChannelId),
    CoachingThread(ChannelId),
}

/// Why a nudge could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no agent to deliver to")]
    NoAgent,
    #[error("agent id {0:?} is not a Discord user id")]
    BadAgent(String),
    #[error("DMs are closed and guild has no coaching channel to fall back to")]
    NoFallback,
    #[error("discord refused the send: {0}")]
    Discord(#[from] serenity::Error),
}

/// Sends nudges; shared by the event handler and the scheduler.
pub struct Deliverer {
    http: Arc<Http>,
    dm_channels: DashMap<UserId, ChannelId>,
    /// Agents whose DMs are known to be closed.
    dms_closed: DashMap<UserId, ()>,
    threads: DashMap<(ChannelId, UserId), ChannelId>,
    /// Display names of people seen in watched channels, to name coaching threads after agents.
    names: DashMap<UserId, String>,
}

fn is_dms_closed(e: &serenity::Error) -> bool {
    matches!(e, serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) if r.error.code == DMS_CLOSED)
}

fn retryable(e: &serenity::Error) -> bool {
    match e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            r.status_code.as_u16() == 429 || r.status_code.is_server_error()
        }
        serenity::Error::Http(HttpError::Request(_)) => true,
        _ => false,
    }
}

/// Runs `op`, retrying rate limits, server errors and dropped connections with backoff.
pub async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> Result<T, serenity::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, serenity::Error>>,
{
    let mut wait = Duration::from_millis(100);
    for attempt in 1.. {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::warn!(%what, attempt, error = %e, "send failed, retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) if is_dms_closed(&e) => {
                // Expected and handled by the caller (a coaching thread instead): not an error.
                tracing::debug!(%what, "DMs closed");
                return Err(e);
            }
            Err(e) => {
                tracing::error!(%what, attempt, error = %e, "send failed for good");
                return Err(e);
            }
        }
    }
    unreachable!("the loop returns on the last attempt")
}

impl Deliverer {
    pub fn new(http: Arc<Http>) -> Deliverer {
        Deliverer {
            http,
            dm_channels: DashMap::new(),
            dms_closed: DashMap::new(),
            threads: DashMap::new(),
            names: DashMap::new(),
        }
    }

    /// Remembers how someone is shown in the guild (nickname, else global name, else username).
    pub fn remember_name(&self, user: UserId, name: &str) {
        if self.names.get(&user).is_none_or(|n| *n != name) {
            self.names.insert(user, name.to_string());
        }
    }

    /// The agent's display name: remembered from their messages, else asked of Discord.
    async fn name_of(&self, user: UserId) -> String {
        if let Some(n) = self.names.get(&user) {
            return n.clone();
        }
        match self.http.get_user(user).await {
            Ok(u) => u.global_name.unwrap_or(u.name),
            Err(e) => {
                tracing::debug!(agent = %user, error = %e, "cannot look up an agent's name; using the id");
                user.to_string()
            }
        }
    }

    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    /// Delivers a nudge to its agent; `jump` is the link to the message it is about.
    pub async fn deliver(
        &self,
        guild: &GuildConfig,
        preference: Delivery,
        nudge: &Nudge,
        jump: Option<String>,
    ) -> Result<Destination, DeliveryError> {
        let agent = nudge.agent.as_ref().ok_or(DeliveryError::NoAgent)?;
        let user = agent
            .as_str()
            .parse::<u64>()
            .map(UserId::new)
            .map_err(|_| DeliveryError::BadAgent(agent.to_string()))?;
        let message = render(nudge, jump, &guild.settings.schedule);
        // A thread needs a coaching channel; without one, DMs are the only private place.
        let dm = preference == Delivery::Dm || guild.coaching_channel.is_none();
        if dm && !self.dms_closed.contains_key(&user) {
            let dm = self.dm_channel(user).await?;
            match with_retries("dm", || dm.send_message(&self.http, message.clone())).await {
                Ok(_) => return Ok(Destination::Dm(dm)),
                Err(e) if is_dms_closed(&e) => {
                    tracing::info!(agent = %user, "DMs closed; falling back to a coaching thread");
                    self.dms_closed.insert(user, ());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let coaching = guild
            .coaching_channel
            .map(ChannelId::new)
            .ok_or(DeliveryError::NoFallback)?;
        let thread = self.coaching_thread(coaching, user).await?;
        with_retries("coaching thread", || thread.send_message(&self.http, message.clone())).await?;
        Ok(Destination::CoachingThread(thread))
    }

    /// Posts a message where the team reads it (escalations), with retries.
    pub async fn post(&self, channel: ChannelId, message: CreateMessage) -> Result<(), DeliveryError> {
        with_retries("coaching channel", || channel.send_message(&self.http, message.clone())).await?;
        Ok(())
    }

    async fn dm_channel(&self, user: UserId) -> Result<ChannelId, DeliveryError> {
        if let Some(c) = self.dm_channels.get(&user) {
            return Ok(*c);
        }
        let channel = with_retries("open dm", || user.create_dm_channel(&self.http)).await?.id;
        self.dm_channels.insert(user, channel);
        Ok(channel)
    }

    async fn coaching_thread(&self, coaching: ChannelId, user: UserId) -> Result<ChannelId, DeliveryError> {
        if let Some(t) = self.threads.get(&(coaching, user)) {
            return Ok(*t);
        }
        let name = format!("Backstop coaching · {}", self.name_of(user).await);
        let thread = with_retries("create coaching thread", || {
            coaching.create_thread(
                &self.http,
                CreateThread::new(name.clone())
                    .kind(ChannelType::PrivateThread)
                    .invitable(false),
            )
        })
        .await?
        .id;
        with_retries("add agent to coaching thread", || {
            thread.add_thread_member(&self.http, user)
        })
        .await?;
        self.threads.insert((coaching, user), thread);
        Ok(thread)
    }
}

/// The coach reaches Discord through the deliverer.
#[async_trait::async_trait]
impl Platform for Deliverer {
    async fn deliver(&self, guild: &GuildConfig, how: Delivery, nudge: &Nudge, jump: String) -> Result<String, String> {
        match Deliverer::deliver(self, guild, how, nudge, Some(jump)).await {
            Ok(Destination::Dm(c)) => Ok(format!("DM channel {c}")),
            Ok(Destination::CoachingThread(c)) => Ok(format!("coaching thread {c}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn parent_of(&self, channel: u64) -> Option<Option<u64>> {
        let id = ChannelId::new(channel.max(1));
        match self.http.get_channel(id).await {
            Ok(serenity::all::Channel::Guild(c)) => Some(super::convert::parent(&c)),
            _ => None,
        }
    }

    async fn message(&self, guild: u64, channel: u64, id: u64) -> Option<Posted> {
        let (channel, id) = (ChannelId::new(channel.max(1)), MessageId::new(id.max(1)));
        let msg = self.http.get_message(channel, id).await.ok()?;
        super::convert::posted(&msg, Some(guild))
    }
}

/// Button ids: `bs:<action>:<conversation>:<message>:<kind>`.
pub fn button_id(action: &str, nudge: &Nudge) -> String {
    format!("bs:{action}:{}:{}:{}", nudge.conversation, nudge.source.0, nudge.kind)
}

/// The embed and buttons for a nudge.
pub fn render(nudge: &Nudge, jump: Option<String>, schedule: &Schedule) -> CreateMessage {
    let colour = match nudge.kind {
        NudgeKind::PriorFailure => 0xE8A33D,
        NudgeKind::ExplainBeforeApology => 0xD9534F,
        NudgeKind::FollowUpPromised | NudgeKind::FollowUpNoTimeframe => 0x3D8EE8,
        NudgeKind::FollowUpReminder => 0x9B59B6,
        NudgeKind::FollowUpOverdue => 0xC0392B,
        NudgeKind::DetailsBeforeOwnership | NudgeKind::GenericApology => 0xE67E22,
        NudgeKind::ColdTransfer => 0x16A085,
        NudgeKind::HandoffBrief => 0x2C3E50,
    };
    let mut embed = CreateEmbed::new()
        .title(truncate(&nudge.title, 250))
        .description(truncate(&nudge.text, 3900))
        .colour(colour)
        .footer(CreateEmbedFooter::new(format!("{} · rule {}", nudge.kind, nudge.rule)));
    if !nudge.quote.is_empty() {
        embed = embed.field("They wrote", format!("> {}", truncate(&nudge.quote, 1000)), false);
    }
    if let Some(due) = &nudge.due {
        embed = embed.field("Due", format_due(due.at, schedule), true);
    }
    if let Some(link) = jump {
        embed = embed.field("Message", format!("[Jump to the message]({link})"), true);
    }
    let mut buttons = vec![
        CreateButton::new(button_id("up", nudge))
            .label("Helpful")
            .emoji('👍')
            .style(ButtonStyle::Secondary),
        CreateButton::new(button_id("down", nudge))
            .label("Not helpful")
            .emoji('👎')
            .style(ButtonStyle::Secondary),
    ];
    if matches!(nudge.kind, NudgeKind::FollowUpReminder | NudgeKind::FollowUpOverdue) {
        buttons.push(
            CreateButton::new(button_id("done", nudge))
                .label("Done")
                .style(ButtonStyle::Success),
        );
        buttons.push(
            CreateButton::new(button_id("snooze", nudge))
                .label("Snooze 1h")
                .style(ButtonStyle::Primary),
        );
    }
    CreateMessage::new()
        .embed(embed)
        .components(vec![CreateActionRow::Buttons(buttons)])
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    s.chars().take(max - 1).collect::<String>() + "…"
}
