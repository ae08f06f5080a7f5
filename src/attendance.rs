//! Operator actions on attendance shared by the ops API (`/ops/terminals`, `/ops/staff`)
//! and the CLI (`kioskd terminal ...`, `kioskd staff ...`): the same checks and the same
//! store calls, so both ways in refuse the same input with the same message.

use kioskd_actors::terminal::{
    CommandRow, NewCommand, TerminalRecord, TerminalStore, command_spec, parse_zone, valid_pin,
};
use serde_json::{Map, Value};

use crate::http::attendance::token_hash;
use crate::store::{Db, NewStaff, WriteError};

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
    #[error("storage: {0}")]
    Store(String),
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
        Err(e) => Err(OpError::Store(e.to_string())),
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
        Err(e) => Err(OpError::Store(e.to_string())),
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
        Err(e) => Err(OpError::Store(e.to_string())),
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
        Err(e) => return Err(OpError::Store(e.to_string())),
    }
    let cmd = NewCommand {
        sn: sn.to_string(),
        name: name.to_string(),
        args: Value::Object(args).to_string(),
        channel: spec.channel,
        destructive: spec.destructive,
    };
    db.enqueue_command(&cmd, now)
        .await
        .map_err(|e| OpError::Store(e.to_string()))
}
