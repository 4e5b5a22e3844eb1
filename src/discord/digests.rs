//! Scheduled digests in the coaching channel: one task per guild and cadence, sleeping until
//! the next local posting time. The last posted slot is kept in the store, so a restart neither
//! repeats a digest nor floods the channel with every one missed while down: at most the latest
//! missed digest is posted, once.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serenity::all::{ChannelId, CreateAttachment, CreateEmbed, CreateMessage};

use super::bot::Bot;
use crate::coach::config::GuildConfig;
use crate::coach::Coach;
use crate::digest::{self, Cadence, Figures};
use crate::report::RuleReport;

/// Figures for the period ending at `slot` and the one before it, from the store.
async fn figures(
    coach: &Coach,
    guild: &GuildConfig,
    cadence: Cadence,
    slot: Timestamp,
) -> Result<(Figures, Figures), String> {
    let (now, before) = cadence.periods(slot);
    let (from, to) = (before.start.as_millisecond(), now.end.as_millisecond());
    let nudges = coach
        .store
        .digest_nudges(guild.id, from, to)
        .await
        .map_err(|e| e.to_string())?;
    let promises = coach
        .store
        .digest_promises(guild.id, from, to)
        .await
        .map_err(|e| e.to_string())?;
    let checklists = coach
        .store
        .checklists(Some(guild.id), from, to)
        .await
        .map_err(|e| e.to_string())?;
    let tz = &guild.settings.schedule.time_zone;
    let figures = |period| {
        let mut f = Figures::compute(period, &nudges, &promises, tz);
        f.count_checklists(period, &checklists);
        f
    };
    Ok((figures(now), figures(before)))
}

/// Builds and posts the digest for the period ending at `slot`.
pub async fn post(bot: &Bot, guild: &GuildConfig, cadence: Cadence, slot: Timestamp) -> Result<(), String> {
    let channel = guild.coaching_channel.ok_or("no coaching channel is configured")?;
    let deliverer = bot.deliverer().ok_or("not connected to Discord yet")?;
    let (now, before) = figures(&bot.coach, guild, cadence, slot).await?;
    let since = cadence.periods(slot).0.start.as_millisecond();
    let noisy: Vec<_> = RuleReport::load(&bot.coach.store, since - 30 * 86_400_000, Some(guild.id))
        .await
        .map_err(|e| e.to_string())?
        .rows
        .into_iter()
        .filter(|r| r.is_noisy())
        .collect();
    let local = slot.to_zoned(guild.settings.schedule.time_zone.clone());
    let title = match cadence {
        Cadence::Daily(_) => format!("Daily coaching digest · {}", local.strftime("%a %-d %b")),
        Cadence::Weekly(..) => format!("Weekly coaching digest · week to {}", local.strftime("%a %-d %b")),
    };
    let text = digest::text(&now, &before, guild.digest_per_agent, &noisy);
    let png = digest::chart(&now, &title).map_err(|e| e.to_string())?;
    let embed = CreateEmbed::new()
        .title(&title)
        .description(text.chars().take(4000).collect::<String>())
        .image("attachment://digest.png")
        .footer(serenity::all::CreateEmbedFooter::new(
            "Trends compare with the previous period",
        ))
        .colour(0x5865F2);
    let message = CreateMessage::new()
        .embed(embed)
        .add_file(CreateAttachment::bytes(png, "digest.png"));
    deliverer
        .post(ChannelId::new(channel), message)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(guild = guild.id, cadence = cadence.name(), "digest posted");
    Ok(())
}

/// One agent's own figures over the last seven days, for `/coach me`.
pub async fn for_agent(coach: &Coach, guild: &GuildConfig, agent: u64) -> Result<String, String> {
    let now = coach.guilds.clock().now();
    let week = Cadence::Weekly(jiff::civil::Weekday::Monday, jiff::civil::Time::midnight());
    let (figures, _) = figures(coach, guild, week, now).await?;
    Ok(digest::agent_text(agent, &figures))
}

/// A guild's digest loop for one cadence.
pub async fn run(bot: Arc<Bot>, guild: u64, cadence: Cadence, mut stop: super::stop::Stop) {
    let Some(config) = bot.coach.config.guild(guild) else {
        return;
    };
    let tz = config.settings.schedule.time_zone.clone();
    let key = format!("digest:{guild}:{}", cadence.name());
    let clock = bot.coach.guilds.clock().clone();
    // The last slot posted; on a first start, "now", so nothing from before Backstop is posted.
    let mut last = loop {
        match bot.coach.store.meta(&key).await {
            Ok(Some(v)) => break v.parse::<i64>().unwrap_or(0),
            Ok(None) => {
                let start = cadence.latest_slot(clock.now(), &tz).map_or(0, |t| t.as_millisecond());
                if bot.coach.store.set_meta(&key, &start.to_string()).await.is_ok() {
                    break start;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read digest bookkeeping; retrying"),
        }
        if !stop.wait(tokio::time::sleep(Duration::from_secs(5))).await {
            return;
        }
    };
    loop {
        let now = clock.now();
        if let Some(slot) = cadence.latest_slot(now, &tz).filter(|s| s.as_millisecond() > last) {
            match post(&bot, config, cadence, slot).await {
                Ok(()) => {
                    last = slot.as_millisecond();
                    if let Err(e) = bot.coach.store.set_meta(&key, &last.to_string()).await {
                        tracing::warn!(error = %e, "posted a digest but could not record it");
                    }
                }
                Err(why) => {
                    tracing::warn!(guild, %why, "could not post a digest; retrying in a minute");
                    if !stop.wait(tokio::time::sleep(Duration::from_secs(60))).await {
                        return;
                    }
                    continue;
                }
            }
        }
        match cadence.next_slot(now, &tz) {
            Some(next) => {
                if !stop.wait(clock.sleep_until(next)).await {
                    return;
                }
            }
            None => return,
        }
    }
}
