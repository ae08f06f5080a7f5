//! Operators are people: console sign-in with a session cookie (HttpOnly,
//! SameSite=Strict, refused for cross-site state changes), roles and site scopes on
//! every `/ops/*` route, personal API tokens, a timed backoff instead of a permanent
//! lock, and an audit log that names the authenticated operator.

use crate::common;

use common::*;
use serde_json::{Value, json};

const CODE_A: &str = "11-22-33-44-55-66-77-A1";
const CODE_B: &str = "11-22-33-44-55-66-77-B2";

/// A browser-like client of the console: a cookie jar, and the fetch metadata a page of
/// our own origin sends.
struct Console {
    base: String,
    http: reqwest::Client,
}

impl Console {
    fn new(app: &TestApp) -> Self {
        Console {
            base: app.base.clone(),
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap(),
        }
    }

    async fn login(&self, user: &str, pw: &str) -> (u16, Value, Option<String>) {
        let r = self
            .http
            .post(format!("{}/ops/login", self.base))
            .header("sec-fetch-site", "same-origin")
            .json(&json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let cookie = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        (st, r.json().await.unwrap_or(Value::Null), cookie)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    /// A POST as our own page sends it (`site` = its Sec-Fetch-Site, `None` for none).
    async fn post_from(&self, site: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_from(Some("same-origin"), path, body).await
    }
}

async fn add_operator(app: &TestApp, user: &str, role: &str, sites: &[&str]) {
    let (st, v) = app
        .ops_post(
            "/ops/operators",
            json!({"username": user, "password": format!("{user}-password"), "role": role, "sites": sites}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

async fn add_device_at(app: &TestApp, code: &str, location: &str) {
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": code, "name": "seat", "charge_mode": 5, "location": location}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn console_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it() {
    let app = spawn_app("").await;
    add_operator(&app, "carol", "viewer", &[]).await;
    let c = Console::new(&app);
    let (st, _) = c.get("/ops/me").await;
    assert_eq!(st, 401, "no cookie, no token");

    let (st, v, cookie) = c.login("carol", "carol-password").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["role"], "viewer");
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.starts_with("kioskd_op="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    let (st, me) = c.get("/ops/me").await;
    assert_eq!(st, 200);
    assert_eq!(me["username"], "carol");
    assert_eq!(me["via"], "session");
    let (st, _) = c.get("/ops/devices").await;
    assert_eq!(st, 200, "viewers read");

    let (st, _) = c.post("/ops/logout", json!({})).await;
    assert_eq!(st, 204);
    let (st, _) = c.get("/ops/me").await;
    assert_eq!(st, 401, "signed out");

    // Wrong passwords and unknown users get the same answer.
    let (st1, v1, _) = c.login("carol", "wrong-password!").await;
    let (st2, v2, _) = c.login("nobody", "wrong-password!").await;
    assert_eq!((st1, st2), (401, 401));
    assert_eq!(v1, v2);
}

#[tokio::test]
async fn a_cookie_alone_never_authorises_a_cross_site_state_change() {
    let app = spawn_app("").await;
    add_device_at(&app, CODE_A, "A1").await;
    add_operator(&app, "sam", "staff", &[]).await;
    let c = Console::new(&app);
    assert_eq!(c.login("sam", "sam-password").await.0, 200);
    let lock = json!({"name": "lock", "reason": "test"});
    let path = format!("/ops/devices/{CODE_A}/command");
    for site in [Some("cross-site"), Some("same-site"), None] {
        let (st, v) = c.post_from(site, &path, lock.clone()).await;
        assert_eq!(st, 403, "{site:?}: {v}");
    }
    let (_, v) = app.ops_get("/ops/devices").await;
    assert_eq!(v["data"][0]["status"], "free", "nothing changed: {v}");
    let (st, v) = c.post(&path, lock).await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = app.ops_get("/ops/devices").await;
    assert_eq!(v["data"][0]["status"], "lock", "{v}");
    // A cross-site sign-in form is refused too.
    let r = reqwest::Client::new()
        .post(app.url("/ops/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"username": "sam", "password": "sam-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn roles_and_sites_decide_who_may_act_and_the_audit_names_them() {
    let app = spawn_app("").await;
    add_device_at(&app, CODE_A, "A1").await;
    add_device_at(&app, CODE_B, "B2").await;
    add_operator(&app, "vic", "viewer", &[]).await;
    add_operator(&app, "sue", "staff", &["A1"]).await;
    add_operator(&app, "ada", "admin", &[]).await;
    let (_phone, uid) = app.phone("oRole", "17700000031", 100).await;

    let viewer = Console::new(&app);
    viewer.login("vic", "vic-password").await;
    let staff = Console::new(&app);
    staff.login("sue", "sue-password").await;
    let admin = Console::new(&app);
    admin.login("ada", "ada-password").await;

    let msg = json!({"name": "message", "text": "hello", "reason": "r"});
    let on_a = format!("/ops/devices/{CODE_A}/command");
    let on_b = format!("/ops/devices/{CODE_B}/command");
    let (st, v) = viewer.post(&on_a, msg.clone()).await;
    assert_eq!(st, 403, "viewers only read: {v}");
    assert!(v["error"].as_str().unwrap().contains("viewer"), "{v}");
    let (st, v) = staff.post(&on_a, msg.clone()).await;
    assert!(st == 200 || st == 202, "staff at their site: {st} {v}");
    assert_eq!(
        staff.post(&on_b, msg.clone()).await.0,
        403,
        "not at another site"
    );
    let adjust = format!("/ops/users/{uid}/adjust");
    let body = json!({"amount": 50, "reason": "goodwill"});
    assert_eq!(staff.post(&adjust, body.clone()).await.0, 403);
    assert_eq!(app.balance(uid).await, 100, "refusals change nothing");
    let (st, v) = admin.post(&adjust, body).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(app.balance(uid).await, 150);
    let (st, _) = staff.get("/ops/operators").await;
    assert_eq!(st, 403, "only admins list operators");

    // A site-limited operator lists only the devices of its sites.
    let (_, v) = staff.get("/ops/devices").await;
    let codes: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec![CODE_A], "{v}");

    let (_, log) = app.ops_get("/ops/audit?limit=100").await;
    let log = log["data"].as_array().unwrap().clone();
    let adj = log
        .iter()
        .find(|e| e["action"] == "POST /ops/users/{id}/adjust" && e["status"] == 200)
        .expect("the adjustment is audited");
    assert_eq!(adj["operator"], "ada");
    assert!(
        log.iter()
            .any(|e| e["operator"] == "vic" && e["status"] == 403),
        "refused actions are audited with their operator: {log:#?}"
    );
    assert!(
        log.iter().any(|e| e["operator"] == "service"),
        "the shared token is audited as service"
    );
    // A self-declared name is ignored.
    let r = app
        .http
        .post(app.url(&format!("/ops/users/{uid}/adjust")))
        .bearer_auth(OPS)
        .header("x-kioskd-operator", "mallory")
        .json(&json!({"amount": 1, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, log) = app.ops_get("/ops/audit?limit=1").await;
    assert_eq!(log["data"][0]["operator"], "service");
}

#[tokio::test]
async fn personal_tokens_act_as_their_operator_until_revoked() {
    let app = spawn_app("").await;
    add_operator(&app, "tom", "staff", &[]).await;
    let c = Console::new(&app);
    c.login("tom", "tom-password").await;
    let (st, v) = c.post("/ops/tokens", json!({"name": "laptop"})).await;
    assert_eq!(st, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let id = v["id"].as_i64().unwrap();
    assert!(token.starts_with("kop_"));
    let me = |t: String| {
        let http = app.http.clone();
        let url = app.url("/ops/me");
        async move {
            let r = http.get(url).bearer_auth(t).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (st, v) = me(token.clone()).await;
    assert_eq!(st, 200);
    assert_eq!(
        (v["username"].as_str(), v["via"].as_str()),
        (Some("tom"), Some("token"))
    );
    let (_, list) = c.get("/ops/tokens").await;
    assert_eq!(list["data"][0]["name"], "laptop");
    assert!(
        list.to_string().find("kop_").is_none(),
        "secrets are never listed"
    );
    let r = c
        .http
        .delete(format!("{}/ops/tokens/{id}", app.base))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(me(token).await.0, 401, "revoked");
    assert_eq!(me("kop_guess".into()).await.0, 401);
}

#[tokio::test]
async fn failed_sign_ins_back_off_for_a_while_never_for_good() {
    let app = spawn_app("").await;
    add_operator(&app, "pat", "viewer", &[]).await;
    let c = Console::new(&app);
    // Many wrong passwords at once: each counted once, atomically.
    let tries = (0..12).map(|_| c.login("pat", "not-the-password"));
    let answers = futures::future::join_all(tries).await;
    assert!(answers.iter().all(|(st, _, _)| *st == 401 || *st == 429));
    let (st, v, _) = c.login("pat", "pat-password").await;
    assert_eq!(st, 429, "even the right password waits: {v}");
    let wait = v["retry_after_seconds"].as_i64().unwrap();
    assert!((1..=900).contains(&wait), "{v}");
    // The lock is a time, not a state: once it has passed, the right password works.
    sqlx::query("UPDATE operators SET locked_until = 1 WHERE username = 'pat'")
        .execute(app.db.pool())
        .await
        .unwrap();
    let (st, v, _) = c.login("pat", "pat-password").await;
    assert_eq!(st, 200, "{v}");
    // Disabled operators cannot sign in, and their sessions end.
    let (st, _) = app
        .ops_post(
            "/ops/operators/pat",
            json!({"disabled": true, "reason": "left"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(c.get("/ops/me").await.0, 401);
    assert_eq!(c.login("pat", "pat-password").await.0, 401);
}

#[tokio::test]
async fn the_ops_websocket_takes_the_console_cookie() {
    use futures::StreamExt;
    let app = spawn_app("").await;
    add_operator(&app, "wes", "viewer", &[]).await;
    let c = Console::new(&app);
    let (_, _, cookie) = c.login("wes", "wes-password").await;
    let cookie = cookie.unwrap();
    let value = cookie.split(';').next().unwrap().to_string();
    let ws_url = app.base.replace("http://", "ws://") + "/ws/ops";
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        ws_url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("cookie", value.parse().unwrap());
    req.headers_mut()
        .insert("origin", app.base.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("a frame")
        .expect("open")
        .unwrap();
    assert!(first.to_string().contains("snapshot"), "{first}");
    // Without the cookie: refused.
    let r = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    assert!(r.is_err(), "no credentials, no feed");
}
