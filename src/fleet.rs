//! The fleet as operators manage it (`/ops/devices`, `/ops/sessions`, `/ops/games`,
//! `/ops/broadcast`, and the CLI): registering devices, their legacy-call setting, the
//! device state an operator sees, the command flow (state commands through the device
//! actor, kiosk commands delivered over its socket), ending sessions, and the games a
//! device should install. Site-limited operators see only their sites' devices.

use std::collections::{HashMap, HashSet};

use kioskd_actors::billing::EndReason;
use kioskd_actors::device::{DeviceView, OperatorCommand, SendCommand};
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::{BillingMode, DeviceRecord, PersistedStatus};
use kioskd_actors::session::{EndedView, SessionView};

use crate::operators::Principal;
use crate::service_error::ServiceError;
use crate::services::Services;
use crate::store::{NewDevice, WriteError};

fn legacy_mode_ok(m: Option<&str>) -> bool {
    matches!(m, None | Some("allow") | Some("refuse"))
}

fn code_of(raw: &str) -> Result<String, ServiceError> {
    normalize_device_code(raw).ok_or_else(|| ServiceError::invalid("bad device code"))
}

/// A device registration as an operator asks for it (unvalidated).
#[derive(Debug, Clone)]
pub struct Registration {
    /// MAC-like code.
    pub device_code: String,
    /// Dialect B client id.
    pub client_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Fen per minute.
    pub charge_mode: i64,
    /// `prepaid` or `postpaid` (default by dialect).
    pub billing_mode: Option<String>,
    /// Site fields.
    pub province: Option<String>,
    /// Site fields.
    pub city: Option<String>,
    /// Site fields.
    pub area: Option<String>,
    /// Site fields.
    pub location: Option<String>,
    /// Signing secret.
    pub secret: Option<String>,
    /// `allow`, `refuse` or none.
    pub legacy_unsigned: Option<String>,
}

/// Registers a device (SPEC §3's billing default: postpaid for dialect B, prepaid for A).
pub async fn register(s: &Services, req: Registration) -> Result<DeviceRecord, ServiceError> {
    let Some(code) = normalize_device_code(&req.device_code) else {
        return Err(ServiceError::invalid(
            "device_code must be a MAC-like code such as 11-22-33-44-55-66",
        ));
    };
    if req.name.trim().is_empty() || req.name.chars().count() > 100 {
        return Err(ServiceError::invalid("name must be 1-100 characters"));
    }
    if !(0..=100_000).contains(&req.charge_mode) {
        return Err(ServiceError::invalid(
            "charge_mode must be fen per minute, 0-100000",
        ));
    }
    let default_mode = if req.client_id.is_some() {
        "postpaid"
    } else {
        "prepaid"
    };
    let Some(mode) = BillingMode::parse(req.billing_mode.as_deref().unwrap_or(default_mode)) else {
        return Err(ServiceError::invalid(
            "billing_mode must be prepaid or postpaid",
        ));
    };
    if req
        .client_id
        .as_deref()
        .is_some_and(|c| c.is_empty() || c.len() > 32 || !c.chars().all(|x| x.is_ascii_digit()))
    {
        return Err(ServiceError::invalid("client_id must be 1-32 digits"));
    }
    if req.client_id.is_some() && s.cfg.rest.service_number.trim().is_empty() {
        // kioskd would refuse its next start: the field client needs the number.
        return Err(ServiceError::invalid(
            "dialect-B devices (client_id) need rest.service_number (KIOSKD_REST__SERVICE_NUMBER) set first",
        ));
    }
    if req.secret.as_deref().is_some_and(|x| x.len() < 16) {
        return Err(ServiceError::invalid(
            "secret must be at least 16 characters",
        ));
    }
    if !legacy_mode_ok(req.legacy_unsigned.as_deref()) {
        return Err(ServiceError::invalid(
            "legacy_unsigned must be \"allow\" or \"refuse\"",
        ));
    }
    let d = NewDevice {
        code,
        client_id: req.client_id,
        name: req.name,
        province: req.province.unwrap_or_default(),
        city: req.city.unwrap_or_default(),
        area: req.area.unwrap_or_default(),
        location: req.location.unwrap_or_default(),
        charge_mode: req.charge_mode,
        billing_mode: mode,
        secret: req.secret,
        legacy_unsigned: req.legacy_unsigned,
    };
    match s.db.add_device(&d, s.coord.clock().now_ms()).await {
        Ok(rec) => Ok(rec),
        Err(WriteError::Conflict) => Err(ServiceError::conflict(
            "a device with that code or client_id exists",
        )),
        Err(e) => Err(e.into()),
    }
}

/// May a device with a secret still use the unsigned legacy token calls? Returns the
/// normalised code.
pub async fn set_legacy(
    s: &Services,
    raw_code: &str,
    mode: Option<&str>,
) -> Result<String, ServiceError> {
    let code = code_of(raw_code)?;
    if !legacy_mode_ok(mode) {
        return Err(ServiceError::invalid(
            "legacy_unsigned must be \"allow\", \"refuse\" or null",
        ));
    }
    if s.db.set_device_legacy(&code, mode).await? {
        Ok(code)
    } else {
        Err(ServiceError::not_found("no such device"))
    }
}

/// A device as an operator sees it: the live actor's view when there is one, else
/// what storage last knew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `free`, `busy`, `lock`, `maintain`, ...
    pub status: String,
    /// Heard within the heartbeat timeout.
    pub online: bool,
    /// Last heard (the live view's, else storage's).
    pub last_heard: Option<i64>,
}

/// The persisted status as the wire names it (a device being updated shows `lock`).
pub fn persisted_status(d: &DeviceRecord) -> &'static str {
    match d.status {
        PersistedStatus::Free if d.updating => "lock",
        PersistedStatus::Free => "free",
        PersistedStatus::OperatorLock => "lock",
        PersistedStatus::Maintain => "maintain",
    }
}

/// What an operator sees of a device now.
pub fn seen(s: &Services, d: &DeviceRecord, live: Option<&DeviceView>) -> Seen {
    let now = s.coord.clock().now_ms();
    let timeout = s.coord.config().heartbeat_timeout_ms;
    match live {
        Some(v) => Seen {
            status: v.status.as_str().to_string(),
            online: v.online,
            last_heard: v.last_heard,
        },
        None => Seen {
            status: persisted_status(d).to_string(),
            online: d.last_seen_at.is_some_and(|t| now - t < timeout),
            last_heard: d.last_seen_at,
        },
    }
}

/// The devices the operator may see, with the live views of those that have an actor.
pub async fn list(
    s: &Services,
    p: &Principal,
) -> Result<(Vec<DeviceRecord>, HashMap<String, DeviceView>), ServiceError> {
    let mut devices = s.db.list_devices().await?;
    let live = s.coord.live_devices().await;
    devices.retain(|d| p.covers(Some(d.location.as_str())));
    Ok((devices, live))
}

/// The running sessions the operator may see (site-limited operators: those on their
/// sites' devices).
pub async fn sessions(s: &Services, p: &Principal) -> Result<Vec<SessionView>, ServiceError> {
    let mut list = s.coord.sessions().await;
    if !p.sites.is_empty() {
        let devices =
            s.db.list_devices()
                .await
                .map_err(|_| ServiceError::unavailable("listing devices failed"))?;
        let mine: HashSet<&str> = devices
            .iter()
            .filter(|d| p.covers(Some(d.location.as_str())))
            .map(|d| d.code.as_str())
            .collect();
        list.retain(|v| mine.contains(v.device_code.as_str()));
    }
    Ok(list)
}

/// A kiosk message's text: 1-500 characters.
fn message_text(name: &str, text: Option<String>) -> Result<Option<String>, ServiceError> {
    let text = text.filter(|t| !t.trim().is_empty());
    if name == "message" && text.as_ref().is_none_or(|t| t.chars().count() > 500) {
        return Err(ServiceError::invalid(
            "message needs a text of 1-500 characters",
        ));
    }
    Ok(text)
}

/// What a device command did.
#[derive(Debug)]
pub enum Commanded {
    /// A state command (`lock`, `unlock`, `maintain`): the session it ended, if any.
    State(Option<EndedView>),
    /// A kiosk command (`restart`, `message`, `update_games`), pending until the kiosk
    /// acknowledges: its id, and whether it went out at once.
    Sent {
        /// The command's id.
        id: i64,
        /// Written to an open socket.
        delivered: bool,
    },
}

/// A command to one device. Returns the normalised code and what happened.
pub async fn command(
    s: &Services,
    raw_code: &str,
    name: &str,
    text: Option<String>,
) -> Result<(String, Commanded), ServiceError> {
    let code = code_of(raw_code)?;
    let cmd = match name {
        "lock" => OperatorCommand::Lock,
        "unlock" => OperatorCommand::Unlock,
        "maintain" => OperatorCommand::Maintain,
        // Delivered over the kiosk's WebSocket; pending until it acknowledges.
        "restart" | "message" | "update_games" => {
            let text = message_text(name, text)?;
            let (id, delivered) = s
                .coord
                .ask_device(
                    &code,
                    SendCommand {
                        name: name.to_string(),
                        text,
                    },
                )
                .await?
                .map_err(ServiceError::unavailable)?;
            return Ok((code, Commanded::Sent { id, delivered }));
        }
        other => {
            return Err(ServiceError::invalid(format!(
                "unknown command {other:?}: lock, unlock, maintain, restart, message, update_games"
            )));
        }
    };
    let ended = s
        .coord
        .operate(&code, cmd)
        .await?
        .map_err(ServiceError::unavailable)?;
    Ok((code, Commanded::State(ended)))
}

/// A `message`, `restart` or `update_games` command to every active device; how many
/// devices it went to.
pub async fn broadcast(
    s: &Services,
    name: &str,
    text: Option<String>,
) -> Result<usize, ServiceError> {
    if !matches!(name, "message" | "restart" | "update_games") {
        return Err(ServiceError::invalid(
            "broadcast takes message, restart or update_games",
        ));
    }
    let text = message_text(name, text)?;
    Ok(s.coord.broadcast(name, text.as_deref()).await?)
}

/// Ends a running session as the operator (billed to now, the rest refunded).
pub async fn end_session(s: &Services, id: i64, reason: &str) -> Result<EndedView, ServiceError> {
    if reason.trim().is_empty() {
        return Err(ServiceError::invalid("reason is required"));
    }
    let none = || ServiceError::not_found("no such running session");
    let token = s.db.running_session_token(id).await?.ok_or_else(none)?;
    s.coord
        .end_by_token(&token, EndReason::Operator)
        .await?
        .ok_or_else(none)
}

/// Adds a game build; returns its id.
pub async fn add_game(
    s: &Services,
    name: &str,
    version: &str,
    url: &str,
    md5: &str,
) -> Result<i64, ServiceError> {
    if name.trim().is_empty() || version.trim().is_empty() || url.trim().is_empty() {
        return Err(ServiceError::invalid("name, version and url are required"));
    }
    if md5.len() != 32 || !md5.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ServiceError::invalid("md5 must be 32 hex digits"));
    }
    Ok(s.db
        .add_game(
            name,
            version,
            url,
            &md5.to_ascii_lowercase(),
            s.coord.clock().now_ms(),
        )
        .await?)
}

/// Marks a game for installation on a device. Returns the normalised code and the game.
pub async fn want_game(
    s: &Services,
    raw_code: &str,
    game: &str,
) -> Result<(String, i64), ServiceError> {
    let code = code_of(raw_code)?;
    let game = game
        .parse::<i64>()
        .map_err(|_| ServiceError::invalid("game id must be an integer"))?;
    let dev = kioskd_actors::ports::Store::device_by_code(&s.db, &code)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such device"))?;
    match s.db.want_game(dev.id, game).await {
        Ok(()) => Ok((code, game)),
        Err(WriteError::NotFound) => Err(ServiceError::not_found("no such game")),
        Err(e) => Err(e.into()),
    }
}
