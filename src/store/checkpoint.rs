//! SQLite's write-ahead-log checkpoints, on a connection of their own.
//!
//! A checkpoint copies the log into the database file and syncs both to disk (with
//! `synchronous = NORMAL` nothing else is synced). By default SQLite runs one inside
//! whichever commit grows the log past 1,000 pages, on that commit's connection, which
//! in kioskd is the pool's only one: measured on this project's VM disk, 4-8 ms of
//! `fsync` per checkpoint, about once a second with 19,000 kiosks whose pongs are
//! heartbeats, and every operator command, token lookup and audit row queued behind it
//! (BENCHMARKS.md, "Where a command's time goes").
//!
//! So the pool's connection checkpoints only as a safety net ([`SAFETY_NET_PAGES`]), and
//! a task runs a `PASSIVE` checkpoint every [`EVERY`] on a second connection: a passive
//! checkpoint neither waits for nor blocks the writer, and its syncs happen on that
//! connection's thread. The task ends when the last clone of the `Db` is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::Connection;

/// How often the checkpointer runs (a run with nothing to copy costs a few reads).
pub(super) const EVERY: Duration = Duration::from_millis(250);

/// `wal_autocheckpoint` of the pool's connection: only if the checkpointer fell this far
/// behind (~40 MB of log) does a commit checkpoint by itself.
pub(super) const SAFETY_NET_PAGES: u32 = 10_000;

/// Starts the checkpointer for the SQLite file at `url`; it runs while the returned
/// token (kept by every clone of the `Db`) lives.
pub(super) fn spawn(url: String) -> Arc<()> {
    let alive = Arc::new(());
    tokio::spawn(run(url, Arc::downgrade(&alive)));
    alive
}

async fn run(url: String, alive: Weak<()>) {
    let mut conn = match sqlx::sqlite::SqliteConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "sqlite: no checkpoint connection; commits will checkpoint");
            return;
        }
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "sqlite: checkpoint failed");
        }
    }
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows committed on the pool reach the database file with no commit checkpointing
    /// (the log stays far below the pool's own threshold): the checkpointer copied them.
    #[tokio::test]
    async fn commits_reach_the_database_file_through_the_checkpointer() {
        let (dir, db) = crate::store::scratch_db().await;
        let path = dir.path().join("k.db");
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(autocheckpoint, i64::from(SAFETY_NET_PAGES));
        sqlx::query("CREATE TABLE bulk (b BLOB)")
            .execute(db.pool())
            .await
            .unwrap();
        // 2 MB in 200 commits: ~500 pages of log, a twentieth of the safety net, so only
        // the checkpointer can bring them into the file.
        let (rows, bytes) = (200u64, 10_000u64);
        for _ in 0..rows {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO bulk (b) VALUES (zeroblob({bytes}))"
            )))
            .execute(db.pool())
            .await
            .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while size() < rows * bytes {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes: nothing checkpointed",
                size()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
