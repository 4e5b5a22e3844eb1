//! The coach driven directly, with no serenity and no Discord: a recording [`Platform`], a real
//! SQLite store in a temporary folder, the shipped rules.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::{BotConfig, Delivery, GuildConfig};
use super::{Coach, Platform, Posted, Typing};
use crate::clock::{Clock, ManualClock};
use crate::engine::{Nudge, NudgeKind};
use crate::store::{StorageConfig, Store};

const GUILD: u64 = 10;
const SUPPORT: u64 = 20;
const THREAD: u64 = 21;
const ELSEWHERE: u64 = 30;
const AGENT_ROLE: u64 = 40;
const LEAD_ROLE: u64 = 41;
const ANA: u64 = 100;
const CUST: u64 = 200;

/// Delivers nothing; remembers what it was asked to deliver, to whom.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(NudgeKind, String)>>,
}

#[async_trait::async_trait]
impl Platform for Recorder {
    async fn deliver(
        &self,
        _guild: &GuildConfig,
        how: Delivery,
        nudge: &Nudge,
        _jump: String,
    ) -> Result<String, String> {
        let agent = nudge.agent.as_ref().map(|a| a.to_string()).unwrap_or_default();
        self.sent.lock().unwrap().push((nudge.kind, agent));
        Ok(format!("{how:?}"))
    }

    async fn parent_of(&self, channel: u64) -> Option<Option<u64>> {
        (channel == THREAD).then_some(Some(SUPPORT))
    }

    async fn message(&self, _guild: u64, _channel: u64, _id: u64) -> Option<Posted> {
        None
    }
}

struct Bench {
    coach: Arc<Coach>,
    platform: Arc<Recorder>,
    clock: Arc<ManualClock>,
    _data: tempfile::TempDir,
}

impl Bench {
    async fn new() -> Bench {
        let engine = crate::config::Sources::default()
            .engine()
            .expect("the shipped rules load");
        let text = format!(
            "[[guild]]\nid = \"{GUILD}\"\nwatch_channels = [\"{SUPPORT}\"]\nagent_roles = [\"{AGENT_ROLE}\"]\nlead_roles = [\"{LEAD_ROLE}\"]\n"
        );
        let config = Arc::new(BotConfig::parse("backstop.toml", &text, engine.settings()).expect("config parses"));
        let data = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(&StorageConfig {
            data_dir: data.path().to_path_buf(),
            ..StorageConfig::default()
        })
        .await
        .expect("the store opens");
        let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
        let coach = Coach::open(&engine, config, store, Clock::Manual(clock.clone()), None, None)
            .await
            .expect("the coach opens");
        let platform = Arc::new(Recorder::default());
        coach.attach(platform.clone());
        Bench {
            coach: Arc::new(coach),
            platform,
            clock,
            _data: data,
        }
    }

    fn post(&self, channel: u64, id: u64, author: u64, text: &str, at: &str) -> Posted {
        let roles = if author == CUST { vec![] } else { vec![AGENT_ROLE] };
        Posted {
            guild: GUILD,
            channel,
            id,
            author,
            roles: Some(roles),
            text: text.into(),
            at: format!("2026-11-23T{at}Z").parse().unwrap(),
        }
    }

    fn sent(&self) -> Vec<(NudgeKind, String)> {
        self.platform.sent.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_cue_in_a_watched_thread_reaches_the_agent_and_elsewhere_nothing_happens() {
    let b = Bench::new().await;
    b.coach
        .message(b.post(THREAD, 1, ANA, "Hi, how can I help?", "09:00:00"))
        .await;
    let cue = "I haven't received my refund and it's been 3 weeks";
    b.coach.message(b.post(THREAD, 2, CUST, cue, "09:01:00")).await;
    assert_eq!(b.sent(), vec![(NudgeKind::PriorFailure, ANA.to_string())]);
    b.coach.message(b.post(ELSEWHERE, 3, ANA, "Hi!", "09:02:00")).await;
    b.coach.message(b.post(ELSEWHERE, 4, CUST, cue, "09:03:00")).await;
    assert_eq!(b.sent().len(), 1, "an unwatched channel is never coached");
    assert_eq!(b.coach.messages_seen.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_handed_over_before_its_complaint_is_still_read_after_it() {
    let b = Arc::new(Bench::new().await);
    b.coach
        .message(b.post(THREAD, 1, ANA, "Hi, how can I help?", "09:00:00"))
        .await;
    // The reply's task runs first, as serenity's tasks may; the lane puts the complaint first.
    let reply = b.post(
        THREAD,
        3,
        ANA,
        "Our warehouse was short-staffed, so it shipped late",
        "09:02:00",
    );
    let complaint = b.post(THREAD, 2, CUST, "I still haven't received my order", "09:01:00");
    let (c1, c2) = (b.coach.clone(), b.coach.clone());
    let first = tokio::spawn(async move { c1.message(reply).await });
    tokio::time::sleep(Duration::from_millis(2)).await;
    let second = tokio::spawn(async move { c2.message(complaint).await });
    first.await.unwrap();
    second.await.unwrap();
    b.coach.in_flight.drain(Duration::from_secs(5)).await;
    assert_eq!(b.coach.out_of_order.load(std::sync::atomic::Ordering::Relaxed), 0);
    let kinds: Vec<NudgeKind> = b.sent().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        vec![NudgeKind::PriorFailure, NudgeKind::ExplainBeforeApology],
        "read in order: the complaint, then a reply that explains before apologizing"
    );
    assert_eq!(b.coach.order.stats().reordered, 1);
}

#[tokio::test]
async fn a_muted_agent_gets_no_coaching_and_unmuting_brings_it_back() {
    let b = Bench::new().await;
    b.coach
        .message(b.post(THREAD, 1, ANA, "Hi, how can I help?", "09:00:00"))
        .await;
    let until = b.coach.now().checked_add(jiff::SignedDuration::from_hours(1)).unwrap();
    b.coach.mute(GUILD, ANA, Some(until));
    b.coach
        .message(b.post(THREAD, 2, CUST, "I haven't received my refund", "09:01:00"))
        .await;
    assert!(b.sent().is_empty());
    b.coach.mute(GUILD, ANA, None);
    b.coach.message(b.post(THREAD, 3, ANA, "Let me look", "09:02:00")).await;
    b.coach
        .message(b.post(
            THREAD,
            4,
            CUST,
            "Someone was supposed to call me back yesterday",
            "09:03:00",
        ))
        .await;
    assert_eq!(b.sent().len(), 1);
}

#[tokio::test]
async fn an_edit_rereads_the_message_without_a_second_nudge() {
    let b = Bench::new().await;
    b.coach
        .message(b.post(THREAD, 1, ANA, "Hi, how can I help?", "09:00:00"))
        .await;
    b.coach
        .message(b.post(THREAD, 2, CUST, "I haven't received my refund", "09:01:00"))
        .await;
    let edited = b.post(THREAD, 2, CUST, "I still haven't received my refund", "09:01:00");
    let at = "2026-11-23T09:01:30Z".parse().unwrap();
    b.coach.edit(GUILD, THREAD, 2, at, Some(edited)).await;
    assert_eq!(b.sent().len(), 1);
    assert_eq!(
        b.coach.out_of_order.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "an edit is not disorder"
    );
}

#[tokio::test]
async fn a_cue_before_any_agent_goes_to_the_first_agent_who_types() {
    let b = Bench::new().await;
    b.coach
        .message(b.post(THREAD, 1, CUST, "I haven't received my refund", "09:01:00"))
        .await;
    assert!(b.sent().is_empty(), "no agent yet");
    b.clock.advance_to("2026-11-23T09:02:00Z".parse().unwrap());
    let typing = Typing {
        guild: GUILD,
        channel: THREAD,
        user: ANA,
        roles: Some(vec![AGENT_ROLE]),
        second: b.coach.now().as_second(),
    };
    b.coach.typing(typing).await;
    assert_eq!(b.sent(), vec![(NudgeKind::PriorFailure, ANA.to_string())]);
}

#[tokio::test]
async fn leads_are_a_lead_role_or_manage_server() {
    let b = Bench::new().await;
    assert!(b.coach.is_lead(GUILD, &[LEAD_ROLE], false));
    assert!(b.coach.is_lead(GUILD, &[], true));
    assert!(!b.coach.is_lead(GUILD, &[AGENT_ROLE], false));
    assert!(
        !b.coach.is_lead(999, &[LEAD_ROLE], false),
        "another server's lead role means nothing here"
    );
}
