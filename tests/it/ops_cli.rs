//! `kioskd ops ...` against a live app: each command's output and its effect, the audit
//! entry every action leaves (who, what, target, why, outcome), and `ops tail` streaming
//! live events with filters.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const CODE: &str = "11-22-33-44-55-66-77-01";

/// Where `kioskd ops login` keeps this app's token (one folder per app).
fn config_home(app: &TestApp) -> std::path::PathBuf {
    let port = app.base.rsplit(':').next().unwrap_or("0").to_string();
    std::env::temp_dir().join(format!("kioskd-ops-cli-{port}-{}", std::process::id()))
}

fn ops_cmd(app: &TestApp, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_kioskd"));
    c.arg("ops")
        .args(["--server", &app.base])
        .args(args)
        .env("XDG_CONFIG_HOME", config_home(app))
        .env("KIOSKD_OPS__TOKEN", OPS)
        .env("KIOSKD_LOG__FILTER", "error")
        .env_remove("KIOSKD_OPS_TOKEN")
        .env_remove("KIOSKD_OPS_SERVER")
        .kill_on_drop(true);
    c
}

/// Runs `kioskd ops args...`; (success, stdout, stderr).
async fn ops(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = ops_cmd(app, args).output().await.expect("kioskd runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn audit(app: &TestApp) -> Vec<Value> {
    let (st, v) = app.ops_get("/ops/audit?limit=100").await;
    assert_eq!(st, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

async fn running_session_id(app: &TestApp) -> i64 {
    let (_, v) = app.ops_get("/ops/sessions").await;
    v["data"][0]["id"].as_i64().expect("a running session")
}

#[tokio::test]
async fn every_ops_command_does_what_it_says_and_is_audited() {
    let app = spawn_app("").await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oOps", "17700000001", 1000).await;
    app.check(CODE).await; // the kiosk is online
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let sid = running_session_id(&app).await;

    // alice signs in once; every command after acts as her (a personal token).
    let _ = std::fs::remove_dir_all(config_home(&app));
    app.state
        .operators
        .add("alice", "alice-password-1", "admin", &[], 0)
        .await
        .unwrap();
    let mut login = ops_cmd(&app, &["login", "--username", "alice"]);
    login.env("KIOSKD_OPERATOR_PASSWORD", "alice-password-1");
    let out = login.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("signed in as alice (admin)"), "{text}");
    let (ok, out, _) = ops(&app, &["whoami"]).await;
    assert!(ok && out.contains("alice (admin, via token)"), "{out}");

    // Tables.
    let (ok, out, err) = ops(&app, &["devices"]).await;
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    for col in ["CODE", "NAME", "STATUS", "ONLINE", "SESSION"] {
        assert!(header.contains(col), "{out}");
    }
    let row = out.lines().find(|l| l.contains(CODE)).expect(&out);
    assert!(row.contains("busy"), "{row}");
    assert!(row.contains(&format!("#{sid} user {uid}")), "{row}");
    assert!(row.contains("0.05"), "price in yuan: {row}");

    let (ok, out, _) = ops(&app, &["sessions"]).await;
    assert!(ok);
    let row = out.lines().find(|l| l.contains(CODE)).expect(&out);
    assert!(row.trim_start().starts_with(&sid.to_string()), "{row}");

    let (ok, out, _) = ops(&app, &["--json", "sessions"]).await;
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"][0]["id"], sid);

    // A message for a kiosk that holds no socket stays queued.
    let (ok, out, err) = ops(
        &app,
        &["message", CODE, "closing at 22:00", "--reason", "notice"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("message queued as command"), "{out}");
    assert!(out.contains("not connected"), "{out}");

    // Lock ends the running session (operator) and the device shows lock.
    let (ok, out, err) = ops(&app, &["lock", CODE, "--reason", "screen cracked"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("locked; session {sid} ended")),
        "{out}"
    );
    let s = app.last_session(uid).await;
    assert!(s.0);
    assert_eq!(s.1.as_deref(), Some("operator"));
    assert_eq!(app.check(CODE).await["result"]["device_status"], "lock");

    let (ok, out, _) = ops(&app, &["unlock", CODE]).await;
    assert!(ok);
    assert!(out.contains("unlocked"), "{out}");
    assert_eq!(app.check(CODE).await["result"]["device_status"], "free");

    // End a session by id.
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let sid2 = running_session_id(&app).await;
    assert_ne!(sid2, sid);
    let (ok, out, err) = ops(
        &app,
        &[
            "end",
            &sid2.to_string(),
            "--reason",
            "user asked at the desk",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("session {sid2} ended")), "{out}");
    assert_eq!(app.last_session(uid).await.1.as_deref(), Some("operator"));
    let (ok, _, err) = ops(&app, &["end", &sid2.to_string(), "--reason", "again"]).await;
    assert!(!ok, "ending an ended session fails");
    assert!(err.contains("404"), "{err}");

    // Adjust: the balance moves by exactly the amount, with a ledger row.
    let before = app.balance(uid).await;
    let (ok, out, err) = ops(
        &app,
        &["adjust", &uid.to_string(), "250", "--reason", "goodwill"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("adjusted by 2.50 yuan"), "{out}");
    assert_eq!(app.balance(uid).await, before + 250);
    let (ok, _, _) = ops(&app, &["adjust", &uid.to_string(), "-1", "--reason", "fix"]).await;
    assert!(ok);
    assert_eq!(app.balance(uid).await, before + 249);
    let (ok, _, err) = ops(
        &app,
        &["adjust", &uid.to_string(), "-100000000", "--reason", "x"],
    )
    .await;
    assert!(!ok, "a debit below zero is refused");
    assert!(err.contains("409"), "{err}");
    assert_eq!(app.balance(uid).await, before + 249);
    // The same idempotency key never adjusts twice; reused for another amount, refused.
    let mut outs = Vec::new();
    for _ in 0..2 {
        let (ok, out, err) = ops(
            &app,
            &[
                "adjust",
                &uid.to_string(),
                "100",
                "--reason",
                "retry-safe",
                "--idempotency-key",
                "ticket-77",
            ],
        )
        .await;
        assert!(ok, "{err}");
        outs.push(out);
    }
    assert_eq!(outs[0], outs[1], "the retry answers as the first did");
    assert_eq!(app.balance(uid).await, before + 349);
    let r = app
        .http
        .post(app.url(&format!("/ops/users/{uid}/adjust")))
        .bearer_auth(OPS)
        .header("idempotency-key", "ticket-77")
        .json(&json!({"amount": 100, "reason": "retry-safe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["replayed"], true);
    assert_eq!(v["ledger_id"], "adjust:key:ticket-77");
    let r = app
        .http
        .post(app.url(&format!("/ops/users/{uid}/adjust")))
        .bearer_auth(OPS)
        .header("idempotency-key", "ticket-77")
        .json(&json!({"amount": 5, "reason": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .http
        .post(app.url(&format!("/ops/users/{uid}/adjust")))
        .bearer_auth(OPS)
        .header("idempotency-key", "bad key!")
        .json(&json!({"amount": 5, "reason": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.balance(uid).await, before + 349);
    app.assert_invariants().await;

    // A terminal command.
    let (st, v) = app
        .ops_post(
            "/ops/terminals",
            json!({"sn": "CLI0001", "token": "bridge-token-1"}),
        )
        .await;
    assert!(st == 201 || st == 200, "{st} {v}");
    let (ok, out, err) = ops(
        &app,
        &[
            "terminal-command",
            "CLI0001",
            "INFO",
            "--reason",
            "check fw",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("terminal CLI0001: command INFO queued"),
        "{out}"
    );
    let (_, v) = app.ops_get("/ops/terminals/CLI0001/commands").await;
    assert_eq!(v["data"][0]["name"], "INFO", "{v}");

    // The audit log holds each action with who, what, target, why and outcome.
    let log = audit(&app).await;
    let find = |action: &str, target: &str| {
        log.iter()
            .find(|e| {
                e["action"] == action
                    && e["target"] == target
                    && e["status"].as_i64().is_some_and(|s| s < 300)
            })
            .unwrap_or_else(|| panic!("no audit entry {action} {target}: {log:#?}"))
            .clone()
    };
    let e = find("POST /ops/devices/{code}/command", CODE);
    assert_eq!(e["operator"], "alice");
    let lock = log
        .iter()
        .find(|e| e["body"].as_str().is_some_and(|b| b.contains("\"lock\"")))
        .unwrap();
    assert_eq!(lock["reason"], "screen cracked");
    assert_eq!(lock["status"], 200);
    let e = find("POST /ops/sessions/{id}/end", &sid2.to_string());
    assert_eq!(e["reason"], "user asked at the desk");
    assert!(
        log.iter()
            .any(|e| e["reason"] == "again" && e["status"] == 404),
        "failed actions are audited with their status"
    );
    let adj: Vec<&Value> = log
        .iter()
        .filter(|e| e["action"] == "POST /ops/users/{id}/adjust")
        .collect();
    assert_eq!(adj.len(), 8, "{adj:#?}");
    assert!(
        adj.iter()
            .any(|e| e["reason"] == "goodwill" && e["status"] == 200)
    );
    assert!(
        adj.iter().any(|e| e["status"] == 409),
        "refusals are audited too"
    );
    let e = find("POST /ops/terminals/{sn}/commands", "CLI0001");
    assert_eq!(e["reason"], "check fw");
    // Registrations made with the shared token are audited as "service", and the
    // terminal token is not stored.
    let e = find("POST /ops/terminals", "CLI0001");
    assert_eq!(e["operator"], "service");
    assert!(
        !e["body"].as_str().unwrap().contains("bridge-token-1"),
        "{e}"
    );
    let e = find("POST /ops/devices", CODE);
    assert_eq!(e["status"], 201);
    // Reads are not actions.
    assert!(log.iter().all(|e| e["method"] != "GET"));

    // `ops audit` shows the same, filtered.
    let (ok, out, _) = ops(&app, &["audit", "--operator", "alice", "--target", CODE]).await;
    assert!(ok);
    assert!(out.contains("screen cracked"), "{out}");
    assert!(!out.contains("goodwill"), "filtered by target: {out}");
}

#[tokio::test]
async fn a_wrong_token_or_a_dead_server_fails_clearly_and_writes_nothing() {
    let app = spawn_app("").await;
    app.add_device(CODE, 5).await;
    let n = audit(&app).await.len();
    let out = ops_cmd(&app, &["lock", CODE])
        .env("KIOSKD_OPS__TOKEN", "wrong")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        audit(&app).await.len(),
        n,
        "unauthenticated calls are not audited"
    );
    assert_eq!(app.check(CODE).await["result"]["device_status"], "free");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kioskd"))
        .args([
            "ops",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "x",
            "devices",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[tokio::test]
async fn tail_streams_live_events_with_filters() {
    let app = spawn_app("").await;
    app.add_device(CODE, 5).await;
    app.add_device("11-22-33-44-55-66-77-02", 5).await;
    let (phone, _) = app.phone("oTail", "17700000002", 1000).await;
    let (other, _) = app.phone("oTail2", "17700000003", 1000).await;

    let mut child = ops_cmd(
        &app,
        &[
            "tail",
            "--device",
            CODE,
            "--type",
            "session_started",
            "--type",
            "session_ended",
            "--count",
            "2",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until the tail is subscribed: /ws/ops counts as a connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app
        .state
        .ws_connections
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tail never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another device's session is filtered out; this one's start and end are shown.
    app.check(CODE).await;
    app.check("11-22-33-44-55-66-77-02").await;
    assert_eq!(
        other.scan("11-22-33-44-55-66-77-02").await["result"],
        "success"
    );
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let token = app.token(CODE).await.unwrap();
    app.kiosk("/windows/logout", json!({"token": token})).await;
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .unwrap();
    assert!(
        first.contains("session_started") && first.contains(CODE),
        "{first}"
    );
    assert!(
        second.contains("session_ended") && second.contains(CODE),
        "{second}"
    );
    assert!(second.contains("user_logout"), "{second}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("tail stops after --count")
        .unwrap();
    assert!(status.success());
}
