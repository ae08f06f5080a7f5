//! The pages people use, served by the binary itself: the phone app (`/app/`), the
//! operator console (`/console/`) and a landing page (`/`). Their files live in `web/`
//! and are embedded at build time (rust-embed; a debug build reads them from disk so a
//! page edit needs no rebuild). No Node.js is needed to build or run kioskd.
//!
//! - HTML is `Cache-Control: no-store` (WeChat's Android browser caches HTML otherwise).
//!   Every `"/assets/` reference in a page is rewritten to `"/assets/v-<version>/`,
//!   where the version is a hash of every embedded file, so assets can be cached for a
//!   year and a new build is never served a stale script.
//! - Every page carries a Content-Security-Policy that allows only kioskd's own origin
//!   (phone pages also WeChat's JS-SDK host), and the usual security headers. Pages have
//!   no inline scripts or styles.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use super::AppState;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Web;

/// WeChat's JS-SDK host, the only foreign origin a phone page may load a script from.
pub const WECHAT_JS_HOST: &str = "https://res.wx.qq.com";

/// The policy of operator pages (and the landing page).
const CSP_CONSOLE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The policy of phone pages: the same, plus the JS-SDK script.
static CSP_PHONE: LazyLock<String> = LazyLock::new(|| {
    CSP_CONSOLE.replace(
        "script-src 'self';",
        &format!("script-src 'self' {WECHAT_JS_HOST};"),
    )
});

/// A hash of every embedded file: the asset URL version.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for name in Web::iter() {
        if let Some(f) = Web::get(&name) {
            h.update(name.as_bytes());
            h.update(f.metadata.sha256_hash());
        }
    }
    hex::encode(&h.finalize()[..6])
});

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page("index.html", Face::Console) }))
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(|| async { page("app/index.html", Face::Phone) }))
        .route(
            "/app/{*path}",
            get(|Path(p): Path<String>| async move { page(&format!("app/{p}"), Face::Phone) }),
        )
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route(
            "/console/",
            get(|| async { page("console/index.html", Face::Console) }),
        )
        .route(
            "/console/{*path}",
            get(|Path(p): Path<String>| async move {
                page(&format!("console/{p}"), Face::Console)
            }),
        )
        .route("/assets/{*path}", get(asset))
}

#[derive(Clone, Copy)]
enum Face {
    Phone,
    Console,
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        security_headers(HeaderMap::new(), CSP_CONSOLE),
        "not found",
    )
        .into_response()
}

fn security_headers(mut h: HeaderMap, csp: &str) -> HeaderMap {
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A page: `path` as given, or `path/index.html`, or `path.html`.
fn page(path: &str, face: Face) -> Response {
    if path.split('/').any(|seg| seg == ".." || seg.starts_with('.')) {
        return not_found();
    }
    let candidates = [
        Cow::Borrowed(path),
        Cow::Owned(format!("{}/index.html", path.trim_end_matches('/'))),
        Cow::Owned(format!("{path}.html")),
    ];
    let Some((name, file)) = candidates
        .iter()
        .find_map(|c| Web::get(c).map(|f| (c.clone(), f)))
    else {
        return not_found();
    };
    let csp = match face {
        Face::Phone => CSP_PHONE.as_str(),
        Face::Console => CSP_CONSOLE,
    };
    let mut h = security_headers(HeaderMap::new(), csp);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let ct = content_type(&name);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if !name.ends_with(".html") {
        return (h, file.data.into_owned()).into_response();
    }
    let html = String::from_utf8_lossy(&file.data)
        .replace("\"/assets/", &format!("\"/assets/v-{}/", *VERSION));
    (h, html).into_response()
}

/// `/assets/v-<version>/<path>` (cached for a year) or `/assets/<path>` (revalidated).
async fn asset(Path(p): Path<String>, req_headers: HeaderMap) -> Response {
    let (versioned, rest) = match p.strip_prefix("v-").and_then(|r| r.split_once('/')) {
        Some((_, rest)) => (true, rest),
        None => (false, p.as_str()),
    };
    if rest.split('/').any(|seg| seg == ".." || seg.starts_with('.')) {
        return not_found();
    }
    let name = format!("assets/{rest}");
    let Some(file) = Web::get(&name) else {
        return not_found();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    let mut h = security_headers(HeaderMap::new(), CSP_CONSOLE);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if versioned {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    let fresh = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    (h, file.data.into_owned()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_html_page_has_no_inline_script_or_style() {
        for name in Web::iter().filter(|n| n.ends_with(".html")) {
            let f = Web::get(&name).expect("listed file");
            let text = String::from_utf8_lossy(&f.data).to_lowercase();
            assert!(!text.contains(" style=\""), "{name}: inline style attribute");
            assert!(!text.contains(" onclick="), "{name}: inline handler");
            for (i, _) in text.match_indices("<script") {
                let tag = &text[i..i + text[i..].find('>').unwrap_or(0)];
                assert!(tag.contains("src="), "{name}: inline <script>");
            }
        }
    }

    #[test]
    fn phone_pages_may_load_the_wechat_sdk_and_console_pages_may_not() {
        assert!(CSP_PHONE.contains(WECHAT_JS_HOST));
        assert!(!CSP_CONSOLE.contains("wx.qq.com"));
        assert!(CSP_CONSOLE.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn the_version_is_stable_and_hex() {
        assert_eq!(VERSION.len(), 12);
        assert!(VERSION.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
