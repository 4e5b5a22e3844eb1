//! `config/backstop.toml`: which guilds, channels and people Backstop works with, and the token.
//!
//! Ids are Discord snowflakes, written as strings (`"123456789012345678"`) or integers. Unknown keys
//! and malformed ids are errors naming the key. The token is read from `DISCORD_TOKEN` or
//! `token_file` and is never printed: [`Token`]'s `Debug` and `Display` hide it.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use serde::Deserialize;

use crate::digest::Cadence;
use crate::engine::{FollowUpOverrides, HoursOverrides, Overrides, Problem, Problems, Settings};
use crate::store::{MaskDef, Redactor, StorageConfig};

/// How an agent receives nudges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// A direct message, falling back to a private coaching thread when DMs are closed.
    #[default]
    Dm,
    /// Always a private thread in the coaching channel.
    Thread,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Dm => "dm",
            Delivery::Thread => "thread",
        }
    }

    pub fn parse(s: &str) -> Option<Delivery> {
        match s {
            "dm" => Some(Delivery::Dm),
            "thread" => Some(Delivery::Thread),
            _ => None,
        }
    }
}

/// One guild's settings, checked.
#[derive(Debug, Clone)]
pub struct GuildConfig {
    pub id: u64,
    pub name: String,
    pub watch_channels: HashSet<u64>,
    pub watch_categories: HashSet<u64>,
    pub agent_roles: HashSet<u64>,
    pub agent_users: HashSet<u64>,
    pub lead_roles: HashSet<u64>,
    pub coaching_channel: Option<u64>,
    pub delivery: Delivery,
    /// Engine settings for this guild: the engine.toml defaults with this guild's overrides.
    pub settings: Settings,
    /// How long after a promise goes overdue it is posted to the coaching channel.
    pub escalate_after: SignedDuration,
    /// When digests are posted to the coaching channel (`[guild.digest] daily`, `weekly`).
    pub digests: Vec<Cadence>,
    /// Whether digests name agents (`[guild.digest] per_agent`); team totals otherwise.
    pub digest_per_agent: bool,
}

/// `[guild.digest]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestDef {
    daily: Option<String>,
    weekly: Option<String>,
    #[serde(default)]
    per_agent: bool,
}

/// The whole bot configuration.
#[derive(Debug, Clone)]
pub struct BotConfig {
    pub token_file: Option<PathBuf>,
    pub guilds: Vec<GuildConfig>,
    /// Where promises, the nudge log and settings are kept (`[storage]`).
    pub storage: StorageConfig,
    /// Where to serve `/healthz` and `/metrics` (`[metrics] listen`); off when absent.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    token_file: Option<PathBuf>,
    #[serde(default)]
    guild: Vec<toml::Spanned<toml::Value>>,
    storage: Option<toml::Spanned<toml::Value>>,
    metrics: Option<toml::Spanned<MetricsDef>>,
}

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsDef {
    /// e.g. "127.0.0.1:9100"
    listen: Option<String>,
}

/// `[storage]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageDef {
    url: Option<String>,
    data_dir: Option<PathBuf>,
    retention_days: Option<u32>,
    #[serde(default)]
    redact: Vec<MaskDef>,
}

/// Reads `[storage]`; the data folder is relative to the working directory.
fn storage(
    file: &str,
    text: &str,
    def: Option<toml::Spanned<toml::Value>>,
    problems: &mut Vec<Problem>,
) -> StorageConfig {
    let mut config = StorageConfig::default();
    let Some(spanned) = def else { return config };
    let line = crate::engine::line_of(text, spanned.span().start);
    let def: StorageDef = match spanned.into_inner().try_into() {
        Ok(d) => d,
        Err(e) => {
            problems.push(Problem::new(
                file,
                Some(line),
                Some("storage".into()),
                e.message().trim().to_string(),
            ));
            return config;
        }
    };
    if let Some(url) = def.url.filter(|u| !u.trim().is_empty()) {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push(Problem::new(
                file,
                Some(line),
                Some("storage.url".into()),
                "must be a postgres:// URL; leave it out to use SQLite in storage.data_dir",
            ));
        }
        config.url = Some(url);
    }
    if let Some(dir) = def.data_dir {
        config.data_dir = dir;
    }
    if let Some(days) = def.retention_days {
        config.retention_days = (days > 0).then_some(days);
    }
    match Redactor::new(&def.redact, file) {
        Ok(r) => config.redactor = r,
        Err(mut bad) => {
            for p in &mut bad {
                p.line = Some(line);
            }
            problems.extend(bad);
        }
    }
    config
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuildDef {
    id: toml::Value,
    name: Option<String>,
    #[serde(default)]
    watch_channels: Vec<toml::Value>,
    #[serde(default)]
    watch_categories: Vec<toml::Value>,
    #[serde(default)]
    agent_roles: Vec<toml::Value>,
    #[serde(default)]
    agent_users: Vec<toml::Value>,
    #[serde(default)]
    lead_roles: Vec<toml::Value>,
    coaching_channel: Option<toml::Value>,
    #[serde(default)]
    delivery: Delivery,
    time_zone: Option<String>,
    cooldown: Option<SignedDuration>,
    #[serde(default)]
    business_hours: HoursOverrides,
    #[serde(default)]
    follow_up: FollowUpOverrides,
    #[serde(default)]
    digest: DigestDef,
}

fn snowflake(v: &toml::Value) -> Option<u64> {
    match v {
        toml::Value::String(s) => s.trim().parse().ok(),
        toml::Value::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

impl BotConfig {
    /// Parses `backstop.toml`; `defaults` are the engine settings from engine.toml.
    pub fn parse(file: &str, text: &str, defaults: &Settings) -> Result<BotConfig, Problems> {
        let def: FileDef =
            toml::from_str(text).map_err(|e| Problems(vec![crate::engine::toml_problem(file, text, &e)]))?;
        let mut problems = Vec::new();
        let storage = storage(file, text, def.storage, &mut problems);
        let metrics_listen = def.metrics.and_then(|m| {
            let line = crate::engine::line_of(text, m.span().start);
            let listen = m.into_inner().listen?;
            match listen.parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    problems.push(Problem::new(
                        file,
                        Some(line),
                        Some("metrics.listen".into()),
                        format!("{listen:?} is not an address like \"127.0.0.1:9100\""),
                    ));
                    None
                }
            }
        });
        let mut guilds = Vec::new();
        for (index, spanned) in def.guild.into_iter().enumerate() {
            let line = crate::engine::line_of(text, spanned.span().start);
            let at = |key: &str| format!("guild[{index}].{key}");
            let mut report = |key: String, msg: String| problems.push(Problem::new(file, Some(line), Some(key), msg));
            let g: GuildDef = match spanned.into_inner().try_into() {
                Ok(g) => g,
                Err(e) => {
                    report(format!("guild[{index}]"), e.message().trim().to_string());
                    continue;
                }
            };
            let mut ids = |key: &str, values: &[toml::Value]| -> HashSet<u64> {
                let mut out = HashSet::new();
                for (i, v) in values.iter().enumerate() {
                    match snowflake(v) {
                        Some(id) => {
                            out.insert(id);
                        }
                        None => report(
                            format!("{}[{i}]", at(key)),
                            format!("{v} is not a Discord id (a number like \"123456789012345678\")"),
                        ),
                    }
                }
                out
            };
            let watch_channels = ids("watch_channels", &g.watch_channels);
            let watch_categories = ids("watch_categories", &g.watch_categories);
            let agent_roles = ids("agent_roles", &g.agent_roles);
            let agent_users = ids("agent_users", &g.agent_users);
            let lead_roles = ids("lead_roles", &g.lead_roles);
            let coaching_channel = g
                .coaching_channel
                .as_ref()
                .map(|v| ids("coaching_channel", std::slice::from_ref(v)));
            let id = snowflake(&g.id);
            let overrides = Overrides {
                time_zone: g.time_zone.as_deref(),
                cooldown: g.cooldown,
                business_hours: Some(&g.business_hours),
                follow_up: Some(&g.follow_up),
            };
            let settings = defaults.with_overrides(&overrides).unwrap_or_else(|bad| {
                for (key, msg) in bad {
                    problems.push(Problem::new(file, Some(line), Some(at(&key)), msg));
                }
                defaults.clone()
            });
            let mut more = Vec::new();
            if id.is_none() {
                more.push((at("id"), format!("{} is not a Discord id", g.id)));
            }
            if watch_channels.is_empty() && watch_categories.is_empty() {
                more.push((
                    at("watch_channels"),
                    "watch at least one channel or category".to_string(),
                ));
            }
            if agent_roles.is_empty() && agent_users.is_empty() {
                more.push((
                    at("agent_roles"),
                    "name at least one agent role or agent user".to_string(),
                ));
            }
            let mut digests = Vec::new();
            for (key, text, weekly) in [("daily", &g.digest.daily, false), ("weekly", &g.digest.weekly, true)] {
                if let Some(text) = text {
                    match Cadence::parse(text, weekly) {
                        Ok(c) => digests.push(c),
                        Err(e) => more.push((at(&format!("digest.{key}")), e)),
                    }
                }
            }
            if !digests.is_empty() && g.coaching_channel.is_none() {
                more.push((
                    at("digest"),
                    "digests are posted to the coaching_channel: set one".to_string(),
                ));
            }
            if g.delivery == Delivery::Thread && g.coaching_channel.is_none() {
                more.push((
                    at("delivery"),
                    "\"thread\" delivery needs a coaching_channel".to_string(),
                ));
            }
            for (key, msg) in more {
                problems.push(Problem::new(file, Some(line), Some(key), msg));
            }
            if let Some(id) = id {
                guilds.push(GuildConfig {
                    id,
                    name: g.name.unwrap_or_else(|| id.to_string()),
                    watch_channels,
                    watch_categories,
                    agent_roles,
                    agent_users,
                    lead_roles,
                    coaching_channel: coaching_channel.and_then(|s| s.into_iter().next()),
                    delivery: g.delivery,
                    escalate_after: settings.escalate_after,
                    settings,
                    digests,
                    digest_per_agent: g.digest.per_agent,
                });
            }
        }
        if guilds.is_empty() && problems.is_empty() {
            problems.push(Problem::new(file, None, None, "no [[guild]] configured"));
        }
        if problems.is_empty() {
            Ok(BotConfig {
                token_file: def.token_file,
                guilds,
                storage,
                metrics_listen,
            })
        } else {
            Err(Problems(problems))
        }
    }

    pub fn guild(&self, id: u64) -> Option<&GuildConfig> {
        self.guilds.iter().find(|g| g.id == id)
    }
}

/// A Discord bot token. Never printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(secret: String) -> Token {
        Token(secret.trim().to_string())
    }

    /// The secret itself, for handing to the HTTP client and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// From `DISCORD_TOKEN`, else from `token_file`.
    pub fn load(env: Option<String>, token_file: Option<&Path>) -> Result<Token, TokenError> {
        if let Some(t) = env.filter(|t| !t.trim().is_empty()) {
            return Ok(Token::new(t));
        }
        let Some(path) = token_file else {
            return Err(TokenError::Missing);
        };
        match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Ok(Token::new(t)),
            Ok(_) => Err(TokenError::Empty(path.to_path_buf())),
            Err(e) => Err(TokenError::Unreadable(path.to_path_buf(), e)),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no Discord token: set DISCORD_TOKEN or token_file in config/backstop.toml")]
    Missing,
    #[error("token file {0} is empty")]
    Empty(PathBuf),
    #[error("cannot read token file {0}: {1}")]
    Unreadable(PathBuf, std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[guild]]
id = "111111111111111111"
name = "Acme"
watch_channels = ["222222222222222222"]
watch_categories = [333333333333333333]
agent_roles = ["444444444444444444"]
coaching_channel = "555555555555555555"
time_zone = "Europe/London"
[guild.follow_up]
reminder_lead = "30m"
escalate_after = "1h"
"#;

    #[test]
    fn parses_ids_overrides_and_defaults() {
        let c = BotConfig::parse("backstop.toml", GOOD, &Settings::default()).unwrap();
        let g = &c.guilds[0];
        assert_eq!(g.id, 111111111111111111);
        assert!(g.watch_categories.contains(&333333333333333333));
        assert_eq!(g.coaching_channel, Some(555555555555555555));
        assert_eq!(g.settings.reminder_lead, SignedDuration::from_mins(30));
        assert_eq!(g.settings.cooldown, Settings::default().cooldown);
        assert_eq!(g.escalate_after, SignedDuration::from_hours(1));
        assert_eq!(g.settings.schedule.time_zone.iana_name(), Some("Europe/London"));
    }

    #[test]
    fn bad_ids_and_unknown_keys_name_the_key() {
        let text = GOOD
            .replace("\"222222222222222222\"", "\"general\"")
            .replace("name = \"Acme\"", "name = \"Acme\"\nwatch_channel = []");
        let err = BotConfig::parse("backstop.toml", &text, &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backstop.toml:2: guild[0]: unknown field `watch_channel`"),
            "{err}"
        );
        let text = GOOD.replace("\"222222222222222222\"", "\"general\"");
        let err = BotConfig::parse("backstop.toml", &text, &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("guild[0].watch_channels[0]: \"general\" is not a Discord id"),
            "{err}"
        );
    }

    #[test]
    fn storage_defaults_to_sqlite_and_checks_its_keys() {
        let c = BotConfig::parse("backstop.toml", GOOD, &Settings::default()).unwrap();
        assert_eq!(c.storage.url, None);
        assert_eq!(c.storage.sqlite_path(), Some(PathBuf::from("data/backstop.db")));
        let text = format!(
            "{GOOD}\n[storage]\ndata_dir = \"/var/lib/backstop\"\nretention_days = 30\n\
             [[storage.redact]]\nname = \"member\"\npattern = \"MEM\\\\d+\"\n"
        );
        let c = BotConfig::parse("backstop.toml", &text, &Settings::default()).unwrap();
        assert_eq!(c.storage.data_dir, PathBuf::from("/var/lib/backstop"));
        assert_eq!(c.storage.retention_days, Some(30));
        assert_eq!(c.storage.redactor.redact("card MEM123"), "card [redacted]");
        let bad = format!("{GOOD}\n[storage]\nurl = \"mysql://x\"\nretain = 3\n");
        let err = BotConfig::parse("backstop.toml", &bad, &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage: unknown field `retain`"), "{err}");
        let bad = format!("{GOOD}\n[storage]\nurl = \"mysql://x\"\n");
        let err = BotConfig::parse("backstop.toml", &bad, &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.url: must be a postgres:// URL"), "{err}");
    }

    #[test]
    fn the_token_is_never_printed() {
        let t = Token::new("very-secret-token".into());
        assert!(!format!("{t:?} {t}").contains("secret"));
        assert_eq!(t.expose(), "very-secret-token");
        assert!(matches!(Token::load(None, None), Err(TokenError::Missing)));
        assert_eq!(Token::load(Some("abc".into()), None).unwrap().expose(), "abc");
    }
}
