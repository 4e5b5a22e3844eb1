//! `backstop demo`: the real bot against the local Discord stand-in, playing a day of support
//! through the gateway and printing every message and every private nudge as it happens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use backstop::clock::{Clock, ManualClock};
use backstop::config::Sources;
use backstop::discord::config::{BotConfig, Token};
use backstop::discord::{start, Endpoint, Options};
use backstop::engine::Role;
use backstop::store::{StorageConfig, Store};
use backstop::transcript::{parse_all, Record};
use backstop_stand_in::{message_json, user_json, ChannelSpec, GuildSpec, MemberSpec, RoleSpec, Seen, StandIn};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The day to play (JSON Lines transcript).
    #[arg(default_value = "examples/support-day.jsonl")]
    file: PathBuf,
    /// Playback speed: 60 plays a minute of the day per second. 0 (default) plays as fast as the
    /// bot takes messages.
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
}

const GUILD: u64 = 700_000_000_000_000_001;
const AGENT_ROLE: u64 = 700_000_000_000_000_002;
const SUPPORT: u64 = 700_000_000_000_000_010;
const COACHING: u64 = 700_000_000_000_000_011;

/// Stable Discord ids for the transcript's people and conversations.
struct Cast {
    people: BTreeMap<String, (u64, String, Role)>,
    threads: BTreeMap<String, u64>,
}

impl Cast {
    fn of(records: &[(u64, Record)]) -> Cast {
        let mut people = BTreeMap::new();
        let mut threads = BTreeMap::new();
        for (_, r) in records {
            let n = people.len() as u64;
            people
                .entry(r.author.clone())
                .or_insert((700_000_000_000_100_000 + n, r.author.clone(), r.role));
            let t = threads.len() as u64;
            threads
                .entry(r.conversation.clone())
                .or_insert(700_000_000_000_200_000 + t);
        }
        Cast { people, threads }
    }

    fn name_of(&self, id: u64) -> String {
        self.people
            .values()
            .find(|(i, _, _)| *i == id)
            .map_or(id.to_string(), |(_, n, _)| n.clone())
    }

    fn guild(&self) -> GuildSpec {
        let mut channels = vec![
            ChannelSpec {
                id: SUPPORT,
                kind: 0,
                name: "support".into(),
                parent_id: None,
            },
            ChannelSpec {
                id: COACHING,
                kind: 0,
                name: "coaching".into(),
                parent_id: None,
            },
        ];
        channels.extend(self.threads.iter().map(|(name, id)| ChannelSpec {
            id: *id,
            kind: 11,
            name: name.clone(),
            parent_id: Some(SUPPORT),
        }));
        GuildSpec {
            id: GUILD,
            name: "Backstop demo".into(),
            owner_id: 1,
            roles: vec![
                RoleSpec {
                    id: GUILD,
                    name: "@everyone".into(),
                    permissions: 0,
                },
                RoleSpec {
                    id: AGENT_ROLE,
                    name: "Agents".into(),
                    permissions: 0,
                },
            ],
            channels,
            members: self
                .people
                .values()
                .map(|(id, name, role)| MemberSpec {
                    id: *id,
                    name: name.clone(),
                    roles: if *role == Role::Agent { vec![AGENT_ROLE] } else { vec![] },
                    bot: false,
                })
                .collect(),
        }
    }
}

/// Cue nudges and briefs counted by whether they arrived before the agent's reply.
#[derive(Debug, Clone, Copy, Default)]
struct Timing {
    before: usize,
    after: usize,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let records = parse_all(&text).with_context(|| format!("reading {}", args.file.display()))?;
    let first = records.first().map(|(_, r)| r.ts).context("the transcript is empty")?;
    let engine = Sources::default().engine()?;
    let cast = Arc::new(Cast::of(&records));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let stand_in = StandIn::start(0, vec![cast.guild()]).await.context("starting the Discord stand-in")?;
        let counts: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        // The agent (Discord id) who sent the latest message, until someone types or writes next:
        // a cue nudge or brief reaching them meanwhile came after their reply.
        let replied: Arc<Mutex<Option<u64>>> = Arc::default();
        let timing: Arc<Mutex<Timing>> = Arc::default();
        {
            let (probe, cast, counts) = (stand_in.probe(), cast.clone(), counts.clone());
            let (replied, timing) = (replied.clone(), timing.clone());
            stand_in.watch(move |seen| {
                let Seen::Request(r) = seen else { return };
                let channel = r.path.strip_prefix("/channels/").and_then(|p| p.strip_suffix("/messages")).and_then(|c| c.parse::<u64>().ok());
                let Some(channel) = channel.filter(|_| r.method == "POST" && r.status == 200) else { return };
                let recipient = probe.dm_recipient(channel);
                let to = match (recipient, probe.is_created_thread(channel), channel == COACHING) {
                    (Some(user), _, _) => format!("DM to {}", cast.name_of(user)),
                    (_, true, _) => "coaching thread".to_string(),
                    (_, _, true) => "#coaching (team)".to_string(),
                    _ => return,
                };
                let embed = &r.body["embeds"][0];
                let kind = embed["footer"]["text"].as_str().unwrap_or("").split(" · ").next().unwrap_or("").to_string();
                let buttons: Vec<&str> = r.body["components"][0]["components"].as_array().map(|b| b.iter().filter_map(|b| b["label"].as_str()).collect()).unwrap_or_default();
                println!("        ↳ {to}: {} [{}]{}", embed["title"].as_str().unwrap_or(""), if kind.is_empty() { "escalation" } else { &kind }, if buttons.is_empty() { String::new() } else { format!("  buttons: {}", buttons.join(" · ")) });
                if kind == "prior_failure" || kind == "handoff_brief" {
                    let after = recipient.is_some() && *replied.lock().unwrap_or_else(|e| e.into_inner()) == recipient;
                    let mut t = timing.lock().unwrap_or_else(|e| e.into_inner());
                    if after { t.after += 1 } else { t.before += 1 }
                }
                *counts.lock().unwrap_or_else(|e| e.into_inner()).entry(if kind.is_empty() { "escalation".into() } else { kind }).or_default() += 1;
            });
        }
        let config_text = format!("[[guild]]\nid = \"{GUILD}\"\nname = \"Backstop demo\"\nwatch_channels = [\"{SUPPORT}\"]\nagent_roles = [\"{AGENT_ROLE}\"]\ncoaching_channel = \"{COACHING}\"\n");
        let config = BotConfig::parse("(demo) backstop.toml", &config_text, engine.settings())?;
        let clock = ManualClock::new(first);
        // The demo keeps its state in a scratch folder of its own, removed at the end.
        let data_dir = std::env::temp_dir().join(format!("backstop-demo-{}", std::process::id()));
        let store = Store::open(&StorageConfig { data_dir: data_dir.clone(), ..StorageConfig::default() }).await?;
        let options = Options { endpoint: Endpoint { api: Some(stand_in.url()) }, clock: Clock::Manual(clock.clone()), shards: None, metrics: None, sources: None };
        let bot = start(&engine, Arc::new(config), &Token::new("demo-token".into()), store, options).await?;
        if !stand_in.wait_identified(Duration::from_secs(15)).await {
            anyhow::bail!("the bot did not connect to the stand-in");
        }
        stand_in.wait_until(Duration::from_secs(15), |r| r.iter().any(|r| r.path.ends_with("/commands"))).await;
        println!("Backstop demo: {} messages from {} on a local Discord stand-in at {}\n", records.len(), args.file.display(), stand_in.url());
        let mut previous = first;
        let mut previous_sent = first;
        for (_, r) in &records {
            if args.speed > 0.0 {
                let gap = (r.ts - previous).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0) / args.speed;
                tokio::time::sleep(Duration::from_secs_f64(gap.min(30.0))).await;
            }
            previous = r.ts;
            let (id, name, role) = cast.people[&r.author].clone();
            let roles: Vec<u64> = if role == Role::Agent { vec![AGENT_ROLE] } else { vec![] };
            let thread = cast.threads[&r.conversation];
            println!("{} [{}] {}{}: {}", r.ts.strftime("%H:%M"), r.conversation, name, if role == Role::Agent { " (agent)" } else { "" }, r.text.replace('\n', " "));
            if let Some(started) = r.typing_started() {
                // The agent starts typing before they send: a cue nobody has answered yet, or the
                // brief on a conversation they take over, reaches them now.
                let started = started.max(previous_sent);
                clock.advance_to(started);
                *replied.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let typing = json!({"channel_id": thread.to_string(), "guild_id": GUILD.to_string(), "user_id": id.to_string(), "timestamp": started.as_second()});
                stand_in.dispatch("TYPING_START", typing);
                // Time for the bot to read the typing and send what it holds before the message
                // lands; the summary counts any that a slow machine still delivers after it.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            clock.advance_to(r.ts);
            previous_sent = r.ts;
            *replied.lock().unwrap_or_else(|e| e.into_inner()) = (role == Role::Agent).then_some(id);
            let message = message_json(stand_in.snowflake(), thread, Some(GUILD), user_json(id, &name, false), Some(&roles), &r.text, &r.ts.to_string(), json!({}));
            stand_in.dispatch("MESSAGE_CREATE", message);
            // Let the bot read it before the next one, so output stays in order.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        bot.shutdown().await?;
        let _ = std::fs::remove_dir_all(&data_dir);
        let counts = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let total: usize = counts.values().sum();
        let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("\n{} messages played; {total} private nudges delivered ({})", records.len(), by_kind.join(", "));
        let timing = *timing.lock().unwrap_or_else(|e| e.into_inner());
        println!(
            "{} of {} prior-failure nudges and hand-off briefs reached the agent before their reply",
            timing.before,
            timing.before + timing.after
        );
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
