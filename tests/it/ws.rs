//! The realtime protocol over real sockets (SPEC §9): pushes, resume, commands until
//! acknowledged, device authentication before the upgrade, bad frames, the socket as the
//! kiosk's heartbeat, and the user and ops feeds.

use crate::common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const CODE: &str = "11-22-33-44-55-66-77-86";
const WS: &str = "[ws]\nallow_unsigned = true\n[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 3\n";

type Sock =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Client {
    ws: Sock,
}

impl Client {
    async fn connect(app: &TestApp, path_and_query: &str) -> Result<Client, u16> {
        Self::connect_with(app, path_and_query, &[]).await
    }

    async fn connect_with(
        app: &TestApp,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let url = format!("{}{}", app.base.replace("http://", "ws://"), path_and_query);
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut()
                .insert(name, HeaderValue::from_str(v).unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame (pings answered), or the close code.
    async fn next(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a frame within 5 s");
            match m {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(c))) => return Err(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// Skips frames until one of `kind`.
    async fn until(&mut self, kind: &str) -> Value {
        loop {
            let f = self
                .next()
                .await
                .unwrap_or_else(|c| panic!("closed ({c:?}) before {kind}"));
            if f["type"] == kind {
                return f;
            }
        }
    }

    async fn closed_with(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(c) => return c,
            }
        }
    }
}

/// The kiosk of `CODE` connected fresh (`hello`): its socket and its first snapshot.
async fn kiosk_hello(app: &TestApp) -> (Client, Value) {
    let mut k = Client::connect(app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    let snap = k.until("snapshot").await;
    (k, snap)
}

async fn setup(extra: &str) -> (TestApp, Phone, i64) {
    let app = spawn_app(extra).await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oWs", "17717462222", 1000).await;
    (app, phone, uid)
}

#[tokio::test]
async fn a_phone_start_reaches_the_kiosk_socket_and_billing_carries_paid_until() {
    let (app, phone, _uid) = setup(WS).await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello","data":{}})).await;
    let snap = k.until("snapshot").await;
    assert_eq!(snap["data"]["device"]["status"], "free");
    assert!(snap["data"]["session"].is_null());
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let started = k.until("session_started").await;
    let s = &started["data"];
    assert_eq!(s["charge_mode"], 5);
    assert_eq!(s["balance"], 995);
    assert_eq!(
        s["paid_until"].as_i64().unwrap() - s["started_at"].as_i64().unwrap(),
        1000
    );
    let b1 = k.until("billing").await;
    let b2 = k.until("billing").await;
    assert!(b2["seq"].as_u64() > b1["seq"].as_u64());
    assert_eq!(
        b2["data"]["paid_until"].as_i64().unwrap() - b1["data"]["paid_until"].as_i64().unwrap(),
        1000,
        "each tick pays one more unit"
    );
    assert_eq!(
        b2["data"]["balance"].as_i64().unwrap(),
        b1["data"]["balance"].as_i64().unwrap() - 5
    );
    // A recharge shows at once; paid_until moves only with the next tick.
    let v = phone.get("/wechat/recharge/100").await;
    assert_eq!(v["result"], "success");
    let after = k.until("billing").await;
    assert!(
        after["data"]["balance"].as_i64().unwrap()
            >= b2["data"]["balance"].as_i64().unwrap() + 100 - 5
    );
    // The same state over legacy HTTP.
    let c = app.check(CODE).await;
    assert_eq!(c["result"]["device_status"], "busy");
    assert!(c["result"]["token"].is_string());
    phone.get("/windows/offline").await;
    let ended = k.until("session_ended").await;
    assert_eq!(ended["data"]["reason"], "phone_offline");
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn resume_replays_missed_events_in_order_or_sends_a_snapshot() {
    let (app, phone, uid) = setup(WS).await;
    let (k, snap) = kiosk_hello(&app).await;
    let epoch = snap["data"]["epoch"].as_str().unwrap().to_string();
    let last = snap["data"]["seq"].as_u64().unwrap();
    drop(k);
    // Missed while away: the start, a status change and a tick (the second unit).
    assert_eq!(phone.scan(CODE).await["result"], "success");
    wait_until(
        "the second unit is reserved",
        Duration::from_secs(10),
        async || app.last_session(uid).await.5 >= 2,
    )
    .await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello","data":{"resume_from": last, "epoch": epoch}}))
        .await;
    let mut seqs = Vec::new();
    let mut kinds = Vec::new();
    while seqs.len() < 3 {
        let f = k.next().await.unwrap();
        assert_ne!(
            f["type"], "snapshot",
            "a resumable gap is replayed, not snapshotted"
        );
        seqs.push(f["seq"].as_u64().unwrap());
        kinds.push(f["type"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seqs,
        vec![last + 1, last + 2, last + 3],
        "in order, none missing, none twice"
    );
    assert!(kinds.contains(&"session_started".to_string()), "{kinds:?}");
    drop(k);
    // Another epoch (as after a server restart): a snapshot instead.
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello","data":{"resume_from": 2, "epoch": "stale-epoch"}}))
        .await;
    let f = k.next().await.unwrap();
    assert_eq!(f["type"], "snapshot");
    assert!(
        f["data"]["session"]["paid_until"].as_i64().is_some(),
        "the snapshot carries the session"
    );
    app.stop().await;
}

#[tokio::test]
async fn commands_are_resent_until_acknowledged_and_survive_in_the_database() {
    let (app, _phone, _uid) = setup(WS).await;
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"message","text":"closing at 22:00"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["delivered"], false);
    let id = v["id"].as_i64().unwrap();
    let (mut k, snap) = kiosk_hello(&app).await;
    assert_eq!(snap["data"]["pending_commands"][0]["id"], id);
    let c1 = k.until("command").await;
    assert_eq!(c1["data"]["text"], "closing at 22:00");
    drop(k); // not acknowledged
    let (mut k, snap) = kiosk_hello(&app).await;
    let c2 = k.until("command").await;
    assert_eq!(c2["data"]["id"], id, "re-sent with the same id");
    // An ack naming another epoch acknowledges nothing.
    k.send(json!({"type":"ack","data":{"seq": c2["seq"], "epoch": "not-this-one"}}))
        .await;
    let e = k.until("error").await;
    assert_eq!(e["data"]["code"], "stale_epoch");
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM device_commands WHERE acked_at IS NULL")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(pending, 1, "a stale-epoch ack changes nothing");
    k.send(json!({"type":"ack","data":{"seq": c2["seq"], "epoch": snap["data"]["epoch"]}}))
        .await;
    // A live command arrives at once while connected.
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"restart"}),
        )
        .await;
    assert_eq!(st, 202);
    assert_eq!(v["delivered"], true);
    let c3 = k.until("command").await;
    assert_eq!(c3["data"]["name"], "restart");
    k.send(json!({"type":"ack","data":{"seq": c3["seq"]}}))
        .await;
    count_becomes(
        &app,
        "SELECT COUNT(*) FROM device_commands WHERE acked_at IS NULL",
        0,
    )
    .await;
    drop(k);
    let (_k, snap) = kiosk_hello(&app).await;
    assert_eq!(
        snap["data"]["pending_commands"],
        json!([]),
        "acknowledged commands are gone"
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM device_commands WHERE acked_at IS NULL")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(pending, 0);
    app.stop().await;
}

#[tokio::test]
async fn devices_prove_their_secret_before_the_upgrade() {
    let app = spawn_app("").await;
    let secret = "0123456789abcdef-secret";
    let (st, _) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": CODE, "name": "signed", "charge_mode": 5, "secret": secret}),
        )
        .await;
    assert_eq!(st, 201);
    app.add_device("AA-BB-CC-DD-EE-02", 5).await; // no secret
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sig = |ts: i64, nonce: &str| kioskd::http::ws::signature(secret, CODE, ts, nonce);
    let q = |ts: i64, nonce: &str, sig: &str| {
        format!("/ws/kiosk?device_code={CODE}&ts={ts}&nonce={nonce}&sig={sig}")
    };
    assert_eq!(
        Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        Client::connect(&app, &q(now, "nonce-0001", "00ff"))
            .await
            .err(),
        Some(401),
        "wrong signature"
    );
    assert_eq!(
        Client::connect(
            &app,
            &q(now - 301, "nonce-0002", &sig(now - 301, "nonce-0002"))
        )
        .await
        .err(),
        Some(401),
        "stale timestamp"
    );
    let good = q(now, "nonce-0003", &sig(now, "nonce-0003"));
    let mut k = Client::connect(&app, &good)
        .await
        .expect("a valid signature upgrades");
    k.send(json!({"type":"hello"})).await;
    assert_eq!(
        k.until("snapshot").await["data"]["device"]["device_code"],
        CODE
    );
    assert_eq!(
        Client::connect(&app, &good).await.err(),
        Some(401),
        "a nonce is accepted once"
    );
    // Headers work as well as query parameters.
    let ts = now.to_string();
    let h = Client::connect_with(
        &app,
        &format!("/ws/kiosk?device_code={}", CODE.to_lowercase()),
        &[
            ("x-kiosk-ts", &ts),
            ("x-kiosk-nonce", "nonce-0004"),
            ("x-kiosk-sig", &sig(now, "nonce-0004")),
        ],
    )
    .await;
    assert!(h.is_ok());
    // Unsigned devices need ws.allow_unsigned; unknown devices are refused.
    assert_eq!(
        Client::connect(&app, "/ws/kiosk?device_code=AA-BB-CC-DD-EE-02")
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        Client::connect(&app, "/ws/kiosk?device_code=AA-BB-CC-DD-EE-09")
            .await
            .err(),
        Some(403)
    );
    assert_eq!(Client::connect(&app, "/ws/kiosk").await.err(), Some(400));
    // Ops and user sockets: token, cookie, origin.
    assert_eq!(Client::connect(&app, "/ws/ops").await.err(), Some(401));
    assert_eq!(
        Client::connect(&app, "/ws/ops?token=wrong").await.err(),
        Some(401)
    );
    assert!(
        Client::connect(&app, &format!("/ws/ops?token={OPS}"))
            .await
            .is_ok()
    );
    assert_eq!(
        Client::connect_with(
            &app,
            &format!("/ws/ops?token={OPS}"),
            &[("origin", "https://evil.example")]
        )
        .await
        .err(),
        Some(403)
    );
    assert_eq!(Client::connect(&app, "/ws/user").await.err(), Some(401));
    app.stop().await;
}

#[tokio::test]
async fn malformed_binary_and_oversized_frames_get_an_error_or_a_close_code() {
    let (app, _phone, _uid) = setup(WS).await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    k.until("snapshot").await;
    k.ws.send(Message::Text("{not json".into())).await.unwrap();
    let e = k.until("error").await;
    assert_eq!(e["data"]["code"], "bad_message");
    k.send(json!({"type":"ack","data":{"seq":"x"}})).await;
    assert_eq!(k.until("error").await["data"]["code"], "bad_message");
    k.send(json!({"type":"logout"})).await;
    assert_eq!(k.until("error").await["data"]["code"], "not_in_session");
    k.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(k.closed_with().await, Some(1003));
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    k.until("snapshot").await;
    let big = "x".repeat(70_000);
    let _ = k.ws.send(Message::Text(big.into())).await;
    let code = k.closed_with().await;
    assert!(code == Some(1009) || code.is_none(), "oversized: {code:?}");
    // The server is fine.
    assert_eq!(app.check(CODE).await["success"], true);
    app.stop().await;
}

#[tokio::test]
async fn the_socket_is_the_kiosk_heartbeat_and_a_timeout_arrives_as_a_push() {
    let (app, phone, uid) = setup(WS).await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    k.until("snapshot").await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    // Heartbeats over the socket alone keep the session past the 3 s timeout (every
    // 900 ms: the kiosk's cadence, which is the scenario).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        k.send(json!({"type":"heartbeat"})).await;
    }
    assert!(
        !app.last_session(uid).await.0,
        "still running after 4.5 s of socket heartbeats"
    );
    // Silence: the session ends and the kiosk is told.
    let ended = loop {
        let f = tokio::time::timeout(Duration::from_secs(6), k.next())
            .await
            .unwrap()
            .unwrap();
        if f["type"] == "session_ended" {
            break f;
        }
    };
    assert_eq!(ended["data"]["reason"], "heartbeat_timeout");
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn operator_lock_and_logout_over_the_socket() {
    let (app, phone, uid) = setup(WS).await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    k.until("snapshot").await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    k.until("session_started").await;
    // The kiosk logs out over its socket.
    k.send(json!({"type":"logout"})).await;
    let ended = k.until("session_ended").await;
    assert_eq!(ended["data"]["reason"], "user_logout");
    assert_eq!(
        app.last_session(uid).await.1.as_deref(),
        Some("user_logout")
    );
    // The operator locks: status and command pushed.
    let (st, _) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"lock"}),
        )
        .await;
    assert_eq!(st, 200);
    // (After the logout the device went free; then the lock.)
    loop {
        let status = k.until("device_status").await;
        if status["data"]["status"] == "lock" {
            break;
        }
        assert_eq!(status["data"]["status"], "free");
    }
    let cmd = k.until("command").await;
    assert_eq!(cmd["data"]["name"], "lock");
    // A second connection for the same device replaces the first.
    let mut k2 = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k2.send(json!({"type":"hello"})).await;
    assert_eq!(k.closed_with().await, Some(4001));
    assert_eq!(
        k2.until("snapshot").await["data"]["device"]["status"],
        "lock"
    );
    app.stop().await;
}

#[tokio::test]
async fn user_and_ops_feeds_see_their_events_and_shutdown_says_going_away() {
    let (app, phone, uid) = setup(WS).await;
    let (other, _) = app.phone("oOtherWs", "17717463333", 1000).await;
    app.add_device("AA-BB-CC-DD-EE-03", 5).await;
    let mut opsc = Client::connect(&app, &format!("/ws/ops?token={OPS}"))
        .await
        .unwrap();
    assert_eq!(opsc.until("snapshot").await["type"], "snapshot");
    app.check(CODE).await;
    app.check("AA-BB-CC-DD-EE-03").await;
    assert_eq!(other.scan("AA-BB-CC-DD-EE-03").await["result"], "success");
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let mut seen_users = std::collections::HashSet::new();
    while seen_users.len() < 2 {
        let f = opsc.until("session_started").await;
        seen_users.insert(f["data"]["user_id"].as_i64().unwrap());
    }
    assert!(seen_users.contains(&uid));
    let _ = app.stop().await;
    assert_eq!(opsc.closed_with().await, Some(1001));
}

#[tokio::test]
async fn a_broadcast_reaches_every_connected_kiosk_with_its_own_command() {
    let app = spawn_app(WS).await;
    let codes = [
        "AA-BB-CC-DD-EE-11",
        "AA-BB-CC-DD-EE-12",
        "AA-BB-CC-DD-EE-13",
    ];
    let mut kiosks = Vec::new();
    for c in codes {
        app.add_device(c, 5).await;
        let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={c}"))
            .await
            .unwrap();
        k.send(json!({"type":"hello"})).await;
        k.until("snapshot").await;
        kiosks.push(k);
    }
    let (st, v) = app
        .ops_post(
            "/ops/broadcast",
            json!({"name":"message","text":"closing soon"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["devices"], 3);
    let mut ids = std::collections::HashSet::new();
    for k in &mut kiosks {
        let c = k.until("command").await;
        assert_eq!(c["data"]["text"], "closing soon");
        ids.insert(c["data"]["id"].as_i64().unwrap());
        k.send(json!({"type":"ack","data":{"seq": c["seq"]}})).await;
    }
    assert_eq!(ids.len(), 3, "one command per device");
    let (st, _) = app.ops_post("/ops/broadcast", json!({"name":"lock"})).await;
    assert_eq!(st, 400, "state changes are not broadcast");
    app.stop().await;
}

/// Waits (with a deadline) until `sql` counts `want`.
async fn count_becomes(app: &TestApp, sql: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(app.db.pool())
            .await
            .unwrap();
        if n == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {n}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broadcast stays pending only `ws.broadcast_ttl_seconds`: a kiosk that comes back
/// later — to its live actor or after a restart — is not sent a stale one, while a
/// command to that device alone stays pending until acknowledged.
#[tokio::test]
async fn a_broadcast_past_its_time_is_not_sent_again_but_a_command_is() {
    let cfg = WS.replace("[ws]\n", "[ws]\nbroadcast_ttl_seconds = 60\n");
    let app = spawn_app(&cfg).await;
    let code = "AA-BB-CC-DD-EE-31";
    app.add_device(code, 5).await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={code}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    k.until("snapshot").await;
    let (st, v) = app
        .ops_post(
            "/ops/broadcast",
            json!({"name":"message","text":"closing in 10 minutes"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let b = k.until("command").await;
    assert!(
        b["data"]["id"].as_i64().unwrap() < 0,
        "a broadcast copy: {b}"
    );
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{code}/command"),
            json!({"name":"message","text":"see the desk"}),
        )
        .await;
    assert!((200..300).contains(&st), "{st} {v}");
    let c = k.until("command").await;
    let cmd_id = c["data"]["id"].as_i64().unwrap();
    drop(k); // neither is acknowledged

    // Within its time both are sent again.
    app.advance(Duration::from_secs(59));
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={code}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    let snap = k.until("snapshot").await;
    assert_eq!(
        snap["data"]["pending_commands"].as_array().unwrap().len(),
        2,
        "{snap}"
    );
    drop(k);

    // Past it, only the command (the device's live actor forgets the broadcast).
    app.advance(Duration::from_secs(2));
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={code}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    let snap = k.until("snapshot").await;
    let pending = snap["data"]["pending_commands"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 1, "{snap}");
    assert_eq!(pending[0]["id"], cmd_id);
    drop(k);

    // After a restart, storage agrees: the broadcast is not loaded again.
    let later = app.now_ms();
    let url = app.db_url.clone();
    let tdb = app.stop().await;
    let clock = kioskd_actors::Clock::manual(later);
    let app = spawn_on_clocked(tdb, url, &cfg, clock).await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={code}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    let snap = k.until("snapshot").await;
    let pending = snap["data"]["pending_commands"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 1, "{snap}");
    assert_eq!(pending[0]["id"], cmd_id);
}

#[tokio::test]
async fn a_broadcast_is_redelivered_after_reconnect_and_restart_until_acknowledged() {
    let app = spawn_app(WS).await;
    let (a, b, c) = (
        "AA-BB-CC-DD-EE-21",
        "AA-BB-CC-DD-EE-22",
        "AA-BB-CC-DD-EE-23",
    );
    app.add_device(a, 5).await;
    app.add_device(b, 5).await;
    let mut ka = Client::connect(&app, &format!("/ws/kiosk?device_code={a}"))
        .await
        .unwrap();
    ka.send(json!({"type":"hello"})).await;
    ka.until("snapshot").await;
    let (st, v) = app
        .ops_post(
            "/ops/broadcast",
            json!({"name":"message","text":"closing soon"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let first = ka.until("command").await;
    assert_eq!(first["data"]["text"], "closing soon");
    let id_a = first["data"]["id"].as_i64().unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broadcasts")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(stored, 1, "one row for the broadcast");
    drop(ka); // not acknowledged: sent again on the next connection, same id
    let mut ka = Client::connect(&app, &format!("/ws/kiosk?device_code={a}"))
        .await
        .unwrap();
    ka.send(json!({"type":"hello"})).await;
    let snap = ka.until("snapshot").await;
    assert_eq!(snap["data"]["pending_commands"][0]["id"], id_a);
    let again = ka.until("command").await;
    assert_eq!(again["data"]["id"], id_a, "re-sent with the same id");
    ka.send(json!({"type":"ack","data":{"seq": again["seq"], "epoch": snap["data"]["epoch"]}}))
        .await;
    count_becomes(&app, "SELECT COUNT(*) FROM broadcast_acks", 1).await;
    // A device registered before the broadcast but not connected then gets its own copy
    // when it connects; one registered after it gets nothing.
    let mut kb = Client::connect(&app, &format!("/ws/kiosk?device_code={b}"))
        .await
        .unwrap();
    kb.send(json!({"type":"hello"})).await;
    kb.until("snapshot").await;
    let cb = kb.until("command").await;
    assert_eq!(cb["data"]["text"], "closing soon");
    let id_b = cb["data"]["id"].as_i64().unwrap();
    assert_ne!(id_b, id_a, "each device acknowledges its own copy");
    drop(kb);
    app.add_device(c, 5).await;
    let mut kc = Client::connect(&app, &format!("/ws/kiosk?device_code={c}"))
        .await
        .unwrap();
    kc.send(json!({"type":"hello"})).await;
    let snap = kc.until("snapshot").await;
    assert_eq!(snap["data"]["pending_commands"], json!([]));
    drop(kc);
    // After a restart: the acknowledged copy is gone, the other is still pending.
    let url = app.db_url.clone();
    let tdb = app.stop().await;
    let app = spawn_on(tdb, url, WS).await;
    let mut ka = Client::connect(&app, &format!("/ws/kiosk?device_code={a}"))
        .await
        .unwrap();
    ka.send(json!({"type":"hello"})).await;
    let snap = ka.until("snapshot").await;
    assert_eq!(snap["data"]["pending_commands"], json!([]), "acknowledged");
    let (st, _) = app
        .ops_post(
            &format!("/ops/devices/{a}/command"),
            json!({"name":"restart"}),
        )
        .await;
    assert_eq!(st, 202);
    let next = ka.until("command").await;
    assert_eq!(
        next["data"]["name"], "restart",
        "the broadcast is not sent again"
    );
    let mut kb = Client::connect(&app, &format!("/ws/kiosk?device_code={b}"))
        .await
        .unwrap();
    kb.send(json!({"type":"hello"})).await;
    let snap = kb.until("snapshot").await;
    assert_eq!(snap["data"]["pending_commands"][0]["id"], id_b);
    let cb = kb.until("command").await;
    assert_eq!(cb["data"]["id"], id_b, "still pending after a restart");
    app.stop().await;
}

#[tokio::test]
async fn a_connection_whose_queue_overflows_is_closed_as_a_slow_consumer_and_the_device_goes_on() {
    // A queue of 2 frames: the snapshot plus five pending commands, pushed in one go on
    // connect, overflow it exactly as a kiosk that stopped reading would.
    let app = spawn_app("[ws]\nallow_unsigned = true\nqueue = 2\n").await;
    app.add_device(CODE, 5).await;
    for i in 0..5 {
        let (st, _) = app
            .ops_post(
                &format!("/ops/devices/{CODE}/command"),
                json!({"name":"message","text": format!("m{i}")}),
            )
            .await;
        assert_eq!(st, 202);
    }
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello"})).await;
    assert_eq!(k.closed_with().await, Some(4008));
    // The device actor is unharmed: it answers HTTP, takes commands, and nothing was
    // lost (all five are still pending, to be re-sent on the next connection).
    assert_eq!(app.check(CODE).await["success"], true);
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"restart"}),
        )
        .await;
    assert_eq!(st, 202);
    assert_eq!(v["delivered"], false, "the slow connection was dropped");
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM device_commands WHERE acked_at IS NULL")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(pending, 6);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("kioskd_ws_slow_consumer_disconnects_total") && !l.ends_with(" 0")
        ),
        "counted in the metrics"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_phone_socket_sees_only_its_own_session() {
    let (app, phone, uid) = setup(WS).await;
    let (other, _) = app.phone("oNotMe", "17717465555", 1000).await;
    app.add_device("AA-BB-CC-DD-EE-21", 5).await;
    let cookie = phone.cookie_header();
    assert!(cookie.contains("kioskd_sid="), "{cookie}");
    let mut mine = Client::connect_with(&app, "/ws/user", &[("cookie", &cookie)])
        .await
        .unwrap();
    let snap = mine.until("snapshot").await;
    assert!(snap["data"]["session"].is_null());
    // Another user's session first: nothing of it reaches this phone.
    app.check("AA-BB-CC-DD-EE-21").await;
    assert_eq!(other.scan("AA-BB-CC-DD-EE-21").await["result"], "success");
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let started = loop {
        let f = mine.next().await.unwrap();
        if let Some(u) = f["data"]["user_id"].as_i64() {
            assert_eq!(u, uid, "another user's event leaked: {f}");
        }
        if f["type"] == "session_started" {
            break f;
        }
    };
    assert_eq!(started["data"]["device_code"], CODE);
    let b = mine.until("billing").await;
    assert_eq!(
        b["data"]["device_code"], CODE,
        "billing of this user's device only"
    );
    assert!(b["seq"].is_null(), "feeds carry no device sequence numbers");
    // A forged cookie is nobody.
    assert_eq!(
        Client::connect_with(&app, "/ws/user", &[("cookie", "kioskd_sid=oWs")])
            .await
            .err(),
        Some(401)
    );
    app.stop().await;
}

/// A postpaid session on a socket: `session_ended` names the unpaid order (screen E),
/// and paying it from the phone pushes `order_paid` (the kiosk restarts).
#[tokio::test]
async fn a_postpaid_end_names_its_order_and_paying_it_is_pushed() {
    let app = spawn_app(WS).await;
    let code = "11-22-33-44-55-66-77-44";
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": code, "name": "post", "charge_mode": 7, "billing_mode": "postpaid"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (phone, _) = app.phone("oWsPost", "17717463333", 0).await;
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={code}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello","data":{}})).await;
    k.until("snapshot").await;
    assert_eq!(phone.scan(code).await["result"], "success");
    k.until("session_started").await;
    k.until("billing").await; // at least one minute accrued
    let v = phone.get("/windows/offline").await;
    assert_eq!(v["success"], true, "{v}");
    let ended = k.until("session_ended").await;
    let order = ended["data"]["order_id"]
        .as_str()
        .expect("an unpaid order")
        .to_string();
    assert!(ended["data"]["cost"].as_i64().unwrap() >= 7, "{ended}");
    // A kiosk reconnecting without resume learns the unpaid order from the snapshot.
    drop(k);
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={code}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello","data":{}})).await;
    let snap = k.until("snapshot").await;
    assert_eq!(snap["data"]["unpaid_order"], order.as_str(), "{snap}");
    let v = phone
        .post("/wechat/order/pay", json!({"orderId": order}))
        .await;
    assert_eq!(v["result"], "success", "{v}");
    let paid = k.until("order_paid").await;
    assert_eq!(paid["data"]["order_id"], order.as_str());
    assert_eq!(paid["data"]["device_code"], code);
    assert!(
        paid["seq"].is_u64(),
        "sequenced: a kiosk that missed it gets it on resume"
    );
    drop(k);
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={code}"))
        .await
        .unwrap();
    k.send(json!({"type":"hello","data":{}})).await;
    let snap = k.until("snapshot").await;
    assert!(
        snap["data"].get("unpaid_order").is_none(),
        "paid: nothing due: {snap}"
    );
    app.stop().await;
}

/// Issue 13: one phone cookie cannot take every socket: a few per user, a few per
/// address, and kiosks keep a reserve that phones never reach.
#[tokio::test]
async fn one_phone_cannot_take_every_socket_and_kiosks_keep_their_reserve() {
    let caps = "[ws]\nallow_unsigned = true\nmax_connections = 8\nreserved_for_kiosks = 3\nmax_per_user = 3\nmax_per_address = 64\n";
    let (app, phone, _uid) = setup(caps).await;
    let cookie = phone.cookie_header();
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(
            Client::connect_with(&app, "/ws/user", &[("cookie", &cookie)])
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        Client::connect_with(&app, "/ws/user", &[("cookie", &cookie)])
            .await
            .err(),
        Some(503),
        "a fourth socket for one user"
    );
    // Other users fill what phones may take (8 - 3 = 5) ...
    let (p2, _) = app.phone("oWs2", "17717463333", 100).await;
    let c2 = p2.cookie_header();
    let _a = Client::connect_with(&app, "/ws/user", &[("cookie", &c2)])
        .await
        .unwrap();
    let _b = Client::connect_with(&app, "/ws/user", &[("cookie", &c2)])
        .await
        .unwrap();
    assert_eq!(
        Client::connect_with(&app, "/ws/user", &[("cookie", &c2)])
            .await
            .err(),
        Some(503),
        "phones stop short of the kiosks' reserve"
    );
    // ... and a kiosk still gets in.
    let mut k = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .expect("a kiosk connects from the reserve");
    k.send(json!({"type":"hello","data":{}})).await;
    k.until("snapshot").await;
    // Closed sockets give their places back (the kiosk's counts in the total too).
    let mut gone = mine.pop().unwrap();
    gone.ws.close(None).await.unwrap();
    k.ws.close(None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect_with(&app, "/ws/user", &[("cookie", &cookie)]).await {
            Ok(_) => break,
            Err(503) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(c) => panic!("the freed place never came back ({c})"),
        }
    }
    app.stop().await;
}

/// Issue 13: every socket has a message budget; a flood closes it with 4029, a normal
/// client on the next socket is untouched.
#[tokio::test]
async fn a_socket_flooding_messages_is_closed() {
    let cfg = WS.replace(
        "allow_unsigned = true\n",
        "allow_unsigned = true\nmessages_per_second = 2\nmessage_burst = 10\n",
    );
    let (app, phone, _uid) = setup(&cfg).await;
    let mut flood = Client::connect(&app, &format!("/ws/kiosk?device_code={CODE}"))
        .await
        .unwrap();
    for _ in 0..40 {
        if flood
            .ws
            .send(Message::Text(
                json!({"type":"heartbeat","data":{}}).to_string().into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(flood.closed_with().await, Some(4029));
    let mut feed = Client::connect_with(&app, "/ws/user", &[("cookie", &phone.cookie_header())])
        .await
        .unwrap();
    for _ in 0..3 {
        feed.send(json!({"type":"heartbeat","data":{}})).await;
    }
    feed.until("snapshot").await;
    app.stop().await;
}

#[tokio::test]
async fn messages_larger_than_the_read_buffer_arrive_whole() {
    // The read buffer is 256 bytes by default (`ws.read_buffer_bytes`): a bigger message
    // grows it and is read whole, and the connection goes on reading small ones.
    let (app, _phone, _uid) = setup(WS).await;
    let (mut k, snap) = kiosk_hello(&app).await;
    // A command pushed live, then acknowledged after the big messages.
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"restart"}),
        )
        .await;
    assert_eq!((st, v["delivered"].as_bool()), (202, Some(true)), "{v}");
    let c = k.until("command").await;
    for len in [300, 5_000, 40_000] {
        // An ack naming another (long) epoch: read whole, parsed, refused as stale.
        k.send(json!({"type":"ack","data":{"seq": c["seq"], "epoch": "e".repeat(len)}}))
            .await;
        let e = k.until("error").await;
        assert_eq!(e["data"]["code"], "stale_epoch", "{len}-byte epoch");
    }
    k.send(json!({"type":"ack","data":{"seq": c["seq"], "epoch": snap["data"]["epoch"]}}))
        .await;
    count_becomes(
        &app,
        "SELECT COUNT(*) FROM device_commands WHERE acked_at IS NULL",
        0,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn acks_in_bulk_are_recorded_once_and_unknown_ones_change_nothing() {
    let app = spawn_app("").await;
    for (i, code) in [
        "11-22-33-44-55-01",
        "11-22-33-44-55-02",
        "11-22-33-44-55-03",
    ]
    .iter()
    .enumerate()
    {
        app.add_device(code, 5 + i as i64).await;
    }
    let devices: Vec<i64> = sqlx::query_scalar("SELECT id FROM devices ORDER BY id")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    assert_eq!(devices.len(), 3);
    // More commands than one statement takes (400), and a broadcast.
    let mut ids = Vec::new();
    for n in 0..450 {
        ids.push(
            app.db
                .add_command(devices[n % 3], "message", Some("hi"), 1_000)
                .await
                .unwrap(),
        );
    }
    let b = app
        .db
        .add_broadcast("message", Some("all"), 1_000)
        .await
        .unwrap();
    for d in &devices {
        let copy = kioskd_actors::ports::broadcast_copy_id(b, *d).unwrap();
        ids.push(copy);
        ids.push(copy); // acknowledged twice in one batch
    }
    // Copies naming a device or a broadcast that does not exist.
    ids.push(kioskd_actors::ports::broadcast_copy_id(b, 999_999).unwrap());
    ids.push(kioskd_actors::ports::broadcast_copy_id(b + 50, devices[0]).unwrap());
    app.db.ack_commands(&ids, 2_000).await.unwrap();
    // And again: nothing changes.
    app.db.ack_commands(&ids, 3_000).await.unwrap();
    let unacked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM device_commands WHERE acked_at IS NULL")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(unacked, 0);
    let at: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT acked_at FROM device_commands")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    assert_eq!(at, vec![2_000], "the first ack's time stays");
    let acks: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT device_id, broadcast_id, acked_at FROM broadcast_acks ORDER BY device_id",
    )
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        acks,
        devices.iter().map(|d| (*d, b, 2_000)).collect::<Vec<_>>()
    );
    for d in &devices {
        assert!(
            app.db.pending_commands(*d, 0).await.unwrap().is_empty(),
            "nothing pending for device {d}"
        );
    }
    app.stop().await;
}
