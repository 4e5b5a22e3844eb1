//! The bot's write queue: every write goes through one task, in order, retried until the database
//! takes it.
//!
//! Why a queue: the bot must keep coaching while the database is away (a PostgreSQL restart, a
//! busy SQLite file). Nudges go out from memory; their log rows, conversation contexts and mutes
//! wait here and are written when the database is back. Nothing accepted is dropped: a write
//! that fails for a passing reason (connection lost, server restarting, file busy) is retried
//! with backoff, forever, in order. A write the database rejects for good (a constraint it can
//! never meet) is logged and skipped so it cannot wedge the queue.
//!
//! Routine rows (the nudge log, contexts, checklists) are committed a batch at a time, in one
//! transaction, so the queue keeps up with a busy server even where each commit waits for disk.
//!
//! Writes that someone waits for (a promise must be stored before the agent is told it was
//! noted) carry a reply channel that answers once the row is committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{NewNudge, NewPromise, PromiseState, Reschedule, RoutineRow, Store, StoreError, StoredChecklist};
use crate::engine::Context;

/// One write.
#[derive(Debug)]
pub enum Write {
    Promise {
        promise: NewPromise,
        stored: Option<oneshot::Sender<i64>>,
    },
    Reschedule {
        change: Reschedule,
        now: i64,
        stored: Option<oneshot::Sender<Option<i64>>>,
    },
    Close {
        guild: u64,
        message: u64,
        state: PromiseState,
        now: i64,
    },
    Nudge(NewNudge),
    /// The agent apologized in this conversation at `at` (Unix ms).
    Recovered {
        conversation: u64,
        at: i64,
    },
    Feedback {
        key: String,
        helpful: bool,
        by: u64,
        at: i64,
    },
    Mute {
        guild: u64,
        agent: u64,
        until: Option<i64>,
        now: i64,
    },
    Delivery {
        guild: u64,
        agent: u64,
        delivery: Option<&'static str>,
        now: i64,
    },
    Context {
        guild: u64,
        conversation: u64,
        context: Box<Context>,
        now: i64,
    },
    /// A conversation's recovery checklist after a change.
    Checklist(Box<StoredChecklist>),
    /// Answers once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Figures about the queue, for logs and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub queued: AtomicUsize,
    pub written: AtomicU64,
    pub retries: AtomicU64,
    pub dropped: AtomicU64,
}

/// The sending side of the queue. Cheap to clone.
///
/// Promise writes (new, moved, closed) have a lane of their own, written by its own task: an
/// agent's "noted" waits on them, and they must not queue behind a burst of context and log
/// writes. Each lane keeps its own order, and no write in one lane depends on the other.
#[derive(Debug, Clone)]
pub struct Writer {
    promises: mpsc::UnboundedSender<Write>,
    rest: mpsc::UnboundedSender<Write>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writing task on the current runtime.
    pub fn spawn(store: Store) -> Writer {
        let (promises, promises_rx) = mpsc::unbounded_channel();
        let (rest, rest_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        // Two tasks: a burst of context writes never holds up a promise.
        tokio::spawn(run(store.clone(), promises_rx, stats.clone()));
        tokio::spawn(run(store, rest_rx, stats.clone()));
        Writer { promises, rest, stats }
    }

    pub fn send(&self, write: Write) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let lane = match write {
            Write::Promise { .. } | Write::Reschedule { .. } | Write::Close { .. } => &self.promises,
            _ => &self.rest,
        };
        if lane.send(write).is_err() {
            tracing::error!("the write queue has stopped; a write was lost");
        }
    }

    /// Stores a promise and returns its id once committed (waits out a database outage).
    pub async fn promise(&self, promise: NewPromise) -> Option<i64> {
        let (tx, rx) = oneshot::channel();
        self.send(Write::Promise {
            promise,
            stored: Some(tx),
        });
        rx.await.ok()
    }

    /// Waits until everything queued so far is written, or `limit` passes. Returns whether it was.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        self.stats.queued.fetch_add(2, Ordering::Relaxed);
        let sent = self.promises.send(Write::Flush(tx)).is_ok() && self.rest.send(Write::Flush(tx2)).is_ok();
        sent && tokio::time::timeout(limit, async { rx.await.is_ok() && rx2.await.is_ok() })
            .await
            .unwrap_or(false)
    }
}

/// One lane's writer: takes what is queued, in order, in batches. Runs of routine rows (nudge
/// log, recoveries, contexts, checklists) are committed together in one transaction; the rest
/// one by one, in their place.
async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Write>, stats: Arc<WriterStats>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 64).await > 0 {
        let taken = batch.len();
        let mut routine = Vec::new();
        for write in coalesce(std::mem::take(&mut batch)) {
            if row(&write).is_some() {
                routine.push(write);
                continue;
            }
            write_together(&store, std::mem::take(&mut routine), &stats).await;
            apply_until_done(&store, write, &stats).await;
        }
        write_together(&store, routine, &stats).await;
        stats.queued.fetch_sub(taken, Ordering::Relaxed);
    }
}

/// The routine row a write is, if it is one.
fn row(write: &Write) -> Option<RoutineRow<'_>> {
    Some(match write {
        Write::Nudge(n) => RoutineRow::Nudge(n),
        Write::Recovered { conversation, at } => RoutineRow::Recovered {
            conversation: *conversation,
            at: *at,
        },
        Write::Context {
            guild,
            conversation,
            context,
            now,
        } => RoutineRow::Context {
            guild: *guild,
            conversation: *conversation,
            context,
            now: *now,
        },
        Write::Checklist(c) => RoutineRow::Checklist(c),
        _ => return None,
    })
}

/// Commits routine writes in one transaction, retried like any write. If the database refuses
/// the batch for good, each write goes alone, so only the one it refuses is skipped.
async fn write_together(store: &Store, writes: Vec<Write>, stats: &WriterStats) {
    if writes.is_empty() {
        return;
    }
    let rows: Vec<RoutineRow<'_>> = writes.iter().filter_map(row).collect();
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.write_rows(&rows).await {
            Ok(()) => {
                stats.written.fetch_add(writes.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) if passing(&e) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "a database write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(_) => break,
        }
    }
    drop(rows);
    for write in writes {
        apply_until_done(store, write, stats).await;
    }
}

/// Keeps only the newest context per conversation in a batch: older ones would be overwritten
/// at once. Everything else keeps its order.
fn coalesce(batch: Vec<Write>) -> Vec<Write> {
    let mut newest: HashMap<u64, usize> = HashMap::new();
    for (i, w) in batch.iter().enumerate() {
        if let Write::Context { conversation, .. } = w {
            newest.insert(*conversation, i);
        }
    }
    batch
        .into_iter()
        .enumerate()
        .filter(|(i, w)| match w {
            Write::Context { conversation, .. } => newest.get(conversation) == Some(i),
            _ => true,
        })
        .map(|(_, w)| w)
        .collect()
}

/// Whether an error can pass (retry) or never will (skip).
fn passing(e: &StoreError) -> bool {
    match e {
        StoreError::Query(sqlx::Error::Database(db)) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL integrity errors are class 23; SQLite's are "constraint failed".
            !(code.starts_with("23") || db.message().contains("constraint failed"))
        }
        StoreError::Query(
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_),
        ) => false,
        _ => true,
    }
}

async fn apply_until_done(store: &Store, mut write: Write, stats: &WriterStats) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match apply(store, &mut write).await {
            Ok(()) => {
                stats.written.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if passing(&e) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "a database write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "the database refused a write for good; skipping it");
                return;
            }
        }
    }
}

async fn apply(store: &Store, write: &mut Write) -> Result<(), StoreError> {
    match write {
        Write::Promise { promise, stored } => {
            let id = store.insert_promise(promise).await?;
            if let Some(tx) = stored.take() {
                let _ = tx.send(id);
            }
        }
        Write::Reschedule { change, now, stored } => {
            let id = store.reschedule_promise(change, *now).await?;
            if let Some(tx) = stored.take() {
                let _ = tx.send(id);
            }
        }
        Write::Close {
            guild,
            message,
            state,
            now,
        } => {
            store.close_promise(*guild, *message, *state, *now).await?;
        }
        Write::Nudge(n) => store.log_nudge(n).await?,
        Write::Recovered { conversation, at } => {
            store.recovered(*conversation, *at).await?;
        }
        Write::Feedback { key, helpful, by, at } => {
            store.feedback(key, *helpful, *by, *at).await?;
        }
        Write::Mute {
            guild,
            agent,
            until,
            now,
        } => store.set_mute(*guild, *agent, *until, *now).await?,
        Write::Delivery {
            guild,
            agent,
            delivery,
            now,
        } => store.set_delivery(*guild, *agent, *delivery, *now).await?,
        Write::Context {
            guild,
            conversation,
            context,
            now,
        } => store.save_context(*guild, *conversation, context, *now).await?,
        Write::Checklist(checklist) => store.save_checklist(checklist).await?,
        Write::Flush(tx) => {
            // Everything before this in the queue is written by the time it is reached.
            let (done, _) = oneshot::channel();
            let _ = std::mem::replace(tx, done).send(());
        }
    }
    Ok(())
}
