//! Cross-site refusal for the phone's state-changing requests (issue 13 item 5): a
//! session start (`/windows/login/<code>?from=playing`), `/windows/offline`, a recharge
//! (`/wechat/recharge/<amount>`), an order payment (`/wechat/order/pay`) and a binding
//! through `/wechat/app/login?ticket=`.
//!
//! The rule, in order:
//! 1. A browser that sends Fetch Metadata is believed: only `Sec-Fetch-Site: same-origin`
//!    passes. `none` (a typed URL, a bookmark, *and the WeChat camera opening a scanned
//!    URL*), `same-site` and `cross-site` are refused: a plain navigation never changes
//!    anything; kioskd's own pages make these calls with a same-origin `fetch`.
//! 2. Without `Sec-Fetch-Site` (old WebViews), the `Origin` header, or else the `Referer`,
//!    must name kioskd's origin: `public.base_url`'s, the request's own `Host`, or one of
//!    `csrf.extra_origins`. A request with neither is refused (kioskd's pages send a
//!    same-origin `Referer`: their `Referrer-Policy` is `same-origin`).
//!
//! Checked after the caller is identified (so an anonymous caller still hears "not
//! signed in") and before anything changes.

use axum::http::{HeaderMap, StatusCode, header};

use super::codes;
use super::{ApiError, AppState};

/// Does the request come from kioskd's own pages?
pub fn from_our_pages(s: &AppState, h: &HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site") {
        return site.as_bytes().eq_ignore_ascii_case(b"same-origin");
    }
    let claimed = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| !o.eq_ignore_ascii_case("null"))
        .or_else(|| h.get(header::REFERER).and_then(|v| v.to_str().ok()));
    let Some(claimed) = claimed.and_then(|c| reqwest::Url::parse(c).ok()) else {
        return false;
    };
    let Some(origin) = origin_of(&claimed) else {
        return false;
    };
    let mut configured = std::iter::once(s.cfg.public.base_url.as_str())
        .chain(s.cfg.csrf.extra_origins.iter().map(String::as_str))
        .filter_map(|u| reqwest::Url::parse(u).ok())
        .filter_map(|u| origin_of(&u));
    if configured.any(|o| o == origin) {
        return true;
    }
    // The request's own host (any scheme: a TLS-terminating proxy in front).
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    host.is_some_and(|host| authority(&claimed).is_some_and(|a| a == host))
}

fn origin_of(u: &reqwest::Url) -> Option<String> {
    let o = u.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

fn authority(u: &reqwest::Url) -> Option<String> {
    let host = u.host_str()?.to_ascii_lowercase();
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// The refusal: HTTP 403, the envelope with `CROSS_SITE`; nothing changed.
pub fn refused() -> ApiError {
    ApiError::status(
        StatusCode::FORBIDDEN,
        codes::CROSS_SITE,
        "请在应用页面内操作（跨站请求已拒绝）",
    )
}

/// `Err(refusal)` unless the request comes from kioskd's own pages.
pub fn check(s: &AppState, h: &HeaderMap) -> Result<(), ApiError> {
    if from_our_pages(s, h) {
        Ok(())
    } else {
        Err(refused())
    }
}
