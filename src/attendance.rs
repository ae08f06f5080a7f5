//! Attendance below the adapters. Operator actions shared by the ops API
//! (`/ops/terminals`, `/ops/staff`) and the CLI (`kioskd terminal ...`, `kioskd staff
//! ...`): the same checks and the same store calls, so both ways in refuse the same input
//! with the same message. And the terminals' side: bridge authentication by token hash,
//! the native (`/iclock`) handshake, trust and command poll, punches stored in batches,
//! rosters, and the error logs both kinds upload.

use kioskd_actors::ports::StoreError;
use kioskd_actors::terminal::{
    CommandRow, IngestCounts, NativeCommand, NewCommand, Quarantined, RawPunch, TermError,
    TerminalRecord, TerminalStore, Terminals, command_spec, parse_zone, valid_pin,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::services::Services;
use crate::store::{
    CommandError, Db, ErrorLogOut, IclockTrust, NewStaff, PunchOut, QuarantineOut, Roster,
    StaffEntry, TerminalListing, WriteError,
};

pub use crate::store::{NewErrorLog, PunchFilter, SeenUser, StaffRow, TerminalCounts};

/// A terminal command with the error logs linked to it.
#[derive(Debug, Clone)]
pub struct CommandWithErrors {
    /// The command.
    pub command: CommandRow,
    /// Its linked error logs, oldest first.
    pub errors: Vec<CommandError>,
}

/// SHA-256 hex of a bridge token (what the terminals table keeps).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Why an attendance operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Bad input; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The terminal (or staff member) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The SN is taken.
    #[error("a terminal with this sn exists")]
    Exists,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(m: &str) -> OpError {
    OpError::Invalid(m.to_string())
}

/// A terminal serial number: 1-64 letters, digits, `-` or `_` (never `all_devices`).
pub fn valid_sn(sn: &str) -> bool {
    !sn.is_empty()
        && sn.len() <= 64
        && sn != "all_devices"
        && sn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Registers a terminal; `zone` defaults to the server's wire zone.
pub async fn register_terminal(
    db: &Db,
    sn: &str,
    token: &str,
    name: Option<&str>,
    zone: Option<&str>,
    default_zone: &str,
    now: i64,
) -> Result<TerminalRecord, OpError> {
    if !valid_sn(sn) {
        return Err(invalid(
            "sn must be 1-64 letters, digits, - or _ (and not all_devices)",
        ));
    }
    if token.len() < 8 || token.len() > 128 || !token.is_ascii() {
        return Err(invalid("token must be 8-128 ASCII characters"));
    }
    let name = name.unwrap_or("");
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name must be at most 100 characters without control characters",
        ));
    }
    let zone = zone.unwrap_or(default_zone);
    if parse_zone(zone).is_none() {
        return Err(invalid(
            "timezone must be an IANA zone such as Asia/Shanghai",
        ));
    }
    match db
        .add_terminal(sn, &token_hash(token), name, zone, now)
        .await
    {
        Ok(t) => Ok(t),
        Err(WriteError::Conflict) => Err(OpError::Exists),
        Err(e) => Err(OpError::Store(e)),
    }
}

/// Checks staff input (the same rules for the ops API and the CLI).
#[allow(clippy::too_many_arguments)]
pub fn check_staff(
    pin: String,
    name: String,
    pri: i64,
    passwd: Option<String>,
    card: Option<String>,
    grp: Option<String>,
    tz: Option<String>,
    terminals: Option<Vec<String>>,
) -> Result<NewStaff, OpError> {
    if !valid_pin(&pin) {
        return Err(invalid("pin must be 1-24 letters or digits"));
    }
    if name.trim().is_empty() || name.chars().count() > 24 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name must be 1-24 characters without control characters",
        ));
    }
    if ![0, 2, 6, 10, 14].contains(&pri) {
        return Err(invalid(
            "pri must be 0 (user), 2, 6, 10 or 14 (super admin)",
        ));
    }
    let passwd = passwd.unwrap_or_default();
    if passwd.len() > 16 || !passwd.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("passwd must be at most 16 digits"));
    }
    let card = card.unwrap_or_default();
    if card.len() > 32
        || !card
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'[' || b == b']')
    {
        return Err(invalid("card must be at most 32 digits (or [hex])"));
    }
    let grp = grp.unwrap_or_else(|| "1".into());
    if grp.is_empty() || grp.len() > 3 || !grp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("grp must be 1-3 digits"));
    }
    let tz = tz.unwrap_or_else(|| "0000000000000000".into());
    if tz.len() != 16 || !tz.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("tz must be 16 digits"));
    }
    if let Some(ts) = &terminals
        && (ts.len() > 1000 || !ts.iter().all(|t| valid_sn(t)))
    {
        return Err(invalid("terminals must be a list of terminal sn"));
    }
    Ok(NewStaff {
        pin,
        name,
        pri,
        passwd,
        card,
        grp,
        tz,
        terminals,
    })
}

/// Adds or replaces a staff member; returns the new roster version.
pub async fn put_staff(db: &Db, s: &NewStaff, now: i64) -> Result<i64, OpError> {
    match db.put_staff(s, now).await {
        Ok(v) => Ok(v),
        Err(WriteError::NotFound) => Err(invalid("terminals lists an unknown sn")),
        Err(e) => Err(OpError::Store(e)),
    }
}

/// Deletes a staff member; returns the new roster version.
pub async fn delete_staff(db: &Db, pin: &str, now: i64) -> Result<i64, OpError> {
    if !valid_pin(pin) {
        return Err(invalid("pin must be 1-24 letters or digits"));
    }
    match db.delete_staff(pin, now).await {
        Ok(v) => Ok(v),
        Err(WriteError::NotFound) => Err(OpError::NotFound("no such staff member".into())),
        Err(e) => Err(OpError::Store(e)),
    }
}

/// Queues a command straight in storage (the CLI, with no server in the process; a
/// running server's actors read the queue on the terminal's next poll).
pub async fn queue_command(
    db: &Db,
    sn: &str,
    name: &str,
    args: Map<String, Value>,
    now: i64,
) -> Result<CommandRow, OpError> {
    let spec = command_spec(name, &args).map_err(OpError::Invalid)?;
    match db.terminal(sn).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(OpError::NotFound("no such terminal".into())),
        Err(e) => return Err(OpError::Store(e)),
    }
    let cmd = NewCommand {
        sn: sn.to_string(),
        name: name.to_string(),
        args: Value::Object(args).to_string(),
        channel: spec.channel,
        destructive: spec.destructive,
    };
    db.enqueue_command(&cmd, now).await.map_err(OpError::Store)
}

fn store(e: StoreError) -> TermError {
    TermError::Store(e)
}

// ---- the ops API -------------------------------------------------------------------

/// A native terminal polls every `Delay` seconds; allow a few missed polls.
pub const NATIVE_SILENT_AFTER_MS: i64 = 6 * POLL_DELAY_SECONDS * 1000;
/// The legacy bridge asks for commands once an hour; allow one missed poll.
pub const BRIDGE_SILENT_AFTER_MS: i64 = 2 * 3600 * 1000;
/// Seconds between `getrequest` polls native terminals are asked for (command latency).
pub const POLL_DELAY_SECONDS: i64 = 10;

/// How long a terminal may stay silent (by the way it was last heard), and whether it
/// has been silent longer at `now`.
pub fn silence(t: &TerminalRecord, now: i64) -> (bool, i64) {
    let expected = match t.last_seen_via.as_deref() {
        Some("iclock") => NATIVE_SILENT_AFTER_MS,
        _ => BRIDGE_SILENT_AFTER_MS,
    };
    (
        t.last_seen_at.is_none_or(|at| now - at > expected),
        expected,
    )
}

/// `native` → false, `bridge` → true; a comm key is 1-64 printable ASCII characters.
pub fn iclock_settings(
    kind: Option<&str>,
    key: Option<&str>,
) -> Result<(bool, Option<String>), OpError> {
    let bridge = match kind {
        None | Some("native") => false,
        Some("bridge") => true,
        Some(_) => return Err(invalid("kind must be \"native\" or \"bridge\"")),
    };
    let key = key.filter(|k| !k.is_empty());
    if key.is_some_and(|k| k.len() > 64 || !k.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(invalid("comm_key must be 1-64 printable ASCII characters"));
    }
    Ok((bridge, key.map(str::to_string)))
}

/// A terminal registration from the ops API.
#[derive(Debug, Clone, Default)]
pub struct NewTerminal {
    /// Serial number.
    pub sn: String,
    /// The bridge token (kept hashed).
    pub token: String,
    /// Display name.
    pub name: Option<String>,
    /// IANA zone (default: the wire zone).
    pub timezone: Option<String>,
    /// `native` (default) or `bridge`.
    pub kind: Option<String>,
    /// The `pushcommkey` a native handshake must carry.
    pub comm_key: Option<String>,
}

/// Registers a terminal with how it may use `/iclock`.
pub async fn add_terminal(s: &Services, t: NewTerminal) -> Result<TerminalRecord, OpError> {
    let (bridge, key) = iclock_settings(t.kind.as_deref(), t.comm_key.as_deref())?;
    let now = s.terminals.clock().now_ms();
    let r = register_terminal(
        &s.db,
        &t.sn,
        &t.token,
        t.name.as_deref(),
        t.timezone.as_deref(),
        s.tz.name(),
        now,
    )
    .await;
    if let Ok(t) = &r
        && (bridge || key.is_some())
    {
        s.db.set_terminal_iclock(&t.sn, bridge, key.as_deref())
            .await?;
    }
    r
}

/// How a terminal may use `/iclock` (a new comm key must be presented again before
/// user secrets are sent). Returns whether a comm key is set.
pub async fn set_iclock(
    s: &Services,
    sn: &str,
    kind: &str,
    comm_key: Option<&str>,
) -> Result<bool, OpError> {
    let (bridge, key) = iclock_settings(Some(kind), comm_key)?;
    if s.db.set_terminal_iclock(sn, bridge, key.as_deref()).await? {
        Ok(key.is_some())
    } else {
        Err(OpError::NotFound("no such terminal".into()))
    }
}

/// Every terminal with its counts.
pub async fn terminals(s: &Services) -> Result<Vec<TerminalListing>, OpError> {
    Ok(s.db.list_terminals().await?)
}

async fn known_terminal(s: &Services, sn: &str) -> Result<(), OpError> {
    match s.db.terminal(sn).await? {
        Some(_) => Ok(()),
        None => Err(OpError::NotFound("no such terminal".into())),
    }
}

/// A terminal's commands, each with the error logs linked to it.
pub async fn commands(s: &Services, sn: &str) -> Result<Vec<CommandWithErrors>, OpError> {
    known_terminal(s, sn).await?;
    let (cs, logs) = (s.db.list_commands(sn).await, s.db.command_errors(sn).await);
    let (cs, mut logs) = (cs?, logs?);
    Ok(cs
        .into_iter()
        .map(|command| CommandWithErrors {
            errors: logs.remove(&command.id).unwrap_or_default(),
            command,
        })
        .collect())
}

/// A terminal's quarantined lines.
pub async fn quarantine(s: &Services, sn: &str) -> Result<Vec<QuarantineOut>, OpError> {
    known_terminal(s, sn).await?;
    Ok(s.db.quarantined(sn).await?)
}

/// A terminal's error logs, newest first.
pub async fn error_logs(s: &Services, sn: &str) -> Result<Vec<ErrorLogOut>, OpError> {
    known_terminal(s, sn).await?;
    Ok(s.db.error_logs(Some(sn)).await?)
}

/// A page of punches: the total and the rows.
pub async fn punches(
    s: &Services,
    f: &PunchFilter,
    page: i64,
    size: i64,
) -> Result<(i64, Vec<PunchOut>), OpError> {
    Ok(s.db.punches(f, page, size).await?)
}

/// Checks, stores and announces a staff member (the terminals' actors push the new
/// roster). Returns the checked row and the new roster version.
#[allow(clippy::too_many_arguments)]
pub async fn save_staff(
    s: &Services,
    pin: String,
    name: String,
    pri: i64,
    passwd: Option<String>,
    card: Option<String>,
    grp: Option<String>,
    tz: Option<String>,
    terminals: Option<Vec<String>>,
) -> Result<(NewStaff, i64), OpError> {
    let st = check_staff(pin, name, pri, passwd, card, grp, tz, terminals)?;
    let version = put_staff(&s.db, &st, s.terminals.clock().now_ms()).await?;
    s.terminals.roster_changed();
    Ok((st, version))
}

/// Deletes and announces a staff member; returns the new roster version.
pub async fn remove_staff(s: &Services, pin: &str) -> Result<i64, OpError> {
    let version = delete_staff(&s.db, pin, s.terminals.clock().now_ms()).await?;
    s.terminals.roster_changed();
    Ok(version)
}

/// The whole roster (each member with the terminals it is limited to) and its version.
pub async fn staff(s: &Services) -> Result<(Vec<StaffEntry>, i64), OpError> {
    let (all, version) = (s.db.all_staff().await, s.db.roster_version().await);
    Ok((all?, version?))
}

// ---- the terminals' side -----------------------------------------------------------

/// The terminals a bridge token serves (none: the token is wrong).
pub async fn terminals_for_token(
    s: &Services,
    token: &str,
) -> Result<Vec<TerminalRecord>, StoreError> {
    s.db.terminals_by_token(&token_hash(token)).await
}

/// Stores punches in transactions of `batch` records, one after another, so other
/// requests reach the database between them. A failure part way leaves the earlier
/// batches stored; the sender re-sends and duplicates count as such.
pub async fn ingest_batched(
    terminals: &Terminals,
    sn: &str,
    source: &'static str,
    good: Vec<RawPunch>,
    bad: Vec<Quarantined>,
    batch: usize,
) -> Result<IngestCounts, TermError> {
    let mut total = IngestCounts::default();
    let mut good = good.into_iter().peekable();
    let mut bad = bad.into_iter().peekable();
    loop {
        let g: Vec<RawPunch> = good.by_ref().take(batch).collect();
        let b: Vec<Quarantined> = bad.by_ref().take(batch).collect();
        let c = terminals.ingest(sn, source, g, b).await?;
        total.inserted += c.inserted;
        total.duplicates += c.duplicates;
        total.quarantined += c.quarantined;
        if good.peek().is_none() && bad.peek().is_none() {
            return Ok(total);
        }
    }
}

/// The roster for some terminals.
pub async fn roster_for(s: &Services, sns: &[String]) -> Result<Roster, StoreError> {
    s.db.roster_for(sns).await
}

/// The roster's version.
pub async fn roster_version(s: &Services) -> Result<i64, StoreError> {
    s.db.roster_version().await
}

/// Stores uploaded error logs; failures a log reports about a command count as failed
/// commands (the metric).
pub async fn add_error_logs(s: &Services, logs: &[NewErrorLog]) -> Result<(), StoreError> {
    let now = s.terminals.clock().now_ms();
    let failed = s.db.add_error_logs(logs, now).await?;
    metrics::counter!(kioskd_actors::catalog::ATT_COMMANDS, "outcome" => "failed")
        .increment(failed);
    Ok(())
}

/// Is this SN registered as behind a bridge (and so refused on `/iclock`)?
pub async fn is_bridge_terminal(s: &Services, sn: &str) -> Result<bool, TermError> {
    Ok(s.db
        .terminal_iclock(sn)
        .await
        .map_err(store)?
        .is_some_and(|t| t.bridge))
}

/// Has this terminal proven itself from `peer`? Only when it has a comm key and its last
/// handshake from this very address carried it (`docs/security-legacy.md`: the iclock
/// protocol has no other proof).
pub fn proven(t: &Option<IclockTrust>, peer: &std::net::IpAddr) -> bool {
    t.as_ref().is_some_and(|t| {
        t.comm_key.is_some() && t.proven_addr.as_deref() == Some(peer.to_string().as_str())
    })
}

/// What a native terminal's handshake learns: its zone and upload stamps.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The terminal's zone (the wire zone for an unregistered one).
    pub zone: chrono_tz::Tz,
    /// The ATTLOG stamp.
    pub attlog: Option<String>,
    /// The OPERLOG stamp.
    pub operlog: Option<String>,
}

/// A native terminal's handshake. The comm key, when configured, must come with it (the
/// only place the protocol carries it; the address that presented it is the proven
/// terminal); a wrong one is `NoSuchTerminal`. `options_only` (a `RemoteAtt` request)
/// checks the key and stops there. An unregistered terminal still gets a handshake (its
/// uploads are refused, so it keeps its records until an operator registers it).
pub async fn handshake(
    s: &Services,
    sn: &str,
    given_key: Option<&str>,
    peer: std::net::IpAddr,
    language: Option<&str>,
    options_only: bool,
) -> Result<Option<Handshake>, TermError> {
    use subtle::ConstantTimeEq;
    if let Some(t) = s.db.terminal_iclock(sn).await.map_err(store)?
        && let Some(key) = &t.comm_key
    {
        let given = given_key.unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            return Err(TermError::NoSuchTerminal);
        }
        let addr = peer.to_string();
        if t.proven_addr.as_deref() != Some(addr.as_str()) {
            s.db.set_terminal_proven(sn, &addr).await.map_err(store)?;
        }
    }
    if options_only {
        return Ok(None);
    }
    match s.terminals.heard(sn, "iclock").await {
        Ok(t) => {
            if let Some(lang) = language.filter(|l| l.len() <= 8) {
                s.db.set_terminal_language(sn, lang).await.map_err(store)?;
            }
            Ok(Some(Handshake {
                zone: parse_zone(&t.timezone).unwrap_or(s.tz),
                attlog: t.attlog_stamp,
                operlog: t.operlog_stamp,
            }))
        }
        Err(TermError::NoSuchTerminal) => Ok(Some(Handshake {
            zone: s.tz,
            attlog: None,
            operlog: None,
        })),
        Err(e) => Err(e),
    }
}

/// The handshake `language` of Chinese firmware, which reads names as GB2312/GBK.
pub const CHINESE: &str = "83";

/// A native poll's commands.
#[derive(Debug, Clone)]
pub struct Poll {
    /// The commands to send (none: answer `OK`).
    pub commands: Vec<NativeCommand>,
    /// The terminal proved itself from this address (user secrets may go out).
    pub trusted: bool,
    /// Chinese firmware: names travel as GBK.
    pub gbk: bool,
}

/// A native terminal's command poll (`info` is its status line). An unregistered
/// terminal gets nothing.
pub async fn native_poll(
    s: &Services,
    sn: &str,
    peer: std::net::IpAddr,
    info: Option<String>,
) -> Result<Poll, TermError> {
    let trust = s.db.terminal_iclock(sn).await.map_err(store)?;
    let trusted = proven(&trust, &peer);
    let commands = match s.terminals.native_poll(sn, info).await {
        Ok(c) => c,
        Err(TermError::NoSuchTerminal) => Vec::new(),
        Err(e) => return Err(e),
    };
    let gbk = if commands.is_empty() {
        false
    } else {
        s.db.terminal_language(sn).await.map_err(store)?.as_deref() == Some(CHINESE)
    };
    Ok(Poll {
        commands,
        trusted,
        gbk,
    })
}

/// Records the users a terminal reported (keypad enrolments).
pub async fn seen_users(s: &Services, sn: &str, users: &[SeenUser]) -> Result<(), TermError> {
    let now = s.terminals.clock().now_ms();
    s.db.add_seen_users(sn, users, now).await.map_err(store)
}

/// Stores a native terminal's error-log lines; how many.
pub async fn native_error_logs(s: &Services, sn: &str, lines: &str) -> Result<usize, TermError> {
    let logs: Vec<NewErrorLog> = lines
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .map(|l| NewErrorLog {
            sn: Some(sn.to_string()),
            kind: "ERRORLOG".into(),
            content: l.chars().take(4000).collect(),
            device_time: None,
        })
        .collect();
    let now = s.terminals.clock().now_ms();
    s.db.add_error_logs(&logs, now).await.map_err(store)?;
    Ok(logs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iclock_settings_take_native_or_bridge_and_a_printable_key() {
        assert_eq!(iclock_settings(None, None).unwrap(), (false, None));
        assert_eq!(
            iclock_settings(Some("bridge"), Some("")).unwrap(),
            (true, None)
        );
        assert_eq!(
            iclock_settings(Some("native"), Some("k3y")).unwrap(),
            (false, Some("k3y".into()))
        );
        assert!(matches!(
            iclock_settings(Some("pi"), None),
            Err(OpError::Invalid(m)) if m.contains("native")
        ));
        assert!(iclock_settings(None, Some("a b")).is_err());
        assert!(iclock_settings(None, Some(&"k".repeat(65))).is_err());
    }

    #[test]
    fn a_terminal_is_silent_after_the_polls_its_kind_should_have_made() {
        let t = |via: &str, at: Option<i64>| TerminalRecord {
            last_seen_via: Some(via.into()),
            last_seen_at: at,
            id: 1,
            sn: "S".into(),
            token_hash: String::new(),
            name: String::new(),
            timezone: "UTC".into(),
            roster_version: 0,
            attlog_stamp: None,
            operlog_stamp: None,
            info: None,
            created_at: 0,
        };
        let now = 10_000_000;
        assert_eq!(
            silence(&t("iclock", Some(now - 1000)), now),
            (false, NATIVE_SILENT_AFTER_MS)
        );
        assert!(silence(&t("iclock", Some(now - NATIVE_SILENT_AFTER_MS - 1)), now).0);
        assert_eq!(
            silence(&t("bridge", Some(now - 3_600_000)), now),
            (false, BRIDGE_SILENT_AFTER_MS)
        );
        assert!(silence(&t("bridge", None), now).0);
        assert_eq!(token_hash("t").len(), 64);
    }
}
