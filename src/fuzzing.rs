//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz), kept here so that `tests/fuzz_corpus.rs`
//! replays every saved corpus input through the same code on the stable toolchain.
//!
//! Each function takes the raw fuzzer input, must never panic, and asserts that every rejection is
//! a clear error: a non-empty message that names its place, as the rest of Backstop reports them.
//! Not part of Backstop's interface.

use std::sync::OnceLock;

use jiff::Timestamp;

use crate::config::{Sources, BUILT_IN_LEXICON};
use crate::digest::Cadence;
use crate::discord::config::{BotConfig, Delivery};
use crate::discord::{commands, convert, delivery};
use crate::engine::{
    format_due, Engine, Learned, Lexicon, Message, MessageRef, Nudge, Prepared, Problems, Prompts, Role, RuleSet,
    Settings,
};
use crate::replay::Replay;
use crate::transcript;

/// A fuzz target's body: it takes the fuzzer's raw input.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/` and the corpus folders call them.
pub const TARGETS: [(&str, Target); 5] = [
    ("transcript_line", transcript_line),
    ("engine_message", engine_message),
    ("config_toml", config_toml),
    ("slash_options", slash_options),
    ("gateway_payload", gateway_payload),
];

/// The built-in rules, prompts and settings, compiled once.
fn base() -> &'static Engine {
    static BASE: OnceLock<Engine> = OnceLock::new();
    BASE.get_or_init(|| {
        Sources::default()
            .engine()
            .unwrap_or_else(|e| panic!("the built-in config does not load: {e}"))
    })
}

/// A fresh engine sharing the built-in book: no state carried over from another input.
fn engine() -> Engine {
    let base = base();
    base.with_settings(base.settings().clone())
}

/// When a fuzzed conversation starts (the transcripts' own week).
fn start() -> Timestamp {
    Timestamp::from_second(1_795_428_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn clear_problems(what: &str, p: &Problems) {
    assert!(!p.0.is_empty(), "{what}: rejected with no problem named");
    for problem in &p.0 {
        assert!(
            !problem.message.trim().is_empty() && !problem.file.is_empty(),
            "{what}: a problem without a message or file: {problem:?}"
        );
    }
    assert!(!p.to_string().trim().is_empty(), "{what}: an empty error message");
}

/// Renders nudges the way the bot delivers them, and reads their due times.
fn deliver(engine: &Engine, nudges: &[Nudge]) {
    let schedule = &engine.settings().schedule;
    for nudge in nudges {
        let _ = delivery::render(nudge, Some(crate::coach::jump_link(1, 2, 3)), schedule);
        if let Some(due) = &nudge.due {
            let _ = format_due(due.at, schedule);
        }
    }
}

/// `transcript_line`: a transcript (one or more JSON Lines), read as `replay` reads it, and the
/// records that parse replayed through an engine with the built-in config.
pub fn transcript_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (i, line) in text.lines().enumerate() {
        if let Err(e) = transcript::parse_line(i as u64 + 1, line) {
            assert!(
                !e.problem.trim().is_empty(),
                "line {}: rejected without a reason",
                e.line
            );
            assert!(e.to_string().starts_with(&format!("line {}: ", i + 1)));
        }
    }
    let records = match transcript::parse_all(text) {
        Ok(records) => records,
        Err(_) => return,
    };
    let engine = engine();
    let mut replay = Replay::new(&engine);
    for (line, record) in &records {
        let outcome = replay.feed(*line, record);
        deliver(&engine, &outcome.nudges);
    }
    let last = replay.finish(None);
    deliver(&engine, &last);
    let _ = engine.open_promises();
}

/// `engine_message`: one conversation of messages (separated by `\x1e`), each read by the engine
/// as the bot reads it, and scanned as `backstop check --try` shows it. The first byte picks each
/// message's role (one bit per message) and whether an agent's message claims an early cue.
pub fn engine_message(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let engine = engine();
    let rules = engine.rules();
    let mut at = start();
    for (i, part) in text.split('\x1e').enumerate().take(64) {
        let role = if flags >> (i % 7) & 1 == 1 {
            Role::Agent
        } else {
            Role::Customer
        };
        // check --try: the rules that fire and the time words an agent's sentences hold.
        let prepared = Prepared::new(part);
        let tokens = rules.tokens(&prepared);
        for hit in rules.scan(role, &prepared, &tokens) {
            let _ = rules.rule(hit.rule);
            let _ = prepared.original(hit.span.clone());
        }
        for sentence in 0..tokens.sentences.len() {
            if let Some(time) = rules.timeframe(&prepared, &tokens, sentence) {
                let _ = time.is_vague();
                let _ = time.resolve(at, &engine.settings().schedule);
            }
        }
        let author = match role {
            Role::Agent => "agent",
            Role::Customer => "customer",
        };
        if role == Role::Agent {
            deliver(&engine, &engine.typing("c1", author, at));
        }
        let message = Message {
            conversation: "c1",
            author,
            role,
            text: part,
            at,
            source: MessageRef(i as u64 + 1),
        };
        let reading = engine.read(&message, flags & 0x80 != 0);
        deliver(&engine, &reading.nudges);
        deliver(&engine, &reading.unprompted);
        at = at.checked_add(jiff::SignedDuration::from_mins(7)).unwrap_or(at);
    }
    if let Some(brief) = engine.handoff("c1", "agent", "agent2", at) {
        deliver(&engine, &[brief]);
    }
    for promise in engine.open_promises() {
        let _ = format_due(promise.due.at, &engine.settings().schedule);
    }
    let later = at.checked_add(jiff::SignedDuration::from_hours(24 * 30)).unwrap_or(at);
    let mut timeline = crate::replay::Timeline::new();
    timeline.book(&engine, "c1");
    deliver(&engine, &timeline.fire_due(&engine, later));
    engine.forget_idle(later);
}

/// `config_toml`: one of the user-edited config files, picked by the first byte, parsed from the
/// rest. Every rejection must name what is wrong.
pub fn config_toml(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let named = |name: &str| vec![(name.to_string(), text.to_string())];
    let shipped = |files: &[(&str, &str)]| -> Vec<(String, String)> {
        files.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()
    };
    let base = base();
    match pick % 8 {
        0 => {
            let lexicon = shipped_lexicon();
            match RuleSet::parse(lexicon, &named("fuzz/rules.toml"), base.settings().check_budget) {
                Ok(rules) => {
                    // `backstop check` runs each rule's own examples.
                    let _ = rules.self_test();
                }
                Err(p) => clear_problems("rules", &p),
            }
        }
        1 => {
            if let Err(p) = Lexicon::parse(&named("fuzz/lexicon.toml")) {
                clear_problems("lexicon", &p);
            }
        }
        2 => {
            let mut files = shipped(&BUILT_IN_LEXICON);
            files.extend(named("fuzz/lexicon/extra.toml"));
            if let Err(p) = Lexicon::parse(&files) {
                clear_problems("lexicon with the shipped files", &p);
            }
        }
        3 => {
            let phrases = include_str!("../prompts/phrases.toml");
            if let Err(p) = Prompts::parse(("fuzz/nudges.toml", text), ("prompts/phrases.toml", phrases)) {
                clear_problems("nudges", &p);
            }
        }
        4 => {
            let nudges = include_str!("../prompts/nudges.toml");
            match Prompts::parse(("prompts/nudges.toml", nudges), ("fuzz/phrases.toml", text)) {
                Ok(prompts) => {
                    let _ = prompts.search(text.get(..text.len().min(40)).unwrap_or(""));
                }
                Err(p) => clear_problems("phrases", &p),
            }
        }
        5 => match Settings::parse("fuzz/engine.toml", text) {
            Ok(settings) => {
                let _ = format_due(start(), &settings.schedule);
            }
            Err(p) => clear_problems("engine settings", &p),
        },
        6 => match BotConfig::parse("fuzz/backstop.toml", text, base.settings()) {
            Ok(config) => {
                for guild in &config.guilds {
                    for cadence in &guild.digests {
                        let _ = cadence.next_slot(start(), &guild.settings.schedule.time_zone);
                    }
                }
            }
            Err(p) => clear_problems("backstop.toml", &p),
        },
        _ => {
            if let Err(problems) = Learned::parse("fuzz/model.json", text) {
                clear_problems("model", &Problems(problems));
            }
        }
    }
}

/// The shipped lexicon, parsed once.
fn shipped_lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| {
        let files: Vec<(String, String)> = BUILT_IN_LEXICON
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Lexicon::parse(&files).unwrap_or_else(|p| panic!("the shipped lexicon does not load: {p}"))
    })
}

/// `slash_options`: what people type into slash-command options, read as the commands read it
/// (durations, delivery choices, digest times, situations and search words); and, when the input
/// is a JSON array, that array as a command's and an autocomplete's options.
pub fn slash_options(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(d) = commands::mute_duration(&text) {
        let _ = start().checked_add(d);
        let _ = format!("{d:#}");
    }
    let _ = Delivery::parse(&text);
    for weekly in [false, true] {
        match Cadence::parse(&text, weekly) {
            Ok(cadence) => {
                let tz = &base().settings().schedule.time_zone;
                if let Some(slot) = cadence.next_slot(start(), tz) {
                    let _ = cadence.periods(slot);
                }
            }
            Err(e) => assert!(!e.trim().is_empty(), "digest time {text:?}: rejected without a reason"),
        }
    }
    let prompts = base().prompts();
    let _ = commands::phrase_answer(&prompts, Some(&text), None);
    let _ = commands::phrase_answer(&prompts, None, Some(&text));
    let Ok(serde_json::Value::Array(options)) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for kind in [2, 4] {
        let interaction = serde_json::json!({
            "id": "1300000000000000001", "application_id": "1200000000000000001", "type": kind, "token": "tok",
            "version": 1, "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608,
            "guild_id": "1100000000000000001", "channel_id": "1100000000000000002",
            "data": {"id": "1300000000000000002", "name": "coach", "type": 1, "options": options},
            "user": {"id": "1100000000000000003", "username": "ana", "discriminator": "0", "global_name": "ana", "avatar": null},
        });
        if let Ok(interaction) = serde_json::from_value::<serenity::all::Interaction>(interaction) {
            command(&prompts, &interaction);
        }
    }
}

/// What the bot reads from a command or autocomplete interaction before it answers: poise
/// parses the typed options; the commands then read strings as these do.
fn command(prompts: &Prompts, interaction: &serenity::all::Interaction) {
    use serenity::all::{Interaction, ResolvedOption, ResolvedValue};
    fn strings<'a>(options: Vec<ResolvedOption<'a>>, out: &mut Vec<&'a str>) {
        for option in options {
            match option.value {
                ResolvedValue::String(s) => out.push(s),
                ResolvedValue::SubCommand(inner) | ResolvedValue::SubCommandGroup(inner) => strings(inner, out),
                _ => {}
            }
        }
    }
    match interaction {
        Interaction::Command(cmd) => {
            let mut found = Vec::new();
            strings(cmd.data.options(), &mut found);
            for s in found {
                let _ = commands::phrase_answer(prompts, Some(s), Some(s));
                let _ = commands::mute_duration(s);
                let _ = Delivery::parse(s);
            }
        }
        Interaction::Autocomplete(ac) => {
            let typed = ac.data.autocomplete().map(|o| o.value).unwrap_or_default();
            let _ = commands::situations_matching(prompts, typed);
        }
        _ => {}
    }
}

/// `gateway_payload`: JSON from Discord (a gateway frame, or a message, channel or interaction
/// as REST returns it), deserialised into serenity's types and converted as the bot converts it.
pub fn gateway_payload(data: &[u8]) {
    use serenity::all::{Event, GatewayEvent, GuildChannel, Interaction};
    if let Ok(GatewayEvent::Dispatch(_, event)) = serde_json::from_slice::<GatewayEvent>(data) {
        match event {
            Event::MessageCreate(e) => message(&e.message),
            Event::MessageUpdate(e) => {
                if let Some(at) = &e.timestamp {
                    let _ = convert::timestamp(at);
                }
                let _ = convert::snowflake_time(e.id.get());
            }
            Event::InteractionCreate(e) => command(&base().prompts(), &e.interaction),
            Event::GuildCreate(e) => {
                for c in e.guild.channels.values().chain(&e.guild.threads) {
                    let _ = convert::parent(c);
                }
            }
            Event::ChannelCreate(e) => {
                let _ = convert::parent(&e.channel);
            }
            Event::ThreadCreate(e) => {
                let _ = convert::parent(&e.thread);
            }
            _ => {}
        }
    }
    if let Ok(m) = serde_json::from_slice::<serenity::all::Message>(data) {
        message(&m);
    }
    if let Ok(c) = serde_json::from_slice::<GuildChannel>(data) {
        let _ = convert::parent(&c);
    }
    if let Ok(i) = serde_json::from_slice::<Interaction>(data) {
        command(&base().prompts(), &i);
    }
}

/// A Discord message converted as the event handler converts it, and read by the engine as the
/// coach reads it (members with roles as agents).
fn message(msg: &serenity::all::Message) {
    let nick = msg.member.as_ref().and_then(|m| m.nick.as_deref());
    let _ = nick.unwrap_or(msg.author.display_name());
    let Some(posted) = convert::posted(msg, Some(1)) else {
        return;
    };
    let agent = posted.roles.as_ref().is_some_and(|r| !r.is_empty());
    let conversation = posted.channel.to_string();
    let author = posted.author.to_string();
    let engine = engine();
    let message = Message {
        conversation: &conversation,
        author: &author,
        role: if agent { Role::Agent } else { Role::Customer },
        text: &posted.text,
        at: posted.at,
        source: MessageRef(posted.id),
    };
    let reading = engine.read(&message, true);
    let jump = Some(crate::coach::jump_link(posted.guild, posted.channel, posted.id));
    for nudge in &reading.nudges {
        let _ = delivery::render(nudge, jump.clone(), &engine.settings().schedule);
    }
}
