//! How a kiosk proves it is the device it names: the HMAC of its registered secret over
//! `"<code>\n<ts>\n<nonce>"` (SPEC §9). The WebSocket upgrade (`/ws/kiosk`) and the
//! legacy HTTP calls that reveal or use a session token (`/windows/check`, `keepalive`,
//! `logout`; headers `X-Kiosk-Ts`, `X-Kiosk-Nonce`, `X-Kiosk-Sig`) check the same
//! signature. Each nonce is accepted once (the caller remembers it).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The HMAC a kiosk sends: lowercase hex of HMAC-SHA256(secret, "<code>\n<ts>\n<nonce>").
pub fn signature(secret: &str, device_code: &str, ts: i64, nonce: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{device_code}\n{ts}\n{nonce}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Why a signature was refused (the WebSocket's refusal reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigError {
    /// `ts`, `nonce` or `sig` missing.
    Missing,
    /// `ts` is not an integer.
    BadTs,
    /// `ts` further than the allowed skew from now.
    Stale,
    /// The nonce is not 8-64 letters, digits, `-` or `_`.
    BadNonce,
    /// The HMAC does not match.
    Wrong,
}

impl SigError {
    /// The reason as the WebSocket refusal and metrics label spell it.
    pub fn reason(self) -> &'static str {
        match self {
            SigError::Missing => "signature_missing",
            SigError::BadTs => "signature_bad_ts",
            SigError::Stale => "signature_stale",
            SigError::BadNonce => "signature_bad_nonce",
            SigError::Wrong => "signature_wrong",
        }
    }
}

/// Checks a presented signature; on success the parsed `ts` (the caller then remembers
/// the nonce until `ts + 2 × skew`).
pub fn check(
    secret: &str,
    device_code: &str,
    ts: Option<&str>,
    nonce: Option<&str>,
    sig: Option<&str>,
    now_s: i64,
    skew_s: i64,
) -> Result<i64, SigError> {
    let (Some(ts), Some(nonce), Some(sig)) = (ts, nonce, sig) else {
        return Err(SigError::Missing);
    };
    let ts: i64 = ts.parse().map_err(|_| SigError::BadTs)?;
    if now_s.abs_diff(ts) > skew_s.unsigned_abs() {
        return Err(SigError::Stale);
    }
    if nonce.len() < 8
        || nonce.len() > 64
        || !nonce
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(SigError::BadNonce);
    }
    let want = signature(secret, device_code, ts, nonce);
    if !bool::from(want.as_bytes().ct_eq(sig.to_ascii_lowercase().as_bytes())) {
        return Err(SigError::Wrong);
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_check_skew_nonce_and_mac() {
        let s = signature("0123456789abcdef", "11-22-33-44-55-66", 1000, "nonce-0001");
        let c = |ts: &str, n: &str, sig: &str, now| {
            check(
                "0123456789abcdef",
                "11-22-33-44-55-66",
                Some(ts),
                Some(n),
                Some(sig),
                now,
                300,
            )
        };
        assert_eq!(c("1000", "nonce-0001", &s, 1100), Ok(1000));
        assert_eq!(c("1000", "nonce-0001", &s.to_uppercase(), 1100), Ok(1000));
        assert_eq!(c("1000", "nonce-0001", &s, 1301), Err(SigError::Stale));
        assert_eq!(c("x", "nonce-0001", &s, 1000), Err(SigError::BadTs));
        assert_eq!(c("1000", "short", &s, 1000), Err(SigError::BadNonce));
        assert_eq!(c("1000", "nonce-0002", &s, 1000), Err(SigError::Wrong));
        // A timestamp far from now can never overflow the skew check.
        let min = i64::MIN.to_string();
        assert_eq!(c(&min, "nonce-0001", &s, 1000), Err(SigError::Stale));
        assert_eq!(
            check("k", "c", None, Some("n"), Some("s"), 0, 300),
            Err(SigError::Missing)
        );
    }
}
