//! Issue 16 items 3–4 from the phone (SQLite, or PostgreSQL with `KIOSKD_TEST_PG`): the
//! price a device costs the caller now and what the balance and packages buy there
//! (`/wechat/app/device/<code>`, dialect B's idle `charging`), buying a package from the
//! balance (one ledger row, or nothing at all), buying one by WeChat Pay (granted once
//! per transaction however often the notification comes; a wrong amount grants
//! nothing), and the package history.

use crate::common;

use common::standin::{self, Standin};
use common::{Phone, TestApp, spawn_app};
use kioskd_actors::pricing::SLOTS_PER_WEEK;
use serde_json::{Value, json};

const CODE: &str = "11-22-33-44-55-66-77-A1";

/// Re-reads the catalog into the coordinator, as the ops API does after an edit.
async fn reload_pricing(app: &TestApp) {
    let c = app.db.pricing_catalog(app.state.tz).await.unwrap();
    app.state.coord.set_pricing(c);
}

async fn add_package(app: &TestApp, name: &str, minutes: i64, price: i64) -> i64 {
    app.db
        .add_package(name, minutes, price, &[], &[], 30, app.now_ms())
        .await
        .unwrap()
}

async fn buy(p: &Phone, package_id: i64, pay: &str) -> Value {
    p.post(
        "/wechat/app/packages/buy",
        json!({"package_id": package_id, "pay": pay}),
    )
    .await
}

async fn held(p: &Phone) -> Vec<Value> {
    let v = p.get("/wechat/app/packages").await;
    assert_eq!(v["success"], true, "{v}");
    v["result"]["held"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_package_bought_from_the_balance_is_one_ledger_row_and_too_little_changes_nothing() {
    let app = spawn_app("").await;
    let (p, uid) = app.phone("oPkgBal", "17700001001", 1000).await;
    let cheap = add_package(&app, "夜场 60 分钟", 60, 600).await;
    let dear = add_package(&app, "畅玩 600 分钟", 600, 5000).await;

    let on_sale = p.get("/wechat/app/packages").await;
    assert_eq!(on_sale["result"]["on_sale"].as_array().unwrap().len(), 2);
    assert!(held(&p).await.is_empty());

    let v = buy(&p, cheap, "balance").await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["balance_account"], 400);
    let up = v["result"]["user_package_id"].as_i64().unwrap();
    assert_eq!(app.balance(uid).await, 400);
    let ledger = app.db.ledger(uid).await.unwrap();
    let row = ledger.iter().find(|l| l.id == format!("pkg:{up}")).unwrap();
    assert_eq!(row.amount, -600);
    let h = held(&p).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["id"], up);
    assert_eq!(h[0]["seconds_left"], 3600);
    assert_eq!(h[0]["source"], "balance");
    assert_eq!(app.db.package_ledger_sum(up).await.unwrap(), 3600);
    app.assert_invariants().await;

    // Too little balance, an unknown package, a bad `pay`, a cross-site POST: refused,
    // and nothing at all changed.
    let before = app.fingerprint().await;
    let v = buy(&p, dear, "balance").await;
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["result"], -5);
    assert_eq!(v["error"], "余额不足");
    let v = buy(&p, 999_999, "balance").await;
    assert_eq!(v["result"], -23, "{v}");
    let r = p
        .http
        .post(format!("{}/wechat/app/packages/buy", app.base))
        .json(&json!({"package_id": cheap, "pay": "card"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = p
        .http
        .post(format!("{}/wechat/app/packages/buy", app.base))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"package_id": cheap, "pay": "balance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let anon = Phone::new(&app.base);
    assert_eq!(buy(&anon, cheap, "balance").await["result"], -1);
    assert_eq!(app.fingerprint().await, before);
    assert_eq!(held(&p).await.len(), 1);
    assert_eq!(app.balance(uid).await, 400);

    // Sandbox "WeChat Pay": settled at once through the notification's settlement; the
    // balance is untouched, the ledger shows the payment in and the purchase out.
    let v = buy(&p, dear, "wechat").await;
    assert_eq!(v["result"], "success", "{v}");
    assert_eq!(app.balance(uid).await, 400);
    let h = held(&p).await;
    assert_eq!(h.len(), 2);
    let wechat = h.iter().find(|x| x["source"] == "wechat").unwrap();
    let ledger = app.db.ledger(uid).await.unwrap();
    let ids: Vec<&str> = ledger.iter().map(|l| l.id.as_str()).collect();
    assert!(
        ids.contains(&format!("pkg:{}", wechat["id"]).as_str()),
        "{ids:?}"
    );
    assert!(
        ids.iter().any(|i| i.starts_with("pkgpay:sandbox-P")),
        "{ids:?}"
    );
    app.assert_invariants().await;

    // The history: both purchases, with what was paid and how.
    let v = p.get("/wechat/app/package-history?page=1&size=10").await;
    assert_eq!(v["result"]["total"], 2, "{v}");
    let rows = v["result"]["data"].as_array().unwrap();
    let by_balance = rows.iter().find(|r| r["source"] == "balance").unwrap();
    assert_eq!(by_balance["kind"], "purchase");
    assert_eq!(by_balance["amount"], 600);
    assert_eq!(by_balance["seconds"], 3600);
    let by_wechat = rows.iter().find(|r| r["source"] == "wechat").unwrap();
    assert_eq!(by_wechat["amount"], 5000);
    // Counted once each; the refused purchases are not.
    for source in ["balance", "wechat"] {
        let sold = app
            .metric(
                "kioskd_pricing_packages_sold_total",
                &format!(r#"source="{source}""#),
            )
            .await;
        assert_eq!(sold, 1.0, "{source}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_start_page_quotes_the_plan_price_with_the_group_discount_and_packages_first() {
    let app = spawn_app("").await;
    app.add_device(CODE, 150).await;
    let (p, uid) = app.phone("oPkgQuote", "17700001002", 1000).await;
    let anon = Phone::new(&app.base);

    // Flat: the device's own price; the balance buys 1000 / 150 = 6 minutes.
    let v = p.get(&format!("/wechat/app/device/{CODE}")).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"]["price_now"], 150);
    assert_eq!(v["result"]["minutes"], 6);
    assert_eq!(v["result"]["first_debit"], 150);

    // A zone on a plan of 100 fen a minute all week: anyone sees 100.
    let now = app.now_ms();
    let plan = app
        .db
        .add_plan("standard", &vec![100; SLOTS_PER_WEEK], 0, now)
        .await
        .unwrap();
    let zone = app.db.add_zone("VR", Some(plan), now).await.unwrap();
    let dev = kioskd_actors::ports::Store::device_by_code(&app.db, CODE)
        .await
        .unwrap()
        .unwrap();
    app.db
        .assign_device(dev.id, Some(zone), None)
        .await
        .unwrap();
    reload_pricing(&app).await;
    let v = anon.get(&format!("/wechat/app/device/{CODE}")).await;
    assert_eq!(v["result"]["price_now"], 100, "{v}");
    assert_eq!(v["result"]["charge_mode"], 150, "the flat price stays");
    assert_eq!(v["result"]["plan"], "standard");
    assert!(
        v["result"].get("minutes").is_none(),
        "nothing personal: {v}"
    );

    // The user's group takes 20 %: 80 fen, 1000 / 80 = 12 minutes.
    let g = app.db.add_group("学生", 20, None, now).await.unwrap();
    app.db.set_user_group(uid, Some(g)).await.unwrap();
    reload_pricing(&app).await;
    let v = p.get(&format!("/wechat/app/device/{CODE}")).await;
    assert_eq!(v["result"]["price_now"], 80, "{v}");
    assert_eq!(v["result"]["discount_pct"], 20);
    assert_eq!(v["result"]["minutes"], 12);
    assert_eq!(v["result"]["first_debit"], 80);
    assert!(v["result"]["package_now"].is_null());

    // A package of 30 minutes is used first: 30 + 12 minutes, nothing reserved at start.
    let pk = add_package(&app, "30 分钟", 30, 1).await;
    let up = app
        .db
        .grant_package(uid, pk, app.now_ms())
        .await
        .unwrap()
        .unwrap();
    let v = p.get(&format!("/wechat/app/device/{CODE}")).await;
    assert_eq!(v["result"]["minutes"], 42, "{v}");
    assert_eq!(v["result"]["package_now"], up);
    assert_eq!(v["result"]["first_debit"], 0);
    assert_eq!(v["result"]["packages"][0]["id"], up);
    assert_eq!(v["result"]["packages"][0]["name"], "30 分钟");
    // A package for another zone is not offered here.
    let other = app.db.add_zone("VIP", None, now).await.unwrap();
    let pk2 = app
        .db
        .add_package("VIP only", 60, 1, &[other], &[], 30, now)
        .await
        .unwrap();
    app.db.grant_package(uid, pk2, app.now_ms()).await.unwrap();
    let v = p.get(&format!("/wechat/app/device/{CODE}")).await;
    assert_eq!(v["result"]["minutes"], 42, "{v}");
    assert_eq!(v["result"]["packages"].as_array().unwrap().len(), 1);

    // The quote is what a start reserves: the package covers unit 1, the balance stays.
    app.check(CODE).await;
    assert_eq!(p.scan(CODE).await["result"], "success");
    assert_eq!(app.balance(uid).await, 1000);
    app.stop().await;
}

#[tokio::test]
async fn dialect_b_idle_charging_is_the_price_in_force_now() {
    let app = spawn_app("[rest]\nservice_number = \"13738196887\"\n").await;
    let code = "11-22-33-44-55-66-77-A2";
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": code, "client_id": "880011", "name": "VR B", "charge_mode": 132}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let status = async || -> Value {
        app.http
            .get(app.url("/rest/status_client?clientId=880011"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    assert_eq!(
        status().await["charging"],
        json!(1.32),
        "flat price when idle"
    );
    let now = app.now_ms();
    let plan = app
        .db
        .add_plan("b-plan", &vec![90; SLOTS_PER_WEEK], 0, now)
        .await
        .unwrap();
    let dev = kioskd_actors::ports::Store::device_by_code(&app.db, code)
        .await
        .unwrap()
        .unwrap();
    app.db
        .assign_device(dev.id, None, Some(plan))
        .await
        .unwrap();
    reload_pricing(&app).await;
    let v = status().await;
    assert_eq!(v["charging"], json!(0.9), "{v}");
    assert_eq!(v["onlineStatus"], 1);
    app.stop().await;
}

/// The console's device read shows the price in force now: a device in a zone with a
/// plan shows the plan's rate and name, not its flat `charge_mode`; a device without a
/// plan shows its flat price. Dialect A's idle `check` carries no price (unchanged).
#[tokio::test]
async fn the_console_device_read_shows_the_price_in_force_now() {
    let app = spawn_app("").await;
    let zoned = "11-22-33-44-55-66-77-A3";
    let flat = "11-22-33-44-55-66-77-A4";
    for code in [zoned, flat] {
        let (st, v) = app
            .ops_post(
                "/ops/devices",
                json!({"device_code": code, "name": "VR Z", "charge_mode": 132}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let now = app.now_ms();
    let plan = app
        .db
        .add_plan("zone-plan", &vec![75; SLOTS_PER_WEEK], 0, now)
        .await
        .unwrap();
    let zone = app.db.add_zone("east", Some(plan), now).await.unwrap();
    let dev = kioskd_actors::ports::Store::device_by_code(&app.db, zoned)
        .await
        .unwrap()
        .unwrap();
    app.db
        .assign_device(dev.id, Some(zone), None)
        .await
        .unwrap();
    reload_pricing(&app).await;

    let (st, v) = app.ops_get(&format!("/ops/devices/{zoned}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["device"]["price_now"], 75, "{v}");
    assert_eq!(v["device"]["plan"], "zone-plan", "{v}");
    assert_eq!(
        v["device"]["charge_mode"], 132,
        "the flat price is still reported"
    );
    let (st, v) = app.ops_get(&format!("/ops/devices/{flat}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["device"]["price_now"], 132, "{v}");
    assert_eq!(v["device"]["plan"], Value::Null, "{v}");

    // Dialect A's idle check has no price field: still exactly the seed's keys.
    let v = app.check(zoned).await;
    let keys: Vec<&String> = v["result"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["device_status", "msg", "status"], "{v}");
    app.stop().await;
}

async fn app_with_pay(si: &Standin) -> TestApp {
    common::spawn_layers(&[&si.toml(true)]).await
}

async fn notify(app: &TestApp, n: &(Vec<(&'static str, String)>, String)) -> u16 {
    let mut r = app.http.post(app.url("/wechat/notify")).body(n.1.clone());
    for (k, v) in &n.0 {
        r = r.header(*k, v);
    }
    r.send().await.unwrap().status().as_u16()
}

/// A signed-in, registered phone with a payment openid (WeChat Pay mode).
async fn paying_phone(si: &Standin, app: &TestApp) -> (Phone, i64) {
    si.w().next_openid = "oPlatformPkg".into();
    si.w().next_pay_openid = "oPayPkg".into();
    si.w().tickets.insert("TPKG".into(), "17717460099".into());
    let p = Phone::new(&app.base);
    let mut r = p.get_raw(&format!("{}/wechat/user", app.base)).await;
    for _ in 0..8 {
        if !r.status().is_redirection() {
            break;
        }
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = loc.split('#').next().unwrap().to_string();
        r = if let Some(rest) = loc.strip_prefix("http://127.0.0.1:8080") {
            p.get_raw(&format!("{}{rest}", app.base)).await
        } else if loc.starts_with('/') {
            p.get_raw(&format!("{}{loc}", app.base)).await
        } else {
            p.get_raw(&loc).await
        };
    }
    let v = p.get("/wechat/app/login?ticket=TPKG").await;
    assert_eq!(v["success"], true, "{v}");
    (p, v["result"]["id"].as_i64().unwrap())
}

#[tokio::test]
async fn a_package_paid_by_wechat_pay_is_granted_once_per_transaction() {
    let si = Standin::start().await;
    let app = app_with_pay(&si).await;
    let (p, uid) = paying_phone(&si, &app).await;
    let pk = add_package(&app, "周末 120 分钟", 120, 1800).await;

    let v = buy(&p, pk, "wechat").await;
    assert_eq!(v["success"], true, "{v}");
    let no = v["result"]["out_trade_no"].as_str().unwrap().to_string();
    assert!(no.starts_with('P') && no.len() <= 32, "{no}");
    assert_eq!(si.w().orders[&no]["amount"]["total"], 1800);
    assert_eq!(si.w().orders[&no]["payer"]["openid"], "oPayPkg");
    let st = p.get(&format!("/wechat/app/package-order/{no}")).await;
    assert_eq!(st["result"]["status"], "pending", "{st}");
    assert!(held(&p).await.is_empty(), "nothing before the notification");

    // A wrong amount grants nothing.
    let wrong = si.notification(
        &no,
        "4200007777000000000000000001",
        1,
        standin::now_s(),
        |_| {},
    );
    assert_eq!(notify(&app, &wrong).await, 400);
    assert!(held(&p).await.is_empty());

    // The right one, three times (and a re-signed copy): one package, one pair of rows.
    let tx = "4200007777000000000000000002";
    let n = si.notification(&no, tx, 1800, standin::now_s(), |_| {});
    for _ in 0..3 {
        assert_eq!(notify(&app, &n).await, 204);
    }
    let again = si.notification(&no, tx, 1800, standin::now_s(), |_| {});
    assert_eq!(notify(&app, &again).await, 204);
    let h = held(&p).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["source"], "wechat");
    assert_eq!(h[0]["seconds_left"], 7200);
    let up = h[0]["id"].as_i64().unwrap();
    let ledger = app.db.ledger(uid).await.unwrap();
    let ids: Vec<&str> = ledger.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ledger.len(), 2, "{ids:?}");
    assert!(ids.contains(&format!("pkgpay:{tx}").as_str()), "{ids:?}");
    assert!(ids.contains(&format!("pkg:{up}").as_str()), "{ids:?}");
    assert_eq!(app.balance(uid).await, 0, "the balance is untouched");
    app.assert_invariants().await;
    let st = p.get(&format!("/wechat/app/package-order/{no}")).await;
    assert_eq!(st["result"]["status"], "paid");

    // Another transaction for the paid order is refused; an unknown order is unknown.
    let other = si.notification(
        &no,
        "4200007777000000000000000003",
        1800,
        standin::now_s(),
        |_| {},
    );
    assert_eq!(notify(&app, &other).await, 400);
    assert_eq!(held(&p).await.len(), 1);
    let st = p.get("/wechat/app/package-order/PNoSuchOrder").await;
    assert_eq!(st["result"], -19, "{st}");
    let anon = Phone::new(&app.base);
    let st = anon.get(&format!("/wechat/app/package-order/{no}")).await;
    assert_eq!(st["result"], -1, "{st}");
    app.stop().await;
}

/// An order paid at WeChat Pay whose notification never came is granted by the
/// reconciler's query, once.
#[tokio::test]
async fn an_unnotified_package_payment_is_granted_by_the_reconciler() {
    let si = Standin::start().await;
    let app = app_with_pay(&si).await;
    let (p, uid) = paying_phone(&si, &app).await;
    let pk = add_package(&app, "60 分钟", 60, 900).await;
    let v = buy(&p, pk, "wechat").await;
    let no = v["result"]["out_trade_no"].as_str().unwrap().to_string();
    si.pay(&no, "4200008888000000000000000001");
    assert!(kioskd::payments::reconcile_once(&app.state).await.unwrap() >= 1);
    assert_eq!(held(&p).await.len(), 1);
    kioskd::payments::reconcile_once(&app.state).await.unwrap();
    assert_eq!(held(&p).await.len(), 1, "granted once");
    assert_eq!(app.db.ledger(uid).await.unwrap().len(), 2);
    app.assert_invariants().await;
    app.stop().await;
}

/// A session on a package: its units show in the history as package time used (no
/// money), and the history's time adds up to what the package has left.
#[tokio::test]
async fn package_use_shows_in_the_history_as_time_not_money() {
    let app = spawn_app(
        "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 30\n",
    )
    .await;
    let code = "11-22-33-44-55-66-77-A3";
    app.add_device(code, 7).await;
    let (p, uid) = app.phone("oPkgUse", "17700001003", 100).await;
    let pk = add_package(&app, "一分钟", 1, 50).await;
    let v = buy(&p, pk, "balance").await;
    assert_eq!(v["result"]["balance_account"], 50, "{v}");
    let up = v["result"]["user_package_id"].as_i64().unwrap();
    app.check(code).await;
    assert_eq!(p.scan(code).await["result"], "success");
    common::wait_until(
        "two package units used",
        std::time::Duration::from_secs(10),
        async || app.db.package_ledger_sum(up).await.unwrap() <= 58,
    )
    .await;
    assert_eq!(p.get("/windows/offline").await["success"], true);
    let v = p.get("/wechat/app/package-history?size=100").await;
    let rows = v["result"]["data"].as_array().unwrap().clone();
    let uses: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "use").collect();
    assert!(uses.len() >= 2, "{v}");
    for u in &uses {
        assert_eq!(u["seconds"], -1);
        assert_eq!(u["amount"], 0, "a use is no money");
        assert!(u["session_id"].is_i64());
    }
    let sum: i64 = rows.iter().map(|r| r["seconds"].as_i64().unwrap()).sum();
    let h = held(&p).await;
    assert_eq!(h[0]["seconds_left"], sum, "{v}");
    assert_eq!(app.balance(uid).await, 50, "covered units cost no money");
    app.assert_invariants().await;
    app.stop().await;
}
