//! No secret, SMS code, token or password reaches a log line: a whole flow runs with
//! every log line captured (at debug level for kioskd), then the log is searched for each
//! secret the flow used.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use kioskd::sms::SmsSender;
use serde_json::json;

/// Every log line of the process.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An SMS gateway that remembers the codes it was given.
#[derive(Default)]
struct Captured(Mutex<Vec<String>>);

#[async_trait]
impl SmsSender for Captured {
    async fn send_code(&self, _mobile: &str, code: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(code.to_string());
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_code_token_or_password_reaches_the_log() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        // The test's own HTTP clients (reqwest, its cookie store) are not kioskd: they may
        // log what they hold.
        .with_env_filter(
            "debug,kameo=warn,sqlx=warn,hyper=warn,reqwest=warn,h2=warn,cookie_store=warn",
        )
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let sms = Arc::new(Captured::default());
    let (tdb, url) = TestDb::new().await;
    let app = spawn_with(tdb, url, "[sms]\ndebug_code = \"\"\n", sms.clone()).await;
    let mobile = "17712345678";

    // A phone signs in, binds its mobile with a real code, recharges, plays.
    app.add_device("11-22-33-44-55-66-77-10", 5).await;
    let phone = Phone::new(&app.base);
    phone.get("/dev/login?openid=oLog&nickname=Lo").await;
    let v = phone
        .post("/wechat/captcha", json!({"mobile": mobile}))
        .await;
    assert_eq!(v["success"], true, "{v}");
    let code = sms.0.lock().unwrap().last().cloned().expect("a code");
    let v = phone
        .post("/wechat/login", json!({"mobile": mobile, "code": code}))
        .await;
    assert_eq!(v["success"], true, "{v}");
    phone.get("/wechat/recharge/500").await;
    app.check("11-22-33-44-55-66-77-10").await;
    phone.scan("11-22-33-44-55-66-77-10").await;
    let session_token = app.token("11-22-33-44-55-66-77-10").await.expect("token");

    // An operator signs in, makes a personal token and uses it; strangers guess tokens.
    let password = "operator-password-7319";
    let (st, v) = app
        .ops_post(
            "/ops/operators",
            json!({"username": "olga", "password": password, "role": "admin"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = http
        .post(app.url("/ops/login"))
        .json(&json!({"username": "olga", "password": password}))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("kioskd_op=")
        .to_string();
    let r = http
        .post(app.url("/ops/tokens"))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"name": "cli"}))
        .send()
        .await
        .unwrap();
    let personal: serde_json::Value = r.json().await.unwrap();
    let personal = personal["token"].as_str().unwrap().to_string();
    let r = app
        .http
        .get(app.url("/ops/sessions"))
        .bearer_auth(&personal)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for guess in ["kop_wrong", "not-the-ops-token"] {
        app.http
            .get(app.url("/ops/devices"))
            .bearer_auth(guess)
            .send()
            .await
            .unwrap();
    }
    // A wrong password for a real operator, and a maintainer account with a password.
    http.post(app.url("/ops/login"))
        .json(&json!({"username": "olga", "password": "wrong-password-5521"}))
        .send()
        .await
        .unwrap();
    app.ops_post(
        "/ops/maintainers",
        json!({"username": "mtn", "password": "maint-pass-8842"}),
    )
    .await;
    phone.get("/windows/offline").await;

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("operator signed in"),
        "the capture works: {text}"
    );
    for (what, secret) in [
        ("sms code", format!("\"{code}\"")),
        ("sms code", format!("code={code}")),
        ("mobile", mobile.to_string()),
        ("ops token", OPS.to_string()),
        ("cookie secret", "test-cookie-secret".to_string()),
        ("operator password", password.to_string()),
        ("wrong password", "wrong-password-5521".to_string()),
        ("maintainer password", "maint-pass-8842".to_string()),
        ("personal token", personal.clone()),
        ("console session", cookie.clone()),
        ("session token", session_token.clone()),
    ] {
        assert!(
            !text.contains(&secret),
            "the {what} is in the log:\n{}",
            text.lines()
                .filter(|l| l.contains(&secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
