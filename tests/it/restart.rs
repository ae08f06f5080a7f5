//! Kill the real binary mid-session (SIGKILL, no shutdown) and start it again on the
//! same database: the session continues or ends as SPEC §3 says, the ledger exact.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

const CODE: &str = "11-22-33-44-55-66-77-86";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with a 4 s heartbeat timeout (the scenarios that wait for it to pass).
async fn start(db_url: &str, port: u16) -> Server {
    start_with_timeout(db_url, port, 4).await
}

/// `timeout_s` is the session heartbeat timeout: a scenario that must find its session
/// alive after a restart gives it room for a slow start on a loaded CI machine.
async fn start_with_timeout(db_url: &str, port: u16, timeout_s: u32) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_kioskd"))
        .arg("serve")
        .env("KIOSKD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("KIOSKD_DATABASE__URL", db_url)
        .env("KIOSKD_OPS__TOKEN", OPS)
        .env("KIOSKD_IDENTITY__MODE", "dev")
        .env("KIOSKD_SMS__DEBUG_CODE", "123456")
        .env("KIOSKD_IDENTITY__COOKIE_SECRET", "restart-test-secret")
        .env("KIOSKD_BILLING__UNIT_SECONDS", "1")
        .env("KIOSKD_BILLING__FREE_SECONDS", "0")
        .env(
            "KIOSKD_BILLING__HEARTBEAT_TIMEOUT_SECONDS",
            timeout_s.to_string(),
        )
        .env("KIOSKD_LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kioskd binary starts");
    // Owned by `Server` at once, so every path (a panic included) kills and reaps it.
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{}/readyz", server.base)).send().await
            && r.status() == 200
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("kioskd did not become ready");
}

impl Server {
    /// SIGKILL: no graceful shutdown, exactly like a crash.
    fn kill(self) {
        drop(self);
    }
}

async fn setup(s: &Server) -> (Phone, String) {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/ops/devices", s.base))
        .bearer_auth(OPS)
        .json(&json!({"device_code": CODE, "name": "seat", "charge_mode": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let phone = Phone::new(&s.base);
    phone.get("/dev/login?openid=oCrash").await;
    assert_eq!(
        phone
            .post(
                "/wechat/login",
                json!({"mobile":"17717469999","code":"123456"})
            )
            .await["success"],
        true
    );
    assert_eq!(
        phone.get("/wechat/recharge/1000").await["result"],
        "success"
    );
    let kiosk = Phone::new(&s.base);
    kiosk
        .post("/windows/check", json!({"device_code": CODE}))
        .await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let c = kiosk
        .post("/windows/check", json!({"device_code": CODE}))
        .await;
    (phone, c["result"]["token"].as_str().unwrap().to_string())
}

async fn keepalive(base: &str, token: &str) -> serde_json::Value {
    Phone::new(base)
        .post(
            "/windows/keepalive",
            json!({"token": token, "device_code": CODE}),
        )
        .await
}

/// Waits until the heartbeat writer has stored a keepalive heard at or after `heard`.
async fn wait_heard_stored(url: &str, heard: i64) {
    let db = kioskd::store::Db::connect(url, 1).await.unwrap();
    wait_until(
        "the keepalive's last_heard_at is stored",
        Duration::from_secs(10),
        async || {
            let at: Option<i64> =
                sqlx::query_scalar("SELECT last_heard_at FROM sessions WHERE user_id = 1")
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            at.is_some_and(|at| at >= heard)
        },
    )
    .await;
    db.pool().close().await;
}

#[tokio::test]
async fn a_session_heard_after_a_crash_continues_and_the_outage_is_billed() {
    let (tdb, url) = TestDb::new().await;
    let port = free_port();
    // A 20 s heartbeat timeout: the restart below may be slow on a loaded machine, and
    // this scenario is about a session that comes back in time.
    let s = start_with_timeout(&url, port, 20).await;
    let (_phone, token) = setup(&s).await;
    // Past the first unit, then a crash and 1.5 s down: the binary runs on the system
    // clock, so these waits are the scenario (the outage is what is billed).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let heard = kioskd_actors::Clock::system().now_ms();
    assert_eq!(keepalive(&s.base, &token).await["result"]["status"], 1);
    wait_heard_stored(&url, heard).await;
    s.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = start_with_timeout(&url, port, 20).await;
    // The kiosk comes back within the heartbeat timeout: the session is still there.
    let k = keepalive(&s.base, &token).await;
    assert_eq!(k["result"]["status"], 1, "{k}");
    assert!(
        k["result"]["data"]["cost_time"].as_i64().unwrap() >= 2,
        "the outage counts: {k}"
    );
    // Playing on a little after the restart (the scenario, on the system clock).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = Phone::new(&s.base)
        .post("/windows/logout", json!({"token": token}))
        .await;
    assert_eq!(out["result"]["status"], 1);
    s.kill();
    let app = spawn_on(tdb, url, "").await;
    let (ended, reason, cost, billed, _, reserved) = app.last_session(1).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("user_logout"));
    assert!(billed >= 3_000, "billed {billed} ms includes the outage");
    assert_eq!(cost, ((billed + 999) / 1000) * 5);
    assert!(reserved * 5 >= cost);
    assert_eq!(app.balance(1).await, 1000 - cost);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn a_session_never_heard_after_a_crash_ends_at_its_last_heartbeat() {
    let (tdb, url) = TestDb::new().await;
    let port = free_port();
    let s = start(&url, port).await;
    let (_phone, token) = setup(&s).await;
    // Past the first unit (the binary runs on the system clock: the wait is the scenario).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let heard = kioskd_actors::Clock::system().now_ms();
    assert_eq!(keepalive(&s.base, &token).await["result"]["status"], 1);
    // Crash once the heartbeat writer has stored the keepalive.
    wait_heard_stored(&url, heard).await;
    s.kill();
    let s = start(&url, port).await;
    // Nobody hears from the kiosk: the recovered session ends 4 s after its last heartbeat.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut status = serde_json::Value::Null;
    while tokio::time::Instant::now() < deadline {
        let (_, v) = {
            let r = reqwest::Client::new()
                .get(format!("{}/ops/sessions", s.base))
                .bearer_auth(OPS)
                .send()
                .await
                .unwrap();
            (200, r.json::<serde_json::Value>().await.unwrap())
        };
        status = v.clone();
        if v["total"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["total"], 0, "{status}");
    s.kill();
    let app = spawn_on(tdb, url, "").await;
    let (ended, reason, cost, billed, _, reserved) = app.last_session(1).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("heartbeat_timeout"));
    assert!(
        (1_200..2_700).contains(&billed),
        "billed to the last heartbeat, got {billed} ms"
    );
    assert_eq!(cost, ((billed + 999) / 1000) * 5);
    assert!(
        reserved * 5 > cost,
        "units reserved after the last heartbeat were refunded"
    );
    assert_eq!(app.balance(1).await, 1000 - cost);
    app.assert_invariants().await;
    app.stop().await;
}
