//! The soak: does `backstop run` stay flat and lose nothing over a long day? A million customer
//! and agent messages go through the local Discord stand-in into the real bot binary, running in
//! its own process, first on SQLite and then (with `BACKSTOP_TEST_POSTGRES` set) on PostgreSQL.
//!
//! `cargo bench --bench soak` (`SOAK_MESSAGES` for a shorter run, `SOAK_RATE` for the pace in
//! messages a second, default 2,000; `SOAK_SKIP_SQLITE` to soak PostgreSQL alone).
//!
//! How: the stand-in runs in this process with one guild: a #support channel with 7,000 threads,
//! a coaching channel (escalations, daily digests), 40 agents and 3,000 customers. The bot is
//! `target/release/backstop` as Cargo builds it for this bench (`CARGO_BIN_EXE_backstop`), started
//! with `backstop run` and a temporary config folder (backstop.toml, token file) pointed at the
//! stand-in, serving `/metrics` on loopback. Its clock runs fast (`--clock`): each message moves
//! the bot's day on by 1.5 s, so a conversation's messages come about ten minutes apart, the day
//! turns every ~58,000 messages, conversations go idle and are forgotten, promises come due and
//! their reminders, overdue notices and escalations fire. 400 conversations are open at a time,
//! each in a thread not reused for about 18 hours of the bot's time; a third of them carry one
//! agent promise ("I'll get back to you by 3pm."). Messages are stamped with the bot's clock.
//!
//! The driver paces itself at `SOAK_RATE` and holds back when the bot is more than 2,000
//! messages behind, polling `backstop_messages_seen_total` on `/metrics` (the bot's own messages
//! that the stand-in echoes back are counted out). Every 1% of the messages it samples the bot's
//! resident set (VmRSS in /proc/<pid>/status).
//!
//! Checks, each printed as PASS or FAIL (the process exits 1 on any FAIL):
//! - memory is flat over the second half: no sample after the half-way mark is more than 10%
//!   above the sample at the half-way mark (the first half is warm-up: caches, pools, the
//!   allocator's arenas and the set of remembered conversations fill);
//! - every promise is stored: an engine in this process reads the same stream and names the
//!   messages that make a promise; it must agree with the promise lines sent, and after the bot
//!   stops, the store's promises must be exactly those messages;
//! - the bot stops cleanly on SIGTERM (exit 0) after finishing its writes.
//!
//! The stream is synthetic (lines written for this bench, not the shared corpus): what matters
//! here is volume and time, and a known number of promises.

#[allow(dead_code)] // the corpus stream is for the other benches
mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use backstop::clock::ScaledClock;
use backstop::engine::{self, MessageRef, PromiseChange, Role};
use backstop::store::{StorageConfig, Store};
use backstop_stand_in::{message_json, user_json, ChannelSpec, GuildSpec, MemberSpec, RoleSpec, Seen, StandIn};

const GUILD: u64 = 810_000_000_000_000_001;
const AGENT_ROLE: u64 = 810_000_000_000_000_002;
const SUPPORT: u64 = 810_000_000_000_000_010;
const COACHING: u64 = 810_000_000_000_000_011;
const FIRST_THREAD: u64 = 810_000_000_000_100_000;
const FIRST_CUSTOMER: u64 = 810_000_000_000_200_000;
const FIRST_AGENT: u64 = 810_000_000_000_300_000;

const THREADS: u64 = 7_000;
const CUSTOMERS: u64 = 3_000;
const AGENTS: u64 = 40;
/// Conversations open at once.
const ACTIVE: usize = 400;
/// How far each message moves the bot's clock, in seconds.
const BOT_SECONDS_PER_MESSAGE: f64 = 1.5;
/// How many messages the bot may be behind before the driver waits.
const WINDOW: u64 = 2_000;
/// How far above the half-way sample the second half may go.
const FLAT: f64 = 0.10;
/// Dispatches and requests the stand-in keeps (it would otherwise hold all million).
const HISTORY: usize = 20_000;

const OPENERS: &[&str] = &[
    "hi, order 48213 was supposed to come last thursday and i still havent recieved it",
    "I was charged twice for my subscription this month",
    "My refund still hasn't arrived, it has been 12 days",
    "the app keeps logging me out every time I open it",
    "Hello, the parcel arrived damaged and the screen is cracked",
    "I've been waiting 3 weeks for my replacement card",
    "Why was my account suspended? I never did anything wrong",
    "Can I change the delivery address on order 48377? Just moved flats",
    "I was promised a call back on friday and nobody called",
    "The courier says delivered but there is nothing here",
    "my invoice shows a late fee even though I paid on time",
    "Good morning. I am still waiting for refund of order 47102. Kindly do the needful.",
    "The size I got is wrong, I ordered a medium and got an XL",
    "hey, how do I download my receipts for last year?",
    "the discount code from your email doesn't work at checkout 🙄",
    "This is the third time I'm contacting you about the same broken kettle",
];

const CUSTOMER_DETAILS: &[&str] = &[
    "It's order 51920, placed on the 3rd",
    "The email on the account is the one I'm messaging from",
    "I already tried restarting it twice",
    "Tracking has said out for delivery for 4 days",
    "It was £49.99, taken on the 14th and again on the 15th",
    "I sent photos to your team last week too",
    "yes that's the right address",
    "No, nobody has been in touch since",
    "I'm not very impressed to be honest",
    "ok, what do you need from me?",
];

const AGENT_FIRST: &[&str] = &[
    "I'm so sorry about this, that's not the experience we want you to have. Let me look right now.",
    "Thanks for reaching out, I can help with that. Could you confirm the order number?",
    "I'm really sorry you've had to chase this. Let me check what happened.",
    "Morning! Happy to help. Which email address is on the account?",
    "Sorry for the trouble, that sounds frustrating. Let me pull up your account.",
    "Thanks for your patience, I'm looking into it now.",
];

const AGENT_WORKING: &[&str] = &[
    "Thanks, I can see the order on my side now.",
    "I've found the payment, it was taken twice by mistake.",
    "The courier's last scan was at their depot on the 18th, so it's not moving.",
    "That's been updated on your account.",
    "I've issued the refund to your original payment method.",
    "I can see the suspension was triggered by an automated check.",
    "I've added a note to the account so the team can see the history.",
    "Thanks for the photos, that's clearly transit damage.",
];

/// Agent promises with a time: each makes one promise (the engine in this process checks it).
const PROMISES: &[&str] = &[
    "I'll get back to you by 3pm.",
    "I'll call you back tomorrow by 3pm with an update.",
    "I will follow up with you tomorrow.",
    "I will send you an update within the hour.",
    "You'll hear from me by Friday.",
    "I'll chase the warehouse and call you back by 4.",
    "I will personally update you tomorrow morning.",
    "We will revert within 24 hours.",
];

const CUSTOMER_ACKS: &[&str] = &[
    "ok thanks",
    "oh nice, thank you 🙏",
    "great, cheers",
    "fine. thanks",
    "legend, cheers",
    "ok ty",
];

const AGENT_CLOSERS: &[&str] = &[
    "You're welcome, and sorry again for the hassle.",
    "Glad that's sorted. Have a good day!",
    "Is there anything else I can help with today?",
    "All done on my side, thanks for your patience.",
];

/// A small deterministic generator (xorshift64*), so every run sends the same stream.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn pick<'a>(&mut self, lines: &[&'a str]) -> &'a str {
        lines[self.below(lines.len())]
    }
}

/// One line of a conversation: who says it, and whether it is a promise.
struct Line {
    role: Role,
    text: &'static str,
    promise: bool,
}

/// The `k`th conversation: a complaint or question, an exchange or three, and in a third of them
/// one promise, either mid-way (the agent's later message keeps it) or last (reminded, overdue and
/// escalated, unless an agent message in the thread's next conversation counts as the follow-up).
fn script(k: u64, rng: &mut Rng) -> Vec<Line> {
    let say = |role, text| Line {
        role,
        text,
        promise: false,
    };
    let mut lines = vec![
        say(Role::Customer, rng.pick(OPENERS)),
        say(Role::Agent, rng.pick(AGENT_FIRST)),
    ];
    for _ in 0..rng.below(3) {
        lines.push(say(Role::Customer, rng.pick(CUSTOMER_DETAILS)));
        lines.push(say(Role::Agent, rng.pick(AGENT_WORKING)));
    }
    let promise = Line {
        role: Role::Agent,
        text: rng.pick(PROMISES),
        promise: true,
    };
    match k % 6 {
        0 => {
            lines.push(promise);
            lines.push(say(Role::Customer, rng.pick(CUSTOMER_ACKS)));
            lines.push(say(Role::Agent, rng.pick(AGENT_CLOSERS)));
        }
        3 => {
            lines.push(promise);
            lines.push(say(Role::Customer, rng.pick(CUSTOMER_ACKS)));
        }
        _ => {
            lines.push(say(Role::Customer, rng.pick(CUSTOMER_ACKS)));
            lines.push(say(Role::Agent, rng.pick(AGENT_CLOSERS)));
        }
    }
    lines
}

/// A conversation in progress.
struct Conversation {
    thread: u64,
    customer: u64,
    agent: u64,
    lines: Vec<Line>,
    next: usize,
}

/// Starts conversations in turn, each in the next thread not in use.
struct Conversations {
    rng: Rng,
    started: u64,
    next_thread: u64,
    busy: HashSet<u64>,
}

impl Conversations {
    fn start(&mut self) -> Conversation {
        let mut thread = FIRST_THREAD + self.next_thread % THREADS;
        while self.busy.contains(&thread) {
            self.next_thread += 1;
            thread = FIRST_THREAD + self.next_thread % THREADS;
        }
        self.next_thread += 1;
        self.busy.insert(thread);
        let k = self.started;
        self.started += 1;
        Conversation {
            thread,
            customer: FIRST_CUSTOMER + self.rng.below(CUSTOMERS as usize) as u64,
            agent: FIRST_AGENT + self.rng.below(AGENTS as usize) as u64,
            lines: script(k, &mut self.rng),
            next: 0,
        }
    }
}

fn guild() -> GuildSpec {
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
    channels.extend((0..THREADS).map(|t| ChannelSpec {
        id: FIRST_THREAD + t,
        kind: 11,
        name: format!("ticket-{t}"),
        parent_id: Some(SUPPORT),
    }));
    let customers = (0..CUSTOMERS).map(|c| MemberSpec {
        id: FIRST_CUSTOMER + c,
        name: format!("customer{c}"),
        roles: vec![],
        bot: false,
    });
    let agents = (0..AGENTS).map(|a| MemberSpec {
        id: FIRST_AGENT + a,
        name: format!("agent{a}"),
        roles: vec![AGENT_ROLE],
        bot: false,
    });
    GuildSpec {
        id: GUILD,
        name: "Soak".into(),
        owner_id: 1,
        roles: vec![RoleSpec {
            id: AGENT_ROLE,
            name: "Agents".into(),
            permissions: 0,
        }],
        channels,
        members: customers.chain(agents).collect(),
    }
}

/// Where the bot keeps its state in one run.
enum Storage {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Storage {
    fn config(&self) -> StorageConfig {
        match self {
            Storage::Sqlite(dir) => StorageConfig {
                data_dir: dir.clone(),
                retention_days: None,
                ..StorageConfig::default()
            },
            Storage::Postgres(url) => StorageConfig {
                url: Some(url.clone()),
                retention_days: None,
                ..StorageConfig::default()
            },
        }
    }

    fn toml(&self) -> String {
        let value = |s: &str| toml::Value::String(s.to_string()).to_string();
        match self {
            Storage::Sqlite(dir) => format!("data_dir = {}", value(&dir.display().to_string())),
            Storage::Postgres(url) => format!("url = {}", value(url)),
        }
    }
}

/// Kills the bot if the driver stops early (a panic), so no stray process is left.
struct Bot(std::process::Child);

impl Drop for Bot {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `GET path` on the bot's metrics address; the body, or `None` if it does not answer.
async fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The sum of a Prometheus metric over its labels.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The bot's messages-seen counter (every MESSAGE_CREATE it handled, its own echoes included).
async fn seen(addr: std::net::SocketAddr) -> u64 {
    match get(addr, "/metrics").await {
        Some(text) => metric(&text, "backstop_messages_seen_total") as u64,
        None => 0,
    }
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port for /metrics")
}

/// One RSS sample: after how many messages, when, and the bot's resident set in MiB.
struct Sample {
    sent: u64,
    secs: f64,
    rss: f64,
    /// Writes waiting in the bot's queue for the database.
    queued: u64,
}

/// Runs the soak on one backend; returns whether every check passed.
async fn soak(label: &str, storage: Storage, messages: u64, rate: f64) -> bool {
    println!("\n## {label}: {messages} messages at up to {rate:.0} a second\n");
    let stand_in = StandIn::start(0, vec![guild()]).await.expect("stand-in starts");
    stand_in.limit_history(HISTORY);
    // The bot's own posts in guild channels (escalations, digests) come back as MESSAGE_CREATEs
    // and count in messages seen; DMs (the nudges) do not.
    let echoes = Arc::new(AtomicU64::new(0));
    let dms = Arc::new(AtomicU64::new(0));
    {
        let (echoes, dms, probe) = (echoes.clone(), dms.clone(), stand_in.probe());
        stand_in.watch(move |seen| {
            let Seen::Request(r) = seen else { return };
            let Some(channel) = r
                .path
                .strip_prefix("/channels/")
                .and_then(|p| p.strip_suffix("/messages"))
                .and_then(|c| c.parse::<u64>().ok())
            else {
                return;
            };
            if r.method != "POST" || r.status != 200 {
                return;
            }
            if probe.dm_recipient(channel).is_some() {
                dms.fetch_add(1, Ordering::Relaxed);
            } else {
                echoes.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let dir = tempfile::tempdir().expect("scratch folder");
    let config_dir = dir.path().join("config");
    common::copy_config(&config_dir);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "soak-bench-token-not-real").expect("write token file");
    let toml_path = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    std::fs::write(
        config_dir.join("backstop.toml"),
        format!(
            "token_file = {}\n\n[[guild]]\nid = \"{GUILD}\"\nname = \"Soak\"\nwatch_channels = [\"{SUPPORT}\"]\n\
             agent_roles = [\"{AGENT_ROLE}\"]\ncoaching_channel = \"{COACHING}\"\n\n[guild.digest]\ndaily = \"17:30\"\n\n\
             # Keep every row: the promise count is checked against the store at the end.\n\
             [storage]\nretention_days = 0\n{}\n",
            toml_path(&token_file),
            storage.toml()
        ),
    )
    .expect("write backstop.toml");

    let metrics_addr = free_port();
    let clock = ScaledClock {
        start: "2026-03-02T08:00:00Z".parse().expect("start time"),
        real_start: jiff::Timestamp::now(),
        speed: rate * BOT_SECONDS_PER_MESSAGE,
    };
    let log_path = dir.path().join("backstop.log");
    let log = std::fs::File::create(&log_path).expect("bot log file");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_backstop"))
        .arg("run")
        .arg("--config")
        .arg(&config_dir)
        .arg("--prompts")
        .arg(root.join("prompts"))
        .arg("--discord-api")
        .arg(stand_in.url())
        .arg("--metrics-listen")
        .arg(metrics_addr.to_string())
        .arg("--clock")
        .arg(format!("{},{},{}", clock.start, clock.real_start, clock.speed))
        .env_remove("DISCORD_TOKEN")
        .env_remove("BACKSTOP_DATABASE_URL")
        .env_remove("BACKSTOP_DATA_DIR")
        .env("RUST_LOG", "backstop=warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start backstop run");
    let mut bot = Bot(child);
    let pid = bot.0.id().to_string();

    assert!(
        stand_in.wait_identified(Duration::from_secs(60)).await,
        "the bot did not connect to the stand-in within a minute; see {}",
        log_path.display()
    );
    stand_in
        .wait_until(Duration::from_secs(30), |r| {
            r.iter().any(|r| r.path.ends_with("/commands"))
        })
        .await;
    let up = Instant::now();
    while get(metrics_addr, "/healthz").await.is_none() {
        assert!(up.elapsed() < Duration::from_secs(30), "/healthz never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_start = common::proc_mib(&pid, "VmRSS:");

    // The same stream read by an engine here: which messages make a promise.
    let oracle = common::engine();
    let mut promise_lines: HashSet<u64> = HashSet::new();
    let mut promises_made: HashSet<u64> = HashSet::new();

    let mut conversations = Conversations {
        rng: Rng(0x005e_ed0f_50a4),
        started: 0,
        next_thread: 0,
        busy: HashSet::new(),
    };
    let mut active: Vec<Conversation> = (0..ACTIVE).map(|_| conversations.start()).collect();
    let mut pick = Rng(0x0dd_ba11);
    let every = (messages / 100).max(1);
    let mut samples: Vec<Sample> = Vec::new();
    let mut held_back = Duration::ZERO;
    let started = Instant::now();
    for sent in 0..messages {
        // Pace, and hold back while the bot is more than WINDOW messages behind.
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        if sent % 250 == 0 {
            loop {
                let bot_seen = seen(metrics_addr).await;
                if sent <= WINDOW + bot_seen.saturating_sub(echoes.load(Ordering::Relaxed)) {
                    break;
                }
                let pause = Instant::now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                held_back += pause.elapsed();
            }
        }

        let slot = pick.below(active.len());
        let conversation = &mut active[slot];
        let line = &conversation.lines[conversation.next];
        conversation.next += 1;
        let (author, name, roles) = match line.role {
            Role::Agent => (
                conversation.agent,
                format!("agent{}", conversation.agent - FIRST_AGENT),
                vec![AGENT_ROLE],
            ),
            Role::Customer => (
                conversation.customer,
                format!("customer{}", conversation.customer - FIRST_CUSTOMER),
                vec![],
            ),
        };
        let id = stand_in.snowflake();
        let at = clock.now();
        stand_in.dispatch(
            "MESSAGE_CREATE",
            message_json(
                id,
                conversation.thread,
                Some(GUILD),
                user_json(author, &name, false),
                Some(&roles),
                line.text,
                &at.to_string(),
                json!({}),
            ),
        );
        let (thread, author) = (conversation.thread.to_string(), author.to_string());
        let reading = oracle.read(
            &engine::Message {
                conversation: &thread,
                author: &author,
                role: line.role,
                text: line.text,
                at,
                source: MessageRef(id),
            },
            true,
        );
        for change in reading.changes {
            if let PromiseChange::Made(p) = change {
                promises_made.insert(p.source.0);
            }
        }
        if line.promise {
            promise_lines.insert(id);
        }
        if conversation.next == conversation.lines.len() {
            let done = conversation.thread;
            active[slot] = conversations.start();
            conversations.busy.remove(&done);
        }
        if (sent + 1) % 10_000 == 0 {
            oracle.forget_idle(at);
        }
        if (sent + 1) % every == 0 || sent + 1 == messages {
            let queued = get(metrics_addr, "/metrics")
                .await
                .map_or(0, |m| metric(&m, "backstop_write_queue") as u64);
            samples.push(Sample {
                sent: sent + 1,
                secs: started.elapsed().as_secs_f64(),
                rss: common::proc_mib(&pid, "VmRSS:"),
                queued,
            });
        }
    }
    // Wait for the bot to take everything sent (and its own echoes).
    let catch_up = Instant::now();
    loop {
        let bot_seen = seen(metrics_addr).await;
        if bot_seen >= messages + echoes.load(Ordering::Relaxed) {
            break;
        }
        if catch_up.elapsed() > Duration::from_secs(300) {
            println!(
                "FAIL {label}: the bot took {bot_seen} of {messages} messages (+{} echoes) within 5 minutes",
                echoes.load(Ordering::Relaxed)
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = get(metrics_addr, "/metrics").await.unwrap_or_default();
    let rss_end = common::proc_mib(&pid, "VmRSS:");
    let rss_peak = common::proc_mib(&pid, "VmHWM:");
    let bot_days = clock.now().duration_since(clock.start).as_secs_f64() / 86_400.0;

    // SIGTERM: the bot stops taking events, finishes sends and queued writes, and exits 0.
    let pid_num: i32 = bot.0.id().try_into().expect("pid fits");
    // SAFETY: kill(2) on the child this driver started and has not reaped.
    unsafe {
        libc::kill(pid_num, libc::SIGTERM);
    }
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = bot.0.try_wait().expect("wait for backstop run") {
            break Some(status);
        }
        if stopping.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stop_secs = stopping.elapsed().as_secs_f64();

    // What the store holds.
    let store = Store::open(&storage.config()).await.expect("the bot's store opens");
    let rows = store.export_promises(0).await.expect("promises read back");
    let stored: HashSet<u64> = rows
        .iter()
        .filter_map(|p| p["message"].as_str()?.parse().ok())
        .collect();
    let mut states = std::collections::BTreeMap::<&str, u64>::new();
    for p in &rows {
        *states.entry(p["state"].as_str().unwrap_or("?")).or_default() += 1;
    }
    store.close().await;

    // The series.
    println!("| messages | seconds | `backstop run` RSS (MiB) | writes queued |");
    println!("|---:|---:|---:|---:|");
    println!("| 0 | 0 | {rss_start:.1} | 0 |");
    for s in &samples {
        println!("| {} | {:.0} | {:.1} | {} |", s.sent, s.secs, s.rss, s.queued);
    }
    let half = samples
        .iter()
        .find(|s| s.sent >= messages / 2)
        .map_or(f64::NAN, |s| s.rss);
    let second_half_max = samples
        .iter()
        .filter(|s| s.sent > messages / 2)
        .map(|s| s.rss)
        .fold(f64::NAN, f64::max);
    let max = samples.iter().map(|s| s.rss).fold(rss_start, f64::max);
    println!();
    println!("| measure | {label} |");
    println!("|---|---|");
    println!("| messages | {messages} |");
    println!("| duration | {elapsed:.0} s |");
    println!("| throughput | {:.0} msg/s |", messages as f64 / elapsed);
    println!(
        "| time held back (bot over {WINDOW} messages behind) | {:.1} s |",
        held_back.as_secs_f64()
    );
    println!("| bot's clock covered | {bot_days:.1} days |");
    println!("| conversations started | {} |", conversations.started);
    println!(
        "| RSS at start / half-way / end / max sampled / peak (VmHWM) | {rss_start:.1} / {half:.1} / {rss_end:.1} / {max:.1} / {rss_peak:.1} MiB |"
    );
    println!("| promise lines sent | {} |", promise_lines.len());
    println!("| promises stored | {} ({states:?}) |", stored.len());
    println!(
        "| nudges and reminders delivered (DMs) / bot posts in the coaching channel | {} / {} |",
        dms.load(Ordering::Relaxed),
        echoes.load(Ordering::Relaxed)
    );
    println!(
        "| delivery failures / write retries | {} / {} |",
        metric(&metrics, "backstop_delivery_failures_total") as u64,
        metric(&metrics, "backstop_write_retries_total") as u64
    );
    println!(
        "| driver's own RSS at the end | {:.0} MiB |",
        common::proc_mib("self", "VmRSS:")
    );
    println!();

    let mut ok = true;
    let mut check = |pass: bool, what: String| {
        println!("{} {label}: {what}", if pass { "PASS" } else { "FAIL" });
        ok &= pass;
    };
    let growth = second_half_max / half - 1.0;
    check(
        growth <= FLAT,
        format!(
            "memory flat over the second half: max {second_half_max:.1} MiB is {:+.1}% of {half:.1} MiB at the half-way mark (limit +{:.0}%)",
            growth * 100.0,
            FLAT * 100.0
        ),
    );
    check(
        promises_made == promise_lines,
        format!(
            "the engine here reads {} promises in the stream; {} promise lines were sent ({} not read as promises, {} promises read elsewhere)",
            promises_made.len(),
            promise_lines.len(),
            promise_lines.difference(&promises_made).count(),
            promises_made.difference(&promise_lines).count()
        ),
    );
    let missing = promises_made.difference(&stored).count();
    let extra = stored.difference(&promises_made).count();
    check(
        missing == 0 && extra == 0,
        format!(
            "every promise stored: {} made, {} stored, {missing} missing, {extra} unexpected",
            promises_made.len(),
            stored.len()
        ),
    );
    check(
        status.is_some_and(|s| s.success()),
        format!(
            "clean stop on SIGTERM: {} after {stop_secs:.1} s",
            status.map_or("still running after 60 s".to_string(), |s| s.to_string())
        ),
    );
    // The bot logs warnings and errors only; show how many and the last few.
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    println!(
        "the bot logged {} lines at warn level or above; the last of them:",
        lines.len()
    );
    for l in &lines[lines.len().saturating_sub(if ok { 5 } else { 20 })..] {
        println!("  {l}");
    }
    ok
}

fn main() -> ExitCode {
    // `cargo bench` passes --bench; anything else (`cargo test --benches`) gets a note, not an hour.
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: run it with `cargo bench --bench soak`");
        return ExitCode::SUCCESS;
    }
    let messages: u64 = std::env::var("SOAK_MESSAGES")
        .ok()
        .map(|v| v.replace(['_', ','], "").parse().expect("SOAK_MESSAGES is a number"))
        .unwrap_or(1_000_000);
    let rate: f64 = std::env::var("SOAK_RATE")
        .ok()
        .map(|v| v.parse().expect("SOAK_RATE is a number of messages a second"))
        .unwrap_or(2_000.0);
    assert!(rate > 0.0, "SOAK_RATE must be above zero");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(async {
        let mut ok = true;
        if std::env::var("SOAK_SKIP_SQLITE").is_err() {
            let data = tempfile::tempdir().expect("scratch folder");
            ok &= soak("SQLite", Storage::Sqlite(data.path().join("data")), messages, rate).await;
        }
        match std::env::var("BACKSTOP_TEST_POSTGRES") {
            Ok(admin) => {
                let name = format!("backstop_soak_{}", std::process::id());
                let (admin_pool, url) = common::scratch_postgres(&admin, &name).await;
                ok &= soak("PostgreSQL", Storage::Postgres(url), messages, rate).await;
                common::drop_postgres(&admin_pool, &name).await;
            }
            Err(_) => println!("\nPostgreSQL: skipped (set BACKSTOP_TEST_POSTGRES to soak it too)"),
        }
        ok
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
