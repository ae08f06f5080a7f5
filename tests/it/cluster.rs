//! Several nodes on one database and one real Redis (`KIOSKD_TEST_REDIS`, default
//! redis://127.0.0.1:6379): each device's actor lives on one node, requests that land
//! elsewhere are forwarded to it, a kiosk's socket pulls its device (and running session)
//! to its node, a node that stops hands its sessions over, and a node that lost its lease
//! gives its devices up, and a node killed mid-session (SIGKILL) has its kiosk's session
//! shown whole by the node the kiosk reconnects to. Each test has a Redis namespace of
//! its own.

use crate::common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WS: &str = "[ws]\nallow_unsigned = true\n[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 30\n";

fn redis_url() -> String {
    std::env::var("KIOSKD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn layer(ns: &str) -> String {
    format!(
        "{WS}[redis]\nurl = \"{}\"\nlease_ms = 600\nnamespace = \"{ns}\"\n",
        redis_url()
    )
}

/// Two nodes on one database, in a namespace of their own.
async fn two_nodes() -> (TestApp, TestApp, String) {
    let ns = format!("kioskd-test-{}", kioskd_actors::ids::new_token());
    let l = layer(&ns);
    let (tdb, url) = TestDb::new().await;
    let a = spawn_on(tdb, url.clone(), &l).await;
    let b = spawn_on(TestDb::Sqlite(tempfile::tempdir().unwrap()), url, &l).await;
    (a, b, ns)
}

type Sock =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn kiosk(app: &TestApp, code: &str) -> Sock {
    let u = format!(
        "{}/ws/kiosk?device_code={code}",
        app.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(u).await.unwrap();
    ws.send(Message::Text(json!({"type":"hello"}).to_string().into()))
        .await
        .unwrap();
    ws
}

/// The next frame of `kind` (others skipped), or the close code if the socket closes.
async fn until(ws: &mut Sock, kind: &str) -> Result<Value, Option<u16>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} within 10 s"));
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == kind {
                    return Ok(v);
                }
            }
            Some(Ok(Message::Close(c))) => return Err(c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

fn device_actors(app: &TestApp) -> usize {
    app.state.coord.actor_stats().devices.actors
}

fn session_actors(app: &TestApp) -> usize {
    app.state.coord.actor_stats().sessions.actors
}

/// Polls `f` for up to 10 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn a_phone_on_one_node_reaches_the_kiosk_socket_on_another() {
    let (a, b, _) = two_nodes().await;
    let code = "11-22-33-44-55-66-70-01";
    a.add_device(code, 5).await;
    let mut ws = kiosk(&a, code).await;
    let snap = until(&mut ws, "snapshot").await.unwrap();
    assert_eq!(snap["data"]["device"]["status"], "free");
    let (phone, uid) = b.phone("oCluster1", "17717463001", 100).await;
    // Node B forwards the start to node A, where the device's actor is.
    let v = phone.scan(code).await;
    assert_eq!(v["result"], "success", "{v}");
    let started = until(&mut ws, "session_started").await.unwrap();
    assert_eq!(started["data"]["user_id"], uid);
    assert_eq!((device_actors(&a), device_actors(&b)), (1, 0));
    assert_eq!((session_actors(&a), session_actors(&b)), (1, 0));
    // One truth: either node answers with the same state.
    let on_a = a.state.coord.device_info(code).await.unwrap();
    let on_b = b.state.coord.device_info(code).await.unwrap();
    assert_eq!(on_a.session, on_b.session);
    assert!(on_b.session.is_some());
    let mine = phone.get("/windows/online/status").await;
    assert_eq!(mine["success"], true, "{mine}");
    // The operator's device list on node B shows the device as node A's actor sees it.
    let (st, list) = b.ops_get("/ops/devices").await;
    assert_eq!(st, 200);
    let row = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_code"] == code)
        .cloned()
        .unwrap();
    assert_eq!(row["status"], "busy", "{row}");
    assert_eq!(row["session"]["user_id"], uid, "{row}");
    assert_eq!(row["online"], true, "{row}");
    // A legacy poll on node B with the session's token is the same session's keepalive.
    let token = on_a.session.as_ref().unwrap().1.clone();
    let r = b
        .kiosk(
            "/windows/keepalive",
            json!({"device_code": code, "token": token}),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    // An operator on node B messages the kiosk on node A.
    let (st, v) = b
        .ops_post(
            &format!("/ops/devices/{code}/command"),
            json!({"name": "message", "text": "hello from B"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["delivered"], true, "pushed at once on node A: {v}");
    let cmd = until(&mut ws, "command").await.unwrap();
    assert_eq!(cmd["data"]["text"], "hello from B");
    // The phone leaves through node B: the kiosk on node A is told at once.
    let v = phone.get("/windows/offline").await;
    assert_eq!(v["success"], true, "{v}");
    let ended = until(&mut ws, "session_ended").await.unwrap();
    assert_eq!(ended["data"]["reason"], "phone_offline");
    a.assert_invariants().await;
    assert_eq!(b.state.coord.sessions().await.len(), 0);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_kiosk_socket_pulls_its_device_and_running_session_to_its_node() {
    let (a, b, _) = two_nodes().await;
    let code = "11-22-33-44-55-66-70-02";
    a.add_device(code, 5).await;
    // The kiosk polls node B and a phone starts there: the actors live on B.
    b.check(code).await;
    let (phone, uid) = b.phone("oCluster2", "17717463002", 100).await;
    assert_eq!(phone.scan(code).await["result"], "success");
    assert_eq!((device_actors(&a), device_actors(&b)), (0, 1));
    assert_eq!(session_actors(&b), 1);
    // Now the kiosk connects its socket to node A: B gives the device up, A takes it
    // with its running session (from the database) and the snapshot shows it.
    let mut ws = kiosk(&a, code).await;
    let snap = until(&mut ws, "snapshot").await.unwrap();
    assert_eq!(snap["data"]["device"]["status"], "busy", "{snap}");
    assert_eq!(snap["data"]["session"]["user_id"], uid, "{snap}");
    assert_eq!((device_actors(&a), device_actors(&b)), (1, 0));
    assert_eq!((session_actors(&a), session_actors(&b)), (1, 0));
    // Billing goes on from node A (one-second units).
    let bill = until(&mut ws, "billing").await.unwrap();
    assert!(bill["data"]["paid_until"].as_i64().is_some(), "{bill}");
    // The phone, still talking to node B, ends it; the kiosk on A hears it.
    let v = phone.get("/windows/offline").await;
    assert_eq!(v["success"], true, "{v}");
    until(&mut ws, "session_ended").await.unwrap();
    a.assert_invariants().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_stopping_node_hands_its_running_sessions_to_the_others() {
    let (a, b, _) = two_nodes().await;
    let code = "11-22-33-44-55-66-70-03";
    a.add_device(code, 5).await;
    a.check(code).await;
    let (phone, uid) = a.phone("oCluster3", "17717463003", 100).await;
    assert_eq!(phone.scan(code).await["result"], "success");
    let token = a.token(code).await.expect("running");
    assert_eq!(session_actors(&a), 1);
    let db = a.db.clone();
    let _keep = a.stop().await;
    // Node B notices the lease is gone and picks the session up from the database.
    eventually("node B runs the session", || session_actors(&b) == 1).await;
    let r = b
        .kiosk(
            "/windows/keepalive",
            json!({"device_code": code, "token": token}),
        )
        .await;
    assert_eq!(r["success"], true, "{r}");
    // Billing continues on node B: more units are debited over time.
    let debits = |db: kioskd::store::Db| async move {
        let rows = db.ledger(uid).await.unwrap();
        rows.iter().filter(|r| r.amount < 0).count()
    };
    let before = debits(db.clone()).await;
    // Polled (up to 10 s) instead of a fixed wait: the next unit's debit is the effect.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while debits(db.clone()).await <= before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(debits(db.clone()).await > before, "node B keeps billing");
    let v = b
        .state
        .coord
        .end_for_user(uid, kioskd_actors::EndReason::Operator)
        .await;
    assert!(v.unwrap().is_some());
    b.assert_invariants().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_that_lost_its_lease_gives_its_devices_up() {
    let (a, b, ns) = two_nodes().await;
    let code = "11-22-33-44-55-66-70-04";
    a.add_device(code, 5).await;
    let mut ws = kiosk(&a, code).await;
    until(&mut ws, "snapshot").await.unwrap();
    let (phone, uid) = a.phone("oCluster4", "17717463004", 100).await;
    assert_eq!(phone.scan(code).await["result"], "success");
    assert_eq!(session_actors(&a), 1);
    // Node A was cut off past its lease and node B took the device: A must stop its
    // actors and tell the kiosk to reconnect.
    let node_a = a.state.coord.node().unwrap().to_string();
    let node_b = b.state.coord.node().unwrap().to_string();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(format!("{ns}:alive:{node_a}"))
        .ignore()
        .cmd("SET")
        .arg(format!("{ns}:owner:{code}"))
        .arg(&node_b)
        .ignore()
        .query_async(&mut r)
        .await
        .unwrap();
    let closed = until(&mut ws, "never").await.unwrap_err();
    assert_eq!(closed, Some(1001), "the kiosk is told to reconnect");
    eventually("node A's actors stopped", || session_actors(&a) == 0).await;
    // The session is still running: asked on node A, it is served by node B now.
    let mine = a.state.coord.user_session(uid).await.unwrap();
    assert!(mine.is_some(), "the session survives the move");
    assert_eq!(session_actors(&b), 1);
    assert_eq!(session_actors(&a), 0);
    // The kiosk reconnects (to A again): the device comes back with its session.
    let mut ws = kiosk(&a, code).await;
    let snap = until(&mut ws, "snapshot").await.unwrap();
    assert_eq!(snap["data"]["session"]["user_id"], uid, "{snap}");
    assert_eq!((session_actors(&a), session_actors(&b)), (1, 0));
    a.assert_invariants().await;
    b.stop().await;
    a.stop().await;
}

/// A node in a child process (the real binary), so that it can be killed like a crash.
struct Node {
    child: std::process::Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary as a cluster node on `db_url` in namespace `ns`, billing in `unit_s`-second
/// units; returns once it answers /readyz.
async fn node_process(db_url: &str, ns: &str, unit_s: u64) -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kioskd"))
        .arg("serve")
        .env("KIOSKD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("KIOSKD_DATABASE__URL", db_url)
        .env("KIOSKD_OPS__TOKEN", OPS)
        .env("KIOSKD_IDENTITY__MODE", "dev")
        .env("KIOSKD_SMS__DEBUG_CODE", "123456")
        .env("KIOSKD_IDENTITY__COOKIE_SECRET", "cluster-kill-test-secret")
        .env("KIOSKD_WS__ALLOW_UNSIGNED", "true")
        .env("KIOSKD_BILLING__UNIT_SECONDS", unit_s.to_string())
        .env("KIOSKD_BILLING__FREE_SECONDS", "0")
        .env("KIOSKD_BILLING__HEARTBEAT_TIMEOUT_SECONDS", "30")
        .env("KIOSKD_REDIS__URL", redis_url())
        .env("KIOSKD_REDIS__LEASE_MS", "600")
        .env("KIOSKD_REDIS__NAMESPACE", ns)
        .env("KIOSKD_LOG__FILTER", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("kioskd binary starts");
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let mut ready = false;
    wait_until(
        "the node answers /readyz",
        Duration::from_secs(20),
        async || {
            ready = matches!(
                http.get(format!("{}/readyz", node.base)).send().await,
                Ok(r) if r.status() == 200
            );
            ready
        },
    )
    .await;
    node
}

/// Issue 14, part 2: node A is killed (SIGKILL: no shutdown, no leave, its lease left to
/// run out) while a kiosk on it is in a session; the kiosk reconnects to node B and the
/// FIRST snapshot already shows the device busy with that session, its `paid_until`,
/// cost and balance as the ledger has them — never `"session": null`.
#[tokio::test]
async fn a_killed_nodes_kiosk_sees_its_session_in_the_first_snapshot_on_another_node() {
    const UNIT_S: i64 = 2;
    const PRICE: i64 = 5;
    let ns = format!("kioskd-test-{}", kioskd_actors::ids::new_token());
    let (tdb, url) = TestDb::new().await;
    let b_layer = format!(
        "[ws]\nallow_unsigned = true\n[billing]\nunit_seconds = {UNIT_S}\nfree_seconds = 0\nheartbeat_timeout_seconds = 30\n[redis]\nurl = \"{}\"\nlease_ms = 600\nnamespace = \"{ns}\"\n",
        redis_url()
    );
    // Node B first (it migrates the database), then node A as a process of its own.
    let b = spawn_on(tdb, url.clone(), &b_layer).await;
    let a = node_process(&url, &ns, UNIT_S as u64).await;
    let code = "11-22-33-44-55-66-70-05";
    b.add_device(code, PRICE).await;
    let a_app = Phone::new(&a.base);
    let a_ws = format!(
        "{}/ws/kiosk?device_code={code}",
        a.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(a_ws).await.unwrap();
    ws.send(Message::Text(json!({"type":"hello"}).to_string().into()))
        .await
        .unwrap();
    let snap = until(&mut ws, "snapshot").await.unwrap();
    assert_eq!(snap["data"]["device"]["status"], "free", "{snap}");
    // A phone on node A starts a session on the kiosk's device (its actors on A).
    a_app.get("/dev/login?openid=oCluster5&nickname=k").await;
    let v = a_app
        .post(
            "/wechat/login",
            json!({"mobile": "17717463005", "code": "123456"}),
        )
        .await;
    assert_eq!(v["success"], true, "{v}");
    let v = a_app.get("/wechat/recharge/100").await;
    assert_eq!(v["result"], "success", "{v}");
    let v = a_app.scan(code).await;
    assert_eq!(v["result"], "success", "{v}");
    let started = until(&mut ws, "session_started").await.unwrap();
    let uid = started["data"]["user_id"].as_i64().unwrap();
    let sid = started["data"]["session_id"].as_i64().unwrap();
    // Mid-session: node A has billed the second unit.
    let bill = until(&mut ws, "billing").await.unwrap();
    assert_eq!(bill["data"]["cost"], 2 * PRICE, "{bill}");
    assert_eq!(
        b.state.coord.actor_stats().sessions.actors,
        0,
        "the session runs on A"
    );
    // Crash.
    drop(a);
    drop(ws);
    let reserved = async || b.last_session(uid).await.5;
    let before = reserved().await;
    assert!(before >= 2, "{before}");
    // The kiosk reconnects at once, to node B. Until A's lease has run out B cannot
    // take the device over and closes with 1011, which tells a kiosk to reconnect
    // (WS.md): it does, at the kiosk's backoff.
    let mut refused = 0;
    let snap = loop {
        let mut ws = kiosk(&b, code).await;
        match until(&mut ws, "snapshot").await {
            Ok(snap) => break snap,
            Err(Some(1011)) if refused < 50 => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                panic!("the kiosk's socket on B closed with {e:?} ({refused} refusals before)")
            }
        }
    };
    let after = reserved().await;
    let d = &snap["data"];
    assert_eq!(d["device"]["status"], "busy", "{snap}");
    let s = &d["session"];
    assert!(
        s.is_object(),
        "the first snapshot carries the session: {snap}"
    );
    assert_eq!(s["session_id"], sid, "{snap}");
    assert_eq!(s["user_id"], uid, "{snap}");
    assert_eq!(s["charge_mode"], PRICE, "{snap}");
    let (ended, _, _, _, started_at, _) = b.last_session(uid).await;
    assert!(!ended, "the session survives its node");
    assert_eq!(s["started_at"], started_at, "{snap}");
    // Units reserved as the snapshot was taken: between the readings before and after.
    let cost = s["cost"].as_i64().unwrap();
    assert_eq!(cost % PRICE, 0, "{snap}");
    let units = cost / PRICE;
    assert!(
        (before..=after).contains(&units),
        "cost {cost} is {units} units; the ledger had {before}..={after}: {snap}"
    );
    assert_eq!(
        s["paid_until"],
        started_at + units * UNIT_S * 1000,
        "paid to the end of the reserved units: {snap}"
    );
    assert_eq!(s["balance"], 100 - cost, "{snap}");
    // Node B runs it now and ends it exactly.
    wait_until(
        "node B runs the session",
        Duration::from_secs(10),
        async || session_actors(&b) == 1,
    )
    .await;
    let v = b
        .state
        .coord
        .end_for_user(uid, kioskd_actors::EndReason::Operator)
        .await;
    assert!(v.unwrap().is_some());
    let (ended, _, cost, billed, ..) = b.last_session(uid).await;
    assert!(ended);
    assert_eq!(
        cost,
        ((billed + UNIT_S * 1000 - 1) / (UNIT_S * 1000)) * PRICE
    );
    assert_eq!(b.balance(uid).await, 100 - cost);
    b.assert_invariants().await;
    // Node B's own tasks, the Redis ones included, end with it.
    let tasks = b.tasks.clone();
    let mut names = tasks.running();
    names.sort();
    assert_eq!(
        names,
        ["event forwarder", "event relay", "outbox", "sampler"],
        "node B's tasks"
    );
    b.stop().await;
    assert!(tasks.running().is_empty(), "{:?}", tasks.running());
}
