//! Issue 6 end to end against local stand-ins (tests/it/common/standin.rs): the token
//! keeper (one fetch for many requests, stored across restarts, refreshed before expiry
//! and after rejection), the open189 sign-in dance (expired code, forged state), the app
//! quick entry, the JS-SDK signature, WeChat Pay recharges (order, pay parameters,
//! notifications replayed, forged, tampered, stale, wrong amount; reconciliation) and
//! the outbox (retries, no duplicates, failures visible).

use crate::common;

use std::time::Duration;

use common::standin::{self, Reply, Standin};
use common::{Phone, TestApp, spawn_app, spawn_on, wait_until};
use kioskd::upstream::crypto;
use serde_json::{Value, json};

async fn app_with(si: &Standin, wechatpay: bool, extra: &str) -> TestApp {
    common::spawn_layers(&[&si.toml(wechatpay), extra]).await
}

/// Follows one redirect: a Location on the stand-in is requested there; one on the
/// app's public address (the return URL the platform appends `?code=` to) is requested
/// on the app under test.
async fn follow(p: &Phone, app: &TestApp, r: reqwest::Response) -> reqwest::Response {
    assert!(
        r.status().is_redirection(),
        "expected a redirect, got {}",
        r.status()
    );
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = loc.split('#').next().unwrap().to_string();
    if let Some(rest) = loc.strip_prefix("http://127.0.0.1:8080") {
        p.get_raw(&format!("{}{rest}", app.base)).await
    } else if loc.starts_with('/') {
        p.get_raw(&format!("{}{loc}", app.base)).await
    } else {
        p.get_raw(&loc).await
    }
}

/// The whole dance from a phone page to the page again; returns the final response.
async fn sign_in(p: &Phone, app: &TestApp, page: &str) -> reqwest::Response {
    let mut r = p.get_raw(&format!("{}{page}", app.base)).await;
    for _ in 0..8 {
        if !r.status().is_redirection() {
            return r;
        }
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        if loc == page {
            return p.get_raw(&format!("{}{page}", app.base)).await;
        }
        r = follow(p, app, r).await;
    }
    panic!("too many redirects");
}

#[tokio::test]
async fn concurrent_requests_share_one_token_fetch_which_survives_a_restart() {
    let si = Standin::start().await;
    si.w().token_delay_ms = 300;
    let app = app_with(&si, false, "").await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let base = app.base.clone();
        tasks.push(tokio::spawn(async move {
            let p = Phone::new(&base);
            p.get_raw("/wechat/user").await.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 303, "every phone is sent to sign in");
    }
    assert_eq!(
        si.w().token_fetches,
        1,
        "one fetch for 40 concurrent requests"
    );
    assert_eq!(si.calls("base_url"), 40);
    // A restart (same database) reuses the stored token.
    let url = app.db_url.clone();
    let tdb = app.stop().await;
    let app = spawn_on(tdb, url, &si.toml(false)).await;
    let p = Phone::new(&app.base);
    assert_eq!(p.get_raw("/wechat/user").await.status(), 303);
    assert_eq!(
        si.w().token_fetches,
        1,
        "the stored token is reused after a restart"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_runs_out_and_once_after_rejection() {
    let si = Standin::start().await;
    let app = app_with(
        &si,
        false,
        "[open189]\ntoken_ttl_seconds = 2\ntoken_refresh_margin_seconds = 1\n",
    )
    .await;
    let p = Phone::new(&app.base);
    assert_eq!(p.get_raw("/wechat/user").await.status(), 303);
    assert_eq!(p.get_raw("/wechat/user").await.status(), 303);
    assert_eq!(si.w().token_fetches, 1);
    // Past ttl - margin (1 s) on the app's clock: refreshed before it runs out.
    app.advance(Duration::from_millis(1100));
    assert_eq!(p.get_raw("/wechat/user").await.status(), 303);
    assert_eq!(si.w().token_fetches, 2);
    app.stop().await;

    // Rejected ("access_token校验异常"): refreshed once for many requests, each retried.
    let app = app_with(&si, false, "").await;
    let p = Phone::new(&app.base);
    assert_eq!(p.get_raw("/wechat/user").await.status(), 303);
    let before = si.w().token_fetches;
    si.revoke_tokens();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let base = app.base.clone();
        tasks.push(tokio::spawn(async move {
            Phone::new(&base)
                .get_raw("/wechat/user")
                .await
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 303);
    }
    assert_eq!(
        si.w().token_fetches,
        before + 1,
        "one refresh for 20 rejected requests"
    );
    app.stop().await;
}

#[tokio::test]
async fn sign_in_dance_sets_an_expiring_signed_cookie_and_returns_to_the_page() {
    let si = Standin::start().await;
    si.w().next_openid = "oKXUCj1Fp4fNnb99liSkslcM_D-X".into();
    let app = app_with(&si, false, "").await;
    let p = Phone::new(&app.base);
    // The first hop is the platform's authorize URL, with our callback as state.
    let r = p.get_raw("/windows/login/11-22-33-44-55-66?x=1").await;
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("{}/wx/authorize?", si.base)),
        "{loc}"
    );
    assert!(
        loc.contains("state=http%3A%2F%2F127.0.0.1%3A8080%2Fwechat%2Foauth%2Fcb%2F"),
        "{loc}"
    );
    // The platform sends the phone back with a code; the app sets the cookie and
    // returns to the page.
    let r = follow(&p, &app, r).await;
    assert_eq!(r.status(), 302);
    let r = follow(&p, &app, r).await;
    assert_eq!(r.status(), 303);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let sid = cookies
        .iter()
        .find(|c| c.starts_with("kioskd_sid="))
        .unwrap();
    assert!(
        sid.contains("HttpOnly") && sid.contains("Max-Age=") && sid.contains("SameSite=Lax"),
        "{sid}"
    );
    assert_eq!(
        r.headers()["location"],
        "/windows/login/11-22-33-44-55-66?x=1"
    );
    // Signed in: the profile came from the user-info call.
    let v = p.get("/wechat/user").await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["nick_name"], "xx");
    assert_eq!(
        v["result"]["head_img_url"],
        "http://wx.qlogo.cn/mmopen/STan0NGQ/0"
    );
    let u = app
        .db
        .user_by_openid("oKXUCj1Fp4fNnb99liSkslcM_D-X")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.nickname, "xx");
    // The code was used once; replaying the callback is refused (the pre-auth cookie
    // is gone).
    assert_eq!(si.w().codes.len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_code_restarts_the_sign_in() {
    let si = Standin::start().await;
    si.w().next_code_expired = 1;
    let app = app_with(&si, false, "").await;
    let p = Phone::new(&app.base);
    let r = p.get_raw("/wechat/user").await;
    let r = follow(&p, &app, r).await; // authorize -> our callback with an expired code
    let r = follow(&p, &app, r).await; // 40005: sent through getBaseUrl again
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&format!("{}/wx/authorize?", si.base))
    );
    let r = follow(&p, &app, r).await;
    let r = follow(&p, &app, r).await;
    assert_eq!(r.headers()["location"], "/wechat/user");
    assert_eq!(p.get("/wechat/user").await["success"], true);
    assert_eq!(si.calls("openid"), 2);
    assert_eq!(si.calls("base_url"), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_forged_state_or_return_path_signs_no_one_in() {
    let si = Standin::start().await;
    let app = app_with(&si, false, "").await;
    // A callback nobody started (no pre-auth cookie).
    let p = Phone::new(&app.base);
    let r = p
        .get_raw("/wechat/oauth/cb/0123456789abcdef?code=NTc1")
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["result"], -1);
    // A started sign-in, but a callback with another nonce (state forged).
    let r = p.get_raw("/wechat/user").await;
    assert_eq!(r.status(), 303);
    let r = p
        .get_raw("/wechat/oauth/cb/ffffffffffffffffffffffffffffffff?code=NTc1")
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(si.calls("openid"), 0, "no code was exchanged");
    assert!(
        app.db
            .user_by_openid("oPlatformUser1")
            .await
            .unwrap()
            .is_none()
    );
    // A page outside the allow-list returns to the user page instead.
    let q = Phone::new(&app.base);
    let r = sign_in(&q, &app, "/wechat/user").await;
    assert_eq!(r.status(), 200);
    let r = q.get_raw("/wechat/check").await;
    assert_eq!(r.status(), 200, "signed in: no redirect");
    app.stop().await;
    // Only allow-listed pages are returned to.
    let app = app_with(&si, false, "[identity]\nreturn_paths = [\"/h5/\"]\n").await;
    let p2 = Phone::new(&app.base);
    let r = p2.get_raw("/wechat/check?next=x").await;
    let r = follow(&p2, &app, r).await;
    let r = follow(&p2, &app, r).await;
    assert_eq!(r.headers()["location"], "/wechat/user");
    app.stop().await;
}

#[tokio::test]
async fn open189_without_credentials_starts_and_answers_a_clear_error() {
    let app = spawn_app("[identity]\nmode = \"open189\"\n[sms]\ndebug_code = \"\"\n").await;
    let r = Phone::new(&app.base).get_raw("/wechat/user").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["result"], -16);
    assert!(
        v["error"].as_str().unwrap().contains("open189.appid"),
        "{v}"
    );
    // Kiosk endpoints are unaffected.
    let v = app.check("11-22-33-44-55-66").await;
    assert_eq!(v["success"], true);
    app.stop().await;
}

#[tokio::test]
async fn app_quick_entry_binds_or_signs_in_and_reports_every_seed_failure() {
    let si = Standin::start().await;
    si.w().tickets.insert("T-OK".into(), "17717463317".into());
    let app = app_with(&si, false, "[open189]\nreport_bindings = true\n").await;
    // Signed in: the ticket's mobile is bound (registration without SMS).
    let p = Phone::new(&app.base);
    assert_eq!(sign_in(&p, &app, "/wechat/user").await.status(), 200);
    let v = p.get("/wechat/app/login?ticket=T-OK").await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["mobile"], "17717463317");
    assert_eq!(p.get("/wechat/check").await["result"], "success");
    // The binding goes to 爱流量 weekBind/create through the outbox.
    wait_until(
        "the binding reaches weekBind/create",
        Duration::from_secs(5),
        async || !si.w().week_binds.is_empty(),
    )
    .await;
    let wb = si.w().week_binds.clone();
    assert_eq!(wb.len(), 1);
    assert_eq!(wb[0]["deviceno"], "17717463317");
    assert_eq!(wb[0]["openid"], "oPlatformUser1");
    assert_eq!(wb[0]["from"], "love flow");
    assert_eq!(wb[0]["channel"], "1");
    // Without a session: signs in the user who owns that mobile.
    let q = Phone::new(&app.base);
    let v = q.get("/wechat/app/login?ticket=T-OK").await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(
        q.get("/wechat/user").await["result"]["mobile"],
        "17717463317"
    );
    // Failure replies of seed 004, each a clear envelope error.
    let r = Phone::new(&app.base).get_raw("/wechat/app/login").await;
    assert_eq!(r.status(), 400);
    let v = Phone::new(&app.base)
        .get("/wechat/app/login?ticket=T-UNKNOWN")
        .await;
    assert_eq!(v["success"], false);
    assert_eq!(v["result"], -16);
    assert!(
        v["error"].as_str().unwrap().contains("手机号码获取异常"),
        "{v}"
    );
    si.script(
        "ticket",
        vec![Reply::Json(
            json!({"errcode": 1, "data": {"mobile": "ticket必须给出"}}),
        )],
    );
    let v = Phone::new(&app.base)
        .get("/wechat/app/login?ticket=T-OK")
        .await;
    assert!(
        v["error"].as_str().unwrap().contains("ticket必须给出"),
        "{v}"
    );
    si.script(
        "ticket",
        vec![Reply::Json(
            json!({"status": 40005, "errMsg": "接口异常，请稍后再试"}),
        )],
    );
    let r = Phone::new(&app.base)
        .get_raw("/wechat/app/login?ticket=T-OK")
        .await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("接口异常"), "{v}");
    // A rejected token is refreshed and the call retried.
    let before = si.w().token_fetches;
    si.script(
        "ticket",
        vec![Reply::Json(
            json!({"status": 0, "errMsg": "access_token校验异常"}),
        )],
    );
    let v = Phone::new(&app.base)
        .get("/wechat/app/login?ticket=T-OK")
        .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(si.w().token_fetches, before + 1);
    // Another mobile on the bound user is refused.
    si.w().tickets.insert("T-2".into(), "18964524000".into());
    let v = p.get("/wechat/app/login?ticket=T-2").await;
    assert_eq!(v["result"], -13, "{v}");
    // An unregistered mobile without a session: a clear error, nobody signed in.
    let v = Phone::new(&app.base)
        .get("/wechat/app/login?ticket=T-2")
        .await;
    assert_eq!(v["success"], false);
    assert_eq!(v["result"], -1);
    app.stop().await;
}

#[tokio::test]
async fn jsapi_signature_signs_our_pages_with_the_shared_ticket() {
    let si = Standin::start().await;
    let app = app_with(&si, false, "").await;
    let p = Phone::new(&app.base);
    let url = "http://127.0.0.1:8080/h5/index.html?device=K0001&from=scan#/recharge";
    let v = p
        .post("/wechat/jsapi/signature", json!({ "url": url }))
        .await;
    assert_eq!(v["success"], true, "{v}");
    let r = &v["result"];
    assert_eq!(r["appId"], standin::PAY_APPID);
    let expect = crypto::jsapi_signature(
        "TICKET1",
        r["nonceStr"].as_str().unwrap(),
        &r["timestamp"].as_i64().unwrap().to_string(),
        "http://127.0.0.1:8080/h5/index.html?device=K0001&from=scan",
    );
    assert_eq!(r["signature"], expect.as_str());
    for _ in 0..5 {
        p.post("/wechat/jsapi/signature", json!({ "url": url }))
            .await;
    }
    assert_eq!(si.w().mp_token_fetches, 1);
    assert_eq!(si.w().mp_ticket_fetches, 1, "the ticket is cached");
    let r = p
        .http
        .post(app.url("/wechat/jsapi/signature"))
        .json(&json!({"url": "https://evil.example.com/h5/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

/// A registered phone signed in through the whole dance (with the silent pass for the
/// payment openid), its user id.
async fn paying_phone(si: &Standin, app: &TestApp, n: u32) -> (Phone, i64) {
    si.w().next_openid = format!("oPlatform{n}");
    si.w().next_pay_openid = format!("oPay{n}");
    let mobile = format!("1771746{:04}", n);
    si.w().tickets.insert(format!("T{n}"), mobile.clone());
    let p = Phone::new(&app.base);
    assert_eq!(sign_in(&p, app, "/wechat/user").await.status(), 200);
    let v = p.get(&format!("/wechat/app/login?ticket=T{n}")).await;
    assert_eq!(v["success"], true, "{v}");
    let id = v["result"]["id"].as_i64().unwrap();
    assert_eq!(
        app.db.pay_openid(id).await.unwrap().as_deref(),
        Some(format!("oPay{n}").as_str())
    );
    (p, id)
}

async fn recharge(p: &Phone, fen: i64) -> Value {
    let v = p.get(&format!("/wechat/recharge/{fen}")).await;
    assert_eq!(v["success"], true, "{v}");
    v["result"].clone()
}

async fn notify(app: &TestApp, n: &(Vec<(&'static str, String)>, String)) -> (u16, String) {
    let mut r = app.http.post(app.url("/wechat/notify")).body(n.1.clone());
    for (k, v) in &n.0 {
        r = r.header(*k, v);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_recharge_is_credited_once_by_a_notification_replayed_1000_times_concurrently() {
    let si = Standin::start().await;
    let app = app_with(&si, true, "").await;
    let (p, uid) = paying_phone(&si, &app, 1).await;
    let pay = recharge(&p, 1000).await;
    // The H5 page's parameters, signed with the merchant key.
    let no = pay["out_trade_no"].as_str().unwrap().to_string();
    assert!(no.starts_with('R') && no.len() <= 32);
    assert_eq!(pay["appId"], standin::PAY_APPID);
    assert_eq!(pay["signType"], "RSA");
    assert_eq!(pay["package"], format!("prepay_id=wx_prepay_{no}"));
    let msg = crypto::pay_sign_message(
        pay["appId"].as_str().unwrap(),
        pay["timeStamp"].as_str().unwrap(),
        pay["nonceStr"].as_str().unwrap(),
        pay["package"].as_str().unwrap(),
    );
    let key = crypto::MerchantKey::from_pem(standin::KEY_PEM).unwrap();
    assert!(
        key.public()
            .verify(msg.as_bytes(), pay["paySign"].as_str().unwrap())
    );
    // The order went to WeChat Pay with the payment openid, in fen.
    let order = si.w().orders[&no].clone();
    assert_eq!(order["payer"]["openid"], "oPay1");
    assert_eq!(order["amount"]["total"], 1000);
    assert_eq!(order["notify_url"], "http://127.0.0.1:8080/wechat/notify");
    // Nothing is credited before a verified notification.
    assert_eq!(app.balance(uid).await, 0);
    let n = si.notification(
        &no,
        "4200002345202501151234567890",
        1000,
        standin::now_s(),
        |_| {},
    );
    let mut tasks = Vec::new();
    for i in 0..1050 {
        let http = app.http.clone();
        let url = app.url("/wechat/notify");
        // 1,000 exact replays and 50 re-signed copies (fresh nonce and signature).
        let n = if i < 1000 {
            n.clone()
        } else {
            si.notification(
                &no,
                "4200002345202501151234567890",
                1000,
                standin::now_s(),
                |_| {},
            )
        };
        tasks.push(tokio::spawn(async move {
            let mut r = http.post(url).body(n.1);
            for (k, v) in &n.0 {
                r = r.header(*k, v);
            }
            r.send().await.unwrap().status().as_u16()
        }));
        if tasks.len() >= 64 {
            for t in tasks.drain(..) {
                assert_eq!(t.await.unwrap(), 204);
            }
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    assert_eq!(app.balance(uid).await, 1000, "credited exactly once");
    let ledger = app.db.ledger(uid).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].id, "recharge:4200002345202501151234567890");
    app.assert_invariants().await;
    let v = p
        .post("/wechat/recharge/list", json!({"page": 1, "size": 10}))
        .await;
    assert_eq!(
        v["result"]["data"][0]["transaction_id"],
        "4200002345202501151234567890"
    );
    app.stop().await;
}

#[tokio::test]
async fn forged_tampered_stale_and_mismatched_notifications_credit_nothing() {
    let si = Standin::start().await;
    let app = app_with(&si, true, "").await;
    let (p, uid) = paying_phone(&si, &app, 2).await;
    let no = recharge(&p, 500).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_string();
    let now = standin::now_s();
    let good = |tx: &str| si.notification(&no, tx, 500, now, |_| {});
    // Tampered body.
    let mut n = good("TX1");
    n.1 =
        n.1.replacen("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESS ", 1);
    let (st, body) = notify(&app, &n).await;
    assert_eq!(st, 401);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "FAIL");
    // SIGNTEST probe.
    let mut n = good("TX1");
    n.0[2].1 = "WECHATPAY/SIGNTEST/abc".into();
    assert_eq!(notify(&app, &n).await.0, 401);
    // Stale and future timestamps.
    assert_eq!(
        notify(&app, &si.notification(&no, "TX1", 500, now - 300, |_| {}))
            .await
            .0,
        401
    );
    assert_eq!(
        notify(&app, &si.notification(&no, "TX1", 500, now + 400, |_| {}))
            .await
            .0,
        401
    );
    // Unknown serial.
    let mut n = good("TX1");
    n.0[3].1 = "PUB_KEY_ID_OTHER".into();
    assert_eq!(notify(&app, &n).await.0, 401);
    // Missing header.
    let mut n = good("TX1");
    n.0.remove(1);
    assert_eq!(notify(&app, &n).await.0, 401);
    // Verified but not matching our order: wrong amount, mchid, appid, state, order.
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<Edit> = vec![
        Box::new(|t| t["amount"]["total"] = json!(501)),
        Box::new(|t| t["mchid"] = json!("1900000000")),
        Box::new(|t| t["appid"] = json!("wx1b0d10b65d395395")),
        Box::new(|t| t["trade_state"] = json!("NOTPAY")),
        Box::new(|t| t["amount"]["currency"] = json!("USD")),
        Box::new(|t| t["out_trade_no"] = json!("RUNKNOWN0000")),
    ];
    for edit in cases {
        let n = si.notification(&no, "TX1", 500, now, |t| edit(t));
        let (st, body) = notify(&app, &n).await;
        assert_eq!(st, 400, "{body}");
        assert!(body.contains("FAIL"));
    }
    // Garbage of every kind.
    let r = app
        .http
        .post(app.url("/wechat/notify"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.balance(uid).await, 0, "nothing credited");
    assert!(app.db.ledger(uid).await.unwrap().is_empty());
    // The real one still works afterwards.
    assert_eq!(notify(&app, &good("TX1")).await.0, 204);
    assert_eq!(app.balance(uid).await, 500);
    // A second, different transaction for the same order credits nothing.
    assert_eq!(notify(&app, &good("TX2")).await.0, 400);
    assert_eq!(app.balance(uid).await, 500);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn unnotified_orders_are_settled_by_query_and_expired_ones_closed() {
    let si = Standin::start().await;
    let app = app_with(&si, true, "[wechatpay]\norder_expire_seconds = 1\n").await;
    let (p, uid) = paying_phone(&si, &app, 3).await;
    let paid = recharge(&p, 300).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_string();
    let unpaid = recharge(&p, 700).await["out_trade_no"]
        .as_str()
        .unwrap()
        .to_string();
    si.pay(&paid, "4200009999");
    let n = kioskd::payments::reconcile_once(&app.state).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        app.balance(uid).await,
        300,
        "the paid order was credited by query"
    );
    // Again: the duplicate changes nothing.
    kioskd::payments::reconcile_once(&app.state).await.unwrap();
    assert_eq!(app.balance(uid).await, 300);
    // Past order_expire_seconds (on the app's clock) the unpaid one is closed at WeChat
    // Pay and given up.
    app.advance(Duration::from_millis(1100));
    kioskd::payments::reconcile_once(&app.state).await.unwrap();
    assert!(si.w().closed.contains(&unpaid));
    let o = app.db.recharge_order(&unpaid).await.unwrap().unwrap();
    assert!(o.closed_at.is_some());
    assert_eq!(o.status, "pending");
    assert_eq!(
        kioskd::payments::reconcile_once(&app.state).await.unwrap(),
        0
    );
    assert_eq!(app.balance(uid).await, 300);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn a_phone_without_a_payment_openid_and_a_failed_order_get_clear_errors() {
    let si = Standin::start().await;
    let app = app_with(&si, true, "").await;
    let (p, uid) = paying_phone(&si, &app, 4).await;
    si.w().order_script.push_back((
        reqwest::StatusCode::BAD_REQUEST,
        json!({"code": "PARAM_ERROR", "message": "参数错误"}),
    ));
    let r = p.get_raw("/wechat/recharge/100").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], -16);
    sqlx::query("UPDATE users SET pay_openid = NULL WHERE id = $1")
        .bind(uid)
        .execute(app.db.pool())
        .await
        .unwrap();
    let v = p.get("/wechat/recharge/100").await;
    assert_eq!(v["result"], -17, "{v}");
    let v = p.get("/wechat/recharge/0").await;
    assert_eq!(v["result"], -14);
    assert_eq!(app.balance(uid).await, 0);
    app.stop().await;
}

async fn outbox(app: &TestApp, status: &str) -> Value {
    app.ops_get(&format!("/ops/outbox?status={status}")).await.1
}

async fn wait_status(app: &TestApp, id: i64, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let all = app.ops_get("/ops/outbox?status=").await.1;
        let sent = outbox(app, "sent").await;
        let row = all["data"]
            .as_array()
            .unwrap()
            .iter()
            .chain(sent["data"].as_array().unwrap().iter())
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or(Value::Null);
        if row["status"] == want || tokio::time::Instant::now() > deadline {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn prize_notices_are_retried_through_failures_and_never_sent_twice() {
    let si = Standin::start().await;
    let app = app_with(&si, false, "").await;
    // A transport failure, then the platform's 40005, then acceptance.
    si.script(
        "prize",
        vec![
            Reply::Http500,
            Reply::Json(json!({"status": 40005, "errMsg": "推送接口异常"})),
        ],
    );
    let notice = json!({"openid": "oKXUCj1Fp4fNnb99liSkslcM_D-X", "first": "亲爱的老司机，您的游戏积分已经排在全国前十名。",
        "activity": "老司机大比拼", "prize": "限量精美玩偶一个", "remark": "获奖者：17717500243",
        "url": "http://m.sh.189.cn/prize", "idempotency_key": "race-42"});
    let (st, v) = app.ops_post("/ops/notices/prize", notice.clone()).await;
    assert_eq!(st, 202, "{v}");
    let id = v["id"].as_i64().unwrap();
    let row = wait_status(&app, id, "sent").await;
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(row["attempts"], 3);
    assert_eq!(row["result"], "发送成功");
    assert_eq!(si.calls("prize"), 3);
    let sent = si.w().notices.clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["activity"], "老司机大比拼");
    assert_eq!(sent[0]["openid"], "oKXUCj1Fp4fNnb99liSkslcM_D-X");
    assert_eq!(si.w().token_fetches, 2, "40005 refreshed the token");
    // The same notice again (same idempotency key) is the same row: nothing new sent.
    let (st, v) = app.ops_post("/ops/notices/prize", notice).await;
    assert_eq!(st, 200);
    assert_eq!(v["duplicate"], true);
    // Nothing new is sent: the outbox, woken, finds nothing due (its depth is 0) and
    // the stand-in still has one notice.
    wait_until("the outbox is empty", Duration::from_secs(10), async || {
        app.db.outbox_depth().await.unwrap() == 0
    })
    .await;
    kioskd::upstream::outbox::drain(&app.state).await.unwrap();
    assert_eq!(si.w().notices.len(), 1);
    assert_eq!(si.calls("prize"), 3);
    // A definite refusal ("发送失败") is a visible failure, not retried.
    si.script(
        "prize",
        vec![Reply::Json(json!({"status": 0, "result": "发送失败"}))],
    );
    let (_, v) = app
        .ops_post(
            "/ops/notices/prize",
            json!({"openid": "oOther", "first": "f", "activity": "a", "prize": "p"}),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    let row = wait_status(&app, id, "failed").await;
    assert_eq!(row["status"], "failed", "{row}");
    assert!(row["last_error"].as_str().unwrap().contains("发送失败"));
    let v = app.ops_get("/ops/outbox").await.1;
    assert_eq!(v["data"][0]["id"], id, "failures are listed");
    // An operator retries it once the platform works again: sent once.
    let (st, _) = app
        .ops_post(&format!("/ops/outbox/{id}/retry"), json!({}))
        .await;
    assert_eq!(st, 200);
    let row = wait_status(&app, id, "sent").await;
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(si.w().notices.len(), 2);
    let (st, _) = app
        .ops_post(&format!("/ops/outbox/{id}/retry"), json!({}))
        .await;
    assert_eq!(st, 409, "a sent row is never sent again");
    // Transport errors past max_attempts (5) fail visibly too.
    si.script("prize", vec![Reply::Http500; 10]);
    let (_, v) = app
        .ops_post(
            "/ops/notices/prize",
            json!({"openid": "oThird", "first": "f", "activity": "a", "prize": "p"}),
        )
        .await;
    let row = wait_status(&app, v["id"].as_i64().unwrap(), "failed").await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["attempts"], 5);
    // Bad input changes nothing.
    for bad in [
        json!({"openid": "", "first": "f", "activity": "a", "prize": "p"}),
        json!({"openid": "o1", "activity": "a", "prize": "p"}),
        json!({"openid": "o1", "first": "f", "activity": "a", "prize": "p", "url": "javascript:x"}),
        json!({"openid": "o1", "first": "f", "activity": "a", "prize": "p", "extra": 1}),
    ] {
        let (st, _) = app.ops_post("/ops/notices/prize", bad).await;
        assert_eq!(st, 400);
    }
    let r = app
        .http
        .post(app.url("/ops/notices/prize"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn flow_order_callbacks_go_through_the_outbox_when_enabled() {
    let si = Standin::start().await;
    let app = app_with(
        &si,
        false,
        "[open189]\nreport_flow_orders = true\npost_format = \"json\"\n",
    )
    .await;
    let (st, v) = app
        .ops_post(
            "/ops/callbacks/flow-order",
            json!({"openid": "oA", "deviceno": "17717463317", "traffic_package_name": "10元100M", "transaction_date": "2016-10-14"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let row = wait_status(&app, v["id"].as_i64().unwrap(), "sent").await;
    assert_eq!(row["result"], "FO1");
    let fo = si.w().flow_orders.clone();
    assert_eq!(fo[0]["traffic_package_name"], "10元100M");
    assert_eq!(fo[0]["from"], "love flow");
    assert!(
        si.w()
            .last_post_content_type
            .starts_with("application/json")
    );
    app.stop().await;
    let app = app_with(&si, false, "").await;
    let (st, _) = app
        .ops_post(
            "/ops/callbacks/flow-order",
            json!({"openid": "oA", "deviceno": "1", "traffic_package_name": "x"}),
        )
        .await;
    assert_eq!(st, 409, "off unless configured");
    app.stop().await;
}

#[tokio::test]
async fn sandbox_is_refused_in_production() {
    let r = kioskd::config::Config::load_with(None, "[server]\nenvironment = \"production\"\n");
    let e = r.unwrap_err().to_string();
    assert!(e.contains("sandbox"), "{e}");
}

#[tokio::test]
async fn two_nodes_on_one_database_fetch_the_token_once() {
    let si = Standin::start().await;
    si.w().token_delay_ms = 300;
    let a = app_with(&si, false, "").await;
    let shared = format!("[database]\nurl = \"{}\"\n", a.db_url);
    let b = common::spawn_layers(&[&si.toml(false), &shared]).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tasks.push(tokio::spawn(async move {
            Phone::new(&base)
                .get_raw("/wechat/user")
                .await
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 303);
    }
    assert_eq!(si.w().token_fetches, 1, "one fetch across both nodes");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn platform_failure_replies_are_clear_errors() {
    let si = Standin::start().await;
    // A wrong secret: the token call's {"data":"appid或secret错误","status":0}.
    let app = app_with(&si, false, "[open189]\nsecret = \"wrong\"\n").await;
    let r = Phone::new(&app.base).get_raw("/wechat/user").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], -16);
    assert!(
        v["error"].as_str().unwrap().contains("appid或secret错误"),
        "{v}"
    );
    app.stop().await;
    // getBaseUrl failing: a clear error, no redirect.
    let app = app_with(&si, false, "[open189]\nreport_flow_orders = true\n").await;
    si.script(
        "base_url",
        vec![Reply::Json(json!({"status": 0, "errMsg": "系统繁忙"}))],
    );
    let r = Phone::new(&app.base).get_raw("/wechat/user").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("系统繁忙"), "{v}");
    // getOpenidByCode failing otherwise than 40005 signs no one in.
    si.script(
        "openid",
        vec![Reply::Json(json!({"status": 0, "errMsg": "服务异常"}))],
    );
    let p = Phone::new(&app.base);
    let r = p.get_raw("/wechat/user").await;
    let r = follow(&p, &app, r).await;
    let r = follow(&p, &app, r).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        p.get_raw("/wechat/check").await.status(),
        303,
        "still not signed in"
    );
    // 爱流量's failure reply {"data":"错误信息","status":0,"info":0} is a visible failure.
    si.script(
        "flow_order",
        vec![Reply::Json(
            json!({"data": "错误信息", "status": 0, "info": 0}),
        )],
    );
    let (_, v) = app
        .ops_post(
            "/ops/callbacks/flow-order",
            json!({"openid": "oA", "deviceno": "17717463317", "traffic_package_name": "x"}),
        )
        .await;
    let row = wait_status(&app, v["id"].as_i64().unwrap(), "failed").await;
    assert_eq!(row["status"], "failed");
    assert!(row["last_error"].as_str().unwrap().contains("错误信息"));
    app.stop().await;
}

/// A postpaid session's order paid through WeChat Pay: `/wechat/order/pay` creates a JSAPI
/// order (`O` + the order id), nothing is paid until a verified notification, which pays
/// the order once however often it arrives.
#[tokio::test]
async fn a_postpaid_order_is_paid_once_by_a_wechat_pay_notification() {
    let si = Standin::start().await;
    let app = app_with(
        &si,
        true,
        "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 30\n",
    )
    .await;
    let code = "11-22-33-44-55-66-77-55";
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": code, "name": "VR post", "charge_mode": 132, "billing_mode": "postpaid"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (p, uid) = paying_phone(&si, &app, 7).await;
    app.check(code).await;
    assert_eq!(p.scan(code).await["result"], "success");
    // 1.5 s of play (two started units) on the app's clock.
    app.advance(Duration::from_millis(1500));
    let v = p.get("/windows/offline").await;
    assert_eq!(v["success"], true, "{v}");
    let v = p.get("/wechat/orders").await;
    let item = v["result"]["data"][0].clone();
    let order = item["orderId"].as_str().unwrap().to_string();
    let amount = item["cost_money"].as_i64().unwrap();
    assert!(amount >= 132, "{item}");
    assert_eq!(item["paid"], false);

    let pay = p.post("/wechat/order/pay", json!({"orderId": order})).await;
    assert_eq!(pay["success"], true, "{pay}");
    let no = pay["result"]["out_trade_no"].as_str().unwrap().to_string();
    assert!(no.starts_with('O') && no.len() <= 32, "{no}");
    assert_eq!(si.w().orders[&no]["amount"]["total"], amount);
    assert_eq!(si.w().orders[&no]["payer"]["openid"], "oPay7");
    let v = p.get("/wechat/orders").await;
    assert_eq!(
        v["result"]["data"][0]["paid"], false,
        "not paid before the notification"
    );

    // A wrong amount pays nothing; the right one pays once, however often.
    let wrong = si.notification(
        &no,
        "4200009999000000000000000001",
        amount + 1,
        standin::now_s(),
        |_| {},
    );
    assert_eq!(notify(&app, &wrong).await.0, 400, "a mismatch is refused");
    let v = p.get("/wechat/orders").await;
    assert_eq!(v["result"]["data"][0]["paid"], false);
    let n = si.notification(
        &no,
        "4200009999000000000000000002",
        amount,
        standin::now_s(),
        |_| {},
    );
    for _ in 0..3 {
        assert_eq!(notify(&app, &n).await.0, 204);
    }
    let v = p.get("/wechat/orders").await;
    assert_eq!(v["result"]["data"][0]["paid"], true, "{v}");
    let ledger = app.db.ledger(uid).await.unwrap();
    let ids: Vec<&str> = ledger.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ledger.len(), 2, "{ids:?}");
    assert!(ids.contains(&format!("order:{order}").as_str()));
    assert!(ids.contains(&format!("order:{order}:debit").as_str()));
    app.assert_invariants().await;
    // Paid: the user may start again.
    app.check(code).await;
    assert_eq!(p.scan(code).await["result"], "success");
    app.stop().await;
}

/// A postpaid order paid at WeChat Pay whose notification never came is paid by the
/// reconciler's query, once.
#[tokio::test]
async fn an_unnotified_postpaid_payment_is_settled_by_query() {
    let si = Standin::start().await;
    let app = app_with(
        &si,
        true,
        "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 30\n",
    )
    .await;
    let code = "11-22-33-44-55-66-77-56";
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": code, "name": "VR post", "charge_mode": 100, "billing_mode": "postpaid"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (p, uid) = paying_phone(&si, &app, 8).await;
    app.check(code).await;
    assert_eq!(p.scan(code).await["result"], "success");
    // 1.2 s of play (two started units) on the app's clock.
    app.advance(Duration::from_millis(1200));
    assert_eq!(p.get("/windows/offline").await["success"], true);
    let order = p.get("/wechat/orders").await["result"]["data"][0]["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    let pay = p.post("/wechat/order/pay", json!({"orderId": order})).await;
    let no = pay["result"]["out_trade_no"].as_str().unwrap().to_string();
    // Not paid yet: the query says NOTPAY, nothing changes.
    kioskd::payments::reconcile_once(&app.state).await.unwrap();
    assert_eq!(
        p.get("/wechat/orders").await["result"]["data"][0]["paid"],
        false
    );
    si.pay(&no, "4200008888");
    assert!(kioskd::payments::reconcile_once(&app.state).await.unwrap() >= 1);
    assert_eq!(
        p.get("/wechat/orders").await["result"]["data"][0]["paid"],
        true
    );
    // Paid orders are no longer queried; the ledger has the pair once.
    assert_eq!(
        kioskd::payments::reconcile_once(&app.state).await.unwrap(),
        0
    );
    assert_eq!(app.db.ledger(uid).await.unwrap().len(), 2);
    app.assert_invariants().await;
    app.stop().await;
}
