//! The phone's side of pricing (issue 16 items 3–4): what a device costs the caller now
//! (the start page's "¥x/分钟, 余额可用约 N 分钟"), the packages on sale, buying one from
//! the balance, the packages held and the package history. Buying by WeChat Pay is
//! `payments::pay_package` (the recharge path). The operator's side (editing plans and
//! packages) is elsewhere.

use kioskd_actors::DeviceStatus;
use kioskd_actors::catalog;
use kioskd_actors::ports::{DeviceRecord, StoreError};
use kioskd_actors::session::Quote;

use crate::devices::{self, DeviceError, Last};
use crate::identity::UserRow;
use crate::services::Services;
use crate::store::Purchase;
pub use crate::store::{PackageHistoryRow, PackageRow, UserPackageRow};

/// A device as the start page shows it: its record, its live state and the quote.
#[derive(Debug)]
pub struct PricedDevice {
    /// The device.
    pub rec: DeviceRecord,
    /// Status.
    pub status: DeviceStatus,
    /// Heard from within the heartbeat timeout.
    pub online: bool,
    /// A session could start now.
    pub available: bool,
    /// The price now; with a user, what the balance and packages buy.
    pub quote: Quote,
    /// The user's packages usable here (names, time left), soonest expiry first.
    pub packages: Vec<UserPackageRow>,
}

/// Device `code` as user `user` (or anyone) would start on it now.
pub async fn priced_device(
    s: &Services,
    code: &str,
    user: Option<&UserRow>,
) -> Result<PricedDevice, DeviceError> {
    let (rec, view) = devices::card(s, code).await?;
    let now = s.coord.clock().now_ms();
    let quote = s
        .coord
        .quote(&rec, user.map(|u| (u.id, u.balance_account)), now)
        .await?;
    let packages = match user {
        Some(u) if !quote.packages.is_empty() => {
            let held = s.db.user_packages(u.id, now).await?;
            quote
                .packages
                .iter()
                .filter_map(|id| held.iter().find(|p| p.id == *id).cloned())
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(PricedDevice {
        available: view.status == DeviceStatus::Free && view.online && !view.updating,
        status: view.status,
        online: view.online,
        rec,
        quote,
        packages,
    })
}

/// The last session on device `code` and, when the device is idle (no running session,
/// no unpaid order), the price a unit beginning now costs anyone there (what an idle kiosk
/// shows as its price: plan and zone, no group). A busy device's answer carries its
/// session's own price, so nothing more is read for it: this is a polled path.
pub async fn last_session_and_price(
    s: &Services,
    code: &str,
) -> Result<(Last, Option<i64>), DeviceError> {
    let last = devices::last_session(s, code).await?;
    if !matches!(last, Last::Never | Last::Ended { unpaid: false, .. }) {
        return Ok((last, None));
    }
    let rec = kioskd_actors::ports::Store::device_by_code(&s.db, code)
        .await?
        .ok_or(DeviceError::NoSuchDevice)?;
    let now = s.coord.clock().now_ms();
    let quote = s.coord.quote(&rec, None, now).await?;
    Ok((last, Some(quote.price)))
}

/// The packages on sale.
pub async fn on_sale(s: &Services) -> Result<Vec<PackageRow>, StoreError> {
    Ok(s.db
        .packages()
        .await?
        .into_iter()
        .filter(|p| p.on_sale)
        .collect())
}

/// The packages user `user_id` holds with time left, soonest expiry first.
pub async fn held(s: &Services, user_id: i64) -> Result<Vec<UserPackageRow>, StoreError> {
    s.db.user_packages(user_id, s.coord.clock().now_ms()).await
}

/// Why a purchase from the balance did not happen (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum BuyError {
    /// No such package on sale.
    #[error("package not on sale")]
    NotOnSale,
    /// The balance does not cover the price.
    #[error("balance too low")]
    Insufficient,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Buys package `package_id` for `u` from the balance: the ledger debit, the user
/// package and its time are one transaction (`Db::buy_package_with_balance`); then the
/// user's running session, if any, hears the new balance. Returns the user package and
/// the balance after.
pub async fn buy_with_balance(
    s: &Services,
    u: &UserRow,
    package_id: i64,
) -> Result<(i64, i64), BuyError> {
    let now = s.coord.clock().now_ms();
    match s.db.buy_package_with_balance(u.id, package_id, now).await? {
        Purchase::Bought {
            user_package_id,
            balance,
        } => {
            metrics::counter!(catalog::PACKAGES_SOLD, "source" => "balance").increment(1);
            s.coord.balance_changed(u.id, balance).await;
            Ok((user_package_id, balance))
        }
        Purchase::Insufficient => Err(BuyError::Insufficient),
        Purchase::NotOnSale => Err(BuyError::NotOnSale),
    }
}

/// A page (1-based, `size` rows) of user `user_id`'s package history, newest first.
pub async fn history(
    s: &Services,
    user_id: i64,
    page: i64,
    size: i64,
) -> Result<crate::store::Page<PackageHistoryRow>, StoreError> {
    s.db.package_history(user_id, page.max(1), size.clamp(1, 100))
        .await
}
