//! Game updates on a kiosk (`/windows/game/*`): the games a device has with their
//! versions, and the update flow — a kiosk says it is updating (`ing`), then that it
//! finished, which makes its games current.
//!
//! Finishing is ordered so that nothing in between lies: the games are marked current
//! first, then the device's update flag is cleared (by its actor, which persists it).
//! A reader sees `ing` until both are done; if the second step fails the kiosk's retry
//! repeats the first, which is idempotent. (The other order showed `wait` for a moment,
//! and for good if the games write failed.)

use kioskd_actors::CoordError;
use kioskd_actors::device::{DeviceRefusal, GameUpdate};
use kioskd_actors::ports::StoreError;

use crate::services::Services;
pub use crate::store::DeviceGameRow;

/// What a game operation failed on.
#[derive(Debug, thiserror::Error)]
pub enum GamesError {
    /// No such device.
    #[error("no such device")]
    NoSuchDevice,
    /// The device refused (its actor could not persist the flag).
    #[error("device refused: {0}")]
    Refused(DeviceRefusal),
    /// The actors failed.
    #[error(transparent)]
    Coord(CoordError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CoordError> for GamesError {
    fn from(e: CoordError) -> Self {
        match e {
            CoordError::NoSuchDevice => GamesError::NoSuchDevice,
            e => GamesError::Coord(e),
        }
    }
}

/// Where a device's games stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    /// An update is in progress.
    Updating,
    /// Some game is behind its newest version.
    Wanted,
    /// Every game is current.
    Current,
}

/// The games of device `code`, with their current and newest versions.
pub async fn list(s: &Services, code: &str) -> Result<Vec<DeviceGameRow>, GamesError> {
    let info = s.coord.device_info(code).await?;
    Ok(s.db.device_games(info.id).await?)
}

/// Does game `g` need an update?
pub fn needs_update(g: &DeviceGameRow) -> bool {
    g.current_version.as_deref() != Some(g.newest_version.as_str())
}

/// The kiosk says it started (`true`) or finished (`false`) updating. Finishing marks
/// the device's games current, then clears the flag (see the module doc).
pub async fn set_updating(s: &Services, code: &str, updating: bool) -> Result<(), GamesError> {
    if !updating {
        let id = s.coord.device_info(code).await?.id;
        s.db.games_current(id).await?;
    }
    s.coord
        .ask_device(code, GameUpdate(Some(updating)))
        .await?
        .map_err(GamesError::Refused)?;
    Ok(())
}

/// Where the games of device `code` stand.
pub async fn state(s: &Services, code: &str) -> Result<UpdateState, GamesError> {
    let updating = s
        .coord
        .ask_device(code, GameUpdate(None))
        .await?
        .map_err(GamesError::Refused)?;
    if updating {
        return Ok(UpdateState::Updating);
    }
    let games = list(s, code).await?;
    Ok(if games.iter().any(needs_update) {
        UpdateState::Wanted
    } else {
        UpdateState::Current
    })
}
