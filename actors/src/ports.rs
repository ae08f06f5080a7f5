//! The ports the actors need from the outside world. SQL lives behind `Store` in the
//! server crate (`src/store/`); tests use an in-memory implementation.

use async_trait::async_trait;

use crate::billing::EndReason;

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
    /// A check constraint refused the row (e.g. a balance would go negative).
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
        devices: &[(i64, i64)],
        sessions: &[(i64, i64)],
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
    /// Queues one command for each of `device_ids` in one transaction; returns the
    /// command ids in the same order.
    async fn add_commands(
        &self,
        device_ids: &[i64],
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<i64>>;
    /// A device's commands not yet acknowledged, oldest first: (id, name, text).
    async fn pending_commands(
        &self,
        device_id: i64,
    ) -> StoreResult<Vec<(i64, String, Option<String>)>>;
    /// Marks commands acknowledged.
    async fn ack_commands(&self, ids: &[i64], now: i64) -> StoreResult<()>;
    /// The unpaid postpaid order left by the device's most recent session, if any.
    async fn unpaid_order_of_device(&self, _device_id: i64) -> StoreResult<Option<String>> {
        Ok(None)
    }
}
