//! The ops API's wire names shared by the server and its clients (`kioskd ops …`).

/// The header giving the reason for an operator action (the body's `reason` wins); the
/// audit log records it.
pub const REASON_HEADER: &str = "x-kioskd-reason";
