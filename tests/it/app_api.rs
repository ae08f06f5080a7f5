//! The phone app's reads (`src/http/app_api.rs`): config, the public device card, a
//! recharge's state, the sign-in entry.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn config_tells_the_page_the_modes() {
    let app = spawn_app("[billing]\nunit_seconds = 3\n").await;
    let p = Phone::new(&app.base);
    let v = p.get("/wechat/app/config").await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["identity_mode"], "dev");
    assert_eq!(v["result"]["payments_mode"], "sandbox");
    assert_eq!(v["result"]["unit_seconds"], 3);
    assert_eq!(v["result"]["low_balance_minutes"], 5);
    app.stop().await;
}

#[tokio::test]
async fn device_card_shows_public_facts_and_status() {
    let app = spawn_app("").await;
    app.add_device("11-22-33-44-55-66", 5).await;
    let p = Phone::new(&app.base);

    // Registered but never heard from: offline, not available.
    let v = p.get("/wechat/app/device/11:22:33:44:55:66").await;
    assert_eq!(v["success"], true, "{v}");
    let r = &v["result"];
    assert_eq!(r["device_code"], "11-22-33-44-55-66");
    assert_eq!(r["name"], "seat");
    assert_eq!(r["city"], "上海");
    assert_eq!(r["location"], "A1");
    assert_eq!(r["charge_mode"], 5);
    assert_eq!(r["billing_mode"], "prepaid");
    assert_eq!(r["status"], "free");
    assert_eq!(r["online"], false);
    assert_eq!(r["available"], false);

    // The kiosk checks in: online and free.
    app.check("11-22-33-44-55-66").await;
    let v = p.get("/wechat/app/device/11-22-33-44-55-66").await;
    assert_eq!(v["result"]["online"], true, "{v}");
    assert_eq!(v["result"]["available"], true, "{v}");

    // A session starts: busy, and nothing about the user is shown.
    let (phone, _) = app.phone("card1", "13800000001", 100).await;
    assert_eq!(phone.scan("11-22-33-44-55-66").await["result"], "success");
    let v = p.get("/wechat/app/device/11-22-33-44-55-66").await;
    assert_eq!(v["result"]["status"], "busy", "{v}");
    assert_eq!(v["result"]["available"], false);
    let text = v.to_string();
    assert!(
        !text.contains("card1") && !text.contains("13800000001"),
        "{text}"
    );

    // Unknown and malformed codes: -4 in the envelope.
    for code in ["AA-BB-CC-DD-EE-FF", "not-a-code", "%3Cscript%3E"] {
        let v = p.get(&format!("/wechat/app/device/{code}")).await;
        assert_eq!(v["success"], false, "{code}: {v}");
        assert_eq!(v["result"], -4, "{code}: {v}");
    }
    app.stop().await;
}

#[tokio::test]
async fn postpaid_device_card_says_postpaid() {
    let app = spawn_app("[rest]\nservice_number = \"13738196887\"\n").await;
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": "22-22-33-44-55-66", "client_id": "9001", "name": "VR", "charge_mode": 132, "billing_mode": "postpaid"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let v = Phone::new(&app.base)
        .get("/wechat/app/device/22-22-33-44-55-66")
        .await;
    assert_eq!(v["result"]["billing_mode"], "postpaid", "{v}");
    assert_eq!(v["result"]["charge_mode"], 132);
    app.stop().await;
}

#[tokio::test]
async fn recharge_state_is_the_owners_only() {
    let app = spawn_app("").await;
    let (a, a_id) = app.phone("rs_a", "13800000011", 0).await;
    let (b, _) = app.phone("rs_b", "13800000012", 0).await;
    // A pending recharge of a's (as wechatpay mode would leave it before the notice).
    app.db
        .create_recharge(a_id, 300, "wechatpay", "Rpending0001", 1)
        .await
        .unwrap();
    let v = a.get("/wechat/app/recharge/Rpending0001").await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["status"], "pending");
    assert_eq!(v["result"]["amount"], 300);
    assert_eq!(v["result"]["balance_account"], 0);

    // b cannot see it; a malformed number is unknown too; anonymous is not signed in.
    let v = b.get("/wechat/app/recharge/Rpending0001").await;
    assert_eq!(v["result"], -19, "{v}");
    let v = a.get("/wechat/app/recharge/R..%2F..").await;
    assert_eq!(v["result"], -19, "{v}");
    let v = Phone::new(&app.base)
        .get("/wechat/app/recharge/Rpending0001")
        .await;
    assert_eq!(v["result"], -1, "{v}");

    // Settled (the way a verified notification settles it): paid, balance credited.
    app.db
        .settle_recharge("Rpending0001", "wx-tx-1", 300, 2)
        .await
        .unwrap();
    let v = a.get("/wechat/app/recharge/Rpending0001").await;
    assert_eq!(v["result"]["status"], "paid", "{v}");
    assert_eq!(v["result"]["balance_account"], 300);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn signin_returns_only_to_phone_pages() {
    let app = spawn_app("").await;
    let p = Phone::new(&app.base);
    let loc = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let r = p.get_raw("/wechat/app/signin?back=/app/me").await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(loc(&r).as_deref(), Some("/app/me"));
    for bad in [
        "https://evil.example/",
        "//evil.example/app/",
        "/ops/devices",
    ] {
        let r = p
            .get_raw(&format!("/wechat/app/signin?back={}", urlencode(bad)))
            .await;
        assert_eq!(loc(&r).as_deref(), Some("/app/"), "{bad}");
    }
    app.stop().await;

    // open189 without credentials: a clear upstream error, not a redirect loop.
    let app = spawn_app("[identity]\nmode = \"open189\"\n[sms]\ndebug_code = \"\"\n").await;
    let r = Phone::new(&app.base)
        .get_raw("/wechat/app/signin?back=/app/")
        .await;
    assert_eq!(r.status().as_u16(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["result"], -16, "{v}");
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn reads_are_rate_limited_per_client_address() {
    let app = spawn_app("").await;
    // Another loopback address than every other test's, so their requests are not
    // counted against this one's budget (and this one's flood does not starve them).
    let flood = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let mut limited = None;
    for _ in 0..200 {
        let r = flood
            .get(app.url("/wechat/app/config"))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            limited = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
    }
    let v = limited.expect("200 requests at once were never limited");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["result"], -12, "{v}");
    // Another client is not affected.
    let v = Phone::new(&app.base).get("/wechat/app/config").await;
    assert_eq!(v["success"], true, "{v}");
    app.stop().await;
}
