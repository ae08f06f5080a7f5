//! Kiosk commands: one row per command sent to one device (`device_commands`), and
//! broadcasts stored once (`broadcasts`) with the devices' acknowledgements recorded as
//! they come (`broadcast_acks`). A device's copy of a broadcast has its own wire id
//! (`broadcast_copy_id`), so acks and re-deliveries work the same for both.

use kioskd_actors::ports::{PendingCommand, StoreResult, broadcast_copy_id, broadcast_of_copy};

use super::{Db, RowExt, placeholders, row_placeholders, se};

impl Db {
    /// Queues a command for one device; returns its id.
    pub async fn add_command(
        &self,
        device_id: i64,
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO device_commands (device_id, name, text, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(device_id)
        .bind(name)
        .bind(text)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(se)
    }

    /// Stores a broadcast: one row, one statement (its own transaction).
    pub async fn add_broadcast(
        &self,
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO broadcasts (name, text, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(text)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(se)
    }

    /// A device's unacknowledged commands, and its unacknowledged copies of broadcasts
    /// sent since `broadcasts_since` (and after the device was registered), oldest first.
    pub async fn pending_commands(
        &self,
        device_id: i64,
        broadcasts_since: i64,
    ) -> StoreResult<Vec<PendingCommand>> {
        // One statement, so a broadcast and a command stored meanwhile are seen
        // consistently.
        let rows = sqlx::query(
            "SELECT c.created_at AS created_at, CAST(0 AS BIGINT) AS broadcast, c.id AS id,
                    c.name AS name, c.text AS text
             FROM device_commands c
             WHERE c.device_id = $1 AND c.acked_at IS NULL
             UNION ALL
             SELECT b.created_at, CAST(1 AS BIGINT), b.id, b.name, b.text FROM broadcasts b
             WHERE b.created_at >= (SELECT d.ctime FROM devices d WHERE d.id = $1)
               AND b.created_at >= $2
               AND NOT EXISTS (SELECT 1 FROM broadcast_acks a
                               WHERE a.device_id = $1 AND a.broadcast_id = b.id)
             ORDER BY 1, 2, 3",
        )
        .bind(device_id)
        .bind(broadcasts_since)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let broadcast: i64 = r.col("broadcast")?;
            let id: i64 = r.col("id")?;
            let id = if broadcast == 1 {
                match broadcast_copy_id(id, device_id) {
                    Some(copy) => copy,
                    None => {
                        tracing::warn!(
                            broadcast = id,
                            device_id,
                            "broadcast or device id out of the copy-id range"
                        );
                        continue;
                    }
                }
            } else {
                id
            };
            out.push(PendingCommand {
                id,
                name: r.col("name")?,
                text: r.col("text")?,
                created_at: r.col("created_at")?,
            });
        }
        Ok(out)
    }

    /// Records acknowledgements: a command's row is marked, a broadcast copy's ack is a
    /// row of its own (at most one per device and broadcast).
    ///
    /// A broadcast brings ~19,000 acks within a second: one statement per ack was one
    /// round trip to SQLite's worker thread each (thread wake-ups both ways), a fifth of
    /// the server's CPU during a broadcast. Now a statement per chunk of acks, each chunk
    /// committed on its own: acks are idempotent (a command stays acknowledged, a copy's
    /// ack row is unique), so a write cut short loses nothing but the chance to skip a
    /// re-send, and other statements get the connection between chunks.
    pub async fn ack_commands(&self, ids: &[i64], now: i64) -> StoreResult<()> {
        let mut copies = Vec::new();
        let mut commands = Vec::new();
        for id in ids {
            match broadcast_of_copy(*id) {
                Some((broadcast, device)) => copies.push((device, broadcast)),
                None => commands.push(*id),
            }
        }
        // In key order: each statement then writes a run of neighbouring rows (the
        // fan-out goes in device order, so a batch of acks is mostly one run).
        commands.sort_unstable();
        copies.sort_unstable_by_key(|(device, broadcast)| (*broadcast, *device));
        for chunk in commands.chunks(ACK_CHUNK) {
            let sql = format!(
                "UPDATE device_commands SET acked_at = $1 WHERE acked_at IS NULL AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&self.pool).await.map_err(se)?;
        }
        for chunk in copies.chunks(ACK_CHUNK) {
            // Only for a device and a broadcast that exist (the ids come from a kiosk);
            // `WHERE true` keeps SQLite from reading `ON CONFLICT` as part of a join.
            let sql = format!(
                "INSERT INTO broadcast_acks (device_id, broadcast_id, acked_at)
                 SELECT d.id, b.id, $1 FROM (VALUES {}) AS v
                 JOIN devices d ON d.id = v.column1
                 JOIN broadcasts b ON b.id = v.column2
                 WHERE true
                 ON CONFLICT DO NOTHING",
                row_placeholders(2, chunk.len(), 2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for (device, broadcast) in chunk {
                q = q.bind(*device).bind(*broadcast);
            }
            q.execute(&self.pool).await.map_err(se)?;
        }
        Ok(())
    }
}

/// Acks per statement (at most two parameters each). SQLite finds each `$n` by a
/// linear walk over the statement's parameters, so binding costs grow with the square
/// of the parameters in one statement: 100 rows keep that walk small.
const ACK_CHUNK: usize = 100;
