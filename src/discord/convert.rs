//! Conversions from serenity's types to Backstop's: the one place that knows both.

use serenity::all::GuildChannel;

/// What Backstop needs to know about a channel to decide whether it is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    pub parent: Option<u64>,
}

impl ChannelInfo {
    pub fn of(c: &GuildChannel) -> ChannelInfo {
        ChannelInfo {
            parent: c.parent_id.map(|p| p.get()),
        }
    }
}

/// A Discord timestamp as the engine's time.
pub fn timestamp(t: &serenity::all::Timestamp) -> jiff::Timestamp {
    t.to_rfc3339()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::from_second(t.unix_timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Discord's first second of 2015, where snowflake time starts.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// The Unix time (ms) a snowflake was made at.
pub fn snowflake_ms(id: u64) -> i64 {
    ((id >> 22) as i64).saturating_add(DISCORD_EPOCH_MS)
}
