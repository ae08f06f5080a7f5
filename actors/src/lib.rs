//! kioskd's actors: a `DeviceActor` per device, a `SessionActor` per running session, the
//! `Coordinator` that finds or spawns them by key, the billing rules as pure functions,
//! and the ports (`Store`) they need from the outside world.

pub mod billing;
pub mod catalog;
pub mod clock;
pub mod coordinator;
pub mod device;
pub mod events;
pub mod ids;
pub mod memstore;
pub mod placement;
pub mod ports;
pub mod pricing;
pub mod session;
pub mod stream;
pub mod terminal;

pub use billing::EndReason;
pub use clock::Clock;
pub use coordinator::{CoordError, Coordinator, CoordinatorConfig};
pub use events::{DeviceStatus, Event, Events};
