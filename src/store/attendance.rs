//! Attendance storage (SPEC §8): terminals, the staff roster and its version, punches
//! (bulk, idempotent on `(sn, pin, local_time)`), quarantined lines, the per-terminal
//! command queue and error logs. Implements the actors' `TerminalStore` port and the
//! queries the ops API needs.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use kioskd_actors::ports::{StoreError, StoreResult};
use kioskd_actors::terminal::*;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Db, Page, RowExt, WriteError, placeholders, se};

const TERMINAL_COLS: &str = "id, sn, token_hash, name, timezone, last_seen_at, last_seen_via, roster_version, attlog_stamp, operlog_stamp, info, created_at";
const COMMAND_COLS: &str = "id, sn, name, args, channel, state, destructive, attempts, wire_id, return_code, result, created_at, sent_at, acked_at, via, delivered_at";
const STAFF_COLS: &str = "pin, name, pri, passwd, card, grp, tz, all_terminals, deleted, version";

/// Punch rows per INSERT statement on PostgreSQL: 8 parameters each plus 3 shared stays
/// far below its 65,535 bound parameters.
const PUNCH_CHUNK_PG: usize = 1000;
/// Punches per transaction of a sync.
const PUNCH_TX_BATCH: usize = 2_048;
/// On SQLite binding costs O(parameters) per parameter (sqlx looks each name up, and
/// SQLite finds names by a linear scan), so a statement's cost grows with the square of
/// its rows: small statements are far cheaper (measured: 1,000 rows per statement spent
/// half the time of a 50,000-record sync in `sqlite3_bind_parameter_name`).
const PUNCH_CHUNK_SQLITE: usize = 64;

/// A staff member (or a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffRow {
    /// PIN.
    pub pin: String,
    /// Name.
    pub name: String,
    /// Privilege (0 user, 14 super admin).
    pub pri: i64,
    /// Password.
    pub passwd: String,
    /// Card number.
    pub card: String,
    /// Group.
    pub grp: String,
    /// Time zones (16 digits).
    pub tz: String,
    /// On every terminal.
    pub all_terminals: bool,
    /// Deleted (tombstone).
    pub deleted: bool,
    /// Roster version of its last change.
    pub version: i64,
}

/// A staff member to add or replace.
#[derive(Debug, Clone)]
pub struct NewStaff {
    /// PIN.
    pub pin: String,
    /// Name.
    pub name: String,
    /// Privilege.
    pub pri: i64,
    /// Password.
    pub passwd: String,
    /// Card.
    pub card: String,
    /// Group.
    pub grp: String,
    /// Time zones.
    pub tz: String,
    /// `None`: every terminal.
    pub terminals: Option<Vec<String>>,
}

/// The roster as a bridge sees it.
#[derive(Debug, Clone)]
pub struct Roster {
    /// The version (`timeStamp`).
    pub version: i64,
    /// Staff to have.
    pub users: Vec<StaffRow>,
    /// Staff to delete.
    pub deleted: Vec<StaffRow>,
}

/// A stored punch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchOut {
    /// Terminal.
    pub sn: String,
    /// PIN.
    pub pin: String,
    /// Device-local time as reported.
    pub local_time: String,
    /// UTC instant (unix ms).
    pub at: i64,
    /// Status.
    pub status: i64,
    /// Verify.
    pub verify: i64,
    /// Work code.
    pub workcode: String,
    /// Reserved 1.
    pub reserved1: String,
    /// Reserved 2.
    pub reserved2: String,
    /// How it came in.
    pub source: String,
    /// When it was first stored (unix ms).
    pub received_at: i64,
}

/// Filters of `GET /ops/punches`.
#[derive(Debug, Clone, Default)]
pub struct PunchFilter {
    /// Terminal.
    pub sn: Option<String>,
    /// PIN.
    pub pin: Option<String>,
    /// From (unix ms, inclusive).
    pub from: Option<i64>,
    /// To (unix ms, inclusive).
    pub to: Option<i64>,
}

/// What an operator sees counted per terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TerminalCounts {
    /// Punches stored.
    pub punches: i64,
    /// Lines quarantined.
    pub quarantined: i64,
    /// Commands pending or sent without a result.
    pub open_commands: i64,
    /// Commands that failed.
    pub failed_commands: i64,
}

/// A terminal with its counts, as the ops API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalListing {
    /// The terminal.
    pub terminal: TerminalRecord,
    /// Its counts.
    pub counts: TerminalCounts,
}

/// A staff row with the terminals it is limited to (empty: none listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffEntry {
    /// The row (tombstones included).
    pub staff: StaffRow,
    /// The terminals it is limited to.
    pub terminals: Vec<String>,
}

/// A stored error log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLogOut {
    /// Terminal, when the log names one.
    pub sn: Option<String>,
    /// `CMD_FAILED`, ...
    pub kind: String,
    /// Text.
    pub content: String,
    /// The command it was linked to.
    pub command_id: Option<i64>,
}

/// An error log linked to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// `CMD_FAILED`, ...
    pub kind: String,
    /// Text.
    pub content: String,
}

/// A quarantined line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineOut {
    /// Terminal.
    pub sn: String,
    /// Source.
    pub source: String,
    /// The line.
    pub raw: String,
    /// Why.
    pub reason: String,
}

/// An error log line.
#[derive(Debug, Clone)]
pub struct NewErrorLog {
    /// Terminal, when the log names one.
    pub sn: Option<String>,
    /// `CMD_FAILED`, ...
    pub kind: String,
    /// Text.
    pub content: String,
    /// The bridge's `wTime` (unix seconds), if any.
    pub device_time: Option<i64>,
}

/// A user a terminal reported (OPERLOG `USER`).
#[derive(Debug, Clone)]
pub struct SeenUser {
    /// PIN.
    pub pin: String,
    /// Name.
    pub name: String,
    /// Privilege.
    pub pri: String,
    /// Card.
    pub card: String,
    /// The line.
    pub raw: String,
}

fn terminal_from_row(r: &AnyRow) -> Result<TerminalRecord, StoreError> {
    Ok(TerminalRecord {
        id: r.col("id")?,
        sn: r.col("sn")?,
        token_hash: r.col("token_hash")?,
        name: r.col("name")?,
        timezone: r.col("timezone")?,
        last_seen_at: r.col("last_seen_at")?,
        last_seen_via: r.col("last_seen_via")?,
        roster_version: r.col("roster_version")?,
        attlog_stamp: r.col("attlog_stamp")?,
        operlog_stamp: r.col("operlog_stamp")?,
        info: r.col("info")?,
        created_at: r.col("created_at")?,
    })
}

/// What `/iclock` may trust of a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IclockTrust {
    /// Registered as behind a bridge: refused on `/iclock`.
    pub bridge: bool,
    /// The `pushcommkey` its handshake must carry.
    pub comm_key: Option<String>,
    /// The address of the last handshake that carried the right comm key.
    pub proven_addr: Option<String>,
}

fn command_from_row(r: &AnyRow) -> Result<CommandRow, StoreError> {
    let channel: String = r.col("channel")?;
    let state: String = r.col("state")?;
    Ok(CommandRow {
        id: r.col("id")?,
        sn: r.col("sn")?,
        name: r.col("name")?,
        args: r.col("args")?,
        channel: Channel::parse(&channel)
            .ok_or_else(|| StoreError::corrupt("terminal_commands.channel", channel))?,
        state: CommandState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("terminal_commands.state", state))?,
        destructive: r.col::<i64>("destructive")? != 0,
        attempts: r.col("attempts")?,
        wire_id: r.col("wire_id")?,
        return_code: r.col("return_code")?,
        result: r.col("result")?,
        created_at: r.col("created_at")?,
        sent_at: r.col("sent_at")?,
        acked_at: r.col("acked_at")?,
        via: r.col("via")?,
        delivered_at: r.col("delivered_at")?,
    })
}

fn staff_from_row(r: &AnyRow) -> Result<StaffRow, StoreError> {
    Ok(StaffRow {
        pin: r.col("pin")?,
        name: r.col("name")?,
        pri: r.col("pri")?,
        passwd: r.col("passwd")?,
        card: r.col("card")?,
        grp: r.col("grp")?,
        tz: r.col("tz")?,
        all_terminals: r.col::<i64>("all_terminals")? != 0,
        deleted: r.col::<i64>("deleted")? != 0,
        version: r.col("version")?,
    })
}

/// Queues `updatestd` for a bridge terminal whose roster version is behind (the bridge
/// then asks `SN=all_devices`, which it applies without wiping), inside `tx`.
async fn queue_updatestd_if_moved(
    tx: &mut Transaction<'_, Any>,
    sn: &str,
    now: i64,
) -> StoreResult<()> {
    let version: i64 = sqlx::query_scalar("SELECT version FROM roster WHERE id = 1")
        .fetch_one(&mut **tx)
        .await
        .map_err(se)?;
    let moved = sqlx::query(
        "UPDATE terminals SET roster_version = $1 WHERE sn = $2 AND roster_version < $1",
    )
    .bind(version)
    .bind(sn)
    .execute(&mut **tx)
    .await
    .map_err(se)?;
    if moved.rows_affected() > 0 {
        sqlx::query(
            "INSERT INTO terminal_commands (sn, name, channel, args, created_at)
             SELECT $1, 'updatestd', 'bridge', '{}', $2
             WHERE NOT EXISTS (SELECT 1 FROM terminal_commands WHERE sn = $1 AND name = 'updatestd' AND state = 'pending')",
        )
        .bind(sn)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(se)?;
    }
    Ok(())
}

/// The bridge's `CMD_FAILED` content, `<terminal command line> ;return <code> . <time>`:
/// the command line and the code.
pub fn parse_cmd_failed(content: &str) -> Option<(&str, Option<i64>)> {
    let i = content.rfind(" ;return ")?;
    let line = content[..i].trim();
    let code = content[i + " ;return ".len()..]
        .split(" .")
        .next()
        .and_then(|c| c.trim().parse().ok());
    (!line.is_empty()).then_some((line, code))
}

/// Which delivered command (newest delivery first in `cands`) a failed terminal command
/// line came from: a terminal command kioskd rendered itself (relayed by a WebSocket
/// bridge) with exactly that text, else the newest bridge-level command the bridge
/// carries out with such lines (`updatestd` and `reprovision`: USERINFO lines, the
/// latter also `CLEAR DATA`; `syncAttLog`: `DATA QUERY ATTLOG`, then `CLEAR LOG`).
pub fn cmd_failed_cause<'a>(cands: &'a [CommandRow], line: &str) -> Option<&'a CommandRow> {
    let exact = cands
        .iter()
        .find(|c| c.channel == Channel::Native && render_native(&c.name, &c.args) == line);
    exact.or_else(|| {
        let users = line.starts_with("DATA UPDATE USERINFO")
            || line.starts_with("DATA DELETE USERINFO")
            || line.starts_with("DATA USER")
            || line.starts_with("DATA DEL_USER");
        cands.iter().find(|c| match c.name.as_str() {
            "updatestd" => users,
            "reprovision" => users || line.starts_with("CLEAR DATA"),
            "syncAttLog" => line.starts_with("DATA QUERY ATTLOG") || line.starts_with("CLEAR LOG"),
            _ => false,
        })
    })
}

async fn bump_roster(tx: &mut Transaction<'_, Any>) -> StoreResult<i64> {
    sqlx::query_scalar("UPDATE roster SET version = version + 1 WHERE id = 1 RETURNING version")
        .fetch_one(&mut **tx)
        .await
        .map_err(se)
}

impl Db {
    // ---- terminals ---------------------------------------------------------------------

    /// Registers a terminal. `Conflict`: the SN is taken.
    pub async fn add_terminal(
        &self,
        sn: &str,
        token_hash: &str,
        name: &str,
        timezone: &str,
        now: i64,
    ) -> Result<TerminalRecord, WriteError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO terminals (sn, token_hash, name, timezone, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING {TERMINAL_COLS}"
        )))
        .bind(sn)
        .bind(token_hash)
        .bind(name)
        .bind(timezone)
        .bind(now)
        .fetch_one(&self.pool)
        .await.map_err(se)?;
        terminal_from_row(&row)
    }

    /// How a terminal may use `/iclock`: its kind (`native` | `bridge`), its comm key
    /// (if configured) and the address that last presented it. `None`: unregistered.
    pub async fn terminal_iclock(&self, sn: &str) -> Result<Option<IclockTrust>, StoreError> {
        let row = sqlx::query("SELECT kind, comm_key, proven_addr FROM terminals WHERE sn = $1")
            .bind(sn)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        row.map(|r| {
            let kind: String = r.col("kind")?;
            let key: Option<String> = r.col("comm_key")?;
            Ok(IclockTrust {
                bridge: match kind.as_str() {
                    "bridge" => true,
                    "native" => false,
                    _ => return Err(StoreError::corrupt("terminals.kind", kind)),
                },
                comm_key: key.filter(|k| !k.is_empty()),
                proven_addr: r.col("proven_addr")?,
            })
        })
        .transpose()
    }

    /// Sets a terminal's kind and comm key (forgetting any proof). False if unknown.
    pub async fn set_terminal_iclock(
        &self,
        sn: &str,
        bridge: bool,
        comm_key: Option<&str>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE terminals SET kind = $1, comm_key = $2, proven_addr = NULL WHERE sn = $3",
        )
        .bind(if bridge { "bridge" } else { "native" })
        .bind(comm_key)
        .bind(sn)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(r.rows_affected() > 0)
    }

    /// Records the address that presented the terminal's comm key.
    pub async fn set_terminal_proven(&self, sn: &str, addr: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE terminals SET proven_addr = $1 WHERE sn = $2")
            .bind(addr)
            .bind(sn)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Every terminal with its counts.
    pub async fn list_terminals(&self) -> Result<Vec<TerminalListing>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TERMINAL_COLS},
                (SELECT COUNT(*) FROM punches p WHERE p.sn = t.sn) AS punches,
                (SELECT COUNT(*) FROM punch_quarantine q WHERE q.sn = t.sn) AS quarantined,
                (SELECT COUNT(*) FROM terminal_commands c WHERE c.sn = t.sn AND c.state IN ('pending', 'sent')) AS open_commands,
                (SELECT COUNT(*) FROM terminal_commands c WHERE c.sn = t.sn AND c.state = 'failed') AS failed_commands
             FROM terminals t ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(TerminalListing {
                    terminal: terminal_from_row(r)?,
                    counts: TerminalCounts {
                        punches: r.col("punches")?,
                        quarantined: r.col("quarantined")?,
                        open_commands: r.col("open_commands")?,
                        failed_commands: r.col("failed_commands")?,
                    },
                })
            })
            .collect()
    }

    /// The terminals a bridge token serves.
    pub async fn terminals_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Vec<TerminalRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TERMINAL_COLS} FROM terminals WHERE token_hash = $1 ORDER BY id"
        )))
        .bind(token_hash)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(terminal_from_row).collect()
    }

    /// Records the language an iclock terminal announced in its handshake.
    pub async fn set_terminal_language(&self, sn: &str, language: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE terminals SET language = $1 WHERE sn = $2")
            .bind(language)
            .bind(sn)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// The language an iclock terminal announced, if any.
    pub async fn terminal_language(&self, sn: &str) -> Result<Option<String>, StoreError> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT language FROM terminals WHERE sn = $1")
                .bind(sn)
                .fetch_optional(&self.pool)
                .await
                .map_err(se)?;
        Ok(v.flatten())
    }

    /// A terminal's commands, newest first.
    pub async fn list_commands(&self, sn: &str) -> Result<Vec<CommandRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COMMAND_COLS} FROM terminal_commands WHERE sn = $1 ORDER BY id DESC"
        )))
        .bind(sn)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(command_from_row).collect()
    }

    // ---- staff -------------------------------------------------------------------------

    /// Adds or replaces a staff member; returns the new roster version. `NotFound`: a
    /// listed terminal is not registered (nothing changed).
    pub async fn put_staff(&self, s: &NewStaff, now: i64) -> Result<i64, WriteError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        if let Some(sns) = &s.terminals {
            for sn in sns {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM terminals WHERE sn = $1")
                    .bind(sn)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(se)?;
                if n == 0 {
                    return Err(WriteError::NotFound);
                }
            }
        }
        let version = bump_roster(&mut tx).await?;
        sqlx::query(
            "INSERT INTO staff (pin, name, pri, passwd, card, grp, tz, all_terminals, deleted, version, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10)
             ON CONFLICT (pin) DO UPDATE SET name = excluded.name, pri = excluded.pri,
                passwd = excluded.passwd, card = excluded.card, grp = excluded.grp, tz = excluded.tz,
                all_terminals = excluded.all_terminals, deleted = 0, version = excluded.version,
                updated_at = excluded.updated_at",
        )
        .bind(&s.pin)
        .bind(&s.name)
        .bind(s.pri)
        .bind(&s.passwd)
        .bind(&s.card)
        .bind(&s.grp)
        .bind(&s.tz)
        .bind(i64::from(s.terminals.is_none()))
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        sqlx::query("DELETE FROM staff_terminals WHERE pin = $1")
            .bind(&s.pin)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        for sn in s.terminals.iter().flatten() {
            sqlx::query(
                "INSERT INTO staff_terminals (pin, sn) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&s.pin)
            .bind(sn)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        tx.commit().await.map_err(se)?;
        Ok(version)
    }

    /// Deletes a staff member (keeps a tombstone so terminals learn of it); returns the new
    /// roster version. `NotFound`: no such (live) PIN.
    pub async fn delete_staff(&self, pin: &str, now: i64) -> Result<i64, WriteError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        let version = bump_roster(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE staff SET deleted = 1, version = $1, updated_at = $2 WHERE pin = $3 AND deleted = 0",
        )
        .bind(version)
        .bind(now)
        .bind(pin)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(se)?;
            return Err(WriteError::NotFound);
        }
        tx.commit().await.map_err(se)?;
        Ok(version)
    }

    /// The current roster version.
    pub async fn roster_version(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT version FROM roster WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(se)
    }

    /// Every staff row (tombstones included) with the terminals it is limited to.
    pub async fn all_staff(&self) -> Result<Vec<StaffEntry>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STAFF_COLS} FROM staff ORDER BY pin"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        let links = sqlx::query("SELECT pin, sn FROM staff_terminals ORDER BY pin, sn")
            .fetch_all(&self.pool)
            .await
            .map_err(se)?;
        let mut by_pin: HashMap<String, Vec<String>> = HashMap::new();
        for l in links {
            by_pin.entry(l.col("pin")?).or_default().push(l.col("sn")?);
        }
        rows.iter()
            .map(|r| {
                let staff = staff_from_row(r)?;
                let terminals = by_pin.remove(&staff.pin).unwrap_or_default();
                Ok(StaffEntry { staff, terminals })
            })
            .collect()
    }

    /// The roster for a set of terminals (a bridge's): staff on any of them, and staff to
    /// delete (tombstones, and staff limited to none of them). Records the version as
    /// delivered to those terminals, so their next `getCommand` carries no `updatestd`.
    pub async fn roster_for(&self, sns: &[String]) -> Result<Roster, StoreError> {
        let version = self.roster_version().await?;
        let wanted: HashSet<&str> = sns.iter().map(String::as_str).collect();
        let mut users = Vec::new();
        let mut deleted = Vec::new();
        for StaffEntry {
            staff: s,
            terminals,
        } in self.all_staff().await?
        {
            let here = s.all_terminals || terminals.iter().any(|sn| wanted.contains(sn.as_str()));
            if !s.deleted && here {
                users.push(s);
            } else {
                deleted.push(s);
            }
        }
        for sn in sns {
            sqlx::query(
                "UPDATE terminals SET roster_version = $1 WHERE sn = $2 AND roster_version < $1",
            )
            .bind(version)
            .bind(sn)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        }
        Ok(Roster {
            version,
            users,
            deleted,
        })
    }

    // ---- punches -----------------------------------------------------------------------

    /// Punches matching `f`, newest first, one page (1-based) of `size`; and the total.
    pub async fn punches(
        &self,
        f: &PunchFilter,
        page: i64,
        size: i64,
    ) -> Result<Page<PunchOut>, StoreError> {
        // Only placeholders and fixed fragments go into the text.
        let mut conds = Vec::new();
        let mut n = 0;
        let mut next = |c: &str| {
            n += 1;
            format!("{c} ${n}")
        };
        if f.sn.is_some() {
            conds.push(next("sn ="));
        }
        if f.pin.is_some() {
            conds.push(next("pin ="));
        }
        if f.from.is_some() {
            conds.push(next("at >="));
        }
        if f.to.is_some() {
            conds.push(next("at <="));
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        macro_rules! bind_all {
            ($q:expr) => {{
                let mut q = $q;
                if let Some(v) = &f.sn {
                    q = q.bind(v.clone());
                }
                if let Some(v) = &f.pin {
                    q = q.bind(v.clone());
                }
                if let Some(v) = f.from {
                    q = q.bind(v);
                }
                if let Some(v) = f.to {
                    q = q.bind(v);
                }
                q
            }};
        }
        let total: i64 = bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM punches {filter}"
        ))))
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        let rows = bind_all!(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT sn, pin, local_time, at, status, verify, workcode, reserved1, reserved2, source, received_at
             FROM punches {filter} ORDER BY at DESC, id DESC LIMIT {size} OFFSET {offset}",
            size = size.max(0),
            offset = (page.max(1) - 1) * size.max(0)
        ))))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        let data = rows
            .iter()
            .map(|r| {
                Ok(PunchOut {
                    sn: r.col("sn")?,
                    pin: r.col("pin")?,
                    local_time: r.col("local_time")?,
                    at: r.col("at")?,
                    status: r.col("status")?,
                    verify: r.col("verify")?,
                    workcode: r.col("workcode")?,
                    reserved1: r.col("reserved1")?,
                    reserved2: r.col("reserved2")?,
                    source: r.col("source")?,
                    received_at: r.col("received_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page { total, rows: data })
    }

    /// Quarantined lines of a terminal, oldest first.
    pub async fn quarantined(&self, sn: &str) -> Result<Vec<QuarantineOut>, StoreError> {
        let rows = sqlx::query(
            "SELECT sn, source, raw, reason FROM punch_quarantine WHERE sn = $1 ORDER BY id",
        )
        .bind(sn)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineOut {
                    sn: r.col("sn")?,
                    source: r.col("source")?,
                    raw: r.col("raw")?,
                    reason: r.col("reason")?,
                })
            })
            .collect()
    }

    // ---- error logs and observed users -------------------------------------------------

    /// Stores error logs in one transaction. A bridge's `CMD_FAILED` log is linked to the
    /// command that caused it when one matches ([`cmd_failed_cause`]): the log gets its
    /// `command_id`, and the command, if still `sent`, becomes `failed` with the log's
    /// text and return code. Returns how many commands were failed so.
    pub async fn add_error_logs(&self, logs: &[NewErrorLog], now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        let mut failed = 0;
        for l in logs {
            let mut command_id = None;
            if let (Some(sn), true) = (&l.sn, l.kind == "CMD_FAILED")
                && let Some((line, code)) = parse_cmd_failed(&l.content)
            {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COMMAND_COLS} FROM terminal_commands
                     WHERE sn = $1 AND sent_at IS NOT NULL AND sent_at <= $2 AND state IN ('sent', 'failed')
                     ORDER BY sent_at DESC, id DESC LIMIT 100"
                )))
                .bind(sn)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(se)?;
                let cands = rows
                    .iter()
                    .map(command_from_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                if let Some(c) = cmd_failed_cause(&cands, line) {
                    command_id = Some(c.id);
                    let done = sqlx::query(
                        "UPDATE terminal_commands SET state = 'failed', return_code = $1, result = $2, acked_at = $3
                         WHERE id = $4 AND state = 'sent'",
                    )
                    .bind(code)
                    .bind(&l.content)
                    .bind(now)
                    .bind(c.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(se)?;
                    failed += done.rows_affected();
                }
            }
            sqlx::query(
                "INSERT INTO terminal_errors (sn, kind, content, command_id, device_time, received_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&l.sn)
            .bind(&l.kind)
            .bind(&l.content)
            .bind(command_id)
            .bind(l.device_time)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        tx.commit().await.map_err(se)?;
        Ok(failed)
    }

    /// Error logs linked to commands of a terminal, by command id, oldest first.
    pub async fn command_errors(
        &self,
        sn: &str,
    ) -> Result<HashMap<i64, Vec<CommandError>>, StoreError> {
        let rows = sqlx::query(
            "SELECT command_id, kind, content FROM terminal_errors
             WHERE sn = $1 AND command_id IS NOT NULL ORDER BY id",
        )
        .bind(sn)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        let mut out: HashMap<i64, Vec<CommandError>> = HashMap::new();
        for r in &rows {
            out.entry(r.col("command_id")?)
                .or_default()
                .push(CommandError {
                    kind: r.col("kind")?,
                    content: r.col("content")?,
                });
        }
        Ok(out)
    }

    /// Error logs, newest first (`sn` filters; `None` = all).
    pub async fn error_logs(&self, sn: Option<&str>) -> Result<Vec<ErrorLogOut>, StoreError> {
        let rows = match sn {
            Some(sn) => sqlx::query(
                "SELECT sn, kind, content, command_id FROM terminal_errors WHERE sn = $1 ORDER BY id DESC",
            )
            .bind(sn)
            .fetch_all(&self.pool)
            .await,
            None => sqlx::query(
                "SELECT sn, kind, content, command_id FROM terminal_errors ORDER BY id DESC",
            )
            .fetch_all(&self.pool)
            .await,
        }
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(ErrorLogOut {
                    sn: r.col("sn")?,
                    kind: r.col("kind")?,
                    content: r.col("content")?,
                    command_id: r.col("command_id")?,
                })
            })
            .collect()
    }

    /// Records users a terminal reported, in one transaction.
    pub async fn add_seen_users(
        &self,
        sn: &str,
        users: &[SeenUser],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        for u in users {
            sqlx::query(
                "INSERT INTO terminal_users_seen (sn, pin, name, pri, card, raw, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (sn, pin) DO UPDATE SET name = excluded.name, pri = excluded.pri, card = excluded.card,
                    raw = excluded.raw, seen_at = excluded.seen_at",
            )
            .bind(sn)
            .bind(&u.pin)
            .bind(&u.name)
            .bind(&u.pri)
            .bind(&u.card)
            .bind(&u.raw)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        tx.commit().await.map_err(se)
    }

    async fn insert_punch_chunk(
        tx: &mut Transaction<'_, Any>,
        sn: &str,
        source: &str,
        chunk: &[PunchRow],
        now: i64,
    ) -> StoreResult<u64> {
        let values = (0..chunk.len())
            .map(|i| {
                let b = 4 + i * 8;
                format!("($1, {}, $2, $3)", placeholders(b, 8))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO punches (sn, pin, local_time, at, status, verify, workcode, reserved1, reserved2, source, received_at)
             VALUES {values} ON CONFLICT (sn, pin, local_time) DO NOTHING"
        );
        // Row layout: ($1 sn, the row's 8 values, $2 source, $3 received_at).
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sn)
            .bind(source)
            .bind(now);
        for p in chunk {
            q = q
                .bind(&p.pin)
                .bind(&p.local_time)
                .bind(p.at)
                .bind(p.status)
                .bind(p.verify)
                .bind(&p.workcode)
                .bind(&p.reserved1)
                .bind(&p.reserved2);
        }
        Ok(q.execute(&mut **tx).await.map_err(se)?.rows_affected())
    }
}

#[async_trait]
impl TerminalStore for Db {
    async fn terminal(&self, sn: &str) -> StoreResult<Option<TerminalRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TERMINAL_COLS} FROM terminals WHERE sn = $1"
        )))
        .bind(sn)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(terminal_from_row).transpose()
    }

    async fn touch_terminal(&self, sn: &str, via: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE terminals SET last_seen_at = $1, last_seen_via = $2 WHERE sn = $3")
            .bind(now)
            .bind(via)
            .bind(sn)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    async fn ingest_punches(
        &self,
        sn: &str,
        source: &str,
        punches: &[PunchRow],
        bad: &[Quarantined],
        now: i64,
    ) -> StoreResult<u64> {
        let mut inserted = 0;
        let rows_per_statement = match self.backend {
            super::Backend::Sqlite => PUNCH_CHUNK_SQLITE,
            super::Backend::Postgres => PUNCH_CHUNK_PG,
        };
        // One transaction per batch, not per sync: SQLite has a single connection, and a
        // 50,000-punch sync must not hold billing ticks back for its whole length. The
        // inserts are idempotent, so a sync that fails halfway is simply re-sent; the
        // caller answers OK only after every batch is committed.
        for batch in punches.chunks(PUNCH_TX_BATCH) {
            let mut tx = self.pool.begin().await.map_err(se)?;
            for chunk in batch.chunks(rows_per_statement) {
                inserted += Db::insert_punch_chunk(&mut tx, sn, source, chunk, now).await?;
            }
            tx.commit().await.map_err(se)?;
        }
        let mut tx = self.pool.begin().await.map_err(se)?;
        for q in bad {
            sqlx::query(
                "INSERT INTO punch_quarantine (sn, source, raw, reason, received_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (sn, raw) DO NOTHING",
            )
            .bind(sn)
            .bind(source)
            .bind(&q.raw)
            .bind(&q.reason)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        tx.commit().await.map_err(se)?;
        Ok(inserted)
    }

    async fn enqueue_command(&self, c: &NewCommand, now: i64) -> StoreResult<CommandRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO terminal_commands (sn, name, channel, args, destructive, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COMMAND_COLS}"
        )))
        .bind(&c.sn)
        .bind(&c.name)
        .bind(c.channel.as_str())
        .bind(&c.args)
        .bind(i64::from(c.destructive))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        command_from_row(&row)
    }

    async fn take_bridge_commands(&self, sn: &str, now: i64) -> StoreResult<Vec<CommandRow>> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        queue_updatestd_if_moved(&mut tx, sn, now).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE terminal_commands SET state = 'sent', attempts = attempts + 1, sent_at = $1, via = 'bridge'
             WHERE sn = $2 AND channel = 'bridge' AND state = 'pending' AND name <> 'reprovision'
             RETURNING {COMMAND_COLS}"
        )))
        .bind(now)
        .bind(sn)
        .fetch_all(&mut *tx)
        .await
        .map_err(se)?;
        tx.commit().await.map_err(se)?;
        let mut out = rows
            .iter()
            .map(command_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    async fn take_reprovision(&self, sn: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE terminal_commands SET state = 'sent', attempts = attempts + 1, sent_at = $1
             WHERE sn = $2 AND name = 'reprovision' AND state = 'pending'",
        )
        .bind(now)
        .bind(sn)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(done.rows_affected() > 0)
    }

    async fn sync_native_roster(&self, sn: &str, now: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM roster WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(se)?;
        let had: Option<i64> =
            sqlx::query_scalar("SELECT native_roster_version FROM terminals WHERE sn = $1")
                .bind(sn)
                .fetch_optional(&mut *tx)
                .await
                .map_err(se)?;
        let Some(had) = had.filter(|h| *h < version) else {
            return Ok(0);
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STAFF_COLS}, (SELECT COUNT(*) FROM staff_terminals st WHERE st.pin = staff.pin AND st.sn = $2) AS linked
             FROM staff WHERE version > $1 ORDER BY version"
        )))
        .bind(had)
        .bind(sn)
        .fetch_all(&mut *tx)
        .await
        .map_err(se)?;
        let mut queued = 0;
        for r in &rows {
            let s = staff_from_row(r)?;
            let linked: i64 = r.col("linked")?;
            let here = !s.deleted && (s.all_terminals || linked > 0);
            let (name, args) = if here {
                (
                    "DATA UPDATE USERINFO",
                    json!({"PIN": s.pin, "Name": s.name, "Pri": s.pri.to_string(), "Passwd": s.passwd,
                           "Card": s.card, "Grp": s.grp, "TZ": s.tz}),
                )
            } else if had > 0 {
                ("DATA DELETE USERINFO", json!({"PIN": s.pin}))
            } else {
                // Never provisioned: nothing to delete.
                continue;
            };
            sqlx::query(
                "INSERT INTO terminal_commands (sn, name, channel, args, created_at) VALUES ($1, $2, 'native', $3, $4)",
            )
            .bind(sn)
            .bind(name)
            .bind(args.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
            queued += 1;
        }
        sqlx::query("UPDATE terminals SET native_roster_version = $1 WHERE sn = $2")
            .bind(version)
            .bind(sn)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        tx.commit().await.map_err(se)?;
        Ok(queued)
    }

    async fn take_native_commands(
        &self,
        sn: &str,
        now: i64,
        ack_timeout_ms: i64,
        max_attempts: i64,
        limit: i64,
    ) -> StoreResult<Vec<CommandRow>> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        let stale = now - ack_timeout_ms;
        sqlx::query(
            "UPDATE terminal_commands SET state = 'failed', result = 'no result after the last attempt', acked_at = $1
             WHERE sn = $2 AND channel = 'native' AND state = 'sent' AND destructive = 0
               AND COALESCE(via, 'native') = 'native' AND attempts >= $3 AND sent_at <= $4",
        )
        .bind(now)
        .bind(sn)
        .bind(max_attempts)
        .bind(stale)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        let due: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM terminal_commands
             WHERE sn = $1 AND channel = 'native'
               AND (state = 'pending' OR (state = 'sent' AND destructive = 0 AND COALESCE(via, 'native') = 'native'
                    AND attempts < $2 AND sent_at <= $3))
             ORDER BY id LIMIT {}",
            limit.max(0)
        )))
        .bind(sn)
        .bind(max_attempts)
        .bind(stale)
        .fetch_all(&mut *tx)
        .await
        .map_err(se)?;
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            // The wire id carries the attempt in its last digit, so a late result of an
            // earlier attempt is recognised as such.
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE terminal_commands SET state = 'sent', attempts = attempts + 1, sent_at = $1, via = 'native',
                    wire_id = CAST(id * 10 + attempts + 1 AS TEXT)
                 WHERE id = $2 RETURNING {COMMAND_COLS}"
            )))
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(se)?;
            out.push(command_from_row(&row)?);
        }
        tx.commit().await.map_err(se)?;
        Ok(out)
    }

    async fn take_ws_commands(
        &self,
        sn: &str,
        now: i64,
        redeliver_before: i64,
        max_attempts: i64,
        limit: i64,
    ) -> StoreResult<Vec<CommandRow>> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        queue_updatestd_if_moved(&mut tx, sn, now).await?;
        sqlx::query(
            "UPDATE terminal_commands SET state = 'failed', result = 'never acknowledged by the bridge', acked_at = $1
             WHERE sn = $2 AND via = 'ws' AND state = 'sent' AND delivered_at IS NULL AND destructive = 0
               AND attempts >= $3 AND sent_at < $4",
        )
        .bind(now)
        .bind(sn)
        .bind(max_attempts)
        .bind(redeliver_before)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        let due: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM terminal_commands
             WHERE sn = $1 AND name <> 'reprovision'
               AND (state = 'pending' OR (state = 'sent' AND via = 'ws' AND delivered_at IS NULL
                    AND destructive = 0 AND attempts < $3 AND sent_at < $2))
             ORDER BY id LIMIT {}",
            limit.max(0)
        )))
        .bind(sn)
        .bind(redeliver_before)
        .bind(max_attempts)
        .fetch_all(&mut *tx)
        .await
        .map_err(se)?;
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE terminal_commands SET state = 'sent', attempts = attempts + 1, sent_at = $1, via = 'ws',
                    delivered_at = NULL, wire_id = NULL
                 WHERE id = $2 RETURNING {COMMAND_COLS}"
            )))
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(se)?;
            out.push(command_from_row(&row)?);
        }
        tx.commit().await.map_err(se)?;
        Ok(out)
    }

    async fn mark_delivered(&self, sn: &str, id: i64, attempt: i64, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE terminal_commands SET delivered_at = $1
             WHERE sn = $2 AND id = $3 AND via = 'ws' AND attempts = $4 AND delivered_at IS NULL",
        )
        .bind(now)
        .bind(sn)
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(done.rows_affected() > 0)
    }

    async fn command(&self, sn: &str, id: i64) -> StoreResult<Option<CommandRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COMMAND_COLS} FROM terminal_commands WHERE sn = $1 AND id = $2"
        )))
        .bind(sn)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(command_from_row).transpose()
    }

    async fn finish_command(
        &self,
        sn: &str,
        id: i64,
        attempt: i64,
        acked: bool,
        code: i64,
        result: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        // A success of any attempt confirms; a failure only counts for the latest one.
        let done = sqlx::query(
            "UPDATE terminal_commands SET state = $1, return_code = $2, result = $3, acked_at = $4
             WHERE sn = $5 AND id = $6 AND state = 'sent' AND ($7 = 1 OR attempts = $8)",
        )
        .bind(if acked { "acked" } else { "failed" })
        .bind(code)
        .bind(result)
        .bind(now)
        .bind(sn)
        .bind(id)
        .bind(i64::from(acked))
        .bind(attempt)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        let changed = done.rows_affected() > 0;
        if changed && !acked {
            sqlx::query(
                "INSERT INTO terminal_errors (sn, kind, content, command_id, received_at) VALUES ($1, 'CMD_FAILED', $2, $3, $4)",
            )
            .bind(sn)
            .bind(format!("return {code}: {result}"))
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        tx.commit().await.map_err(se)?;
        Ok(changed)
    }

    async fn set_terminal_stamp(
        &self,
        sn: &str,
        table: StampTable,
        stamp: &str,
    ) -> StoreResult<()> {
        let sql = match table {
            StampTable::AttLog => "UPDATE terminals SET attlog_stamp = $1 WHERE sn = $2",
            StampTable::OperLog => "UPDATE terminals SET operlog_stamp = $1 WHERE sn = $2",
        };
        sqlx::query(sql)
            .bind(stamp)
            .bind(sn)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    async fn set_terminal_info(&self, sn: &str, info: &str) -> StoreResult<()> {
        sqlx::query("UPDATE terminals SET info = $1 WHERE sn = $2")
            .bind(info)
            .bind(sn)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    async fn terminals_seen_since(&self, since: i64) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM terminals WHERE last_seen_at >= $1")
            .bind(since)
            .fetch_one(&self.pool)
            .await
            .map_err(se)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db(dir: &tempfile::TempDir) -> Db {
        Db::connect(&format!("sqlite://{}/k.db", dir.path().display()), 1)
            .await
            .unwrap()
    }

    /// An unknown stored channel, state or terminal kind is an error naming the column
    /// and the value (an unknown channel used to read as `native`).
    #[tokio::test]
    async fn unknown_stored_enums_are_corrupt_not_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        db.add_terminal("T1", "h", "t", "+0800", 1).await.unwrap();
        let c = db
            .enqueue_command(
                &NewCommand {
                    sn: "T1".into(),
                    name: "INFO".into(),
                    args: "{}".into(),
                    channel: Channel::Native,
                    destructive: false,
                },
                1,
            )
            .await
            .unwrap();
        assert_eq!(db.command("T1", c.id).await.unwrap().unwrap(), c);
        // The columns have CHECK constraints; SQLite lets a test bypass them (one
        // connection, so the pragma holds for the updates).
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE terminal_commands SET channel = 'radio' WHERE id = $1")
            .bind(c.id)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.command("T1", c.id).await.unwrap_err(),
            StoreError::corrupt("terminal_commands.channel", "radio")
        );
        assert_eq!(
            db.list_commands("T1").await.unwrap_err(),
            StoreError::corrupt("terminal_commands.channel", "radio")
        );
        sqlx::query(
            "UPDATE terminal_commands SET channel = 'native', state = 'lost' WHERE id = $1",
        )
        .bind(c.id)
        .execute(db.pool())
        .await
        .unwrap();
        assert_eq!(
            db.command("T1", c.id).await.unwrap_err(),
            StoreError::corrupt("terminal_commands.state", "lost")
        );
        assert_eq!(
            db.terminal_iclock("T1").await.unwrap().map(|t| t.bridge),
            Some(false)
        );
        sqlx::query("UPDATE terminals SET kind = 'usb' WHERE sn = 'T1'")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.terminal_iclock("T1").await.unwrap_err(),
            StoreError::corrupt("terminals.kind", "usb")
        );
    }
}
