//! Versioned schema migrations, embedded in the binary and applied at start-up.
//!
//! Each backend has its own folder of numbered SQL files (`0001_initial.sql`, ...); sqlx records
//! what was applied, with a checksum, in `_sqlx_migrations`. A database holding a version this
//! build does not know was migrated by a newer Backstop and is refused: running old code against
//! a newer schema could lose data silently.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

use super::{Pool, Store, StoreError};

/// (version, description, SQL) for SQLite, oldest first.
const SQLITE: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/sqlite/0001_initial.sql")),
    (2, "checklists", include_str!("migrations/sqlite/0002_checklists.sql")),
    (
        3,
        "nudges by conversation",
        include_str!("migrations/sqlite/0003_nudges_by_conversation.sql"),
    ),
];

/// (version, description, SQL) for PostgreSQL, oldest first.
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/postgres/0001_initial.sql")),
    (2, "checklists", include_str!("migrations/postgres/0002_checklists.sql")),
    (
        3,
        "nudges by conversation",
        include_str!("migrations/postgres/0003_nudges_by_conversation.sql"),
    ),
];

/// The newest schema version this build knows.
pub const LATEST: i64 = 3;

/// The migrations of one backend, as sqlx's migrator reads them.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Brings the store's schema up to date, or explains why it cannot.
pub(super) async fn run(store: &Store) -> Result<(), StoreError> {
    let place = store.place().to_string();
    let source = match store.pool {
        Pool::Sqlite(_) => Embedded(SQLITE),
        Pool::Postgres(_) => Embedded(POSTGRES),
    };
    let migrator = Migrator::new(source).await.map_err(|e| StoreError::Migration {
        place: place.clone(),
        detail: e.to_string(),
    })?;
    let result = match &store.pool {
        Pool::Sqlite(p) => migrator.run(p).await,
        Pool::Postgres(p) => migrator.run(p).await,
    };
    result.map_err(|e| match e {
        MigrateError::VersionMissing(found) | MigrateError::VersionTooNew(found, _) => StoreError::TooNew {
            place,
            found,
            known: LATEST,
        },
        other => StoreError::Migration {
            place,
            detail: other.to_string(),
        },
    })
}
