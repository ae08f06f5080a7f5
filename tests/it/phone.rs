//! The phone's identity and captcha rules (SPEC §7): codes are single use, expire, burn
//! after too many wrong guesses and are rate limited; a mobile binds to one WeChat only.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use kioskd::sms::SmsSender;
use serde_json::json;

#[derive(Default)]
struct Captured(Mutex<Vec<(String, String)>>);

#[async_trait]
impl SmsSender for Captured {
    async fn send_code(&self, mobile: &str, code: &str) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((mobile.to_string(), code.to_string()));
        Ok(())
    }
}

impl Captured {
    fn last(&self, mobile: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(m, _)| m == mobile)
            .map(|(_, c)| c.clone())
            .expect("a code was sent")
    }
}

/// No debug code: only real codes count. Resends allowed after 1 s, codes live 2 s.
const REAL_CODES: &str = "[sms]\ndebug_code = \"\"\nresend_seconds = 1\nttl_seconds = 2\n";

async fn app_with_sms(extra: &str) -> (TestApp, Arc<Captured>) {
    let sms = Arc::new(Captured::default());
    let (tdb, url) = TestDb::new().await;
    (spawn_with(tdb, url, extra, sms.clone()).await, sms)
}

#[tokio::test]
async fn a_code_binds_the_mobile_once_and_cannot_be_reused() {
    let (app, sms) = app_with_sms(REAL_CODES).await;
    let p = Phone::new(&app.base);
    p.get("/dev/login?openid=oCode").await;
    assert_eq!(
        p.get("/wechat/check").await["result"],
        0,
        "signed in, not registered"
    );
    assert_eq!(
        p.post("/wechat/captcha", json!({"mobile":"17700000001"}))
            .await["result"],
        "success"
    );
    let code = sms.last("17700000001");
    assert_eq!(code.len(), 6);
    let v = p
        .post(
            "/wechat/login",
            json!({"mobile":"17700000001","code": code}),
        )
        .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["mobile"], "17700000001");
    assert_eq!(
        p.get("/wechat/check").await,
        json!({"success":true,"result":"success","error":null})
    );
    // The same code again, from another phone: used.
    let q = Phone::new(&app.base);
    q.get("/dev/login?openid=oOther").await;
    let v = q
        .post(
            "/wechat/login",
            json!({"mobile":"17700000001","code": code}),
        )
        .await;
    assert_eq!(v["success"], false);
    // A fresh code for a mobile bound to another WeChat is refused too (past the 1 s
    // resend gap on the app's clock).
    app.advance(Duration::from_millis(1100));
    assert_eq!(
        q.post("/wechat/captcha", json!({"mobile":"17700000001"}))
            .await["result"],
        "success",
        "a send once the resend gap has passed"
    );
    let v = q
        .post(
            "/wechat/login",
            json!({"mobile":"17700000001","code": sms.last("17700000001")}),
        )
        .await;
    assert_eq!(v["result"], -13, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn wrong_guesses_burn_the_code_and_codes_expire() {
    let (app, sms) = app_with_sms(REAL_CODES).await;
    let p = Phone::new(&app.base);
    p.get("/dev/login?openid=oGuess").await;
    p.post("/wechat/captcha", json!({"mobile":"17700000002"}))
        .await;
    let code = sms.last("17700000002");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let v = p
            .post(
                "/wechat/login",
                json!({"mobile":"17700000002","code": wrong}),
            )
            .await;
        assert_eq!(v["result"], -11);
    }
    let v = p
        .post(
            "/wechat/login",
            json!({"mobile":"17700000002","code": code}),
        )
        .await;
    assert_eq!(v["result"], -11, "burned after five wrong guesses");
    // A new code (past the resend gap) that is left to expire (past its 2 s lifetime),
    // both on the app's clock.
    app.advance(Duration::from_millis(1100));
    assert_eq!(
        p.post("/wechat/captcha", json!({"mobile":"17700000002"}))
            .await["result"],
        "success",
        "a send once the resend gap has passed"
    );
    let code = sms.last("17700000002");
    app.advance(Duration::from_millis(2100));
    let v = p
        .post(
            "/wechat/login",
            json!({"mobile":"17700000002","code": code}),
        )
        .await;
    assert_eq!(v["result"], -11, "expired");
    assert_eq!(p.get("/wechat/check").await["result"], 0);
    app.stop().await;
}

#[tokio::test]
async fn sends_are_rate_limited_per_mobile_and_per_day() {
    let (app, _sms) =
        app_with_sms("[sms]\ndebug_code = \"\"\nresend_seconds = 60\ndaily_per_mobile = 2\n").await;
    let p = Phone::new(&app.base);
    assert_eq!(
        p.post("/wechat/captcha", json!({"mobile":"17700000003"}))
            .await["result"],
        "success"
    );
    assert_eq!(
        p.post("/wechat/captcha", json!({"mobile":"17700000003"}))
            .await["result"],
        -12
    );
    let (app, _sms) = {
        app.stop().await;
        app_with_sms("[sms]\ndebug_code = \"\"\nresend_seconds = 0\ndaily_per_mobile = 2\n").await
    };
    let p = Phone::new(&app.base);
    assert_eq!(
        p.post("/wechat/captcha", json!({"mobile":"17700000004"}))
            .await["result"],
        "success"
    );
    assert_eq!(
        p.post("/wechat/captcha", json!({"mobile":"17700000004"}))
            .await["result"],
        "success"
    );
    assert_eq!(
        p.post("/wechat/captcha", json!({"mobile":"17700000004"}))
            .await["result"],
        -12
    );
    app.stop().await;
}

#[tokio::test]
async fn dev_login_exists_only_in_dev_mode_and_cookies_are_signed() {
    let app = spawn_app("").await;
    // A forged cookie (unsigned openid) is nobody.
    let r = app
        .http
        .get(app.url("/wechat/user"))
        .header("cookie", "kioskd_sid=oForged")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["result"], -1);
    let r = app
        .http
        .get(app.url("/dev/login?openid=bad%20id"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
    // Outside dev mode (open189, the default) the route does not exist.
    let app = spawn_app("[identity]\nmode = \"open189\"\n[sms]\ndebug_code = \"\"\n").await;
    let r = app
        .http
        .get(app.url("/dev/login?openid=oZed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}
