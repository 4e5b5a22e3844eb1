//! The storage layer, black-box, against both backends: every shared case runs once on SQLite (a
//! fresh temporary folder per test) and once on PostgreSQL (a fresh database per test on the
//! server named by `BACKSTOP_TEST_POSTGRES`; skipped with a note when it is not set).

#[allow(dead_code)]
mod common;

use std::future::Future;
use std::time::Duration;

use sqlx::Row;

use backstop::engine::{Context, Step, UserId};
use backstop::store::writer::{Write, Writer};
use backstop::store::{
    Forgotten, NewNudge, NewPromise, PromiseState, Purged, Reschedule, RuleFigures, SentStep, ShardRange,
    StorageConfig, Store, StoreError, StoredChecklist,
};
use common::pg::TestDb;

/// A fixed "now": 2023-11-14T22:13:20Z, in Unix milliseconds.
const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// A realistic snowflake-sized guild id whose events arrive on `shard` of 2.
fn guild_on_shard(k: u64, shard: u64) -> u64 {
    let guild = (1u64 << 22) * (2 * k + shard) + 5;
    assert_eq!((guild >> 22) % 2, shard);
    guild
}

/// The guild most tests use (shard 0 of 2).
fn g() -> u64 {
    guild_on_shard(200_000_000_000, 0)
}

fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap()
}

fn promise_at(
    guild: u64,
    conversation: u64,
    agent: u64,
    customer: Option<u64>,
    message: u64,
    made_at: i64,
) -> NewPromise {
    NewPromise {
        guild,
        conversation,
        agent,
        customer,
        message,
        rule: "follow_up.call_back".into(),
        evidence: "I'll call you back".into(),
        excerpt: "I'll call you back tomorrow".into(),
        made_at,
        due_at: made_at + 2 * HOUR,
        due_words: Some("in two hours".into()),
        next: Some((made_at + HOUR, Step::Reminder)),
    }
}

fn nudge(
    key: &str,
    guild: u64,
    agent: Option<u64>,
    customer: Option<u64>,
    kind: &str,
    rule: &str,
    at: i64,
) -> NewNudge {
    NewNudge {
        key: key.into(),
        guild,
        conversation: 100,
        message: 1000,
        agent,
        customer,
        kind: kind.into(),
        category: Some("delay".into()),
        rule: rule.into(),
        evidence: "sorry for the wait".into(),
        excerpt: "so sorry for the wait, we'll write to jane@example.com".into(),
        at,
        delivered: true,
    }
}

fn context(agent: &str, customer: &str, at: i64) -> Context {
    let mut c = Context::new(ts(at));
    c.last_agent = Some(UserId::new(agent));
    c.last_customer = Some(UserId::new(customer));
    c
}

/// One backend for one test: its configuration, and a way to reach the database behind the
/// store's back.
#[derive(Clone)]
struct Db {
    config: StorageConfig,
    pg: Option<TestDb>,
}

impl Db {
    async fn open(&self) -> Store {
        match Store::open(&self.config).await {
            Ok(store) => store,
            Err(e) => panic!("opening {} failed: {e}", self.config.describe()),
        }
    }

    /// Runs `sql` on a connection of its own, not through the store.
    async fn raw(&self, sql: &str) {
        match &self.pg {
            Some(pg) => {
                let pool = common::pg::admin(&pg.url).await;
                sqlx::raw_sql(sql).execute(&pool).await.expect(sql);
                pool.close().await;
            }
            None => {
                let path = self.config.sqlite_path().unwrap();
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .expect("raw SQLite connection");
                sqlx::raw_sql(sql).execute(&pool).await.expect(sql);
                pool.close().await;
            }
        }
    }
}

impl Db {
    /// The query plan the database would use for `sql` (PostgreSQL told to avoid sequential
    /// scans, so a tiny table does not hide a missing index), as text.
    async fn plan(&self, sql: &str) -> String {
        match &self.pg {
            Some(pg) => {
                // One connection, so the setting holds for the EXPLAIN.
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&pg.url)
                    .await
                    .expect("PostgreSQL connection");
                sqlx::raw_sql("SET enable_seqscan = off").execute(&pool).await.unwrap();
                let rows = sqlx::query(&format!("EXPLAIN {sql}"))
                    .fetch_all(&pool)
                    .await
                    .expect(sql);
                pool.close().await;
                rows.iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            None => {
                let path = self.config.sqlite_path().unwrap();
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .expect("raw SQLite connection");
                let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&pool)
                    .await
                    .expect(sql);
                pool.close().await;
                rows.iter()
                    .map(|r| r.get::<String, _>("detail"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
    }

    /// PostgreSQL's next transaction id (each writing transaction takes one).
    async fn next_xid(&self) -> i64 {
        let pg = self.pg.as_ref().expect("PostgreSQL only");
        let pool = common::pg::admin(&pg.url).await;
        let xid: i64 = sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        xid
    }
}

/// Runs a test body on a fresh SQLite folder.
async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let db = Db {
        config: StorageConfig {
            data_dir: dir.path().to_path_buf(),
            url: None,
            ..Default::default()
        },
        pg: None,
    };
    body(db).await;
}

/// Runs a test body on a fresh PostgreSQL database, dropped afterwards even if the body panics.
async fn on_postgres<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(pg) = TestDb::create(test).await else {
        return;
    };
    let db = Db {
        config: StorageConfig {
            url: Some(pg.url.clone()),
            ..Default::default()
        },
        pg: Some(pg.clone()),
    };
    let outcome = tokio::spawn(body(db)).await;
    pg.drop_db().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("{test}: {e}"),
        }
    }
}

/// Generates `mod sqlite` and `mod postgres`, each running every shared body: `store` bodies take
/// an opened [`Store`], `db` bodies take the [`Db`] and open (and reopen) it themselves. Extra
/// backend-specific tests go in the `sqlite_only` and `postgres_only` blocks.
macro_rules! both_backends {
    (
        store: [$($s:ident),* $(,)?],
        db: [$($d:ident),* $(,)?],
        sqlite_only: { $($sqlite_item:item)* },
        postgres_only: { $($pg_item:item)* } $(,)?
    ) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $s() {
                    super::on_sqlite(|db| async move { super::$s(db.open().await).await }).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d() {
                    super::on_sqlite(super::$d).await;
                }
            )*
            $($sqlite_item)*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $s() {
                    super::on_postgres(concat!("postgres::", stringify!($s)), |db| async move {
                        super::$s(db.open().await).await
                    })
                    .await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d() {
                    super::on_postgres(concat!("postgres::", stringify!($d)), super::$d).await;
                }
            )*
            $($pg_item)*
        }
    };
}

both_backends! {
    store: [
        promise_lifecycle,
        a_sent_step_and_its_nudge_are_stored_together,
        reschedule_moves_open_promises_only,
        personal_data_is_masked_before_it_is_stored,
        pending_is_limited_to_the_shards_given,
        nudge_log_and_feedback,
        context_round_trip_and_replace,
        mutes_list_only_running_ones,
        forget_user_removes_one_user_only,
        purge_removes_old_logs_and_closed_promises,
        export_promises_as_json,
        checklists_round_trip_by_period_and_guild,
    ],
    db: [
        recoveries_find_a_conversations_nudges_by_index,
        reopening_keeps_data_and_migrations_are_idempotent,
        a_database_from_a_newer_backstop_is_refused,
    ],
    sqlite_only: {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_second_process_on_the_same_folder_is_refused() {
            super::second_store_on_the_same_folder_is_refused().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_corrupt_file_is_reported_and_left_alone() {
            super::corrupt_file_is_reported_and_left_alone().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_data_folder_that_cannot_be_created_is_named() {
            super::data_dir_that_cannot_be_created_is_named().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_writer_keeps_order_and_coalesces_contexts() {
            super::on_sqlite(|db| async move { super::writer_keeps_order_and_coalesces(db.open().await).await }).await;
        }
    },
    postgres_only: {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_writer_commits_routine_rows_in_batches() {
            super::on_postgres("postgres::the_writer_commits_routine_rows_in_batches", super::writer_commits_in_batches)
                .await;
        }

        /// Needs no server: runs whether or not `BACKSTOP_TEST_POSTGRES` is set.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_unreachable_server_is_reported() {
            super::unreachable_server_is_reported().await;
        }
    },
}

// ---- shared bodies ----------------------------------------------------------------------------
//
// KNOWN BUG (PostgreSQL only), found by this suite; the bodies marked "PG: fails" below fail on
// PostgreSQL until it is fixed in src/store (SQLite passes):
// `src/store/migrations/postgres/0001_initial.sql` declares `promises.reminders`,
// `nudges.delivered` and `nudges.feedback` as INTEGER (INT4), but `records::promise_from_row`
// (column 15, `reminders`) and `records::nudge_json` (columns 11 and 12) read them as `i64`,
// and sqlx-postgres only decodes INT8 into `i64`. So `Store::promise`, `open_promise_in`,
// `open_promises`, `export_promises` and `export_nudges` return
// `Query(ColumnDecode { index: "15" | "11", source: "mismatched types; Rust type `i64` (as SQL
// type `INT8`) is not compatible with SQL type `INT4`" })` on PostgreSQL. Declaring those three
// columns BIGINT in the PostgreSQL migration (still unreleased) makes the whole suite pass.

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn promise_lifecycle(store: Store) {
    let g = g();
    let a = promise_at(g, 100, 10, Some(20), 1000, T0);
    let id_a = store.insert_promise(&a).await.unwrap();
    assert_eq!(
        store.insert_promise(&a).await.unwrap(),
        id_a,
        "the same message recorded twice is one promise"
    );
    let mut b = promise_at(g, 101, 11, Some(21), 1001, T0);
    b.due_at = T0 + 4 * HOUR;
    b.next = Some((T0 + 3 * HOUR, Step::Reminder));
    let id_b = store.insert_promise(&b).await.unwrap();
    assert_ne!(id_a, id_b);

    assert_eq!(
        store.pending(None).await.unwrap(),
        vec![(T0 + HOUR, id_a), (T0 + 3 * HOUR, id_b)]
    );

    // The reminder goes out; a second scheduler holding the old time loses the race.
    let step = SentStep {
        id: id_a,
        expected_at: T0 + HOUR,
        state: PromiseState::Reminded,
        next: Some((T0 + 2 * HOUR, Step::Overdue)),
        now: T0 + HOUR,
        delivered: true,
        log: None,
    };
    let sent = store.step_sent(&step).await.unwrap();
    assert!(sent, "the step was due at the expected time");
    let again = store.step_sent(&step).await.unwrap();
    assert!(!again, "a stale expected_at must not move the promise on");

    let stored = store.promise(id_a).await.unwrap().expect("promise a");
    assert_eq!(stored.id, id_a);
    assert_eq!(stored.guild, g);
    assert_eq!(stored.conversation, 100);
    assert_eq!(stored.agent, 10);
    assert_eq!(stored.customer, Some(20));
    assert_eq!(stored.message, 1000);
    assert_eq!(stored.rule, "follow_up.call_back");
    assert_eq!(stored.made_at, T0);
    assert_eq!(stored.due_at, T0 + 2 * HOUR);
    assert_eq!(stored.due_words.as_deref(), Some("in two hours"));
    assert_eq!(stored.state, PromiseState::Reminded);
    assert_eq!(stored.reminders, 1);
    assert_eq!(stored.next_step, Some(Step::Overdue));
    assert_eq!(stored.next_at, Some(T0 + 2 * HOUR));
    assert_eq!(stored.updated_at, T0 + HOUR);
    assert_eq!(stored.closed_at, None);
    assert!(store.promise(id_b + 1000).await.unwrap().is_none());

    assert_eq!(store.open_promise_in(100).await.unwrap().map(|p| p.id), Some(id_a));
    let ids = |v: Vec<backstop::store::StoredPromise>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(store.open_promises(g, Some(10)).await.unwrap()), vec![id_a]);
    assert_eq!(ids(store.open_promises(g, Some(11)).await.unwrap()), vec![id_b]);
    assert_eq!(ids(store.open_promises(g, None).await.unwrap()), vec![id_a, id_b]);
    assert!(store.open_promises(g + 1, None).await.unwrap().is_empty());

    // Done.
    assert!(store
        .close_promise(g, 1000, PromiseState::Done, T0 + 90 * MINUTE)
        .await
        .unwrap());
    assert!(
        !store
            .close_promise(g, 1000, PromiseState::Done, T0 + 91 * MINUTE)
            .await
            .unwrap(),
        "closing a closed promise reports it was not open"
    );
    let closed = store.promise(id_a).await.unwrap().expect("closed promise a");
    assert_eq!(closed.state, PromiseState::Done);
    assert_eq!(closed.closed_at, Some(T0 + 90 * MINUTE));
    assert_eq!(closed.next_at, None);
    assert_eq!(closed.next_step, None);
    assert_eq!(store.pending(None).await.unwrap(), vec![(T0 + 3 * HOUR, id_b)]);
    assert!(store.open_promise_in(100).await.unwrap().is_none());
    assert_eq!(ids(store.open_promises(g, None).await.unwrap()), vec![id_b]);
    assert!(store.open_promises(g, Some(10)).await.unwrap().is_empty());

    // The same message seen again (a replayed event) does not reopen it.
    assert_eq!(store.insert_promise(&a).await.unwrap(), id_a);
    assert_eq!(store.promise(id_a).await.unwrap().unwrap().state, PromiseState::Done);
}

async fn a_sent_step_and_its_nudge_are_stored_together(store: Store) {
    let g = g();
    let id = store
        .insert_promise(&promise_at(g, 100, 10, Some(20), 1000, T0))
        .await
        .unwrap();
    // The heads-up could not be delivered: the promise moves on, the count does not.
    let mut failed = nudge(
        "1000:follow_up_reminder",
        g,
        Some(10),
        Some(20),
        "follow_up_reminder",
        "r",
        T0 + HOUR + 7,
    );
    failed.delivered = false;
    let step = SentStep {
        id,
        expected_at: T0 + HOUR,
        state: PromiseState::Reminded,
        next: Some((T0 + 2 * HOUR, Step::Overdue)),
        now: T0 + HOUR + 9,
        delivered: false,
        log: Some(failed),
    };
    assert!(store.step_sent(&step).await.unwrap());
    let p = store.promise(id).await.unwrap().unwrap();
    assert_eq!(
        (p.state, p.reminders),
        (PromiseState::Reminded, 0),
        "an undelivered step is not counted"
    );
    // The overdue notice reaches the agent: counted, and logged with the time it went out.
    let overdue = nudge(
        "1000:follow_up_overdue",
        g,
        Some(10),
        Some(20),
        "follow_up_overdue",
        "r",
        T0 + 2 * HOUR + 5,
    );
    let step = SentStep {
        id,
        expected_at: T0 + 2 * HOUR,
        state: PromiseState::Overdue,
        next: Some((T0 + 3 * HOUR, Step::Escalate)),
        now: T0 + 2 * HOUR + 6,
        delivered: true,
        log: Some(overdue),
    };
    assert!(store.step_sent(&step).await.unwrap());
    // A crash between send and record repeats the step once: the row and the count stay single.
    assert!(!store.step_sent(&step).await.unwrap(), "the row has moved on");
    let p = store.promise(id).await.unwrap().unwrap();
    assert_eq!((p.state, p.reminders), (PromiseState::Overdue, 1));
    let log = store.export_nudges(0).await.unwrap();
    let rows: Vec<(&str, &str, bool)> = log
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap(),
                n["at"].as_str().unwrap(),
                n["delivered"].as_bool().unwrap(),
            )
        })
        .collect();
    let at = |ms| backstop::store::from_ms(ms).to_string();
    assert_eq!(
        rows,
        vec![
            ("follow_up_reminder", at(T0 + HOUR + 7).as_str(), false),
            ("follow_up_overdue", at(T0 + 2 * HOUR + 5).as_str(), true)
        ]
    );
}

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn reschedule_moves_open_promises_only(store: Store) {
    let g = g();
    let id = store
        .insert_promise(&promise_at(g, 100, 10, None, 1000, T0))
        .await
        .unwrap();

    let moved = store
        .reschedule_promise(
            &Reschedule {
                guild: g,
                message: 1000,
                due_at: T0 + 5 * HOUR,
                due_words: Some(String::from("friday")),
                state: PromiseState::Snoozed,
                next: Some((T0 + 4 * HOUR, Step::Reminder)),
            },
            T0 + 30 * MINUTE,
        )
        .await
        .unwrap();
    assert_eq!(moved, Some(id));
    let p = store.promise(id).await.unwrap().unwrap();
    assert_eq!(p.due_at, T0 + 5 * HOUR);
    assert_eq!(p.due_words.as_deref(), Some("friday"));
    assert_eq!(p.state, PromiseState::Snoozed);
    assert_eq!((p.next_at, p.next_step), (Some(T0 + 4 * HOUR), Some(Step::Reminder)));
    assert_eq!(p.updated_at, T0 + 30 * MINUTE);
    assert_eq!(store.pending(None).await.unwrap(), vec![(T0 + 4 * HOUR, id)]);

    // No new words: the old ones stay.
    let moved = store
        .reschedule_promise(
            &Reschedule {
                guild: g,
                message: 1000,
                due_at: T0 + 6 * HOUR,
                due_words: None,
                state: PromiseState::Open,
                next: Some((T0 + 5 * HOUR, Step::Reminder)),
            },
            T0 + 40 * MINUTE,
        )
        .await
        .unwrap();
    assert_eq!(moved, Some(id));
    let p = store.promise(id).await.unwrap().unwrap();
    assert_eq!(p.due_at, T0 + 6 * HOUR);
    assert_eq!(p.due_words.as_deref(), Some("friday"));

    assert_eq!(
        store
            .reschedule_promise(
                &Reschedule {
                    guild: g,
                    message: 9999,
                    due_at: T0 + 6 * HOUR,
                    due_words: None,
                    state: PromiseState::Open,
                    next: None
                },
                T0
            )
            .await
            .unwrap(),
        None,
        "an unknown message has no promise to move"
    );

    assert!(store
        .close_promise(g, 1000, PromiseState::Superseded, T0 + HOUR)
        .await
        .unwrap());
    let moved = store
        .reschedule_promise(
            &Reschedule {
                guild: g,
                message: 1000,
                due_at: T0 + 9 * HOUR,
                due_words: Some(String::from("monday")),
                state: PromiseState::Snoozed,
                next: Some((T0 + 8 * HOUR, Step::Reminder)),
            },
            T0 + 2 * HOUR,
        )
        .await
        .unwrap();
    assert_eq!(moved, None, "a closed promise is not rescheduled");
    let p = store.promise(id).await.unwrap().unwrap();
    assert_eq!(p.state, PromiseState::Superseded);
    assert_eq!(p.due_at, T0 + 6 * HOUR);
    assert_eq!(p.due_words.as_deref(), Some("friday"));
    assert!(store.pending(None).await.unwrap().is_empty());
}

const PERSONAL: [&str; 3] = ["jane@example.com", "+44 20 7946 0958", "ORD-123456"];

fn assert_masked(what: &str, text: &str) {
    for secret in PERSONAL {
        assert!(!text.contains(secret), "{what} kept {secret:?}: {text}");
    }
    // The digits of the phone number must not survive in pieces either.
    assert!(!text.contains("7946"), "{what} kept part of the phone number: {text}");
    assert!(text.contains("[email]"), "{what} lost the email's place: {text}");
}

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn personal_data_is_masked_before_it_is_stored(store: Store) {
    let g = g();
    let mut p = promise_at(g, 100, 10, Some(20), 1000, T0);
    p.evidence = "I'll email jane@example.com about ORD-123456".into();
    p.excerpt = "I'll email jane@example.com or call +44 20 7946 0958 about ORD-123456 tomorrow".into();
    let id = store.insert_promise(&p).await.unwrap();
    let stored = store.promise(id).await.unwrap().unwrap();
    assert_masked("the stored evidence", &stored.evidence);
    assert_masked("the stored excerpt", &stored.excerpt);
    assert!(
        stored.excerpt.contains("tomorrow"),
        "ordinary words are kept: {}",
        stored.excerpt
    );
    let exported = serde_json::to_string(&store.export_promises(0).await.unwrap()).unwrap();
    assert_masked("the promise export", &exported);

    let mut n = nudge(
        "1000:follow_up_promised",
        g,
        Some(10),
        Some(20),
        "follow_up_promised",
        "r1",
        T0,
    );
    n.evidence = "reach me at jane@example.com, +44 20 7946 0958, order ORD-123456".into();
    n.excerpt = format!("I'll email you, {}", n.evidence);
    store.log_nudge(&n).await.unwrap();
    let nudges = store.export_nudges(0).await.unwrap();
    assert_eq!(nudges.len(), 1);
    assert_masked("the nudge evidence", nudges[0]["evidence"].as_str().unwrap());
    assert_masked("the nudge excerpt", nudges[0]["excerpt"].as_str().unwrap());
    assert!(nudges[0]["excerpt"].as_str().unwrap().starts_with("I'll email you"));
    assert_masked("the nudge export", &serde_json::to_string(&nudges).unwrap());
}

async fn pending_is_limited_to_the_shards_given(store: Store) {
    let g0 = guild_on_shard(200_000_000_000, 0);
    let g1 = guild_on_shard(200_000_000_000, 1);
    let id0 = store
        .insert_promise(&promise_at(g0, 100, 10, None, 1000, T0))
        .await
        .unwrap();
    let id1 = store
        .insert_promise(&promise_at(g1, 101, 10, None, 1001, T0 + MINUTE))
        .await
        .unwrap();

    let shard = |first, last| Some(ShardRange { first, last, total: 2 });
    assert_eq!(store.pending(shard(0, 0)).await.unwrap(), vec![(T0 + HOUR, id0)]);
    assert_eq!(
        store.pending(shard(1, 1)).await.unwrap(),
        vec![(T0 + MINUTE + HOUR, id1)]
    );
    let both = vec![(T0 + HOUR, id0), (T0 + MINUTE + HOUR, id1)];
    assert_eq!(store.pending(shard(0, 1)).await.unwrap(), both);
    assert_eq!(store.pending(None).await.unwrap(), both);
}

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn nudge_log_and_feedback(store: Store) {
    let g = g();
    let key = "1000:follow_up_promised";
    let first = nudge(key, g, Some(10), Some(20), "follow_up_promised", "r1", T0);
    store.log_nudge(&first).await.unwrap();
    let mut repeat = first.clone();
    repeat.evidence = "a redelivery".into();
    store.log_nudge(&repeat).await.unwrap();
    assert_eq!(store.export_nudges(0).await.unwrap().len(), 1, "one row per key");

    store
        .log_nudge(&nudge(
            "1001:explain_before_apology",
            g,
            Some(10),
            Some(20),
            "explain_before_apology",
            "r2",
            T0 + MINUTE,
        ))
        .await
        .unwrap();
    let mut muted = nudge(
        "1002:explain_before_apology",
        g,
        Some(10),
        Some(20),
        "explain_before_apology",
        "r2",
        T0 + 2 * MINUTE,
    );
    muted.delivered = false;
    store.log_nudge(&muted).await.unwrap();
    store
        .log_nudge(&nudge(
            "1003:follow_up_promised",
            g + 1,
            Some(10),
            None,
            "follow_up_promised",
            "r1",
            T0,
        ))
        .await
        .unwrap();
    let all = store.export_nudges(0).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all[0]["evidence"], "sorry for the wait",
        "the first delivery's row is kept"
    );

    assert!(store.feedback(key, false, 99, T0 + 5 * MINUTE).await.unwrap());
    assert!(!store.feedback("no-such-key", true, 99, T0).await.unwrap());

    assert_eq!(
        store.nudge_counts(g, 0).await.unwrap(),
        vec![
            ("explain_before_apology".to_string(), 1, 0, 0),
            ("follow_up_promised".to_string(), 1, 0, 1),
        ],
        "counts are per guild and delivered nudges only"
    );
    assert!(store.nudge_counts(g, T0 + 3 * MINUTE).await.unwrap().is_empty());
    let figures = store.rule_figures(0, None).await.unwrap();
    assert_eq!(
        figures,
        vec![
            RuleFigures {
                rule: "r1".into(),
                kind: "follow_up_promised".into(),
                fires: 2,
                helpful: 0,
                unhelpful: 1
            },
            RuleFigures {
                rule: "r2".into(),
                kind: "explain_before_apology".into(),
                fires: 2,
                helpful: 0,
                unhelpful: 0
            },
        ]
    );
    let exported = store.export_nudges(0).await.unwrap();
    let guild = g.to_string();
    let row = exported
        .iter()
        .find(|n| n["message"] == "1000" && n["guild"] == guild.as_str())
        .unwrap();
    assert_eq!(row["feedback"], "not_helpful");
    assert_eq!(row["delivered"], true);
    assert!(row["feedback_at"].is_string());

    // The latest press counts.
    assert!(store.feedback(key, true, 99, T0 + 6 * MINUTE).await.unwrap());
    let counts = store.nudge_counts(g, 0).await.unwrap();
    assert_eq!(counts[1], ("follow_up_promised".to_string(), 1, 1, 0));
}

async fn context_round_trip_and_replace(store: Store) {
    let g = g();
    let mut first = context("123", "456", T0);
    first.problem_open = true;
    first.reason_requested = true;
    first.last_fired[0] = Some(ts(T0 - MINUTE));
    store.save_context(g, 100, &first, T0).await.unwrap();
    assert_eq!(store.context(100).await.unwrap(), Some(first.clone()));
    assert_eq!(store.context(101).await.unwrap(), None);

    let mut second = context("789", "456", T0 + MINUTE);
    second.apologized = true;
    second.last_fired[2] = Some(ts(T0 + MINUTE));
    store.save_context(g, 100, &second, T0 + MINUTE).await.unwrap();
    let back = store.context(100).await.unwrap().unwrap();
    assert_eq!(back, second);
    assert_ne!(back, first);
}

async fn mutes_list_only_running_ones(store: Store) {
    let g = g();
    store.set_mute(g, 10, Some(T0 + HOUR), T0).await.unwrap();
    store.set_mute(g, 11, Some(T0 - 1), T0 - HOUR).await.unwrap();
    store.set_mute(g, 12, Some(T0 + HOUR), T0).await.unwrap();
    store.set_mute(g, 12, Some(T0 + 3 * HOUR), T0).await.unwrap();
    let mut running = store.mutes(T0).await.unwrap();
    running.sort();
    assert_eq!(running, vec![(g, 10, T0 + HOUR), (g, 12, T0 + 3 * HOUR)]);

    store.set_mute(g, 10, None, T0).await.unwrap();
    assert_eq!(store.mutes(T0).await.unwrap(), vec![(g, 12, T0 + 3 * HOUR)]);
    assert!(
        store.mutes(T0 + 3 * HOUR).await.unwrap().is_empty(),
        "a mute ends at its time"
    );
}

/// A checklist row opened and last changed at `at`, with apologized and thanked done.
fn checklist(guild: u64, conversation: u64, agent: Option<u64>, at: i64) -> StoredChecklist {
    StoredChecklist {
        conversation,
        guild,
        agent,
        opened_at: at,
        updated_at: at,
        replies: 1,
        done: [true, false, false, false, false, true],
    }
}

async fn checklists_round_trip_by_period_and_guild(store: Store) {
    let g = g();
    let other = g + 1;
    let first = checklist(g, 100, Some(10), T0);
    store.save_checklist(&first).await.unwrap();
    store
        .save_checklist(&checklist(other, 101, Some(11), T0))
        .await
        .unwrap();
    store.save_checklist(&checklist(g, 102, None, T0 + DAY)).await.unwrap();
    assert_eq!(
        store.checklists(Some(g), T0, T0 + 1).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(store.checklists(Some(g), 0, i64::MAX).await.unwrap().len(), 2);
    assert_eq!(store.checklists(None, 0, i64::MAX).await.unwrap().len(), 3);
    // A later change replaces the row: one row per conversation.
    let mut later = first.clone();
    later.replies = 3;
    later.updated_at = T0 + HOUR;
    later.done = [true; 6];
    store.save_checklist(&later).await.unwrap();
    assert_eq!(store.checklists(Some(g), T0, T0 + 1).await.unwrap(), vec![later]);
}

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn forget_user_removes_one_user_only(store: Store) {
    let g = g();
    // User 42: a customer in one promise, the agent of a nudge, a conversation's last customer,
    // an agent with a mute.
    let p42 = store
        .insert_promise(&promise_at(g, 100, 10, Some(42), 1000, T0))
        .await
        .unwrap();
    store
        .log_nudge(&nudge("2000:apology", g, Some(42), Some(20), "apology", "r1", T0))
        .await
        .unwrap();
    store.save_context(g, 100, &context("10", "42", T0), T0).await.unwrap();
    store.set_mute(g, 42, Some(T0 + DAY), T0).await.unwrap();
    // Checklists: one where 42 is the customer (through conversation 100), one where 42 answered.
    store.save_checklist(&checklist(g, 100, Some(10), T0)).await.unwrap();
    store.save_checklist(&checklist(g, 300, Some(42), T0)).await.unwrap();
    // User 7: the same kinds of data.
    let p7 = store
        .insert_promise(&promise_at(g, 200, 7, Some(8), 3000, T0))
        .await
        .unwrap();
    store
        .log_nudge(&nudge("4000:apology", g, Some(7), Some(8), "apology", "r1", T0))
        .await
        .unwrap();
    assert!(store.feedback("4000:apology", true, 42, T0).await.unwrap());
    store.save_context(g, 200, &context("7", "8", T0), T0).await.unwrap();
    store.set_mute(g, 7, Some(T0 + DAY), T0).await.unwrap();
    store.save_checklist(&checklist(g, 200, Some(7), T0)).await.unwrap();

    let gone = store.forget_user(42).await.unwrap();
    assert_eq!(
        gone,
        Forgotten {
            promises: 1,
            nudges: 1,
            conversations: 1,
            settings: 1,
            checklists: 2,
        }
    );
    assert_eq!(gone.total(), 6);
    let left = store.checklists(None, 0, i64::MAX).await.unwrap();
    assert_eq!(left.iter().map(|c| c.conversation).collect::<Vec<_>>(), [200]);

    assert!(store.promise(p42).await.unwrap().is_none());
    assert!(store.context(100).await.unwrap().is_none());
    assert_eq!(store.promise(p7).await.unwrap().map(|p| p.agent), Some(7));
    let nudges = store.export_nudges(0).await.unwrap();
    assert_eq!(nudges.len(), 1);
    assert_eq!(nudges[0]["agent"], "7");
    assert_eq!(nudges[0]["feedback"], "helpful", "user 7's nudge keeps its feedback");
    assert_eq!(store.context(200).await.unwrap(), Some(context("7", "8", T0)));
    assert_eq!(store.mutes(T0).await.unwrap(), vec![(g, 7, T0 + DAY)]);

    let again = store.forget_user(42).await.unwrap();
    assert_eq!(again.total(), 0, "nothing is left to forget: {again:?}");
}

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn purge_removes_old_logs_and_closed_promises(store: Store) {
    let g = g();
    let before = T0;
    let old = T0 - 10 * DAY;
    store
        .log_nudge(&nudge("1:old", g, Some(10), None, "apology", "r1", old))
        .await
        .unwrap();
    store
        .log_nudge(&nudge("2:new", g, Some(10), None, "apology", "r1", T0 + 1))
        .await
        .unwrap();
    let closed_old = store
        .insert_promise(&promise_at(g, 100, 10, None, 1000, old))
        .await
        .unwrap();
    assert!(store
        .close_promise(g, 1000, PromiseState::Done, old + DAY)
        .await
        .unwrap());
    let open_old = store
        .insert_promise(&promise_at(g, 101, 10, None, 1001, old))
        .await
        .unwrap();
    let closed_new = store
        .insert_promise(&promise_at(g, 102, 10, None, 1002, old))
        .await
        .unwrap();
    assert!(store.close_promise(g, 1002, PromiseState::Done, T0 + 1).await.unwrap());
    store
        .save_context(g, 100, &context("10", "20", old), old)
        .await
        .unwrap();
    store.save_context(g, 101, &context("10", "21", T0), T0).await.unwrap();
    store.save_checklist(&checklist(g, 100, Some(10), old)).await.unwrap();
    store.save_checklist(&checklist(g, 101, Some(10), T0)).await.unwrap();

    assert_eq!(
        store.purge(before).await.unwrap(),
        Purged {
            nudges: 1,
            promises: 1,
            conversations: 1,
            checklists: 1,
        }
    );
    assert_eq!(store.checklists(Some(g), 0, i64::MAX).await.unwrap().len(), 1);
    assert!(store.promise(closed_old).await.unwrap().is_none());
    assert_eq!(
        store.promise(open_old).await.unwrap().map(|p| p.state),
        Some(PromiseState::Open),
        "an open promise is kept however old"
    );
    assert!(store.promise(closed_new).await.unwrap().is_some());
    let nudges = store.export_nudges(0).await.unwrap();
    assert_eq!(nudges.len(), 1);
    assert_eq!(nudges[0]["message"], "1000");
    assert!(store.context(100).await.unwrap().is_none());
    assert!(store.context(101).await.unwrap().is_some());

    assert_eq!(store.purge(before).await.unwrap(), Purged::default());
}

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn export_promises_as_json(store: Store) {
    let g = g();
    let id = store
        .insert_promise(&promise_at(g, 100, 10, Some(20), 1000, T0))
        .await
        .unwrap();
    let rows = store.export_promises(0).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["type"], "promise");
    assert_eq!(row["id"], id);
    assert_eq!(row["state"], "open");
    assert_eq!(row["guild"], g.to_string());
    assert_eq!(row["agent"], "10");
    assert_eq!(row["customer"], "20");
    assert_eq!(row["message"], "1000");
    assert_eq!(row["rule"], "follow_up.call_back");
    assert_eq!(row["due_words"], "in two hours");
    assert_eq!(row["next_step"], "reminder");
    assert_eq!(row["due_at"], ts(T0 + 2 * HOUR).to_string());
    assert_eq!(row["reminders"], 0);
    assert!(row["closed_at"].is_null());

    assert!(store
        .close_promise(g, 1000, PromiseState::Done, T0 + HOUR)
        .await
        .unwrap());
    let rows = store.export_promises(T0 + HOUR).await.unwrap();
    assert_eq!(rows.len(), 1, "a promise updated since is exported");
    assert_eq!(rows[0]["state"], "done");
    assert_eq!(rows[0]["closed_at"], ts(T0 + HOUR).to_string());
    assert!(rows[0]["next_step"].is_null());
    assert!(store.export_promises(T0 + HOUR + 1).await.unwrap().is_empty());
}

// PG: fails until the KNOWN BUG above is fixed (INT4 column read as i64).
async fn reopening_keeps_data_and_migrations_are_idempotent(db: Db) {
    let g = g();
    let store = db.open().await;
    let id = store
        .insert_promise(&promise_at(g, 100, 10, Some(20), 1000, T0))
        .await
        .unwrap();
    store
        .log_nudge(&nudge("1000:apology", g, Some(10), Some(20), "apology", "r1", T0))
        .await
        .unwrap();
    store.save_context(g, 100, &context("10", "20", T0), T0).await.unwrap();
    store.set_mute(g, 10, Some(T0 + HOUR), T0).await.unwrap();
    store.close().await;
    drop(store);

    for round in 0..2 {
        let store = db.open().await;
        let p = store.promise(id).await.unwrap();
        assert_eq!(p.map(|p| p.message), Some(1000), "round {round}: the promise persists");
        assert_eq!(store.export_nudges(0).await.unwrap().len(), 1, "round {round}");
        assert_eq!(
            store.context(100).await.unwrap(),
            Some(context("10", "20", T0)),
            "round {round}"
        );
        assert_eq!(
            store.mutes(T0).await.unwrap(),
            vec![(g, 10, T0 + HOUR)],
            "round {round}"
        );
        // Still writable after the reopen.
        let next = store
            .insert_promise(&promise_at(g, 200 + round, 10, None, 2000 + round, T0))
            .await
            .unwrap();
        assert_ne!(next, id);
        store.close().await;
    }
}

async fn a_database_from_a_newer_backstop_is_refused(db: Db) {
    let store = db.open().await;
    store.close().await;
    drop(store);
    if db.pg.is_some() {
        db.raw(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99, 'future', TRUE, '\\x00'::bytea, 0)",
        )
        .await;
    } else {
        db.raw(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99, 'future', TRUE, X'00', 0)",
        )
        .await;
    }
    match Store::open(&db.config).await {
        Err(e @ StoreError::TooNew { found: 99, known, .. }) => {
            assert!(known < 99, "known {known}");
            let shown = e.to_string();
            assert!(shown.contains("newer Backstop"), "{shown}");
            assert!(shown.contains("99"), "{shown}");
        }
        Err(e) => panic!("expected TooNew, got {e:?}"),
        Ok(_) => panic!("a database from a newer Backstop was opened"),
    }
}

// ---- SQLite only ------------------------------------------------------------------------------

async fn second_store_on_the_same_folder_is_refused() {
    on_sqlite(|db| async move {
        let first = db.open().await;
        match Store::open(&db.config).await {
            Err(e @ StoreError::InUse { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains("PostgreSQL"), "{shown}");
                assert!(shown.contains("backstop.db"), "{shown}");
            }
            Err(e) => panic!("expected InUse, got {e:?}"),
            Ok(_) => panic!("two stores opened the same SQLite folder"),
        }
        // The first one is unharmed, and the lock goes with it.
        first
            .insert_promise(&promise_at(g(), 100, 10, None, 1000, T0))
            .await
            .unwrap();
        first.close().await;
        drop(first);
        let again = db.open().await;
        assert_eq!(again.pending(None).await.unwrap().len(), 1);
    })
    .await;
}

async fn corrupt_file_is_reported_and_left_alone() {
    on_sqlite(|db| async move {
        let path = db.config.sqlite_path().unwrap();
        let line = "this is not a database, just some text someone saved here\n";
        let garbage: Vec<u8> = line.bytes().cycle().take(4096).collect();
        std::fs::write(&path, &garbage).unwrap();
        match Store::open(&db.config).await {
            Err(e @ StoreError::Corrupt { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains(&path.display().to_string()), "{shown}");
            }
            Err(e) => panic!("expected Corrupt, got {e:?}"),
            Ok(_) => panic!("a garbage file opened as a database"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "the file was changed");
    })
    .await;
}

async fn data_dir_that_cannot_be_created_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("file.txt"), "a file, not a folder").unwrap();
    let data_dir = tmp.path().join("file.txt").join("data");
    let config = StorageConfig {
        data_dir: data_dir.clone(),
        url: None,
        ..Default::default()
    };
    match Store::open(&config).await {
        Err(e @ StoreError::DataDir { .. }) => {
            if let StoreError::DataDir { path, .. } = &e {
                assert_eq!(path, &data_dir);
            }
            let shown = e.to_string();
            assert!(shown.contains(&data_dir.display().to_string()), "{shown}");
        }
        Err(e) => panic!("expected DataDir, got {e:?}"),
        Ok(_) => panic!("opened a data folder under a file"),
    }
}

async fn writer_keeps_order_and_coalesces(store: Store) {
    let g = g();
    let writer = Writer::spawn(store.clone());
    let write_for = |i: i64| {
        let conversation = 500 + (i % 10) as u64;
        let mut c = context(&(1000 + i).to_string(), "20", T0 + i);
        c.problem_open = i % 2 == 0;
        Write::Context {
            guild: g,
            conversation,
            context: Box::new(c),
            now: T0 + i,
        }
    };
    for i in 0..1000 {
        writer.send(write_for(i));
    }
    let id = writer
        .promise(promise_at(g, 600, 10, Some(20), 7000, T0))
        .await
        .expect("the writer stores the promise and answers with its id");
    assert_eq!(store.promise(id).await.unwrap().map(|p| p.message), Some(7000));
    assert!(writer.flush(Duration::from_secs(10)).await, "the queue drains");
    for c in 0..10i64 {
        let last = 990 + c;
        let mut expected = context(&(1000 + last).to_string(), "20", T0 + last);
        expected.problem_open = last % 2 == 0;
        assert_eq!(
            store.context(500 + c as u64).await.unwrap(),
            Some(expected),
            "conversation {} holds its last context",
            500 + c
        );
    }
    use std::sync::atomic::Ordering;
    assert_eq!(writer.stats.dropped.load(Ordering::Relaxed), 0);
}

/// Marking nudges recovered happens on every agent apology; a scan of the whole nudge log each
/// time costs more the longer the bot runs (seen while looking into the soak bench's write queue).
async fn recoveries_find_a_conversations_nudges_by_index(db: Db) {
    let store = db.open().await;
    store.close().await;
    let plan = db
        .plan(
            "UPDATE nudges SET recovered_at = 1 WHERE conversation = 5 AND kind = 'prior_failure' \
             AND recovered_at IS NULL AND at <= 1",
        )
        .await;
    assert!(
        plan.contains("nudges_conversation"),
        "the update scans the nudge log:\n{plan}"
    );
}

// ---- PostgreSQL only --------------------------------------------------------------------------

/// Each PostgreSQL commit waits for the disk; one a row could not keep up with a busy server
/// (the soak bench's write queue grew by about a write a message at 2,000 messages a second).
async fn writer_commits_in_batches(db: Db) {
    const ROWS: i64 = 2_000;
    let store = db.open().await;
    let writer = Writer::spawn(store.clone());
    let before = db.next_xid().await;
    for i in 0..ROWS {
        let key = format!("batch-{i}");
        writer.send(Write::Nudge(nudge(
            &key,
            g(),
            Some(10),
            Some(20),
            "prior_failure",
            "r",
            T0 + i,
        )));
        if i % 3 == 0 {
            writer.send(Write::Recovered {
                conversation: 100,
                at: T0 + i,
            });
        }
    }
    assert!(writer.flush(Duration::from_secs(60)).await, "the queue drains");
    let used = db.next_xid().await - before;
    // Other tests share the server and take ids too; a commit a row would take over 2,600.
    assert!(
        used < ROWS / 2,
        "{used} transactions for {ROWS} nudge rows and their recoveries"
    );
    assert_eq!(store.export_nudges(0).await.unwrap().len() as i64, ROWS);
    store.close().await;
}

async fn unreachable_server_is_reported() {
    let config = StorageConfig {
        url: Some("postgres://postgres@127.0.0.1:1/test".into()),
        ..Default::default()
    };
    let opened = tokio::time::timeout(Duration::from_secs(30), Store::open(&config))
        .await
        .expect("an unreachable server is reported within the acquire timeout, not waited on forever");
    match opened {
        Err(e @ StoreError::Unreachable { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains("cannot reach PostgreSQL"), "{shown}");
            assert!(shown.contains("127.0.0.1:1"), "{shown}");
        }
        Err(e) => panic!("expected Unreachable, got {e:?}"),
        Ok(_) => panic!("opened a store on a closed port"),
    }
}
