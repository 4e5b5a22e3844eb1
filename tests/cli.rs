//! Black-box runs of the `backstop` binary: replay, check, phrase.

mod common;

use std::fs;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn backstop() -> Command {
    let mut cmd = Command::cargo_bin("backstop").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn line(conv: &str, author: &str, role: &str, text: &str, ts: &str) -> String {
    serde_json::json!({"conversation": conv, "author": author, "role": role, "text": text, "ts": ts}).to_string()
}

fn jsonl(lines: &[String]) -> String {
    lines.join("\n") + "\n"
}

/// Every JSON line of `replay --json`: nudges, and detections the policy held back.
fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect()
}

fn nudges(stdout: &[u8]) -> Vec<Value> {
    lines(stdout)
        .into_iter()
        .filter(|v| v.get("suppressed").is_none())
        .collect()
}

fn held(stdout: &[u8]) -> Vec<Value> {
    lines(stdout)
        .into_iter()
        .filter(|v| v.get("suppressed").is_some())
        .collect()
}

#[test]
fn replay_json_has_every_field_and_real_lines() {
    let out = backstop()
        .args(["replay", "--json", "examples/support-day.jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let nudges = nudges(&out.stdout);
    let input_lines = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/support-day.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert!(
        nudges.len() > 20,
        "the example day shows plenty of nudges, got {}",
        nudges.len()
    );
    for n in &nudges {
        for field in [
            "kind",
            "category",
            "conversation",
            "line",
            "at",
            "agent",
            "rule",
            "evidence",
            "due",
            "text",
        ] {
            assert!(n.get(field).is_some(), "missing {field} in {n}");
        }
        let l = n["line"].as_u64().unwrap();
        assert!((1..=input_lines).contains(&l), "line {l} out of range");
        assert!(!n["text"].as_str().unwrap().is_empty());
    }
    let kinds: std::collections::BTreeSet<&str> = nudges.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    for kind in [
        "prior_failure",
        "explain_before_apology",
        "follow_up_promised",
        "follow_up_no_timeframe",
        "follow_up_reminder",
        "follow_up_overdue",
    ] {
        assert!(kinds.contains(kind), "the example day shows {kind}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("messages,") && stderr.contains("nudges in"),
        "summary on stderr with --json: {stderr}"
    );
}

#[test]
fn replay_reads_stdin_and_fires_reminders_until_asked() {
    let input = jsonl(&[
        line(
            "c1",
            "cust",
            "customer",
            "hi, my parcel is late",
            "2026-11-23T10:00:00Z",
        ),
        line(
            "c1",
            "ana",
            "agent",
            "So sorry! I'll call you back by 3pm today.",
            "2026-11-23T10:01:00Z",
        ),
    ]);
    let out = backstop()
        .args(["replay", "--json", "-"])
        .write_stdin(input.clone())
        .output()
        .unwrap();
    let kinds: Vec<String> = nudges(&out.stdout)
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["follow_up_promised"]);
    let out = backstop()
        .args(["replay", "--json", "--until", "2026-11-23T16:00:00Z", "-"])
        .write_stdin(input)
        .output()
        .unwrap();
    let all = nudges(&out.stdout);
    let kinds: Vec<&str> = all.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["follow_up_promised", "follow_up_reminder", "follow_up_overdue"]);
    assert_eq!(all[1]["at"], "2026-11-23T14:45:00Z");
    assert_eq!(all[2]["due"], "2026-11-23T15:00:00Z");
    assert_eq!(all[2]["line"], 2);
    assert_eq!(all[2]["agent"], "ana");
}

#[test]
fn quoted_and_code_text_never_triggers() {
    let input = jsonl(&[
        line("c1", "ana", "agent", "Hello!", "2026-11-23T10:00:00Z"),
        line(
            "c1",
            "cust",
            "customer",
            "> I haven't received my refund\nignore that, it arrived today, thanks!",
            "2026-11-23T10:01:00Z",
        ),
        line(
            "c1",
            "cust",
            "customer",
            "my log says ```still waiting on refund, never received``` fyi",
            "2026-11-23T10:02:00Z",
        ),
    ]);
    let out = backstop()
        .args(["replay", "--json", "-"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        nudges(&out.stdout).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn invalid_lines_stop_with_line_and_field() {
    let input = jsonl(&[
        line("c1", "cust", "customer", "hi", "2026-11-23T10:00:00Z"),
        line("c1", "cust", "robot", "hi", "2026-11-23T10:00:00Z"),
    ]);
    backstop()
        .args(["replay", "-"])
        .write_stdin(input.clone())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 2: field `role`: unknown role \"robot\""));
    backstop()
        .args(["replay", "--skip-invalid", "-"])
        .write_stdin(input + "{oops\n" + &line("c1", "cust", "customer", "x", "not a time") + "\n")
        .assert()
        .success()
        .stderr(predicate::str::contains("skipped line 3: invalid JSON"))
        .stderr(predicate::str::contains("skipped line 4: field `ts`"))
        .stdout(predicate::str::contains("3 invalid lines skipped"));
}

#[test]
fn odd_messages_are_handled() {
    let big = "I haven't received it. ".repeat(5000);
    let input = jsonl(&[
        line("c1", "cust", "customer", "", "2026-11-23T10:00:00Z"),
        line("c1", "cust", "customer", &big, "2026-11-23T10:00:01Z"),
        line(
            "c1",
            "cust",
            "customer",
            "😡😡 I hav\u{200B}en’t recei\u{200D}ved **anything** 🙃",
            "2026-11-23T10:00:02Z",
        ),
        line("c1", "cust", "customer", "```\nunclosed code", "2026-11-23T09:00:00Z"),
    ]);
    let out = backstop()
        .args(["replay", "--json", "-"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = nudges(&out.stdout);
    assert_eq!(all.len(), 1, "one cue, then the same one merged: {all:?}");
    assert_eq!(all[0]["line"], 2);
    let merged = held(&out.stdout);
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(
        (merged[0]["line"].as_u64(), merged[0]["suppressed"].as_str()),
        (Some(3), Some("repeated"))
    );
    assert!(merged[0].get("text").is_none(), "a held detection is not delivered");
}

#[test]
fn a_line_of_invalid_utf8_is_one_skipped_line() {
    let mut input = line("c1", "cust", "customer", "hi", "2026-11-23T10:00:00Z").into_bytes();
    input.extend_from_slice(b"\n{\"conversation\": \"c1\", \"text\": \"\xff\xfe\"}\n");
    input.extend_from_slice(
        line(
            "c1",
            "cust",
            "customer",
            "I haven't received it",
            "2026-11-23T10:01:00Z",
        )
        .as_bytes(),
    );
    input.push(b'\n');
    let out = backstop()
        .args(["replay", "--json", "--skip-invalid", "-"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped line 2: not valid UTF-8"), "{stderr}");
    assert!(stderr.contains("1 invalid lines skipped"), "{stderr}");
    assert_eq!(nudges(&out.stdout).len(), 1, "the lines after it are still read");
}

#[test]
fn human_view_has_one_line_per_nudge_and_a_summary() {
    let out = backstop()
        .args(["replay", "examples/support-day.jsonl"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("prior_failure/"));
    assert!(
        text.lines().last().unwrap().contains("follow_up_promised"),
        "per-kind counts close the summary"
    );
    assert!(!text.contains('\u{1b}'), "NO_COLOR is honoured");
}

#[test]
fn check_passes_on_the_shipped_files() {
    backstop()
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("checked").and(predicate::str::ends_with("ok\n")));
}

#[test]
fn check_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let prompts = dir.path().join("prompts");
    fs::create_dir_all(&config).unwrap();
    fs::create_dir_all(&prompts).unwrap();
    fs::write(
        config.join("rules.toml"),
        "[[rule]]\nid = \"a\"\nkind = \"apology\"\nphrases = [\"(sorry\"]\n\n[[rule]]\nid = \"a\"\nkind = \"apology\"\nphrases = [\"sorry\"]\nmood = \"x\"\n",
    )
    .unwrap();
    fs::write(config.join("engine.toml"), "cooldown = \"15m\"\ntimezone = \"UTC\"\n").unwrap();
    let nudges = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/nudges.toml")).unwrap();
    fs::write(
        prompts.join("nudges.toml"),
        nudges.replacen("title = \"", "title = \"{evidense} ", 1),
    )
    .unwrap();
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/phrases.toml"),
        prompts.join("phrases.toml"),
    )
    .unwrap();
    let out = backstop()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--prompts")
        .arg(&prompts)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.toml:4: rule \"a\": phrases[0] \"(sorry\": '(' without a closing ')'"),
        "{err}"
    );
    assert!(err.contains("rules.toml:6: rule \"a\": unknown field `mood`"), "{err}");
    assert!(err.contains("engine.toml:2: unknown field `timezone`"), "{err}");
    let title_line = nudges.lines().position(|l| l == "[prior_failure]").unwrap() + 1;
    assert!(
        err.contains(&format!(
            "nudges.toml:{title_line}: [prior_failure]: title: unknown placeholder {{evidense}}"
        )),
        "{err}"
    );
}

#[test]
fn check_reports_rules_whose_examples_fail() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("rules.toml"),
        "[[rule]]\nid = \"sorry\"\nkind = \"apology\"\nphrases = [\"sorry\"]\nexamples = [\"apologies!\"]\n",
    )
    .unwrap();
    backstop()
        .arg("check")
        .arg("--config")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "rules.toml:1: rule \"sorry\": example does not fire: \"apologies!\"",
        ));
}

#[test]
fn missing_folders_are_named() {
    backstop()
        .args(["check", "--config", "/nonexistent/backstop"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/backstop has no rules"));
}

#[test]
fn phrase_lists_shows_and_searches() {
    backstop()
        .arg("phrase")
        .assert()
        .success()
        .stdout(predicate::str::contains("not_received"));
    backstop()
        .args(["phrase", "missed_callback"])
        .assert()
        .success()
        .stdout(predicate::str::contains("•"));
    backstop()
        .args(["phrase", "no_such_thing"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("known: "));
    backstop()
        .args(["phrase", "--search", "call back"])
        .assert()
        .success()
        .stdout(predicate::str::contains("["));
}

#[test]
fn runs_from_anywhere_with_the_built_in_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::cargo_bin("backstop").unwrap();
    cmd.current_dir(dir.path())
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("built-in defaults"));
}

#[test]
fn check_covers_the_bot_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_config(dir.path());
    fs::write(
        dir.path().join("backstop.toml"),
        "[[guild]]\nid = \"123\"\nwatch_channels = [\"#support\"]\nagent_roles = [\"456\"]\n",
    )
    .unwrap();
    backstop()
        .arg("check")
        .arg("--config")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "backstop.toml:1: guild[0].watch_channels[0]: \"#support\" is not a Discord id",
        ));
}

#[test]
fn demo_plays_a_day_through_the_real_bot_offline() {
    let out = backstop().args(["demo"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("↳ DM to agent-"), "nudges are shown as DMs to agents");
    assert!(text.contains("buttons: Helpful · Not helpful"));
    let mut tail = text.lines().rev();
    let (timing, summary) = (tail.next().unwrap(), tail.next().unwrap());
    assert!(summary.starts_with("254 messages played;"), "{summary}");
    // The example day types before every agent reply, so cue nudges and briefs land first (the
    // bot reads events concurrently, so a loaded machine may deliver one after the reply).
    let counts: Vec<usize> = timing.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(
        timing.ends_with("reached the agent before their reply")
            && counts.len() == 2
            && counts[0] + 2 >= counts[1]
            && counts[0] >= 25,
        "{timing}"
    );
    for kind in [
        "prior_failure",
        "follow_up_promised",
        "follow_up_reminder",
        "follow_up_overdue",
        "generic_apology",
        "handoff_brief",
    ] {
        assert!(summary.contains(kind), "{kind} missing from {summary}");
    }
}

#[test]
fn a_typing_lead_hands_a_waiting_cue_to_the_agent_before_their_reply() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("typing.jsonl");
    fs::write(
        &day,
        r#"{"conversation": "c1", "author": "cust-1", "role": "customer", "text": "I still haven't received my order", "ts": "2026-03-02T09:00:00Z"}
{"conversation": "c1", "author": "agent-1", "role": "agent", "text": "Let me look.", "ts": "2026-03-02T09:02:00Z", "typing_ms": 30000}
"#,
    )
    .unwrap();
    let out = backstop().args(["replay", "--json"]).arg(&day).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let nudges = nudges(&out.stdout);
    let handed: Vec<&Value> = nudges.iter().filter(|n| n["agent"] == "agent-1").collect();
    assert_eq!(handed.len(), 1, "{nudges:?}");
    assert_eq!(handed[0]["kind"], "prior_failure");
    assert_eq!(handed[0]["at"], "2026-03-02T09:01:30Z", "delivered when typing started");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("1 reached the agent as they started typing, before their reply"),
        "{summary}"
    );
    // A negative lead is refused with the line and field.
    fs::write(&day, r#"{"conversation": "c1", "author": "a", "role": "agent", "text": "hi", "ts": "2026-03-02T09:02:00Z", "typing_ms": -1}"#).unwrap();
    backstop()
        .args(["replay"])
        .arg(&day)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 1: field `typing_ms`"));
}

/// A labelled transcript with one hit, one miss and one false alarm for `prior_failure`.
const LABELLED: &str = r#"{"conversation": "c1", "author": "cust-1", "role": "customer", "text": "I still haven't received my order", "ts": "2026-03-02T09:00:00Z", "labels": ["prior_failure:not_received"]}
{"conversation": "c1", "author": "agent-1", "role": "agent", "text": "I'm so sorry it hasn't arrived. Let me look now.", "ts": "2026-03-02T09:01:00Z"}
{"conversation": "c2", "author": "cust-2", "role": "customer", "text": "hello, what are your opening hours?", "ts": "2026-03-02T09:02:00Z", "labels": ["prior_failure"]}
{"conversation": "c3", "author": "cust-3", "role": "customer", "text": "this is the third time I'm contacting you", "ts": "2026-03-02T09:03:00Z"}
"#;

#[test]
fn eval_scores_a_labelled_file_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labelled.jsonl");
    std::fs::write(&file, LABELLED).unwrap();
    let out = backstop().args(["eval", "--json"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pf = &v["detections"]["by_kind"]["prior_failure"];
    assert_eq!(
        (
            pf["true_pos"].as_u64(),
            pf["false_pos"].as_u64(),
            pf["false_neg"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(pf["precision"].as_f64(), Some(0.5));
    assert_eq!(pf["recall"].as_f64(), Some(0.5));
    assert_eq!(v["detections"]["misses"][0]["line"].as_u64(), Some(3));
    assert_eq!(v["detections"]["false_alarms"][0]["line"].as_u64(), Some(4));
    assert!(v["detections"]["false_alarms"][0]["text"]
        .as_str()
        .unwrap()
        .contains("third time"));
    assert_eq!(
        v["nudges"]["by_kind"]["prior_failure"]["true_pos"].as_u64(),
        Some(1),
        "nudges are scored apart"
    );
    // Below the floor: non-zero exit, naming the kind.
    let out = backstop()
        .args(["eval", "--min-f1", "0.9"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("detections: prior_failure 0.500"));
}

#[test]
fn eval_compare_shows_what_a_rule_change_gains_and_loses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labelled.jsonl");
    std::fs::write(&file, LABELLED).unwrap();
    // The new config has one rule: it catches line 3, loses line 1 and goes quiet on line 4.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let new = dir.path().join("new");
    std::fs::create_dir(&new).unwrap();
    std::fs::copy(root.join("config/engine.toml"), new.join("engine.toml")).unwrap();
    let only = "[[rule]]\nid = \"test.opening_hours\"\nkind = \"prior_failure\"\ncategory = \"repeat_contact\"\ndescription = \"test\"\nphrases = ['opening hours']\n";
    std::fs::write(new.join("rules.toml"), only).unwrap();
    let out = backstop()
        .args(["eval", "--json", "--compare"])
        .arg(root.join("config"))
        .arg(&new)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v["detections"];
    assert_eq!(d["fixed_misses"][0]["line"].as_u64(), Some(3), "{v}");
    assert_eq!(d["new_misses"][0]["line"].as_u64(), Some(1), "{v}");
    assert_eq!(d["fixed_false_alarms"][0]["line"].as_u64(), Some(4), "{v}");
    assert_eq!(d["new_false_alarms"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(d["new"]["prior_failure"]["true_pos"].as_u64(), Some(1), "{v}");
    assert_eq!(v["nudges"]["new"]["prior_failure"]["true_pos"].as_u64(), Some(1), "{v}");
}

#[test]
fn export_labels_turns_feedback_into_a_regression_set_for_eval() {
    use backstop::store::{NewNudge, StorageConfig, Store};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(&StorageConfig {
            data_dir: data.clone(),
            ..StorageConfig::default()
        })
        .await
        .unwrap();
        let rated = [
            (
                "prior_failure",
                Some("not_received"),
                "I still haven't received my order",
                true,
            ),
            (
                "prior_failure",
                Some("repeat_contact"),
                "this is the third time I'm contacting you",
                false,
            ),
            (
                "explain_before_apology",
                Some("instead_of_apology"),
                "The courier was delayed by the storm.",
                false,
            ),
            ("follow_up_reminder", None, "I'll call you back by 3pm", true),
        ];
        for (i, (kind, category, excerpt, helpful)) in rated.iter().enumerate() {
            let key = format!("{i}:{kind}");
            store
                .log_nudge(&NewNudge {
                    key: key.clone(),
                    guild: 1,
                    conversation: 2,
                    message: i as u64,
                    agent: Some(3),
                    customer: Some(4),
                    kind: kind.to_string(),
                    category: category.map(str::to_string),
                    rule: "r".into(),
                    evidence: "e".into(),
                    excerpt: excerpt.to_string(),
                    at: 1_764_000_000_000 + i as i64 * 60_000,
                    delivered: true,
                })
                .await
                .unwrap();
            store.feedback(&key, *helpful, 3, 1_764_000_000_000).await.unwrap();
        }
        store.close().await;
    });
    let labels = dir.path().join("labels.jsonl");
    let out = backstop()
        .arg("export-labels")
        .arg("--data-dir")
        .arg(&data)
        .arg("-o")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 rated nudges written as 4 labelled lines"));
    let out = backstop().args(["eval", "--json"]).arg(&labels).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pf = &v["detections"]["by_kind"]["prior_failure"];
    assert_eq!(
        (pf["true_pos"].as_u64(), pf["false_pos"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let ex = &v["detections"]["by_kind"]["explain_before_apology"];
    assert_eq!(ex["false_pos"].as_u64(), Some(1), "the 👎 explanation still fires: {v}");
    // The loop closes: the exported feedback trains a model beside a labelled set.
    let model = dir.path().join("model.json");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = backstop()
        .arg("train")
        .arg(root.join("tests/written/customers.jsonl"))
        .arg(&labels)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trained: serde_json::Value = serde_json::from_str(&fs::read_to_string(&model).unwrap()).unwrap();
    let files = trained["trained_on"].to_string();
    assert!(files.contains("labels.jsonl"), "{files}");
    assert!(trained["models"]["prior_failure"]["weights"]
        .as_array()
        .is_some_and(|w| !w.is_empty()));
}

#[test]
fn check_explain_shows_a_rule_as_compiled_with_its_classes_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("rules.toml"),
        "[[rule]]\nid = \"nr\"\nkind = \"prior_failure\"\ncategory = \"not_received\"\n\
         phrases = [\"{negation} ~1 (received | got) {owed}?\"]\n\
         examples = [\"i havent recvd it yet\"]\ncounter_examples = [\"I never got the email\"]\n",
    )
    .unwrap();
    let out = backstop()
        .args(["check", "--explain", "nr", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rule \"nr\" (prior_failure, not_received)"), "{text}");
    assert!(
        text.contains("[0] line 5: {negation} ~1 (received | got) {owed}?"),
        "{text}"
    );
    assert!(
        text.contains("compiled: (not | never | no | haven't"),
        "classes expanded: {text}"
    );
    assert!(
        text.contains("{negation} ((built-in) config/lexicon.toml:"),
        "the class and where: {text}"
    );
    assert!(
        text.contains("ok   \"i havent recvd it yet\": matches \"havent recvd it\""),
        "{text}"
    );
    assert!(text.contains("read as: i haven't received it yet"), "{text}");
    assert!(
        text.contains("FAIL \"I never got the email\": matches \"never got\""),
        "a counter-example that fires: {text}"
    );
    let out = backstop()
        .args(["check", "--explain", "nx", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rule \"nx\" (did you mean \"nr\"?)"));
}

/// The shipped model is reproducible: training on the files it names gives it back byte for byte.
#[test]
fn train_reproduces_the_shipped_model() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = fs::read_to_string(root.join("config/model.json")).unwrap();
    let v: Value = serde_json::from_str(&shipped).unwrap();
    let files: Vec<String> = v["trained_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap().to_string())
        .collect();
    assert!(
        files.iter().all(|f| !f.contains("airline") && !f.contains("blind")),
        "{files:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.json");
    let run = backstop()
        .current_dir(&root)
        .arg("train")
        .args(&files)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        fs::read_to_string(&out).unwrap() == shipped,
        "config/model.json is not what `backstop train {}` gives: retrain it",
        files.join(" ")
    );
}

#[test]
fn train_refuses_the_blind_set_and_gates_on_a_labelled_set() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.json");
    backstop()
        .current_dir(&root)
        .args(["train", "tests/real/ibm/blind.jsonl", "--out"])
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("blind set"));
    backstop()
        .current_dir(&root)
        .args(["train", "tests/real/airline/dev.jsonl", "--out"])
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("CC BY-NC-SA"));
    // A model trained on too little to learn anything replaces nothing that works better.
    let run = backstop()
        .current_dir(&root)
        .args(["train", "tests/written/agents.jsonl", "--out"])
        .arg(&out)
        .args(["--gate", "tests/fixtures/follow_up.jsonl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("detection F1 on the gate set"), "{stderr}");
    assert_eq!(
        run.status.success(),
        out.exists(),
        "written only when it passes the gate: {stderr}"
    );
}

#[test]
fn replay_explain_says_which_rule_fired() {
    let input = jsonl(&[
        line("c1", "ana", "agent", "Hi, how can I help?", "2026-11-23T10:00:00Z"),
        line(
            "c1",
            "cust",
            "customer",
            "I still haven't received my refund",
            "2026-11-23T10:01:00Z",
        ),
    ]);
    let out = backstop()
        .args(["replay", "--explain", "-"])
        .env("NO_COLOR", "1")
        .write_stdin(input)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("why: rule "), "{text}");
    assert!(text.contains("haven't received"), "{text}");
}
