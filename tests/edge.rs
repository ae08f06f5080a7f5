//! The network edge against the real binary (issue 13): what an attacker on the open
//! internet tries, refused as the process sees it (connections closed, bodies refused
//! before they are read, throttling), while legitimate traffic is still served.
//! No sleeping for effects: every wait polls with a deadline.

mod common;

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

/// A plain HTTP/1.1 GET on a fresh connection from `from`: the status code.
async fn get_status(from: &str, to: SocketAddr, path: &str) -> u16 {
    let mut s = connect_from(from, to).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
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
