//! The realtime protocol (SPEC §9), version 1: JSON text frames
//! `{"type": .., "seq": n, "data": {..}}` over `/ws/kiosk`, `/ws/user` and `/ws/ops`.
//! `seq` is present on a kiosk's device events only (per device, increasing; `epoch`
//! names the sequence so a restarted server never passes new events off as old ones).
//! See `protocol/WS.md` for the message catalog, the close codes and examples.

use serde::{Deserialize, Serialize};

/// Version of this protocol; `hello` may name the version the client speaks.
pub const WS_PROTOCOL_VERSION: u32 = 1;

/// Close codes and what a client does on each.
pub mod close {
    /// Normal closure (the client asked). Do not reconnect.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down or restarting. Reconnect with backoff and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame (only text is spoken). Fix the client; do not reconnect blindly.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A message over the size limit (64 KiB). Fix the client.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error. Reconnect with backoff and resume.
    pub const INTERNAL: u16 = 1011;
    /// Another connection of the same device (or user) replaced this one. Do not
    /// reconnect: the newer connection is the live one.
    pub const REPLACED: u16 = 4001;
    /// The device was removed or is no longer allowed. Do not reconnect.
    pub const FORBIDDEN: u16 = 4003;
    /// The client did not keep up with its pushes. Reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Nothing heard within the idle timeout. Reconnect and resume.
    pub const IDLE_TIMEOUT: u16 = 4009;
    /// Too many malformed messages. Fix the client; reconnect only with backoff.
    pub const PROTOCOL_ERROR: u16 = 4010;
    /// The client sent more messages than `ws.messages_per_second` / `ws.message_burst`
    /// allow. Reconnect with backoff and send less.
    pub const RATE_LIMITED: u16 = 4029;

    /// Whether a client should reconnect after this code.
    pub fn should_reconnect(code: u16) -> bool {
        matches!(
            code,
            GOING_AWAY | INTERNAL | SLOW_CONSUMER | IDLE_TIMEOUT | PROTOCOL_ERROR | RATE_LIMITED
        )
    }
}

/// A message from a kiosk (or a phone / ops client, which only send `hello`, `heartbeat`
/// and `ack`). `data` may be omitted (or null) where every field is optional.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message after connecting: resume after `resume_from` of `epoch`.
    Hello(Hello),
    /// A sign of life (any frame counts; this one carries nothing: `data` omitted or null).
    Heartbeat,
    /// Everything up to and including `seq` was processed.
    Ack(Ack),
    /// The user logged out at the kiosk (`data` omitted or null).
    Logout,
    /// Game update state (`ing` / `finish`), as `PUT /windows/game/state`.
    GameState(GameStateMsg),
    /// Dialect B's `clientStatus` (a heartbeat with the kiosk's screen).
    ClientStatus(ClientStatusMsg),
}

impl<'de> Deserialize<'de> for ClientMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            data: serde_json::Value,
        }
        let raw = Raw::deserialize(d)?;
        let data = if raw.data.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            raw.data
        };
        let bad = |e: serde_json::Error| D::Error::custom(format!("{}: {e}", raw.kind));
        Ok(match raw.kind.as_str() {
            "hello" => ClientMessage::Hello(Hello::deserialize(data).map_err(bad)?),
            "heartbeat" => ClientMessage::Heartbeat,
            "ack" => ClientMessage::Ack(Ack::deserialize(data).map_err(bad)?),
            "logout" => ClientMessage::Logout,
            "game_state" => ClientMessage::GameState(GameStateMsg::deserialize(data).map_err(bad)?),
            "client_status" => {
                ClientMessage::ClientStatus(ClientStatusMsg::deserialize(data).map_err(bad)?)
            }
            other => return Err(D::Error::custom(format!("unknown message type {other:?}"))),
        })
    }
}

/// `hello`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hello {
    /// The last `seq` the client processed (absent: start fresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<u64>,
    /// The epoch that `resume_from` belongs to (from the last `snapshot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Protocol version the client speaks (absent: 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// `ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest processed sequence number.
    pub seq: u64,
    /// The epoch the sequence number belongs to (optional; when given and not the
    /// stream's current epoch the ack is refused with `stale_epoch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// `game_state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameStateMsg {
    /// `ing` or `finish`.
    pub update_state: crate::windows::UpdateState,
}

/// `client_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientStatusMsg {
    /// The kiosk's screen or state, as dialect B reports it.
    pub client_status: String,
}

/// A server event with its sequence number (device streams only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The event (`type` and `data`).
    #[serde(flatten)]
    pub event: ServerEvent,
    /// Per-device sequence number.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seq: Option<u64>,
    /// When the server produced the frame for a live push (not on the wire; the writer
    /// measures push latency from it). `None` for replays and for frames read back.
    #[serde(skip)]
    pub queued_at: Option<std::time::Instant>,
}

/// Server events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The whole current state; sent on connect and when a resume gap is too old.
    Snapshot(Snapshot),
    /// A session started on the device.
    SessionStarted(SessionInfo),
    /// A unit was paid (every minute).
    Billing(Billing),
    /// Few minutes are left.
    BalanceLow(BalanceLow),
    /// The session ended.
    SessionEnded(SessionEnded),
    /// The unpaid order of the device's last session was paid.
    OrderPaid(OrderPaid),
    /// The device's status changed.
    DeviceStatus(DeviceStatusMsg),
    /// An operator command; stays pending until acknowledged (`ack` with its seq).
    Command(Command),
    /// A message could not be used (the connection stays open).
    Error(ErrorMsg),
}

/// `snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Protocol version.
    pub version: u32,
    /// The sequence this stream belongs to.
    pub epoch: String,
    /// The last sequence number assigned (resume from here).
    pub seq: u64,
    /// Server time, unix milliseconds.
    pub server_time: i64,
    /// The device (absent on user and ops streams).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device: Option<DeviceInfo>,
    /// The running session, if any.
    pub session: Option<SessionInfo>,
    /// Commands not yet acknowledged (they follow as `command` events).
    #[serde(default)]
    pub pending_commands: Vec<Command>,
    /// Kiosk streams only: the unpaid postpaid order the device's last session left
    /// (screen E), absent when nothing is due.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unpaid_order: Option<String>,
}

/// A device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device code.
    pub device_code: String,
    /// `free`, `busy`, `lock` or `maintain`.
    pub status: crate::windows::DeviceStatus,
}

/// A running session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session id.
    pub session_id: i64,
    /// Device code.
    pub device_code: String,
    /// User id.
    pub user_id: i64,
    /// Start, unix milliseconds.
    pub started_at: i64,
    /// Fen per minute.
    pub charge_mode: i64,
    /// Cost so far (fen).
    pub cost: i64,
    /// Balance (fen).
    pub balance: i64,
    /// Minutes the balance still covers beyond `paid_until`.
    pub minutes_left: i64,
    /// Paid up to, unix milliseconds: a kiosk that loses the server locks at this instant.
    pub paid_until: i64,
}

/// `billing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Billing {
    /// Session id.
    pub session_id: i64,
    /// Device code.
    pub device_code: String,
    /// Minutes paid so far.
    pub minutes: i64,
    /// Cost so far (fen).
    pub cost: i64,
    /// Balance (fen).
    pub balance: i64,
    /// Minutes the balance still covers beyond `paid_until`.
    pub minutes_left: i64,
    /// Paid up to, unix milliseconds.
    pub paid_until: i64,
    /// Server time, unix milliseconds (kiosks correct their clock skew with it).
    pub server_time: i64,
}

/// `balance_low`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceLow {
    /// Session id.
    pub session_id: i64,
    /// Device code.
    pub device_code: String,
    /// Minutes left.
    pub minutes_left: i64,
}

/// `session_ended`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// Session id.
    pub session_id: i64,
    /// Device code.
    pub device_code: String,
    /// `user_logout`, `phone_offline`, `balance_exhausted`, `heartbeat_timeout`,
    /// `operator` or `maintenance`.
    pub reason: String,
    /// Final cost (fen).
    pub cost: i64,
    /// A postpaid session's unpaid order (the kiosk shows "pay on your phone" until
    /// `order_paid`); absent for prepaid sessions and free postpaid ones.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub order_id: Option<String>,
}

/// `order_paid`: the postpaid order left by this device's last session is paid (the
/// kiosk restarts, as dialect B's does when `orderStatus` turns 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    /// The order.
    pub order_id: String,
    /// Device code.
    pub device_code: String,
}

/// `device_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatusMsg {
    /// Device code.
    pub device_code: String,
    /// New status.
    pub status: crate::windows::DeviceStatus,
}

/// `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Command id (stable across re-sends: deduplicate on it).
    pub id: i64,
    /// `lock`, `unlock`, `restart`, `message` or `update_games`.
    pub name: String,
    /// Text for `message`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// Machine-readable code: `bad_message`, `unsupported`, `not_in_session`.
    pub code: String,
    /// Human-readable reason.
    pub reason: String,
}

impl ErrorMsg {
    /// An `error` event.
    pub fn event(code: &str, reason: impl Into<String>) -> ServerEvent {
        ServerEvent::Error(ErrorMsg {
            code: code.to_string(),
            reason: reason.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_parse_as_documented() {
        let h: ClientMessage =
            serde_json::from_value(json!({"type":"hello","data":{"resume_from":41,"epoch":"e1"}}))
                .unwrap();
        assert_eq!(
            h,
            ClientMessage::Hello(Hello {
                resume_from: Some(41),
                epoch: Some("e1".into()),
                version: None
            })
        );
        let bare: ClientMessage = serde_json::from_str(r#"{"type":"hello"}"#).unwrap();
        assert_eq!(bare, ClientMessage::Hello(Hello::default()));
        let a: ClientMessage = serde_json::from_str(r#"{"type":"ack","data":{"seq":42}}"#).unwrap();
        assert_eq!(
            a,
            ClientMessage::Ack(Ack {
                seq: 42,
                epoch: None
            })
        );
        let hb: ClientMessage = serde_json::from_str(r#"{"type":"heartbeat"}"#).unwrap();
        assert_eq!(hb, ClientMessage::Heartbeat);
        let lo: ClientMessage = serde_json::from_str(r#"{"type":"logout","data":null}"#).unwrap();
        assert_eq!(lo, ClientMessage::Logout);
        let g: ClientMessage =
            serde_json::from_str(r#"{"type":"game_state","data":{"update_state":"ing"}}"#).unwrap();
        assert!(matches!(g, ClientMessage::GameState(_)));
        for bad in [
            r#"{"type":"nope"}"#,
            r#"{"type":"ack","data":{"seq":-1}}"#,
            r#"{"type":"ack"}"#,
            r#"[1,2]"#,
            r#"{"data":{}}"#,
            r#"{"type":"hello","data":{"resume_from":"x"}}"#,
            r#"{"type":"hello","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_frames_carry_type_seq_and_data() {
        let f = ServerFrame {
            event: ServerEvent::Command(Command {
                id: 7,
                name: "message".into(),
                text: Some("closing in 5 minutes".into()),
            }),
            seq: Some(12),
            queued_at: None,
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(
            v,
            json!({"type":"command","seq":12,"data":{"id":7,"name":"message","text":"closing in 5 minutes"}})
        );
        let back: ServerFrame = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
        let e = ServerFrame {
            event: ErrorMsg::event("bad_message", "x"),
            seq: None,
            queued_at: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type":"error","data":{"code":"bad_message","reason":"x"}})
        );
    }

    #[test]
    fn close_codes_say_whether_to_reconnect() {
        assert!(close::should_reconnect(close::SLOW_CONSUMER));
        assert!(close::should_reconnect(close::GOING_AWAY));
        assert!(!close::should_reconnect(close::REPLACED));
        assert!(!close::should_reconnect(close::FORBIDDEN));
        assert!(!close::should_reconnect(close::NORMAL));
    }
}
