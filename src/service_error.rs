//! The refusals the operator services share (fleet, accounts, reports, audit, upstream
//! ops). Each way in maps them onto its own dialect at one boundary (the ops API:
//! `http::ops::OpsError`; the CLI prints the message).

use kioskd_actors::CoordError;
use kioskd_actors::ports::StoreError;

/// Why an operator service refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored (a duplicate, a refused change).
    #[error("{0}")]
    Conflict(String),
    /// Storage or an actor failed; nothing is known to have changed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ServiceError {
    /// Bad input.
    pub fn invalid(m: impl Into<String>) -> Self {
        ServiceError::Invalid(m.into())
    }
    /// Not found.
    pub fn not_found(m: impl Into<String>) -> Self {
        ServiceError::NotFound(m.into())
    }
    /// A conflict.
    pub fn conflict(m: impl Into<String>) -> Self {
        ServiceError::Conflict(m.into())
    }
    /// A failure below (storage, actors), with what failed.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        ServiceError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::unavailable(e)
    }
}

impl From<crate::store::WriteError> for ServiceError {
    fn from(e: crate::store::WriteError) -> Self {
        ServiceError::unavailable(e)
    }
}

impl From<CoordError> for ServiceError {
    fn from(e: CoordError) -> Self {
        match e {
            CoordError::NoSuchDevice => ServiceError::not_found("no such device"),
            e => ServiceError::unavailable(e),
        }
    }
}
