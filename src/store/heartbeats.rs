//! Last-heard times, written in batches by the coordinator's heartbeat writer (once a
//! second; a device's time at most once per `CoordinatorConfig::heartbeat_store_ms`, a
//! session's at most once a second).
//!
//! With 19,000 kiosk sockets whose pongs are signs of life, a flush holds ~1,000 devices.
//! One `UPDATE` per row in one transaction held SQLite's only connection for the whole
//! flush, and every operator command, audit row and token lookup queued behind it (the
//! tail of the command latency, issue 15). So: one multi-row `UPDATE ... FROM (VALUES
//! ...)` per chunk, each chunk its own short transaction (heartbeats are monotonic and
//! idempotent: a flush cut short loses nothing the next one does not write), and other
//! statements get the connection between chunks.

use kioskd_actors::ports::{LastHeard, StoreResult};

use super::{Db, row_placeholders, se};

/// Rows per statement (two parameters each; SQLite finds each `$n` by a linear walk
/// over the statement's parameters, so 100 rows keep binding cheap).
const CHUNK: usize = 100;

impl Db {
    /// Records last-heard times of devices and sessions (batched, monotonic).
    pub async fn record_heartbeats(
        &self,
        devices: &[LastHeard],
        sessions: &[LastHeard],
    ) -> StoreResult<()> {
        for chunk in devices.chunks(CHUNK) {
            let sql = format!(
                "UPDATE devices SET last_seen_at = v.column2 FROM (VALUES {}) AS v
                 WHERE devices.id = v.column1
                   AND (devices.last_seen_at IS NULL OR devices.last_seen_at < v.column2)",
                row_placeholders(1, chunk.len(), 2)
            );
            bind_pairs(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)
                .execute(&self.pool)
                .await
                .map_err(se)?;
        }
        for chunk in sessions.chunks(CHUNK) {
            let sql = format!(
                "UPDATE sessions SET last_heard_at = v.column2 FROM (VALUES {}) AS v
                 WHERE sessions.id = v.column1 AND sessions.ended_at IS NULL
                   AND sessions.last_heard_at < v.column2",
                row_placeholders(1, chunk.len(), 2)
            );
            bind_pairs(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)
                .execute(&self.pool)
                .await
                .map_err(se)?;
        }
        Ok(())
    }
}

fn bind_pairs<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    rows: &[LastHeard],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for h in rows {
        q = q.bind(h.id).bind(h.at);
    }
    q
}
