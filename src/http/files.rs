//! Kiosk media (`/files/*`, seed 002, SPEC §6): operator-supplied files such as
//! `background.png` (the QR screen's picture) and `video.mp4` (the standby loop) from
//! `files.dir`. Each request opens the file afresh, so operators replace files without a
//! restart (write the new file beside it and rename it over the old one: a download in
//! progress keeps the file it opened).
//!
//! `HEAD` and `GET` answer an exact `Content-Length`, `ETag` (size and modification
//! time) and `Last-Modified`, honour `If-None-Match` / `If-Modified-Since` (304) and a
//! single byte `Range` (206; 416 when unsatisfiable; several ranges get the whole file).
//! A missing file is a 404 with an **empty body**: the field client saves any body it
//! gets as its picture.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::AppState;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/files", get(missing))
        .route("/files/", get(missing))
        .route("/files/{*name}", get(serve))
}

/// 404 with an empty body.
fn not_found() -> Response {
    let mut r = StatusCode::NOT_FOUND.into_response();
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

async fn missing() -> Response {
    not_found()
}

/// A plain file name in the media folder: no folders, no hidden files, no traversal.
fn file_name(raw: &str) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && !raw.starts_with('.')
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    ok.then_some(raw)
}

fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// A single satisfiable range `(start, end_inclusive)`, `Err(())` unsatisfiable, `None`
/// to serve the whole file (no header, not bytes, several ranges, unreadable).
fn parse_range(v: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last n bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        u64::MAX
    } else {
        b.parse().ok()?
    };
    if end < start {
        return None;
    }
    if start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(len - 1))))
}

/// A download's place under `files.max_downloads_per_address`, given back when its body
/// is dropped (finished, failed or cut off).
struct Download {
    s: AppState,
    ip: std::net::IpAddr,
}

impl Download {
    fn take(s: &AppState, ip: std::net::IpAddr) -> Option<Self> {
        let mut n = s.downloads.entry(ip).or_insert(0);
        if *n >= s.cfg.files.max_downloads_per_address {
            return None;
        }
        *n += 1;
        Some(Self { s: s.clone(), ip })
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.s.downloads.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// 429 with an empty body (the field client keeps any body as its picture).
fn busy() -> Response {
    metrics::counter!(kioskd_actors::catalog::RATE_LIMITED, "reason" => "downloads").increment(1);
    let mut r = StatusCode::TOO_MANY_REQUESTS.into_response();
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn serve(
    State(s): State<AppState>,
    crate::net::ClientIp(ip): crate::net::ClientIp,
    method: Method,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(name) = file_name(&raw) else {
        return not_found();
    };
    let path: PathBuf = PathBuf::from(&s.cfg.files.dir).join(name);
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return not_found();
    };
    let Ok(meta) = file.metadata().await else {
        return not_found();
    };
    if !meta.is_file() {
        return not_found();
    }
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let etag = format!("\"{len:x}-{nanos:x}\"");
    let last_modified = http_date(modified);

    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Operators replace files in place: clients revalidate (cheap, with the ETag).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }

    // Conditional requests: If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let header_str = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let not_modified = match header_str(header::IF_NONE_MATCH) {
        Some(inm) => inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag),
        None => header_str(header::IF_MODIFIED_SINCE)
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .is_some_and(|since| {
                let m = modified
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                m <= since.timestamp()
            }),
    };
    if not_modified {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }

    // A Range counts only if If-Range (when given) still names this version.
    let range_applies = match header_str(header::IF_RANGE) {
        None => true,
        Some(v) => v == etag || v == last_modified,
    };
    let range = if range_applies {
        header_str(header::RANGE).and_then(|v| parse_range(v, len))
    } else {
        None
    };
    let (status, start, count) = match range {
        None => (StatusCode::OK, 0, len),
        Some(Err(())) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
        Some(Ok((a, b))) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD {
        return (status, h).into_response();
    }
    // Slow readers: a few downloads per address, each within a deadline (a client that
    // stops reading altogether is closed by the connection's write-stall guard).
    let Some(slot) = Download::take(&s, ip) else {
        return busy();
    };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return not_found();
    }
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_secs(s.cfg.files.download_timeout_seconds);
    let reader = file.take(count);
    let stream = futures::stream::unfold((reader, slot), move |(mut r, slot)| async move {
        if tokio::time::Instant::now() >= deadline {
            metrics::counter!(kioskd_actors::catalog::CONNECTIONS_CLOSED, "reason" => "download_timeout")
                .increment(1);
            return Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "download took too long",
                )),
                (r, slot),
            ));
        }
        let mut buf = vec![0u8; 64 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (r, slot)))
            }
            Err(e) => Some((Err(e), (r, slot))),
        }
    });
    (status, h, Body::from_stream(stream)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-1000", 100), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=50-1000", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=9-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
    }

    #[test]
    fn names() {
        assert_eq!(file_name("background.png"), Some("background.png"));
        assert_eq!(file_name("../etc/passwd"), None);
        assert_eq!(file_name(".hidden"), None);
        assert_eq!(file_name("a/b.png"), None);
        assert_eq!(file_name(""), None);
    }
}
