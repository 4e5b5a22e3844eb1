//! Fault tests: the real `backstop run` binary against the Discord stand-in and a real database,
//! killed with SIGKILL, run as two shard processes, cut off from PostgreSQL, and started on bad
//! storage. The bots run on a sped-up clock shared by every process (`--clock`), so reminders
//! due in tens of minutes arrive in seconds and survive restarts on schedule.
//!
//! PostgreSQL tests need `BACKSTOP_TEST_POSTGRES` (see README); without it they say they were
//! skipped and pass. The real-restart test runs a server of its own instead: it needs PostgreSQL's
//! server tools (`initdb`, `pg_ctl`) on `PATH`, and says it was skipped when they are not.

#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use backstop::clock::ScaledClock;
use backstop_stand_in::{message_json, user_json, ChannelSpec, GuildSpec, MemberSpec, RoleSpec, StandIn};

use common::pg::TestDb;

const AGENT_ROLE: u64 = 700_000_000_000_000_001;
const COACHING: u64 = 700_000_000_000_000_002;
const TOKEN: &str = "fault-test-token";
/// Long enough for a debug build to start, connect and work through a backlog.
const WAIT: Duration = Duration::from_secs(60);

/// A guild id whose events land on `shard` of `total` ((id >> 22) % total).
fn guild_on_shard(shard: u64, total: u64, n: u64) -> u64 {
    ((1000 + n * total + shard) << 22) | 7
}

/// A guild with `channels` watched text channels under one category and `agents` agents.
fn guild(id: u64, channels: u64, agents: u64) -> GuildSpec {
    let category = id + 1;
    let mut chans = vec![ChannelSpec {
        id: category,
        kind: 4,
        name: "tickets".into(),
        parent_id: None,
    }];
    chans.extend((0..channels).map(|i| ChannelSpec {
        id: channel_of(id, i),
        kind: 0,
        name: format!("ticket-{i}"),
        parent_id: Some(category),
    }));
    GuildSpec {
        id,
        name: format!("guild {id}"),
        owner_id: 1,
        roles: vec![RoleSpec {
            id: AGENT_ROLE,
            name: "agents".into(),
            permissions: 0,
        }],
        channels: chans,
        members: (0..agents)
            .map(|a| MemberSpec {
                id: agent_of(id, a),
                name: format!("agent-{a}"),
                roles: vec![AGENT_ROLE],
                bot: false,
            })
            .collect(),
    }
}

fn channel_of(guild: u64, i: u64) -> u64 {
    guild + 1000 + i
}

fn agent_of(guild: u64, a: u64) -> u64 {
    guild + 900_000 + a
}

/// `backstop.toml` for these guilds, plus rules copied into a config folder.
fn config_dir(guilds: &[u64], extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_config(dir.path());
    let mut text = String::new();
    for g in guilds {
        text.push_str(&format!(
            "[[guild]]\nid = \"{g}\"\nwatch_categories = [\"{}\"]\nagent_roles = [\"{AGENT_ROLE}\"]\ncoaching_channel = \"{COACHING}\"\ntime_zone = \"UTC\"\n{extra}\n",
            g + 1
        ));
    }
    std::fs::write(dir.path().join("backstop.toml"), text).unwrap();
    dir
}

/// Where a bot process keeps its state.
enum Storage<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

/// A `backstop run` child process; its log goes to a file printed when a test fails.
struct Bot {
    child: Child,
    log: PathBuf,
}

/// `backstop run` with the config folder, the shipped prompts, a Discord endpoint and the test
/// token, and no storage settings from the environment.
fn backstop_run(config: &Path, discord_api: &str) -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backstop"));
    cmd.args(["run", "--config"])
        .arg(config)
        .arg("--prompts")
        .arg(root.join("prompts"))
        .arg("--discord-api")
        .arg(discord_api)
        .env("DISCORD_TOKEN", TOKEN)
        .env_remove("BACKSTOP_DATABASE_URL")
        .env_remove("BACKSTOP_DATA_DIR");
    cmd
}

impl Bot {
    fn spawn(config: &Path, stand_in: &StandIn, storage: &Storage<'_>, clock: &ScaledClock, extra: &[&str]) -> Bot {
        let log = config.join(format!("bot-{}.log", rand_suffix()));
        let mut cmd = backstop_run(config, &stand_in.url());
        cmd.arg("--clock")
            .arg(format!("{},{},{}", clock.start, clock.real_start, clock.speed))
            .args(extra)
            .env("RUST_LOG", "backstop=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        match storage {
            Storage::Sqlite(dir) => cmd.arg("--data-dir").arg(dir),
            Storage::Postgres(url) => cmd.env("BACKSTOP_DATABASE_URL", url),
        };
        Bot {
            child: cmd.spawn().expect("backstop runs"),
            log,
        }
    }

    /// SIGKILL: no shutdown, no flush, like a crash or an OOM kill.
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A clock `speed` times real time, starting at 09:00 on a fixed day, now.
fn fast_clock(speed: f64) -> ScaledClock {
    ScaledClock {
        start: "2026-11-23T09:00:00Z".parse().unwrap(),
        real_start: Timestamp::now(),
        speed,
    }
}

/// Sends a message as `author` in `channel` of `guild`, stamped with the shared clock's time.
fn say(stand_in: &StandIn, clock: &ScaledClock, guild: u64, channel: u64, author: u64, agent: bool, text: &str) -> u64 {
    let id = stand_in.snowflake();
    let roles: Vec<u64> = if agent { vec![AGENT_ROLE] } else { vec![] };
    let msg = message_json(
        id,
        channel,
        Some(guild),
        user_json(author, &format!("user-{author}"), false),
        Some(&roles),
        text,
        &clock.now().to_string(),
        json!({}),
    );
    stand_in.dispatch("MESSAGE_CREATE", msg);
    id
}

/// Deliveries so far of one nudge kind (or "escalation" for team posts), by the id of the
/// message that made the promise.
fn deliveries(stand_in: &StandIn, kind: &str) -> HashMap<u64, usize> {
    let link = regex::Regex::new(r"channels/\d+/\d+/(\d+)").unwrap();
    let mut out = HashMap::new();
    for r in stand_in.requests() {
        if r.method != "POST" || r.status != 200 || !r.path.ends_with("/messages") {
            continue;
        }
        let embed = &r.body["embeds"][0];
        let footer = embed["footer"]["text"].as_str().unwrap_or("");
        let is_escalation = r.path == format!("/channels/{COACHING}/messages")
            && embed["title"].as_str().is_some_and(|t| t.contains("lapsed"));
        let matches = if kind == "escalation" {
            is_escalation
        } else {
            !is_escalation && footer.starts_with(kind)
        };
        if !matches {
            continue;
        }
        if let Some(id) = link
            .captures(&r.body.to_string())
            .and_then(|c| c[1].parse::<u64>().ok())
        {
            *out.entry(id).or_default() += 1;
        }
    }
    out
}

async fn wait_for(stand_in: &StandIn, what: &str, bots: &[&Bot], check: impl Fn() -> bool) {
    let ok = stand_in.wait_until(WAIT, |_| check()).await;
    if !ok {
        for b in bots {
            eprintln!("---- bot log ----\n{}", b.log());
        }
        panic!("timed out waiting for {what}");
    }
}

/// How many times the bot has registered its commands (once per READY).
fn readies(stand_in: &StandIn) -> usize {
    stand_in
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/commands"))
        .count()
}

fn promise_text(i: u64) -> String {
    format!(
        "Thanks for waiting. I'll call you back by {}:{:02} with an update.",
        9 + (40 + i) / 60,
        (40 + i) % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_promise_and_repeats_at_most_one_reminder() {
    const N: u64 = 20;
    let g = guild_on_shard(0, 1, 1);
    let stand_in = StandIn::start(0, vec![guild(g, N, 2)]).await.unwrap();
    let config = config_dir(
        &[g],
        "[guild.follow_up]\nreminder_lead = \"15m\"\nescalate_after = \"10m\"\n",
    );
    let data = tempfile::tempdir().unwrap();
    let storage = Storage::Sqlite(data.path());
    let clock = fast_clock(120.0);
    let mut a = Bot::spawn(config.path(), &stand_in, &storage, &clock, &[]);
    wait_for(&stand_in, "the first bot to connect", &[&a], || readies(&stand_in) >= 1).await;
    let mut made = Vec::new();
    for i in 0..N {
        made.push(say(
            &stand_in,
            &clock,
            g,
            channel_of(g, i),
            agent_of(g, i % 2),
            true,
            &promise_text(i),
        ));
    }
    wait_for(&stand_in, "every promise acknowledged", &[&a], || {
        deliveries(&stand_in, "follow_up_promised").len() == N as usize
    })
    .await;
    // Acknowledged means stored: kill the bot with every promise still open.
    a.kill9();
    let mut b = Bot::spawn(config.path(), &stand_in, &storage, &clock, &[]);
    wait_for(&stand_in, "some reminders from the restarted bot", &[&b], || {
        deliveries(&stand_in, "follow_up_reminder").len() >= 8
    })
    .await;
    // And again while reminders are going out.
    b.kill9();
    let c = Bot::spawn(config.path(), &stand_in, &storage, &clock, &[]);
    for kind in ["follow_up_reminder", "follow_up_overdue", "escalation"] {
        wait_for(&stand_in, &format!("every {kind}"), &[&b, &c], || {
            made.iter().all(|m| deliveries(&stand_in, kind).contains_key(m))
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut duplicates = 0;
    for kind in [
        "follow_up_promised",
        "follow_up_reminder",
        "follow_up_overdue",
        "escalation",
    ] {
        let seen = deliveries(&stand_in, kind);
        for m in &made {
            let n = seen.get(m).copied().unwrap_or(0);
            assert!((1..=2).contains(&n), "{kind} for promise {m} delivered {n} times");
            duplicates += n - 1;
        }
    }
    eprintln!("kill -9 twice with {N} open promises: every promise kept, {duplicates} step(s) repeated once");
    assert!(duplicates <= 2, "at most one repeat per kill, got {duplicates}");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shard_processes_share_postgres_and_send_each_reminder_once() {
    let Some(db) = TestDb::create("two_shard_processes_share_postgres_and_send_each_reminder_once").await else {
        return;
    };
    const PER_GUILD: u64 = 500;
    let g0 = guild_on_shard(0, 2, 1);
    let g1 = guild_on_shard(1, 2, 1);
    let stand_in = StandIn::start(0, vec![guild(g0, PER_GUILD, 10), guild(g1, PER_GUILD, 10)])
        .await
        .unwrap();
    let config = config_dir(&[g0, g1], "[guild.follow_up]\nreminder_lead = \"15m\"\n");
    let storage = Storage::Postgres(&db.url);
    let clock = fast_clock(60.0);
    let p0 = Bot::spawn(
        config.path(),
        &stand_in,
        &storage,
        &clock,
        &["--shards", "0", "--total-shards", "2"],
    );
    let mut p1 = Bot::spawn(
        config.path(),
        &stand_in,
        &storage,
        &clock,
        &["--shards", "1", "--total-shards", "2"],
    );
    wait_for(&stand_in, "both shards to connect", &[&p0, &p1], || {
        stand_in.shards_identified() == 2 && readies(&stand_in) >= 2
    })
    .await;
    let mut made = HashMap::new();
    for (shard, g) in [(0, g0), (1, g1)] {
        for i in 0..PER_GUILD {
            let text = format!("I'll call you back by 9:{:02} with the refund details.", 40 + i % 15);
            made.insert(
                say(&stand_in, &clock, g, channel_of(g, i), agent_of(g, i % 10), true, &text),
                shard,
            );
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    wait_for(&stand_in, "1,000 promises acknowledged", &[&p0, &p1], || {
        deliveries(&stand_in, "follow_up_promised").len() == made.len()
    })
    .await;
    wait_for(&stand_in, "1,000 reminders", &[&p0, &p1], || {
        deliveries(&stand_in, "follow_up_reminder").len() == made.len()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reminders = deliveries(&stand_in, "follow_up_reminder");
    assert!(
        made.keys().all(|m| reminders.get(m) == Some(&1)),
        "each reminder exactly once across the two processes"
    );
    // Kill shard 1's process and bring it back before the promises fall due.
    p1.kill9();
    let p1 = Bot::spawn(
        config.path(),
        &stand_in,
        &storage,
        &clock,
        &["--shards", "1", "--total-shards", "2"],
    );
    wait_for(&stand_in, "1,000 overdue notices", &[&p0, &p1], || {
        deliveries(&stand_in, "follow_up_overdue").len() == made.len()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let overdue = deliveries(&stand_in, "follow_up_overdue");
    let mut repeats = 0;
    for (m, shard) in &made {
        let n = overdue[m];
        match shard {
            0 => assert_eq!(n, 1, "the untouched shard sends each notice once"),
            _ => assert!((1..=2).contains(&n), "shard 1 notice for {m} sent {n} times"),
        }
        repeats += n - 1;
    }
    eprintln!("two shards, 1,000 promises, one process killed: none lost, {repeats} repeated");
    drop((p0, p1));
    db.drop_db().await;
}

/// A TCP relay in front of PostgreSQL that can play a server restart: every connection is cut
/// and new ones are refused until it comes back.
struct Relay {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let target = target.clone();
                let mut cut = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_the_bot_loses_nothing() {
    let Some(db) = TestDb::create("a_postgres_restart_under_the_bot_loses_nothing").await else {
        return;
    };
    let server = {
        let after = db.url.split("://").nth(1).unwrap_or_default();
        let authority = after.split('/').next().unwrap_or_default();
        authority.rsplit('@').next().unwrap_or_default().to_string()
    };
    let relay = Relay::start(server.clone()).await;
    let relayed = db.url.replacen(&server, &format!("127.0.0.1:{}", relay.port), 1);
    let g = guild_on_shard(0, 1, 3);
    let stand_in = StandIn::start(0, vec![guild(g, 10, 2)]).await.unwrap();
    let config = config_dir(&[g], "[guild.follow_up]\nreminder_lead = \"5m\"\n");
    let clock = fast_clock(60.0);
    let bot = Bot::spawn(config.path(), &stand_in, &Storage::Postgres(&relayed), &clock, &[]);
    wait_for(&stand_in, "the bot to connect", &[&bot], || readies(&stand_in) >= 1).await;
    let agent = agent_of(g, 0);
    let first = say(
        &stand_in,
        &clock,
        g,
        channel_of(g, 0),
        agent,
        true,
        "I'll call you back by 9:25 with the tracking.",
    );
    wait_for(&stand_in, "the first promise stored", &[&bot], || {
        deliveries(&stand_in, "follow_up_promised").contains_key(&first)
    })
    .await;
    relay.down();
    // While the database is away, coaching carries on from memory.
    let customer = 42_000_000_000_000_001;
    say(
        &stand_in,
        &clock,
        g,
        channel_of(g, 1),
        agent,
        true,
        "Hi, Backstop support here.",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    say(
        &stand_in,
        &clock,
        g,
        channel_of(g, 1),
        customer,
        false,
        "this is the third time I've contacted you about my refund",
    );
    let cue_seen = stand_in
        .wait_until(Duration::from_secs(20), |r| {
            r.iter()
                .any(|r| r.status == 200 && r.body.to_string().contains("prior_failure"))
        })
        .await;
    let second = say(
        &stand_in,
        &clock,
        g,
        channel_of(g, 2),
        agent,
        true,
        "I'll call you back by 9:30 about the exchange.",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_while_down = deliveries(&stand_in, "follow_up_promised").contains_key(&second);
    relay.restore();
    assert!(cue_seen, "a nudge goes out while the database is down\n{}", bot.log());
    assert!(!acked_while_down, "a promise is not acknowledged before it is stored");
    wait_for(
        &stand_in,
        "the second promise stored once the database is back",
        &[&bot],
        || deliveries(&stand_in, "follow_up_promised").contains_key(&second),
    )
    .await;
    wait_for(&stand_in, "reminders for both promises", &[&bot], || {
        let r = deliveries(&stand_in, "follow_up_reminder");
        r.contains_key(&first) && r.contains_key(&second)
    })
    .await;
    // Everything accepted while the database was away is in it now.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let promises: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM promises")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut cues = 0i64;
    for _ in 0..50 {
        cues = sqlx::query_scalar("SELECT COUNT(*) FROM nudges WHERE kind = 'prior_failure'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if cues > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pool.close().await;
    assert_eq!(promises, 2, "both promises stored");
    assert_eq!(cues, 1, "the nudge sent during the outage was logged after it");
    assert!(bot.log().contains("retrying"), "the outage was noticed and retried");
    drop(bot);
    db.drop_db().await;
}

/// A PostgreSQL server of the test's own (`initdb` into a temporary folder, `pg_ctl` on a free
/// port), so the test can restart it and kill it without touching anyone else's. Dropping it
/// stops the server at once and deletes the folder, also when the test fails.
struct Cluster {
    folder: tempfile::TempDir,
    pg_ctl: PathBuf,
    /// The server's tools refuse to run as root; as root they run as `postgres`.
    as_postgres: bool,
    port: u16,
    /// The test database, for `BACKSTOP_DATABASE_URL` and the final count.
    url: String,
}

/// `name` as an executable file in one of the `PATH` folders.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Makes this test process the one that collects orphaned server processes. `pg_ctl` starts the
/// server and exits, so the server's parent becomes init; an init that does not reap promptly (as
/// in many containers) leaves a SIGKILLed server a zombie, still named in `postmaster.pid` and
/// still "running" to the next start, which then refuses. Reaping it here makes the crash what
/// it is on a real host: a dead postmaster and a stale pid file.
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: sets one flag on this process; no pointers are passed.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Collects `pid` if it is an exited child of this process. Returns false while it is still
/// running; true once it is collected, or if it is not this process's to collect.
fn reaped(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waits on one pid without blocking; `status` is a valid place to write.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) != 0 }
}

impl Cluster {
    /// Creates and starts the server and a `backstop` database on it. `None` (saying so) when
    /// PostgreSQL's server tools are not on `PATH`; any other problem fails the test.
    async fn start(test: &str) -> Option<Cluster> {
        let (Some(initdb), Some(pg_ctl)) = (on_path("initdb"), on_path("pg_ctl")) else {
            eprintln!("{test}: skipped: initdb and pg_ctl (PostgreSQL's server tools) are not on PATH");
            return None;
        };
        become_subreaper();
        let folder = tempfile::Builder::new()
            .prefix("backstop-pg-")
            .tempdir()
            .expect("a temporary folder for the test's PostgreSQL server");
        // SAFETY: geteuid cannot fail and touches no memory.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            let chown = Command::new("chown").arg("postgres:").arg(folder.path()).output();
            assert!(
                chown.as_ref().is_ok_and(|o| o.status.success()),
                "running as root, the PostgreSQL tools must run as the `postgres` user, but the test folder \
                 cannot be given to it: {chown:?}"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let cluster = Cluster {
            url: format!("postgres://postgres@127.0.0.1:{port}/backstop"),
            folder,
            pg_ctl,
            as_postgres,
            port,
        };
        let init = cluster
            .tool(&initdb)
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| {
                let how = if as_postgres {
                    " as postgres (through runuser)"
                } else {
                    ""
                };
                panic!("cannot run initdb{how}: {e}")
            });
        assert!(
            init.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        if let Err(e) = cluster.pg_ctl_async(&["start"]).await {
            panic!("the test's PostgreSQL server did not start: {e}");
        }
        let admin = cluster.url.replace("/backstop", "/postgres");
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test's PostgreSQL server at {admin}: {e}"));
        if let Err(e) = sqlx::raw_sql("CREATE DATABASE backstop").execute(&pool).await {
            panic!("cannot create the test database: {e}");
        }
        pool.close().await;
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.folder.path().join("data")
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("server.log")).unwrap_or_default()
    }

    /// One of the server's tools, as the user allowed to run it.
    fn tool(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    /// `pg_ctl ACTION` on the test's folder, port and socket folder. The log file keeps the
    /// server's output away from pg_ctl's, which would otherwise stay open as long as the server.
    fn pg_ctl(&self, action: &[&str]) -> Command {
        let mut cmd = self.tool(&self.pg_ctl);
        cmd.args(action)
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.folder.path().join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.folder.path().display()
            ))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `pg_ctl ACTION`; on failure, says what pg_ctl and the server's log said.
    async fn pg_ctl_async(&self, action: &[&str]) -> Result<(), String> {
        let out = tokio::process::Command::from(self.pg_ctl(action))
            .output()
            .await
            .map_err(|e| format!("pg_ctl {action:?} did not run: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let log = self.server_log();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        Err(format!(
            "pg_ctl {action:?}: {}{}\nserver log (last lines, newest first):\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n")
        ))
    }

    /// The running postmaster's pid, from the first line of `postmaster.pid`.
    fn postmaster(&self) -> Option<i32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// A clean restart (`pg_ctl restart -m fast`: connections cut, checkpoint, start again).
    /// Returns how long the server was away.
    async fn restart(&self) -> Duration {
        let old = self.postmaster();
        let started = std::time::Instant::now();
        if let Err(e) = self.pg_ctl_async(&["restart", "-m", "fast"]).await {
            panic!("the clean restart failed: {e}");
        }
        let down = started.elapsed();
        if let Some(pid) = old {
            reaped(pid);
        }
        down
    }

    /// SIGKILL to the postmaster, `pause`, then `pg_ctl start`, which finds a stale pid file and
    /// runs crash recovery. Returns how long the server was away.
    async fn kill_and_recover(&self, pause: Duration) -> Duration {
        let pid = self.postmaster().expect("a running server has a postmaster.pid");
        let started = std::time::Instant::now();
        // SAFETY: sends a signal to one pid; no memory is involved.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            panic!(
                "cannot SIGKILL the postmaster {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
        while !reaped(pid) && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + pause)).await;
        // The dead postmaster's children notice and exit on their own; until the last one has,
        // the new server refuses to share their memory. So a start may need a few tries.
        loop {
            match self.pg_ctl_async(&["start"]).await {
                Ok(()) => return started.elapsed(),
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    panic!("the server did not come back after SIGKILL: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.postmaster();
        let _ = self
            .tool(&self.pg_ctl)
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = pid {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !reaped(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The temporary folder, data and all, goes when `folder` is dropped after this.
    }
}

/// A promise due `minutes` from now on the shared clock (to the minute, rounded down).
fn promise_due_in(clock: &ScaledClock, minutes: i64) -> String {
    let due = (clock.now() + jiff::SignedDuration::from_mins(minutes)).to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "I'll call you back by {}:{:02} with an update on your order.",
        due.hour(),
        due.minute()
    )
}

/// The database really restarting under the bot, not a relay playing it: a clean `pg_ctl
/// restart` and, later, SIGKILL to the postmaster and crash recovery, both while agents keep
/// making promises and, for the second, while reminders are falling due. An acknowledgement
/// means the promise is committed, so none acknowledged may be missing afterwards; and since the
/// scheduler waits out the outage, every promise still gets its heads-up, at most once more than
/// it should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_postgres_restart_and_a_sigkill_lose_no_acknowledged_promise() {
    let Some(cluster) = Cluster::start("a_real_postgres_restart_and_a_sigkill_lose_no_acknowledged_promise").await
    else {
        return;
    };
    /// One promise per channel: a second promise in a conversation supersedes the first, which
    /// then never gets a reminder.
    const N: u64 = 48;
    const EVERY: Duration = Duration::from_millis(300);
    let g = guild_on_shard(0, 1, 6);
    let stand_in = StandIn::start(0, vec![guild(g, N, 4)]).await.unwrap();
    // At 60x a real second is a minute: the heads-up goes out about 10 s after each promise, and
    // the overdue notice (which would replace a heads-up sent late) 30 s after that, so an outage
    // of several seconds delays reminders without turning them into something else.
    let config = config_dir(&[g], "[guild.follow_up]\nreminder_lead = \"30m\"\n");
    let clock = fast_clock(60.0);
    let mut bot = Bot::spawn(config.path(), &stand_in, &Storage::Postgres(&cluster.url), &clock, &[]);
    wait_for(&stand_in, "the bot to connect", &[&bot], || readies(&stand_in) >= 1).await;

    let down = std::sync::atomic::AtomicBool::new(false);
    let start = tokio::time::Instant::now();
    // The stream: a promise every 300 ms for about 14 s, whatever the database is doing.
    let stream = async {
        let mut made = Vec::new();
        let mut while_down = 0;
        for i in 0..N {
            tokio::time::sleep_until(start + EVERY * i as u32).await;
            while_down += usize::from(down.load(std::sync::atomic::Ordering::SeqCst));
            made.push(say(
                &stand_in,
                &clock,
                g,
                channel_of(g, i),
                agent_of(g, i % 4),
                true,
                &promise_due_in(&clock, 40),
            ));
        }
        (made, while_down)
    };
    // The faults: a clean restart early in the stream, SIGKILL once the first reminders are due.
    // After the kill the server stays away for longer than the bot waits for a connection (5 s),
    // so the outage reaches the bot as failed writes and reads, not only as slow ones.
    let faults = async {
        tokio::time::sleep_until(start + Duration::from_millis(3_500)).await;
        down.store(true, std::sync::atomic::Ordering::SeqCst);
        let restart = cluster.restart().await;
        down.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep_until(start + Duration::from_millis(10_500)).await;
        down.store(true, std::sync::atomic::Ordering::SeqCst);
        let crash = cluster.kill_and_recover(Duration::from_secs(6)).await;
        down.store(false, std::sync::atomic::Ordering::SeqCst);
        (restart, crash)
    };
    let ((made, while_down), (restart, crash)) = tokio::join!(stream, faults);

    wait_for(&stand_in, "every promise acknowledged", &[&bot], || {
        let acked = deliveries(&stand_in, "follow_up_promised");
        made.iter().all(|m| acked.contains_key(m))
    })
    .await;
    let acked = deliveries(&stand_in, "follow_up_promised");
    let pool = sqlx::PgPool::connect(&cluster.url)
        .await
        .unwrap_or_else(|e| panic!("cannot read back the test database: {e}"));
    let stored: std::collections::HashSet<u64> = sqlx::query_scalar::<_, i64>("SELECT message_id FROM promises")
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("cannot read the promises table: {e}"))
        .into_iter()
        .map(|m| m as u64)
        .collect();
    pool.close().await;
    let lost: Vec<&u64> = acked.keys().filter(|m| !stored.contains(m)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}\n{}", bot.log());

    wait_for(&stand_in, "a reminder for every promise", &[&bot], || {
        let reminded = deliveries(&stand_in, "follow_up_reminder");
        made.iter().all(|m| reminded.contains_key(m))
    })
    .await;
    // Time for a repeat to show itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reminded = deliveries(&stand_in, "follow_up_reminder");
    let mut duplicates = 0;
    for m in &made {
        let n = reminded[m];
        assert!(n <= 2, "the reminder for promise {m} went out {n} times");
        duplicates += n - 1;
    }
    assert!(
        bot.child.try_wait().is_ok_and(|exited| exited.is_none()),
        "the bot lived through both outages\n{}",
        bot.log()
    );
    let retries = bot.log().matches("retrying").count();
    assert!(retries > 0, "the outage was noticed and retried\n{}", bot.log());
    println!(
        "real PostgreSQL restart + SIGKILL: {N} promises sent ({while_down} while the database was down), \
         {} acknowledged, {} stored, {} reminders, {duplicates} duplicate(s); database down {:.1} s (restart) + {:.1} s (SIGKILL to recovered); \
         {retries} database call(s) retried",
        acked.len(),
        stored.len(),
        reminded.values().sum::<usize>(),
        restart.as_secs_f64(),
        crash.as_secs_f64()
    );
}

/// Runs `backstop run` expecting it to refuse to start; returns its stderr.
fn refused(config: &Path, storage: &[(&str, &str)], extra: &[&str]) -> String {
    let mut cmd = backstop_run(config, "http://127.0.0.1:1");
    cmd.args(extra);
    for (k, v) in storage {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // A bot that did not refuse would run until stopped: give it a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.is_some(), "expected a refusal, but it kept running: {stderr}");
    assert!(!status.unwrap().success(), "expected a refusal, got success: {stderr}");
    assert!(!stderr.contains(TOKEN), "the token is never printed");
    stderr
}

#[test]
fn bad_storage_is_refused_at_start_with_what_to_do() {
    let g = guild_on_shard(0, 1, 4);
    let config = config_dir(&[g], "");
    let scratch = tempfile::tempdir().unwrap();

    // A data folder that cannot be created.
    let file = scratch.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("data");
    let err = refused(
        config.path(),
        &[("BACKSTOP_DATA_DIR", under_file.to_str().unwrap())],
        &[],
    );
    assert!(err.contains("cannot use the data folder"), "{err}");
    assert!(err.contains("a-file"), "{err}");

    // A file that is not a database: named, and left as it was.
    let corrupt = scratch.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    let garbage = "this is not a database\n".repeat(200);
    std::fs::write(corrupt.join("backstop.db"), &garbage).unwrap();
    let err = refused(config.path(), &[("BACKSTOP_DATA_DIR", corrupt.to_str().unwrap())], &[]);
    assert!(err.contains("not a usable Backstop database"), "{err}");
    assert!(err.contains("backstop.db"), "{err}");
    assert_eq!(std::fs::read_to_string(corrupt.join("backstop.db")).unwrap(), garbage);

    // A file another Backstop process holds.
    let busy = scratch.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    let lock = std::fs::File::create(busy.join("backstop.db.lock")).unwrap();
    lock.try_lock().unwrap();
    let err = refused(config.path(), &[("BACKSTOP_DATA_DIR", busy.to_str().unwrap())], &[]);
    assert!(err.contains("in use by another Backstop process"), "{err}");
    assert!(err.contains("PostgreSQL"), "{err}");
    drop(lock);

    // Several shard processes cannot share SQLite.
    let err = refused(
        config.path(),
        &[("BACKSTOP_DATA_DIR", scratch.path().join("shards").to_str().unwrap())],
        &["--shards", "0-1", "--total-shards", "4"],
    );
    assert!(err.contains("cannot share a SQLite file"), "{err}");
    assert!(
        !scratch.path().join("shards").exists(),
        "nothing written before refusing"
    );

    // PostgreSQL that is not there.
    let err = refused(
        config.path(),
        &[("BACKSTOP_DATABASE_URL", "postgres://backstop:pw@127.0.0.1:1/backstop")],
        &[],
    );
    assert!(err.contains("cannot reach PostgreSQL"), "{err}");
    assert!(!err.contains(":pw@"), "the password is hidden: {err}");
}

#[test]
fn a_read_only_database_is_refused() {
    let g = guild_on_shard(0, 1, 5);
    let config = config_dir(&[g], "");
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = backstop::store::Store::open(&backstop::store::StorageConfig {
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        })
        .await
        .unwrap();
        store.close().await;
    });
    let db = data.path().join("backstop.db");
    // Root ignores permission bits, so make the file immutable where that is possible.
    let immutable = Command::new("chattr")
        .arg("+i")
        .arg(&db)
        .status()
        .is_ok_and(|s| s.success());
    if !immutable {
        let mut perms = std::fs::metadata(&db).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&db, perms).unwrap();
        if std::fs::OpenOptions::new().append(true).open(&db).is_ok() {
            eprintln!("a_read_only_database_is_refused: skipped: this user can write read-only files and chattr is unavailable");
            return;
        }
    }
    let err = refused(
        config.path(),
        &[("BACKSTOP_DATA_DIR", data.path().to_str().unwrap())],
        &[],
    );
    if immutable {
        let _ = Command::new("chattr").arg("-i").arg(&db).status();
    }
    assert!(err.contains("read-only"), "{err}");
    assert!(err.contains("backstop.db"), "{err}");
}
