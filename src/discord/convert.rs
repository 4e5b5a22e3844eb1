//! Conversions from serenity's types to Backstop's: the one place that knows both.

use serenity::all::{GuildChannel, Message, RoleId};

use crate::coach::Posted;

/// A channel's parent: a thread's channel, a channel's category.
pub fn parent(c: &GuildChannel) -> Option<u64> {
    c.parent_id.map(|p| p.get())
}

pub fn roles(roles: &[RoleId]) -> Vec<u64> {
    roles.iter().map(|r| r.get()).collect()
}

/// A person's message as the coach reads it; `None` for bots and webhooks, which are never
/// coached, and for messages outside a guild. `guild` fills in for messages fetched over REST,
/// which come without one.
pub fn posted(msg: &Message, guild: Option<u64>) -> Option<Posted> {
    if msg.author.bot || msg.webhook_id.is_some() {
        return None;
    }
    Some(Posted {
        guild: msg.guild_id.map(|g| g.get()).or(guild)?,
        channel: msg.channel_id.get(),
        id: msg.id.get(),
        author: msg.author.id.get(),
        roles: msg.member.as_ref().map(|m| roles(&m.roles)),
        text: msg.content.clone(),
        at: timestamp(&msg.timestamp),
    })
}

/// A Discord timestamp as the engine's time.
pub fn timestamp(t: &serenity::all::Timestamp) -> jiff::Timestamp {
    t.to_rfc3339()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::from_second(t.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Discord's first second of 2015, where snowflake time starts.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// The time a snowflake was made at.
pub fn snowflake_time(id: u64) -> jiff::Timestamp {
    let ms = ((id >> 22) as i64).saturating_add(DISCORD_EPOCH_MS);
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// A press of one of a nudge's buttons, from its id `bs:<action>:<conversation>:<message>:<kind>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Button {
    Feedback { helpful: bool, message: u64, kind: String },
    Done { conversation: u64 },
    Snooze { conversation: u64 },
}

impl Button {
    /// `None` for an id this version never made (an old or foreign button).
    pub fn parse(id: &str) -> Option<Button> {
        let parts: Vec<&str> = id.splitn(5, ':').collect();
        match parts.as_slice() {
            ["bs", action @ ("up" | "down"), _conversation, message, kind] => Some(Button::Feedback {
                helpful: *action == "up",
                message: message.parse().ok()?,
                kind: (*kind).to_string(),
            }),
            ["bs", "done", conversation, _, _] => Some(Button::Done {
                conversation: conversation.parse().ok()?,
            }),
            ["bs", "snooze", conversation, _, _] => Some(Button::Snooze {
                conversation: conversation.parse().ok()?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_parse_from_their_ids_and_odd_ids_are_refused() {
        assert_eq!(
            Button::parse("bs:up:12:34:prior_failure"),
            Some(Button::Feedback {
                helpful: true,
                message: 34,
                kind: "prior_failure".into()
            })
        );
        assert_eq!(
            Button::parse("bs:done:12:34:follow_up_due"),
            Some(Button::Done { conversation: 12 })
        );
        assert_eq!(
            Button::parse("bs:snooze:12:34:x"),
            Some(Button::Snooze { conversation: 12 })
        );
        assert_eq!(
            Button::parse("bs:done:twelve:34:x"),
            None,
            "a bad id is not conversation 0"
        );
        assert_eq!(Button::parse("other:up:1:2:x"), None);
    }

    #[test]
    fn a_snowflake_tells_its_time() {
        // Discord's documented example: 175928847299117063 was made at 2016-04-30T11:18:25.796Z.
        assert_eq!(
            snowflake_time(175_928_847_299_117_063).to_string(),
            "2016-04-30T11:18:25.796Z"
        );
    }
}
