//! Devices as the adapters see them beyond the coordinator's operations: the
//! credentials a kiosk authenticates with, dialect B's client ids, a device's last
//! session (running or ended, and whether its order is paid), ending a session at the
//! kiosk, and the public card of a kiosk. Reads of storage the adapters need go through
//! here; nothing here knows about HTTP.

use kioskd_actors::device::DeviceView;
use kioskd_actors::ports::{DeviceRecord, StoreError};
use kioskd_actors::session::SessionView;
use kioskd_actors::{CoordError, EndReason};

use crate::services::Services;
pub use crate::store::{DeviceLegacy, LastSession, RunningSession};

/// What a device operation failed on.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No such device.
    #[error("no such device")]
    NoSuchDevice,
    /// The actors failed.
    #[error(transparent)]
    Coord(CoordError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CoordError> for DeviceError {
    fn from(e: CoordError) -> Self {
        match e {
            CoordError::NoSuchDevice => DeviceError::NoSuchDevice,
            e => DeviceError::Coord(e),
        }
    }
}

/// How a kiosk names itself when it connects.
#[derive(Debug, Clone, Copy)]
pub enum KioskId<'a> {
    /// A normalised device code.
    Code(&'a str),
    /// A dialect B client id.
    ClientId(&'a str),
}

/// A registered kiosk and its signing secret (none: unsigned connections are up to
/// configuration).
pub async fn kiosk_credentials(
    s: &Services,
    id: KioskId<'_>,
) -> Result<Option<(DeviceRecord, Option<String>)>, StoreError> {
    let device = match id {
        KioskId::Code(c) => kioskd_actors::ports::Store::device_by_code(&s.db, c).await?,
        KioskId::ClientId(c) => s.db.device_by_client_id(c).await?,
    };
    let Some(device) = device else {
        return Ok(None);
    };
    let secret = s.db.device_secret(device.id).await?;
    Ok(Some((device, secret)))
}

/// For the legacy (unsigned-era) calls: the device's secret and whether unsigned calls
/// are still accepted, or none for an unknown device.
pub async fn legacy_credentials(
    s: &Services,
    code: &str,
) -> Result<Option<DeviceLegacy>, StoreError> {
    s.db.device_legacy(code).await
}

/// The device code of dialect B client id `client_id`, if registered. Client ids never
/// change once registered, so a found mapping is remembered.
pub async fn code_by_client_id(
    s: &Services,
    client_id: &str,
) -> Result<Option<String>, StoreError> {
    if let Some(code) = s.client_ids.get(client_id) {
        return Ok(Some(code.clone()));
    }
    Ok(match s.db.device_by_client_id(client_id).await? {
        Some(d) => {
            s.client_ids.insert(client_id.to_string(), d.code.clone());
            Some(d.code)
        }
        None => None,
    })
}

/// The running session of `token`: its device code and user.
pub async fn running_session(
    s: &Services,
    token: &str,
) -> Result<Option<RunningSession>, StoreError> {
    s.db.running_session_by_token(token).await
}

/// The session of `token` on device `code` as a keepalive would show it, without
/// counting as a sign of life.
pub async fn peek_session(
    s: &Services,
    token: &str,
    code: &str,
) -> Result<Option<SessionView>, DeviceError> {
    match s.db.running_session_by_token(token).await? {
        Some(r) if r.device_code == code => Ok(s
            .coord
            .user_session(r.user_id)
            .await
            .map_err(DeviceError::Coord)?),
        _ => Ok(None),
    }
}

/// What a device's last session left.
#[derive(Debug)]
pub enum Last {
    /// A session runs now (view from its actor).
    Running(SessionView),
    /// The last session ended; `unpaid`: its order is still due.
    Ended {
        /// The session.
        rec: LastSession,
        /// Its order is still due.
        unpaid: bool,
    },
    /// The device never had a session.
    Never,
}

/// The last session of device `code`: the running one from its actor, else the last
/// one in storage.
pub async fn last_session(s: &Services, code: &str) -> Result<Last, DeviceError> {
    let info = s.coord.device_info(code).await?;
    if let Some((id, _, user)) = info.session
        && let Some(v) = s.coord.user_session(user).await?
        && v.id == id
    {
        return Ok(Last::Running(v));
    }
    match s.db.last_session_of_device(info.id).await? {
        None => Ok(Last::Never),
        Some(rec) if rec.ended_at.is_none() => {
            // Between the database and the actor (starting or ending right now): ask again.
            match s.coord.device_info(code).await?.session {
                Some((_, _, user)) => match s.coord.user_session(user).await? {
                    Some(v) => Ok(Last::Running(v)),
                    None => Ok(Last::Ended { rec, unpaid: false }),
                },
                None => Ok(Last::Ended { rec, unpaid: false }),
            }
        }
        Some(rec) => {
            let unpaid = rec.order.as_ref().is_some_and(|o| !o.paid);
            Ok(Last::Ended { rec, unpaid })
        }
    }
}

/// The user ends the session at kiosk `code` (dialect B's `offline`): the order to pay
/// (empty for a prepaid session), or none when nothing runs. Asked again after the
/// session ended (a retry, or the phone ended it first) it answers the same order while
/// that end is recent (within the heartbeat timeout).
pub async fn end_at_kiosk(s: &Services, code: &str) -> Result<Option<String>, DeviceError> {
    let info = s.coord.device_info(code).await?;
    if let Some((_, token, _)) = &info.session
        && let Some(v) = s
            .coord
            .end_by_token(token, EndReason::UserLogout)
            .await
            .map_err(DeviceError::Coord)?
    {
        return Ok(Some(v.order_id.unwrap_or_default()));
    }
    let now = s.coord.clock().now_ms();
    let recent = s.coord.config().heartbeat_timeout_ms;
    Ok(match s.db.last_session_of_device(info.id).await? {
        Some(rec) if rec.ended_at.is_some_and(|t| now - t <= recent) => {
            Some(rec.order.map(|o| o.id).unwrap_or_default())
        }
        _ => None,
    })
}

/// What the phone's QR landing shows about kiosk `code`: its record and live view.
pub async fn card(s: &Services, code: &str) -> Result<(DeviceRecord, DeviceView), DeviceError> {
    let rec = kioskd_actors::ports::Store::device_by_code(&s.db, code)
        .await?
        .ok_or(DeviceError::NoSuchDevice)?;
    let view = s.coord.device_info(code).await?;
    Ok((rec, view))
}
