//! Bad input on every endpoint (missing or mistyped fields, unknown device, wrong or
//! stale token, oversized or non-JSON body, disabled or deleted user) is answered in the
//! dialect's envelope — `{"success","result","error"}` for `/windows/*`, `/wechat/*` and
//! `/dev/*`, `{"error"}` for `/ops/*` — with the documented HTTP status, and changes
//! nothing: the money fingerprint, every user's account, every device's status, the
//! running sessions and the row counts of the other tables are the same afterwards, and
//! the app still serves good requests.
//!
//! Each test builds the same world (a running session, a stale token from an ended one,
//! recharged, poor, unregistered, disabled and deleted users), snapshots it, sends its
//! table of bad requests, collects every mismatch (so one run shows them all) and then
//! compares the snapshot.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Alice's running session is on this device.
const CODE: &str = "11-22-33-44-55-66-77-86";
/// Online (heard from) and free.
const IDLE: &str = "11-22-33-44-55-66-77-87";
/// Registered but never heard from: offline.
const DARK: &str = "11-22-33-44-55-66-77-88";
/// Well-formed, never registered.
const UNKNOWN: &str = "AA-BB-CC-DD-EE-01";

const TECH: &str = "tech1";
const TECH_PASS: &str = "s3cret-pass";

const ALICE_MOBILE: &str = "17700000001";
const BOB_MOBILE: &str = "17700000002";
const EVE_MOBILE: &str = "17700000005";

/// Above `server.max_body_bytes` (65536 by default).
const OVERSIZED: usize = 70_000;

/// A unit far longer than any test: no billing tick can move money mid-test.
const SLOW_BILLING: &str = "[billing]\nunit_seconds = 3600\n";

// ---------------------------------------------------------------------------------
// Requests and expectations
// ---------------------------------------------------------------------------------

#[derive(Clone)]
enum Body {
    None,
    Raw(Vec<u8>),
    Json(Value),
}

fn raw(s: &str) -> Body {
    Body::Raw(s.as_bytes().to_vec())
}

fn js(v: Value) -> Body {
    Body::Json(v)
}

/// `good` (an object) padded with a `pad` field to exactly `OVERSIZED` bytes: valid JSON
/// that would be accepted if the size limit did not hold.
fn oversized(good: &Value) -> Body {
    let mut v = good.clone();
    v["pad"] = json!("");
    let base = serde_json::to_vec(&v).unwrap().len();
    v["pad"] = json!("x".repeat(OVERSIZED - base));
    let bytes = serde_json::to_vec(&v).unwrap();
    assert_eq!(bytes.len(), OVERSIZED);
    Body::Raw(bytes)
}

#[derive(Clone, Copy, Debug)]
enum Want {
    /// The envelope with `success:false`, this numeric `result` and an error message.
    Fail(i64),
    /// The envelope with `success:true`, `error:null` and this `result.status` (the
    /// documented "nothing to do" answers: dead-token logout and keepalive, check of
    /// an unknown device, offline when not playing).
    Soft(i64),
    /// `{"error": "..."}` (the ops API).
    OpsError,
    /// Any JSON object with a non-empty `error` string (the router's own 404 and 405,
    /// shared by every dialect).
    Error,
}

struct Case {
    method: Method,
    path: String,
    body: Body,
    headers: Vec<(&'static str, String)>,
    status: u16,
    want: Want,
}

fn case(method: Method, path: impl Into<String>, body: Body, status: u16, want: Want) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        headers: Vec::new(),
        status,
        want,
    }
}

/// A malformed request in the envelope dialect: HTTP 400, `result` -10.
fn bad(method: Method, path: impl Into<String>, body: Body) -> Case {
    case(method, path, body, 400, Want::Fail(-10))
}

/// A business refusal in the envelope dialect: HTTP 200, `success:false`, `code`.
fn refused(method: Method, path: impl Into<String>, body: Body, code: i64) -> Case {
    case(method, path, body, 200, Want::Fail(code))
}

/// A documented soft answer: HTTP 200, `success:true`, `result.status`.
fn soft(method: Method, path: impl Into<String>, body: Body, status: i64) -> Case {
    case(method, path, body, 200, Want::Soft(status))
}

/// An ops error with this HTTP status.
fn ops(method: Method, path: impl Into<String>, body: Body, status: u16) -> Case {
    case(method, path, body, status, Want::OpsError)
        .header("authorization", format!("Bearer {OPS}"))
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    fn without_auth(mut self) -> Self {
        self.headers.retain(|(n, _)| *n != "authorization");
        self
    }

    fn label(&self) -> String {
        let body = match &self.body {
            Body::None => String::new(),
            Body::Json(v) => v.to_string(),
            Body::Raw(b) => format!("{:?}", String::from_utf8_lossy(b)),
        };
        let body: String = if body.chars().count() > 90 {
            format!(
                "{}… ({} bytes)",
                body.chars().take(60).collect::<String>(),
                body.len()
            )
        } else {
            body
        };
        let headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, v)| !(*n == "authorization" && *v == format!("Bearer {OPS}")))
            .map(|(n, v)| format!("[{n}: {v}]"))
            .collect();
        format!(
            "{} {} {} {}",
            self.method,
            self.path,
            headers.join(""),
            body
        )
    }
}

/// The cases every JSON-body route must refuse with 400 (413 for the oversized one):
/// not JSON, empty, truncated, invalid UTF-8, an array (empty, and of `good`'s values),
/// scalars, `null`, `{}` when the route has required fields, and `good` padded past the
/// body limit. `good` is a body the route would accept, chosen so that accepting any of
/// these would show in the snapshot.
fn malformed(method: Method, path: &str, good: &Value, required: bool) -> Vec<Case> {
    let values: Vec<Value> = good.as_object().unwrap().values().cloned().collect();
    let mut v = vec![
        bad(method.clone(), path, raw("this is not json")),
        bad(method.clone(), path, raw("")),
        bad(method.clone(), path, raw("{\"device_code\": ")),
        bad(method.clone(), path, raw("{'device_code': 'x'}")),
        bad(
            method.clone(),
            path,
            Body::Raw(vec![0xff, 0xfe, 0x7b, 0x00]),
        ),
        bad(method.clone(), path, js(json!([]))),
        bad(method.clone(), path, js(Value::Array(values))),
        bad(method.clone(), path, js(json!("just a string"))),
        bad(method.clone(), path, js(json!(42))),
        bad(method.clone(), path, js(json!(true))),
        bad(method.clone(), path, js(Value::Null)),
        case(method.clone(), path, oversized(good), 413, Want::Fail(-10)),
    ];
    if required {
        v.push(bad(method, path, js(json!({}))));
    }
    v
}

/// The same for the ops API: `{"error"}` with 400 (413 oversized).
fn ops_malformed(method: Method, path: &str, good: &Value) -> Vec<Case> {
    malformed(method, path, good, true)
        .into_iter()
        .map(|c| {
            Case {
                want: Want::OpsError,
                ..c
            }
            .header("authorization", format!("Bearer {OPS}"))
        })
        .collect()
}

/// Sends cases and records every deviation from what they expect.
struct Runner<'a> {
    base: &'a str,
    sent: usize,
    failures: Vec<String>,
}

impl<'a> Runner<'a> {
    fn new(base: &'a str) -> Self {
        Self {
            base,
            sent: 0,
            failures: Vec::new(),
        }
    }

    async fn run(&mut self, client: &reqwest::Client, cases: Vec<Case>) {
        for c in cases {
            self.one(client, &c).await;
        }
    }

    async fn one(&mut self, client: &reqwest::Client, c: &Case) {
        self.sent += 1;
        let label = c.label();
        let mut rb = client.request(c.method.clone(), format!("{}{}", self.base, c.path));
        for (n, v) in &c.headers {
            rb = rb.header(*n, v.as_str());
        }
        rb = match &c.body {
            Body::None => rb,
            Body::Json(v) => rb
                .header("content-type", "application/json")
                .body(serde_json::to_vec(v).unwrap()),
            Body::Raw(b) => rb
                .header("content-type", "application/json")
                .body(b.clone()),
        };
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                self.failures.push(format!("{label}\n    no answer: {e:?}"));
                return;
            }
        };
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = match resp.bytes().await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                self.failures
                    .push(format!("{label}\n    body unreadable: {e:?}"));
                return;
            }
        };
        if let Err(why) = verdict(c, status, &ctype, &text) {
            self.failures.push(format!(
                "{label}\n    {why}\n    got HTTP {status} [{ctype}] {text}"
            ));
        }
    }

    fn finish(self, what: &str) -> usize {
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} bad requests answered wrongly:\n{}",
            self.failures.len(),
            self.sent,
            self.failures.join("\n")
        );
        self.sent
    }
}

fn verdict(c: &Case, status: u16, ctype: &str, text: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !ctype.starts_with("application/json") {
        return Err(format!("content-type {ctype:?}, want application/json"));
    }
    if status != c.status {
        return Err(format!("HTTP {status}, want {}", c.status));
    }
    let obj = v.as_object().ok_or("not a JSON object")?;
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    match c.want {
        Want::OpsError => {
            if keys != ["error"] {
                return Err(format!("keys {keys:?}, want exactly [\"error\"]"));
            }
            match v["error"].as_str() {
                Some(m) if !m.trim().is_empty() => Ok(()),
                _ => Err("error is not a non-empty string".into()),
            }
        }
        Want::Error => match v["error"].as_str() {
            Some(m) if !m.trim().is_empty() => Ok(()),
            _ => Err("error is not a non-empty string".into()),
        },
        Want::Fail(code) => {
            envelope_keys(&keys)?;
            if v["success"] != json!(false) {
                return Err("success is not false".into());
            }
            if v["result"].as_i64() != Some(code) {
                return Err(format!("result is not the number {code}"));
            }
            match v["error"].as_str() {
                Some(m) if !m.trim().is_empty() => Ok(()),
                _ => Err("error is not a non-empty string".into()),
            }
        }
        Want::Soft(st) => {
            envelope_keys(&keys)?;
            if v["success"] != json!(true) || !v["error"].is_null() {
                return Err("want success:true, error:null".into());
            }
            if v["result"]["status"].as_i64() != Some(st) {
                return Err(format!("result.status is not {st}"));
            }
            if st == -1 && !v["result"]["device_status"].is_null() {
                return Err("an unknown device has device_status null".into());
            }
            if v["result"].get("token").is_some() {
                return Err("a soft answer carries no token".into());
            }
            Ok(())
        }
    }
}

fn envelope_keys(keys: &[&str]) -> Result<(), String> {
    if keys != ["error", "result", "success"] {
        return Err(format!(
            "keys {keys:?}, want exactly success, result, error"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The world every test starts from, and what "nothing changed" means
// ---------------------------------------------------------------------------------

struct World {
    app: TestApp,
    /// Registered, 1000 fen recharged, playing on `CODE`.
    alice: Phone,
    alice_id: i64,
    /// Registered, 3 fen: less than one minute anywhere.
    bob: Phone,
    /// Signed in, never bound a mobile.
    carol: Phone,
    /// Registered, recharged, disabled by an operator.
    dave: Phone,
    /// Registered, recharged, deleted by an operator.
    eve: Phone,
    eve_id: i64,
    /// Alice's running session on `CODE`.
    token: String,
    /// The token of Alice's earlier, ended session on `CODE`.
    stale: String,
    game_id: i64,
    before: Snapshot,
}

async fn world() -> World {
    let app = spawn_app(SLOW_BILLING).await;
    for code in [CODE, IDLE, DARK] {
        app.add_device(code, 5).await;
    }
    let (st, v) = app
        .ops_post(
            "/ops/maintainers",
            json!({"username": TECH, "password": TECH_PASS}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = app
        .ops_post(
            "/ops/games",
            json!({"name": "Beat Saber", "version": "1.2", "url": "https://example.com/bs.zip", "md5": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let game_id = v["id"].as_i64().unwrap();

    let (alice, alice_id) = app.phone("oAlice", ALICE_MOBILE, 1000).await;
    let (bob, _) = app.phone("oBob", BOB_MOBILE, 3).await;
    let carol = Phone::new(&app.base);
    assert_eq!(carol.get("/dev/login?openid=oCarol").await["success"], true);
    let (dave, dave_id) = app.phone("oDave", "17700000004", 50).await;
    let (eve, eve_id) = app.phone("oEve", EVE_MOBILE, 50).await;

    // Both kiosks are heard from; DARK never is.
    assert_eq!(app.check(CODE).await["result"]["status"], 0);
    assert_eq!(app.check(IDLE).await["result"]["status"], 0);

    // A session that ended: its token is stale.
    assert_eq!(alice.scan(CODE).await["result"], "success");
    let stale = app.token(CODE).await.expect("a session token");
    let out = app.kiosk("/windows/logout", json!({"token": stale})).await;
    assert_eq!(out["result"]["status"], 1, "{out}");
    // The running one.
    assert_eq!(alice.scan(CODE).await["result"], "success");
    let token = app.token(CODE).await.expect("a session token");
    assert_ne!(token, stale);

    for (id, state) in [(dave_id, 1), (eve_id, 2)] {
        let (st, v) = app
            .ops_post(&format!("/ops/users/{id}/state"), json!({"state": state}))
            .await;
        assert_eq!(st, 200, "{v}");
    }
    app.assert_invariants().await;
    let before = snapshot(&app).await;
    assert_eq!(
        before.fingerprint.0, 2,
        "two sessions: one ended, one running"
    );
    assert_eq!(before.fingerprint.3, 1, "one running session");
    World {
        app,
        alice,
        alice_id,
        bob,
        carol,
        dave,
        eve,
        eve_id,
        token,
        stale,
        game_id,
        before,
    }
}

/// Everything a bad request could wrongly change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// (sessions, ledger rows, sum of balances, running sessions).
    fingerprint: (i64, i64, i64, i64),
    /// Row counts of the other tables.
    counts: Vec<(&'static str, i64)>,
    /// Every user's account as `/ops/users/<id>` shows it.
    users: Vec<Value>,
    /// (device_code, status, session) of every device.
    devices: Vec<Value>,
    /// (id, user, device) of every running session.
    sessions: Vec<Value>,
    /// (username, enabled) of every maintainer.
    maintainers: Vec<Value>,
    /// Every game of the busy kiosk, with its versions.
    games: Value,
}

const COUNTS: [(&str, &str); 8] = [
    ("users", "SELECT COUNT(*) FROM users"),
    ("devices", "SELECT COUNT(*) FROM devices"),
    ("maintainers", "SELECT COUNT(*) FROM maintainers"),
    ("games", "SELECT COUNT(*) FROM games"),
    ("device_games", "SELECT COUNT(*) FROM device_games"),
    ("recharges", "SELECT COUNT(*) FROM recharges"),
    ("captchas", "SELECT COUNT(*) FROM captchas"),
    (
        "updating devices",
        "SELECT COUNT(*) FROM devices WHERE updating <> 0",
    ),
];

async fn snapshot(app: &TestApp) -> Snapshot {
    let mut counts = Vec::new();
    for (name, sql) in COUNTS {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
        counts.push((name, n));
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM users ORDER BY id")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    let mut users = Vec::new();
    for id in ids {
        let (st, v) = app.ops_get(&format!("/ops/users/{id}")).await;
        assert_eq!(st, 200, "{v}");
        users.push(v);
    }
    let (st, d) = app.ops_get("/ops/devices").await;
    assert_eq!(st, 200, "{d}");
    let devices = d["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!([d["device_code"], d["status"], d["session"]]))
        .collect();
    let (st, s) = app.ops_get("/ops/sessions").await;
    assert_eq!(st, 200, "{s}");
    let sessions = s["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["id"], s["user_id"], s["device_code"]]))
        .collect();
    let (st, m) = app.ops_get("/ops/maintainers").await;
    assert_eq!(st, 200, "{m}");
    let maintainers = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["username"], m["enabled"]]))
        .collect();
    let games = app
        .kiosk("/windows/game/list", json!({"device_code": CODE}))
        .await["result"]
        .clone();
    Snapshot {
        fingerprint: app.fingerprint().await,
        counts,
        users,
        devices,
        sessions,
        maintainers,
        games,
    }
}

impl World {
    /// Nothing changed, the invariants hold, and good requests are still served: the
    /// busy kiosk's check answers the running session's token, its keepalive is alive,
    /// and Alice's phone sees her session.
    async fn assert_unchanged_and_serving(&self) {
        let after = snapshot(&self.app).await;
        assert_eq!(after, self.before, "a bad request changed state");
        self.app.assert_invariants().await;
        let c = self.app.check(CODE).await;
        assert_eq!(
            c,
            json!({"success": true, "result": {"status": 1, "token": self.token, "device_status": "busy", "msg": "login successed!"}, "error": null})
        );
        let k = self
            .app
            .kiosk(
                "/windows/keepalive",
                json!({"token": self.token, "device_code": CODE}),
            )
            .await;
        assert_eq!(k["success"], true, "{k}");
        assert_eq!(k["result"]["status"], 1, "{k}");
        assert_eq!(k["result"]["data"]["user_id"], self.alice_id, "{k}");
        let st = self.alice.get("/windows/online/status").await;
        assert_eq!(st["success"], true, "{st}");
        assert_eq!(st["result"]["device_code"], CODE, "{st}");
        assert_eq!(
            self.app.check(IDLE).await["result"]["device_status"],
            "free"
        );
        assert_eq!(snapshot(&self.app).await, self.before);
    }
}

// ---------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn kiosk_endpoints_answer_bad_input_in_the_envelope_and_change_nothing() {
    let w = world().await;
    let kiosk = reqwest::Client::new();
    let (tok, stale) = (w.token.as_str(), w.stale.as_str());
    let mut r = Runner::new(&w.app.base);
    let post = || Method::POST;

    // POST /windows/logout {token}
    let p = "/windows/logout";
    let mut cases = malformed(post(), p, &json!({"token": tok}), true);
    cases.extend([
        bad(post(), p, js(json!({"token": 123}))),
        bad(post(), p, js(json!({"token": null}))),
        bad(post(), p, js(json!({"token": [tok]}))),
        bad(post(), p, js(json!({"tok": tok}))),
        soft(post(), p, js(json!({"token": stale})), 0),
        soft(
            post(),
            p,
            js(json!({"token": "00000000000000000000000000000000"})),
            0,
        ),
        soft(post(), p, js(json!({"token": ""})), 0),
        soft(post(), p, js(json!({"token": tok.to_uppercase()})), 0),
        soft(post(), p, js(json!({"token": format!(" {tok}")})), 0),
    ]);
    r.run(&kiosk, cases).await;

    // POST /windows/keepalive {token, device_code}
    let p = "/windows/keepalive";
    let mut cases = malformed(post(), p, &json!({"token": tok, "device_code": CODE}), true);
    cases.extend([
        bad(post(), p, js(json!({"token": tok}))),
        bad(post(), p, js(json!({"device_code": CODE}))),
        bad(
            post(),
            p,
            js(json!({"token": tok, "device_code": 112233445566_i64})),
        ),
        bad(post(), p, js(json!({"token": 1, "device_code": CODE}))),
        bad(post(), p, js(json!({"token": tok, "device_code": "zz"}))),
        bad(post(), p, js(json!({"token": tok, "device_code": ""}))),
        bad(post(), p, js(json!({"token": stale, "device_code": "zz"}))),
        soft(
            post(),
            p,
            js(json!({"token": stale, "device_code": CODE})),
            0,
        ),
        soft(
            post(),
            p,
            js(json!({"token": "nope", "device_code": CODE})),
            0,
        ),
        soft(
            post(),
            p,
            js(json!({"token": tok, "device_code": UNKNOWN})),
            0,
        ),
        soft(post(), p, js(json!({"token": tok, "device_code": IDLE})), 0),
        soft(
            post(),
            p,
            js(json!({"token": stale, "device_code": UNKNOWN})),
            0,
        ),
    ]);
    r.run(&kiosk, cases).await;

    // POST /windows/check {device_code}
    let p = "/windows/check";
    let mut cases = malformed(post(), p, &json!({"device_code": CODE}), true);
    cases.extend([
        bad(post(), p, js(json!({"device_code": 1}))),
        bad(post(), p, js(json!({"device_code": null}))),
        bad(post(), p, js(json!({"device_code": [CODE]}))),
        bad(post(), p, js(json!({"device_code": "zz"}))),
        bad(post(), p, js(json!({"device_code": ""}))),
        bad(post(), p, js(json!({"device_code": "11-22-33-44-55"}))),
        bad(
            post(),
            p,
            js(json!({"device_code": "11-22-33-44-55-66-77-88-99"})),
        ),
        bad(post(), p, js(json!({"device_code": "GG-22-33-44-55-66"}))),
        bad(post(), p, js(json!({"device_code": "112-2-33-44-55-66"}))),
        bad(post(), p, js(json!({"code": CODE}))),
        soft(post(), p, js(json!({"device_code": UNKNOWN})), -1),
        soft(
            post(),
            p,
            js(json!({"device_code": "aa:bb:cc:dd:ee:01"})),
            -1,
        ),
    ]);
    r.run(&kiosk, cases).await;

    // POST /windows/maintain/login {device_code, username, password}
    let p = "/windows/maintain/login";
    let good = json!({"device_code": IDLE, "username": TECH, "password": TECH_PASS});
    let mut cases = malformed(post(), p, &good, true);
    cases.extend([
        bad(
            post(),
            p,
            js(json!({"device_code": IDLE, "username": TECH})),
        ),
        bad(
            post(),
            p,
            js(json!({"device_code": IDLE, "password": TECH_PASS})),
        ),
        bad(
            post(),
            p,
            js(json!({"username": TECH, "password": TECH_PASS})),
        ),
        bad(
            post(),
            p,
            js(json!({"device_code": IDLE, "username": TECH, "password": 123456})),
        ),
        bad(
            post(),
            p,
            js(json!({"device_code": IDLE, "username": 1, "password": TECH_PASS})),
        ),
        bad(
            post(),
            p,
            js(json!({"device_code": "zz", "username": TECH, "password": TECH_PASS})),
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": IDLE, "username": "nobody", "password": TECH_PASS})),
            -15,
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": IDLE, "username": TECH, "password": "wrong-pass"})),
            -15,
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": IDLE, "username": "", "password": ""})),
            -15,
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": UNKNOWN, "username": TECH, "password": TECH_PASS})),
            -4,
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": CODE, "username": TECH, "password": TECH_PASS})),
            -9,
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": DARK, "username": TECH, "password": TECH_PASS})),
            -9,
        ),
    ]);
    r.run(&kiosk, cases).await;

    // POST /windows/maintain/logout {device_code, username}
    let p = "/windows/maintain/logout";
    let mut cases = malformed(
        post(),
        p,
        &json!({"device_code": CODE, "username": TECH}),
        true,
    );
    cases.extend([
        bad(post(), p, js(json!({"device_code": CODE}))),
        bad(post(), p, js(json!({"username": TECH}))),
        bad(post(), p, js(json!({"device_code": CODE, "username": 7}))),
        bad(
            post(),
            p,
            js(json!({"device_code": "zz", "username": TECH})),
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": CODE, "username": TECH})),
            -9,
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": IDLE, "username": TECH})),
            -9,
        ),
        refused(
            post(),
            p,
            js(json!({"device_code": UNKNOWN, "username": TECH})),
            -4,
        ),
    ]);
    r.run(&kiosk, cases).await;

    // POST /windows/game/list {device_code}
    let p = "/windows/game/list";
    let mut cases = malformed(post(), p, &json!({"device_code": CODE}), true);
    cases.extend([
        bad(post(), p, js(json!({"device_code": 5}))),
        bad(post(), p, js(json!({"device_code": "zz"}))),
        bad(post(), p, js(json!({"device": CODE}))),
        refused(post(), p, js(json!({"device_code": UNKNOWN})), -4),
    ]);
    r.run(&kiosk, cases).await;

    // PUT and POST /windows/game/state {device_code, update_state}
    for m in [Method::PUT, Method::POST] {
        let p = "/windows/game/state";
        let mut cases = malformed(
            m.clone(),
            p,
            &json!({"device_code": IDLE, "update_state": "ing"}),
            true,
        );
        cases.extend([
            bad(m.clone(), p, js(json!({"update_state": "ing"}))),
            bad(
                m.clone(),
                p,
                js(json!({"device_code": IDLE, "update_state": "done"})),
            ),
            bad(
                m.clone(),
                p,
                js(json!({"device_code": IDLE, "update_state": "ING"})),
            ),
            bad(
                m.clone(),
                p,
                js(json!({"device_code": IDLE, "update_state": 1})),
            ),
            bad(
                m.clone(),
                p,
                js(json!({"device_code": IDLE, "update_state": ["ing"]})),
            ),
            bad(
                m.clone(),
                p,
                js(json!({"device_code": "zz", "update_state": "ing"})),
            ),
            bad(
                m.clone(),
                p,
                js(json!({"device_code": 7, "update_state": "finish"})),
            ),
            refused(
                m.clone(),
                p,
                js(json!({"device_code": UNKNOWN, "update_state": "ing"})),
                -4,
            ),
            refused(
                m.clone(),
                p,
                js(json!({"device_code": UNKNOWN, "update_state": "finish"})),
                -4,
            ),
        ]);
        if m == Method::PUT {
            // PUT sets; without a state there is nothing to set.
            cases.push(bad(m.clone(), p, js(json!({"device_code": IDLE}))));
            cases.push(bad(
                m.clone(),
                p,
                js(json!({"device_code": IDLE, "update_state": null})),
            ));
        } else {
            // POST without a state reads it.
            cases.push(refused(
                m.clone(),
                p,
                js(json!({"device_code": UNKNOWN})),
                -4,
            ));
            cases.push(refused(
                m.clone(),
                p,
                js(json!({"device_code": UNKNOWN, "update_state": null})),
                -4,
            ));
        }
        r.run(&kiosk, cases).await;
    }

    // Wrong method and unknown paths are still answered in the envelope.
    r.run(
        &kiosk,
        vec![
            case(
                Method::GET,
                "/windows/check",
                Body::None,
                405,
                Want::Fail(-10),
            ),
            case(
                Method::GET,
                "/windows/logout",
                Body::None,
                405,
                Want::Fail(-10),
            ),
            case(
                Method::DELETE,
                "/windows/game/state",
                Body::None,
                405,
                Want::Fail(-10),
            ),
            case(
                Method::POST,
                "/windows/chek",
                js(json!({"device_code": CODE})),
                404,
                Want::Fail(-10),
            ),
        ],
    )
    .await;

    let sent = r.finish("kiosk endpoints");
    eprintln!("kiosk endpoints: {sent} bad requests");
    w.assert_unchanged_and_serving().await;
    w.app.stop().await;
}

#[tokio::test]
async fn phone_endpoints_refuse_anonymous_disabled_and_deleted_users() {
    let w = world().await;
    let mut r = Runner::new(&w.app.base);
    let get = || Method::GET;
    let post = || Method::POST;
    let scan = |code: &str| format!("/windows/login/{code}?from=playing");

    // No cookie, and a forged (unsigned) cookie naming Alice: not signed in, everywhere.
    let anonymous = reqwest::Client::new();
    let identity_routes = || {
        vec![
            (get(), scan(CODE), Body::None),
            (get(), scan(IDLE), Body::None),
            (get(), "/windows/offline".to_string(), Body::None),
            (get(), "/windows/online/status".to_string(), Body::None),
            (get(), "/wechat/user".to_string(), Body::None),
            (get(), "/wechat/check".to_string(), Body::None),
            (get(), "/wechat/recharge/100".to_string(), Body::None),
            (post(), "/wechat/recharge/list".to_string(), js(json!({}))),
            (
                post(),
                "/wechat/expense/list".to_string(),
                js(json!({"page": 1, "size": 10})),
            ),
            (
                post(),
                "/wechat/login".to_string(),
                js(json!({"mobile": "17700000009", "code": "123456"})),
            ),
        ]
    };
    for cookie in [
        None,
        Some("kioskd_sid=oAlice"),
        Some("kioskd_sid="),
        Some("kioskd_sid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAoAlice"),
    ] {
        let cases = identity_routes()
            .into_iter()
            .map(|(m, p, b)| {
                let c = refused(m, p, b, -1);
                match cookie {
                    Some(v) => c.header("cookie", v),
                    None => c,
                }
            })
            .collect();
        r.run(&anonymous, cases).await;
    }

    // Signed in but never registered a mobile.
    r.run(
        &w.carol.http,
        vec![
            refused(get(), scan(IDLE), Body::None, -1),
            refused(get(), "/windows/offline", Body::None, -1),
            refused(get(), "/windows/online/status", Body::None, -1),
            refused(get(), "/wechat/check", Body::None, 0),
            refused(get(), "/wechat/recharge/100", Body::None, 0),
        ],
    )
    .await;

    // Disabled by an operator.
    r.run(
        &w.dave.http,
        vec![
            refused(get(), scan(IDLE), Body::None, -3),
            refused(get(), scan(CODE), Body::None, -3),
            refused(get(), "/windows/offline", Body::None, -3),
            refused(get(), "/windows/online/status", Body::None, -3),
            refused(get(), "/wechat/recharge/100", Body::None, -3),
        ],
    )
    .await;

    // Deleted by an operator.
    r.run(
        &w.eve.http,
        vec![
            refused(get(), scan(IDLE), Body::None, -2),
            refused(get(), "/windows/offline", Body::None, -2),
            refused(get(), "/windows/online/status", Body::None, -2),
            refused(get(), "/wechat/check", Body::None, -2),
            refused(get(), "/wechat/user", Body::None, -2),
            refused(get(), "/wechat/recharge/100", Body::None, -2),
            refused(post(), "/wechat/recharge/list", js(json!({})), -2),
            refused(post(), "/wechat/expense/list", js(json!({})), -2),
            refused(
                post(),
                "/wechat/login",
                js(json!({"mobile": EVE_MOBILE, "code": "123456"})),
                -2,
            ),
        ],
    )
    .await;

    // Three fen: less than a minute anywhere; not playing.
    r.run(
        &w.bob.http,
        vec![
            refused(get(), scan(IDLE), Body::None, -5),
            refused(get(), scan(CODE), Body::None, -7),
            refused(get(), scan(DARK), Body::None, -9),
            refused(get(), scan(UNKNOWN), Body::None, -4),
            soft(get(), "/windows/offline", Body::None, 0),
            refused(get(), "/windows/online/status", Body::None, 0),
        ],
    )
    .await;

    // Alice, registered and playing on CODE, sending bad input.
    let mut cases = vec![
        refused(get(), scan("zz"), Body::None, -4),
        refused(get(), scan(UNKNOWN), Body::None, -4),
        refused(get(), scan("aa:bb:cc:dd:ee:01"), Body::None, -4),
        refused(get(), scan("11-22-33-44-55-66-77-86-99"), Body::None, -4),
        refused(get(), scan(&"A".repeat(2000)), Body::None, -4),
        refused(get(), scan(IDLE), Body::None, -8),
        refused(get(), scan(DARK), Body::None, -9),
        bad(
            get(),
            format!("/windows/login/{CODE}?from=playing&from=playing"),
            Body::None,
        ),
        case(get(), "/wechat/recharge/", Body::None, 404, Want::Fail(-10)),
    ];
    for amount in [
        "0",
        "-5",
        "abc",
        "99999999999",
        "99999999999999999999",
        "1000001",
        "1.5",
        "1e3",
        "%205",
        "0x10",
        "NaN",
    ] {
        cases.push(refused(
            get(),
            format!("/wechat/recharge/{amount}"),
            Body::None,
            -14,
        ));
    }
    for p in ["/wechat/recharge/list", "/wechat/expense/list"] {
        cases.extend(malformed(post(), p, &json!({"page": 1, "size": 10}), false));
        for body in [
            json!({"page": "one"}),
            json!({"page": -1}),
            json!({"page": 1.5}),
            json!({"page": 99999999999_i64}),
            json!({"size": "10"}),
            json!({"size": 99999999999_i64}),
            json!({"page": null}),
            json!({"start_time": "yesterday"}),
            json!({"end_time": "2017-13-45 25:61:61"}),
            json!({"start_time": 20170101}),
            json!({"start_time": "2017-07-01 00:00:00", "end_time": "tomorrow"}),
            json!({"start_time": ["2017-07-01 00:00:00"]}),
        ] {
            cases.push(bad(post(), p, js(body)));
        }
    }
    let p = "/wechat/login";
    cases.extend(malformed(
        post(),
        p,
        &json!({"mobile": ALICE_MOBILE, "code": "123456"}),
        true,
    ));
    cases.extend([
        bad(
            post(),
            p,
            js(json!({"mobile": 17700000001_i64, "code": "123456"})),
        ),
        bad(post(), p, js(json!({"mobile": ALICE_MOBILE}))),
        bad(post(), p, js(json!({"code": "123456"}))),
        bad(
            post(),
            p,
            js(json!({"mobile": ALICE_MOBILE, "code": 123456})),
        ),
        bad(post(), p, js(json!({"mobile": "123", "code": "123456"}))),
        bad(
            post(),
            p,
            js(json!({"mobile": "1770000000x", "code": "123456"})),
        ),
        refused(
            post(),
            p,
            js(json!({"mobile": BOB_MOBILE, "code": "123456"})),
            -13,
        ),
        refused(
            post(),
            p,
            js(json!({"mobile": "17700000009", "code": "123456"})),
            -13,
        ),
        refused(
            post(),
            p,
            js(json!({"mobile": ALICE_MOBILE, "code": "000000"})),
            -11,
        ),
        refused(
            post(),
            p,
            js(json!({"mobile": ALICE_MOBILE, "code": ""})),
            -11,
        ),
    ]);
    let p = "/wechat/captcha";
    cases.extend(malformed(post(), p, &json!({"mobile": ALICE_MOBILE}), true));
    cases.extend([
        bad(post(), p, js(json!({"mobile": 17700000001_i64}))),
        bad(post(), p, js(json!({"mobile": "123"}))),
        bad(post(), p, js(json!({"mobile": ""}))),
        bad(post(), p, js(json!({"mobile": "1770000000a"}))),
        bad(post(), p, js(json!({"mobile": "27700000001"}))),
        bad(post(), p, js(json!({"mobile": "177000000011"}))),
        bad(post(), p, js(json!({"phone": ALICE_MOBILE}))),
    ]);
    // Wrong methods.
    cases.extend([
        case(
            Method::POST,
            "/wechat/check",
            Body::None,
            405,
            Want::Fail(-10),
        ),
        case(
            Method::GET,
            "/wechat/captcha",
            Body::None,
            405,
            Want::Fail(-10),
        ),
    ]);
    r.run(&w.alice.http, cases).await;

    // The dev identity provider refuses malformed identities before creating anyone.
    let mut cases = vec![
        bad(get(), "/dev/login", Body::None),
        bad(get(), "/dev/login?openid=", Body::None),
        bad(get(), "/dev/login?nickname=x", Body::None),
        bad(get(), "/dev/login?openid=bad%20id!", Body::None),
        bad(get(), "/dev/login?openid=%E5%BE%AE%E4%BF%A1", Body::None),
        bad(
            get(),
            format!("/dev/login?openid={}", "a".repeat(65)),
            Body::None,
        ),
        bad(
            get(),
            format!("/dev/login?openid=oZed&nickname={}", "n".repeat(65)),
            Body::None,
        ),
        bad(get(), "/dev/login?openid=oZed&openid=oYan", Body::None),
    ];
    cases.push(case(
        Method::POST,
        "/dev/login?openid=oZed",
        Body::None,
        405,
        Want::Fail(-10),
    ));
    r.run(&anonymous, cases).await;

    let sent = r.finish("phone endpoints");
    eprintln!("phone endpoints: {sent} bad requests");

    // Nobody was created, re-registered, recharged or started.
    w.assert_unchanged_and_serving().await;
    let v = w.eve.get("/wechat/check").await;
    assert_eq!(v["result"], -2, "{v}");
    let v = w.alice.get("/wechat/check").await;
    assert_eq!(
        v,
        json!({"success": true, "result": "success", "error": null})
    );
    let (_, u) = w.app.ops_get(&format!("/ops/users/{}", w.eve_id)).await;
    assert_eq!(u["state"], 2, "{u}");
    w.app.stop().await;
}

#[tokio::test]
async fn ops_endpoints_reject_bad_input_and_bad_tokens() {
    let w = world().await;
    let client = reqwest::Client::new();
    let mut r = Runner::new(&w.app.base);
    let (get, post, put) = (|| Method::GET, || Method::POST, || Method::PUT);
    let a = w.alice_id;
    let g = w.game_id;

    // Requests that would each change something (a device, a maintainer, money, a user's
    // state, the running session, a game) — refused without the right bearer token.
    let privileged = || {
        vec![
            (
                post(),
                "/ops/devices".to_string(),
                js(
                    json!({"device_code": "11-22-33-44-55-66-77-99", "name": "new", "charge_mode": 5}),
                ),
            ),
            (get(), "/ops/devices".to_string(), Body::None),
            (get(), "/ops/sessions".to_string(), Body::None),
            (
                post(),
                "/ops/maintainers".to_string(),
                js(json!({"username": "tech2", "password": "another-pass"})),
            ),
            (
                post(),
                format!("/ops/users/{a}/adjust"),
                js(json!({"amount": 100000, "reason": "gift"})),
            ),
            (
                post(),
                format!("/ops/users/{a}/state"),
                js(json!({"state": 1})),
            ),
            (
                post(),
                format!("/ops/devices/{CODE}/command"),
                js(json!({"name": "lock"})),
            ),
            (
                post(),
                "/ops/games".to_string(),
                js(
                    json!({"name": "G", "version": "1", "url": "https://example.com/g.zip", "md5": "0123456789abcdef0123456789abcdef"}),
                ),
            ),
            (put(), format!("/ops/devices/{CODE}/games/{g}"), Body::None),
            (get(), format!("/ops/users/{a}"), Body::None),
            (get(), format!("/ops/users/{a}/ledger"), Body::None),
        ]
    };
    for auth in [
        None,
        Some("Bearer wrong-token".to_string()),
        Some("Bearer ".to_string()),
        Some(OPS.to_string()),
        Some(format!("Bearer  {OPS}")),
        Some(format!("Bearer{OPS}")),
        Some(format!("Bearer {}", &OPS[..OPS.len() - 1])),
        Some("Basic dGVzdDp0ZXN0LW9wcy10b2tlbg==".to_string()),
    ] {
        let cases = privileged()
            .into_iter()
            .map(|(m, p, b)| {
                let c = ops(m, p, b, 401).without_auth();
                match &auth {
                    Some(v) => c.header("authorization", v.clone()),
                    None => c,
                }
            })
            .collect();
        r.run(&client, cases).await;
    }
    // The token is a header, not a query parameter (that is for /ws/ops only).
    r.run(
        &client,
        vec![
            ops(
                post(),
                format!("/ops/users/{a}/adjust?token={OPS}"),
                js(json!({"amount": 100000, "reason": "gift"})),
                401,
            )
            .without_auth(),
            ops(
                get(),
                format!("/ops/users/{a}?token={OPS}"),
                Body::None,
                401,
            )
            .without_auth(),
        ],
    )
    .await;

    // POST /ops/devices
    let p = "/ops/devices";
    let new = |extra: Value| {
        let mut v =
            json!({"device_code": "11-22-33-44-55-66-77-99", "name": "new", "charge_mode": 5});
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        js(v)
    };
    let mut cases = ops_malformed(
        post(),
        p,
        &json!({"device_code": "11-22-33-44-55-66-77-99", "name": "new", "charge_mode": 5}),
    );
    cases.extend([
        ops(post(), p, new(json!({"name": null})), 400),
        ops(post(), p, new(json!({"device_code": null})), 400),
        ops(post(), p, new(json!({"charge_mode": null})), 400),
        ops(post(), p, new(json!({"charge_mode": "5"})), 400),
        ops(post(), p, new(json!({"charge_mode": 5.5})), 400),
        ops(post(), p, new(json!({"charge_mode": -1})), 400),
        ops(post(), p, new(json!({"charge_mode": 100001})), 400),
        ops(post(), p, new(json!({"device_code": "zz"})), 400),
        ops(post(), p, new(json!({"device_code": 1122334455_i64})), 400),
        ops(post(), p, new(json!({"name": ""})), 400),
        ops(post(), p, new(json!({"name": "   "})), 400),
        ops(post(), p, new(json!({"name": "n".repeat(101)})), 400),
        ops(post(), p, new(json!({"name": 7})), 400),
        ops(post(), p, new(json!({"billing_mode": "free"})), 400),
        ops(post(), p, new(json!({"billing_mode": 1})), 400),
        ops(post(), p, new(json!({"client_id": "abc"})), 400),
        ops(post(), p, new(json!({"client_id": ""})), 400),
        ops(post(), p, new(json!({"client_id": 123})), 400),
        ops(post(), p, new(json!({"client_id": "1".repeat(33)})), 400),
        ops(post(), p, new(json!({"secret": "short"})), 400),
        ops(post(), p, new(json!({"colour": "red"})), 400),
        ops(post(), p, new(json!({"device_code": CODE})), 409),
        ops(
            post(),
            p,
            new(json!({"device_code": "11:22:33:44:55:66:77:86"})),
            409,
        ),
        ops(
            post(),
            p,
            new(json!({"device_code": "11-22-33-44-55-66-77-86 "})),
            409,
        ),
    ]);
    r.run(&client, cases).await;

    // POST /ops/maintainers
    let p = "/ops/maintainers";
    let mut cases = ops_malformed(
        post(),
        p,
        &json!({"username": "tech2", "password": "another-pass"}),
    );
    cases.extend([
        ops(post(), p, js(json!({"username": "tech2"})), 400),
        ops(post(), p, js(json!({"password": "another-pass"})), 400),
        ops(
            post(),
            p,
            js(json!({"username": 5, "password": "another-pass"})),
            400,
        ),
        ops(
            post(),
            p,
            js(json!({"username": "tech2", "password": 12345678})),
            400,
        ),
        ops(
            post(),
            p,
            js(json!({"username": "", "password": "another-pass"})),
            400,
        ),
        ops(
            post(),
            p,
            js(json!({"username": "bad name!", "password": "another-pass"})),
            400,
        ),
        ops(
            post(),
            p,
            js(json!({"username": "u".repeat(65), "password": "another-pass"})),
            400,
        ),
        ops(
            post(),
            p,
            js(json!({"username": "tech2", "password": "123"})),
            400,
        ),
        ops(
            post(),
            p,
            js(json!({"username": "tech2", "password": "another-pass", "admin": true})),
            400,
        ),
        ops(
            post(),
            p,
            js(json!({"username": TECH, "password": "another-pass"})),
            409,
        ),
    ]);
    r.run(&client, cases).await;

    // POST /ops/users/{id}/adjust
    let p = format!("/ops/users/{a}/adjust");
    let gift = || js(json!({"amount": 100, "reason": "gift"}));
    let mut cases = ops_malformed(post(), &p, &json!({"amount": 100, "reason": "gift"}));
    cases.extend([
        ops(post(), "/ops/users/abc/adjust", gift(), 400),
        ops(post(), "/ops/users/1.5/adjust", gift(), 400),
        ops(
            post(),
            "/ops/users/99999999999999999999/adjust",
            gift(),
            400,
        ),
        ops(post(), "/ops/users/999999/adjust", gift(), 404),
        ops(post(), "/ops/users/-1/adjust", gift(), 404),
        ops(post(), &p, js(json!({"amount": 0, "reason": "gift"})), 400),
        ops(
            post(),
            &p,
            js(json!({"amount": "100", "reason": "gift"})),
            400,
        ),
        ops(
            post(),
            &p,
            js(json!({"amount": 1.5, "reason": "gift"})),
            400,
        ),
        ops(
            post(),
            &p,
            js(json!({"amount": 100000001, "reason": "gift"})),
            400,
        ),
        ops(
            post(),
            &p,
            js(json!({"amount": -100000001, "reason": "gift"})),
            400,
        ),
        ops(
            post(),
            &p,
            js(json!({"amount": 1e20, "reason": "gift"})),
            400,
        ),
        ops(
            post(),
            &p,
            raw("{\"amount\": 99999999999999999999, \"reason\": \"gift\"}"),
            400,
        ),
        ops(post(), &p, js(json!({"amount": 100})), 400),
        ops(post(), &p, js(json!({"reason": "gift"})), 400),
        ops(post(), &p, js(json!({"amount": 100, "reason": ""})), 400),
        ops(post(), &p, js(json!({"amount": 100, "reason": "   "})), 400),
        ops(
            post(),
            &p,
            js(json!({"amount": 100, "reason": "r".repeat(201)})),
            400,
        ),
        ops(post(), &p, js(json!({"amount": 100, "reason": 5})), 400),
        ops(
            post(),
            &p,
            js(json!({"amount": 100, "reason": "gift", "user_id": 1})),
            400,
        ),
        // More than the balance (995 after the first minute's reservation).
        ops(
            post(),
            &p,
            js(json!({"amount": -996, "reason": "claw back"})),
            409,
        ),
        ops(
            post(),
            &p,
            js(json!({"amount": -100000, "reason": "claw back"})),
            409,
        ),
    ]);
    r.run(&client, cases).await;

    // POST /ops/users/{id}/state
    let p = format!("/ops/users/{a}/state");
    let mut cases = ops_malformed(post(), &p, &json!({"state": 1}));
    cases.extend([
        ops(post(), "/ops/users/abc/state", js(json!({"state": 1})), 400),
        ops(
            post(),
            "/ops/users/999999/state",
            js(json!({"state": 1})),
            404,
        ),
        ops(post(), &p, js(json!({"state": 3})), 400),
        ops(post(), &p, js(json!({"state": -1})), 400),
        ops(post(), &p, js(json!({"state": "1"})), 400),
        ops(post(), &p, js(json!({"state": 1.0})), 400),
        ops(post(), &p, js(json!({"state": 99999999999_i64})), 400),
        ops(post(), &p, js(json!({"state": 1, "mobile": "1"})), 400),
    ]);
    r.run(&client, cases).await;

    // POST /ops/devices/{code}/command
    let p = format!("/ops/devices/{CODE}/command");
    let lock = || js(json!({"name": "lock"}));
    let mut cases = ops_malformed(post(), &p, &json!({"name": "lock"}));
    cases.extend([
        ops(post(), "/ops/devices/zz/command", lock(), 400),
        ops(
            post(),
            format!("/ops/devices/{UNKNOWN}/command"),
            lock(),
            404,
        ),
        ops(post(), &p, js(json!({"name": "explode"})), 400),
        ops(post(), &p, js(json!({"name": "LOCK"})), 400),
        ops(post(), &p, js(json!({"name": ""})), 400),
        ops(post(), &p, js(json!({"name": 1})), 400),
        ops(post(), &p, js(json!({"name": "lock", "force": true})), 400),
        ops(post(), &p, js(json!({"name": "message", "text": 5})), 400),
        ops(post(), &p, js(json!({"text": "hello"})), 400),
    ]);
    r.run(&client, cases).await;

    // POST /ops/games
    let p = "/ops/games";
    let game = |extra: Value| {
        let mut v = json!({"name": "G", "version": "1", "url": "https://example.com/g.zip", "md5": "0123456789abcdef0123456789abcdef"});
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        js(v)
    };
    let mut cases = ops_malformed(
        post(),
        p,
        &json!({"name": "G", "version": "1", "url": "https://example.com/g.zip", "md5": "0123456789abcdef0123456789abcdef"}),
    );
    cases.extend([
        ops(post(), p, game(json!({"md5": null})), 400),
        ops(post(), p, game(json!({"url": null})), 400),
        ops(post(), p, game(json!({"md5": "xyz"})), 400),
        ops(post(), p, game(json!({"md5": "g".repeat(32)})), 400),
        ops(post(), p, game(json!({"md5": "0".repeat(33)})), 400),
        ops(post(), p, game(json!({"name": ""})), 400),
        ops(post(), p, game(json!({"version": " "})), 400),
        ops(post(), p, game(json!({"version": 2})), 400),
        ops(post(), p, game(json!({"url": ""})), 400),
        ops(post(), p, game(json!({"size": 1024})), 400),
    ]);
    r.run(&client, cases).await;

    // GET /ops/users/{id}, its ledger, and PUT /ops/devices/{code}/games/{id}
    r.run(
        &client,
        vec![
            ops(get(), "/ops/users/abc", Body::None, 400),
            ops(get(), "/ops/users/1.5", Body::None, 400),
            ops(get(), "/ops/users/99999999999999999999", Body::None, 400),
            ops(get(), "/ops/users/999999", Body::None, 404),
            ops(get(), "/ops/users/0", Body::None, 404),
            ops(get(), "/ops/users/abc/ledger", Body::None, 400),
            ops(get(), "/ops/users/999999/ledger", Body::None, 404),
            ops(put(), format!("/ops/devices/zz/games/{g}"), Body::None, 400),
            ops(
                put(),
                format!("/ops/devices/{CODE}/games/abc"),
                Body::None,
                400,
            ),
            ops(
                put(),
                format!("/ops/devices/{UNKNOWN}/games/{g}"),
                Body::None,
                404,
            ),
            ops(
                put(),
                format!("/ops/devices/{CODE}/games/999999"),
                Body::None,
                404,
            ),
            case(
                Method::DELETE,
                format!("/ops/users/{a}"),
                Body::None,
                405,
                Want::Error,
            ),
            case(
                Method::GET,
                format!("/ops/users/{a}/adjust"),
                Body::None,
                405,
                Want::Error,
            ),
        ],
    )
    .await;

    let sent = r.finish("ops endpoints");
    eprintln!("ops endpoints: {sent} bad requests");
    w.assert_unchanged_and_serving().await;
    w.app.stop().await;
}

/// Invalid UTF-8 in a path parameter is rejected by axum's `Path` extractor before any
/// handler runs, and its rejection is plain text, not the dialect's envelope.
#[tokio::test]

async fn invalid_utf8_in_a_path_parameter_is_answered_in_the_envelope() {
    let w = world().await;
    let mut r = Runner::new(&w.app.base);
    let a = w.alice_id;
    r.run(
        &w.alice.http,
        vec![
            bad(
                Method::GET,
                "/windows/login/%FF%FE?from=playing",
                Body::None,
            ),
            bad(Method::GET, "/wechat/recharge/%FF", Body::None),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    r.run(
        &client,
        vec![
            ops(Method::GET, "/ops/users/%FF", Body::None, 400),
            ops(Method::GET, "/ops/users/%FF/ledger", Body::None, 400),
            ops(
                Method::POST,
                "/ops/users/%FF/adjust",
                js(json!({"amount": 100, "reason": "gift"})),
                400,
            ),
            ops(
                Method::POST,
                "/ops/users/%FF/state",
                js(json!({"state": 1})),
                400,
            ),
            ops(
                Method::POST,
                "/ops/devices/%FF/command",
                js(json!({"name": "lock"})),
                400,
            ),
            ops(
                Method::PUT,
                format!("/ops/devices/%FF/games/{}", w.game_id),
                Body::None,
                400,
            ),
            ops(Method::GET, format!("/ops/users/{a}%FF"), Body::None, 400),
        ],
    )
    .await;
    r.finish("invalid UTF-8 paths");
    w.assert_unchanged_and_serving().await;
    w.app.stop().await;
}
