//! Shared by the benchmarks: the message stream they measure.
//!
//! The shared e-commerce complaint corpus beside the project when it is there (71,686 messages),
//! otherwise a generated stream of the same shape, so `cargo bench` runs on any clone.

use std::path::PathBuf;

use backstop::config::Sources;
use backstop::engine::Engine;
use backstop::transcript::{parse_all, Record};

pub fn corpus_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/ecommerce-complaints.jsonl")
}

/// The benchmark stream and a name saying where it came from.
pub fn stream() -> (Vec<Record>, String) {
    let path = corpus_path();
    if let Ok(text) = std::fs::read_to_string(&path) {
        let records = parse_all(&text)
            .expect("corpus parses")
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        return (records, "shared corpus".into());
    }
    (generated(60_000), "generated stream".into())
}

/// A stream shaped like a busy support day: the example day's messages, over and over, in new
/// conversations, with a sprinkling of non-ASCII text.
pub fn generated(n: usize) -> Vec<Record> {
    let day = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/support-day.jsonl"))
        .expect("example day");
    let base: Vec<Record> = parse_all(&day)
        .expect("example parses")
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let start = base[0].ts;
    (0..n)
        .map(|i| {
            let round = i / base.len();
            let mut r = base[i % base.len()].clone();
            r.conversation = format!("{}-{round}", r.conversation);
            r.ts = start
                .checked_add(jiff::SignedDuration::from_secs(i as i64 * 7))
                .expect("in range");
            if i % 50 == 0 {
                r.text.push_str(" — merci 🙏 ₹500");
            }
            r
        })
        .collect()
}

pub fn engine() -> Engine {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Sources {
        config: Some(root.join("config")),
        prompts: Some(root.join("prompts")),
    }
    .engine()
    .expect("shipped config loads")
}

/// Copies the shipped config folder (lexicon, rules, engine settings, model) into `to`.
#[allow(dead_code)]
pub fn copy_config(to: &std::path::Path) {
    copy_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"), to);
}

#[allow(dead_code)]
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("config copy folder");
    for entry in std::fs::read_dir(from).expect("config folder") {
        let path = entry.expect("config entry").path();
        let name = path.file_name().expect("file name");
        if path.is_dir() {
            copy_dir(&path, &to.join(name));
        } else if name != "backstop.toml" {
            std::fs::copy(&path, to.join(name)).expect("copy config");
        }
    }
}

/// A field of `/proc/<pid>/status` in MiB (`pid` "self" for this process), e.g. `VmRSS:` for the
/// resident set or `VmHWM:` for its peak; NaN where there is no /proc.
#[allow(dead_code)]
pub fn proc_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A scratch database on the PostgreSQL server `admin` (a postgres:// URL, as in
/// `BACKSTOP_TEST_POSTGRES`): created empty as `name`; returns the admin pool (to drop it with
/// [`drop_postgres`]) and the new database's URL.
#[allow(dead_code)]
pub async fn scratch_postgres(admin: &str, name: &str) -> (sqlx::PgPool, String) {
    let admin_pool = sqlx::PgPool::connect(admin).await.expect("PostgreSQL reachable");
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&admin_pool)
        .await
        .expect("drop a leftover scratch database");
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&admin_pool)
        .await
        .expect("create the scratch database");
    let url = format!("{}/{name}", admin.rsplit_once('/').map_or(admin, |(base, _)| base));
    (admin_pool, url)
}

/// Drops a database made by [`scratch_postgres`].
#[allow(dead_code)]
pub async fn drop_postgres(admin_pool: &sqlx::PgPool, name: &str) {
    let _ = sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(admin_pool)
        .await;
}
