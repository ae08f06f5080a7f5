//! Typed wire formats of kioskd's legacy HTTP APIs, with no I/O.
//!
//! * [`envelope`]: the `{"success", "result", "error"}` wrapper every reply uses.
//! * [`windows`]: dialect A, the "windows" kiosk API under `/windows/*` (seed 000, SPEC §5).
//! * [`wechat`]: the user's phone API under `/wechat/*` (seed 001, SPEC §7).
//! * [`ws`]: the realtime protocol (SPEC §9); [`attendance`]: `/ws/attendance` (SPEC §8).
//! * [`rest`]: dialect B, the "rest" kiosk API under `/rest/*` (seed 002, SPEC §6): flat
//!   objects, yuan from fen.
//!
//! Money is always an integer number of fen (`i64`). Times are carried as the strings the
//! server formats (`YYYY-MM-DD HH:MM:SS`); this crate never parses or formats them.
//! Requests ignore unknown fields, so newer clients can talk to older servers.
#![warn(missing_docs)]

pub mod attendance;
pub mod decode;
pub mod envelope;
pub mod rest;
pub mod wechat;
pub mod windows;
pub mod ws;

pub use envelope::Envelope;

/// Version of the wire protocol described by this crate (see `README.md`).
pub const PROTOCOL_VERSION: &str = "1";
