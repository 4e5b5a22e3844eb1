//! End-to-end: the real serenity client, the real engine and config, against the local Discord
//! stand-in over loopback. Time is a hand-moved clock, so "due at 3pm" is checked without waiting.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use backstop::clock::{Clock, ManualClock};
use backstop::discord::config::{BotConfig, Token};
use backstop::discord::{start, Endpoint, Options, Running};
use backstop::store::{StorageConfig, Store};
use backstop_stand_in::{
    channel_json, message_json, user_json, ChannelSpec, GuildSpec, MemberSpec, Recorded, RoleSpec, StandIn,
};

const GUILD: u64 = 900_000_000_000_000_001;
const AGENT_ROLE: u64 = 900_000_000_000_000_010;
const CATEGORY: u64 = 900_000_000_000_000_100;
const TICKET: u64 = 900_000_000_000_000_101;
const SUPPORT: u64 = 900_000_000_000_000_102;
const THREAD: u64 = 900_000_000_000_000_103;
const UNWATCHED: u64 = 900_000_000_000_000_104;
const COACHING: u64 = 900_000_000_000_000_105;
const ANA: u64 = 900_000_000_000_001_001;
const BEN: u64 = 900_000_000_000_001_002;
const CUST: u64 = 900_000_000_000_002_001;
const OTHER_BOT: u64 = 900_000_000_000_003_001;
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    stand_in: StandIn,
    clock: Arc<ManualClock>,
    bot: Option<Running>,
    /// The bot's rule folder (`config/`) and SQLite folder (`data/`), removed when the test ends.
    data: tempfile::TempDir,
    /// What the bot was started with, to start it again on the same data.
    sources: backstop::config::Sources,
    config: Arc<BotConfig>,
}

fn guild() -> GuildSpec {
    let channel = |id, kind, name: &str, parent| ChannelSpec {
        id,
        kind,
        name: name.into(),
        parent_id: parent,
    };
    let member = |id, name: &str, roles: Vec<u64>, bot| MemberSpec {
        id,
        name: name.into(),
        roles,
        bot,
    };
    GuildSpec {
        id: GUILD,
        name: "Acme Support".into(),
        owner_id: ANA,
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
        channels: vec![
            channel(CATEGORY, 4, "tickets", None),
            channel(TICKET, 0, "ticket-0001", Some(CATEGORY)),
            channel(SUPPORT, 0, "support", None),
            channel(THREAD, 11, "order help", Some(SUPPORT)),
            channel(UNWATCHED, 0, "random", None),
            channel(COACHING, 0, "coaching", None),
        ],
        members: vec![
            member(ANA, "ana", vec![AGENT_ROLE], false),
            member(BEN, "ben", vec![AGENT_ROLE], false),
            member(CUST, "cust", vec![], false),
            member(OTHER_BOT, "otherbot", vec![], true),
        ],
    }
}

/// Starts the bot on the stand-in with its SQLite store under `data/data` and /metrics on a
/// free port.
async fn launch(
    engine: &backstop::engine::Engine,
    stand_in: &StandIn,
    data: &std::path::Path,
    sources: &backstop::config::Sources,
    config: Arc<BotConfig>,
    clock: &Arc<ManualClock>,
) -> Running {
    let store = Store::open(&StorageConfig {
        data_dir: data.join("data"),
        ..StorageConfig::default()
    })
    .await
    .unwrap();
    let options = Options {
        endpoint: Endpoint {
            api: Some(stand_in.url()),
        },
        clock: Clock::Manual(clock.clone()),
        shards: None,
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        sources: Some(sources.clone()),
    };
    start(engine, config, &Token::new("test-token".into()), store, options)
        .await
        .unwrap()
}

async fn setup() -> Setup {
    setup_with("").await
}

/// The bot with extra TOML appended to its guild's section (after `[guild.follow_up]`).
async fn setup_with(extra: &str) -> Setup {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let stand_in = StandIn::start(0, vec![guild()]).await.expect("stand-in starts");
    // The bot's own copy of the rule folder, so a test can change it under the running bot.
    let data = tempfile::tempdir().unwrap();
    let shipped = common::shipped();
    let rules_dir = data.path().join("config");
    common::copy_config(&rules_dir);
    let sources = backstop::config::Sources {
        config: Some(rules_dir),
        prompts: shipped.prompts.clone(),
    };
    let engine = sources.engine().unwrap();
    let config_text = format!(
        "[[guild]]\nid = \"{GUILD}\"\nwatch_channels = [\"{SUPPORT}\"]\nwatch_categories = [\"{CATEGORY}\"]\nagent_roles = [\"{AGENT_ROLE}\"]\ncoaching_channel = \"{COACHING}\"\n[guild.follow_up]\nescalate_after = \"30m\"\n{extra}"
    );
    let config = Arc::new(BotConfig::parse("backstop.toml", &config_text, engine.settings()).unwrap());
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let bot = launch(&engine, &stand_in, data.path(), &sources, config.clone(), &clock).await;
    assert!(
        stand_in.wait_identified(WAIT).await,
        "the bot identifies with the gateway"
    );
    // Commands are registered on READY; once they are, the coach has the session.
    let registered = stand_in
        .wait_until(WAIT, |r| r.iter().any(|r| r.path.ends_with("/commands")))
        .await;
    assert!(registered, "commands registered; requests: {:#?}", stand_in.requests());
    Setup {
        stand_in,
        clock,
        bot: Some(bot),
        data,
        sources,
        config,
    }
}

impl Setup {
    /// A user message in `channel` at `at` (HH:MM on 2026-11-23 UTC).
    fn say(&self, channel: u64, author: u64, text: &str, at: &str) -> u64 {
        let id = self.stand_in.snowflake();
        let (name, roles, bot) = match author {
            ANA => ("ana", vec![AGENT_ROLE], false),
            BEN => ("ben", vec![AGENT_ROLE], false),
            OTHER_BOT => ("otherbot", vec![], true),
            _ => ("cust", vec![], false),
        };
        let ts = format!("2026-11-23T{at}:00Z");
        let m = message_json(
            id,
            channel,
            Some(GUILD),
            user_json(author, name, bot),
            Some(&roles),
            text,
            &ts,
            json!({}),
        );
        self.clock.advance_to(ts.parse().unwrap());
        self.dispatch_and_wait("MESSAGE_CREATE", m);
        id
    }

    /// Dispatches a message event and waits until the bot has taken it, as a human-paced chat
    /// would: serenity handles events concurrently, so back-to-back sends could be read out of order.
    fn dispatch_and_wait(&self, kind: &str, event: Value) {
        let coach = &self.bot.as_ref().unwrap().coach;
        let before = coach.messages_seen.load(std::sync::atomic::Ordering::SeqCst);
        self.stand_in.dispatch(kind, event);
        let deadline = std::time::Instant::now() + WAIT;
        // The runtime is multi-threaded: let it move other work off this thread while it waits.
        tokio::task::block_in_place(|| {
            while coach.messages_seen.load(std::sync::atomic::Ordering::SeqCst) == before
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    }

    /// Messages the bot posted to `channel`.
    fn posts_to(&self, channel: u64) -> Vec<Recorded> {
        let path = format!("/channels/{channel}/messages");
        self.stand_in
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path && r.status == 200)
            .collect()
    }

    /// An application command (type 2) or autocomplete (type 4) from `user` in the ticket channel.
    /// `user` starts typing in `channel`.
    fn typing(&self, channel: u64, user: u64) {
        self.stand_in.dispatch(
            "TYPING_START",
            json!({"channel_id": channel.to_string(), "guild_id": GUILD.to_string(), "user_id": user.to_string(), "timestamp": 1_795_000_000u64}),
        );
    }

    fn interact(&self, kind: u8, name: &str, options: Value, user: u64, roles: &[u64], permissions: u64) -> String {
        let id = self.stand_in.snowflake();
        let token = format!("token-{id}");
        // Discord resolves user options: the user and, in a guild, their member with roles.
        let (mut users, mut members) = (serde_json::Map::new(), serde_json::Map::new());
        for option in options.as_array().into_iter().flatten().filter(|o| o["type"] == 6) {
            let picked: u64 = option["value"].as_str().unwrap().parse().unwrap();
            let roles: Vec<String> = if picked == CUST {
                vec![]
            } else {
                vec![AGENT_ROLE.to_string()]
            };
            users.insert(picked.to_string(), user_json(picked, "picked", false));
            members.insert(
                picked.to_string(),
                json!({"roles": roles, "deaf": false, "mute": false, "flags": 0, "joined_at": "2026-01-01T00:00:00Z"}),
            );
        }
        let interaction = json!({
            "id": id.to_string(), "application_id": "1200000000000000001", "type": kind, "token": token,
            "version": 1, "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608,
            "guild_id": GUILD.to_string(), "channel_id": TICKET.to_string(),
            "data": {"id": "1300000000000000002", "name": name, "type": 1, "options": options,
                     "resolved": {"users": users, "members": members}},
            "member": {"user": user_json(user, "someone", false), "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                       "deaf": false, "mute": false, "flags": 0, "joined_at": "2026-01-01T00:00:00Z", "permissions": permissions.to_string()},
        });
        self.stand_in.dispatch("INTERACTION_CREATE", interaction);
        token
    }

    /// A button press on a message the bot sent.
    fn press(&self, custom_id: &str, user: u64, on: &Recorded) -> String {
        let id = self.stand_in.snowflake();
        let token = format!("token-{id}");
        let channel: u64 = on.path.split('/').nth(2).unwrap().parse().unwrap();
        let message = message_json(
            self.stand_in.snowflake(),
            channel,
            None,
            user_json(self.stand_in.bot_id(), "Backstop", true),
            None,
            "",
            "2026-11-23T09:00:00Z",
            json!({}),
        );
        let interaction = json!({
            "id": id.to_string(), "application_id": "1200000000000000001", "type": 3, "token": token,
            "version": 1, "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608,
            "channel_id": channel.to_string(), "message": message,
            "data": {"custom_id": custom_id, "component_type": 2},
            "user": user_json(user, "someone", false),
        });
        self.stand_in.dispatch("INTERACTION_CREATE", interaction);
        token
    }

    /// The bot's answer to an interaction.
    async fn answer(&self, token: &str) -> Value {
        let path = format!("/{token}/callback");
        let ok = self
            .stand_in
            .wait_until(WAIT, |r| r.iter().any(|r| r.path.ends_with(&path)))
            .await;
        assert!(ok, "no answer to {token}: {:#?}", self.stand_in.requests());
        self.stand_in
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with(&path))
            .unwrap()
            .body
    }

    fn dms_to(&self, user: u64) -> Vec<Recorded> {
        self.stand_in
            .dm_channel_of(user)
            .map(|c| self.posts_to(c))
            .unwrap_or_default()
    }

    async fn wait_dms(&self, user: u64, n: usize) -> Vec<Recorded> {
        let ok = self
            .stand_in
            .wait_until(WAIT, |_| {
                self.stand_in
                    .dm_channel_of(user)
                    .is_some_and(|c| self.posts_to(c).len() >= n)
            })
            .await;
        assert!(
            ok,
            "expected {n} DMs to {user}, got {:#?}; all requests: {:#?}",
            self.dms_to(user),
            self.stand_in.requests()
        );
        self.dms_to(user)
    }

    /// Gives the bot a moment to act on what it was sent, for asserting that nothing happened.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    /// Stops the bot and starts a new one on the same database, as a restart does.
    async fn restart(&mut self) {
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await.unwrap();
        }
        let readies = self
            .stand_in
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/commands"))
            .count();
        let engine = self.sources.engine().unwrap();
        let bot = launch(
            &engine,
            &self.stand_in,
            self.data.path(),
            &self.sources,
            self.config.clone(),
            &self.clock,
        )
        .await;
        let registered = self
            .stand_in
            .wait_until(WAIT, |r| {
                r.iter().filter(|r| r.path.ends_with("/commands")).count() > readies
            })
            .await;
        assert!(registered, "the restarted bot connects");
        self.bot = Some(bot);
    }

    async fn stop(mut self) {
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await.unwrap();
        }
    }
}

fn embed(r: &Recorded) -> &Value {
    &r.body["embeds"][0]
}

fn buttons(r: &Recorded) -> Vec<String> {
    r.body["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prior_failure_cue_reaches_the_last_agent_privately() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi, thanks for reaching out. How can I help?", "09:00");
    s.say(
        TICKET,
        CUST,
        "I haven't received my refund and it's been 3 weeks",
        "09:01",
    );
    let dms = s.wait_dms(ANA, 1).await;
    let e = embed(&dms[0]);
    assert!(e["title"].as_str().unwrap().len() > 5);
    let text = e["description"].as_str().unwrap();
    assert!(text.contains('•'), "phrases from the library are offered: {text}");
    assert!(
        e["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["value"].as_str().unwrap().contains("/channels/")),
        "jump link"
    );
    assert_eq!(buttons(&dms[0]), ["Helpful", "Not helpful"]);
    assert!(
        s.posts_to(TICKET).is_empty(),
        "coaching never goes where the customer can read it"
    );
    assert!(s.dms_to(BEN).is_empty(), "only the agent in the conversation is nudged");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nudges_name_the_customer_the_way_discord_shows_them() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi, thanks for reaching out. How can I help?", "09:00");
    s.say(TICKET, CUST, "I never received the replacement you sent", "09:01");
    let dms = s.wait_dms(ANA, 1).await;
    let text = embed(&dms[0])["description"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("<@{CUST}> ")),
        "a mention, which Discord shows as the member's name: {text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_asking_before_the_due_time_is_not_called_overdue() {
    let s = setup().await;
    s.say(TICKET, CUST, "hi, quick question about my order", "14:00");
    s.say(
        TICKET,
        ANA,
        "So sorry about this! I'll call you back by 3pm with an update.",
        "14:01",
    );
    s.wait_dms(ANA, 1).await;
    s.say(
        TICKET,
        CUST,
        "you said you'd call me back, still waiting on that call",
        "14:20",
    );
    let dms = s.wait_dms(ANA, 2).await;
    let e = embed(&dms[1]);
    let (title, text) = (e["title"].as_str().unwrap(), e["description"].as_str().unwrap());
    assert_eq!(title, "They're already asking", "{text}");
    assert!(
        text.contains("still waiting on that call"),
        "quotes the customer: {text}"
    );
    assert!(!text.contains("hasn't gone out"), "nothing is late yet: {text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explaining_before_apologizing_is_nudged_in_a_watched_thread() {
    let s = setup().await;
    s.say(THREAD, CUST, "my order arrived smashed, this is ridiculous", "09:00");
    s.say(
        THREAD,
        ANA,
        "The courier must have dropped it, that happens with glass items.",
        "09:02",
    );
    let dms = s.wait_dms(ANA, 1).await;
    assert!(dms[0].body["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap()
        .contains("explain_before_apology"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promise_gets_a_heads_up_then_an_overdue_notice_then_an_escalation() {
    let s = setup().await;
    s.say(TICKET, CUST, "hi, quick question about my order", "14:00");
    s.say(
        TICKET,
        ANA,
        "So sorry about this! I'll call you back by 3pm with an update.",
        "14:01",
    );
    let dms = s.wait_dms(ANA, 1).await;
    assert!(dms[0].body["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap()
        .contains("follow_up_promised"));
    s.clock.advance_to("2026-11-23T14:44:00Z".parse().unwrap());
    s.settle().await;
    assert_eq!(s.dms_to(ANA).len(), 1, "nothing before the heads-up time");
    s.clock.advance_to("2026-11-23T14:45:00Z".parse().unwrap());
    let dms = s.wait_dms(ANA, 2).await;
    assert!(dms[1].body["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap()
        .contains("follow_up_reminder"));
    assert_eq!(buttons(&dms[1]), ["Helpful", "Not helpful", "Done", "Snooze 1h"]);
    s.clock.advance_to("2026-11-23T15:00:00Z".parse().unwrap());
    let dms = s.wait_dms(ANA, 3).await;
    assert!(dms[2].body["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap()
        .contains("follow_up_overdue"));
    s.clock.advance_to("2026-11-23T15:31:00Z".parse().unwrap());
    assert!(
        s.stand_in.wait_until(WAIT, |_| !s.posts_to(COACHING).is_empty()).await,
        "lapsed promise flagged to the team"
    );
    assert!(s.posts_to(COACHING)[0].body["embeds"][0]["description"]
        .as_str()
        .unwrap()
        .contains(&ANA.to_string()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_dms_fall_back_to_one_private_coaching_thread() {
    let s = setup().await;
    s.stand_in.refuse_dms(BEN);
    s.say(TICKET, BEN, "Hello, Ben here.", "09:00");
    s.say(
        TICKET,
        CUST,
        "this is the third time I'm contacting you about this",
        "09:01",
    );
    let created = s
        .stand_in
        .wait_until(WAIT, |r| {
            r.iter().any(|r| r.path == format!("/channels/{COACHING}/threads"))
        })
        .await;
    assert!(
        created,
        "a private thread is created in the coaching channel; requests: {:#?}",
        s.stand_in.requests()
    );
    let thread_req = s
        .stand_in
        .requests()
        .into_iter()
        .find(|r| r.path == format!("/channels/{COACHING}/threads"))
        .unwrap();
    assert_eq!(thread_req.body["type"], 12, "private thread");
    assert_eq!(
        thread_req.body["name"], "Backstop coaching · ben",
        "named after the agent, not their id"
    );
    let ok = s
        .stand_in
        .wait_until(WAIT, |r| {
            r.iter()
                .any(|r| r.path.contains("/thread-members/") && r.path.ends_with(&BEN.to_string()))
        })
        .await;
    assert!(ok, "the agent is added to the thread");
    let ok = s
        .stand_in
        .wait_until(WAIT, |r| {
            r.iter()
                .filter(|r| {
                    r.method == "POST"
                        && r.path.ends_with("/messages")
                        && r.status == 200
                        && !r.path.contains(&TICKET.to_string())
                })
                .count()
                >= 1
        })
        .await;
    assert!(ok);
    assert!(s.posts_to(TICKET).is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cue_before_any_agent_goes_to_the_first_agent_who_types() {
    let s = setup().await;
    s.say(
        TICKET,
        CUST,
        "someone was supposed to call me back yesterday and nobody did",
        "09:00",
    );
    s.settle().await;
    assert!(
        s.dms_to(ANA).is_empty() && s.dms_to(BEN).is_empty(),
        "no agent yet, nobody to nudge"
    );
    s.typing(TICKET, BEN);
    let dms = s.wait_dms(BEN, 1).await;
    assert!(dms[0].body["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap()
        .contains("prior_failure"));
    s.say(TICKET, BEN, "Hi, I'm so sorry nobody called you back.", "09:02");
    s.settle().await;
    assert_eq!(s.dms_to(BEN).len(), 1, "claimed once");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_gets_a_private_brief_before_writing_and_the_customer_sees_none() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi, Ana here.", "09:00");
    s.say(
        TICKET,
        CUST,
        "I still haven't received my refund and nobody called me back",
        "09:01",
    );
    s.say(
        TICKET,
        ANA,
        "I'm so sorry your refund hasn't arrived. I'll call you back by 3pm with an update.",
        "09:03",
    );
    s.settle().await;
    let before = s.dms_to(BEN).len();
    assert_eq!(before, 0, "Ben is not in the conversation yet");
    // Ben takes over: he starts typing and the brief reaches him before his first word.
    s.typing(TICKET, BEN);
    let dms = s.wait_dms(BEN, 1).await;
    let embed = &dms[0].body["embeds"][0];
    let text = embed["description"].as_str().unwrap_or_default();
    assert!(embed["footer"]["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("handoff_brief"));
    assert!(text.contains(&format!("<@{ANA}>")), "names the last agent: {text}");
    assert!(
        text.contains("haven't received my refund"),
        "the customer's words: {text}"
    );
    assert!(text.contains("I'm so sorry your refund"), "the apology so far: {text}");
    let due = embed["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "Due"))
        .map(|f| f["value"].as_str().unwrap_or_default().to_string());
    assert!(due.is_some_and(|d| d.contains("15:00")), "the open promise's due time");
    // Once per agent: typing again or writing sends no second brief.
    s.typing(TICKET, BEN);
    s.say(TICKET, BEN, "Hi, Ben here, I've got this now.", "09:30");
    s.settle().await;
    let briefs = s
        .dms_to(BEN)
        .iter()
        .filter(|d| {
            d.body["embeds"][0]["footer"]["text"]
                .as_str()
                .unwrap_or_default()
                .starts_with("handoff_brief")
        })
        .count();
    assert_eq!(briefs, 1);
    assert!(
        s.posts_to(TICKET).is_empty(),
        "the customer's channel never sees coaching"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_and_unwatched_channels_never_trigger() {
    let s = setup().await;
    s.say(UNWATCHED, ANA, "hello", "09:00");
    s.say(
        UNWATCHED,
        CUST,
        "I haven't received my order and I'm still waiting",
        "09:01",
    );
    s.say(TICKET, ANA, "hello", "09:02");
    s.say(
        TICKET,
        OTHER_BOT,
        "I haven't received my order and I'm still waiting",
        "09:03",
    );
    s.settle().await;
    assert!(s.dms_to(ANA).is_empty(), "{:#?}", s.dms_to(ANA));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_dm_is_retried_and_delivered() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi!", "09:00");
    s.stand_in.fail_next("/messages", 429, 0.05);
    s.stand_in.fail_next("/messages", 502, 0.0);
    s.say(TICKET, CUST, "I never got my refund", "09:01");
    let dms = s.wait_dms(ANA, 1).await;
    assert_eq!(dms.len(), 1);
    let failed: Vec<u16> = s
        .stand_in
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages") && r.status != 200)
        .map(|r| r.status)
        .collect();
    assert_eq!(failed, [429, 502]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_gateway_connection_resumes_without_losing_or_doubling_events() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi, how can I help?", "09:00");
    s.stand_in.drop_connection();
    // Sent while the connection is down: delivered on RESUME.
    s.say(TICKET, CUST, "I haven't received my order", "09:01");
    let resumed = s.stand_in.wait_until(WAIT, |_| s.stand_in.connections() >= 2).await;
    assert!(resumed, "serenity reconnects");
    let dms = s.wait_dms(ANA, 1).await;
    assert_eq!(dms.len(), 1);
    s.settle().await;
    assert_eq!(s.dms_to(ANA).len(), 1, "no event nudged twice");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_are_registered_and_answer_ephemerally() {
    let s = setup().await;
    let registered = s
        .stand_in
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/commands"))
        .unwrap();
    assert_eq!(registered.method, "PUT", "bulk overwrite, so stale commands disappear");
    assert!(registered.path.contains(&format!("/guilds/{GUILD}/commands")));
    let names: Vec<&str> = registered
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["phrase", "followups", "handoff", "followup", "coach"]);
    let interaction = json!({
        "id": "1300000000000000001", "application_id": "1200000000000000001", "type": 2, "token": "tok",
        "version": 1, "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608,
        "guild_id": GUILD.to_string(), "channel_id": TICKET.to_string(),
        "data": {"id": "1300000000000000002", "name": "phrase", "type": 1,
                 "options": [{"name": "situation", "type": 3, "value": "missed_callback"}]},
        "member": {"user": user_json(ANA, "ana", false), "roles": [AGENT_ROLE.to_string()], "deaf": false, "mute": false, "flags": 0, "joined_at": "2026-01-01T00:00:00Z", "permissions": "0"},
    });
    s.stand_in.dispatch("INTERACTION_CREATE", interaction);
    let answered = s
        .stand_in
        .wait_until(WAIT, |r| r.iter().any(|r| r.path.ends_with("/callback")))
        .await;
    assert!(answered, "{:#?}", s.stand_in.requests());
    let reply = s
        .stand_in
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/callback"))
        .unwrap();
    assert_eq!(reply.body["type"], 4);
    assert_eq!(reply.body["data"]["flags"], 64, "ephemeral");
    assert!(reply.body["data"]["content"].as_str().unwrap().contains('•'));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coach_stats_is_for_leads_only() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi!", "09:00");
    s.say(TICKET, CUST, "I never got my refund", "09:01");
    s.wait_dms(ANA, 1).await;
    s.settle().await; // the coach records a delivery once Discord has answered it
    let stats = json!([{"name": "stats", "type": 1, "options": []}]);
    let refused = s
        .answer(&s.interact(2, "coach", stats.clone(), ANA, &[AGENT_ROLE], 0))
        .await;
    assert_eq!(refused["data"]["flags"], 64);
    assert!(
        refused["data"]["content"].as_str().unwrap().contains("for leads"),
        "{refused}"
    );
    let manage_guild = 1 << 5;
    let lead = s.answer(&s.interact(2, "coach", stats, BEN, &[], manage_guild)).await;
    assert!(
        lead["data"]["content"]
            .as_str()
            .unwrap()
            .contains("prior_failure: 1 / 1"),
        "{lead}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_agent_gets_no_coaching_until_unmuted() {
    let s = setup().await;
    let mute = json!([{"name": "mute", "type": 1, "options": [{"name": "duration", "type": 3, "value": "1h"}]}]);
    let reply = s.answer(&s.interact(2, "coach", mute, ANA, &[AGENT_ROLE], 0)).await;
    assert!(reply["data"]["content"].as_str().unwrap().contains("paused"), "{reply}");
    s.say(TICKET, ANA, "Hi!", "09:00");
    s.say(TICKET, CUST, "I never got my refund", "09:01");
    s.settle().await;
    assert!(s.dms_to(ANA).is_empty());
    s.answer(&s.interact(
        2,
        "coach",
        json!([{"name": "unmute", "type": 1, "options": []}]),
        ANA,
        &[AGENT_ROLE],
        0,
    ))
    .await;
    s.say(TICKET, CUST, "and nobody called me back either", "09:30");
    s.wait_dms(ANA, 1).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_sends_the_named_agent_a_private_brief() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi, Ana here.", "09:00");
    s.say(
        TICKET,
        CUST,
        "this is the third time I've asked about my refund",
        "09:01",
    );
    let _ = s.wait_dms(ANA, 1).await;
    let options = json!([{"name": "to", "type": 6, "value": BEN.to_string()}]);
    let answer = s
        .answer(&s.interact(2, "handoff", options, ANA, &[AGENT_ROLE], 0))
        .await;
    let text = answer["data"]["content"].as_str().unwrap_or_default();
    assert!(text.contains(&format!("<@{BEN}>")), "{text}");
    assert_eq!(answer["data"]["flags"], 64, "answered ephemerally");
    let dms = s.wait_dms(BEN, 1).await;
    let brief = &dms[0].body["embeds"][0];
    assert!(brief["footer"]["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("handoff_brief"));
    assert!(brief["description"].as_str().unwrap_or_default().contains("third time"));
    assert!(
        s.posts_to(TICKET).is_empty(),
        "the customer's channel never sees coaching"
    );
    // A customer can't send anyone the brief, and it never goes to a customer.
    let options = json!([{"name": "to", "type": 6, "value": BEN.to_string()}]);
    let refused = s.answer(&s.interact(2, "handoff", options, CUST, &[], 0)).await;
    assert!(refused["data"]["content"]
        .as_str()
        .unwrap_or_default()
        .contains("Only agents"));
    let options = json!([{"name": "to", "type": 6, "value": CUST.to_string()}]);
    let refused = s
        .answer(&s.interact(2, "handoff", options, ANA, &[AGENT_ROLE], 0))
        .await;
    assert!(refused["data"]["content"]
        .as_str()
        .unwrap_or_default()
        .contains("isn't an agent"));
    assert!(s.dms_to(CUST).is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followups_lists_the_callers_promises_and_done_closes_one() {
    let s = setup().await;
    s.say(TICKET, CUST, "hello, a question about my order", "14:00");
    s.say(TICKET, ANA, "Sure! I'll call you back by 3pm today.", "14:01");
    let dms = s.wait_dms(ANA, 1).await;
    let listed = s
        .answer(&s.interact(2, "followups", json!([]), ANA, &[AGENT_ROLE], 0))
        .await;
    let text = listed["data"]["content"].as_str().unwrap();
    assert!(
        text.contains("15:00") && text.contains("call you back") && text.contains("/channels/"),
        "{text}"
    );
    let other = s
        .answer(&s.interact(2, "followups", json!([]), BEN, &[AGENT_ROLE], 0))
        .await;
    assert!(
        other["data"]["content"].as_str().unwrap().contains("no open"),
        "nobody sees another agent's promises"
    );
    let ack = s
        .answer(&s.press(&format!("bs:done:{TICKET}:0:follow_up_reminder"), ANA, &dms[0]))
        .await;
    assert_eq!(ack["data"]["flags"], 64);
    assert!(ack["data"]["content"].as_str().unwrap().contains("Marked done"));
    s.clock.advance_to("2026-11-23T16:00:00Z".parse().unwrap());
    s.settle().await;
    assert_eq!(s.dms_to(ANA).len(), 1, "no reminder for a kept promise");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phrase_autocomplete_offers_situations() {
    let s = setup().await;
    let options = json!([{"name": "situation", "type": 3, "value": "callback", "focused": true}]);
    let reply = s.answer(&s.interact(4, "phrase", options, CUST, &[], 0)).await;
    assert_eq!(reply["type"], 8, "autocomplete result");
    let values: Vec<&str> = reply["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert!(values.contains(&"missed_callback"), "{values:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_message_is_reread_without_a_second_nudge() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi!", "09:00");
    let id = s.say(TICKET, CUST, "I never got my refund", "09:01");
    s.wait_dms(ANA, 1).await;
    let edited = message_json(
        id,
        TICKET,
        Some(GUILD),
        user_json(CUST, "cust", false),
        Some(&[]),
        "I never got my refund, still waiting!!",
        "2026-11-23T09:01:00Z",
        json!({"edited_timestamp": "2026-11-23T09:02:00Z"}),
    );
    s.stand_in.dispatch("MESSAGE_UPDATE", edited);
    s.settle().await;
    assert_eq!(s.dms_to(ANA).len(), 1);
    s.stop().await;
}

/// Dispatches `lines` (channel, author, text, second of the day) back to back, without waiting
/// for the bot between them, as a busy gateway does; then waits until the bot read them all.
async fn burst(s: &Setup, lines: &[(u64, u64, String, u32)]) {
    let coach = &s.bot.as_ref().unwrap().coach;
    let before = coach.messages_seen.load(std::sync::atomic::Ordering::SeqCst);
    for (channel, author, text, second) in lines {
        let (name, roles) = if *author == CUST {
            ("cust", vec![])
        } else {
            ("ana", vec![AGENT_ROLE])
        };
        let ts = format!(
            "2026-11-23T{:02}:{:02}:{:02}Z",
            second / 3600,
            second / 60 % 60,
            second % 60
        );
        let m = message_json(
            s.stand_in.snowflake(),
            *channel,
            Some(GUILD),
            user_json(*author, name, false),
            Some(&roles),
            text,
            &ts,
            json!({}),
        );
        s.stand_in.dispatch("MESSAGE_CREATE", m);
    }
    let all = before + lines.len() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while coach.messages_seen.load(std::sync::atomic::Ordering::SeqCst) < all {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bot read every message of the burst"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A customer and an agent taking turns, where the order decides what is coaching: each
/// complaint opens a problem, and each reply explains before it apologizes.
fn turns(channel: u64, n: usize, start: u32) -> Vec<(u64, u64, String, u32)> {
    (0..n)
        .map(|i| {
            let (author, text) = if i % 2 == 0 {
                (
                    CUST,
                    format!("I still haven't received order {i} and nobody called me back"),
                )
            } else {
                (
                    ANA,
                    format!("Our warehouse was short-staffed, so order {} shipped late", i - 1),
                )
            };
            (channel, author, text, start + i as u32)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_messages_at_once_reach_the_engine_in_discord_order() {
    let s = setup().await;
    s.clock.advance_to("2026-11-23T12:00:00Z".parse().unwrap());
    burst(&s, &turns(THREAD, 200, 10 * 3600)).await;
    let coach = &s.bot.as_ref().unwrap().coach;
    assert_eq!(
        coach.out_of_order.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the engine never read a message after a later one"
    );
    let stats = coach.order.stats();
    assert_eq!((stats.released, stats.late), (200, 0), "{stats:?}");
    // Read in order, every reply follows its complaint, so the explanations are coached.
    assert!(!s.dms_to(ANA).is_empty(), "the agent was coached");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_threads_at_once_are_each_in_order_and_read_side_by_side() {
    let s = setup().await;
    let threads: Vec<u64> = (0..30).map(|i| THREAD + 1_000 + i).collect();
    for (i, id) in threads.iter().enumerate() {
        let spec = ChannelSpec {
            id: *id,
            kind: 11,
            name: format!("order help {i}"),
            parent_id: Some(SUPPORT),
        };
        s.stand_in.dispatch("THREAD_CREATE", channel_json(&spec, GUILD));
    }
    s.settle().await;
    s.clock.advance_to("2026-11-23T12:00:00Z".parse().unwrap());
    // Round robin: the threads' messages interleave on the gateway.
    let per_thread: Vec<Vec<_>> = threads.iter().map(|t| turns(*t, 10, 10 * 3600)).collect();
    let lines: Vec<_> = (0..10)
        .flat_map(|i| per_thread.iter().map(move |t| t[i].clone()))
        .collect();
    burst(&s, &lines).await;
    let coach = &s.bot.as_ref().unwrap().coach;
    assert_eq!(coach.out_of_order.load(std::sync::atomic::Ordering::SeqCst), 0);
    let stats = coach.order.stats();
    assert_eq!((stats.released, stats.late), (300, 0), "{stats:?}");
    assert!(
        stats.peak_lanes > 1,
        "conversations are not read one after another: {stats:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backstop_run_exits_cleanly_on_sigterm() {
    let stand_in = StandIn::start(0, vec![guild()]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    common::copy_config(dir.path());
    std::fs::write(
        dir.path().join("backstop.toml"),
        format!("[[guild]]\nid = \"{GUILD}\"\nwatch_categories = [\"{CATEGORY}\"]\nagent_roles = [\"{AGENT_ROLE}\"]\n"),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["run", "--config"])
        .arg(dir.path())
        .arg("--prompts")
        .arg(root.join("prompts"))
        .arg("--discord-api")
        .arg(stand_in.url())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("DISCORD_TOKEN", "secret-test-token-xyz")
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(stand_in.wait_identified(WAIT).await, "backstop run connects");
    assert!(
        stand_in
            .wait_until(WAIT, |r| r.iter().any(|r| r.path.ends_with("/commands")))
            .await
    );
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).to_string())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    assert!(
        !status.1.contains("secret-test-token-xyz"),
        "the token is never printed, even in debug logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_be_read_gets_a_private_answer_not_silence() {
    let s = setup().await;
    // A choice Discord never offered (there are two): poise refuses it, the one error handler answers.
    let odd = json!([{"name": "delivery", "type": 1, "options": [{"name": "to", "type": 4, "value": 7}]}]);
    let reply = s.answer(&s.interact(2, "coach", odd, ANA, &[AGENT_ROLE], 0)).await;
    assert_eq!(reply["data"]["flags"], 64, "answered ephemerally: {reply}");
    assert!(
        reply["data"]["content"].as_str().unwrap().contains("did not match"),
        "{reply}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_can_choose_a_private_thread_over_dms() {
    let s = setup().await;
    // A choice's value is its place in the list: 1 is "Private coaching thread".
    let choose = json!([{"name": "delivery", "type": 1, "options": [{"name": "to", "type": 4, "value": 1}]}]);
    let reply = s.answer(&s.interact(2, "coach", choose, ANA, &[AGENT_ROLE], 0)).await;
    assert!(
        reply["data"]["content"].as_str().unwrap().contains("private thread"),
        "{reply}"
    );
    s.say(TICKET, ANA, "Hi!", "09:00");
    s.say(
        TICKET,
        CUST,
        "this is the third time I'm asking about my refund",
        "09:01",
    );
    let probe = s.stand_in.probe();
    let threaded = s
        .stand_in
        .wait_until(WAIT, |r| {
            r.iter().any(|r| {
                r.method == "POST"
                    && r.status == 200
                    && r.path.ends_with("/messages")
                    && probe.is_created_thread(r.path.split('/').nth(2).and_then(|c| c.parse().ok()).unwrap_or(0))
            })
        })
        .await;
    assert!(threaded, "the nudge went to the agent's coaching thread");
    assert!(s.dms_to(ANA).is_empty(), "and not to a DM");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_buttons_change_the_rule_report() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi!", "09:00");
    let cue = s.say(TICKET, CUST, "I never got my refund", "09:01");
    let dms = s.wait_dms(ANA, 1).await;
    let rules = json!([{"name": "rules", "type": 1, "options": []}]);
    let manage_guild = 1 << 5;
    let refused = s
        .answer(&s.interact(2, "coach", rules.clone(), ANA, &[AGENT_ROLE], 0))
        .await;
    assert!(
        refused["data"]["content"].as_str().unwrap().contains("for leads"),
        "{refused}"
    );
    // The nudge is logged through the store's write queue: ask until it shows.
    let mut before = String::new();
    for _ in 0..50 {
        let reply = s
            .answer(&s.interact(2, "coach", rules.clone(), BEN, &[], manage_guild))
            .await;
        before = reply["data"]["content"].as_str().unwrap().to_string();
        if before.contains("`") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(before.contains(" 1 · 0 · –"), "one fire, no feedback yet: {before}");
    s.answer(&s.press(&format!("bs:down:{TICKET}:{cue}:prior_failure"), ANA, &dms[0]))
        .await;
    // The press is written through the store's queue; the report reads it back.
    let mut after = String::new();
    for _ in 0..50 {
        let reply = s
            .answer(&s.interact(2, "coach", rules.clone(), BEN, &[], manage_guild))
            .await;
        after = reply["data"]["content"].as_str().unwrap().to_string();
        // The report names 👎 in its header too: wait for the count itself.
        if after.contains(" 1 · 1 ·") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after.contains(" 1 · 1 · 0%"), "one fire, one 👎: {after}");
    assert!(after.contains("👎 \"never got my\""), "{after}");
    s.stop().await;
}

/// A plain HTTP/1.1 GET: (status, whole response).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: backstop\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_report_what_the_bot_did() {
    let s = setup().await;
    let addr = s.bot.as_ref().unwrap().metrics_addr.expect("metrics served");
    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ok"));
    s.say(TICKET, ANA, "Hi!", "09:00");
    s.say(TICKET, CUST, "I never got my refund", "09:01");
    s.wait_dms(ANA, 1).await;
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    // The recorder is process-wide and tests share the process: counts are at least this test's.
    let value = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(value("backstop_messages_seen_total") >= 2.0, "{body}");
    assert!(value("backstop_nudges_total{kind=\"prior_failure\"}") >= 1.0, "{body}");
    assert!(
        body.contains("backstop_engine_seconds_bucket"),
        "engine time is a histogram: {body}"
    );
    assert!(body.contains("backstop_write_queue"), "{body}");
    assert!(!body.contains("never got my refund"), "no message text in metrics");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_file_on_reload_keeps_the_old_rules() {
    let s = setup().await;
    let rules = s.data.path().join("config/rules/broken.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"broken\"\nkind = \"prior_failure\"\ncategory = \"not_received\"\nphrases = ['(unclosed']\n",
    )
    .unwrap();
    let reload = json!([{"name": "reload", "type": 1, "options": []}]);
    let refused = s
        .answer(&s.interact(2, "coach", reload.clone(), ANA, &[AGENT_ROLE], 0))
        .await;
    assert!(
        refused["data"]["content"].as_str().unwrap().contains("for leads"),
        "{refused}"
    );
    let manage_guild = 1 << 5;
    let reply = s
        .answer(&s.interact(2, "coach", reload.clone(), BEN, &[], manage_guild))
        .await;
    let text = reply["data"]["content"].as_str().unwrap();
    assert!(text.contains("Not reloaded"), "{text}");
    assert!(
        text.contains("broken.toml:") && text.contains("rule \"broken\""),
        "names the place: {text}"
    );
    // The file watcher saw the change too and told the team.
    let told = s
        .stand_in
        .wait_until(WAIT, |_| {
            s.posts_to(COACHING).iter().any(|p| {
                p.body["content"]
                    .as_str()
                    .is_some_and(|c| c.contains("Rule change not applied"))
            })
        })
        .await;
    assert!(told, "the coaching channel hears about the failed reload");
    // The old rules still run.
    s.say(TICKET, ANA, "Hi!", "09:00");
    s.say(TICKET, CUST, "I never got my refund", "09:01");
    s.wait_dms(ANA, 1).await;
    // A good change goes live.
    std::fs::remove_file(&rules).unwrap();
    let reply = s.answer(&s.interact(2, "coach", reload, BEN, &[], manage_guild)).await;
    assert!(
        reply["data"]["content"].as_str().unwrap().contains("Reloaded."),
        "{reply}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_digest_is_posted_with_its_chart_and_the_right_numbers() {
    let s = setup_with("[guild.digest]\ndaily = \"17:00\"\n").await;
    s.say(TICKET, ANA, "Hi, Ana here.", "09:00");
    s.say(TICKET, CUST, "I never got my refund", "09:01");
    s.say(
        TICKET,
        ANA,
        "I'm so sorry you're still waiting for that refund.",
        "09:05",
    );
    s.say(TICKET, ANA, "I'll call you back by 3pm with an update.", "09:10");
    s.wait_dms(ANA, 2).await;
    s.say(TICKET, ANA, "Calling you now as promised.", "14:00");
    s.settle().await;
    assert!(s.posts_to(COACHING).is_empty(), "nothing before the digest time");
    s.clock.advance_to("2026-11-23T17:00:00Z".parse().unwrap());
    let posted = s.stand_in.wait_until(WAIT, |_| !s.posts_to(COACHING).is_empty()).await;
    assert!(posted, "the digest is posted at 17:00");
    let post = &s.posts_to(COACHING)[0];
    let embed = &post.body["embeds"][0];
    assert!(
        embed["title"].as_str().unwrap().starts_with("Daily coaching digest"),
        "{embed}"
    );
    let text = embed["description"].as_str().unwrap();
    assert!(text.contains("**Prior-failure cues caught:** 1 (▲1)"), "{text}");
    assert!(text.contains("**Explained before apologizing:** 0 (=)"), "{text}");
    assert!(
        text.contains("1 (▲1) promised · 1 (▲1) kept on time · 0 (=) overdue"),
        "{text}"
    );
    assert!(text.contains("cue to the apology:** 4 min"), "{text}");
    // The checklist: a specific apology first, owned, a timed next step, but no thanks.
    assert!(
        text.contains(
            "**Recovery checklist** (1 conversation with a failure cue): apologized 100% · \
             apologized for the failure by name 100% · apologized before explaining 100% · \
             owned it before asking for details 100% · said what happens next and when 100% · \
             thanked the customer 0%"
        ),
        "{text}"
    );
    assert!(
        !text.contains("<@"),
        "no per-agent figures unless the guild opts in: {text}"
    );
    assert_eq!(embed["image"]["url"], "attachment://digest.png");
    let files = post.body["_attachments"].as_array().unwrap();
    assert_eq!(files[0]["filename"], "digest.png");
    assert_eq!(files[0]["png"], true, "a real PNG: {files:?}");
    // The agent can see their own figures; a second look at the clock does not post again.
    let me = s
        .answer(&s.interact(
            2,
            "coach",
            json!([{"name": "me", "type": 1, "options": []}]),
            ANA,
            &[AGENT_ROLE],
            0,
        ))
        .await;
    let mine = me["data"]["content"].as_str().unwrap();
    assert!(mine.contains("Promises made: 1 · kept on time: 1"), "{mine}");
    assert!(
        mine.contains("Recovery checklist over your 1 conversation with a failure cue: apologized 100%"),
        "{mine}"
    );
    assert_eq!(me["data"]["flags"], 64, "ephemeral");
    s.clock.advance_to("2026-11-23T17:30:00Z".parse().unwrap());
    s.settle().await;
    assert_eq!(s.posts_to(COACHING).len(), 1, "one digest per slot");
    let now = json!([{"name": "digest", "type": 2, "options": [{"name": "now", "type": 1, "options": []}]}]);
    let refused = s
        .answer(&s.interact(2, "coach", now.clone(), ANA, &[AGENT_ROLE], 0))
        .await;
    assert!(
        refused["data"]["content"].as_str().unwrap().contains("for leads"),
        "{refused}"
    );
    let done = s.answer(&s.interact(2, "coach", now, BEN, &[], 1 << 5)).await;
    assert!(done["data"]["content"].as_str().unwrap().contains("Posted"), "{done}");
    assert_eq!(s.posts_to(COACHING).len(), 2, "/coach digest now posts one on demand");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_missed_while_down_are_posted_once_and_never_twice() {
    let mut s = setup_with("[guild.digest]\ndaily = \"17:00\"\n").await;
    s.say(TICKET, ANA, "Hi, Ana here.", "09:00");
    s.say(TICKET, CUST, "I never got my refund", "09:01");
    s.wait_dms(ANA, 1).await;
    s.settle().await;
    // Down from Monday morning to Tuesday evening: two 17:00 digests missed.
    if let Some(bot) = s.bot.take() {
        bot.shutdown().await.unwrap();
    }
    s.clock.advance_to("2026-11-24T18:00:00Z".parse().unwrap());
    s.restart().await;
    let posted = s.stand_in.wait_until(WAIT, |_| !s.posts_to(COACHING).is_empty()).await;
    assert!(posted, "the latest missed digest is posted after the restart");
    s.settle().await;
    let posts = s.posts_to(COACHING);
    assert_eq!(posts.len(), 1, "only the latest missed digest, not one per missed day");
    assert!(
        embed(&posts[0])["title"].as_str().unwrap().contains("Tue 24 Nov"),
        "{}",
        embed(&posts[0])
    );
    // Another restart in the same period posts nothing more.
    s.restart().await;
    s.settle().await;
    assert_eq!(s.posts_to(COACHING).len(), 1, "no double post after a restart");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_runs_on_the_bots_clock_and_forgets_idle_conversations() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi, thanks for reaching out. How can I help?", "09:00");
    let coach = s.bot.as_ref().unwrap().coach.clone();
    let engine = coach.guilds.engine(GUILD).unwrap().clone();
    assert_eq!(engine.conversations(), 1);
    // Moving the bot's clock past `forget_idle_after` (12 h) wakes housekeeping: no real
    // ten-minute wait.
    s.clock.advance_to("2026-11-23T21:30:00Z".parse().unwrap());
    let deadline = std::time::Instant::now() + WAIT;
    while engine.conversations() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.conversations(), 0, "the idle conversation is left to the store");
    // Its context comes back from the store with the next message.
    s.say(
        TICKET,
        CUST,
        "I haven't received my refund and it's been 3 weeks",
        "21:31",
    );
    let dms = s.wait_dms(ANA, 1).await;
    assert_eq!(dms.len(), 1, "the restored conversation still knows its agent");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_drops_nudged_message_marks_after_a_day() {
    let s = setup().await;
    s.say(TICKET, ANA, "Hi, thanks for reaching out. How can I help?", "09:00");
    s.say(
        TICKET,
        CUST,
        "I haven't received my refund and it's been 3 weeks",
        "09:01",
    );
    s.wait_dms(ANA, 1).await;
    let coach = s.bot.as_ref().unwrap().coach.clone();
    assert_eq!(
        coach.nudged_marks(),
        1,
        "the nudged message is marked, so an edit does not nudge again"
    );
    // A day and more later, housekeeping lets the mark go: the set does not grow for as long as
    // the bot runs.
    s.clock.advance_to("2026-11-24T09:30:00Z".parse().unwrap());
    let deadline = std::time::Instant::now() + WAIT;
    while coach.nudged_marks() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(coach.nudged_marks(), 0, "marks older than a day are dropped");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_past_the_due_time_the_agent_hears_first_and_once() {
    let s = setup().await;
    s.say(TICKET, CUST, "hi, quick question about my order", "14:00");
    s.say(
        TICKET,
        ANA,
        "So sorry about this! I'll call you back by 3pm with an update.",
        "14:01",
    );
    s.wait_dms(ANA, 1).await;
    // The scheduler next wakes two hours after the due time (the bot was down meanwhile).
    s.clock.advance_to("2026-11-23T17:00:00Z".parse().unwrap());
    let dms = s.wait_dms(ANA, 2).await;
    let footer = |r: &Recorded| embed(r)["footer"]["text"].as_str().unwrap_or("").to_string();
    assert!(
        footer(&dms[1]).contains("follow_up_overdue"),
        "no heads-up for something already late: {}",
        footer(&dms[1])
    );
    s.settle().await;
    assert_eq!(s.dms_to(ANA).len(), 2, "one notice, not a heads-up and a notice");
    assert!(
        s.posts_to(COACHING).is_empty(),
        "the team is not told in the same breath as the agent"
    );
    s.clock.advance_to("2026-11-23T17:29:00Z".parse().unwrap());
    s.settle().await;
    assert!(s.posts_to(COACHING).is_empty(), "the agent gets the full 30 minutes");
    s.clock.advance_to("2026-11-23T17:30:00Z".parse().unwrap());
    assert!(
        s.stand_in.wait_until(WAIT, |_| !s.posts_to(COACHING).is_empty()).await,
        "then the lapse goes to the team"
    );
    // The log says when each went out and the promise counts what reached someone.
    let coach = s.bot.as_ref().unwrap().coach.clone();
    let log = coach.store.export_nudges(0).await.unwrap();
    let overdue: Vec<&Value> = log.iter().filter(|n| n["kind"] == "follow_up_overdue").collect();
    assert_eq!(overdue.len(), 1);
    assert_eq!(
        overdue[0]["at"], "2026-11-23T17:00:00Z",
        "logged at the send time, not the 15:00 schedule"
    );
    assert!(log.iter().all(|n| n["kind"] != "follow_up_reminder"));
    // The escalation is recorded just after it is posted.
    let deadline = std::time::Instant::now() + WAIT;
    let mut promises = coach.store.export_promises(0).await.unwrap();
    while promises[0]["state"] != "escalated" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        promises = coach.store.export_promises(0).await.unwrap();
    }
    assert_eq!(promises.len(), 1);
    assert_eq!(
        promises[0]["reminders"], 2,
        "the notice and the escalation, both delivered"
    );
    assert_eq!(promises[0]["state"], "escalated");
    s.stop().await;
}
