//! Durable state: follow-up promises, the nudge log, agents' settings and conversation context.
//!
//! Two real backends behind one type: SQLite, embedded and the default (one file under the data
//! folder, WAL mode, created on first start), and PostgreSQL for fleets of processes sharing one
//! database. Schema migrations are versioned SQL files in `src/store/migrations/`, applied at
//! start-up; a database migrated by a newer Backstop is refused rather than guessed at.
//!
//! Layout: this file (opening, errors, the queries), [`redact`] (personal data masked before it is
//! stored), [`writer`] (the batched, retrying write queue the bot uses), [`records`] (rows as Rust
//! types), `migrate` (embedded migrations).
//!
//! Queries are written once in SQL both databases speak (`$1` placeholders, `ON CONFLICT`,
//! `RETURNING`); `on_pool!` runs the same text on whichever backend is open.

mod migrate;
pub mod records;
pub mod redact;
pub mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

pub use records::{
    Forgotten, NewNudge, NewPromise, PromiseState, Purged, Reschedule, RuleFigures, SentStep, ShardRange,
    StoredChecklist, StoredPromise,
};
pub use redact::{MaskDef, Redactor};

use crate::engine::Context;

/// The promise states that are still open ([`PromiseState::is_open`]), as an SQL list, for the
/// queries that must never move or show a closed promise. A literal so queries can be `concat!`ed
/// at compile time; a test holds it to the engine's states.
macro_rules! open_states {
    () => {
        "('open', 'reminded', 'overdue', 'escalated', 'snoozed')"
    };
}

/// Where state is kept, from `[storage]` in `backstop.toml` and the environment.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// A `postgres://` URL; `None` means SQLite in `data_dir`.
    pub url: Option<String>,
    /// The SQLite database's folder (default `data`).
    pub data_dir: PathBuf,
    /// Nudge logs and closed promises older than this many days are purged; `None` keeps them.
    pub retention_days: Option<u32>,
    pub redactor: Redactor,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            url: None,
            data_dir: PathBuf::from("data"),
            retention_days: Some(90),
            redactor: Redactor::default(),
        }
    }
}

impl StorageConfig {
    /// The SQLite file this configuration uses, if it uses SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url.is_none().then(|| self.data_dir.join("backstop.db"))
    }

    /// A description for logs and errors, with any password hidden.
    pub fn describe(&self) -> String {
        match &self.url {
            Some(url) => hide_password(url),
            None => self.data_dir.join("backstop.db").display().to_string(),
        }
    }
}

/// Why the store could not open or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data folder {path}: {source}. Create it or set storage.data_dir to a folder Backstop may write to")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is in use by another Backstop process. SQLite serves one process at a time: stop the other one, or run several processes against PostgreSQL (storage.url = \"postgres://...\")")]
    InUse { path: PathBuf },
    #[error("{path} is locked by another program ({detail}). Close whatever holds it and start again")]
    Locked { path: PathBuf, detail: String },
    #[error(
        "{path} is read-only ({detail}). Make the file and its folder writable, or point storage.data_dir elsewhere"
    )]
    ReadOnly { path: PathBuf, detail: String },
    #[error("{path} is not a usable Backstop database ({detail}). Move it aside to start afresh, or restore it from a backup")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot reach PostgreSQL at {url} ({detail}). Check that the server is running and that storage.url or BACKSTOP_DATABASE_URL is right")]
    Unreachable { url: String, detail: String },
    #[error("the database at {place} was set up by a newer Backstop (schema version {found}; this build knows up to {known}). Upgrade Backstop, or point it at another database")]
    TooNew { place: String, found: i64, known: i64 },
    #[error("applying database migrations to {place} failed: {detail}")]
    Migration { place: String, detail: String },
    #[error("{0} is not a storage URL Backstop understands: use postgres://user@host/database, or leave storage.url out for SQLite")]
    BadUrl(String),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// The open pool.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs one expression against whichever pool is open; `$p` is `&SqlitePool` or `&PgPool`.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// Logging a nudge is idempotent: a step repeated after a crash finds its row already there.
const INSERT_NUDGE: &str = "INSERT INTO nudges (nudge_key, guild_id, conversation, message_id, agent_id, customer_id, \
     kind, category, rule, evidence, at, delivered, excerpt) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (nudge_key) DO NOTHING";

/// Binds a [`NewNudge`] (with its redacted evidence and excerpt) to [`INSERT_NUDGE`].
macro_rules! bind_nudge {
    ($query:expr, $n:expr, $evidence:expr, $excerpt:expr) => {
        $query
            .bind(&$n.key)
            .bind($n.guild as i64)
            .bind($n.conversation as i64)
            .bind($n.message as i64)
            .bind($n.agent.map(|a| a as i64))
            .bind($n.customer.map(|c| c as i64))
            .bind(&$n.kind)
            .bind($n.category.as_deref())
            .bind(&$n.rule)
            .bind($evidence)
            .bind($n.at)
            .bind(i64::from($n.delivered))
            .bind($excerpt)
    };
}

/// The agent apologized: marks the conversation's unanswered prior-failure nudges recovered.
const RECOVERED: &str = "UPDATE nudges SET recovered_at = $2 WHERE conversation = $1 AND kind = 'prior_failure' \
     AND recovered_at IS NULL AND at <= $2";

/// A conversation's context, replacing the previous one.
const SAVE_CONTEXT: &str =
    "INSERT INTO conversations (conversation, guild_id, last_agent, last_customer, context, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (conversation) DO UPDATE SET last_agent = $3, \
     last_customer = $4, context = $5, updated_at = $6";

/// Binds (guild, conversation, context, its JSON, now) to [`SAVE_CONTEXT`].
macro_rules! bind_context {
    ($query:expr, $guild:expr, $conversation:expr, $context:expr, $json:expr, $now:expr) => {{
        let id = |u: &Option<crate::engine::UserId>| u.as_ref().and_then(|u| u.as_str().parse::<i64>().ok());
        $query
            .bind($conversation as i64)
            .bind($guild as i64)
            .bind(id(&$context.last_agent))
            .bind(id(&$context.last_customer))
            .bind($json)
            .bind($now)
    }};
}

/// A conversation's checklist, replacing the previous one.
const SAVE_CHECKLIST: &str =
    "INSERT INTO checklists (conversation, guild_id, agent_id, opened_at, updated_at, replies, \
     step_apologized, step_specific, step_before_explaining, step_owned_first, step_next_step, step_thanked) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (conversation) DO UPDATE SET \
     guild_id = $2, agent_id = $3, opened_at = $4, updated_at = $5, replies = $6, step_apologized = $7, \
     step_specific = $8, step_before_explaining = $9, step_owned_first = $10, step_next_step = $11, \
     step_thanked = $12";

/// Binds a [`StoredChecklist`] to [`SAVE_CHECKLIST`].
macro_rules! bind_checklist {
    ($query:expr, $c:expr) => {{
        let step = |i: usize| i64::from($c.done[i]);
        $query
            .bind($c.conversation as i64)
            .bind($c.guild as i64)
            .bind($c.agent.map(|a| a as i64))
            .bind($c.opened_at)
            .bind($c.updated_at)
            .bind($c.replies)
            .bind(step(0))
            .bind(step(1))
            .bind(step(2))
            .bind(step(3))
            .bind(step(4))
            .bind(step(5))
    }};
}

/// One routine row for [`Store::write_rows`].
#[derive(Debug, Clone, Copy)]
pub enum RoutineRow<'a> {
    Nudge(&'a NewNudge),
    Recovered {
        conversation: u64,
        at: i64,
    },
    Context {
        guild: u64,
        conversation: u64,
        context: &'a Context,
        now: i64,
    },
    Checklist(&'a StoredChecklist),
}

/// The database, shared by every task of the bot. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    place: Arc<str>,
    redactor: Arc<Redactor>,
    /// The SQLite file's process lock, held until [`Store::close`] (or the last clone goes).
    lock: Arc<std::sync::Mutex<Option<File>>>,
}

fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A stored time (Unix milliseconds) as a timestamp.
pub fn from_ms(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl Store {
    /// Opens (creating on first start) the configured database and brings its schema up to date.
    pub async fn open(config: &StorageConfig) -> Result<Store, StoreError> {
        let redactor = Arc::new(config.redactor.clone());
        match &config.url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Store::open_postgres(url, redactor).await
            }
            Some(url) => Err(StoreError::BadUrl(hide_password(url))),
            None => Store::open_sqlite(&config.data_dir, redactor).await,
        }
    }

    async fn open_postgres(url: &str, redactor: Arc<Redactor>) -> Result<Store, StoreError> {
        let shown = hide_password(url);
        let options: PgConnectOptions = url.parse().map_err(|_| StoreError::BadUrl(shown.clone()))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unreachable {
                url: shown.clone(),
                detail: e.to_string(),
            })?;
        let store = Store {
            pool: Pool::Postgres(pool),
            place: shown.into(),
            redactor,
            lock: Arc::default(),
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    async fn open_sqlite(dir: &Path, redactor: Arc<Redactor>) -> Result<Store, StoreError> {
        let path = dir.join("backstop.db");
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        // One process per SQLite file: a second `backstop run` would schedule every reminder again.
        let lock_path = dir.join("backstop.db.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::InUse { path }),
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::DataDir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().readonly() {
                // Root ignores permission bits; everyone else would fail on the first write.
                let writable = std::fs::OpenOptions::new().append(true).open(&path).is_ok();
                if !writable {
                    return Err(StoreError::ReadOnly {
                        path,
                        detail: "the file's permissions forbid writing".into(),
                    });
                }
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(2));
        let classify = |e: sqlx::Error| sqlite_open_error(&path, e);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(classify)?;
        let store = Store {
            pool: Pool::Sqlite(pool),
            place: path.display().to_string().into(),
            redactor,
            lock: Arc::new(std::sync::Mutex::new(Some(lock))),
        };
        // Prove the file is a database we can write before anything else touches it.
        sqlx::query("PRAGMA quick_check")
            .fetch_all(match &store.pool {
                Pool::Sqlite(p) => p,
                Pool::Postgres(_) => unreachable!("opened as SQLite"),
            })
            .await
            .map_err(classify)?;
        migrate::run(&store).await.map_err(|e| match e {
            StoreError::Migration { detail, .. } if detail.contains("readonly") || detail.contains("read-only") => {
                StoreError::ReadOnly {
                    path: path.clone(),
                    detail,
                }
            }
            other => other,
        })?;
        // SQLite opens a file it may not write read-only without a word; find out now, not at
        // the first promise.
        store
            .execute_raw(&format!(
                "INSERT INTO meta (key, value) VALUES ('last_opened', '{}') \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                jiff::Timestamp::now()
            ))
            .await
            .map_err(|e| match e {
                StoreError::Query(q) => sqlite_open_error(&path, q),
                other => other,
            })?;
        Ok(store)
    }

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Where the data lives, for messages (passwords hidden).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Closes every connection and lets go of the SQLite file, so another process (or a
    /// restart in this one) may open it.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await);
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Runs SQL as written (maintenance and benchmark set-up; not for user input).
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::raw_sql(sql).execute(pool).await?.rows_affected()))
    }

    // ---- promises -----------------------------------------------------------------------------

    /// Records a new promise (or, if the same message was recorded before, returns that one's id).
    /// The evidence and excerpt are redacted here.
    pub async fn insert_promise(&self, p: &NewPromise) -> Result<i64, StoreError> {
        const SQL: &str = "INSERT INTO promises (guild_id, conversation, agent_id, customer_id, message_id, rule, \
             evidence, excerpt, made_at, due_at, due_words, state, next_step, next_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12, $13, $9) \
             ON CONFLICT (guild_id, message_id) DO UPDATE SET updated_at = promises.updated_at \
             RETURNING id";
        let evidence = self.redactor.redact(&p.evidence);
        let excerpt = self.redactor.redact(&p.excerpt);
        let id: i64 = on_pool!(self, pool => sqlx::query(SQL)
            .bind(p.guild as i64)
            .bind(p.conversation as i64)
            .bind(p.agent as i64)
            .bind(p.customer.map(|c| c as i64))
            .bind(p.message as i64)
            .bind(&p.rule)
            .bind(&evidence)
            .bind(&excerpt)
            .bind(p.made_at)
            .bind(p.due_at)
            .bind(p.due_words.as_deref())
            .bind(p.next.map(|(_, s)| s.as_str()))
            .bind(p.next.map(|(at, _)| at))
            .fetch_one(pool)
            .await?
            .try_get("id")?);
        Ok(id)
    }

    /// Moves an open promise's due time (restated, or snoozed) and what it waits for next.
    /// Returns the promise's id if one was open.
    pub async fn reschedule_promise(&self, r: &Reschedule, now: i64) -> Result<Option<i64>, StoreError> {
        const SQL: &str = concat!(
            "UPDATE promises SET due_at = $3, due_words = COALESCE($4, due_words), state = $5, \
             next_step = $6, next_at = $7, updated_at = $8 \
             WHERE guild_id = $1 AND message_id = $2 AND state IN ",
            open_states!(),
            " RETURNING id"
        );
        let row = on_pool!(self, pool => sqlx::query(SQL)
            .bind(r.guild as i64)
            .bind(r.message as i64)
            .bind(r.due_at)
            .bind(r.due_words.as_deref())
            .bind(r.state.as_str())
            .bind(r.next.map(|(_, s)| s.as_str()))
            .bind(r.next.map(|(at, _)| at))
            .bind(now)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<i64, _>("id"))
            .transpose()?);
        Ok(row)
    }

    /// Closes a promise (done, kept by the agent's return, superseded). Returns whether it was open.
    pub async fn close_promise(
        &self,
        guild: u64,
        message: u64,
        state: PromiseState,
        now: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = concat!(
            "UPDATE promises SET state = $3, next_step = NULL, next_at = NULL, closed_at = $4, \
             updated_at = $4 WHERE guild_id = $1 AND message_id = $2 AND state IN ",
            open_states!()
        );
        let n = on_pool!(self, pool => sqlx::query(SQL)
            .bind(guild as i64)
            .bind(message as i64)
            .bind(state.as_str())
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// Records that a scheduled step was attempted, if the promise still waits for it at
    /// `expected_at` (a Done pressed meanwhile wins), and logs its nudge in the same transaction,
    /// so the log and the promise agree after any crash. Returns whether the row moved on.
    ///
    /// `reminders` counts deliveries: a step that could not be delivered moves the promise on
    /// without adding to it.
    pub async fn step_sent(&self, step: &SentStep) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE promises SET state = $3, next_step = $4, next_at = $5, reminders = reminders + $7, \
             updated_at = $6, escalated_at = CASE WHEN $3 = 'escalated' THEN $6 ELSE escalated_at END \
             WHERE id = $1 AND next_at = $2";
        let log = step
            .log
            .as_ref()
            .map(|n| (n, self.redactor.redact(&n.evidence), self.redactor.redact(&n.excerpt)));
        let n = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(SQL)
                .bind(step.id)
                .bind(step.expected_at)
                .bind(step.state.as_str())
                .bind(step.next.map(|(_, s)| s.as_str()))
                .bind(step.next.map(|(at, _)| at))
                .bind(step.now)
                .bind(i64::from(step.delivered))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let (1.., Some((n, evidence, excerpt))) = (n, &log) {
                bind_nudge!(sqlx::query(INSERT_NUDGE), n, evidence, excerpt).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n
        });
        Ok(n > 0)
    }

    /// Every promise with a step still to come, as (when, id), soonest first, limited to the
    /// guilds of `shards` when given. This is what a scheduler loads at start-up.
    pub async fn pending(&self, shards: Option<ShardRange>) -> Result<Vec<(i64, i64)>, StoreError> {
        let (first, last, total) = shards.map_or((0, 0, 1), |s| (s.first as i64, s.last as i64, s.total as i64));
        // Read in pages along the (next_at, id) index: a million rows collected at once would
        // cost hundreds of MiB, and a row-at-a-time stream is several times slower.
        const SQL: &str = "SELECT next_at, id FROM promises WHERE next_at IS NOT NULL \
             AND ((guild_id >> 22) % $3) BETWEEN $1 AND $2 AND (next_at, id) > ($4, $5) \
             ORDER BY next_at, id LIMIT $6";
        const PAGE: i64 = 20_000;
        let mut out: Vec<(i64, i64)> = Vec::new();
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let page = on_pool!(self, pool => {
                let rows = sqlx::query(SQL)
                    .bind(first)
                    .bind(last)
                    .bind(total)
                    .bind(after.0)
                    .bind(after.1)
                    .bind(PAGE)
                    .fetch_all(pool)
                    .await?;
                let mut page = Vec::with_capacity(rows.len());
                for r in &rows {
                    page.push((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?));
                }
                page
            });
            let full = page.len() as i64 == PAGE;
            if let Some(last) = page.last() {
                after = *last;
            }
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Conversations with something stored (a context or an open promise), limited to the
    /// guilds of `shards`: the ones worth looking up when a message arrives after a restart.
    pub async fn stored_conversations(&self, shards: Option<ShardRange>) -> Result<Vec<u64>, StoreError> {
        let (first, last, total) = shards.map_or((0, 0, 1), |s| (s.first as i64, s.last as i64, s.total as i64));
        const SQL: &str = "SELECT conversation FROM conversations WHERE ((guild_id >> 22) % $3) BETWEEN $1 AND $2 \
             UNION SELECT conversation FROM promises WHERE next_at IS NOT NULL AND ((guild_id >> 22) % $3) BETWEEN $1 AND $2";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(first).bind(last).bind(total).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(r.try_get::<i64, _>(0)? as u64);
            }
            out
        }))
    }

    pub async fn promise(&self, id: i64) -> Result<Option<StoredPromise>, StoreError> {
        let sql = format!("SELECT {} FROM promises WHERE id = $1", records::PROMISE_COLUMNS);
        Ok(
            on_pool!(self, pool => match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                Some(r) => Some(records::promise_from_row(&r)?),
                None => None,
            }),
        )
    }

    /// The conversation's open promise, if any.
    pub async fn open_promise_in(&self, conversation: u64) -> Result<Option<StoredPromise>, StoreError> {
        let sql = format!(
            "SELECT {} FROM promises WHERE conversation = $1 AND state IN {} ORDER BY made_at DESC LIMIT 1",
            records::PROMISE_COLUMNS,
            open_states!()
        );
        Ok(
            on_pool!(self, pool => match sqlx::query(&sql).bind(conversation as i64).fetch_optional(pool).await? {
                Some(r) => Some(records::promise_from_row(&r)?),
                None => None,
            }),
        )
    }

    /// Open promises in a guild, soonest due first; one agent's when `agent` is given.
    pub async fn open_promises(&self, guild: u64, agent: Option<u64>) -> Result<Vec<StoredPromise>, StoreError> {
        let sql = format!(
            "SELECT {} FROM promises WHERE guild_id = $1 AND ($2 = 0 OR agent_id = $2) \
             AND state IN {} ORDER BY due_at, id",
            records::PROMISE_COLUMNS,
            open_states!()
        );
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(guild as i64).bind(agent.unwrap_or(0) as i64).fetch_all(pool).await?;
            rows.iter().map(records::promise_from_row).collect::<Result<Vec<_>, _>>()?
        }))
    }

    // ---- the nudge log ------------------------------------------------------------------------

    /// Logs a nudge once per key (a repeated delivery of the same nudge is not a second row).
    pub async fn log_nudge(&self, n: &NewNudge) -> Result<(), StoreError> {
        let evidence = self.redactor.redact(&n.evidence);
        let excerpt = self.redactor.redact(&n.excerpt);
        on_pool!(self, pool => bind_nudge!(sqlx::query(INSERT_NUDGE), n, &evidence, &excerpt)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records that the agent apologized after the conversation's unanswered prior-failure cues.
    pub async fn recovered(&self, conversation: u64, at: i64) -> Result<u64, StoreError> {
        Ok(on_pool!(self, pool => sqlx::query(RECOVERED)
            .bind(conversation as i64)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// A guild's nudge log between `from` and `to` (Unix ms), for digests.
    pub async fn digest_nudges(&self, guild: u64, from: i64, to: i64) -> Result<Vec<records::DigestNudge>, StoreError> {
        const SQL: &str = "SELECT kind, category, agent_id, at, recovered_at FROM nudges \
             WHERE guild_id = $1 AND at >= $2 AND at < $3 ORDER BY at";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(guild as i64).bind(from).bind(to).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(records::DigestNudge {
                    kind: r.try_get(0)?,
                    category: r.try_get(1)?,
                    agent: r.try_get::<Option<i64>, _>(2)?.map(|a| a as u64),
                    at: r.try_get(3)?,
                    recovered_at: r.try_get(4)?,
                });
            }
            out
        }))
    }

    /// A guild's promises made or due between `from` and `to` (Unix ms), for digests.
    pub async fn digest_promises(&self, guild: u64, from: i64, to: i64) -> Result<Vec<StoredPromise>, StoreError> {
        let sql = format!(
            "SELECT {} FROM promises WHERE guild_id = $1 AND ((made_at >= $2 AND made_at < $3) OR (due_at >= $2 AND due_at < $3)) \
             ORDER BY made_at",
            records::PROMISE_COLUMNS
        );
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(guild as i64).bind(from).bind(to).fetch_all(pool).await?;
            rows.iter().map(records::promise_from_row).collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// Nudges agents rated since `since` that kept an excerpt, oldest first.
    pub async fn rated_nudges(&self, since: i64) -> Result<Vec<records::RatedNudge>, StoreError> {
        const SQL: &str = "SELECT id, kind, category, excerpt, at, feedback FROM nudges \
             WHERE feedback IS NOT NULL AND at >= $1 AND excerpt <> '' ORDER BY at, id";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(since).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in &rows {
                out.push(records::RatedNudge {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    category: r.try_get(2)?,
                    excerpt: r.try_get(3)?,
                    at: r.try_get(4)?,
                    helpful: r.try_get::<i64, _>(5)? > 0,
                });
            }
            out
        }))
    }

    /// A value from the `meta` table (digest bookkeeping and the like).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT value FROM meta WHERE key = $1";
        Ok(on_pool!(self, pool => sqlx::query(SQL)
            .bind(key)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?))
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2";
        on_pool!(self, pool => sqlx::query(SQL).bind(key).bind(value).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Records a 👍 (`helpful`) or 👎 on a logged nudge. The latest press counts. Returns whether
    /// the nudge was found.
    pub async fn feedback(&self, key: &str, helpful: bool, by: u64, at: i64) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE nudges SET feedback = $2, feedback_by = $3, feedback_at = $4 WHERE nudge_key = $1";
        let n = on_pool!(self, pool => sqlx::query(SQL)
            .bind(key)
            .bind(if helpful { 1i64 } else { -1 })
            .bind(by as i64)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// Nudges delivered in a guild since `since`, by kind, with feedback counts.
    pub async fn nudge_counts(&self, guild: u64, since: i64) -> Result<Vec<(String, i64, i64, i64)>, StoreError> {
        const SQL: &str = "SELECT kind, COUNT(*), COUNT(*) FILTER (WHERE feedback = 1), \
             COUNT(*) FILTER (WHERE feedback = -1) FROM nudges WHERE guild_id = $1 AND at >= $2 AND delivered = 1 \
             GROUP BY kind ORDER BY kind";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(guild as i64).bind(since).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in &rows {
                out.push((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?, r.try_get::<i64, _>(2)?, r.try_get::<i64, _>(3)?));
            }
            out
        }))
    }

    // ---- agents and conversations -------------------------------------------------------------

    /// Mutes an agent's coaching nudges until `until` (`None` unmutes).
    pub async fn set_mute(&self, guild: u64, agent: u64, until: Option<i64>, now: i64) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO agents (guild_id, agent_id, muted_until, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (guild_id, agent_id) DO UPDATE SET muted_until = $3, updated_at = $4";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(guild as i64)
            .bind(agent as i64)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// An agent's delivery preference ("dm" or "thread"; `None` follows the guild's).
    pub async fn set_delivery(
        &self,
        guild: u64,
        agent: u64,
        delivery: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO agents (guild_id, agent_id, delivery, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (guild_id, agent_id) DO UPDATE SET delivery = $3, updated_at = $4";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(guild as i64)
            .bind(agent as i64)
            .bind(delivery)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Agents' delivery preferences: (guild, agent, "dm" or "thread").
    pub async fn deliveries(&self) -> Result<Vec<(u64, u64, String)>, StoreError> {
        const SQL: &str = "SELECT guild_id, agent_id, delivery FROM agents WHERE delivery IS NOT NULL";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in &rows {
                out.push((r.try_get::<i64, _>(0)? as u64, r.try_get::<i64, _>(1)? as u64, r.try_get::<String, _>(2)?));
            }
            out
        }))
    }

    /// Mutes still running at `now`: (guild, agent, until).
    pub async fn mutes(&self, now: i64) -> Result<Vec<(u64, u64, i64)>, StoreError> {
        const SQL: &str = "SELECT guild_id, agent_id, muted_until FROM agents WHERE muted_until > $1";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(now).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in &rows {
                out.push((r.try_get::<i64, _>(0)? as u64, r.try_get::<i64, _>(1)? as u64, r.try_get::<i64, _>(2)?));
            }
            out
        }))
    }

    /// Stores a conversation's context (replacing the previous one).
    pub async fn save_context(
        &self,
        guild: u64,
        conversation: u64,
        context: &Context,
        now: i64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(context).unwrap_or_default();
        on_pool!(self, pool => bind_context!(sqlx::query(SAVE_CONTEXT), guild, conversation, context, &json, now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn context(&self, conversation: u64) -> Result<Option<Context>, StoreError> {
        const SQL: &str = "SELECT context FROM conversations WHERE conversation = $1";
        let text: Option<String> = on_pool!(self, pool => sqlx::query(SQL)
            .bind(conversation as i64)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?);
        // A context this build cannot read is dropped: the conversation starts afresh.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    // ---- recovery checklists --------------------------------------------------------------------

    /// Stores a conversation's checklist, replacing the previous one.
    pub async fn save_checklist(&self, c: &StoredChecklist) -> Result<(), StoreError> {
        on_pool!(self, pool => bind_checklist!(sqlx::query(SAVE_CHECKLIST), c)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Writes a batch of the bot's routine rows (nudge log, recoveries, contexts, checklists) in
    /// one transaction: one commit for the batch instead of one a row. On PostgreSQL each commit
    /// waits for the WAL to reach disk, and one commit a row could not keep up with a busy server
    /// (found by the soak bench). All or nothing: a failed batch leaves no row behind.
    pub async fn write_rows(&self, rows: &[RoutineRow<'_>]) -> Result<(), StoreError> {
        let redacted: Vec<Option<(String, String)>> = rows
            .iter()
            .map(|r| match r {
                RoutineRow::Nudge(n) => Some((self.redactor.redact(&n.evidence), self.redactor.redact(&n.excerpt))),
                _ => None,
            })
            .collect();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (row, masked) in rows.iter().zip(&redacted) {
                match (row, masked) {
                    (RoutineRow::Nudge(n), Some((evidence, excerpt))) => {
                        bind_nudge!(sqlx::query(INSERT_NUDGE), n, evidence, excerpt).execute(&mut *tx).await?;
                    }
                    (RoutineRow::Nudge(_), None) => {}
                    (RoutineRow::Recovered { conversation, at }, _) => {
                        sqlx::query(RECOVERED)
                            .bind(*conversation as i64)
                            .bind(*at)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (RoutineRow::Context { guild, conversation, context, now }, _) => {
                        let json = serde_json::to_string(context).unwrap_or_default();
                        bind_context!(sqlx::query(SAVE_CONTEXT), *guild, *conversation, context, &json, *now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (RoutineRow::Checklist(c), _) => {
                        bind_checklist!(sqlx::query(SAVE_CHECKLIST), c).execute(&mut *tx).await?;
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Checklists opened between `from` and `to` (Unix ms), oldest first: one guild's, or every
    /// guild's with `None`.
    pub async fn checklists(&self, guild: Option<u64>, from: i64, to: i64) -> Result<Vec<StoredChecklist>, StoreError> {
        const SQL: &str = "SELECT conversation, guild_id, agent_id, opened_at, updated_at, replies, step_apologized, \
             step_specific, step_before_explaining, step_owned_first, step_next_step, step_thanked FROM checklists \
             WHERE ($1 IS NULL OR guild_id = $1) AND opened_at >= $2 AND opened_at < $3 ORDER BY opened_at, conversation";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL)
                .bind(guild.map(|g| g as i64))
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut done = [false; 6];
                for (i, d) in done.iter_mut().enumerate() {
                    *d = r.try_get::<i64, _>(6 + i)? != 0;
                }
                out.push(StoredChecklist {
                    conversation: r.try_get::<i64, _>(0)? as u64,
                    guild: r.try_get::<i64, _>(1)? as u64,
                    agent: r.try_get::<Option<i64>, _>(2)?.map(|a| a as u64),
                    opened_at: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                    replies: r.try_get(5)?,
                    done,
                });
            }
            out
        }))
    }

    // ---- retention, forgetting, export --------------------------------------------------------

    /// Deletes nudge logs, closed promises and idle conversations older than `before`.
    pub async fn purge(&self, before: i64) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        on_pool!(self, pool => {
            purged.nudges = sqlx::query("DELETE FROM nudges WHERE at < $1").bind(before).execute(pool).await?.rows_affected();
            purged.promises = sqlx::query("DELETE FROM promises WHERE closed_at IS NOT NULL AND closed_at < $1")
                .bind(before).execute(pool).await?.rows_affected();
            purged.conversations = sqlx::query("DELETE FROM conversations WHERE updated_at < $1")
                .bind(before).execute(pool).await?.rows_affected();
            purged.checklists = sqlx::query("DELETE FROM checklists WHERE updated_at < $1")
                .bind(before).execute(pool).await?.rows_affected();
        });
        Ok(purged)
    }

    /// Deletes everything stored about one Discord user, customer or agent, in one transaction.
    pub async fn forget_user(&self, user: u64) -> Result<Forgotten, StoreError> {
        let id = user as i64;
        let mut gone = Forgotten::default();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            gone.promises = sqlx::query("DELETE FROM promises WHERE agent_id = $1 OR customer_id = $1")
                .bind(id).execute(&mut *tx).await?.rows_affected();
            gone.nudges = sqlx::query("DELETE FROM nudges WHERE agent_id = $1 OR customer_id = $1")
                .bind(id).execute(&mut *tx).await?.rows_affected();
            sqlx::query("UPDATE nudges SET feedback_by = NULL WHERE feedback_by = $1")
                .bind(id).execute(&mut *tx).await?;
            // A checklist names the agent; the customer is known through the conversation row.
            gone.checklists = sqlx::query(
                "DELETE FROM checklists WHERE agent_id = $1 OR conversation IN \
                 (SELECT conversation FROM conversations WHERE last_customer = $1)",
            )
            .bind(id).execute(&mut *tx).await?.rows_affected();
            gone.conversations = sqlx::query("DELETE FROM conversations WHERE last_agent = $1 OR last_customer = $1")
                .bind(id).execute(&mut *tx).await?.rows_affected();
            gone.settings = sqlx::query("DELETE FROM agents WHERE agent_id = $1")
                .bind(id).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
        });
        Ok(gone)
    }

    /// The nudge log since `since`, oldest first, as JSON objects.
    pub async fn export_nudges(&self, since: i64) -> Result<Vec<serde_json::Value>, StoreError> {
        const SQL: &str =
            "SELECT id, guild_id, conversation, message_id, agent_id, customer_id, kind, category, rule, \
             evidence, at, delivered, feedback, feedback_at, excerpt FROM nudges WHERE at >= $1 ORDER BY at, id";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(since).fetch_all(pool).await?;
            rows.iter().map(records::nudge_json).collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// Promises made or updated since `since`, oldest first, as JSON objects.
    pub async fn export_promises(&self, since: i64) -> Result<Vec<serde_json::Value>, StoreError> {
        let sql = format!(
            "SELECT {} FROM promises WHERE updated_at >= $1 OR made_at >= $1 ORDER BY made_at, id",
            records::PROMISE_COLUMNS
        );
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(since).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in &rows {
                out.push(records::promise_from_row(r)?.to_json());
            }
            out
        }))
    }

    /// The evidence of the latest 👎 nudges since `since`, newest first: (rule, evidence).
    pub async fn unhelpful_evidence(
        &self,
        since: i64,
        guild: Option<u64>,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        const SQL: &str = "SELECT rule, evidence FROM nudges WHERE feedback = -1 AND at >= $1 \
             AND ($3 = 0 OR guild_id = $3) ORDER BY feedback_at DESC, id DESC LIMIT $2";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(since).bind(limit).bind(guild.unwrap_or(0) as i64).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in &rows {
                out.push((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?));
            }
            out
        }))
    }

    /// Per-rule figures from the nudge log since `since`: fires, feedback, helpful rate.
    pub async fn rule_figures(&self, since: i64, guild: Option<u64>) -> Result<Vec<RuleFigures>, StoreError> {
        const SQL: &str = "SELECT rule, kind, COUNT(*), COUNT(*) FILTER (WHERE feedback = 1), \
             COUNT(*) FILTER (WHERE feedback = -1) FROM nudges WHERE at >= $1 AND ($2 = 0 OR guild_id = $2) \
             GROUP BY rule, kind ORDER BY rule, kind";
        Ok(on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(since).bind(guild.unwrap_or(0) as i64).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in &rows {
                out.push(RuleFigures {
                    rule: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    fires: r.try_get(2)?,
                    helpful: r.try_get(3)?,
                    unhelpful: r.try_get(4)?,
                });
            }
            out
        }))
    }
}

fn sqlite_open_error(path: &Path, e: sqlx::Error) -> StoreError {
    let detail = e.to_string();
    let path = path.to_path_buf();
    let lower = detail.to_lowercase();
    if lower.contains("not a database") || lower.contains("malformed") || lower.contains("corrupt") {
        StoreError::Corrupt { path, detail }
    } else if lower.contains("locked") || lower.contains("busy") {
        StoreError::Locked { path, detail }
    } else if lower.contains("readonly") || lower.contains("read-only") || lower.contains("unable to open") {
        StoreError::ReadOnly { path, detail }
    } else {
        StoreError::Query(e)
    }
}

#[cfg(test)]
mod tests {
    use super::{hide_password, PromiseState};

    #[test]
    fn the_open_states_in_queries_are_the_engines() {
        let open: Vec<String> = PromiseState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(open_states!(), format!("({})", open.join(", ")));
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            hide_password("postgres://bot:s3cret@db.internal:5432/backstop"),
            "postgres://bot:***@db.internal:5432/backstop"
        );
        assert_eq!(
            hide_password("postgres://root@127.0.0.1/test"),
            "postgres://root@127.0.0.1/test"
        );
    }
}
