//! Who may call which `/ops/*` route. One middleware resolves the caller (the shared
//! ops token, a personal API token, or the console's session cookie), refuses
//! cross-site state changes made with the cookie, and checks the route's rule in
//! [`rule`]: a route without a rule is refused to everyone (a test walks every `/ops/`
//! route in the source and fails when one has no rule). The caller goes into the
//! request's extensions for the handler ([`super::ops::Operator`]) and into the
//! response's for the audit log.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::cookie::CookieJar;
use subtle::ConstantTimeEq;

use super::AppState;
use super::ops::{err, internal};
use crate::operators::{Principal, Role, Via};

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "kioskd_op";

/// What a route acts on, for operators limited to some sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Nothing site-bound (reads, or admin-only actions).
    None,
    /// The device named by the path's `{code}`.
    Device,
    /// The session named by the path's `{id}`.
    Session,
    /// Something that belongs to no site (attendance terminals): only operators
    /// without a site limit.
    Unscoped,
}

/// A route's rule: the least role, and what it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The least role allowed.
    pub role: Role,
    /// For site-limited operators.
    pub scope: Scope,
}

const fn r(role: Role, scope: Scope) -> Option<Rule> {
    Some(Rule { role, scope })
}

/// Routes anyone may call (they authenticate by other means).
pub fn public(method: &Method, pattern: &str) -> bool {
    *method == Method::POST && pattern == "/ops/login"
}

/// The rule of every `/ops/*` route (method and axum route pattern). `None`: no rule,
/// refused to everyone.
pub fn rule(method: &Method, pattern: &str) -> Option<Rule> {
    use Role::*;
    use Scope::*;
    match (method.as_str(), pattern) {
        // Signed-in operators about themselves.
        ("GET", "/ops/me") | ("POST", "/ops/logout") => r(Viewer, None),
        ("GET" | "POST", "/ops/tokens") | ("DELETE", "/ops/tokens/{id}") => r(Viewer, None),
        // Reads.
        (
            "GET",
            "/ops/devices"
            | "/ops/sessions"
            | "/ops/maintainers"
            | "/ops/users/{id}"
            | "/ops/users/{id}/ledger"
            | "/ops/audit"
            | "/ops/terminals"
            | "/ops/terminals/{sn}/commands"
            | "/ops/terminals/{sn}/quarantine"
            | "/ops/terminals/{sn}/errors"
            | "/ops/punches"
            | "/ops/staff"
            | "/ops/outbox"
            // The console's reads (ops_console.rs).
            | "/ops/users"
            | "/ops/users/{id}/sessions"
            | "/ops/devices/{code}"
            | "/ops/alerts"
            | "/ops/reports"
            // Pricing (ops_pricing.rs).
            | "/ops/pricing/plans"
            | "/ops/pricing/plans/{id}"
            | "/ops/pricing/zones"
            | "/ops/pricing/groups"
            | "/ops/pricing/packages"
            | "/ops/users/{id}/packages",
        ) => r(Viewer, None),
        // Acting on devices and sessions.
        ("POST", "/ops/devices/{code}/command")
        | ("PUT", "/ops/devices/{code}/games/{game_id}") => r(Staff, Device),
        ("POST", "/ops/sessions/{id}/end") => r(Staff, Session),
        ("POST", "/ops/terminals/{sn}/commands") => r(Staff, Unscoped),
        // Configuration, money and people.
        (
            "POST",
            "/ops/devices"
            | "/ops/broadcast"
            | "/ops/maintainers"
            | "/ops/games"
            | "/ops/users/{id}/adjust"
            | "/ops/users/{id}/state"
            | "/ops/terminals"
            | "/ops/staff"
            | "/ops/notices/prize"
            | "/ops/callbacks/flow-order"
            | "/ops/outbox/{id}/retry"
            | "/ops/operators"
            | "/ops/operators/{username}"
            | "/ops/devices/{code}/legacy"
            | "/ops/terminals/{sn}/iclock",
        ) => r(Admin, Unscoped),
        ("DELETE", "/ops/staff/{pin}") => r(Admin, Unscoped),
        // Pricing: plans, zones, groups, packages, and what users get.
        (
            "POST",
            "/ops/pricing/plans"
            | "/ops/pricing/zones"
            | "/ops/pricing/groups"
            | "/ops/pricing/packages"
            | "/ops/users/{id}/packages",
        )
        | (
            "PUT",
            "/ops/pricing/plans/{id}"
            | "/ops/pricing/plans/{id}/days/{day}"
            | "/ops/pricing/zones/{id}"
            | "/ops/pricing/devices/{code}"
            | "/ops/pricing/groups/{id}"
            | "/ops/pricing/packages/{id}"
            | "/ops/users/{id}/group",
        )
        | ("DELETE", "/ops/pricing/plans/{id}" | "/ops/pricing/plans/{id}/days/{day}") => {
            r(Admin, Unscoped)
        }
        ("GET", "/ops/operators") => r(Admin, None),
        _ => Option::None,
    }
}

/// Does any method of this route have a rule?
fn has_any_rule(pattern: &str) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ]
    .iter()
    .any(|m| rule(m, pattern).is_some() || public(m, pattern))
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The caller: the shared token, a personal token, or the session cookie; `None` when
/// none of them is presented and valid. `query_token` is a WebSocket's `?token=`.
pub async fn principal(
    s: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Option<Principal>, crate::operators::OperatorError> {
    let now = s.coord.clock().now_ms();
    if let Some(t) = bearer(headers).or(query_token).filter(|t| !t.is_empty()) {
        let want = s.cfg.ops.token.expose();
        if !want.is_empty() && bool::from(want.as_bytes().ct_eq(t.as_bytes())) {
            return Ok(Some(Principal::service()));
        }
        return s.operators.by_token(t, now).await;
    }
    let jar = CookieJar::from_headers(headers);
    match jar.get(SESSION_COOKIE) {
        Some(c) => s.operators.by_session(c.value(), now).await,
        None => Ok(None),
    }
}

/// Is this request from a page of our own origin? Browsers send `Sec-Fetch-Site` on
/// every request; older ones at least `Origin` on state changes. A request with
/// neither did not come from a browser page, and a cookie alone does not authorise it.
pub fn same_origin(h: &HeaderMap, public_base_url: &str) -> bool {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin";
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (!host.is_empty() && origin_host == host)
        || origin.trim_end_matches('/') == public_base_url.trim_end_matches('/')
}

fn is_mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of `{name}` in `path` for the route `pattern`.
fn param<'a>(pattern: &str, path: &'a str, name: &str) -> Option<&'a str> {
    let want = format!("{{{name}}}");
    pattern
        .split('/')
        .zip(path.split('/'))
        .find(|(p, _)| *p == want)
        .map(|(_, v)| v)
}

fn refused(p: &Principal, msg: String) -> Response {
    let mut resp = err(StatusCode::FORBIDDEN, msg);
    resp.extensions_mut().insert(p.clone());
    resp
}

/// The middleware (on the whole router; it acts on matched `/ops/*` routes).
pub async fn authorize(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/ops/") {
        return next.run(req).await;
    }
    let Some(pattern) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    if public(&method, &pattern) {
        return next.run(req).await;
    }
    if rule(&method, &pattern).is_none() && has_any_rule(&pattern) {
        // A method the route does not serve (every routed method has a rule: a unit
        // test walks them) goes on to axum's 405; handlers still demand an operator.
        return next.run(req).await;
    }
    let p = match principal(&s, req.headers(), None).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return err(
                StatusCode::UNAUTHORIZED,
                "sign in, or send Authorization: Bearer <token>",
            );
        }
        Err(e) => return internal(e),
    };
    if p.via == Via::Session
        && is_mutating(&method)
        && !same_origin(req.headers(), &s.cfg.public.base_url)
    {
        return refused(&p, "cross-site request refused".into());
    }
    let Some(rule) = rule(&method, &pattern) else {
        return refused(&p, format!("no access rule for {method} {pattern}"));
    };
    if p.role < rule.role {
        return refused(
            &p,
            format!(
                "a {} may not do this (needs {})",
                p.role.as_str(),
                rule.role.as_str()
            ),
        );
    }
    if !p.sites.is_empty() {
        let path = req.uri().path().to_string();
        let site = match rule.scope {
            Scope::None => Ok(Some(None)),
            Scope::Unscoped => Ok(None),
            Scope::Device => match param(&pattern, &path, "code")
                .and_then(kioskd_actors::ids::normalize_device_code)
            {
                Some(code) => s.operators.device_site(&code).await.map(Some),
                None => Ok(Some(None)),
            },
            Scope::Session => match param(&pattern, &path, "id").and_then(|v| v.parse().ok()) {
                Some(id) => s.operators.session_site(id).await.map(Some),
                None => Ok(Some(None)),
            },
        };
        match site {
            Err(e) => return internal(e),
            Ok(None) => return refused(&p, "only operators of every site may do this".into()),
            Ok(Some(site)) if rule.scope != Scope::None && !p.covers(site.as_deref()) => {
                return refused(&p, "that device is not at one of your sites".into());
            }
            Ok(Some(_)) => {}
        }
    }
    req.extensions_mut().insert(p.clone());
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(p);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route("/ops/…", method(…)…)` in the HTTP adapters, as (method, pattern).
    fn ops_routes_in_source() -> Vec<(String, String)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
        let mut out = vec![];
        for entry in std::fs::read_dir(dir).expect("src/http") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let mut rest = text.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + ".route(".len()..];
                // The call's text up to its closing parenthesis.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map(|(i, _)| i)
                    .unwrap_or(rest.len());
                let call = &rest[..end];
                let Some(q1) = call.find('"') else { continue };
                let Some(q2) = call[q1 + 1..].find('"') else {
                    continue;
                };
                let pattern = &call[q1 + 1..q1 + 1 + q2];
                if !pattern.starts_with("/ops/") {
                    continue;
                }
                for (word, method) in [
                    ("get(", "GET"),
                    ("post(", "POST"),
                    ("put(", "PUT"),
                    ("delete(", "DELETE"),
                    ("patch(", "PATCH"),
                    ("any(", "ANY"),
                ] {
                    if call.contains(word) {
                        out.push((method.to_string(), pattern.to_string()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_ops_route_in_the_source_has_a_rule() {
        let routes = ops_routes_in_source();
        assert!(
            routes.len() > 30,
            "the scan found too few routes: {routes:?}"
        );
        let missing: Vec<_> = routes
            .iter()
            .filter(|(m, p)| {
                let method = Method::from_bytes(m.as_bytes()).expect("method");
                m == "ANY" || (rule(&method, p).is_none() && !public(&method, p))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "routes without an access rule: {missing:?}"
        );
    }

    #[test]
    fn reads_are_for_viewers_actions_for_staff_and_configuration_for_admins() {
        let g = |m: Method, p: &str| rule(&m, p).map(|r| r.role);
        assert_eq!(g(Method::GET, "/ops/devices"), Some(Role::Viewer));
        assert_eq!(
            g(Method::POST, "/ops/devices/{code}/command"),
            Some(Role::Staff)
        );
        assert_eq!(g(Method::POST, "/ops/users/{id}/adjust"), Some(Role::Admin));
        assert_eq!(g(Method::POST, "/ops/no-such-route"), None);
    }

    #[test]
    fn same_origin_needs_fetch_metadata_or_a_matching_origin() {
        let mut h = HeaderMap::new();
        assert!(
            !same_origin(&h, "http://k"),
            "no headers: not from our page"
        );
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        h.insert(header::ORIGIN, "http://k".parse().unwrap());
        assert!(!same_origin(&h, "http://k"), "fetch metadata wins");
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h, "http://k"));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h, "https://public.example"));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, "https://public.example"));
    }
}
