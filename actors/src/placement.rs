//! Device ownership across nodes (ARCHITECTURE "Several nodes").
//!
//! Each device's actor lives on exactly one node at a time. A [`Placement`] (the port; the
//! Redis implementation is `src/cluster.rs`) records which node owns a device, lets a node
//! claim a device nobody live owns, and carries a [`Request`] to the owner and its
//! [`Reply`] back. The coordinator asks it before spawning a device actor and forwards
//! every device or session operation for a device owned elsewhere; without a placement
//! (one node, no Redis) every device is owned here.
//!
//! Money stays safe even if two nodes ever ran the same session's actor at once (a lost
//! lease, a partition): a unit is debited under the ledger id `<session>:<unit>` and a
//! session ends only `WHERE ended_at IS NULL`, so the database settles each once.

use serde::{Deserialize, Serialize};

use crate::billing::EndReason;
use crate::coordinator::CoordError;
use crate::device::{
    CheckView, DeviceRefusal, DeviceView, OperatorCommand, StartRefusal, StartedView,
};
use crate::ports::UserRef;
use crate::session::{EndedView, SessionView};

/// Who owns a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This node (just claimed, or already held).
    Here,
    /// Another live node, by name.
    There(String),
}

/// A failure of the placement's backend (Redis unreachable, a peer not answering).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placement: {0}")]
pub struct PlacementError(pub String);

/// Where device actors live, and the way to the other nodes.
#[async_trait::async_trait]
pub trait Placement: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;
    /// Claims `code` for this node unless another live node owns it.
    async fn claim(&self, code: &str) -> Result<Owner, PlacementError>;
    /// The live owner of `code`, if any (claims nothing).
    async fn owner(&self, code: &str) -> Result<Option<String>, PlacementError>;
    /// Passes this node's claim on `code` to `to` (only if this node still holds it).
    async fn hand_over(&self, code: &str, to: &str) -> Result<(), PlacementError>;
    /// Drops this node's claim on `code` (only if this node still holds it).
    async fn release(&self, code: &str) -> Result<(), PlacementError>;
    /// The other live nodes.
    async fn peers(&self) -> Result<Vec<String>, PlacementError>;
    /// Sends `req` to `node` and waits for its reply.
    async fn forward(&self, node: &str, req: Request) -> Result<Reply, PlacementError>;
}

/// An operation on one device, as it travels to the device's owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DeviceOp {
    /// The kiosk's `check`.
    Check,
    /// A sign of life at `at` (unix ms).
    Heard {
        /// When.
        at: i64,
    },
    /// A user sits down.
    StartSession {
        /// Who.
        user: UserRef,
    },
    /// The device's live view.
    Info,
    /// An operator state change.
    Operate {
        /// Which.
        cmd: OperatorCommand,
    },
    /// Queue a command for the kiosk.
    SendCommand {
        /// Command name.
        name: String,
        /// Its text.
        text: Option<String>,
    },
    /// A maintainer logs in.
    MaintainLogin {
        /// Who.
        username: String,
    },
    /// A maintainer logs out.
    MaintainLogout {
        /// Who.
        username: String,
    },
    /// Set (`Some`) or read (`None`) the game-update flag.
    GameUpdate {
        /// The new flag.
        set: Option<bool>,
    },
    /// One of the device's postpaid orders was paid.
    OrderPaid {
        /// The order.
        order_id: String,
    },
    /// The device's registration changed: reload it from storage.
    Reload,
}

/// An operation on the running session of a device, by token or user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SessionOp {
    /// The kiosk's keepalive.
    Keepalive {
        /// The session token.
        token: String,
        /// The kiosk that sent it.
        device_code: String,
    },
    /// End the session holding a token.
    EndByToken {
        /// The token.
        token: String,
        /// Why.
        reason: EndReason,
    },
    /// End the user's running session.
    EndForUser {
        /// The user.
        user_id: i64,
        /// Why.
        reason: EndReason,
    },
    /// The user's running session.
    View {
        /// The user.
        user_id: i64,
    },
    /// The user's balance changed.
    BalanceChanged {
        /// The user.
        user_id: i64,
        /// The new balance (fen).
        balance: i64,
    },
}

/// A request from one node to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// An operation on a device the receiver owns.
    Device {
        /// The device.
        code: String,
        /// What to do.
        op: DeviceOp,
    },
    /// An operation on a running session of a device the receiver owns.
    Session {
        /// The session's device.
        code: String,
        /// What to do.
        op: SessionOp,
    },
    /// Stop the device's actor (its session keeps running in the database) and hand the
    /// claim to `to`, where the kiosk's socket now is.
    Release {
        /// The device.
        code: String,
        /// The node taking it.
        to: String,
    },
    /// Deliver a broadcast command to every device live on the receiver.
    Broadcast {
        /// Command name.
        name: String,
        /// Its text.
        text: Option<String>,
        /// The broadcast, already stored by the sender (absent from older senders: the
        /// receiver stores it then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
    },
    /// The receiver's running sessions.
    Sessions,
    /// The live views of the receiver's device actors.
    LiveDevices,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Reply {
    /// The receiver does not own the device (any more): look again.
    NotOwner,
    /// To `Check`.
    Check(Result<CheckView, DeviceRefusal>),
    /// To `StartSession`.
    Started(Result<StartedView, StartRefusal>),
    /// To `Info`.
    Info(Result<DeviceView, DeviceRefusal>),
    /// To `Operate`.
    Operated(Result<Option<EndedView>, DeviceRefusal>),
    /// To `SendCommand`: (command id, pushed now).
    Queued(Result<(i64, bool), DeviceRefusal>),
    /// To maintainer log-in and log-out, `Release`, `Heard`, `OrderPaid`, `Reload` and
    /// `BalanceChanged`.
    Done(Result<(), DeviceRefusal>),
    /// To `GameUpdate`.
    Flag(Result<bool, DeviceRefusal>),
    /// To `Keepalive` and `View`.
    Session(Option<SessionView>),
    /// To the ends.
    Ended(Option<EndedView>),
    /// To `Sessions`.
    Sessions(Vec<SessionView>),
    /// To `LiveDevices`.
    Devices(Vec<DeviceView>),
    /// To `Broadcast`: how many devices it was queued for.
    Count(usize),
    /// The operation failed on the owner.
    Failed(CoordError),
}
