//! Start-up of the durable reminder scheduler: 1,000,000 pending promises read from the database
//! into the time-ordered index. Goal: under 2 seconds and under 300 MiB.
//!
//! `cargo bench --bench scheduler` measures SQLite; with `BACKSTOP_TEST_POSTGRES` set it measures
//! PostgreSQL too (a scratch database, dropped afterwards). Memory is the process's peak resident
//! set while loading (VmHWM, reset just before), minus what it held before.

#[allow(dead_code)] // the stream and engine helpers are for the other benches
mod common;

use std::time::Instant;

use backstop::discord::reminders::Reminders;
use backstop::store::{StorageConfig, Store};

const N: i64 = 1_000_000;

/// Resident and peak-resident memory of this process, in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Fills the promises table with `N` open promises over 50 guilds, due across a month.
const SQLITE_FILL: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
     INSERT INTO promises (guild_id, conversation, agent_id, customer_id, message_id, rule, evidence, excerpt, \
     made_at, due_at, due_words, state, next_step, next_at, updated_at) \
     SELECT (1000 + i % 50) << 22, 5000000 + i, 9000 + i % 300, 7000000 + i, 100000000 + i, 'follow_up.will_contact', \
     'will call you back', 'I will call you back tomorrow with an update', 1764000000000, \
     1764000000000 + (i * 2592) , 'tomorrow', 'open', 'reminder', 1764000000000 + (i * 2592) - 900000, 1764000000000 FROM n";

const POSTGRES_FILL: &str =
    "INSERT INTO promises (guild_id, conversation, agent_id, customer_id, message_id, rule, evidence, \
     excerpt, made_at, due_at, due_words, state, next_step, next_at, updated_at) \
     SELECT (1000 + i % 50) << 22, 5000000 + i, 9000 + i % 300, 7000000 + i, 100000000 + i, 'follow_up.will_contact', \
     'will call you back', 'I will call you back tomorrow with an update', 1764000000000, \
     1764000000000 + (i * 2592), 'tomorrow', 'open', 'reminder', 1764000000000 + (i * 2592) - 900000, 1764000000000 \
     FROM generate_series(1::bigint, 1000000::bigint) AS i";

async fn measure(label: &str, store: &Store) {
    let start = Instant::now();
    let loaded = Reminders::load(store, None).await.expect("pending promises load");
    let took = start.elapsed();
    assert_eq!(loaded.len() as i64, N);
    let (_, peak) = memory();
    println!(
        "{label}: {N} pending promises loaded and scheduled in {:.2} s; peak resident set while loading {} MiB",
        took.as_secs_f64(),
        peak / 1024
    );
    drop(loaded);
}

/// Resets the peak-resident counter (Linux: write 5 to clear_refs), so the peak is the load's.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("scratch folder");
        let config = StorageConfig {
            data_dir: dir.path().to_path_buf(),
            ..StorageConfig::default()
        };
        let store = Store::open(&config).await.expect("SQLite opens");
        let fill = Instant::now();
        store.execute_raw(SQLITE_FILL).await.expect("fill");
        eprintln!("(filled SQLite in {:.1} s)", fill.elapsed().as_secs_f64());
        store.close().await;
        drop(store);
        // Reopen, as the bot does at start-up, with a cold pool.
        let store = Store::open(&config).await.expect("SQLite reopens");
        reset_peak();
        measure("SQLite", &store).await;
        store.close().await;

        if let Ok(admin) = std::env::var("BACKSTOP_TEST_POSTGRES") {
            let name = format!("backstop_bench_{}", std::process::id());
            let (admin_pool, url) = common::scratch_postgres(&admin, &name).await;
            let config = StorageConfig {
                url: Some(url),
                ..StorageConfig::default()
            };
            let store = Store::open(&config).await.expect("PostgreSQL opens");
            store.execute_raw(POSTGRES_FILL).await.expect("fill");
            store.execute_raw("ANALYZE promises").await.expect("analyze");
            reset_peak();
            measure("PostgreSQL", &store).await;
            store.close().await;
            common::drop_postgres(&admin_pool, &name).await;
        } else {
            println!("PostgreSQL: skipped (set BACKSTOP_TEST_POSTGRES to measure it)");
        }
    });
}
