//! Property tests: whatever the text and whatever the order, the engine never panics and every
//! nudge points at a message that was really fed to it.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use proptest::prelude::*;

use backstop::engine::{Engine, Message, MessageRef, NudgeKind, Role};
use backstop::replay::Timeline;

/// One engine for every case (compiling the rule book per case would dominate the run); each case
/// gets conversations of its own, so cases cannot see each other's state.
static ENGINE: LazyLock<Engine> = LazyLock::new(|| common::shipped().engine().expect("shipped config loads"));
static CASE: AtomicUsize = AtomicUsize::new(0);

fn fresh_case() -> usize {
    CASE.fetch_add(1, Ordering::Relaxed)
}

/// Text that mixes cue words, markdown, quotes, code fences, emoji and odd Unicode.
fn chat_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "I haven't received",
        "still waiting",
        "sorry",
        "but it's not my fault",
        "the courier",
        "I'll call you back",
        "by 3pm",
        "tomorrow",
        "> ",
        "```",
        "`",
        "\n",
        "’",
        "…",
        "😡",
        "é",
        "\u{200B}",
        "\u{0301}",
        "₹",
        "?",
        ". ",
        "our system was down",
        "called yesterday",
        "transferred",
        "EOD",
        "in 2 hours",
        "  ",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..30).prop_map(|v| v.concat()),
        any::<String>(),
        "\\PC{0,200}",
    ]
}

#[derive(Debug, Clone)]
struct Msg {
    conversation: u8,
    agent: bool,
    text: String,
    minute: i64,
}

fn message() -> impl Strategy<Value = Msg> {
    (0u8..4, any::<bool>(), chat_text(), -10_000i64..10_000).prop_map(|(conversation, agent, text, minute)| Msg {
        conversation,
        agent,
        text,
        minute,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_nudges_point_at_real_lines(msgs in prop::collection::vec(message(), 1..40), until in 0i64..100_000) {
        let engine = &*ENGINE;
        let case = fresh_case();
        let base: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut fed = BTreeSet::new();
        let mut nudges = Vec::new();
        // This case's reminders, timed as replay times them.
        let mut timeline = Timeline::new();
        for (i, m) in msgs.iter().enumerate() {
            let at = base.checked_add(jiff::SignedDuration::from_mins(m.minute)).unwrap();
            let conv = format!("case{case}-c{}", m.conversation);
            let line = i as u64 + 1;
            fed.insert(line);
            nudges.extend(timeline.fire_due(engine, at));
            nudges.extend(engine.observe(&Message {
                conversation: &conv,
                author: if m.agent { "agent" } else { "customer" },
                role: if m.agent { Role::Agent } else { Role::Customer },
                text: &m.text,
                at,
                source: MessageRef(line),
            }));
            timeline.book(engine, &conv);
            let _ = engine.claim(&conv, "agent-2", at);
        }
        nudges.extend(timeline.fire_due(engine, base.checked_add(jiff::SignedDuration::from_mins(until)).unwrap()));
        let prefix = format!("case{case}-");
        prop_assert!(nudges.iter().all(|n| n.conversation.as_str().starts_with(&prefix)), "another case's nudge");
        for n in &nudges {
            prop_assert!(fed.contains(&n.source.0), "nudge for line {} never fed", n.source.0);
            prop_assert!(!n.text.is_empty());
            // A category always belongs to its kind; cues and explanations always have one (an
            // overdue notice has one only when the customer chased early).
            prop_assert!(n.category.is_none_or(|c| n.kind.categories().contains(&c)), "{:?} {:?}", n.kind, n.category);
            let always = matches!(n.kind, NudgeKind::PriorFailure | NudgeKind::ExplainBeforeApology);
            prop_assert!(!always || n.category.is_some(), "{:?} without a category", n.kind);
        }
    }

    #[test]
    fn evidence_is_always_the_authors_own_words(text in chat_text()) {
        let engine = &*ENGINE;
        let conv = format!("case{}", fresh_case());
        let at: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        for role in [Role::Customer, Role::Agent] {
            for n in engine.observe(&Message { conversation: &conv, author: "a", role, text: &text, at, source: MessageRef(1) }) {
                if n.kind != NudgeKind::FollowUpNoTimeframe && n.kind != NudgeKind::FollowUpPromised {
                    prop_assert!(text.contains(&n.evidence), "evidence {:?} not in {:?}", n.evidence, text);
                }
            }
        }
    }
}
