//! Events the actors publish: what changed, for pushes (WebSocket), metrics and tests.

use crate::billing::EndReason;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// A device's status (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// Nothing holds it.
    Free,
    /// In session.
    Busy,
    /// Locked (balance ran out, operator, game update).
    Lock,
    /// A maintainer is logged in.
    Maintain,
}

impl DeviceStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Free => "free",
            DeviceStatus::Busy => "busy",
            DeviceStatus::Lock => "lock",
            DeviceStatus::Maintain => "maintain",
        }
    }
    /// Every status.
    pub const ALL: [DeviceStatus; 4] = [
        DeviceStatus::Free,
        DeviceStatus::Busy,
        DeviceStatus::Lock,
        DeviceStatus::Maintain,
    ];
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A session started.
    SessionStarted {
        /// Device code.
        device_code: String,
        /// Session id.
        session_id: i64,
        /// User id.
        user_id: i64,
        /// Paid up to (unix ms).
        paid_until: i64,
        /// Start (unix ms).
        started_at: i64,
        /// Fen per unit.
        charge_mode: i64,
        /// Balance after the first unit (fen).
        balance: i64,
        /// Units the balance still covers.
        units_left: i64,
    },
    /// A unit was reserved.
    Billing {
        /// Device code.
        device_code: String,
        /// Session id.
        session_id: i64,
        /// User id.
        user_id: i64,
        /// Units reserved so far.
        units: i64,
        /// Cost so far (fen).
        cost: i64,
        /// Balance after (fen).
        balance: i64,
        /// Units the balance still covers.
        units_left: i64,
        /// Paid up to (unix ms).
        paid_until: i64,
    },
    /// Few units are left.
    BalanceLow {
        /// Device code.
        device_code: String,
        /// Session id.
        session_id: i64,
        /// User id.
        user_id: i64,
        /// Units left.
        units_left: i64,
    },
    /// A session ended.
    SessionEnded {
        /// Device code.
        device_code: String,
        /// Session id.
        session_id: i64,
        /// User id.
        user_id: i64,
        /// Why.
        reason: EndReason,
        /// Final cost (fen).
        cost: i64,
        /// The unpaid postpaid order it left (absent for prepaid and free sessions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_id: Option<String>,
    },
    /// A device changed status.
    DeviceStatus {
        /// Device code.
        device_code: String,
        /// New status.
        status: DeviceStatus,
    },
}

/// A fan-out of events. Lagging subscribers lose events; nothing here blocks an actor.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl Events {
    /// A bus holding up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }
    /// Publishes (no subscribers is fine).
    pub fn publish(&self, e: Event) {
        let _ = self.tx.send(e);
    }
    /// Subscribes.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
