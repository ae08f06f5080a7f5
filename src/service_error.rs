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

impl From<CoordError> for ServiceError {
    fn from(e: CoordError) -> Self {
        match e {
            CoordError::NoSuchDevice => ServiceError::not_found("no such device"),
            e => ServiceError::unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The services below the ops and attendance adapters never reach up into them.
    #[test]
    fn the_operator_services_never_import_the_http_layer() {
        let root = env!("CARGO_MANIFEST_DIR");
        for f in [
            "src/accounts.rs",
            "src/attendance.rs",
            "src/audit.rs",
            "src/fleet.rs",
            "src/operators.rs",
            "src/pricing.rs",
            "src/reports.rs",
            "src/service_error.rs",
            "src/upstream/notices.rs",
        ] {
            let text = std::fs::read_to_string(format!("{root}/{f}")).expect("source");
            let needle = ["crate", "::http"].concat();
            assert!(!text.contains(&needle), "{f} imports the HTTP layer");
            let web = ["ax", "um"].concat();
            assert!(!text.contains(&web), "{f} knows about the web framework");
        }
    }

    #[test]
    fn an_unknown_device_is_not_found_and_other_failures_are_unavailable() {
        assert!(matches!(
            ServiceError::from(CoordError::NoSuchDevice),
            ServiceError::NotFound(m) if m == "no such device"
        ));
        assert!(matches!(
            ServiceError::from(CoordError::Unavailable("x".into())),
            ServiceError::Unavailable(_)
        ));
    }
}
