//! Plain rows the server reads (the actors' records live in `kioskd_actors::ports`).

use kioskd_actors::ports::BillingMode;

/// A device to register.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Normalised code.
    pub code: String,
    /// Dialect B client id.
    pub client_id: Option<String>,
    /// Name.
    pub name: String,
    /// Province.
    pub province: String,
    /// City.
    pub city: String,
    /// Area.
    pub area: String,
    /// Address.
    pub location: String,
    /// Fen per unit.
    pub charge_mode: i64,
    /// Billing mode.
    pub billing_mode: BillingMode,
    /// HMAC secret for the WebSocket (SPEC §9).
    pub secret: Option<String>,
    /// With a secret: may its kiosk still use the unsigned legacy token calls
    /// (`allow` | `refuse`; `None` = refuse).
    pub legacy_unsigned: Option<String>,
}

/// A device's policy for the unsigned legacy token calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLegacy {
    /// Its WebSocket/HMAC secret, if it has one.
    pub secret: Option<String>,
    /// With a secret: may its kiosk still use the unsigned calls (`legacy_unsigned =
    /// 'allow'`; `refuse` or unset: no).
    pub allow_unsigned: bool,
}

/// A running session as a token names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSession {
    /// Its device's code.
    pub device_code: String,
    /// Its user.
    pub user_id: i64,
}

/// A user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// WeChat openid.
    pub openid: String,
    /// Nickname.
    pub nickname: String,
    /// Avatar URL.
    pub head_img_url: String,
    /// Bound mobile (registered users have one).
    pub mobile: Option<String>,
    /// Fen credited in total.
    pub total_account: i64,
    /// Fen spent in total (net of refunds).
    pub used_account: i64,
    /// Balance in fen.
    pub balance_account: i64,
    /// 0 active, 1 disabled, 2 deleted.
    pub state: i32,
    /// Created (unix ms).
    pub ctime: i64,
    /// Updated (unix ms).
    pub utime: i64,
}

/// User states.
pub mod user_state {
    /// Active.
    pub const ACTIVE: i32 = 0;
    /// Disabled by an operator.
    pub const DISABLED: i32 = 1;
    /// Deleted.
    pub const DELETED: i32 = 2;
}

/// The outcome of settling a recharge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Credited now.
    Credited {
        /// The user.
        user_id: i64,
        /// Balance after.
        balance: i64,
    },
    /// This transaction was credited before: nothing changed.
    AlreadyCredited {
        /// The user.
        user_id: i64,
    },
    /// The order was paid by another transaction: nothing changed.
    AlreadyPaidOtherwise,
    /// No such order.
    UnknownOrder,
    /// The amount does not match the order: nothing changed.
    AmountMismatch,
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    /// Deterministic id.
    pub id: String,
    /// Signed fen.
    pub amount: i64,
    /// recharge, debit, refund, adjust.
    pub kind: String,
    /// The session, for debits and refunds.
    pub session_id: Option<i64>,
    /// Reason (adjustments) or order number (recharges).
    pub reason: Option<String>,
    /// When (unix ms).
    pub created_at: i64,
}

/// A paid recharge.
#[derive(Debug, Clone, PartialEq)]
pub struct RechargeRow {
    /// Id.
    pub id: i64,
    /// Fen.
    pub amount: i64,
    /// Payment transaction id.
    pub transaction_id: String,
    /// Paid at (unix ms).
    pub pay_time: i64,
    /// Updated.
    pub utime: i64,
    /// Created.
    pub ctime: i64,
}

/// An ended session with its device's location.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpenseRow {
    /// Session id.
    pub id: i64,
    /// User.
    pub user_id: i64,
    /// Device.
    pub device_id: i64,
    /// Province.
    pub province: String,
    /// City.
    pub city: String,
    /// Area.
    pub area: String,
    /// Address.
    pub location: String,
    /// Cost (fen).
    pub cost_money: i64,
    /// Start (unix ms).
    pub started_at: i64,
    /// Updated.
    pub utime: i64,
    /// End (unix ms).
    pub ended_at: i64,
    /// Billed milliseconds.
    pub billed_ms: i64,
    /// Device code.
    pub device_code: String,
    /// End reason.
    pub end_reason: String,
}

/// A maintainer account.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintainerRow {
    /// Username.
    pub username: String,
    /// PHC argon2id hash.
    pub password_hash: String,
    /// Enabled.
    pub enabled: bool,
    /// Consecutive failed logins.
    pub failed_attempts: i64,
    /// Sign-ins are refused until this time (unix ms; 0 = none).
    pub locked_until: i64,
}

/// A game on a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceGameRow {
    /// Game id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Installed version (None: never installed).
    pub current_version: Option<String>,
    /// Newest version.
    pub newest_version: String,
    /// Download URL.
    pub url: String,
    /// MD5 of the package.
    pub md5: String,
}

/// Paging and a time window (unix ms, inclusive).
#[derive(Debug, Clone, Copy)]
pub struct PageQuery {
    /// 1-based page.
    pub page: i64,
    /// Page size (1..=100).
    pub size: i64,
    /// From (inclusive).
    pub from: i64,
    /// To (inclusive).
    pub to: i64,
}

impl PageQuery {
    /// LIMIT.
    pub fn limit(&self) -> i64 {
        self.size
    }
    /// OFFSET.
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.size
    }
}
