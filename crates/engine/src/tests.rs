//! Engine behaviour with a small fixed rule book, so these tests pin down the state machine
//! (cooldowns, promises, reminders, apology order) independently of how the shipped rules evolve.

use super::*;

const RULES: &str = r#"
[[rule]]
id = "nr"
kind = "prior_failure"
category = "not_received"
phrases = ["(haven't | have not) yet? received"]
[[rule]]
id = "cb"
kind = "prior_failure"
category = "missed_callback"
phrases = ["you said you'd call", "supposed to call me back"]
[[rule]]
id = "sw"
kind = "prior_failure"
category = "still_waiting"
phrases = ["still waiting"]
[[rule]]
id = "broken"
kind = "complaint"
phrases = ["broken"]
[[rule]]
id = "why"
kind = "reason_request"
phrases = ["why"]
[[rule]]
id = "sorry"
kind = "apology"
phrases = ["sorry", "apologise | apologize"]
[[rule]]
id = "courier"
kind = "explanation"
category = "third_party"
phrases = ["the courier"]
[[rule]]
id = "notmine"
kind = "apology_eraser"
phrases = ["but (it's | that's) not (my | our) fault"]
[[rule]]
id = "callback"
kind = "follow_up"
phrases = ["(i'll | i will) (call you | get back to you | email you)"]
[[rule]]
id = "own"
kind = "ownership"
phrases = ["(i'll | let me) (sort | fix)"]
[[rule]]
id = "details"
kind = "details_request"
phrases = ["(what's | send me) your ~1 (order number | email)"]
[[rule]]
id = "named"
kind = "failure_named"
phrases = ["sorry ~3 (parcel | wait)"]
[[rule]]
id = "transfer"
kind = "transfer"
phrases = ["(contact | connecting you to) billing"]
[[rule]]
id = "who"
kind = "handoff"
category = "who"
phrases = ["billing"]
[[rule]]
id = "how"
kind = "handoff"
category = "how"
phrases = ["connecting you | on {digits}"]
[[rule]]
id = "next"
kind = "handoff"
category = "next"
phrases = ["they'll"]
[[rule]]
id = "ships"
kind = "next_step"
phrases = ["(it | a replacement) ships"]
[[rule]]
id = "thanks"
kind = "gratitude"
phrases = ["thanks"]
"#;

const PHRASES: &str = r#"
[[situation]]
id = "s"
title = "S"
phrases = ["one", "two", "three", "four"]
"#;

/// The shipped core lexicon: the state machine's tests read time and spelling as the product does.
fn lexicon() -> Lexicon {
    Lexicon::parse(&[(
        "lexicon.toml".into(),
        include_str!("../../../config/lexicon.toml").into(),
    )])
    .unwrap()
}

fn engine_with(settings: Settings) -> Engine {
    let rules = RuleSet::parse(&lexicon(), &[("rules.toml".into(), RULES.into())], DEFAULT_BUDGET).unwrap();
    let mut nudges = String::new();
    for k in NudgeKind::ALL {
        nudges.push_str(&format!(
            "[{k}]\ntitle = \"{k}\"\ntext = \"{{evidence}}|{{due}}|{{phrases}}\"\nsituation = \"s\"\n"
        ));
    }
    let prompts = Prompts::parse(("nudges.toml", &nudges), ("phrases.toml", PHRASES)).unwrap();
    Engine::new(rules, prompts, settings)
}

fn engine() -> Engine {
    engine_with(Settings::default())
}

/// Monday 2026-11-23 at `hm` UTC.
fn t(hm: &str) -> Timestamp {
    format!("2026-11-23T{hm}:00Z").parse().unwrap()
}

/// Sends every heads-up and overdue notice due by `now`, soonest first, the way an adapter's
/// scheduler does: the engine says what each promise waits for and when, the test renders it and
/// tells the engine it went out. Escalations are the bot's (they need a team channel).
fn fire_due(e: &Engine, now: Timestamp) -> Vec<Nudge> {
    let mut out = Vec::new();
    while let Some((at, conversation, promise, step)) = due_steps(e).into_iter().find(|(at, ..)| *at <= now) {
        let kind = step.nudge_kind().unwrap();
        assert!(e.promise_step_sent(conversation.as_str(), promise.source, step));
        out.push(e.reminder(kind, &conversation, &promise, at));
    }
    out
}

/// When the next heads-up or overdue notice falls due.
fn next_due(e: &Engine) -> Option<Timestamp> {
    due_steps(e).first().map(|(at, ..)| *at)
}

/// Every held promise's next notice for the agent, soonest first.
fn due_steps(e: &Engine) -> Vec<(Timestamp, ConversationId, Promise, Step)> {
    let mut steps: Vec<_> = e
        .open_promises()
        .into_iter()
        .filter_map(|open| {
            let promise = e.promise(open.conversation.as_str())?;
            let (at, step) = e.next_step(&promise, promise.made_at)?;
            step.nudge_kind()?;
            Some((at, open.conversation, promise, step))
        })
        .collect();
    steps.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    steps
}

struct Chat<'e> {
    engine: &'e Engine,
    line: u64,
}

impl Chat<'_> {
    fn say(&mut self, conv: &str, who: &str, role: Role, text: &str, at: &str) -> Vec<Nudge> {
        self.line += 1;
        let at = t(at);
        let mut out = fire_due(self.engine, at);
        out.extend(self.engine.observe(&Message {
            conversation: conv,
            author: who,
            role,
            text,
            at,
            source: MessageRef(self.line),
        }));
        out
    }
    fn customer(&mut self, text: &str, at: &str) -> Vec<NudgeKind> {
        self.say("c1", "cust", Role::Customer, text, at)
            .iter()
            .map(|n| n.kind)
            .collect()
    }
    fn agent(&mut self, text: &str, at: &str) -> Vec<NudgeKind> {
        self.say("c1", "ana", Role::Agent, text, at)
            .iter()
            .map(|n| n.kind)
            .collect()
    }
}

fn chat(engine: &Engine) -> Chat<'_> {
    Chat { engine, line: 0 }
}

use NudgeKind::*;

#[test]
fn prior_failure_nudges_the_last_agent_with_evidence_and_phrases() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("Hi, how can I help?", "10:00");
    let n = c.say(
        "c1",
        "cust",
        Role::Customer,
        "Hi. I haven’t received my refund",
        "10:01",
    );
    assert_eq!(n.len(), 1);
    let n = &n[0];
    assert_eq!((n.kind, n.category), (PriorFailure, Some(Category::NotReceived)));
    assert_eq!(n.agent.as_ref().unwrap().as_str(), "ana");
    assert_eq!(n.customer.as_ref().unwrap().as_str(), "cust");
    assert_eq!(n.evidence, "haven’t received");
    assert_eq!(&*n.rule, "nr");
    assert_eq!(n.source, MessageRef(2));
    assert_eq!(n.phrases, ["one", "two", "three"], "phrases_per_nudge defaults to 3");
    assert_eq!(n.text, "haven’t received||• one\n• two\n• three");
}

#[test]
fn the_first_cue_in_the_text_decides_the_category() {
    let e = engine();
    let n = chat(&e).say(
        "c1",
        "cust",
        Role::Customer,
        "still waiting, and I haven't received it",
        "10:00",
    );
    assert_eq!(n[0].category, Some(Category::StillWaiting));
}

#[test]
fn cue_before_any_agent_is_unaddressed_until_claimed_once() {
    let e = engine();
    let n = chat(&e).say("c1", "cust", Role::Customer, "I haven't received it", "10:00");
    assert_eq!(n[0].agent, None);
    let claimed = e.claim("c1", "ben", t("10:02")).unwrap();
    assert_eq!(claimed.agent.unwrap().as_str(), "ben");
    assert_eq!(claimed.at, t("10:02"));
    assert_eq!(claimed.source, MessageRef(1));
    assert!(e.claim("c1", "ana", t("10:03")).is_none(), "claimed once only");
}

#[test]
fn observe_claiming_hands_the_cue_to_the_replying_agent_in_one_step() {
    let e = engine();
    chat(&e).say("c1", "cust", Role::Customer, "I haven't received it", "10:00");
    let n = e.observe_claiming(&Message {
        conversation: "c1",
        author: "ben",
        role: Role::Agent,
        text: "Hello!",
        at: t("10:01"),
        source: MessageRef(2),
    });
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].kind, n[0].source, n[0].agent.as_ref().unwrap().as_str()),
        (PriorFailure, MessageRef(1), "ben")
    );
    assert!(e.claim("c1", "ana", t("10:02")).is_none());
}

#[test]
fn an_agent_reply_clears_an_unclaimed_cue() {
    let e = engine();
    let mut c = chat(&e);
    c.customer("I haven't received it", "10:00");
    c.agent("Hello!", "10:01");
    assert!(e.claim("c1", "ana", t("10:02")).is_none());
}

#[test]
fn a_repeated_cue_is_merged_until_an_agent_replies_but_a_new_failure_is_not() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("hi", "10:00");
    assert_eq!(c.customer("I haven't received it", "10:01"), [PriorFailure]);
    assert_eq!(
        c.customer("I haven't received it!!", "10:02"),
        [],
        "same failure, no reply yet"
    );
    assert_eq!(c.customer("still waiting!!", "10:03"), [PriorFailure], "a new failure");
    assert_eq!(c.agent("the courier has it", "10:04"), [ExplainBeforeApology]);
    assert_eq!(
        c.customer("I haven't received it", "10:05"),
        [PriorFailure],
        "raised again after the agent spoke"
    );
    assert_eq!(
        chat(&e)
            .say("c2", "x", Role::Customer, "I haven't received it", "10:06")
            .len(),
        1,
        "per conversation"
    );
}

#[test]
fn every_detection_is_reported_with_why_it_was_not_nudged() {
    let e = engine();
    let read = |text: &str, role: Role, at: &str, line: u64| {
        e.read(
            &Message {
                conversation: "c1",
                author: if role == Role::Agent { "ana" } else { "cust" },
                role,
                text,
                at: t(at),
                source: MessageRef(line),
            },
            false,
        )
    };
    read("hi", Role::Agent, "10:00", 1);
    let first = read("I haven't received it", Role::Customer, "10:01", 2);
    assert_eq!(first.detections.len(), 1);
    assert_eq!(first.detections[0].suppressed, None);
    let again = read("I haven't received it", Role::Customer, "10:02", 3);
    assert!(again.nudges.is_empty());
    assert_eq!(again.detections[0].suppressed, Some(Suppressed::Repeated));
    assert_eq!(again.detections[0].evidence, "haven't received");
    let explained = read("the courier has it", Role::Agent, "10:03", 4);
    assert_eq!(explained.detections[0].suppressed, None);
    read("broken again", Role::Customer, "10:04", 5);
    let twice = read("the courier has it", Role::Agent, "10:05", 6);
    assert!(twice.nudges.is_empty());
    assert_eq!(twice.detections[0].kind, ExplainBeforeApology);
    assert_eq!(twice.detections[0].suppressed, Some(Suppressed::Cooldown));
    let promise = read("I'll call you back", Role::Agent, "10:06", 7);
    assert_eq!(promise.detections.len(), 2, "a promise, with no time");
    let restated = read("I'll call you back by 3pm", Role::Agent, "10:07", 8);
    assert_eq!(restated.detections[0].suppressed, Some(Suppressed::Restated));
    let chase = read("you said you'd call", Role::Customer, "10:08", 9);
    assert_eq!(chase.detections[0].suppressed, Some(Suppressed::ChasesPromise));
    assert_eq!(chase.nudges[0].kind, FollowUpOverdue);
    // Asked at 10:08 about a promise due at 15:00: chased, in the customer's own words.
    assert_eq!(chase.nudges[0].category, Some(Category::Chased));
    assert_eq!(chase.nudges[0].quote, "you said you'd call");
}

#[test]
fn a_chase_after_the_due_time_is_the_overdue_story_quoting_the_promise() {
    let e = engine();
    let mut c = chat(&e);
    c.say("c1", "ana", Role::Agent, "I'll call you back by 3pm", "14:00");
    let n = c.say(
        "c1",
        "cust",
        Role::Customer,
        "you said you'd call, nothing yet",
        "15:20",
    );
    let overdue: Vec<&Nudge> = n.iter().filter(|n| n.kind == FollowUpOverdue).collect();
    assert_eq!(overdue.len(), 1, "{n:?}");
    assert_eq!(overdue[0].category, None);
    assert_eq!(overdue[0].quote, "I'll call you back by 3pm");
}

#[test]
fn explaining_first_instead_or_erasing() {
    let e = engine();
    let mut c = chat(&e);
    let expect = |c: &mut Chat<'_>, conv: &str, agent_text: &str| {
        c.say(conv, "cust", Role::Customer, "my thing is broken", "10:00");
        c.say(conv, "ana", Role::Agent, agent_text, "10:01")
            .into_iter()
            .map(|n| n.category)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        expect(&mut c, "a", "The courier dropped it, sorry."),
        [Some(Category::BeforeApology)]
    );
    assert_eq!(
        expect(&mut c, "b", "The courier dropped it."),
        [Some(Category::InsteadOfApology)]
    );
    assert_eq!(
        expect(&mut c, "c", "Sorry about that, but it's not my fault."),
        [Some(Category::ApologyErased)]
    );
    assert_eq!(
        expect(&mut c, "d", "I'm so sorry. The courier dropped it."),
        [],
        "apology first is fine"
    );
    assert_eq!(
        expect(&mut c, "e", "Did the courier leave a card?"),
        [],
        "a question is not an excuse"
    );
    assert_eq!(expect(&mut c, "f", "Let me check."), []);
}

#[test]
fn explaining_needs_an_open_problem() {
    let e = engine();
    let mut c = chat(&e);
    c.customer("hello, where do I send returns?", "10:00");
    assert_eq!(c.agent("The courier collects them from your door.", "10:01"), []);
}

#[test]
fn an_apology_closes_the_problem_until_the_next_complaint() {
    let e = engine();
    let mut c = chat(&e);
    c.customer("it's broken", "10:00");
    c.agent("I'm sorry to hear that.", "10:01");
    assert_eq!(c.agent("The courier will collect it.", "10:02"), []);
    c.customer("and the replacement is broken too", "10:30");
    assert_eq!(
        c.agent("The courier must have dropped it.", "10:31"),
        [ExplainBeforeApology]
    );
}

#[test]
fn an_erased_apology_does_not_close_the_problem() {
    let e = engine();
    let mut c = chat(&e);
    c.customer("it's broken", "10:00");
    assert_eq!(
        c.agent("Sorry, but that's not our fault.", "10:01"),
        [ExplainBeforeApology]
    );
    assert_eq!(c.agent("The courier did it.", "10:20"), [ExplainBeforeApology]);
}

#[test]
fn explanations_the_customer_asked_for_after_an_apology_are_fine() {
    let e = engine();
    let mut c = chat(&e);
    c.customer("it's broken", "10:00");
    c.agent("I'm so sorry.", "10:01");
    c.customer("but why is it broken again??", "10:30");
    assert_eq!(c.agent("The courier dropped the box in transit.", "10:31"), []);
}

#[test]
fn promise_with_time_reminds_then_goes_overdue() {
    let e = engine();
    let mut c = chat(&e);
    let n = c.say("c1", "ana", Role::Agent, "I'll call you back by 3pm", "14:00");
    assert_eq!(n.iter().map(|n| n.kind).collect::<Vec<_>>(), [FollowUpPromised]);
    let due = n[0].due.clone().unwrap();
    assert_eq!(due.at, t("15:00"));
    assert_eq!(due.source, DueSource::Stated("by 3pm".into()));
    assert_eq!(next_due(&e), Some(t("14:45")));
    assert!(fire_due(&e, t("14:44")).is_empty());
    let r = fire_due(&e, t("14:45"));
    assert_eq!(
        (r.len(), r[0].kind, r[0].at, r[0].source),
        (1, FollowUpReminder, t("14:45"), MessageRef(1))
    );
    assert_eq!(r[0].agent.as_ref().unwrap().as_str(), "ana");
    let o = fire_due(&e, t("18:00"));
    assert_eq!((o.len(), o[0].kind, o[0].at), (1, FollowUpOverdue, t("15:00")));
    assert!(fire_due(&e, t("23:00")).is_empty(), "each fires once");
    assert_eq!(next_due(&e), None);
}

#[test]
fn the_team_is_told_escalate_after_the_overdue_notice_reached_the_agent() {
    let e = engine();
    let mut c = chat(&e);
    c.say("c1", "ana", Role::Agent, "I'll call you back by 3pm", "14:00");
    let mut p = e.promise("c1").unwrap();
    let after = e.settings().escalate_after;
    assert_eq!(e.next_step(&p, t("14:00")), Some((t("14:45"), Step::Reminder)));
    p.advance(Step::Reminder).unwrap();
    assert_eq!(e.next_step(&p, t("14:45")), Some((t("15:00"), Step::Overdue)));
    p.advance(Step::Overdue).unwrap();
    // On time: escalation the configured time after the due time.
    assert_eq!(e.next_step(&p, t("15:00")), Some((t("15:00") + after, Step::Escalate)));
    // The notice went out two hours late (the bot was down): the agent still gets the full
    // window before the team hears, not a notice and an escalation in the same second.
    assert_eq!(e.next_step(&p, t("17:00")), Some((t("17:00") + after, Step::Escalate)));
    p.advance(Step::Escalate).unwrap();
    assert_eq!(e.next_step(&p, t("17:30")), None);
}

#[test]
fn promise_without_time_asks_for_one_and_uses_the_default() {
    let e = engine();
    let n = chat(&e).say("c1", "ana", Role::Agent, "I'll get back to you.", "10:00");
    assert_eq!(
        n.iter().map(|n| n.kind).collect::<Vec<_>>(),
        [FollowUpPromised, FollowUpNoTimeframe]
    );
    assert_eq!(n[0].due.as_ref().unwrap().at, "2026-11-24T10:00:00Z".parse().unwrap());
    assert_eq!(n[0].due.as_ref().unwrap().source, DueSource::Default);
}

#[test]
fn an_offer_is_not_a_promise() {
    let e = engine();
    assert!(chat(&e)
        .say("c1", "ana", Role::Agent, "Shall I call you back?", "10:00")
        .is_empty());
}

#[test]
fn agent_activity_after_the_min_gap_keeps_the_promise() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("I'll call you back by 3pm", "14:00");
    c.agent("Anything else I can help with?", "14:05");
    assert_eq!(e.open_promises().len(), 1, "5 minutes later is the same exchange");
    c.agent("Hi again, calling now", "14:30");
    assert!(e.open_promises().is_empty());
    assert!(fire_due(&e, t("16:00")).is_empty());
}

#[test]
fn activity_between_reminder_and_due_stops_the_overdue() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("I'll call you back by 3pm", "14:00");
    assert_eq!(c.agent("ok calling you now", "14:50"), [FollowUpReminder]);
    assert!(fire_due(&e, t("16:00")).is_empty());
}

#[test]
fn done_closes_the_promise() {
    let e = engine();
    chat(&e).agent("I'll call you back by 3pm", "14:00");
    assert!(e.promise_kept("c1"));
    assert!(!e.promise_kept("c1"));
    assert!(fire_due(&e, t("16:00")).is_empty());
}

#[test]
fn snooze_moves_the_promise_and_rearms_its_reminders() {
    let e = engine();
    chat(&e).agent("I'll call you back by 3pm", "14:00");
    assert_eq!(fire_due(&e, t("14:45")).len(), 1);
    assert!(e.snooze("c1", t("15:45")));
    assert!(fire_due(&e, t("15:00")).is_empty(), "the old due time no longer fires");
    let kinds: Vec<_> = fire_due(&e, t("16:00")).into_iter().map(|n| (n.kind, n.at)).collect();
    assert_eq!(kinds, [(FollowUpReminder, t("15:30")), (FollowUpOverdue, t("15:45"))]);
    assert!(!e.snooze("nope", t("16:00")));
}

#[test]
fn a_second_promise_within_the_cooldown_updates_the_first() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("I'll get back to you", "10:00");
    assert_eq!(c.agent("I'll call you by 11am", "10:05"), []);
    let open = e.open_promises();
    assert_eq!(
        (open.len(), open[0].source, open[0].due.at),
        (1, MessageRef(1), t("11:00"))
    );
    let fired: Vec<_> = fire_due(&e, t("12:00"))
        .into_iter()
        .map(|n| (n.kind, n.source))
        .collect();
    assert_eq!(
        fired,
        [(FollowUpReminder, MessageRef(1)), (FollowUpOverdue, MessageRef(1))]
    );
}

#[test]
fn a_later_promise_replaces_the_open_one() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("I'll get back to you by 11am", "10:00");
    c.agent("sorry, I'll email you by 4pm instead", "10:08");
    assert_eq!(e.open_promises()[0].due.at, t("16:00"));
    let e2 = engine();
    let mut c2 = chat(&e2);
    c2.agent("I'll get back to you by 11am", "10:00");
    // 20 minutes later: the first promise is closed by this activity, and a new one is made.
    assert_eq!(c2.agent("I'll email you by 4pm", "10:20"), [FollowUpPromised]);
    assert_eq!(e2.open_promises()[0].source, MessageRef(2));
}

#[test]
fn the_customer_chasing_the_promise_is_the_overdue_story() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("I'll call you tomorrow", "10:00");
    let n = c.say("c1", "cust", Role::Customer, "you said you'd call me back!!", "10:40");
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].kind, n[0].source, n[0].evidence.as_str()),
        (FollowUpOverdue, MessageRef(1), "you said you'd call")
    );
    assert!(fire_due(&e, t("23:59")).is_empty() && fire_due(&e, "2026-11-25T00:00:00Z".parse().unwrap()).is_empty());
    // Still waiting on the order itself is a different failure.
    let e = engine();
    let mut c = chat(&e);
    c.agent("I'll call you tomorrow", "10:00");
    assert_eq!(c.customer("still waiting on the parcel", "10:40"), [PriorFailure]);
    assert_eq!(c.customer("still waiting on your call", "11:00"), [FollowUpOverdue]);
}

#[test]
fn the_engine_moves_its_promise_through_the_state_machine() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("I'll call you tomorrow", "10:00");
    assert_eq!(e.promise("c1").unwrap().state(), PromiseState::Open);
    assert!(e.promise_step_sent("c1", MessageRef(1), Step::Reminder));
    assert_eq!(e.promise("c1").unwrap().state(), PromiseState::Reminded);
    assert!(
        !e.promise_step_sent("c1", MessageRef(1), Step::Reminder),
        "a heads-up goes out once"
    );
    assert!(
        !e.promise_step_sent("c1", MessageRef(1), Step::Escalate),
        "not before the overdue notice"
    );
    assert!(
        !e.promise_step_sent("c1", MessageRef(9), Step::Overdue),
        "another message's promise"
    );
    assert!(e.snooze("c1", t("18:00")));
    assert_eq!(e.promise("c1").unwrap().state(), PromiseState::Snoozed);
    // The customer chasing it is the overdue notice: the scheduled one is then refused.
    assert_eq!(c.customer("you said you'd call me back!!", "10:40"), [FollowUpOverdue]);
    assert_eq!(e.promise("c1").unwrap().state(), PromiseState::Overdue);
    assert!(!e.promise_step_sent("c1", MessageRef(1), Step::Overdue));
    assert_eq!(c.customer("you said you'd call me back!!", "10:50"), []);
    assert!(e.promise_step_sent("c1", MessageRef(1), Step::Escalate));
    assert_eq!(e.next_step(&e.promise("c1").unwrap(), t("18:00")), None);
    // Kept: the engine lets it go, and nothing moves it again.
    assert!(e.promise_kept("c1"));
    assert!(e.promise("c1").is_none());
    assert!(!e.promise_step_sent("c1", MessageRef(1), Step::Overdue));
    assert!(!e.snooze("c1", t("19:00")));
}

#[test]
fn a_restored_promise_carries_on_from_its_stored_state() {
    let e = engine();
    chat(&e).agent("I'll call you back by 3pm", "14:00");
    let stored = e.promise("c1").unwrap().in_state(PromiseState::Reminded);
    let e2 = engine();
    e2.restore("c1", e.context("c1").unwrap(), Some(stored.clone()));
    assert_eq!(e2.promise("c1").unwrap().state(), PromiseState::Reminded);
    let fired: Vec<_> = fire_due(&e2, t("16:00")).into_iter().map(|n| n.kind).collect();
    assert_eq!(
        fired,
        [FollowUpOverdue],
        "the heads-up already went out before the restart"
    );
    // A closed promise is not brought back to be reminded.
    let e3 = engine();
    e3.restore(
        "c1",
        e.context("c1").unwrap(),
        Some(stored.in_state(PromiseState::Done)),
    );
    assert!(e3.promise("c1").is_none());
}

#[test]
fn a_promise_due_sooner_than_the_lead_gets_only_the_overdue() {
    let e = engine();
    chat(&e).agent("I'll call you back in 10 minutes", "10:00");
    let kinds: Vec<_> = fire_due(&e, t("11:00")).into_iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [FollowUpOverdue]);
}

#[test]
fn settings_change_the_timing() {
    let settings = Settings {
        reminder_lead: SignedDuration::from_hours(1),
        ..Settings::default()
    };
    let e = engine_with(settings);
    chat(&e).agent("I'll call you back by 3pm", "10:00");
    assert_eq!(next_due(&e), Some(t("14:00")));
}

#[test]
fn idle_conversations_are_forgotten_but_open_promises_are_not() {
    let e = engine();
    let mut c = chat(&e);
    c.say("a", "cust", Role::Customer, "hello", "08:00");
    c.say("b", "ana", Role::Agent, "I'll call you tomorrow", "08:00");
    assert_eq!(e.forget_idle(t("19:00")), 0);
    assert_eq!(e.forget_idle(t("20:00")), 1, "a: 12 hours idle");
    assert_eq!(e.conversations(), 1);
    // b's promise went overdue on the 24th at 17:00; it is dropped 12 hours after that.
    let late: Timestamp = "2026-11-25T05:00:00Z".parse().unwrap();
    fire_due(&e, late);
    assert_eq!(e.forget_idle(late), 1);
}

#[test]
fn concurrent_feeding_is_safe_and_complete() {
    let e = std::sync::Arc::new(engine());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let e = e.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                for j in 0..200 {
                    let conv = format!("t{i}-{}", j % 10);
                    n += e
                        .observe(&Message {
                            conversation: &conv,
                            author: "c",
                            role: Role::Customer,
                            text: "I haven't received it",
                            at: t("10:00"),
                            source: MessageRef(j),
                        })
                        .len();
                }
                n
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 40, "one per conversation within the cooldown");
    assert_eq!(e.conversations(), 40);
}

use jiff::SignedDuration;

#[test]
fn a_new_rule_book_takes_over_without_losing_the_conversation() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("Hi, Ana here.", "09:00");
    assert_eq!(c.customer("I still haven't received it", "09:01"), [PriorFailure]);
    // The new book knows only "still waiting"; state (who the agent is, the open problem) stays.
    let only_waiting = RULES.replace(
        "id = \"nr\"\nkind = \"prior_failure\"\ncategory = \"not_received\"",
        "id = \"nr\"\nkind = \"complaint\"",
    );
    let rules = RuleSet::parse(&lexicon(), &[("rules.toml".into(), only_waiting)], DEFAULT_BUDGET).unwrap();
    e.replace_book(Arc::new(rules), e.prompts());
    assert!(e
        .rules()
        .rules()
        .iter()
        .any(|r| &*r.id == "nr" && r.kind == RuleKind::Complaint));
    let later = c.say("c2", "cust2", Role::Customer, "I haven't received my refund", "12:00");
    assert!(later.is_empty(), "the replaced rule no longer nudges");
    let nudges = c.say("c1", "cust", Role::Customer, "still waiting on this", "12:01");
    assert_eq!(
        nudges[0].agent.as_ref().map(UserId::as_str),
        Some("ana"),
        "the agent is remembered"
    );
}

#[test]
fn a_first_reply_that_asks_for_details_before_owning_the_problem_is_coached_once() {
    let e = engine();
    let mut c = chat(&e);
    c.customer("my kettle is broken", "10:00");
    assert_eq!(c.agent("What's your order number?", "10:01"), [DetailsBeforeOwnership]);
    // Only the first reply: once answered, asking again is the normal flow.
    c.customer("KT-1", "10:02");
    assert!(c.agent("Send me your email too", "10:03").is_empty());
    // Owning it first is what the nudge asks for.
    let mut d = Chat { engine: &e, line: 100 };
    d.say("c2", "cust2", Role::Customer, "my kettle is broken", "11:00");
    let n = d.say(
        "c2",
        "ana",
        Role::Agent,
        "I'll sort it. What's your order number?",
        "11:01",
    );
    assert!(n.is_empty(), "{n:?}");
    // A plain question is not a problem to own.
    d.say("c3", "cust3", Role::Customer, "do you sell kettles", "12:00");
    assert!(d
        .say("c3", "ana", Role::Agent, "What's your email?", "12:01")
        .is_empty());
}

#[test]
fn the_first_apology_after_a_cue_must_name_the_failure() {
    let e = engine();
    let mut c = chat(&e);
    c.customer("I haven't received my parcel", "10:00");
    let n = c.say("c1", "ana", Role::Agent, "So sorry about that!", "10:01");
    assert_eq!(n.iter().map(|n| n.kind).collect::<Vec<_>>(), [GenericApology]);
    assert_eq!(n[0].evidence, "sorry");
    // The cue has had its apology: a second one is not coached.
    assert!(c.agent("sorry again", "10:30").is_empty());
    // Naming it is what the nudge asks for.
    let mut d = Chat { engine: &e, line: 100 };
    d.say("c2", "cust2", Role::Customer, "I haven't received my parcel", "11:00");
    assert!(d
        .say("c2", "ana", Role::Agent, "I'm sorry your parcel is late", "11:01")
        .is_empty());
    // Without a prior failure there is nothing to name.
    d.say("c3", "cust3", Role::Customer, "my kettle is broken", "12:00");
    assert!(d.say("c3", "ana", Role::Agent, "Sorry about that!", "12:01").is_empty());
}

#[test]
fn a_hand_off_without_who_how_and_next_is_cold_and_says_what_is_missing() {
    let e = engine();
    let mut c = chat(&e);
    let n = c.say("c1", "ana", Role::Agent, "You'll need to contact billing.", "10:00");
    assert_eq!(
        n.iter().map(|n| (n.kind, n.category)).collect::<Vec<_>>(),
        [(ColdTransfer, Some(Category::NoRoute))]
    );
    let n = c.say(
        "c2",
        "ana",
        Role::Agent,
        "Please contact billing on 0800 123 456.",
        "10:00",
    );
    assert_eq!(n[0].category, Some(Category::NoNextStep));
    let warm = c.say(
        "c3",
        "ana",
        Role::Agent,
        "I'm connecting you to billing now; they'll refund the charge today.",
        "10:00",
    );
    assert!(warm.is_empty(), "{warm:?}");
}

#[test]
fn a_context_stored_before_the_new_moments_still_loads() {
    let mut stored = serde_json::to_value(Context::new(t("10:00"))).unwrap();
    let at = serde_json::to_value(t("09:00")).unwrap();
    stored["last_fired"] = serde_json::json!([at, null, null]);
    stored.as_object_mut().unwrap().remove("awaiting_reply");
    let context: Context = serde_json::from_value(stored).unwrap();
    assert_eq!(context.last_fired[0], Some(t("09:00")));
    assert!(context.last_fired[3..].iter().all(Option::is_none));
    assert!(!context.awaiting_reply);
}

#[test]
fn a_second_agent_is_briefed_once_with_the_story_so_far() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("Hi, Ana here", "10:00");
    c.customer("I haven't received my parcel", "10:01");
    c.agent("Sorry your parcel is late, I'll call you back at 3pm", "10:05");
    // Nothing to brief the agent who was already here.
    assert!(e.typing("c1", "ana", t("10:06")).is_empty());
    let brief = e.typing("c1", "ben", t("10:31"));
    assert_eq!(brief.len(), 1);
    let b = &brief[0];
    assert_eq!(
        (b.kind, b.agent.as_ref().map(UserId::as_str)),
        (HandoffBrief, Some("ben"))
    );
    assert!(b.quote.contains("I haven't received my parcel"), "{}", b.quote);
    assert!(b.evidence.contains("Sorry your parcel is late"), "{}", b.evidence);
    assert_eq!(b.due.as_ref().map(|d| d.at), Some(t("15:00")));
    assert_eq!(b.source, MessageRef(3), "links to the message Ben is answering");
    // Once per agent, on typing or on writing.
    assert!(e.typing("c1", "ben", t("10:32")).is_empty());
    assert!(c
        .say("c1", "ben", Role::Agent, "Hi, Ben here", "10:33")
        .iter()
        .all(|n| n.kind != HandoffBrief));
    // A conversation with no failure and no promise needs no brief.
    c.say("c2", "ana", Role::Agent, "Hi", "11:00");
    c.say("c2", "cust2", Role::Customer, "thanks", "11:01");
    assert!(e.typing("c2", "ben", t("11:02")).is_empty());
}

#[test]
fn waits_read_as_people_say_them() {
    use jiff::SignedDuration;
    assert_eq!(format_wait(SignedDuration::from_mins(40)), "40 min");
    assert_eq!(format_wait(SignedDuration::from_mins(185)), "3 h 5 min");
    assert_eq!(format_wait(SignedDuration::from_hours(2)), "2 h");
    assert_eq!(format_wait(SignedDuration::from_hours(72)), "3 days");
}

#[test]
fn a_first_reply_that_already_names_the_failure_is_a_recovery_not_a_late_nudge() {
    let e = engine();
    let read = |conv: &str, who: &str, role: Role, text: &str, at: &str, line: u64| {
        e.read(
            &Message {
                conversation: conv,
                author: who,
                role,
                text,
                at: t(at),
                source: MessageRef(line),
            },
            true,
        )
    };
    read("c1", "cust", Role::Customer, "I haven't received my parcel", "10:00", 1);
    let r = read("c1", "ana", Role::Agent, "I'm so sorry your parcel is late", "10:02", 2);
    assert!(r.nudges.is_empty(), "{:?}", r.nudges);
    assert_eq!(r.unprompted.len(), 1);
    assert_eq!(r.unprompted[0].kind, PriorFailure);
    // A reply that doesn't name it still gets the cue's nudge, late but useful.
    read("c2", "cust", Role::Customer, "I haven't received my parcel", "10:00", 3);
    let r = read("c2", "ana", Role::Agent, "Hi there", "10:02", 4);
    assert_eq!(r.nudges.iter().map(|n| n.kind).collect::<Vec<_>>(), [PriorFailure]);
    assert!(r.unprompted.is_empty());
}

#[test]
fn a_handoff_briefs_the_named_agent_now() {
    let e = engine();
    let mut c = chat(&e);
    c.agent("Hi, Ana here", "10:00");
    c.customer("I haven't received my parcel", "10:01");
    let b = e.handoff("c1", "ana", "ben", t("10:10")).expect("a brief");
    assert_eq!(
        (b.kind, b.agent.as_ref().map(UserId::as_str)),
        (HandoffBrief, Some("ben"))
    );
    // Ben was briefed: his typing adds nothing, but another /handoff briefs him again.
    assert!(e.typing("c1", "ben", t("10:11")).is_empty());
    assert!(e.handoff("c1", "ana", "ben", t("10:12")).is_some());
    // Nothing to hand over in a conversation with no failure and no promise.
    c.say("c2", "ana", Role::Agent, "Hi", "11:00");
    assert!(e.handoff("c2", "ana", "ben", t("11:01")).is_none());
    assert!(e.handoff("unknown", "ana", "ben", t("11:01")).is_none());
}

fn read(engine: &Engine, who: &str, role: Role, text: &str, at: &str, line: u64) -> Reading {
    engine.read(
        &Message {
            conversation: "c1",
            author: who,
            role,
            text,
            at: t(at),
            source: MessageRef(line),
        },
        false,
    )
}

#[test]
fn the_checklist_opens_on_a_cue_and_follows_the_replies() {
    let e = engine();
    // Before any cue there is no checklist to judge.
    assert_eq!(
        read(&e, "ana", Role::Agent, "thanks for waiting", "09:00", 1).checklist,
        None
    );
    assert_eq!(
        read(&e, "cust", Role::Customer, "I haven't received my parcel", "09:01", 2).checklist,
        None
    );
    let first = read(&e, "ana", Role::Agent, "what's your order number?", "09:02", 3)
        .checklist
        .expect("the first reply is judged");
    assert_eq!(first.agent.as_ref().map(UserId::as_str), Some("ana"));
    assert!(first.steps_done().is_empty(), "details before ownership: {first:?}");
    let second = read(
        &e,
        "bo",
        Role::Agent,
        "the courier lost it, sorry about the parcel",
        "09:05",
        4,
    )
    .checklist
    .expect("changed");
    assert_eq!(
        second.steps_done(),
        vec![RecoveryStep::Apologized, RecoveryStep::Specific],
        "the excuse came first"
    );
    // Only a time makes a next step.
    let untimed = read(&e, "bo", Role::Agent, "a replacement ships", "09:06", 5)
        .checklist
        .unwrap();
    assert_eq!(untimed.steps_done(), second.steps_done());
    let last = read(
        &e,
        "bo",
        Role::Agent,
        "a replacement ships tomorrow, thanks",
        "09:07",
        6,
    )
    .checklist
    .expect("changed");
    assert!(last.done(RecoveryStep::NextStep) && last.done(RecoveryStep::Thanked));
    assert_eq!(
        (last.replies, last.agent.as_ref().map(UserId::as_str)),
        (4, Some("ana"))
    );
    // The checklist is part of the stored context, so a restart keeps it.
    assert_eq!(e.context("c1").and_then(|c| c.checklist), Some(last));
}

#[test]
fn an_apology_before_the_excuse_and_ownership_before_details_tick_both_order_steps() {
    let e = engine();
    read(&e, "cust", Role::Customer, "still waiting on my refund", "10:00", 1);
    let c = read(
        &e,
        "ana",
        Role::Agent,
        "so sorry about the wait, I'll sort it. what's your email?",
        "10:01",
        2,
    )
    .checklist
    .unwrap();
    assert_eq!(
        c.steps_done(),
        vec![
            RecoveryStep::Apologized,
            RecoveryStep::Specific,
            RecoveryStep::BeforeExplaining,
            RecoveryStep::OwnedFirst
        ]
    );
    let later = read(&e, "ana", Role::Agent, "the courier was late, sorry", "10:02", 3)
        .checklist
        .unwrap();
    assert_eq!(
        later.steps_done(),
        c.steps_done(),
        "an excuse after the apology undoes nothing"
    );
}

#[test]
fn a_live_reading_older_than_the_conversation_is_flagged_out_of_order() {
    let e = engine();
    let read = |text: &str, at: &str, line: u64, claim: bool| {
        e.read(
            &Message {
                conversation: "c1",
                author: "cust",
                role: Role::Customer,
                text,
                at: t(at),
                source: MessageRef(line),
            },
            claim,
        )
    };
    assert!(!read("hello", "10:00", 1, true).out_of_order);
    assert!(!read("still there?", "10:05", 3, true).out_of_order);
    assert!(read("my order is late", "10:02", 2, true).out_of_order);
    // An edit re-reads an old message: not a sign of disorder.
    assert!(!read("my order is very late", "10:02", 2, false).out_of_order);
}
