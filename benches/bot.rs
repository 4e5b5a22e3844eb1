//! The whole bot, end to end, through the local Discord stand-in on loopback: 10,000 customer and
//! agent messages pushed through the gateway as fast as the bot takes them. Reports throughput,
//! latency from dispatch to the DM request reaching the stand-in, and resident memory after the run
//! (bot, stand-in and this driver share one process, so it is an upper bound for the bot).
//!
//! `cargo bench --bench bot`

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use backstop::clock::{Clock, ManualClock};
use backstop::discord::config::{BotConfig, Token};
use backstop::discord::{start, Endpoint, Options};
use backstop::engine::Role;
use backstop::store::{StorageConfig, Store};
use backstop_stand_in::{message_json, user_json, ChannelSpec, GuildSpec, MemberSpec, RoleSpec, Seen, StandIn};

const N: usize = 10_000;
const GUILD: u64 = 800_000_000_000_000_001;
const AGENT_ROLE: u64 = 800_000_000_000_000_002;
const SUPPORT: u64 = 800_000_000_000_000_010;

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("backstop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn main() {
    let (mut records, source) = common::stream();
    records.truncate(N);
    let mut people: BTreeMap<String, (u64, Role)> = BTreeMap::new();
    let mut threads: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        let n = people.len() as u64;
        people
            .entry(r.author.clone())
            .or_insert((800_000_000_000_100_000 + n, r.role));
        let t = threads.len() as u64;
        threads
            .entry(r.conversation.clone())
            .or_insert(800_000_000_000_200_000 + t);
    }
    let mut channels = vec![ChannelSpec {
        id: SUPPORT,
        kind: 0,
        name: "support".into(),
        parent_id: None,
    }];
    channels.extend(threads.iter().map(|(name, id)| ChannelSpec {
        id: *id,
        kind: 11,
        name: name.clone(),
        parent_id: Some(SUPPORT),
    }));
    let guild = GuildSpec {
        id: GUILD,
        name: "bench".into(),
        owner_id: 1,
        roles: vec![RoleSpec {
            id: AGENT_ROLE,
            name: "Agents".into(),
            permissions: 0,
        }],
        channels,
        members: people
            .iter()
            .map(|(name, (id, role))| MemberSpec {
                id: *id,
                name: name.clone(),
                roles: if *role == Role::Agent { vec![AGENT_ROLE] } else { vec![] },
                bot: false,
            })
            .collect(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let stand_in = StandIn::start(0, vec![guild]).await.expect("stand-in");
        let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
        {
            let (sent_at, latencies, probe) = (sent_at.clone(), latencies.clone(), stand_in.probe());
            stand_in.watch(move |seen| {
                let Seen::Request(r) = seen else { return };
                let Some(channel) = r
                    .path
                    .strip_prefix("/channels/")
                    .and_then(|p| p.strip_suffix("/messages"))
                    .and_then(|c| c.parse().ok())
                else {
                    return;
                };
                if r.method != "POST" || probe.dm_recipient(channel).is_none() {
                    return;
                }
                // Reminders fire on the clock, not on a message: only message-caused nudges count.
                let kind = r.body["embeds"][0]["footer"]["text"].as_str().unwrap_or("");
                if kind.starts_with("follow_up_reminder") || kind.starts_with("follow_up_overdue") {
                    return;
                }
                // The jump link's last segment is the message that caused the nudge.
                let fields = r.body["embeds"][0]["fields"].as_array().cloned().unwrap_or_default();
                let cause = fields
                    .iter()
                    .filter_map(|f| f["value"].as_str())
                    .find_map(|v| v.split('/').next_back()?.trim_end_matches(')').parse::<u64>().ok());
                if let Some(at) = cause.and_then(|id| sent_at.lock().unwrap().get(&id).copied()) {
                    latencies.lock().unwrap().push(at.elapsed());
                }
            });
        }
        let engine = common::engine();
        let config = format!(
            "[[guild]]\nid = \"{GUILD}\"\nwatch_channels = [\"{SUPPORT}\"]\nagent_roles = [\"{AGENT_ROLE}\"]\n"
        );
        let config = BotConfig::parse("bench", &config, engine.settings()).expect("config");
        let clock = ManualClock::new(records[0].ts);
        let data = tempfile::tempdir().expect("scratch folder");
        let store = Store::open(&StorageConfig {
            data_dir: data.path().to_path_buf(),
            ..StorageConfig::default()
        })
        .await
        .expect("SQLite store opens");
        let options = Options {
            endpoint: Endpoint {
                api: Some(stand_in.url()),
            },
            clock: Clock::Manual(clock.clone()),
            shards: None,
            metrics: None,
            sources: None,
        };
        let bot = start(&engine, Arc::new(config), &Token::new("bench".into()), store, options)
            .await
            .expect("bot starts");
        assert!(stand_in.wait_identified(Duration::from_secs(30)).await);
        stand_in
            .wait_until(Duration::from_secs(30), |r| {
                r.iter().any(|r| r.path.ends_with("/commands"))
            })
            .await;
        let started = Instant::now();
        for r in &records {
            let (id, role) = people[&r.author];
            let roles: Vec<u64> = if role == Role::Agent { vec![AGENT_ROLE] } else { vec![] };
            let message_id = stand_in.snowflake();
            clock.advance_to(r.ts);
            let m = message_json(
                message_id,
                threads[&r.conversation],
                Some(GUILD),
                user_json(id, &r.author, false),
                Some(&roles),
                &r.text,
                &r.ts.to_string(),
                json!({}),
            );
            sent_at.lock().unwrap().insert(message_id, Instant::now());
            stand_in.dispatch("MESSAGE_CREATE", m);
        }
        let coach = bot.coach.clone();
        while coach.messages_seen.load(Ordering::Relaxed) < records.len() as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        coach.in_flight.drain(Duration::from_secs(30)).await;
        let elapsed = started.elapsed();
        let burst_dms = latencies.lock().unwrap().len();
        // Latency without queueing: replay the same stream in new threads (fresh conversations),
        // one message at a time, sending the next once the bot has taken the previous one.
        latencies.lock().unwrap().clear();
        sent_at.lock().unwrap().clear();
        let base = coach.messages_seen.load(Ordering::Relaxed);
        for (i, r) in records.iter().enumerate() {
            let (id, role) = people[&r.author];
            let roles: Vec<u64> = if role == Role::Agent { vec![AGENT_ROLE] } else { vec![] };
            let message_id = stand_in.snowflake();
            let thread = threads[&r.conversation];
            let m = message_json(
                message_id,
                thread,
                Some(GUILD),
                user_json(id, &r.author, false),
                Some(&roles),
                &r.text,
                &r.ts
                    .checked_add(jiff::SignedDuration::from_hours(48))
                    .unwrap()
                    .to_string(),
                json!({}),
            );
            clock.advance_to(r.ts.checked_add(jiff::SignedDuration::from_hours(48)).unwrap());
            sent_at.lock().unwrap().insert(message_id, Instant::now());
            stand_in.dispatch("MESSAGE_CREATE", m);
            while coach.messages_seen.load(Ordering::Relaxed) < base + i as u64 + 1 {
                tokio::task::yield_now().await;
            }
        }
        coach.in_flight.drain(Duration::from_secs(30)).await;
        let mut lat = latencies.lock().unwrap().clone();
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "stream: {} messages ({source}); {burst_dms} DMs in the burst, {} nudges timed in the paced run",
            records.len(),
            lat.len()
        );
        println!("| measure | value |");
        println!("|---|---|");
        println!(
            "| messages/s end to end, all 10,000 pushed at once | {:.0} |",
            records.len() as f64 / elapsed.as_secs_f64()
        );
        println!(
            "| dispatch → DM request p50, one message at a time | {:.2} ms |",
            pct(0.5)
        );
        println!(
            "| dispatch → DM request p99, one message at a time | {:.2} ms |",
            pct(0.99)
        );
        println!(
            "| resident memory after the run (bot + stand-in + driver) | {:.0} MiB |",
            common::proc_mib("self", "VmRSS:")
        );
        bot.shutdown().await.expect("shutdown");

        // The bot's own memory: the real binary in its own process against the same stand-in.
        let dir = tempfile_dir();
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        common::copy_config(&dir);
        std::fs::write(
            dir.join("backstop.toml"),
            format!(
                "[[guild]]\nid = \"{GUILD}\"\nwatch_channels = [\"{SUPPORT}\"]\nagent_roles = [\"{AGENT_ROLE}\"]\n"
            ),
        )
        .expect("write config");
        let connections = stand_in.connections();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_backstop"))
            .arg("run")
            .arg("--config")
            .arg(&dir)
            .arg("--prompts")
            .arg(root.join("prompts"))
            .arg("--discord-api")
            .arg(stand_in.url())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("DISCORD_TOKEN", "bench")
            .spawn()
            .expect("start backstop run");
        while stand_in.connections() == connections {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for r in &records {
            let (id, role) = people[&r.author];
            let roles: Vec<u64> = if role == Role::Agent { vec![AGENT_ROLE] } else { vec![] };
            let m = message_json(
                stand_in.snowflake(),
                threads[&r.conversation],
                Some(GUILD),
                user_json(id, &r.author, false),
                Some(&roles),
                &r.text,
                &jiff::Timestamp::now().to_string(),
                json!({}),
            );
            stand_in.dispatch("MESSAGE_CREATE", m);
        }
        // Done when the stand-in has heard nothing new from the bot for two seconds.
        let mut seen = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = stand_in.requests().len();
            if now == seen {
                break;
            }
            seen = now;
        }
        let rss = common::proc_mib(&child.id().to_string(), "VmRSS:");
        println!("| resident memory of `backstop run` alone after the same 10,000 messages | {rss:.0} MiB |");
        // SIGTERM: the bot stops taking events, finishes in-flight sends and exits 0.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().expect("wait for backstop run");
        println!("| `backstop run` exit status after SIGTERM | {status} |");
    });
}
