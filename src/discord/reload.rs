//! Rules and prompts reload without a restart: `/coach reload` (leads) and on file change. A
//! rule book that fails `backstop check` never goes live: the running one stays, and the lead
//! (or, for a file change, the coaching channel) is told why.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serenity::all::{ChannelId, CreateMessage};

use super::bot::Bot;

/// The files a reload reads, with their modification times.
fn snapshot(dirs: &[PathBuf]) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "toml" || x == "json") {
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    out.insert(path, modified);
                }
            }
        }
    }
    out
}

/// Watches the rule and prompt folders (polling every two seconds, which needs no platform
/// support) and reloads when a file changes. The first look is taken here, before the task is
/// spawned, so a change made any time after the bot starts is seen.
pub fn watch(bot: Arc<Bot>, mut stop: super::stop::Stop) -> impl std::future::Future<Output = ()> {
    let dirs: Vec<PathBuf> = match &bot.coach.sources {
        Some(sources) => {
            let (config, prompts) = sources.resolved();
            [config, prompts].into_iter().flatten().collect()
        }
        None => Vec::new(),
    };
    let mut seen = snapshot(&dirs);
    async move {
        if dirs.is_empty() {
            return;
        }
        while stop.wait(tokio::time::sleep(Duration::from_secs(2))).await {
            let now = snapshot(&dirs);
            if now == seen {
                continue;
            }
            seen = now;
            if let Err(why) = bot.coach.reload() {
                tracing::warn!(%why, "a changed rule file did not pass the check; the previous rules keep running");
                tell_leads(&bot, &why).await;
            }
        }
    }
}

/// Posts a failed reload to every guild's coaching channel.
async fn tell_leads(bot: &Bot, why: &str) {
    let Some(deliverer) = bot.deliverer() else {
        return;
    };
    let mut text = format!("**Rule change not applied**: the previous rules keep running.\n```\n{why}```");
    if text.chars().count() > 1900 {
        text = text.chars().take(1890).collect::<String>() + "\n…```";
    }
    for g in &bot.coach.config.guilds {
        if let Some(channel) = g.coaching_channel {
            if let Err(e) = deliverer
                .post(ChannelId::new(channel), CreateMessage::new().content(text.clone()))
                .await
            {
                tracing::warn!(error = %e, "could not report a failed reload");
            }
        }
    }
}
