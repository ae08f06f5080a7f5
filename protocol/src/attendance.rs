//! `/ws/attendance`, version 1: the acknowledged command protocol between kioskd and an
//! attendance bridge (the Raspberry Pi of seed 003, or any client that relays commands to
//! attendance terminals). JSON text frames `{"type": .., "data": {..}}`.
//!
//! The bridge authenticates at the upgrade with its token, says which terminals it serves
//! in `hello`, and then receives each terminal's commands as `command` frames the moment
//! they are queued. It answers `ack` (received and kept) and later `result` (what the
//! terminal said); kioskd answers both with `recorded` once they are stored. See
//! `protocol/ATTENDANCE.md` ("Bridge WebSocket") for the rules, close codes and examples.
//! Close codes are those of [`crate::ws::close`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Version of this protocol (`hello.version`).
pub const ATTENDANCE_WS_VERSION: u32 = 1;

/// Largest message the server accepts on `/ws/attendance` (bytes).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// A frame from the bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "data",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum BridgeMessage {
    /// First frame: the version spoken and the terminals served.
    Hello(Hello),
    /// A command was received and kept by the bridge: do not deliver it again.
    Ack(CommandRef),
    /// The terminal's answer to a command.
    Result(CommandResult),
    /// A sign of life (any frame counts; `data` omitted).
    Heartbeat,
}

/// `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the bridge speaks (1).
    pub version: u32,
    /// Serial numbers served (all of them must be registered with the token); absent or
    /// empty: every terminal registered with the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminals: Vec<String>,
    /// The bridge's own name, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// `ack`: names one delivery of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRef {
    /// Terminal.
    pub sn: String,
    /// Command id.
    pub id: i64,
    /// Delivery attempt (from the `command` frame).
    pub attempt: i64,
}

/// `result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Terminal.
    pub sn: String,
    /// Command id.
    pub id: i64,
    /// Delivery attempt (from the `command` frame).
    pub attempt: i64,
    /// The terminal's return code (iclock `Return=`: 0 or more is success).
    pub code: i64,
    /// The terminal's reply text (e.g. its `devicecmd` line and any payload).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "data",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome(Welcome),
    /// A command for one terminal.
    Command(Command),
    /// An `ack` or `result` was stored.
    Recorded(Recorded),
    /// A frame was refused (nothing changed).
    Error(ErrorMsg),
}

/// `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Protocol version of this connection.
    pub version: u32,
    /// Server clock (unix ms).
    pub server_time: i64,
    /// The terminals this connection serves.
    pub terminals: Vec<TerminalInfo>,
}

/// A terminal in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalInfo {
    /// Serial number.
    pub sn: String,
    /// IANA zone of its wall clock.
    pub timezone: String,
}

/// `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Terminal.
    pub sn: String,
    /// Command id (the one `GET /ops/terminals/<sn>/commands` shows).
    pub id: i64,
    /// Delivery attempt, from 1; a re-delivery after a reconnect has a higher one.
    pub attempt: i64,
    /// Catalogue name (`INFO`, `DATA UPDATE USERINFO`, `updatestd`, ...).
    pub name: String,
    /// Arguments.
    #[serde(default)]
    pub args: Map<String, Value>,
    /// For terminal commands: the iclock command line to relay (after `C:<id>:`).
    /// Absent for bridge-level commands (`updatestd`, `syncAttLog`, `getErroLog`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Destructive (`REBOOT`, `CLEAR ...`): never delivered again automatically.
    pub destructive: bool,
}

/// `recorded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// Terminal.
    pub sn: String,
    /// Command id.
    pub id: i64,
    /// Attempt named by the `ack` or `result`.
    pub attempt: i64,
    /// The command's state now: `sent` (after an `ack`: kept by the bridge, no result
    /// yet), `acked`, `failed`; or `ignored` (a duplicate or stale result: nothing
    /// changed).
    pub state: String,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// Machine-readable reason (`bad_message`, `unknown_terminal`, ...).
    pub code: String,
    /// Human-readable detail.
    pub reason: String,
}

impl ServerMessage {
    /// An `error` frame.
    pub fn error(code: &str, reason: impl Into<String>) -> Self {
        ServerMessage::Error(ErrorMsg {
            code: code.to_string(),
            reason: reason.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_has_no_data_and_unknown_types_are_refused() {
        let m: BridgeMessage = serde_json::from_str(r#"{"type":"heartbeat"}"#).unwrap();
        assert_eq!(m, BridgeMessage::Heartbeat);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"heartbeat"}"#
        );
        assert!(serde_json::from_str::<BridgeMessage>(r#"{"type":"nope","data":{}}"#).is_err());
        assert!(
            serde_json::from_str::<BridgeMessage>(r#"{"type":"ack","data":{"sn":"1"}}"#).is_err()
        );
        assert!(
            serde_json::from_str::<BridgeMessage>(
                r#"{"type":"ack","data":{"sn":"1","id":1,"attempt":1},"x":1}"#
            )
            .is_err()
        );
    }
}
