//! The network edge against the real binary (issue 13): what an attacker on the open
//! internet tries, refused as the process sees it (connections closed, bodies refused
//! before they are read, throttling), while legitimate traffic is still served.
//! No sleeping for effects: every wait polls with a deadline.

use crate::common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    addr: SocketAddr,
    base: String,
    _db: TestDb,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on a fresh database, with `env` (`KIOSKD_*` settings) over the defaults.
async fn start(env: &[(&str, &str)]) -> Server {
    let (tdb, url) = TestDb::new().await;
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kioskd"));
    cmd.arg("serve")
        .env("KIOSKD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("KIOSKD_DATABASE__URL", &url)
        .env("KIOSKD_OPS__TOKEN", OPS)
        .env("KIOSKD_IDENTITY__MODE", "dev")
        .env("KIOSKD_IDENTITY__COOKIE_SECRET", "edge-test-cookie-secret")
        .env("KIOSKD_LOG__FILTER", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("kioskd binary starts");
    let server = Server {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        _db: tdb,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{}/readyz", server.base)).send().await
            && r.status() == 200
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("kioskd did not become ready");
}

/// A connection from a given loopback address (127.0.0.0/8 is all local on Linux).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// Has the server closed `s` (EOF or reset) within `within`?
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (e.g. 408) before the close: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

/// A raw HTTP/1.1 request (with `Connection: close`) on a fresh connection from `from`:
/// the whole answer.
async fn raw_request(from: &str, to: SocketAddr, request: &str) -> String {
    let mut s = connect_from(from, to).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain HTTP/1.1 GET on a fresh connection from `from`: the status code.
async fn get_status(from: &str, to: SocketAddr, path: &str) -> u16 {
    let text = raw_request(
        from,
        to,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Issue 13, row 1: connections that trickle their headers (or send nothing) are closed
/// after the header-read timeout; the server answers others meanwhile.
#[tokio::test]
async fn slow_headers_are_closed_and_others_are_served_meanwhile() {
    let srv = start(&[("KIOSKD_SERVER__HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let mut slow = Vec::new();
    for i in 0..60 {
        let mut s = connect_from("127.0.0.1", srv.addr).await;
        if i % 2 == 0 {
            // Half a request line; the rest never comes.
            s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        }
        slow.push(s);
    }
    // Served while they hang.
    assert_eq!(get_status("127.0.0.1", srv.addr, "/healthz").await, 200);
    let started = Instant::now();
    for s in slow.iter_mut() {
        // One byte more now and then does not keep a connection open either.
        let _ = s.write_all(b"s").await;
    }
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(8)).await,
            "slow connection {i} still open after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(get_status("127.0.0.1", srv.addr, "/healthz").await, 200);
}

/// One address cannot hold more than `server.max_connections_per_address`: the next
/// connection is closed at accept, other addresses are served.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let srv = start(&[("KIOSKD_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "10")]).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(connect_from("127.0.0.3", srv.addr).await);
    }
    // The held ones are accepted (the server reads them: a request is answered).
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), held[0].read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The eleventh is closed at once (well before the 10 s header timeout).
    let mut extra = connect_from("127.0.0.3", srv.addr).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(3)).await,
        "the 11th connection from one address was kept"
    );
    assert_eq!(get_status("127.0.0.4", srv.addr, "/healthz").await, 200);
    // A place freed is a place again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect_from("127.0.0.3", srv.addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        if out.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server's resident memory (kB), from /proc.
fn rss_kb(srv: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `head` then up to `declared` body bytes (`prefix` first, then filler) while
/// reading: the status, and how many body bytes had been written when it came.
async fn post_huge(
    to: SocketAddr,
    path: &str,
    prefix: &[u8],
    declared: usize,
    content_type: &str,
) -> (u16, usize) {
    let s = connect_from("127.0.0.1", to).await;
    let (mut rd, mut wr) = s.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
    );
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let prefix = prefix.to_vec();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&prefix).await?;
        counter.fetch_add(prefix.len(), std::sync::atomic::Ordering::SeqCst);
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = declared - prefix.len();
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            counter.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            left -= n;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let at = sent.load(std::sync::atomic::Ordering::SeqCst);
    writer.abort();
    let text = String::from_utf8_lossy(&buf[..n]);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, at)
}

async fn ops_post(srv: &Server, path: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}{path}", srv.base))
        .bearer_auth(OPS)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Issue 13, row 2: 64 MiB bodies with a wrong token or an unknown SN are refused before
/// they are read (the answer comes while most of the body is still unsent) and the
/// server's memory does not grow with them; a known terminal is still served.
#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let srv = start(&[]).await;
    assert_eq!(
        ops_post(
            &srv,
            "/ops/terminals",
            serde_json::json!({"sn": "EDGE1", "token": "right-token", "name": "gate", "timezone": "Asia/Shanghai"})
        )
        .await,
        201
    );
    let before = rss_kb(&srv);
    const BIG: usize = 64 * 1024 * 1024;
    let form = "application/x-www-form-urlencoded";
    let mut refused = Vec::new();
    for _ in 0..4 {
        // One punch has a small limit: the declared length alone is refused.
        refused.push(
            post_huge(
                srv.addr,
                "/attendance/newRecord",
                b"token=wrong&SN=EDGE1&record=",
                BIG,
                form,
            )
            .await,
        );
        // A sync may be large: its token, first in the form, is checked before the rest.
        refused.push(
            post_huge(
                srv.addr,
                "/attendance/syncRecord",
                b"token=wrong&SN=EDGE1&records=",
                BIG,
                form,
            )
            .await,
        );
        // An unknown terminal is refused before its upload is read.
        refused.push(
            post_huge(
                srv.addr,
                "/iclock/cdata?SN=NOBODY&table=ATTLOG",
                b"",
                BIG,
                "text/plain",
            )
            .await,
        );
        // The legacy path too.
        refused.push(
            post_huge(
                srv.addr,
                "/weiphp30/index.php?s=/addon/DailyTime/DailyTime/syncRecord",
                b"token=wrong&SN=EDGE1&records=",
                BIG,
                form,
            )
            .await,
        );
    }
    for (i, (status, sent)) in refused.iter().enumerate() {
        assert!([403, 413].contains(status), "request {i}: status {status}");
        assert!(
            *sent < BIG / 2,
            "request {i}: the answer came only after {sent} of {BIG} bytes"
        );
    }
    let grown = rss_kb(&srv).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "RSS grew by {grown} kB for refused bodies"
    );
    // The right terminal is served, and its error-log upload of `null` (what ZkPush
    // sends with no logs) is "no logs".
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/attendance/sendErrorLogs", srv.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", "right-token"), ("logs", "null")]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{}/attendance/newRecord", srv.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([
            ("token", "right-token"),
            ("SN", "EDGE1"),
            ("record", "PIN=7&TIME=2026-12-01+08:00:00&STATUS=0&VERIFY=1&WORKCODE=0&RESERVED1=0&RESERVED2=0"),
        ]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// Issue 13, row 3: a flood of junk lines is refused; a large genuine upload is stored
/// in batches, and requests that need the database are answered while it runs.
#[tokio::test]
async fn large_uploads_do_not_hold_the_database() {
    let srv = start(&[]).await;
    assert_eq!(
        ops_post(
            &srv,
            "/ops/terminals",
            serde_json::json!({"sn": "EDGE2", "token": "second-token", "name": "gate", "timezone": "Asia/Shanghai"})
        )
        .await,
        201
    );
    assert_eq!(
        ops_post(&srv, "/ops/devices", serde_json::json!({"device_code": "11-22-33-44-55-66-77-12", "name": "seat", "charge_mode": 5, "province": "上海", "city": "上海", "area": "浦东", "location": "A1"})).await,
        201
    );
    let http = reqwest::Client::new();
    // 300,000 junk lines (0.6 MB): refused, nothing kept.
    let junk = "x\n".repeat(300_000);
    let r = http
        .post(format!(
            "{}/iclock/cdata?SN=EDGE2&table=ATTLOG&Stamp=1",
            srv.base
        ))
        .body(junk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // 20,000 genuine lines: accepted, while the database keeps answering others.
    let mut lines = String::new();
    for i in 0..20_000 {
        let (h, m, sec) = (i / 3600 % 24, i / 60 % 60, i % 60);
        lines.push_str(&format!(
            "{}\t2026-11-30 {h:02}:{m:02}:{sec:02}\t0\t1\t0\t0\t0\n",
            1000 + i % 50
        ));
    }
    let url = format!("{}/iclock/cdata?SN=EDGE2&table=ATTLOG&Stamp=2", srv.base);
    let upload = tokio::spawn({
        let http = http.clone();
        async move { http.post(url).body(lines).send().await.unwrap() }
    });
    let mut answered_meanwhile = 0;
    while !upload.is_finished() {
        let r = http
            .post(format!("{}/windows/check", srv.base))
            .json(&serde_json::json!({"device_code": "11-22-33-44-55-66-77-12"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .get(format!("{}/ops/devices", srv.base))
            .bearer_auth(OPS)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if !upload.is_finished() {
            answered_meanwhile += 1;
        }
    }
    let r = upload.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "OK:20000");
    assert!(
        answered_meanwhile > 0,
        "no database request was answered while the upload ran"
    );
}

/// Issue 13: 200 wrong ops tokens in a burst are throttled (429 `{"error"}`) after a
/// handful; the right token from another address is still served.
#[tokio::test]
async fn wrong_ops_tokens_are_throttled() {
    let srv = start(&[]).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = http.clone();
        let url = format!("{}/ops/devices", srv.base);
        tasks.push(tokio::spawn(async move {
            http.get(url)
                .bearer_auth(format!("wrong-{i}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        throttled >= 150,
        "only {throttled} of 200 throttled: {statuses:?}"
    );
    assert!(statuses.iter().all(|s| [401, 429].contains(s)));
    // The operator elsewhere is unaffected.
    let out = raw_request(
        "127.0.0.9",
        srv.addr,
        &format!("GET /ops/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPS}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// Operator sign-ins (`POST /ops/login`, an argon2 check each) are throttled per address:
/// 5 at once, then 10 a minute; another address still signs in.
#[tokio::test]
async fn operator_sign_ins_are_throttled_per_address() {
    let srv = start(&[]).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = http
            .post(format!("{}/ops/login", srv.base))
            .json(
                &serde_json::json!({"username": format!("guess{i}"), "password": "wrong-password"}),
            )
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        if st == 429 {
            let v: serde_json::Value = r.json().await.unwrap();
            assert!(v["error"].is_string(), "the ops dialect's error: {v}");
        }
        statuses.push(st);
    }
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    // 5 at once, then one every 6 s: at least 4 of the 12 are refused even if the run
    // took 20 s on a loaded machine (it takes well under one).
    assert!(
        throttled >= 4,
        "only {throttled} of 12 throttled: {statuses:?}"
    );
    assert!(
        statuses[..5].iter().all(|s| *s == 401),
        "the first five are answered: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    // Another address is not throttled: its wrong password is a plain 401.
    let body = r#"{"username":"guess","password":"wrong-password"}"#;
    let out = raw_request(
        "127.0.0.9",
        srv.addr,
        &format!(
            "POST /ops/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
}

/// Issue 13: guessing client ids is throttled per address (dialect B's flat object,
/// 429), and once throttled a hit looks like a miss; kiosks elsewhere are served.
#[tokio::test]
async fn client_id_enumeration_is_throttled() {
    let srv = start(&[("KIOSKD_REST__SERVICE_NUMBER", "13700000000")]).await;
    let http = reqwest::Client::new();
    assert_eq!(
        ops_post(&srv, "/ops/devices", serde_json::json!({"device_code": "11-22-33-44-55-66-77-13", "name": "seat", "charge_mode": 5, "province": "上海", "city": "上海", "area": "浦东", "location": "A1", "client_id": "555001"})).await,
        201
    );
    let mut limited = 0;
    for i in 0..60 {
        let r = http
            .get(format!(
                "{}/rest/clientStatus?clientId={}&clientStatus=1",
                srv.base,
                900000 + i
            ))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited += 1;
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["data"], 0, "{v}");
        }
    }
    assert!(limited >= 30, "only {limited} of 60 guesses throttled");
    // The real id from the guessing address is refused too (no hit stands out) ...
    let r = http
        .get(format!(
            "{}/rest/clientStatus?clientId=555001&clientStatus=1",
            srv.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // ... and served from any other address.
    let mut s = connect_from("127.0.0.10", srv.addr).await;
    s.write_all(b"GET /rest/clientStatus?clientId=555001&clientStatus=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}
