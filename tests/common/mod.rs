//! Shared by the integration tests: where the shipped rules, settings and prompts are.

use std::path::PathBuf;

use backstop::config::Sources;

/// The project's own `config/` and `prompts/`, whatever folder the test runs from.
#[allow(dead_code)]
pub fn shipped() -> Sources {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Sources {
        config: Some(root.join("config")),
        prompts: Some(root.join("prompts")),
    }
}

/// Copies the shipped config folder (lexicon, rules, engine settings, model) into `to`, so a test
/// can run the binary on it or change it under a running bot.
#[allow(dead_code)]
pub fn copy_config(to: &std::path::Path) {
    copy_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"), to);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            copy_dir(&path, &to.join(name));
        } else if name != "backstop.toml" {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// A throwaway PostgreSQL database per test, so PostgreSQL tests run in parallel without seeing
/// each other's rows. The server comes from `BACKSTOP_TEST_POSTGRES` (an admin URL such as
/// `postgres://postgres@127.0.0.1:5432/test`); without it the tests are skipped, and with it an
/// unreachable server fails them.
#[allow(dead_code)]
pub mod pg {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use sqlx::postgres::PgPoolOptions;
    use sqlx::{Connection, PgConnection, PgPool};

    /// The variable naming the PostgreSQL server the tests may use.
    pub const ENV: &str = "BACKSTOP_TEST_POSTGRES";

    /// How long to wait for the server before calling it unreachable.
    const CONNECT_LIMIT: Duration = Duration::from_secs(15);

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    /// The admin URL from the environment, or `None` (with a note on stderr naming the test) when
    /// PostgreSQL tests are not to run.
    pub fn admin_url(test: &str) -> Option<String> {
        match std::env::var(ENV) {
            Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
            _ => {
                eprintln!("{test}: skipped: {ENV} is not set; PostgreSQL tests need a server (see README)");
                None
            }
        }
    }

    /// `url` with its database name replaced by `db` (query parameters kept).
    pub fn with_database(url: &str, db: &str) -> String {
        let (base, query) = match url.find('?') {
            Some(q) => (&url[..q], &url[q..]),
            None => (url, ""),
        };
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        let authority_end = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        format!("{}/{db}{query}", &base[..authority_end])
    }

    /// Connects (one connection) to `url`, panicking with a clear message if the server cannot be
    /// reached. A pool rather than a bare connection, so the futures using it stay `Send` for
    /// `tokio::spawn`.
    pub async fn admin(url: &str) -> PgPool {
        let unreachable = |why: String| -> ! {
            panic!(
                "{ENV}={url} is set but the PostgreSQL server cannot be reached: {why}. \
                 Start the server or unset {ENV} to skip the PostgreSQL tests"
            )
        };
        // A bare connection first: its error says why (refused, no such database, bad password),
        // where a pool's says only that it timed out.
        match tokio::time::timeout(CONNECT_LIMIT, PgConnection::connect(url)).await {
            Ok(Ok(probe)) => {
                let _ = probe.close().await;
            }
            Ok(Err(e)) => unreachable(e.to_string()),
            Err(_) => unreachable(format!("no answer within {CONNECT_LIMIT:?}")),
        }
        match PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_LIMIT)
            .connect(url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => unreachable(e.to_string()),
        }
    }

    /// One test's own database, created on the server named by `BACKSTOP_TEST_POSTGRES`.
    /// Call [`TestDb::drop_db`] when done: dropping a database needs a round trip, which `Drop`
    /// cannot await.
    #[derive(Debug, Clone)]
    pub struct TestDb {
        admin_url: String,
        /// The database's name (`backstop_t_<pid>_<counter>_<nanos>`).
        pub name: String,
        /// A URL for the new database, for `storage.url` or a raw connection.
        pub url: String,
    }

    impl TestDb {
        /// Creates a fresh, empty database, or returns `None` (after saying so on stderr) when
        /// `BACKSTOP_TEST_POSTGRES` is not set. Panics if it is set and the server is unreachable.
        pub async fn create(test: &str) -> Option<TestDb> {
            let admin_url = admin_url(test)?;
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!(
                "backstop_t_{}_{}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                nanos
            );
            let pool = admin(&admin_url).await;
            // Parallel CREATE DATABASE can briefly collide on the template; try a few times.
            let mut tries = 0;
            loop {
                match sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&pool)
                    .await
                {
                    Ok(_) => break,
                    Err(e) if tries < 5 && e.to_string().contains("being accessed by other users") => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                    }
                    Err(e) => panic!("cannot create the test database {name} on {admin_url}: {e}"),
                }
            }
            pool.close().await;
            let url = with_database(&admin_url, &name);
            Some(TestDb { admin_url, name, url })
        }

        /// Drops the database, closing any connection still open to it.
        pub async fn drop_db(&self) {
            let pool = admin(&self.admin_url).await;
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            if let Err(e) = sqlx::raw_sql(&sql).execute(&pool).await {
                eprintln!("warning: could not drop the test database {}: {e}", self.name);
            }
            pool.close().await;
        }
    }
}
