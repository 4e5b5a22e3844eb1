//! A local Discord stand-in: enough of Discord's REST API and gateway for the real serenity
//! client, on 127.0.0.1, for tests and the offline demo.
//!
//! It plays bot sessions the way Discord does: Hello, Identify → READY and GUILD_CREATE for the
//! guilds of the identifying shard, heartbeats, RESUME with missed events replayed, and each
//! dispatch routed to the shard that owns its guild, so several processes can share the shards. Over REST it opens DM channels
//! (refusing chosen users with Discord's error 50007), takes channel messages, creates threads,
//! registers commands and takes interaction callbacks; it answers 429 or 5xx on demand. Everything
//! the bot sends is recorded so tests can assert on it, and a watcher callback lets the demo print
//! it as it happens.

mod gateway;
mod rest;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

/// A role in a stand-in guild.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    pub id: u64,
    pub name: String,
    /// Permission bits, e.g. Manage Guild = 1 << 5.
    pub permissions: u64,
}

/// A channel in a stand-in guild. `kind` uses Discord's numbers: 0 text, 4 category, 11 public
/// thread, 12 private thread, 15 forum.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub id: u64,
    pub kind: u8,
    pub name: String,
    pub parent_id: Option<u64>,
}

/// A member of a stand-in guild.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub id: u64,
    pub name: String,
    pub roles: Vec<u64>,
    pub bot: bool,
}

/// A guild the stand-in announces in GUILD_CREATE.
#[derive(Debug, Clone)]
pub struct GuildSpec {
    pub id: u64,
    pub name: String,
    pub owner_id: u64,
    pub roles: Vec<RoleSpec>,
    pub channels: Vec<ChannelSpec>,
    pub members: Vec<MemberSpec>,
}

/// One REST request the bot made.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path after `/api/v10`, e.g. `/channels/123/messages`.
    pub path: String,
    pub body: Value,
    /// The status the stand-in answered with.
    pub status: u16,
}

/// A failure to answer on demand, for the next matching request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Substring of the path to match, e.g. `/messages`.
    pub path_contains: String,
    pub status: u16,
    /// For 429: seconds the client is told to wait.
    pub retry_after: f64,
}

/// Something the stand-in saw, for a watcher (the demo prints these).
#[derive(Debug, Clone)]
pub enum Seen {
    Request(Recorded),
    Dispatched { kind: String, data: Value },
}

type Watcher = Arc<dyn Fn(&Seen) + Send + Sync>;

pub(crate) struct Inner {
    pub bot_id: u64,
    pub bot_name: String,
    pub application_id: u64,
    pub guilds: Vec<GuildSpec>,
    /// Every dispatch so far, as (sequence, who gets it, frame).
    pub log: Vec<(u64, Route, Value)>,
    pub seq: u64,
    /// The live session of each shard that identified, by shard number.
    pub sessions: HashMap<u32, String>,
    /// The shard count the bot identified with.
    pub total_shards: u32,
    pub identified: bool,
    pub requests: Vec<Recorded>,
    pub refuse_dms: HashSet<u64>,
    pub failures: VecDeque<Failure>,
    pub dm_channels: HashMap<u64, u64>,
    /// Channel ids known to be DMs, with their recipient.
    pub dm_recipient: HashMap<u64, u64>,
    pub threads: HashMap<u64, Value>,
    pub next_id: u64,
    pub connections: u64,
    /// How much history to keep (see [`StandIn::limit_history`]); `None` keeps everything.
    pub history_limit: Option<usize>,
    /// The last sequence each shard's live connection has sent, so history is only trimmed
    /// behind what was delivered.
    pub delivered: HashMap<u32, u64>,
}

impl Inner {
    fn new(guilds: Vec<GuildSpec>) -> Inner {
        Inner {
            bot_id: FIRST_ID + 1,
            bot_name: "Backstop".into(),
            application_id: FIRST_ID + 1,
            guilds,
            log: Vec::new(),
            seq: 0,
            sessions: HashMap::new(),
            total_shards: 1,
            identified: false,
            requests: Vec::new(),
            refuse_dms: HashSet::new(),
            failures: VecDeque::new(),
            dm_channels: HashMap::new(),
            dm_recipient: HashMap::new(),
            threads: HashMap::new(),
            next_id: FIRST_ID + 1000,
            connections: 0,
            history_limit: None,
            delivered: HashMap::new(),
        }
    }

    pub fn snowflake(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Logs a dispatch for the shard that owns its guild (DMs and guild-less events: shard 0).
    pub fn push_dispatch(&mut self, kind: &str, data: Value) {
        let route = match data["guild_id"].as_str().and_then(|g| g.parse().ok()) {
            Some(guild) => Route::Guild(guild),
            None => Route::Shard(0),
        };
        self.push_routed(kind, data, route);
    }

    pub fn push_routed(&mut self, kind: &str, data: Value, route: Route) {
        self.seq += 1;
        let frame = json!({"op": 0, "t": kind, "s": self.seq, "d": data});
        self.log.push((self.seq, route, frame));
        self.trim();
    }

    /// Records a REST request, keeping at most the history limit (the newest).
    pub fn record(&mut self, request: Recorded) {
        self.requests.push(request);
        self.trim();
    }

    /// Under a history limit, drops the oldest dispatches every live session has been sent and
    /// the oldest recorded requests, keeping at least `limit` of each. Trims in batches (when
    /// twice the limit is reached) so the cost per event stays constant.
    fn trim(&mut self) {
        let Some(limit) = self.history_limit else { return };
        if self.log.len() > limit.saturating_mul(2) {
            // A shard that identified but has sent nothing yet holds everything back.
            let floor = self
                .sessions
                .keys()
                .map(|shard| self.delivered.get(shard).copied().unwrap_or(0))
                .min()
                .unwrap_or(self.seq);
            let sent = self.log.partition_point(|(s, _, _)| *s <= floor);
            let drop = sent.min(self.log.len() - limit);
            self.log.drain(..drop);
        }
        if self.requests.len() > limit.saturating_mul(2) {
            let drop = self.requests.len() - limit;
            self.requests.drain(..drop);
        }
    }
}

/// Which gateway connections a dispatch goes to, as Discord routes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// One shard: its own READY and GUILD_CREATEs, and DMs (shard 0).
    Shard(u32),
    /// Whichever shard owns the guild: `(guild_id >> 22) % total_shards`.
    Guild(u64),
}

impl Route {
    pub fn reaches(self, shard: u32, total: u32) -> bool {
        match self {
            Route::Shard(s) => s == shard,
            Route::Guild(g) => ((g >> 22) % u64::from(total.max(1))) as u32 == shard,
        }
    }
}

/// State shared by the REST and gateway halves and the test handle.
pub(crate) struct Shared {
    pub inner: Mutex<Inner>,
    /// Woken on every new dispatch and every recorded request.
    pub changed: Notify,
    /// Bumped to make the gateway drop its connection.
    pub drop_connection: watch::Sender<u64>,
    pub watcher: Mutex<Option<Watcher>>,
    pub port: u16,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notify_watcher(&self, seen: Seen) {
        let watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = watcher {
            w(&seen);
        }
    }
}

/// A running stand-in. Dropping it stops the server.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Discord's epoch, for snowflakes that sort like real ones.
const FIRST_ID: u64 = 1_200_000_000_000_000_000;

impl StandIn {
    /// Binds 127.0.0.1 on `port` (0 for any free port) and starts serving.
    pub async fn start(port: u16, guilds: Vec<GuildSpec>) -> std::io::Result<StandIn> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (drop_tx, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::new(guilds)),
            changed: Notify::new(),
            drop_connection: drop_tx,
            watcher: Mutex::new(None),
            port: addr.port(),
        });
        let app = axum::Router::new()
            .route("/gateway", axum::routing::get(gateway::upgrade))
            .fallback(rest::handle)
            .with_state(shared.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(StandIn {
            shared,
            addr,
            stop: Some(stop_tx),
        })
    }

    /// The base URL to point the bot at (`--discord-api`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn bot_id(&self) -> u64 {
        self.shared.lock().bot_id
    }

    /// A fresh snowflake, for message ids in tests.
    pub fn snowflake(&self) -> u64 {
        self.shared.lock().snowflake()
    }

    /// Calls `f` for every request and dispatch from now on.
    pub fn watch(&self, f: impl Fn(&Seen) + Send + Sync + 'static) {
        *self.shared.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(f));
    }

    /// Refuses DMs to this user with error 50007, as Discord does when DMs are closed.
    pub fn refuse_dms(&self, user: u64) {
        self.shared.lock().refuse_dms.insert(user);
    }

    /// Answers the next request whose path contains `path_contains` with `status`.
    pub fn fail_next(&self, path_contains: &str, status: u16, retry_after: f64) {
        self.shared.lock().failures.push_back(Failure {
            path_contains: path_contains.into(),
            status,
            retry_after,
        });
    }

    /// Sends a gateway dispatch (`MESSAGE_CREATE`, `TYPING_START`…) to the bot.
    pub fn dispatch(&self, kind: &str, data: Value) {
        self.shared.lock().push_dispatch(kind, data.clone());
        self.shared.notify_watcher(Seen::Dispatched {
            kind: kind.into(),
            data,
        });
        self.shared.changed.notify_waiters();
    }

    /// Drops the gateway connection without a close handshake, like a network fault.
    pub fn drop_connection(&self) {
        self.shared.drop_connection.send_modify(|n| *n += 1);
    }

    /// How many shards have a live session (identified and not replaced).
    pub fn shards_identified(&self) -> usize {
        self.shared.lock().sessions.len()
    }

    /// Keeps at most about `limit` dispatches (for RESUME replay) and `limit` recorded requests,
    /// dropping the oldest, for long runs (the soak bench sends a million messages). Dispatches
    /// not yet sent on every live session are never dropped. A resume from further back than the
    /// kept history misses the dropped events. Without a limit everything is kept.
    pub fn limit_history(&self, limit: usize) {
        self.shared.lock().history_limit = Some(limit.max(1));
    }

    /// How many gateway connections were opened so far.
    pub fn connections(&self) -> u64 {
        self.shared.lock().connections
    }

    /// Every REST request so far (the newest ones under [`StandIn::limit_history`]).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Whether the bot has identified (READY sent).
    pub fn identified(&self) -> bool {
        self.shared.lock().identified
    }

    /// Waits until `check` holds for the recorded requests, or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&[Recorded]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            // Check a snapshot: `check` may itself ask the stand-in things, which takes the lock.
            if check(&self.requests()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(&self.requests());
            }
        }
    }

    /// Waits for the bot to identify.
    pub async fn wait_identified(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if self.identified() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.identified();
            }
        }
    }

    /// A cheap, cloneable view of the stand-in, for watchers that need to look things up.
    pub fn probe(&self) -> Probe {
        Probe(self.shared.clone())
    }

    /// The DM channel the stand-in opened for `user`, if any.
    pub fn dm_channel_of(&self, user: u64) -> Option<u64> {
        self.shared.lock().dm_channels.get(&user).copied()
    }
}

/// Looks things up in a running stand-in; safe to call from a watcher.
#[derive(Clone)]
pub struct Probe(Arc<Shared>);

impl Probe {
    /// The user a DM channel belongs to.
    pub fn dm_recipient(&self, channel: u64) -> Option<u64> {
        self.0.lock().dm_recipient.get(&channel).copied()
    }

    /// Whether a channel is a thread the bot created (a coaching thread).
    pub fn is_created_thread(&self, channel: u64) -> bool {
        self.0.lock().threads.contains_key(&channel)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A user object as Discord sends it.
pub fn user_json(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0", "global_name": name, "avatar": null, "bot": bot})
}

/// A message object as Discord sends it (also the shape of a MESSAGE_CREATE).
#[allow(clippy::too_many_arguments)]
pub fn message_json(
    id: u64,
    channel_id: u64,
    guild_id: Option<u64>,
    author: Value,
    member_roles: Option<&[u64]>,
    content: &str,
    timestamp: &str,
    extra: Value,
) -> Value {
    let mut m = json!({
        "id": id.to_string(),
        "channel_id": channel_id.to_string(),
        "author": author,
        "content": content,
        "timestamp": timestamp,
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": false,
        "type": 0,
    });
    if let Some(g) = guild_id {
        m["guild_id"] = json!(g.to_string());
    }
    if let Some(roles) = member_roles {
        m["member"] = json!({
            "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "deaf": false, "mute": false, "flags": 0, "joined_at": "2026-01-01T00:00:00Z",
        });
    }
    if let (Value::Object(m), Value::Object(extra)) = (&mut m, extra) {
        m.extend(extra);
    }
    m
}

/// A guild channel object.
pub fn channel_json(c: &ChannelSpec, guild_id: u64) -> Value {
    let mut v = json!({
        "id": c.id.to_string(),
        "type": c.kind,
        "name": c.name,
        "guild_id": guild_id.to_string(),
        "position": 0,
        "permission_overwrites": [],
        "nsfw": false,
    });
    if let Some(p) = c.parent_id {
        v["parent_id"] = json!(p.to_string());
    }
    if c.kind == 11 || c.kind == 12 {
        v["thread_metadata"] = json!({"archived": false, "auto_archive_duration": 1440, "archive_timestamp": "2026-01-01T00:00:00Z", "locked": false});
        v["member_count"] = json!(1);
        v["message_count"] = json!(0);
        v["owner_id"] = json!(guild_id.to_string());
    }
    v
}

pub(crate) fn guild_create_json(g: &GuildSpec) -> Value {
    let (threads, channels): (Vec<&ChannelSpec>, Vec<&ChannelSpec>) =
        g.channels.iter().partition(|c| c.kind == 11 || c.kind == 12);
    json!({
        "id": g.id.to_string(),
        "name": g.name,
        "owner_id": g.owner_id.to_string(),
        "joined_at": "2026-01-01T00:00:00Z",
        "large": false,
        "unavailable": false,
        "member_count": g.members.len(),
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "verification_level": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "system_channel_flags": 0,
        "preferred_locale": "en-US",
        "premium_progress_bar_enabled": false,
        "features": [], "emojis": [], "stickers": [], "presences": [], "voice_states": [],
        "stage_instances": [], "guild_scheduled_events": [],
        "roles": g.roles.iter().map(|r| json!({
            "id": r.id.to_string(), "name": r.name, "color": 0, "colors": {"primary_color": 0},
            "hoist": false, "position": 1, "permissions": r.permissions.to_string(), "managed": false, "mentionable": false,
        })).collect::<Vec<_>>(),
        "members": g.members.iter().map(|m| json!({
            "user": user_json(m.id, &m.name, m.bot),
            "roles": m.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "deaf": false, "mute": false, "flags": 0, "joined_at": "2026-01-01T00:00:00Z",
        })).collect::<Vec<_>>(),
        "channels": channels.iter().map(|c| channel_json(c, g.id)).collect::<Vec<_>>(),
        "threads": threads.iter().map(|c| channel_json(c, g.id)).collect::<Vec<_>>(),
    })
}

/// How long the gateway asks the client to wait between heartbeats.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: u64) -> Recorded {
        Recorded {
            method: "POST".into(),
            path: format!("/channels/{n}/messages"),
            body: Value::Null,
            status: 200,
        }
    }

    #[test]
    fn without_a_limit_everything_is_kept() {
        let mut inner = Inner::new(vec![]);
        for n in 0..500 {
            inner.push_dispatch("MESSAGE_CREATE", json!({"n": n}));
            inner.record(request(n));
        }
        assert_eq!((inner.log.len(), inner.requests.len()), (500, 500));
    }

    #[test]
    fn history_is_trimmed_only_behind_what_every_session_was_sent() {
        let mut inner = Inner::new(vec![]);
        inner.history_limit = Some(10);
        inner.sessions.insert(0, "a".into());
        inner.sessions.insert(1, "b".into());
        // Shard 1 has been sent nothing yet: nothing may go.
        inner.delivered.insert(0, 1_000);
        for n in 0..100 {
            inner.push_dispatch("MESSAGE_CREATE", json!({"n": n}));
        }
        assert_eq!(inner.log.len(), 100);
        // Both shards were sent up to 60: what follows stays, however long the log.
        inner.delivered.insert(1, 60);
        inner.push_dispatch("MESSAGE_CREATE", json!({"n": 100}));
        assert_eq!(inner.log.first().map(|e| e.0), Some(61));
        assert_eq!(inner.log.last().map(|e| e.0), Some(101));
        // Everything sent: the newest `limit` stay for a resume.
        inner.delivered.insert(1, 1_000);
        for n in 0..20 {
            inner.push_dispatch("MESSAGE_CREATE", json!({"n": n}));
        }
        assert!(inner.log.len() >= 10 && inner.log.len() <= 20, "{}", inner.log.len());
        assert_eq!(inner.log.last().map(|e| e.0), Some(121));
        let seqs: Vec<u64> = inner.log.iter().map(|e| e.0).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "a contiguous tail: {seqs:?}");
    }

    #[test]
    fn recorded_requests_keep_the_newest() {
        let mut inner = Inner::new(vec![]);
        inner.history_limit = Some(10);
        for n in 0..95 {
            inner.record(request(n));
        }
        assert!(inner.requests.len() >= 10 && inner.requests.len() <= 20);
        assert_eq!(
            inner.requests.last().map(|r| r.path.as_str()),
            Some("/channels/94/messages")
        );
    }
}
