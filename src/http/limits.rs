//! Rate limits per client address (issue 13, part 3): one `governor` keyed limiter per
//! bucket, keyed by the client address of [`crate::net::client_ip`]. Each refusal is
//! answered in its dialect (envelope -12 for dialect A and the phone, the flat object
//! for dialect B, `{"error"}` 429 for ops) and counted in
//! `kioskd_http_rate_limited_total{reason=<bucket>}`.
//!
//! Lookups by device code or client id (`/windows/check`, `/windows/login/<code>`,
//! `/rest/*?clientId=`) count only misses, so a venue's kiosks behind one address poll
//! freely; an address over its miss budget is refused every lookup, hits included,
//! until the limiter would let it miss again (otherwise a hit would still stand out).
//! Ops bearer-token failures work the same way.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kioskd_actors::catalog;

use super::{AppState, codes};

/// A response marker: this request looked a device up and found none.
#[derive(Debug, Clone, Copy)]
pub struct LookupMiss;

/// A response marker: the envelope's failure code (set by `super::fail`).
#[derive(Debug, Clone, Copy)]
pub struct FailCode(pub i32);

/// The buckets.
pub struct Limits {
    oauth: DefaultKeyedRateLimiter<IpAddr>,
    ops_auth: DefaultKeyedRateLimiter<IpAddr>,
    lookup: DefaultKeyedRateLimiter<IpAddr>,
    maintain_login: DefaultKeyedRateLimiter<IpAddr>,
    captcha: DefaultKeyedRateLimiter<IpAddr>,
    ops_login: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses refused every lookup (or ops call) until the instant: the limiter's
    /// verdict on their last miss, remembered so hits are refused too.
    boxed: dashmap::DashMap<(IpAddr, &'static str), Instant>,
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    /// The buckets (quotas per client address; see SECURITY.md).
    pub fn new(_cfg: &crate::config::Config) -> Self {
        Self {
            // Sign-in round trips that cost the platform's daily quota.
            oauth: RateLimiter::keyed(quota(30, 10)),
            // Wrong ops tokens.
            ops_auth: RateLimiter::keyed(quota(10, 10)),
            // Unknown device codes / client ids.
            lookup: RateLimiter::keyed(quota(30, 20)),
            // Maintainer logins (argon2 per attempt).
            maintain_login: RateLimiter::keyed(quota(10, 5)),
            // SMS sends (the per-mobile limits are the database's).
            captcha: RateLimiter::keyed(quota(10, 5)),
            ops_login: RateLimiter::keyed(quota(10, 5)),
            boxed: Default::default(),
        }
    }

    fn boxed_until(&self, ip: IpAddr, bucket: &'static str) -> bool {
        let now = Instant::now();
        match self.boxed.get(&(ip, bucket)) {
            Some(t) if *t > now => true,
            Some(_) => {
                self.boxed.remove_if(&(ip, bucket), |_, t| *t <= now);
                false
            }
            None => false,
        }
    }

    /// Counts a miss; false when the address is over its budget (and boxed from now on
    /// until the limiter lets it miss again).
    fn miss(&self, l: &DefaultKeyedRateLimiter<IpAddr>, ip: IpAddr, bucket: &'static str) -> bool {
        match l.check_key(&ip) {
            Ok(()) => true,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                if self.boxed.len() > 100_000 {
                    let now = Instant::now();
                    self.boxed.retain(|_, t| *t > now);
                }
                self.boxed.insert(
                    (ip, bucket),
                    Instant::now() + wait.max(Duration::from_secs(1)),
                );
                false
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Envelope,
    Rest,
    Ops,
}

fn limited(dialect: Dialect, bucket: &'static str, path: &str) -> Response {
    metrics::counter!(catalog::RATE_LIMITED, "reason" => bucket).increment(1);
    let mut r = match dialect {
        // The phone and dialect A read `success`/`result` (SPEC, protocol/README.md):
        // the documented -12 on HTTP 200, as for the captcha limits.
        Dialect::Envelope => super::fail(codes::RATE_LIMITED, "操作过于频繁，请稍后再试"),
        Dialect::Rest => super::rest::rate_limited(path),
        Dialect::Ops => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({ "error": "too many requests; retry later" })),
        )
            .into_response(),
    };
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("10"),
    );
    r
}

/// Does this `/windows/check` reply say "not deployed" (an unknown code)?
async fn check_missed(r: Response) -> (bool, Response) {
    let (parts, body) = r.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (false, Response::from_parts(parts, Body::empty()));
    };
    let missed = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .is_some_and(|v| v["result"]["status"] == -1);
    (missed, Response::from_parts(parts, Body::from(bytes)))
}

/// The middleware.
pub async fn limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.cfg.server.rate_limits {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let Some(ip) = crate::net::ClientIp::from_extensions(req.extensions()) else {
        return next.run(req).await;
    };
    let l = &s.limits;
    let post = method == Method::POST;
    // Buckets charged per request.
    let per_request = match path.as_str() {
        "/windows/maintain/login" if post => {
            Some((&l.maintain_login, "maintain_login", Dialect::Envelope))
        }
        "/wechat/captcha" if post => Some((&l.captcha, "captcha", Dialect::Envelope)),
        "/ops/login" if post => Some((&l.ops_login, "ops_login", Dialect::Ops)),
        p if p.starts_with("/wechat/oauth/") || p == "/wechat/app/login" => {
            Some((&l.oauth, "oauth", Dialect::Envelope))
        }
        _ => None,
    };
    if let Some((lim, bucket, dialect)) = per_request {
        if lim.check_key(&ip).is_err() {
            return limited(dialect, bucket, &path);
        }
        return next.run(req).await;
    }
    // Buckets charged per miss.
    let (bucket, dialect) =
        if (path == "/windows/check" && post) || path.starts_with("/windows/login/") {
            ("lookup", Dialect::Envelope)
        } else if path.starts_with("/rest/") {
            ("lookup", Dialect::Rest)
        } else if path.starts_with("/ops/") {
            ("ops_auth", Dialect::Ops)
        } else {
            return next.run(req).await;
        };
    if l.boxed_until(ip, bucket) {
        return limited(dialect, bucket, &path);
    }
    let r = next.run(req).await;
    let (missed, r) = match bucket {
        "ops_auth" => (r.status() == StatusCode::UNAUTHORIZED, r),
        _ if path == "/windows/check" => check_missed(r).await,
        _ => (
            r.extensions().get::<LookupMiss>().is_some()
                || r.extensions()
                    .get::<FailCode>()
                    .is_some_and(|c| c.0 == codes::NO_SUCH_DEVICE),
            r,
        ),
    };
    if missed {
        let lim = if bucket == "ops_auth" {
            &l.ops_auth
        } else {
            &l.lookup
        };
        if !l.miss(lim, ip, bucket) {
            return limited(dialect, bucket, &path);
        }
    }
    r
}
