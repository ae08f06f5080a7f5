//! Storage: every SQL statement kioskd runs, over SQLite (the embedded default) or
//! PostgreSQL through sqlx's `Any` driver. The statements are written once in the
//! dialect both accept (`$n` parameters, `ON CONFLICT`, `RETURNING`, partial unique
//! indexes); only the migrations differ per backend (`migrations/<backend>/`).
//!
//! Money rules live here as much as in the schema: every money change is one
//! transaction that writes its ledger row (with a deterministic id, so a replay inserts
//! nothing) and the user's totals together.

mod attendance;
mod audit;
mod captcha;
mod checkpoint;
mod commands;
mod devices;
mod error;
mod games;
mod heartbeats;
mod ledger;
mod maintainers;
mod operators;
mod orders;
mod packages;
mod port;
mod pricing;
mod reports;
mod rows;
mod sessions;
mod upstream;
mod users;

use std::path::Path;
use std::time::Duration;

use kioskd_actors::ports::*;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use attendance::*;
pub use audit::*;
pub use error::WriteError;
use error::{is_unique_violation, se};
pub use operators::*;
pub use orders::*;
pub use packages::*;
pub use pricing::*;
pub use reports::*;
pub use rows::*;
pub use upstream::*;

/// Reads a column by name, mapping a decode failure to [`StoreError::Corrupt`].
pub(crate) trait RowExt {
    /// The value of column `name`.
    fn col<'r, T>(&'r self, name: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>;
}

impl RowExt for AnyRow {
    fn col<'r, T>(&'r self, name: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.try_get(name).map_err(se)
    }
}

/// A new SQLite database in a temporary folder, for unit tests; the folder (and the
/// file) lives as long as the returned guard.
#[cfg(test)]
pub(crate) async fn scratch_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/k.db", dir.path().display()), 1)
        .await
        .unwrap();
    (dir, db)
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (single writer connection).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: keeps the checkpointer running while any clone lives (`checkpoint`).
    _checkpoints: Option<std::sync::Arc<()>>,
}

impl Db {
    /// Connects (creating an SQLite file and its folder if needed) and runs migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::other(format!(
                "unsupported database url (want sqlite:// or postgres://): {}",
                redact_url(url)
            )));
        };
        let url = if backend == Backend::Sqlite {
            prepare_sqlite_url(url)?
        } else {
            url.to_string()
        };
        let opts = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            // SQLite allows one writer; one connection avoids lock upgrades entirely.
            .max_connections(if backend == Backend::Sqlite {
                1
            } else {
                max_connections.max(2)
            });
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    // Checkpoints run on their own connection (`checkpoint`); a commit
                    // runs one only if that fell far behind.
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "PRAGMA wal_autocheckpoint = {}",
                        checkpoint::SAFETY_NET_PAGES
                    )))
                    .await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.connect(&url).await.map_err(se)?;
        let checkpoints = (backend == Backend::Sqlite).then(|| checkpoint::spawn(url.clone()));
        let db = Db {
            pool,
            backend,
            _checkpoints: checkpoints,
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let r = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await
            }
        };
        r.map_err(|e| StoreError::other(format!("migration failed: {e}")))
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool (tests inspect tables directly).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A trivial round trip (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }
}

/// `$from, $from+1, ...` for `n` parameters: placeholders only, so a statement's text
/// depends on nothing but its counts.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($from, ..), ($from+width, ..), ...` for `rows` rows of `width` parameters each (the
/// rows of a multi-row `VALUES`).
fn row_placeholders(from: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(from + r * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((_, rest)) => format!("…@{rest}"),
        None => url.to_string(),
    }
}

/// Makes sure the folder of an SQLite file exists and the URL creates the file.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.contains(":memory:") {
        return Err(StoreError::other(
            "an in-memory SQLite database would vanish on restart; give a file path",
        ));
    }
    if let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::other(format!("cannot create {}: {e}", dir.display())))?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

#[cfg(test)]
mod placeholder_tests {
    use super::{placeholders, row_placeholders};

    #[test]
    fn placeholders_number_parameters_from_where_they_start() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 0), "");
        assert_eq!(row_placeholders(1, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(row_placeholders(2, 3, 2), "($2, $3), ($4, $5), ($6, $7)");
    }
}
