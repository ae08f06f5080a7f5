//! `/ws/attendance` over real sockets (issue 5, `protocol/ATTENDANCE.md` "Bridge
//! WebSocket"): commands pushed the moment they are queued, `ack` and `result` recorded
//! against the command, re-delivery of unacknowledged non-destructive commands on
//! reconnect (never destructive ones), survival across a restart, bad input answered
//! with an error frame or a close code and changing nothing, idle and shutdown closes;
//! and bridge `CMD_FAILED` logs linked to the command that caused them. Runs on SQLite,
//! or PostgreSQL with `KIOSKD_TEST_PG`.

use crate::common;

use std::time::Duration;

use common::{TestApp, spawn_app, spawn_on};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SN: &str = "3637165101475";
const SN2: &str = "3637165101476";
const OTHER: &str = "0316144680030";
const TOKEN: &str = "gh_2837e31e28ed";
const LEGACY: &str = "/weiphp30/index.php?s=/addon/DailyTime/DailyTime/";

type Sock =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Bridge {
    ws: Sock,
}

impl Bridge {
    /// Upgrades with `Authorization: Bearer <token>`; `Err(status)` when refused.
    async fn connect(app: &TestApp, token: Option<&str>) -> Result<Bridge, u16> {
        let url = format!("{}/ws/attendance", app.base.replace("http://", "ws://"));
        let mut req = url.into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Bridge { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    /// Connects with the bridge token and says hello for `terminals`; returns the
    /// `welcome`.
    async fn hello(app: &TestApp, terminals: &[&str]) -> (Bridge, Value) {
        let mut b = Bridge::connect(app, Some(TOKEN)).await.unwrap();
        b.send(json!({"type": "hello", "data": {"version": 1, "terminals": terminals, "bridge": "pi-test"}}))
            .await;
        let w = b.next().await.unwrap();
        assert_eq!(w["type"], "welcome", "{w}");
        (b, w)
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

    async fn frame(&mut self) -> Value {
        self.next()
            .await
            .unwrap_or_else(|c| panic!("closed with {c:?}"))
    }

    async fn closed_with(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(c) => return c,
            }
        }
    }

    /// Sends an `ack` or `result` and returns the server's answer.
    async fn answer(&mut self, kind: &str, data: Value) -> Value {
        self.send(json!({"type": kind, "data": data})).await;
        self.frame().await
    }
}

async fn add_terminal(app: &TestApp, sn: &str, token: &str) {
    let (st, v) = app
        .ops_post(
            "/ops/terminals",
            json!({"sn": sn, "token": token, "name": "gate", "timezone": "Asia/Shanghai"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

async fn setup(extra: &str) -> TestApp {
    let app = spawn_app(extra).await;
    add_terminal(&app, SN, TOKEN).await;
    add_terminal(&app, SN2, TOKEN).await;
    add_terminal(&app, OTHER, "another-bridge-token").await;
    app
}

async fn queue(app: &TestApp, sn: &str, cmd: Value) -> i64 {
    let (st, v) = app
        .ops_post(&format!("/ops/terminals/{sn}/commands"), cmd)
        .await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_i64().unwrap()
}

/// A command as `GET /ops/terminals/<sn>/commands` shows it.
async fn command(app: &TestApp, sn: &str, id: i64) -> Value {
    let (st, v) = app.ops_get(&format!("/ops/terminals/{sn}/commands")).await;
    assert_eq!(st, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no command {id} in {v}"))
}

async fn legacy_poll(app: &TestApp, sn: &str) -> Value {
    let r = app
        .http
        .post(app.url(&format!("{LEGACY}getCommand")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&SN={sn}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["cmd_list"].clone()
}

#[tokio::test]
async fn a_command_queued_while_the_bridge_is_connected_is_pushed_at_once_and_its_result_recorded()
{
    let app = setup("").await;
    let (mut b, welcome) = Bridge::hello(&app, &[SN]).await;
    assert_eq!(welcome["data"]["version"], 1);
    assert_eq!(
        welcome["data"]["terminals"],
        json!([{"sn": SN, "timezone": "Asia/Shanghai"}])
    );
    assert!(welcome["data"]["server_time"].as_i64().unwrap() > 1_700_000_000_000);

    // A terminal command: pushed at once, with the iclock line to relay.
    let queued_at = std::time::Instant::now();
    let id = queue(
        &app,
        SN,
        json!({"name": "DATA DELETE USERINFO", "args": {"PIN": "1002"}}),
    )
    .await;
    let c = b.frame().await;
    assert!(queued_at.elapsed() < Duration::from_secs(2));
    assert_eq!(
        c,
        json!({"type": "command", "data": {"sn": SN, "id": id, "attempt": 1, "name": "DATA DELETE USERINFO",
            "args": {"PIN": "1002"}, "text": "DATA DELETE USERINFO PIN=1002", "destructive": false}})
    );
    let v = command(&app, SN, id).await;
    assert_eq!(
        (v["state"].as_str(), v["via"].as_str()),
        (Some("sent"), Some("ws"))
    );
    assert!(v["delivered_at"].is_null());

    let r = b
        .answer("ack", json!({"sn": SN, "id": id, "attempt": 1}))
        .await;
    assert_eq!(
        r,
        json!({"type": "recorded", "data": {"sn": SN, "id": id, "attempt": 1, "state": "sent"}})
    );
    assert!(command(&app, SN, id).await["delivered_at"].is_string());

    // The user was not there: -10 is success for a delete (as on iclock).
    let r = b
        .answer(
            "result",
            json!({"sn": SN, "id": id, "attempt": 1, "code": -10, "text": "ID=1&Return=-10&CMD=DATA"}),
        )
        .await;
    assert_eq!(r["data"]["state"], "acked", "{r}");
    let v = command(&app, SN, id).await;
    assert_eq!(v["state"], "acked");
    assert_eq!(v["return_code"], -10);
    assert_eq!(v["result"], "ID=1&Return=-10&CMD=DATA");
    // A duplicate result changes nothing.
    let r = b
        .answer(
            "result",
            json!({"sn": SN, "id": id, "attempt": 1, "code": -3}),
        )
        .await;
    assert_eq!(r["data"]["state"], "ignored");
    assert_eq!(command(&app, SN, id).await["state"], "acked");

    // A bridge-level command carries no line; a failure is recorded as on devicecmd.
    let id2 = queue(&app, SN, json!({"name": "syncAttLog"})).await;
    let c = b.frame().await;
    assert_eq!(c["data"]["name"], "syncAttLog");
    assert_eq!(c["data"]["id"], id2);
    assert!(c["data"].get("text").is_none(), "{c}");
    let r = b
        .answer(
            "result",
            json!({"sn": SN, "id": id2, "attempt": 1, "code": -1, "text": "query failed"}),
        )
        .await;
    assert_eq!(r["data"]["state"], "failed");
    let v = command(&app, SN, id2).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["errors"][0]["type"], "CMD_FAILED", "{v}");

    // Delivered once: the legacy poll has nothing left for it.
    assert_eq!(legacy_poll(&app, SN).await, json!({}));
    // A command for a terminal this connection does not serve is not pushed here.
    let id3 = queue(&app, SN2, json!({"name": "INFO"})).await;
    b.send(json!({"type": "heartbeat"})).await;
    assert_eq!(command(&app, SN2, id3).await["state"], "pending");

    let text = app.metrics_text().await;
    assert!(
        text.contains("kioskd_ws_connections{kind=\"attendance\"}"),
        "attendance connections in /metrics"
    );
    assert!(text.contains("kioskd_attendance_command_latency_seconds"));
    app.stop().await;
}

#[tokio::test]
async fn unacknowledged_commands_are_redelivered_on_reconnect_but_never_destructive_ones() {
    let app = setup("").await;
    let info = queue(&app, SN, json!({"name": "INFO"})).await;
    let reboot = queue(&app, SN, json!({"name": "REBOOT"})).await;
    let check = queue(&app, SN, json!({"name": "CHECK"})).await;
    // No `terminals`: every terminal of the token.
    let (mut b, welcome) = Bridge::hello(&app, &[]).await;
    let sns: Vec<&str> = welcome["data"]["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["sn"].as_str().unwrap())
        .collect();
    assert_eq!(sns, [SN, SN2]);
    let mut got = Vec::new();
    for _ in 0..3 {
        let c = b.frame().await;
        assert_eq!(c["type"], "command");
        assert_eq!(c["data"]["attempt"], 1);
        got.push((
            c["data"]["id"].as_i64().unwrap(),
            c["data"]["destructive"] == true,
        ));
    }
    assert_eq!(got, [(info, false), (reboot, true), (check, false)]);
    // Only CHECK is acknowledged before the connection drops.
    let r = b
        .answer("ack", json!({"sn": SN, "id": check, "attempt": 1}))
        .await;
    assert_eq!(r["data"]["state"], "sent");
    b.ws.close(None).await.unwrap();
    drop(b);

    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    let c = b.frame().await;
    assert_eq!(
        (c["data"]["id"].as_i64(), c["data"]["attempt"].as_i64()),
        (Some(info), Some(2)),
        "{c}"
    );
    // Nothing else was re-sent: the next frame is the next command queued.
    let later = queue(&app, SN, json!({"name": "LOG"})).await;
    assert_eq!(b.frame().await["data"]["id"], later);
    let v = command(&app, SN, reboot).await;
    assert_eq!(
        (v["state"].as_str(), v["attempts"].as_i64()),
        (Some("sent"), Some(1))
    );
    assert_eq!(command(&app, SN, check).await["attempts"], 1);

    // Per-attempt ids: a failure of the superseded attempt is ignored, the current
    // attempt's success confirms.
    let r = b
        .answer(
            "result",
            json!({"sn": SN, "id": info, "attempt": 1, "code": -1}),
        )
        .await;
    assert_eq!(r["data"]["state"], "ignored");
    let r = b
        .answer(
            "result",
            json!({"sn": SN, "id": info, "attempt": 2, "code": 0, "text": "~DeviceName=K40"}),
        )
        .await;
    assert_eq!(r["data"]["state"], "acked");
    let v = command(&app, SN, info).await;
    assert_eq!(
        (v["state"].as_str(), v["attempts"].as_i64()),
        (Some("acked"), Some(2))
    );
    app.stop().await;
}

#[tokio::test]
async fn queued_and_unacknowledged_commands_survive_a_restart() {
    let app = setup("").await;
    let pending = queue(&app, SN, json!({"name": "INFO"})).await;
    let url = app.db_url.clone();
    let tdb = app.stop().await;
    let app = spawn_on(tdb, url, "").await;
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    let c = b.frame().await;
    assert_eq!(
        (c["data"]["id"].as_i64(), c["data"]["attempt"].as_i64()),
        (Some(pending), Some(1))
    );
    // Delivered, never acknowledged, then the server restarts: delivered again after.
    let url = app.db_url.clone();
    let tdb = app.stop().await;
    assert_eq!(
        b.closed_with().await,
        Some(1001),
        "shutdown closes with 1001"
    );
    let app = spawn_on(tdb, url, "").await;
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    let c = b.frame().await;
    assert_eq!(
        (c["data"]["id"].as_i64(), c["data"]["attempt"].as_i64()),
        (Some(pending), Some(2))
    );
    let r = b
        .answer(
            "result",
            json!({"sn": SN, "id": pending, "attempt": 2, "code": 0}),
        )
        .await;
    assert_eq!(r["data"]["state"], "acked");
    app.stop().await;
}

#[tokio::test]
async fn a_newer_connection_replaces_the_older_and_roster_changes_are_pushed() {
    let app = setup("").await;
    let (mut old, _) = Bridge::hello(&app, &[SN]).await;
    let (mut new, _) = Bridge::hello(&app, &[SN, SN2]).await;
    assert_eq!(old.closed_with().await, Some(4001));
    // A staff change reaches every served terminal as updatestd (then the bridge asks
    // all_devices), at once.
    let (st, v) = app
        .ops_post("/ops/staff", json!({"pin": "1001", "name": "陈", "pri": 0}))
        .await;
    assert_eq!(st, 201, "{v}");
    let mut names = Vec::new();
    for _ in 0..2 {
        let c = new.frame().await;
        names.push((
            c["data"]["sn"].as_str().unwrap().to_string(),
            c["data"]["name"].as_str().unwrap().to_string(),
        ));
    }
    names.sort();
    assert_eq!(
        names,
        [
            (SN.to_string(), "updatestd".to_string()),
            (SN2.to_string(), "updatestd".to_string())
        ]
    );
    app.stop().await;
}

/// An older connection can finish attaching a terminal after a newer one did (the hello
/// is answered before the terminals are attached): the newer still serves it, and the
/// older is the one closed with 4001.
#[tokio::test]
async fn an_older_connection_attaching_late_does_not_displace_the_newer() {
    use kioskd_actors::terminal::WsLink;
    let app = setup("").await;
    let link = |id| {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (kick, kicked) = tokio::sync::oneshot::channel();
        (WsLink::new(id, tx, kick), kicked, rx)
    };
    let (newer, mut newer_kicked, _newer_rx) = link(u64::MAX - 1);
    let (older, mut older_kicked, _older_rx) = link(u64::MAX - 2);
    app.state.terminals.ws_attach(SN, newer).await.unwrap();
    app.state.terminals.ws_attach(SN, older).await.unwrap();
    assert_eq!(older_kicked.try_recv(), Ok(4001));
    assert!(
        newer_kicked.try_recv().is_err(),
        "the newer connection stays"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_an_error_frame_or_a_close_code_and_changes_nothing() {
    let app = setup("").await;
    // Refusals before the upgrade.
    assert_eq!(Bridge::connect(&app, None).await.err(), Some(401));
    assert_eq!(Bridge::connect(&app, Some("wrong")).await.err(), Some(403));

    // The hello: first, a version spoken here, only the token's terminals.
    let cases = [
        (json!({"type": "heartbeat"}), "hello_expected", 4010),
        (
            json!({"type": "hello", "data": {"version": 2}}),
            "unsupported_version",
            4010,
        ),
        (
            json!({"type": "hello", "data": {"version": 1, "terminals": [SN, OTHER]}}),
            "unknown_terminal",
            4003,
        ),
        (
            json!({"type": "hello", "data": {"terminals": [SN]}}),
            "bad_message",
            4010,
        ),
    ];
    for (hello, code, close) in cases {
        let mut b = Bridge::connect(&app, Some(TOKEN)).await.unwrap();
        b.send(hello.clone()).await;
        let e = b.frame().await;
        assert_eq!(
            (e["type"].as_str(), e["data"]["code"].as_str()),
            (Some("error"), Some(code)),
            "{hello}: {e}"
        );
        assert_eq!(b.closed_with().await, Some(close), "{hello}");
    }
    let mut b = Bridge::connect(&app, Some(TOKEN)).await.unwrap();
    b.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(b.closed_with().await, Some(1003));

    // After the hello: each bad frame is answered with an error and changes nothing.
    let legacy = queue(&app, SN2, json!({"name": "syncAttLog"})).await;
    assert_eq!(legacy_poll(&app, SN2).await, json!({"syncAttLog": ""}));
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    let id = queue(&app, SN, json!({"name": "INFO"})).await;
    assert_eq!(b.frame().await["data"]["id"], id);
    let bad = [
        (
            json!({"type": "ack", "data": {"sn": SN, "id": id}}),
            "bad_message",
        ),
        (json!({"type": "nope"}), "bad_message"),
        (
            json!({"type": "hello", "data": {"version": 1}}),
            "hello_twice",
        ),
        (
            json!({"type": "ack", "data": {"sn": SN, "id": id + 1000, "attempt": 1}}),
            "unknown_command",
        ),
        (
            json!({"type": "ack", "data": {"sn": SN, "id": id, "attempt": 2}}),
            "unknown_command",
        ),
        (
            json!({"type": "result", "data": {"sn": SN2, "id": legacy, "attempt": 1, "code": 0}}),
            "unknown_terminal",
        ),
        (
            json!({"type": "result", "data": {"sn": OTHER, "id": id, "attempt": 1, "code": 0}}),
            "unknown_terminal",
        ),
    ];
    for (frame, code) in &bad {
        b.send(frame.clone()).await;
        let e = b.frame().await;
        assert_eq!(e["data"]["code"], *code, "{frame}: {e}");
    }
    b.ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(b.frame().await["data"]["code"], "bad_message");
    let v = command(&app, SN, id).await;
    assert_eq!(
        (v["state"].as_str(), v["delivered_at"].is_null()),
        (Some("sent"), true)
    );
    assert_eq!(command(&app, SN2, legacy).await["state"], "sent");
    // Too many malformed frames close the connection.
    for _ in 0..3 {
        b.send(json!({"type": "nope"})).await;
    }
    assert_eq!(b.closed_with().await, Some(4010));

    // A message over 16 KiB.
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    b.send(json!({"type": "result", "data": {"sn": SN, "id": id, "attempt": 1, "code": 0, "text": "x".repeat(20_000)}}))
        .await;
    // 1009; the server stops reading mid-message, so a client still sending may see
    // the connection reset before it reads the close frame (as on /ws/kiosk).
    let code = b.closed_with().await;
    assert!(code == Some(1009) || code.is_none(), "oversized: {code:?}");
    assert_eq!(command(&app, SN, id).await["state"], "sent");
    app.stop().await;
}

#[tokio::test]
async fn silent_bridges_are_closed_after_the_idle_timeout() {
    let app = setup("[ws]\nidle_timeout_seconds = 1\nping_seconds = 60\n").await;
    // No hello at all.
    let mut b = Bridge::connect(&app, Some(TOKEN)).await.unwrap();
    assert_eq!(b.closed_with().await, Some(4009));
    // Silent after the hello.
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    assert_eq!(b.closed_with().await, Some(4009));
    // Heartbeats keep it open past the timeout (the socket's idle timer is the thing
    // under test: the waits are real, at a bridge's cadence).
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        b.send(json!({"type": "heartbeat"})).await;
    }
    let id = queue(&app, SN, json!({"name": "INFO"})).await;
    assert_eq!(b.frame().await["data"]["id"], id);
    app.stop().await;
}

// ---- CMD_FAILED error logs ---------------------------------------------------------------

async fn error_log(app: &TestApp, logs: Value) {
    let body =
        serde_urlencoded::to_string([("token", TOKEN), ("logs", &logs.to_string())]).unwrap();
    let r = app
        .http
        .post(app.url(LEGACY))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bridge_cmd_failed_logs_are_recorded_against_the_command_that_caused_them() {
    let app = setup("").await;
    // Legacy poll: syncAttLog makes the bridge queue DATA QUERY ATTLOG on the terminal.
    let sync = queue(&app, SN, json!({"name": "syncAttLog"})).await;
    assert_eq!(legacy_poll(&app, SN).await, json!({"syncAttLog": ""}));
    // WebSocket: a terminal command relayed as its exact line.
    let (mut b, _) = Bridge::hello(&app, &[SN2]).await;
    let del = queue(
        &app,
        SN2,
        json!({"name": "DATA DELETE USERINFO", "args": {"PIN": "7"}}),
    )
    .await;
    assert_eq!(b.frame().await["data"]["id"], del);
    let info = queue(&app, SN2, json!({"name": "INFO"})).await;
    assert_eq!(b.frame().await["data"]["id"], info);

    let q = "DATA QUERY ATTLOG StartTime=2017-08-01 00:00:00\tEndTime=2017-08-03 23:00:00 ;return -1 . 2017-08-03 23:00:05";
    let d = "DATA DELETE USERINFO PIN=7 ;return -3 . 2017-08-03 23:00:06";
    let unmatched = "SET OPTION Delay=5 ;return -1 . 2017-08-03 23:00:07";
    error_log(
        &app,
        json!([
            {"SN": SN, "type": "CMD_FAILED", "content": q, "wTime": 1501772405},
            {"SN": SN2, "type": "CMD_FAILED", "content": d, "wTime": 1501772406},
            {"SN": SN2, "type": "CMD_FAILED", "content": unmatched, "wTime": 1501772407},
        ]),
    )
    .await;
    let v = command(&app, SN, sync).await;
    assert_eq!(
        (v["state"].as_str(), v["return_code"].as_i64()),
        (Some("failed"), Some(-1)),
        "{v}"
    );
    assert_eq!(v["result"], q);
    assert_eq!(v["errors"], json!([{"type": "CMD_FAILED", "content": q}]));
    let v = command(&app, SN2, del).await;
    assert_eq!(
        (v["state"].as_str(), v["return_code"].as_i64()),
        (Some("failed"), Some(-3)),
        "{v}"
    );
    assert_eq!(v["errors"][0]["content"], d);
    // INFO did not cause anything: untouched; the unmatched log stays terminal-level.
    let v = command(&app, SN2, info).await;
    assert_eq!(
        (v["state"].as_str(), v["errors"].clone()),
        (Some("sent"), json!([]))
    );
    let (_, logs) = app.ops_get(&format!("/ops/terminals/{SN2}/errors")).await;
    let by_content: Vec<(Value, Value)> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["content"].clone(), l["command_id"].clone()))
        .collect();
    assert!(
        by_content.contains(&(json!(unmatched), Value::Null)),
        "{logs}"
    );
    assert!(by_content.contains(&(json!(d), json!(del))), "{logs}");
    // The bridge's result for the failed command now changes nothing.
    let r = b
        .answer(
            "result",
            json!({"sn": SN2, "id": del, "attempt": 1, "code": 0}),
        )
        .await;
    assert_eq!(r["data"]["state"], "ignored");
    app.stop().await;
}

#[tokio::test]
async fn each_path_resends_only_what_it_delivered_and_gives_up_after_five_deliveries() {
    use kioskd_actors::terminal::TerminalStore;
    let app = setup("").await;
    // Delivered on the WebSocket and not acknowledged: the iclock poll does not take it
    // over, even long after its ack timeout.
    let info = queue(&app, SN, json!({"name": "INFO"})).await;
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    assert_eq!(b.frame().await["data"]["id"], info);
    b.ws.close(None).await.unwrap();
    drop(b);
    let later = app.state.terminals.clock().now_ms() + 3_600_000;
    assert!(
        app.db
            .take_native_commands(SN, later, 60_000, 5, 200)
            .await
            .unwrap()
            .is_empty()
    );
    // Delivered by the iclock poll: a WebSocket bridge connecting is not given it.
    let check = queue(&app, SN, json!({"name": "CHECK"})).await;
    let now = app.state.terminals.clock().now_ms();
    let got = app
        .db
        .take_native_commands(SN, now, 60_000, 5, 200)
        .await
        .unwrap();
    assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), [check]);
    // INFO's attempts 2..=5 go to bridges that never acknowledge; then it fails.
    for attempt in 2..=5 {
        let (mut b, _) = Bridge::hello(&app, &[SN]).await;
        let c = b.frame().await;
        assert_eq!(
            (c["data"]["id"].as_i64(), c["data"]["attempt"].as_i64()),
            (Some(info), Some(attempt)),
            "{c}"
        );
        b.ws.close(None).await.unwrap();
    }
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    let fresh = queue(&app, SN, json!({"name": "LOG"})).await;
    assert_eq!(
        b.frame().await["data"]["id"],
        fresh,
        "neither INFO nor CHECK again"
    );
    let v = command(&app, SN, info).await;
    assert_eq!(
        (v["state"].as_str(), v["attempts"].as_i64()),
        (Some("failed"), Some(5)),
        "{v}"
    );
    assert_eq!(v["result"], "never acknowledged by the bridge");
    let v = command(&app, SN, check).await;
    assert_eq!(
        (v["state"].as_str(), v["via"].as_str()),
        (Some("sent"), Some("native"))
    );
    // The native poll re-sends its own after the ack timeout, as a new attempt.
    let got = app
        .db
        .take_native_commands(SN, now + 61_000, 60_000, 5, 200)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|c| (c.id, c.attempts)).collect::<Vec<_>>(),
        [(check, 2)]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_backlog_larger_than_the_socket_queue_flows_as_the_bridge_acknowledges() {
    // A queue of 3 frames: the welcome and a few commands fit; the rest must follow as
    // the bridge acknowledges, not wait for another command or a reconnect.
    let app = setup("[ws]\nqueue = 3\n").await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            queue(
                &app,
                SN,
                json!({"name": "DATA DELETE USERINFO", "args": {"PIN": format!("{i}")}}),
            )
            .await,
        );
    }
    let (mut b, _) = Bridge::hello(&app, &[SN]).await;
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let f = b.frame().await;
        match f["type"].as_str() {
            Some("command") => {
                let id = f["data"]["id"].as_i64().unwrap();
                got.push(id);
                b.send(json!({"type": "ack", "data": {"sn": SN, "id": id, "attempt": 1}}))
                    .await;
            }
            Some("recorded") => assert_eq!(f["data"]["state"], "sent"),
            _ => panic!("unexpected {f}"),
        }
    }
    assert_eq!(got, ids, "all of them, in order, each once");
    app.stop().await;
}
