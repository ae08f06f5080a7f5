//! The documented flows over HTTP against the real app: one scenario per end reason,
//! with the money invariants checked after each.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::json;

const CODE: &str = "11-22-33-44-55-66-77-86";
const FAST: &str = "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 3\n";

#[tokio::test]
async fn user_logout_walkthrough_bills_nothing_within_the_free_start() {
    let app = spawn_app("").await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oWalk", "17717463317", 100).await;
    // The kiosk is idle until the phone scans.
    assert_eq!(
        app.check(CODE).await,
        json!({"success":true,"result":{"status":0,"device_status":"free","msg":"not login"},"error":null})
    );
    assert_eq!(
        phone.scan(CODE).await,
        json!({"success":true,"result":"success","error":null})
    );
    // Scanning again is idempotent for the same user.
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let c = app.check(CODE).await;
    assert_eq!(c["result"]["status"], 1);
    assert_eq!(c["result"]["device_status"], "busy");
    assert_eq!(c["result"]["msg"], "login successed!");
    let token = c["result"]["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 32);
    let k = app
        .kiosk(
            "/windows/keepalive",
            json!({"token": token, "device_code": CODE}),
        )
        .await;
    assert_eq!(k["result"]["status"], 1);
    assert_eq!(k["result"]["msg"], "keepalive success");
    let data = &k["result"]["data"];
    for key in [
        "id",
        "user_id",
        "device_id",
        "cost_money",
        "ctime",
        "utime",
        "cost_time",
        "charge_mode",
        "balance_account",
        "device_code",
        "openid",
        "cur_time",
    ] {
        assert!(
            data.get(key).is_some(),
            "session object lacks {key}: {data}"
        );
    }
    assert_eq!(data["charge_mode"], 5);
    assert_eq!(data["balance_account"], 95);
    assert_eq!(data["openid"], "oWalk");
    let st = phone.get("/windows/online/status").await;
    assert_eq!(st["success"], true);
    assert_eq!(st["result"]["device_code"], CODE);
    let out = app.kiosk("/windows/logout", json!({"token": token})).await;
    assert_eq!(
        out,
        json!({"success":true,"result":{"status":1,"msg":"logout successed!"},"error":null})
    );
    // A repeated logout is not an error, and keepalive on the dead token says status 0.
    let again = app.kiosk("/windows/logout", json!({"token": token})).await;
    assert_eq!(again["success"], true);
    assert_eq!(again["result"]["status"], 0);
    let k = app
        .kiosk(
            "/windows/keepalive",
            json!({"token": token, "device_code": CODE}),
        )
        .await;
    assert_eq!(k["success"], true);
    assert_eq!(k["result"]["status"], 0);
    let (ended, reason, cost, ..) = app.last_session(uid).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("user_logout"));
    assert_eq!(cost, 0);
    assert_eq!(app.balance(uid).await, 100);
    let st = phone.get("/windows/online/status").await;
    assert_eq!(
        st,
        json!({"success":false,"result":0,"error":"当前用户没有上机"})
    );
    let ex = phone
        .post("/wechat/expense/list", json!({"page":1,"size":10}))
        .await;
    assert_eq!(ex["result"]["total"], 1);
    assert_eq!(ex["result"]["data"][0]["cost_money"], 0);
    assert_eq!(ex["result"]["data"][0]["province"], "上海");
    let rl = phone.post("/wechat/recharge/list", json!({})).await;
    assert_eq!(rl["result"]["total"], 1);
    assert_eq!(rl["result"]["data"][0]["amount"], 100);
    assert_eq!(rl["result"]["data"][0]["user"]["nike_name"], "noWalk");
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn phone_offline_ends_the_session_and_bills_started_minutes() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oOff", "17717463318", 100).await;
    app.check(CODE).await;
    let t0 = app.now_ms();
    assert_eq!(phone.scan(CODE).await["result"], "success");
    // The session runs into its second unit (reserved at the one-second boundary).
    wait_until(
        "the second unit is reserved",
        Duration::from_secs(10),
        async || app.last_session(uid).await.5 >= 2,
    )
    .await;
    let v = phone.get("/windows/offline").await;
    let t1 = app.now_ms();
    assert_eq!(
        v,
        json!({"success":true,"result":{"status":1,"msg":"logout successed!"},"error":null})
    );
    let v = phone.get("/windows/offline").await;
    assert_eq!(v["success"], true);
    assert_eq!(v["result"]["status"], 0);
    let (ended, reason, cost, billed, ..) = app.last_session(uid).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("phone_offline"));
    assert_eq!(cost, ((billed + 999) / 1000) * 5);
    assert!(
        cost >= 10,
        "past the second unit's start is two started units, got {cost}"
    );
    assert!(
        billed > 1000 && billed <= t1 - t0,
        "billed {billed} ms: past one unit, within the {} ms observed",
        t1 - t0
    );
    assert_eq!(app.balance(uid).await, 100 - cost);
    // The kiosk learns it from check: no token any more.
    assert_eq!(app.check(CODE).await["result"]["status"], 0);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn balance_exhausted_ends_the_session_and_locks_the_device_once() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oPoor", "17717463319", 12).await;
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let token = app.token(CODE).await.unwrap();
    // Keep the kiosk alive (a keepalive every 400 ms, well within the 3 s timeout: the
    // kiosk's cadence, part of the scenario) until the balance has run out (two units,
    // then none) and the session ended.
    wait_until("the session ends", Duration::from_secs(10), async || {
        app.kiosk(
            "/windows/keepalive",
            json!({"token": token, "device_code": CODE}),
        )
        .await;
        if app.last_session(uid).await.0 {
            return true;
        }
        // The kiosk's keepalive cadence (the scenario), not a guess at "processed".
        tokio::time::sleep(Duration::from_millis(400)).await;
        false
    })
    .await;
    let (ended, reason, cost, ..) = app.last_session(uid).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("balance_exhausted"));
    assert_eq!(cost, 10);
    assert_eq!(app.balance(uid).await, 2);
    let c = app.check(CODE).await;
    assert_eq!(c["result"]["device_status"], "lock", "{c}");
    assert_eq!(c["result"]["status"], 0);
    assert_eq!(app.check(CODE).await["result"]["device_status"], "free");
    // Two units left nobody's balance below one unit: a new scan is refused with -5.
    assert_eq!(phone.scan(CODE).await["result"], -5);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn heartbeat_timeout_bills_only_to_the_last_heartbeat() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oQuiet", "17717463320", 1000).await;
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let token = app.token(CODE).await.unwrap();
    // One heartbeat in the second unit (reserved at the one-second boundary).
    wait_until(
        "the second unit is reserved",
        Duration::from_secs(10),
        async || app.last_session(uid).await.5 >= 2,
    )
    .await;
    let beat0 = app.now_ms();
    app.kiosk(
        "/windows/keepalive",
        json!({"token": token, "device_code": CODE}),
    )
    .await;
    let beat1 = app.now_ms();
    // Silence: the session ends 3 s after the last heartbeat.
    let (ended, reason, cost, billed, started, reserved) =
        app.wait_ended(uid, Duration::from_secs(8)).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("heartbeat_timeout"));
    assert!((1000..2000).contains(&billed), "billed {billed} ms");
    assert!(
        (beat0 - started..=beat1 - started).contains(&billed),
        "billed {billed} ms: to the heartbeat, sent {}..={} ms after the start",
        beat0 - started,
        beat1 - started
    );
    assert_eq!(cost, 10);
    assert!(
        reserved >= 4,
        "units kept being reserved until the timeout ({reserved})"
    );
    assert_eq!(app.balance(uid).await, 1000 - cost);
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn operator_lock_ends_the_session_and_unlock_frees_the_device() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oOps", "17717463321", 100).await;
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"lock"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ended_session"]["reason"], "operator");
    let (ended, reason, cost, billed, ..) = app.last_session(uid).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("operator"));
    assert_eq!(cost, ((billed + 999) / 1000) * 5);
    assert_eq!(app.check(CODE).await["result"]["device_status"], "lock");
    // A locked device refuses new sessions (-9) until unlocked.
    assert_eq!(phone.scan(CODE).await["result"], -9);
    let (st, _) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"unlock"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(app.check(CODE).await["result"]["device_status"], "free");
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"reboot-now"}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn maintenance_ends_the_session_and_check_ends_maintenance() {
    let app = spawn_app(FAST).await;
    app.add_device(CODE, 5).await;
    let (st, _) = app
        .ops_post(
            "/ops/maintainers",
            json!({"username":"youfeng243","password":"123456"}),
        )
        .await;
    assert_eq!(st, 201);
    let (phone, uid) = app.phone("oMaint", "17717463322", 100).await;
    app.check(CODE).await;
    // A busy device refuses a maintainer.
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let v = app
        .kiosk(
            "/windows/maintain/login",
            json!({"device_code": CODE, "username":"youfeng243","password":"123456"}),
        )
        .await;
    assert_eq!(v["success"], false, "{v}");
    // The operator puts it into maintenance: the session ends with `maintenance`.
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"maintain"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (ended, reason, ..) = app.last_session(uid).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("maintenance"));
    assert_eq!(
        app.check(CODE).await["result"]["device_status"],
        "free",
        "check ends maintenance"
    );
    // The seed's maintain login, then the kiosk's check ends it.
    let v = app
        .kiosk(
            "/windows/maintain/login",
            json!({"device_code": CODE, "username":"youfeng243","password":"123456"}),
        )
        .await;
    assert_eq!(v, json!({"result":"登录成功","success":true,"error":null}));
    assert_eq!(
        phone.scan(CODE).await["result"],
        -9,
        "no sessions during maintenance"
    );
    let (_, devs) = app.ops_get("/ops/devices").await;
    assert_eq!(devs["data"][0]["status"], "maintain");
    assert_eq!(app.check(CODE).await["result"]["device_status"], "free");
    // Wrong password and unknown accounts are refused; logout works too.
    let v = app
        .kiosk(
            "/windows/maintain/login",
            json!({"device_code": CODE, "username":"youfeng243","password":"nope"}),
        )
        .await;
    assert_eq!(v["success"], false);
    let v = app
        .kiosk(
            "/windows/maintain/login",
            json!({"device_code": CODE, "username":"ghost","password":"123456"}),
        )
        .await;
    assert_eq!(v["success"], false);
    let v = app
        .kiosk(
            "/windows/maintain/login",
            json!({"device_code": CODE, "username":"youfeng243","password":"123456"}),
        )
        .await;
    assert_eq!(v["success"], true);
    let v = app
        .kiosk(
            "/windows/maintain/logout",
            json!({"device_code": CODE, "username":"youfeng243"}),
        )
        .await;
    assert_eq!(v["success"], true);
    assert_eq!(app.check(CODE).await["result"]["device_status"], "free");
    app.assert_invariants().await;
    app.stop().await;
}

#[tokio::test]
async fn game_update_flow_locks_and_unlocks_the_device() {
    let app = spawn_app("").await;
    app.add_device(CODE, 5).await;
    let (st, g) = app
        .ops_post("/ops/games", json!({"name":"Beat Saber","version":"1.2","url":"http://cdn/bs.zip","md5":"0123456789abcdef0123456789abcdef"}))
        .await;
    assert_eq!(st, 201);
    let gid = g["id"].as_i64().unwrap();
    let r = app
        .http
        .put(app.url(&format!("/ops/devices/{CODE}/games/{gid}")))
        .bearer_auth(OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.check(CODE).await;
    let l = app
        .kiosk("/windows/game/list", json!({"device_code": CODE}))
        .await;
    assert_eq!(l["result"]["total"], 1);
    assert_eq!(l["result"]["data"][0]["need_update"], true);
    assert_eq!(l["result"]["data"][0]["newest_version"], "1.2");
    assert_eq!(
        app.kiosk("/windows/game/state", json!({"device_code": CODE}))
            .await["result"],
        "wait"
    );
    let put = app
        .http
        .put(app.url("/windows/game/state"))
        .json(&json!({"device_code": CODE, "update_state": "ing"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        put,
        json!({"result":"设备游戏更新状态设置成功!","success":true,"error":null})
    );
    assert_eq!(
        app.kiosk("/windows/game/state", json!({"device_code": CODE}))
            .await["result"],
        "ing"
    );
    assert_eq!(app.check(CODE).await["result"]["device_status"], "lock");
    let (phone, _) = app.phone("oGame", "17717463323", 100).await;
    assert_eq!(
        phone.scan(CODE).await["result"],
        -9,
        "no sessions while updating"
    );
    // The seed's wording: POST with update_state sets it.
    let v = app
        .kiosk(
            "/windows/game/state",
            json!({"device_code": CODE, "update_state": "finish"}),
        )
        .await;
    assert_eq!(v["result"], "设备游戏更新状态设置成功!");
    assert_eq!(
        app.kiosk("/windows/game/state", json!({"device_code": CODE}))
            .await["result"],
        "finish"
    );
    let l = app
        .kiosk("/windows/game/list", json!({"device_code": CODE}))
        .await;
    assert_eq!(l["result"]["data"][0]["need_update"], false);
    assert_eq!(app.check(CODE).await["result"]["device_status"], "free");
    app.stop().await;
}

#[tokio::test]
async fn plain_scan_redirects_to_the_phone_app() {
    let app = spawn_app("[phone]\napp_url = \"https://phone.example/app\"\n").await;
    app.add_device(CODE, 5).await;
    let p = Phone::new(&app.base);
    let r = p
        .http
        .get(app.url(&format!("/windows/login/{CODE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "https://phone.example/app?device_code=11-22-33-44-55-66-77-86"
    );
    app.stop().await;
}

#[tokio::test]
async fn ops_user_view_and_adjustments_keep_the_ledger_exact() {
    let app = spawn_app("").await;
    let (_phone, uid) = app.phone("oAdj", "17717463324", 100).await;
    let (st, v) = app
        .ops_post(
            &format!("/ops/users/{uid}/adjust"),
            json!({"amount": -30, "reason": "refund correction"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["balance_account"], 70);
    let (st, _) = app
        .ops_post(
            &format!("/ops/users/{uid}/adjust"),
            json!({"amount": -71, "reason": "too much"}),
        )
        .await;
    assert_eq!(st, 409);
    let (st, _) = app
        .ops_post(&format!("/ops/users/{uid}/adjust"), json!({"amount": 5}))
        .await;
    assert_eq!(st, 400);
    let (st, u) = app.ops_get(&format!("/ops/users/{uid}")).await;
    assert_eq!(st, 200);
    assert_eq!(u["balance_account"], 70);
    assert_eq!(u["ledger_sum"], 70);
    assert_eq!(
        u["total_account"].as_i64().unwrap() - u["used_account"].as_i64().unwrap(),
        70
    );
    let (_, l) = app.ops_get(&format!("/ops/users/{uid}/ledger")).await;
    assert_eq!(l["total"], 2);
    let r = app.http.get(app.url("/ops/users/1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url("/ops/users/1"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.assert_invariants().await;
    app.stop().await;
}

/// The clock given to `Application::builder(..).clock(..)` is the one the app bills by:
/// pinned to a known instant, every stored time reads from it.
#[tokio::test]
async fn the_app_reads_time_from_the_injected_clock() {
    const T: i64 = 1_900_000_000_000;
    let app = spawn_clocked(FAST, kioskd_actors::Clock::starting_at(T)).await;
    app.add_device(CODE, 5).await;
    let (phone, uid) = app.phone("oClock", "17717463399", 100).await;
    app.check(CODE).await;
    let t0 = app.now_ms();
    assert!((T..T + 60_000).contains(&t0), "{t0}");
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let t1 = app.now_ms();
    let v = phone.get("/windows/offline").await;
    assert_eq!(v["result"]["status"], 1, "{v}");
    let (ended, _, cost, billed, started, _) = app.last_session(uid).await;
    assert!(ended);
    assert!(
        (t0..=t1).contains(&started),
        "started at {started}, on the injected clock ({t0}..={t1})"
    );
    assert!(billed <= app.now_ms() - started);
    assert_eq!(cost, ((billed + 999) / 1000) * 5);
    app.assert_invariants().await;
    app.stop().await;
}

/// Background tasks are owned: once `run` has returned (the test's `stop` waits for it),
/// none of the app's tasks is still running — the sampler, the outbox, the metrics
/// listener, the coordinator's heartbeat writer and idle sweeper, the token keeper.
#[tokio::test]
async fn no_background_task_outlives_a_graceful_stop() {
    let app = spawn_app(&format!(
        "{FAST}[metrics]\nlisten = \"127.0.0.1:0\"\n[actors]\nidle_seconds = 30\n"
    ))
    .await;
    app.add_device(CODE, 5).await;
    let (phone, _) = app.phone("oTasks", "17717463398", 100).await;
    app.check(CODE).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let tasks = app.tasks.clone();
    let state = app.state.clone();
    let mut names = tasks.running();
    names.sort();
    assert_eq!(
        names,
        ["metrics listener", "outbox", "sampler"],
        "the app's own tasks, running"
    );
    assert_eq!(
        state.coord.background_tasks(),
        3,
        "heartbeat writer, ack writer, idle sweeper"
    );
    assert!(state.upstream.tokens.is_running());
    app.stop().await;
    assert_eq!(tasks.len(), 3);
    assert!(
        tasks.running().is_empty(),
        "still running: {:?}",
        tasks.running()
    );
    assert_eq!(state.coord.background_tasks(), 0);
    assert!(!state.upstream.tokens.is_running());
}
