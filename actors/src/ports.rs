//! The ports the actors need from the outside world. SQL lives behind `Store` in the
//! server crate (`src/store/`); tests use an in-memory implementation.

use async_trait::async_trait;

use crate::billing::EndReason;
use crate::pricing::{Charge, HeldPackage, PackageTime};

/// A storage failure. Business outcomes such as "balance too low" are not errors: they
/// are variants of the results below. The store maps its driver's errors to these once,
/// in one place (`kioskd::store`); `Display` stays a short, readable log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    /// The row the call needs does not exist.
    #[error("storage: not found")]
    NotFound,
    /// A unique key was already taken.
    #[error("storage: already exists")]
    Conflict,
    /// A check constraint refused the row (e.g. a balance would go negative), or a
    /// foreign key did (the row refers to one that does not exist).
    #[error("storage: refused by a constraint")]
    Refused,
    /// The database cannot be reached or answered too late (connection, pool, timeout,
    /// busy): retrying later may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored value cannot be read as what it should be (an unknown enum value, a
    /// column of the wrong type): the data needs a look, retrying will not help.
    #[error("storage: corrupt stored value: {what} = {value:?}")]
    Corrupt {
        /// What was being read (`table.column`, or the column).
        what: String,
        /// The value found (or the decoder's complaint).
        value: String,
    },
    /// Anything else (a failed migration, a bad configuration, a query bug).
    #[error("storage: {0}")]
    Other(String),
}

impl StoreError {
    /// Any other failure, with a message.
    pub fn other(msg: impl Into<String>) -> Self {
        StoreError::Other(msg.into())
    }

    /// A stored value that cannot be decoded.
    pub fn corrupt(what: impl Into<String>, value: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            value: value.into(),
        }
    }

    /// True when retrying later may succeed (the database was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// How a device bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingMode {
    /// Each unit is debited from the user's balance when it begins (dialect A default).
    Prepaid,
    /// Cost accrues and ending creates an order (dialect B default).
    Postpaid,
}

impl BillingMode {
    /// Database and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Prepaid => "prepaid",
            BillingMode::Postpaid => "postpaid",
        }
    }
    /// Parses the database and API name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prepaid" => Some(BillingMode::Prepaid),
            "postpaid" => Some(BillingMode::Postpaid),
            _ => None,
        }
    }
}

/// The persisted state of a device that survives restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistedStatus {
    /// Nothing holds the device.
    Free,
    /// Locked by an operator (only an unlock frees it).
    OperatorLock,
    /// A maintainer is logged in.
    Maintain,
}

impl PersistedStatus {
    /// Database name.
    pub fn as_str(self) -> &'static str {
        match self {
            PersistedStatus::Free => "free",
            PersistedStatus::OperatorLock => "lock",
            PersistedStatus::Maintain => "maintain",
        }
    }
    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "free" => Some(PersistedStatus::Free),
            "lock" => Some(PersistedStatus::OperatorLock),
            "maintain" => Some(PersistedStatus::Maintain),
            _ => None,
        }
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// Database id.
    pub id: i64,
    /// Normalised device code (MAC-like, upper case, `-` separated).
    pub code: String,
    /// Dialect B numeric client id, if any.
    pub client_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Province.
    pub province: String,
    /// City.
    pub city: String,
    /// Area.
    pub area: String,
    /// Street address.
    pub location: String,
    /// Fen per unit.
    pub charge_mode: i64,
    /// Prepaid or postpaid.
    pub billing_mode: BillingMode,
    /// Persisted status.
    pub status: PersistedStatus,
    /// The maintainer logged in, when in maintenance.
    pub maintainer: Option<String>,
    /// A game update in progress (`ing`).
    pub updating: bool,
    /// Last time the kiosk was heard from (unix ms).
    pub last_seen_at: Option<i64>,
}

/// A command a device has not acknowledged yet (a broadcast copy carries its
/// [`broadcast_copy_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommand {
    /// Command id (negative for a broadcast copy).
    pub id: i64,
    /// `lock`, `unlock`, `restart`, `message`, `update_games`.
    pub name: String,
    /// Text, for `message`.
    pub text: Option<String>,
    /// When it was sent (unix ms).
    pub created_at: i64,
}

/// A last-heard time to record: of a device or of a session, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastHeard {
    /// Device or session id.
    pub id: i64,
    /// When it was heard (unix ms).
    pub at: i64,
}

/// A user as the actors need it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserRef {
    /// Database id.
    pub id: i64,
    /// WeChat openid.
    pub openid: String,
    /// Balance in fen when looked up.
    pub balance: i64,
}

/// Which running session to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveKey<'a> {
    /// The session on this device (id).
    Device(i64),
    /// The session holding this token.
    Token(&'a str),
    /// The session of this user (id).
    User(i64),
}

/// A session row.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Database id.
    pub id: i64,
    /// The kiosk's token (`record_key`).
    pub token: String,
    /// The user.
    pub user_id: i64,
    /// The user's openid.
    pub openid: String,
    /// The device.
    pub device_id: i64,
    /// The device's code.
    pub device_code: String,
    /// Fen per unit, fixed at the start.
    pub charge_mode: i64,
    /// Prepaid or postpaid.
    pub billing_mode: BillingMode,
    /// Start (unix ms).
    pub started_at: i64,
    /// Units debited.
    pub reserved_units: i64,
    /// Last heartbeat (unix ms).
    pub last_heard_at: i64,
}

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Token (random, ≥ 128 bits).
    pub token: String,
    /// The user.
    pub user_id: i64,
    /// The device.
    pub device_id: i64,
    /// Fen per unit.
    pub charge_mode: i64,
    /// Billing mode.
    pub billing_mode: BillingMode,
    /// Start (unix ms).
    pub started_at: i64,
    /// A priced first unit (rate plan, group or package): what it costs and how it is
    /// paid. `None`: the flat `charge_mode` is debited, exactly as before plans existed.
    pub first: Option<UnitCharge>,
}

/// How one unit of a priced session is paid, as storage records it (`session_units`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitCharge {
    /// 1-based unit number.
    pub unit: i64,
    /// The unit's real price in fen (0 when a package covers it).
    pub price: i64,
    /// Fen debited for it: the price, plus the minimum charge's top-up on unit 1.
    pub debit: i64,
    /// The user package covering it, and the seconds taken off that package.
    pub package: Option<PackageTime>,
}

impl UnitCharge {
    /// How the pricing engine sees this unit.
    pub fn charge(&self) -> Charge {
        match self.package {
            Some(p) => Charge::Package(p.user_package),
            None => Charge::Money(self.price),
        }
    }
}

/// Why a session could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// The user already has an active session elsewhere.
    #[error("user already in a session")]
    UserBusy,
    /// The device already has an active session.
    #[error("device already in a session")]
    DeviceBusy,
    /// The balance does not cover the first unit.
    #[error("balance too low")]
    InsufficientBalance,
    /// The user is disabled or deleted.
    #[error("user not allowed")]
    UserNotAllowed,
    /// The user has a postpaid order not yet paid (SPEC §3: blocked until it is).
    #[error("user has an unpaid order")]
    UnpaidOrder,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A started session and the balance after its first reservation (postpaid: the balance,
/// untouched).
#[derive(Debug, Clone)]
pub struct Started {
    /// The session row.
    pub session: SessionRecord,
    /// Balance after reserving unit 1.
    pub balance: i64,
}

/// The outcome of reserving one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Debited (or it had been already: the ledger id exists). Balance after.
    Reserved { balance: i64 },
    /// The balance cannot cover the unit; nothing changed.
    Insufficient { balance: i64 },
    /// The session has already ended; nothing changed.
    SessionEnded,
    /// The package meant to cover the unit has not a unit's time left (used up or gone);
    /// nothing changed. The caller prices the unit again without it.
    PackageGone,
}

/// How a session ends.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    /// Session id.
    pub session_id: i64,
    /// The user.
    pub user_id: i64,
    /// When it ended (unix ms).
    pub ended_at: i64,
    /// Why.
    pub reason: EndReason,
    /// Milliseconds billed.
    pub billed_ms: i64,
    /// Final cost in fen.
    pub cost: i64,
    /// Fen refunded (unused reservations).
    pub refund: i64,
    /// Postpaid: the id of the order to create for `cost`, in the same transaction
    /// (created paid when the cost is 0).
    pub order_id: Option<String>,
    /// Package seconds given back (units covered by a package but not billed), by user
    /// package id, in the same transaction.
    pub package_returns: Vec<PackageTime>,
}

/// The outcome of ending a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// False when the session had already ended (nothing changed).
    pub changed: bool,
    /// Balance after the refund.
    pub balance: i64,
}

/// What the actors need from storage. Every money change is one transaction; ledger ids
/// are deterministic (`<session>:<unit>`, `<session>:refund`) so replays change nothing.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A device by its normalised code.
    async fn device_by_code(&self, code: &str) -> StoreResult<Option<DeviceRecord>>;
    /// Persists a device's status.
    async fn set_device_status(
        &self,
        device_id: i64,
        status: PersistedStatus,
        maintainer: Option<&str>,
    ) -> StoreResult<()>;
    /// Persists a device's game-update flag.
    async fn set_device_updating(&self, device_id: i64, updating: bool) -> StoreResult<()>;
    /// Creates a session and reserves its first unit in one transaction (postpaid: no
    /// reservation and no balance check). Refused while the user has an unpaid order.
    async fn start_session(&self, new: NewSession) -> Result<Started, StartError>;
    /// Reserves unit `unit` of a session (ledger id `<session>:<unit>`) and records the
    /// last heartbeat, in one transaction, at `now`.
    async fn reserve_unit(
        &self,
        session_id: i64,
        user_id: i64,
        unit: i64,
        price: i64,
        last_heard_at: i64,
        now: i64,
    ) -> StoreResult<Reserve>;
    /// Ends a session and refunds unused reservations (postpaid: creates its order), in
    /// one transaction.
    async fn end_session(&self, end: SessionEnd) -> StoreResult<Ended>;
    /// Every session that has not ended (for recovery after a restart).
    async fn active_sessions(&self) -> StoreResult<Vec<SessionRecord>>;
    /// The running session of a device, a token or a user (used when several nodes
    /// share the database: which device a session request belongs to).
    async fn active_session(&self, key: ActiveKey<'_>) -> StoreResult<Option<SessionRecord>> {
        Ok(self
            .active_sessions()
            .await?
            .into_iter()
            .find(|s| match key {
                ActiveKey::Device(id) => s.device_id == id,
                ActiveKey::Token(t) => s.token == t,
                ActiveKey::User(id) => s.user_id == id,
            }))
    }
    /// Records last-heard times of devices and sessions (batched, monotonic).
    async fn record_heartbeats(
        &self,
        devices: &[LastHeard],
        sessions: &[LastHeard],
    ) -> StoreResult<()>;
    /// The current balance of a user.
    async fn user_balance(&self, user_id: i64) -> StoreResult<i64>;
    /// Queues an operator command for a device; returns its id.
    async fn add_command(
        &self,
        device_id: i64,
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<i64>;
    /// Stores a broadcast once (one row, whatever the number of devices); returns its
    /// id. Every device registered by `now` has it pending (as its own copy, see
    /// [`broadcast_copy_id`]) until its kiosk acknowledges that copy.
    async fn add_broadcast(&self, name: &str, text: Option<&str>, now: i64) -> StoreResult<i64>;
    /// A device's commands not yet acknowledged, oldest first. Its copies of broadcasts
    /// are among them, with their [`broadcast_copy_id`]s.
    async fn pending_commands(
        &self,
        device_id: i64,
        broadcasts_since: i64,
    ) -> StoreResult<Vec<PendingCommand>>;
    /// Marks commands acknowledged (a broadcast copy's id records that device's ack).
    async fn ack_commands(&self, ids: &[i64], now: i64) -> StoreResult<()>;
    /// The unpaid postpaid order left by the device's most recent session, if any.
    async fn unpaid_order_of_device(&self, _device_id: i64) -> StoreResult<Option<String>> {
        Ok(None)
    }
    /// Reserves a priced unit (ledger `<session>:<unit>` for its debit, `session_units`
    /// for how it was paid, the package's time ledger when a package covers it) in one
    /// transaction. Stores without pricing support only money.
    async fn reserve_priced_unit(
        &self,
        session_id: i64,
        user_id: i64,
        charge: UnitCharge,
        last_heard_at: i64,
        now: i64,
    ) -> StoreResult<Reserve> {
        if charge.package.is_some() {
            return Ok(Reserve::PackageGone);
        }
        self.reserve_unit(
            session_id,
            user_id,
            charge.unit,
            charge.debit,
            last_heard_at,
            now,
        )
        .await
    }
    /// How the reserved units of a priced session were paid (unit, charge, debit), in
    /// unit order; empty for a session billed at its flat `charge_mode`.
    async fn session_units(&self, _session_id: i64) -> StoreResult<Vec<UnitCharge>> {
        Ok(Vec::new())
    }
    /// The packages a user holds that still have time left and have not expired by `now`.
    async fn held_packages(&self, _user_id: i64, _now: i64) -> StoreResult<Vec<HeldPackage>> {
        Ok(Vec::new())
    }
    /// The member group a user belongs to.
    async fn user_group(&self, _user_id: i64) -> StoreResult<Option<i64>> {
        Ok(None)
    }
}

/// Bits of a broadcast copy's id that hold the device id.
const COPY_DEVICE_BITS: u32 = 30;

/// The wire id of device `device_id`'s copy of broadcast `broadcast_id`: negative, so it
/// never collides with a device command's id, distinct per device (each kiosk
/// acknowledges its own copy), and within ±2^53 (exact in JavaScript) for broadcast ids
/// below 2^23 and device ids below 2^30. `None` outside those ranges.
pub fn broadcast_copy_id(broadcast_id: i64, device_id: i64) -> Option<i64> {
    let ok =
        (1..1 << 23).contains(&broadcast_id) && (1..1 << COPY_DEVICE_BITS).contains(&device_id);
    ok.then(|| -((broadcast_id << COPY_DEVICE_BITS) | device_id))
}

/// The (broadcast id, device id) a broadcast copy's wire id stands for; `None` for a
/// device command's id.
pub fn broadcast_of_copy(id: i64) -> Option<(i64, i64)> {
    if id >= 0 {
        return None;
    }
    let v = id.checked_neg()?;
    Some((v >> COPY_DEVICE_BITS, v & ((1 << COPY_DEVICE_BITS) - 1)))
}

#[cfg(test)]
mod copy_id_tests {
    use super::*;

    #[test]
    fn a_broadcast_copy_id_names_its_broadcast_and_device_and_never_a_command() {
        let id = broadcast_copy_id(7, 19_000).unwrap();
        assert!(id < 0);
        assert!(id.unsigned_abs() <= 1 << 53);
        assert_eq!(broadcast_of_copy(id), Some((7, 19_000)));
        assert_ne!(broadcast_copy_id(7, 19_001), Some(id));
        let max = broadcast_copy_id((1 << 23) - 1, (1 << 30) - 1).unwrap();
        assert!(max.unsigned_abs() < 1 << 53);
        assert_eq!(broadcast_of_copy(42), None);
        assert_eq!(broadcast_copy_id(1 << 23, 1), None);
        assert_eq!(broadcast_copy_id(1, 0), None);
    }
}
