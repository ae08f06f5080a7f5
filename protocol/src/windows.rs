//! Dialect A: the "windows" kiosk API under `/windows/*` (seed 000, SPEC §5), plus the
//! phone-side `/windows/login/<device_code>`, `/windows/offline` and
//! `/windows/online/status` replies.
//!
//! All request types ignore unknown fields. Every reply is wrapped in
//! [`Envelope`](crate::Envelope).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `result` of a successful `GET /windows/login/<device_code>`.
pub const LOGIN_OK: &str = "success";
/// `msg` of a successful keepalive.
pub const KEEPALIVE_OK: &str = "keepalive success";
/// `msg` of a successful logout / offline.
pub const LOGOUT_OK: &str = "logout successed!";
/// `result` of a successful `POST /windows/maintain/login`.
pub const MAINTAIN_LOGIN_OK: &str = "登录成功";
/// `result` of a successful game update state change.
pub const GAME_STATE_SET_OK: &str = "设备游戏更新状态设置成功!";
/// `error` when the phone has no signed-in user (with `result: -1`).
pub const NOT_SIGNED_IN_MSG: &str = "当前用户没有登录";
/// `error` of `/windows/online/status` when the user has no session (with `result: 0`).
pub const NOT_PLAYING_MSG: &str = "当前用户没有上机";
/// `result` of `/windows/online/status` when the user has no session.
pub const NOT_PLAYING_CODE: i32 = 0;
/// `msg` of `/windows/check` for an idle device.
pub const CHECK_IDLE_MSG: &str = "not login";
/// `msg` of `/windows/check` for a device in session.
pub const CHECK_IN_SESSION_MSG: &str = "login successed!";
/// `msg` of `/windows/check` for an unknown device.
pub const CHECK_NOT_DEPLOYED_MSG: &str = "not deploy";

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Body of `POST /windows/logout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The session token (`record_key`) the kiosk got from `check`.
    pub token: String,
}

/// Body of `POST /windows/keepalive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeepaliveRequest {
    /// The session token (`record_key`).
    pub token: String,
    /// The kiosk's MAC-like device code.
    pub device_code: String,
}

/// Body of `POST /windows/check` and `POST /windows/game/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// The kiosk's MAC-like device code.
    pub device_code: String,
}

/// Body of `POST /windows/maintain/login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintainLoginRequest {
    /// The kiosk's MAC-like device code.
    pub device_code: String,
    /// Maintainer account name.
    pub username: String,
    /// Maintainer password (plain text on the wire, as the kiosks send it).
    pub password: String,
}

/// Body of `POST /windows/maintain/logout` (a kioskd addition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintainLogoutRequest {
    /// The kiosk's MAC-like device code.
    pub device_code: String,
    /// Maintainer account name.
    pub username: String,
}

/// Body of `PUT`/`POST /windows/game/state`. Without `update_state` a `POST` reads the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GameStateRequest {
    /// The kiosk's MAC-like device code.
    pub device_code: String,
    /// The new update state; absent (or `null`) to read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_state: Option<UpdateState>,
}

/// Update state a kiosk reports: `"ing"` (updating) or `"finish"` (done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateState {
    /// An update is in progress (locks a free device).
    Ing,
    /// The update finished (unlocks, games become current).
    Finish,
}

impl UpdateState {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ing => "ing",
            Self::Finish => "finish",
        }
    }
}

/// Update state read back by `POST /windows/game/state` without `update_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GameUpdateState {
    /// An update is wanted and has not started.
    Wait,
    /// An update is in progress.
    Ing,
    /// Nothing to do: the last update finished.
    Finish,
}

impl GameUpdateState {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wait => "wait",
            Self::Ing => "ing",
            Self::Finish => "finish",
        }
    }
}

impl From<UpdateState> for GameUpdateState {
    fn from(s: UpdateState) -> Self {
        match s {
            UpdateState::Ing => Self::Ing,
            UpdateState::Finish => Self::Finish,
        }
    }
}

/// A device's state as kiosks see it (`device_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// Idle, available for a session.
    Free,
    /// In a user session.
    Busy,
    /// Locked (balance ran out, operator lock, game update in progress).
    Lock,
    /// A maintainer is logged in; no billing.
    Maintain,
}

impl DeviceStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Busy => "busy",
            Self::Lock => "lock",
            Self::Maintain => "maintain",
        }
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`DeviceStatus::from_str`]: the text is not a device status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDeviceStatus(pub String);

impl fmt::Display for UnknownDeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown device status {:?} (expected free, busy, lock or maintain)",
            self.0
        )
    }
}

impl std::error::Error for UnknownDeviceStatus {}

impl FromStr for DeviceStatus {
    type Err = UnknownDeviceStatus;

    /// Parses the wire string, ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        [Self::Free, Self::Busy, Self::Lock, Self::Maintain]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownDeviceStatus(s.to_owned()))
    }
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/// `result` of logout and offline: `{"status":1,"msg":"logout successed!"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMsg {
    /// 1 = done, 0 = there was no such session.
    pub status: i32,
    /// Readable message.
    pub msg: String,
}

impl StatusMsg {
    /// `{"status":1,"msg":"logout successed!"}`.
    pub fn logged_out() -> Self {
        Self {
            status: 1,
            msg: LOGOUT_OK.to_owned(),
        }
    }

    /// `{"status":0,"msg":<msg>}`: unknown or already ended session (not an error).
    pub fn not_in_session(msg: impl Into<String>) -> Self {
        Self {
            status: 0,
            msg: msg.into(),
        }
    }
}

/// `result` of `POST /windows/keepalive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeepaliveResult {
    /// 1 = session alive, 0 = token dead.
    pub status: i32,
    /// Readable message (`"keepalive success"` when alive).
    pub msg: String,
    /// The current session object when alive; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<SessionObject>,
}

impl KeepaliveResult {
    /// `{"status":1,"msg":"keepalive success","data":<session>}`.
    pub fn alive(data: SessionObject) -> Self {
        Self {
            status: 1,
            msg: KEEPALIVE_OK.to_owned(),
            data: Some(data),
        }
    }

    /// `{"status":0,"msg":<msg>}`: the token is unknown or its session ended.
    pub fn dead(msg: impl Into<String>) -> Self {
        Self {
            status: 0,
            msg: msg.into(),
            data: None,
        }
    }
}

/// `result` of `POST /windows/check`. Keys in order: status, token, device_status, msg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// 1 = in session, 0 = idle, -1 = unknown device.
    pub status: i32,
    /// The session token (`record_key`) when in session; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token: Option<String>,
    /// The device's state; `null` for an unknown device (always serialized).
    pub device_status: Option<DeviceStatus>,
    /// Readable message.
    pub msg: String,
}

impl CheckResult {
    /// Idle device: `{"status":0,"device_status":<status>,"msg":"not login"}`.
    pub fn idle(status: DeviceStatus) -> Self {
        Self {
            status: 0,
            token: None,
            device_status: Some(status),
            msg: CHECK_IDLE_MSG.to_owned(),
        }
    }

    /// Device in session: `{"status":1,"token":..,"device_status":..,"msg":"login successed!"}`.
    pub fn in_session(token: impl Into<String>, status: DeviceStatus) -> Self {
        Self {
            status: 1,
            token: Some(token.into()),
            device_status: Some(status),
            msg: CHECK_IN_SESSION_MSG.to_owned(),
        }
    }

    /// Unknown device: `{"status":-1,"device_status":null,"msg":"not deploy"}`.
    pub fn not_deployed() -> Self {
        Self {
            status: -1,
            token: None,
            device_status: None,
            msg: CHECK_NOT_DEPLOYED_MSG.to_owned(),
        }
    }
}

/// A running session as seen by the kiosk (keepalive `data`) and the phone
/// (`/windows/online/status` `result`). Money in fen, `cost_time` in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionObject {
    /// Session id.
    pub id: i64,
    /// User id.
    pub user_id: i64,
    /// Device id.
    pub device_id: i64,
    /// Cost so far, fen.
    pub cost_money: i64,
    /// Session start time.
    pub ctime: String,
    /// Last billing update time.
    pub utime: String,
    /// Time spent so far, seconds.
    pub cost_time: i64,
    /// Price, fen per minute.
    pub charge_mode: i64,
    /// The user's balance, fen.
    pub balance_account: i64,
    /// The device's code.
    pub device_code: String,
    /// The user's WeChat openid (SPEC addition; always serialized, defaulted on read).
    #[serde(default)]
    pub openid: String,
    /// Server time of this reply (SPEC addition; always serialized, defaulted on read).
    #[serde(default)]
    pub cur_time: String,
}

/// `result` of `POST /windows/game/list`: `{"total":N,"data":[..]}`.
///
/// The seed documents the reply as `{}`; that reads as an empty list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GameList {
    /// Number of games in `data`.
    pub total: i64,
    /// The device's games.
    pub data: Vec<GameItem>,
}

/// One game installed (or to be installed) on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameItem {
    /// Game id.
    pub id: i64,
    /// Game name.
    pub name: String,
    /// Version installed on the device; `null` if never installed.
    pub current_version: Option<String>,
    /// Newest published version.
    pub newest_version: String,
    /// Whether the device should update this game.
    pub need_update: bool,
    /// Download URL of the newest version.
    pub url: String,
    /// MD5 of the download.
    pub md5: String,
}

/// Failure codes of `GET /windows/login/<device_code>` (the envelope's `result`,
/// serialized as a bare integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum LoginCode {
    /// -1: no signed-in user, or not registered.
    NotSignedIn = -1,
    /// -2: the user is deleted.
    UserDeleted = -2,
    /// -3: the user is disabled.
    UserDisabled = -3,
    /// -4: no such device.
    NoSuchDevice = -4,
    /// -5: balance below one minute's price.
    BalanceTooLow = -5,
    /// -6: internal error.
    Internal = -6,
    /// -7: the device is used by another user.
    DeviceTaken = -7,
    /// -8: the user is playing on another device.
    UserBusyElsewhere = -8,
    /// -9: the device is not free, offline or updating.
    DeviceUnavailable = -9,
    /// -18: the user has a postpaid order to pay first (SPEC §3; after the server's
    /// other codes -10 … -17).
    UnpaidOrder = -18,
}

impl LoginCode {
    /// Every code: SPEC §5's -1 to -9, then -18.
    pub const ALL: [LoginCode; 10] = [
        Self::NotSignedIn,
        Self::UserDeleted,
        Self::UserDisabled,
        Self::NoSuchDevice,
        Self::BalanceTooLow,
        Self::Internal,
        Self::DeviceTaken,
        Self::UserBusyElsewhere,
        Self::DeviceUnavailable,
        Self::UnpaidOrder,
    ];

    /// The numeric wire code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code for a number, if it is one.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A readable (Chinese) message for the envelope's `error`.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotSignedIn => NOT_SIGNED_IN_MSG,
            Self::UserDeleted => "用户已被删除",
            Self::UserDisabled => "用户已被禁用",
            Self::NoSuchDevice => "设备不存在",
            Self::BalanceTooLow => "余额不足",
            Self::Internal => "服务器内部错误",
            Self::DeviceTaken => "设备正在被其他用户使用",
            Self::UserBusyElsewhere => "用户正在其他设备上机",
            Self::DeviceUnavailable => "设备当前不可用(非空闲、离线或正在更新)",
            Self::UnpaidOrder => "您有未支付的订单，请先支付",
        }
    }

    /// The failure envelope `{"success":false,"result":<code>,"error":<message>}`.
    pub fn envelope(self) -> crate::Envelope<LoginCode> {
        crate::Envelope::fail(self, self.message())
    }
}

impl Serialize for LoginCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(self.code())
    }
}

impl<'de> Deserialize<'de> for LoginCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = i32::deserialize(deserializer)?;
        Self::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown login code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_status_round_trips_as_str() {
        for s in [
            DeviceStatus::Free,
            DeviceStatus::Busy,
            DeviceStatus::Lock,
            DeviceStatus::Maintain,
        ] {
            assert_eq!(s.as_str().parse::<DeviceStatus>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str())
            );
        }
        assert_eq!(" LOCK ".parse::<DeviceStatus>(), Ok(DeviceStatus::Lock));
        assert!("offline".parse::<DeviceStatus>().is_err());
    }

    #[test]
    fn login_codes_are_numbered_and_worded() {
        for (i, c) in LoginCode::ALL.into_iter().enumerate() {
            let want = if i < 9 { -(i as i32) - 1 } else { -18 };
            assert_eq!(c.code(), want);
            assert_eq!(LoginCode::from_code(c.code()), Some(c));
            assert!(!c.message().is_empty());
            assert_eq!(serde_json::to_string(&c).unwrap(), c.code().to_string());
        }
        assert_eq!(LoginCode::NotSignedIn.message(), "当前用户没有登录");
        assert_eq!(LoginCode::BalanceTooLow.message(), "余额不足");
        assert_eq!(LoginCode::from_code(0), None);
        assert!(serde_json::from_str::<LoginCode>("-10").is_err());
    }

    #[test]
    fn update_state_strings() {
        assert_eq!(UpdateState::Ing.as_str(), "ing");
        assert_eq!(GameUpdateState::Wait.as_str(), "wait");
        assert_eq!(
            GameUpdateState::from(UpdateState::Finish),
            GameUpdateState::Finish
        );
    }
}
