//! Trust for the legacy kiosk calls that reveal or use a session token
//! (`/windows/check`, `/windows/keepalive`, `/windows/logout`; issue 13 item 6).
//!
//! **Devices with a secret** (they can sign, as on `/ws/kiosk`): unless the device is set
//! to `legacy_unsigned = "allow"` (fleets mid-migration), `check` reveals the token only
//! to a signed request (headers `X-Kiosk-Ts`, `X-Kiosk-Nonce`, `X-Kiosk-Sig`: the
//! WebSocket's HMAC over `"<code>\n<ts>\n<nonce>"`, each nonce once) and `keepalive` and
//! `logout` with a token are refused unsigned (HTTP 401, `-21`). A kiosk on its signed
//! socket needs none of these calls.
//!
//! **Unsigned legacy kiosks** have no credential: anything the kiosk sends, anyone who
//! learnt the token and the device code can send. What kioskd can observe is the address
//! the calls come from, so a device's calls are tied to *its kiosk's address* (the
//! address of its first `check`/`keepalive`, normally long before any session):
//! - a keepalive from that address counts; a logout by token must come from it;
//! - a call from another address B is a candidate for an address change only if it comes
//!   within `legacy.address_handover_seconds` of the kiosk's last call from its address A
//!   (a real kiosk whose address changes keeps its cadence; a dead kiosk's stranger
//!   arrives later); B's keepalives are answered but do not count until A has been
//!   silent for the handover time, then B becomes the kiosk's address;
//! - if A is heard again while B is a candidate, two parties hold the device's token:
//!   B is dropped and the device is *contested* for `legacy.contested_seconds`, during
//!   which no other address is accepted (a real address change in that time ends the
//!   session at its heartbeat deadline — the price of not letting a stranger bill).
//!
//! So a stranger holding a token cannot keep a dead kiosk billing (its keepalives never
//! count unless it began within the handover time of the kiosk's death and never
//! overlapped the kiosk), and a real kiosk's session survives a change of address.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};

use super::{ApiError, AppState, codes};

/// What the address rule says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the kiosk's address: counts.
    Counts,
    /// From a candidate new address: answered, not counted yet.
    Pending,
    /// From an address that is not the kiosk's.
    Foreign,
}

/// What kioskd has seen of one device's unsigned calls.
#[derive(Debug, Clone)]
pub struct Seen {
    addr: IpAddr,
    last_at: i64,
    candidate: Option<IpAddr>,
    contested_until: i64,
}

/// Applies the address rule to one call from `addr` at `now` (ms).
pub fn observe(
    seen: &mut Option<Seen>,
    addr: IpAddr,
    now: i64,
    handover_ms: i64,
    contested_ms: i64,
) -> Verdict {
    let Some(s) = seen else {
        *seen = Some(Seen {
            addr,
            last_at: now,
            candidate: None,
            contested_until: 0,
        });
        return Verdict::Counts;
    };
    if addr == s.addr {
        if s.candidate.take().is_some() {
            // The kiosk is alive while another address talks for it: a stranger.
            s.contested_until = now.saturating_add(contested_ms);
        }
        s.last_at = now;
        return Verdict::Counts;
    }
    let silent = now.saturating_sub(s.last_at);
    match s.candidate {
        Some(c) if c == addr => {
            if silent >= handover_ms {
                s.addr = addr;
                s.last_at = now;
                s.candidate = None;
                Verdict::Counts
            } else {
                Verdict::Pending
            }
        }
        Some(_) => Verdict::Foreign,
        None if now < s.contested_until || silent > handover_ms => Verdict::Foreign,
        None => {
            s.candidate = Some(addr);
            Verdict::Pending
        }
    }
}

/// The unsigned calls seen per device code (only registered devices get an entry).
#[derive(Default)]
pub struct LegacyState {
    seen: dashmap::DashMap<String, Option<Seen>>,
}

impl LegacyState {
    /// The rule for a call for `code` from `addr`.
    pub fn observe(&self, s: &AppState, code: &str, addr: IpAddr) -> Verdict {
        let now = s.coord.clock().now_ms();
        let cfg = &s.cfg.legacy;
        let mut e = self.seen.entry(code.to_string()).or_default();
        observe(
            e.value_mut(),
            addr,
            now,
            cfg.address_handover_seconds.saturating_mul(1000),
            cfg.contested_seconds.saturating_mul(1000),
        )
    }
}

/// How a legacy call for a device is to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The device has no secret, or allows unsigned legacy calls: the address rule.
    Unsigned,
    /// A valid signature of the device's secret.
    Signed,
    /// The device has a secret and the request is not signed (or badly).
    Refused,
    /// No such device.
    Unknown,
}

/// How far a legacy request for `code` can be trusted.
pub async fn trust(s: &AppState, headers: &HeaderMap, code: &str) -> Result<Trust, ApiError> {
    let Some(policy) = crate::devices::legacy_credentials(s, code).await? else {
        return Ok(Trust::Unknown);
    };
    let Some(secret) = policy.secret else {
        return Ok(Trust::Unsigned);
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now_s = s.coord.clock().now_ms() / 1000;
    let skew = s.cfg.ws.signature_skew_seconds;
    match crate::kiosk_auth::check(
        &secret,
        code,
        h("x-kiosk-ts"),
        h("x-kiosk-nonce"),
        h("x-kiosk-sig"),
        now_s,
        skew,
    ) {
        Ok(_) => {
            let nonce = h("x-kiosk-nonce").unwrap_or_default();
            let fresh = s
                .remember_nonce(
                    format!("legacy:{code}:{nonce}"),
                    now_s.saturating_add(skew.saturating_mul(2)),
                )
                .await;
            Ok(if fresh { Trust::Signed } else { Trust::Refused })
        }
        Err(_) if policy.allow_unsigned => Ok(Trust::Unsigned),
        Err(_) => Ok(Trust::Refused),
    }
}

/// The refusal of an unsigned token call for a device with a secret: HTTP 401, `-21`.
pub fn signature_required() -> ApiError {
    ApiError::status(
        StatusCode::UNAUTHORIZED,
        codes::SIGNATURE_REQUIRED,
        "this device must sign its requests (X-Kiosk-Ts, X-Kiosk-Nonce, X-Kiosk-Sig)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 30_000;
    const C: i64 = 3_600_000;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn the_kiosks_address_counts_and_a_stranger_after_its_death_never_does() {
        let mut s = None;
        assert_eq!(observe(&mut s, ip(1), 0, H, C), Verdict::Counts);
        assert_eq!(observe(&mut s, ip(1), 5_000, H, C), Verdict::Counts);
        // The kiosk dies at 5 s; a stranger starts a minute later.
        for t in (65_000..400_000).step_by(5_000) {
            assert_eq!(observe(&mut s, ip(9), t, H, C), Verdict::Foreign, "at {t}");
        }
    }

    #[test]
    fn an_address_change_is_accepted_after_the_old_address_goes_silent() {
        let mut s = None;
        observe(&mut s, ip(1), 0, H, C);
        observe(&mut s, ip(1), 5_000, H, C);
        // The kiosk's address changes: it keeps its cadence from the new one.
        assert_eq!(observe(&mut s, ip(2), 10_000, H, C), Verdict::Pending);
        assert_eq!(observe(&mut s, ip(2), 30_000, H, C), Verdict::Pending);
        assert_eq!(observe(&mut s, ip(2), 35_000, H, C), Verdict::Counts);
        assert_eq!(observe(&mut s, ip(2), 40_000, H, C), Verdict::Counts);
        // The old address is now the stranger.
        assert_eq!(observe(&mut s, ip(1), 400_000, H, C), Verdict::Foreign);
    }

    #[test]
    fn a_stranger_talking_while_the_kiosk_lives_contests_the_device() {
        let mut s = None;
        observe(&mut s, ip(1), 0, H, C);
        assert_eq!(observe(&mut s, ip(9), 1_000, H, C), Verdict::Pending);
        assert_eq!(observe(&mut s, ip(1), 5_000, H, C), Verdict::Counts);
        // The kiosk then dies; the stranger is never accepted while contested.
        for t in (6_000..200_000).step_by(5_000) {
            assert_eq!(observe(&mut s, ip(9), t, H, C), Verdict::Foreign, "at {t}");
        }
        // A third address during a candidate is foreign too.
        let mut s = None;
        observe(&mut s, ip(1), 0, H, C);
        observe(&mut s, ip(2), 1_000, H, C);
        assert_eq!(observe(&mut s, ip(3), 2_000, H, C), Verdict::Foreign);
    }
}
