//! Attendance terminals end to end (issue 5, SPEC §8): the bridge's real form bodies and
//! the seed's JSON, the native iclock test vectors of `reference/attendance-terminals.md`,
//! the ops API, the command queue on both polls and across a restart. Runs on SQLite, or
//! PostgreSQL with `KIOSKD_TEST_PG`.

use crate::common;

use common::{TestApp, spawn_app, spawn_on};
use kioskd_actors::terminal::TerminalStore;
use serde_json::{Value, json};

const SN: &str = "3637165101475";
const SN2: &str = "3637165101476";
const NATIVE: &str = "0316144680030";
const TOKEN: &str = "gh_2837e31e28ed";
const LEGACY: &str = "/weiphp30/index.php?s=/addon/DailyTime/DailyTime/";

/// The exact bodies the deployed bridge sends (reference §3.1).
const NEW_RECORD_BODY: &str = "token=gh_2837e31e28ed&SN=3637165101475&record=PIN%3D101010101010%26TIME%3D2017-08-03%2B11%253A30%253A28%26STATUS%3D255%26VERIFY%3D2%26WORKCODE%3D0%26RESERVED1%3D0%26RESERVED2%3D0";
const SYNC_BODY: &str = "token=gh_2837e31e28ed&SN=3637165101475&records=%5B%7B%22PIN%22%3A+%22101010101010%22%2C+%22TIME%22%3A+%222017-08-03+11%3A30%3A28%22%2C+%22STATUS%22%3A+255%2C+%22VERIFY%22%3A+%222%22%2C+%22WORKCODE%22%3A+%220%22%2C+%22RESERVED1%22%3A+%220%22%2C+%22RESERVED2%22%3A+%220%22%7D%5D";
const UPDATE_USER_BODY: &str = "token=gh_2837e31e28ed&SN=3637165101475&timeStamp=0";

struct Reply {
    status: u16,
    body: String,
    content_type: String,
    date: bool,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(app: &TestApp, req: reqwest::RequestBuilder) -> Reply {
    let _ = app;
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let date = r.headers().contains_key("date");
    let bytes = r.bytes().await.unwrap();
    Reply {
        status,
        // Bridge replies must be ASCII; keep the raw bytes visible if not.
        body: String::from_utf8_lossy(&bytes).into_owned(),
        content_type,
        date,
    }
}

/// A form POST to the bridge's legacy path.
async fn bridge(app: &TestApp, action: &str, body: &str) -> Reply {
    send(
        app,
        app.http
            .post(app.url(&format!("{LEGACY}{action}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string()),
    )
    .await
}

async fn iclock_get(app: &TestApp, path: &str) -> Reply {
    send(
        app,
        app.http
            .get(app.url(path))
            .header("user-agent", "iClock Proxy/1.09"),
    )
    .await
}

async fn iclock_post(app: &TestApp, path: &str, body: &str) -> Reply {
    send(app, app.http.post(app.url(path)).body(body.to_string())).await
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

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

async fn punches(app: &TestApp) -> i64 {
    count(app, "SELECT COUNT(*) FROM punches").await
}

async fn setup() -> TestApp {
    let app = spawn_app("").await;
    add_terminal(&app, SN, TOKEN).await;
    add_terminal(&app, SN2, TOKEN).await;
    add_terminal(&app, NATIVE, "native-terminal-token").await;
    app
}

// ---- the bridge ------------------------------------------------------------------------

#[tokio::test]
async fn the_bridges_new_record_form_body_is_stored_once_with_its_utc_instant() {
    let app = setup().await;
    for _ in 0..3 {
        let r = bridge(&app, "newRecord", NEW_RECORD_BODY).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.is_ascii());
        assert_eq!(r.json(), json!({"state": "OK", "SN": SN}));
        assert!(r.content_type.starts_with("application/json"));
    }
    assert_eq!(punches(&app).await, 1);
    let (st, v) = app.ops_get(&format!("/ops/punches?sn={SN}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total"], 1);
    let p = &v["data"][0];
    assert_eq!(p["pin"], "101010101010");
    assert_eq!(p["time"], "2017-08-03 11:30:28");
    assert_eq!(p["status"], 255);
    assert_eq!(p["verify"], 2);
    assert_eq!(p["workcode"], "0");
    assert_eq!(p["source"], "bridge-new");
    // 11:30:28 in Shanghai = 03:30:28 UTC.
    assert_eq!(p["utc_ms"], 1_501_731_028_000i64);
}

#[tokio::test]
async fn the_same_punch_through_new_record_sync_and_iclock_is_stored_once() {
    let app = setup().await;
    assert_eq!(bridge(&app, "newRecord", NEW_RECORD_BODY).await.status, 200);
    let r = bridge(&app, "syncRecord", SYNC_BODY).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"state": "OK", "SN": SN}));
    // The same terminal's record arriving natively (same SN, PIN, local time).
    let r = iclock_post(
        &app,
        &format!("/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=1"),
        "101010101010\t2017-08-03 11:30:28\t255\t2\t0\t0\t0\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK:1"));
    // And through the /attendance path with the seed's JSON.
    let r = send(
        &app,
        app.http.post(app.url("/attendance/syncRecord")).json(&json!({
            "token": TOKEN, "SN": SN,
            "records": [{"PIN": "101010101010", "TIME": "2017-08-03 11:30:28", "STATUS": 255, "VERIFY": "2", "WORKCODE": "0", "RESERVED1": "0", "RESERVED2": "0"}]
        })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(punches(&app).await, 1);
    // A different terminal's identical PIN and time is a different punch.
    let r = bridge(
        &app,
        "newRecord",
        &NEW_RECORD_BODY.replace("SN=3637165101475", &format!("SN={SN2}")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(punches(&app).await, 2);
}

#[tokio::test]
async fn the_seed_json_bodies_work_on_both_paths() {
    let app = setup().await;
    let body = json!({"token": TOKEN, "SN": SN, "record": {"PIN": "1", "TIME": "2017-08-01 13:40:38", "STATUS": 255, "VERIFY": "2", "WORKCODE": "0", "RESERVED1": "0", "RESERVED2": "0"}});
    let r = send(
        &app,
        app.http
            .post(app.url(&format!("{LEGACY}newRecord")))
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(
        &app,
        app.http
            .post(app.url("/attendance/syncRecord"))
            .json(&json!({"token": TOKEN, "SN": SN, "records": [
                {"PIN": "1", "TIME": "2017-08-01 13:40:38", "STATUS": 255, "VERIFY": "2", "WORKCODE": "0", "RESERVED1": "0", "RESERVED2": "0"},
                {"PIN": "2", "TIME": "2017-08-01 13:41:38", "STATUS": 255, "VERIFY": "2", "WORKCODE": "0", "RESERVED1": "0", "RESERVED2": "0"}
            ]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"state": "OK", "SN": SN}));
    assert_eq!(punches(&app).await, 2);
}

#[tokio::test]
async fn wrong_token_unknown_sn_truncated_and_garbage_bodies_store_nothing_and_are_not_2xx() {
    let app = setup().await;
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "syncRecord",
            SYNC_BODY.replace(TOKEN, "gh_wrong_token"),
            403,
        ),
        (
            "syncRecord",
            SYNC_BODY.replace("token=gh_2837e31e28ed&", ""),
            401,
        ),
        ("syncRecord", SYNC_BODY.replace(SN, "999999"), 404),
        (
            "syncRecord",
            SYNC_BODY.replace("&SN=3637165101475", ""),
            400,
        ),
        // truncated in the middle of the records JSON
        (
            "syncRecord",
            SYNC_BODY[..SYNC_BODY.len() - 40].to_string(),
            400,
        ),
        (
            "syncRecord",
            "token=gh_2837e31e28ed&SN=3637165101475&records=%7B%7D".into(),
            400,
        ),
        (
            "syncRecord",
            "token=gh_2837e31e28ed&SN=3637165101475".into(),
            400,
        ),
        // lenient form parsing: no token in it
        ("syncRecord", "\u{1}\u{2}garbage%%%".into(), 401),
        ("syncRecord", "".into(), 400),
        (
            "syncRecord",
            "{\"token\":\"gh_2837e31e28ed\",\"SN\":".into(),
            400,
        ),
        ("syncRecord", "[1,2,3]".into(), 400),
        ("syncRecord", format!("{SYNC_BODY}&token=again"), 400),
        (
            "newRecord",
            NEW_RECORD_BODY.replace(TOKEN, "nope-nope"),
            403,
        ),
        ("newRecord", NEW_RECORD_BODY.replace(SN, "1"), 404),
        // a record without TIME, and one with a time that is not a time
        (
            "newRecord",
            "token=gh_2837e31e28ed&SN=3637165101475&record=PIN%3D1".into(),
            400,
        ),
        (
            "newRecord",
            "token=gh_2837e31e28ed&SN=3637165101475&record=PIN%3D1%26TIME%3Dyesterday".into(),
            400,
        ),
        (
            "newRecord",
            "token=gh_2837e31e28ed&SN=3637165101475".into(),
            400,
        ),
        (
            "updateStudent",
            UPDATE_USER_BODY.replace(TOKEN, "wrong-token"),
            403,
        ),
        ("updateStudent", UPDATE_USER_BODY.replace(SN, "42"), 404),
        ("getCommand", "token=gh_2837e31e28ed&SN=42".into(), 404),
        ("getCommand", "token=bad-token&SN=3637165101475".into(), 403),
        ("noSuchAction", NEW_RECORD_BODY.into(), 404),
        ("", "token=gh_2837e31e28ed&logs=not-json".into(), 400),
    ];
    for (action, body, want) in cases {
        let r = bridge(&app, action, &body).await;
        assert_eq!(r.status, want, "{action} {body:?}: {}", r.body);
        assert!(r.body.is_ascii());
        let v = r.json();
        assert_eq!(v["state"], "ERROR", "{action}: {}", r.body);
        assert!(v.get("SN").is_none(), "an error reply must not carry SN");
    }
    // The legacy path without a known `s` is refused too.
    let r = send(
        &app,
        app.http
            .post(app.url("/weiphp30/index.php"))
            .body(SYNC_BODY),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(punches(&app).await, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM punch_quarantine").await,
        0
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM terminal_errors").await, 0);
}

#[tokio::test]
async fn a_sync_batch_quarantines_bad_records_and_stores_the_rest() {
    let app = setup().await;
    let records = json!([
        {"PIN": "1", "TIME": "2026-08-20 09:15:00", "STATUS": 0, "VERIFY": "1"},
        {"PIN": "2", "TIME": "not-a-date", "STATUS": 0},
        "just a string",
        {"PIN": "3", "TIME": "2026-08-20 09:16:00", "STATUS": "x"},
        {"PIN": "0042", "TIME": "2026-08-20 09:17:00", "STATUS": 1, "VERIFY": "15"}
    ]);
    let body = serde_urlencoded::to_string([
        ("token", TOKEN),
        ("SN", SN),
        ("records", &records.to_string()),
    ])
    .unwrap();
    let r = bridge(&app, "syncRecord", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(punches(&app).await, 2);
    let (_, q) = app
        .ops_get(&format!("/ops/terminals/{SN}/quarantine"))
        .await;
    assert_eq!(q["total"], 3, "{q}");
    let reasons: Vec<&str> = q["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not YYYY-MM-DD")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("not an object")));
    assert!(reasons.iter().any(|r| r.contains("STATUS")));
    // Re-sending the whole batch stores nothing more, quarantined lines included.
    assert_eq!(bridge(&app, "syncRecord", &body).await.status, 200);
    assert_eq!(punches(&app).await, 2);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM punch_quarantine").await,
        3
    );
    let (_, v) = app.ops_get("/ops/punches?pin=0042").await;
    assert_eq!(v["total"], 1, "leading zeros kept: {v}");
}

#[tokio::test]
async fn update_user_replies_are_ascii_and_carry_users_only_when_safe() {
    let app = setup().await;
    let (st, v) = app
        .ops_post(
            "/ops/staff",
            json!({"pin": "1", "name": "陈", "pri": 0, "passwd": "123", "card": "15895470", "grp": "1", "tz": "0001000100000000"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let v1 = v["version"].as_i64().unwrap();
    // The bridge's own request after a restart: terminal-specific. It must not carry
    // users (the bridge would wipe the terminal), and its timeStamp is what the terminal
    // holds (nothing yet), so the roster still reaches it through all_devices.
    let r = bridge(&app, "updateStudent", UPDATE_USER_BODY).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["SN"], SN);
    assert_eq!(v["timeStamp"], 0);
    assert!(
        v.get("users").is_none() && v.get("update_users").is_none(),
        "{v}"
    );
    // getCommand: updatestd, once.
    let r = bridge(&app, "getCommand", &format!("token={TOKEN}&SN={SN}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["cmd_list"], json!({"updatestd": ""}), "{v}");
    assert_eq!(v["SN"], SN);
    assert_eq!(v["timeStamp"], v1);
    let r = bridge(&app, "getCommand", &format!("token={TOKEN}&SN={SN}")).await;
    assert_eq!(r.json()["cmd_list"], json!({}));
    // The bridge then asks for all its devices.
    let r = bridge(
        &app,
        "updateStudent",
        &format!("token={TOKEN}&SN=all_devices&timeStamp=0"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.is_ascii(), "{}", r.body);
    assert!(r.body.contains(r"\u9648"), "{}", r.body);
    let v = r.json();
    assert_eq!(v["SN"], "all_devices");
    assert_eq!(v["timeStamp"], v1);
    let user = json!({"PIN": "1", "Name": "陈", "Pri": "0", "Passwd": "123", "Card": "15895470", "Grp": "1", "TZ": "0001000100000000"});
    assert_eq!(v["users"], json!([user.clone()]));
    assert_eq!(v["update_users"], json!([user]));
    assert_eq!(v["dele_users"], json!([]));
    // After all_devices the terminals hold v1: no updatestd for the sibling either.
    let r = bridge(&app, "getCommand", &format!("token={TOKEN}&SN={SN2}")).await;
    assert_eq!(r.json()["cmd_list"], json!({}));
    // Every roster change moves the version; a deletion is delivered as dele_users.
    let (st, v) = app
        .ops_post("/ops/staff", json!({"pin": "2", "name": "王五", "pri": 14}))
        .await;
    assert_eq!(st, 201);
    let v2 = v["version"].as_i64().unwrap();
    assert!(v2 > v1);
    let r = app
        .http
        .delete(app.url("/ops/staff/1"))
        .bearer_auth(common::OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v3 = r.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap();
    assert!(v3 > v2);
    let r = bridge(&app, "getCommand", &format!("token={TOKEN}&SN={SN}")).await;
    assert_eq!(r.json()["cmd_list"], json!({"updatestd": ""}));
    let v = bridge(
        &app,
        "updateStudent",
        &format!("token={TOKEN}&SN=all_devices&timeStamp={v1}"),
    )
    .await
    .json();
    assert_eq!(v["timeStamp"], v3);
    assert_eq!(v["users"][0]["PIN"], "2");
    assert_eq!(v["users"].as_array().unwrap().len(), 1);
    assert_eq!(v["dele_users"][0]["PIN"], "1");
    // Deleting again: 404, no version change.
    let r = app
        .http
        .delete(app.url("/ops/staff/1"))
        .bearer_auth(common::OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.db.roster_version().await.unwrap(), v3);
    // An operator's reprovision lets the next terminal-specific reply carry users, once.
    let (st, _) = app
        .ops_post(
            &format!("/ops/terminals/{SN}/commands"),
            json!({"name": "reprovision"}),
        )
        .await;
    assert_eq!(st, 201);
    let v = bridge(&app, "updateStudent", UPDATE_USER_BODY).await.json();
    assert_eq!(v["users"][0]["PIN"], "2", "{v}");
    assert_eq!(v["timeStamp"], v3);
    let v = bridge(&app, "updateStudent", UPDATE_USER_BODY).await.json();
    assert!(v.get("users").is_none(), "{v}");
}

#[tokio::test]
async fn get_command_delivers_each_command_once_and_clear_all_is_never_accepted() {
    let app = setup().await;
    let (st, v) = app
        .ops_post(
            &format!("/ops/terminals/{SN}/commands"),
            json!({"name": "getErroLog", "args": {"s_timeStamp": 1501700000, "e_timeStamp": 1501800000}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["state"], "pending");
    let (st, _) = app
        .ops_post(
            &format!("/ops/terminals/{SN}/commands"),
            json!({"name": "syncAttLog"}),
        )
        .await;
    assert_eq!(st, 201);
    for bad in [
        json!({"name": "clearAll"}),
        json!({"name": "Shell", "args": {"cmd": "ls"}}),
        json!({"name": "getErroLog", "args": {"start": 1, "end": 2}}),
        json!({"name": "whatever"}),
        json!({"name": 5}),
        json!({"nme": "INFO"}),
    ] {
        let (st, v) = app
            .ops_post(&format!("/ops/terminals/{SN}/commands"), bad.clone())
            .await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"].is_string());
    }
    let (st, _) = app
        .ops_post(
            "/ops/terminals/nope/commands",
            json!({"name": "syncAttLog"}),
        )
        .await;
    assert_eq!(st, 404);
    let r = bridge(&app, "getCommand", &format!("token={TOKEN}&SN={SN}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["cmd_list"],
        json!({"getErroLog": {"s_timeStamp": 1501700000, "e_timeStamp": 1501800000}, "syncAttLog": ""})
    );
    // The bridge never acknowledges: never again.
    let r = bridge(&app, "getCommand", &format!("token={TOKEN}&SN={SN}")).await;
    assert_eq!(r.json()["cmd_list"], json!({}));
    let (_, v) = app.ops_get(&format!("/ops/terminals/{SN}/commands")).await;
    assert_eq!(v["total"], 2);
    for c in v["data"].as_array().unwrap() {
        assert_eq!(c["state"], "sent");
        assert_eq!(c["attempts"], 1);
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM terminal_commands WHERE name = 'clearAll'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn error_logs_are_stored_from_the_empty_action() {
    let app = setup().await;
    let logs = json!([{"SN": SN, "type": "CMD_FAILED", "content": "DATA UPDATE USERINFO PIN=1 ;return -1 . 2017-08-03 11:30:28", "wTime": 1501731028}]);
    let body =
        serde_urlencoded::to_string([("token", TOKEN), ("logs", &logs.to_string())]).unwrap();
    let r = bridge(&app, "", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"state": "OK"}));
    // The seed's shape, on the /attendance path.
    let r = send(
        &app,
        app.http.post(app.url("/attendance")).json(&json!({"token": TOKEN, "log_data": {"SN": SN, "type": "CMD_FAILED", "content": "x", "wTime": 1}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, v) = app.ops_get(&format!("/ops/terminals/{SN}/errors")).await;
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["data"][1]["type"], "CMD_FAILED");
}

// ---- native iclock -----------------------------------------------------------------------

#[tokio::test]
async fn tv1_handshake_sends_options_with_the_terminals_zone_as_text_with_a_date() {
    let app = setup().await;
    let r = iclock_get(&app, &format!("/iclock/cdata?SN={NATIVE}&options=all&pushver=2.2.14&language=83&pushcommkey=4a9594af164f2b9779b59e8554b5df26")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    assert!(r.date, "the firmware sets its clock from Date");
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines[0], format!("GET OPTION FROM: {NATIVE}"));
    for want in [
        "ATTLOGStamp=None",
        "TimeZone=8",
        "Realtime=1",
        "Delay=10",
        "ErrorDelay=30",
        "Encrypt=None",
        "ServerVer=2.4.1",
        "TransFlag=TransData AttLog\tOpLog\tEnrollUser\tChgUser",
    ] {
        assert!(lines.contains(&want), "{want} missing from {:?}", r.body);
    }
    // A Kolkata terminal gets minutes.
    let (st, _) = app
        .ops_post(
            "/ops/terminals",
            json!({"sn": "IN1", "token": "another-token", "timezone": "Asia/Kolkata"}),
        )
        .await;
    assert_eq!(st, 201);
    let r = iclock_get(&app, "/iclock/cdata?SN=IN1&options=all").await;
    assert!(r.body.lines().any(|l| l == "TimeZone=330"), "{}", r.body);
    assert!(
        r.body.lines().any(|l| l == "Stamp=None"),
        "legacy names without pushver"
    );
    // The stamp is echoed after an upload.
    let r = iclock_post(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&table=ATTLOG&Stamp=9999"),
        "1001\t2026-08-20 09:15:00\t0\t1\t0\t0\t0\n",
    )
    .await;
    assert_eq!(r.body, "OK:1");
    let r = iclock_get(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&options=all&pushver=2.4.1"),
    )
    .await;
    assert!(
        r.body.lines().any(|l| l == "ATTLOGStamp=9999"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn tv2_attlog_is_idempotent_and_bad_lines_never_fail_the_batch() {
    let app = setup().await;
    let path = format!("/iclock/cdata?SN={NATIVE}&table=ATTLOG&Stamp=9999");
    let body =
        "1001\t2026-08-20 09:15:00\t0\t1\t0\t0\t0\n1002\t2026-08-20 09:16:30\t1\t15\t0\t0\t0\n";
    let r = iclock_post(&app, &path, body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK:2"));
    assert!(r.content_type.starts_with("text/plain"));
    let r = iclock_post(&app, &path, body).await;
    assert_eq!(r.body, "OK:2");
    assert_eq!(punches(&app).await, 2);
    let r = iclock_post(
        &app,
        &path,
        "1003\t2026-08-20 09:17:00\t0\t1\t0\t0\t0\nabc\tnot-a-date\t0\t1\n1004\t2026-08-20 09:18:00\t0\t1\t0\t0\t0\n",
    )
    .await;
    assert_eq!(r.body, "OK:3");
    assert_eq!(punches(&app).await, 4);
    let q = app.db.quarantined(NATIVE).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].raw, "abc\tnot-a-date\t0\t1");
    // Four-column lines, CRLF, 12 columns, trailing newline, no Stamp, empty body.
    let r = iclock_post(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&table=ATTLOG"),
        "1005\t2026-10-04 08:30:00\t0\t15\r\n1006\t2026-10-04 08:31:00\t0\t15\t0\t0\t0\t0\t36.5\t0\t+28800\tZXg=\r\n",
    )
    .await;
    assert_eq!(r.body, "OK:2");
    let r = iclock_post(&app, &format!("/iclock/cdata?SN={NATIVE}&table=ATTLOG"), "").await;
    assert_eq!(r.body, "OK:0");
    assert_eq!(punches(&app).await, 6);
}

#[tokio::test]
async fn tv11_an_unregistered_terminal_gets_a_handshake_but_its_uploads_are_refused() {
    let app = setup().await;
    let r = iclock_get(&app, "/iclock/cdata?SN=UNCLAIMED1&options=all").await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("GET OPTION FROM: UNCLAIMED1"));
    let r = iclock_get(&app, "/iclock/getrequest?SN=UNCLAIMED1").await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let r = iclock_post(
        &app,
        "/iclock/cdata?SN=UNCLAIMED1&table=ATTLOG",
        "1\t2026-08-20 09:15:00\t0\t1\n",
    )
    .await;
    assert_ne!(r.status, 200);
    assert!(!r.body.contains("OK"));
    for bad in [
        "/iclock/cdata?table=ATTLOG",
        "/iclock/cdata?SN=a%0Ab&table=ATTLOG",
    ] {
        let r = iclock_post(&app, bad, "1\t2026-08-20 09:15:00\n").await;
        assert_eq!(r.status, 400, "{bad}");
    }
    // Access-control tables are refused, not acknowledged and lost.
    let r = iclock_post(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&table=rtlog"),
        "time=2026-08-20 09:15:00\tpin=1\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(punches(&app).await, 0);
}

#[tokio::test]
async fn tv3_to_tv6_commands_are_polled_acknowledged_and_duplicates_change_nothing() {
    let app = setup().await;
    // TV3
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    // TV4: INFO kept.
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}&INFO=Ver%202.0.12-20150625,0,0,0,192.168.16.27,10,7,15,0,111")).await;
    assert_eq!(r.body, "OK");
    let t = app.db.terminal(NATIVE).await.unwrap().unwrap();
    assert_eq!(
        t.info.as_deref(),
        Some("Ver 2.0.12-20150625,0,0,0,192.168.16.27,10,7,15,0,111")
    );
    assert_eq!(t.last_seen_via.as_deref(), Some("iclock"));
    // TV5: queue a user, a delete (with a REBOOT queued first: it must come last) and INFO.
    let q = |body: Value| {
        let app = &app;
        async move {
            let (st, v) = app
                .ops_post(&format!("/ops/terminals/{NATIVE}/commands"), body)
                .await;
            assert_eq!(st, 201, "{v}");
            v["id"].as_i64().unwrap()
        }
    };
    let reboot = q(json!({"name": "REBOOT"})).await;
    let add = q(json!({"name": "DATA UPDATE USERINFO", "args": {"PIN": "1001", "Name": "Alice", "Pri": "0", "Passwd": "", "Card": "", "Grp": "1", "TZ": "0000000000000000"}})).await;
    let del = q(json!({"name": "DATA DELETE USERINFO", "args": {"PIN": "1002"}})).await;
    let info = q(json!({"name": "INFO"})).await;
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}")).await;
    assert!(r.content_type.starts_with("text/plain"));
    let w = |id: i64| id * 10 + 1;
    assert_eq!(
        r.body,
        format!(
            "C:{}:DATA UPDATE USERINFO PIN=1001\tName=Alice\tPri=0\tPasswd=\tCard=\tGrp=1\tTZ=0000000000000000\nC:{}:DATA DELETE USERINFO PIN=1002\nC:{}:INFO\nC:{}:REBOOT\n",
            w(add),
            w(del),
            w(info),
            w(reboot)
        )
    );
    // Nothing is handed out twice while it waits for its result.
    assert_eq!(
        iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}"))
            .await
            .body,
        "OK"
    );
    // TV6
    let results = format!(
        "ID={}&Return=0&CMD=DATA\nID={}&Return=-10&CMD=DATA\nID={}&Return=0&CMD=INFO\n~DeviceName=K40\nFWVersion=Ver 6.60\nUserCount=12\nTransactionCount=4031\n",
        w(add),
        w(del),
        w(info)
    );
    let r = iclock_post(&app, &format!("/iclock/devicecmd?SN={NATIVE}"), &results).await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let (_, v) = app
        .ops_get(&format!("/ops/terminals/{NATIVE}/commands"))
        .await;
    let by_id = |id: i64| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(add)["state"], "acked");
    assert_eq!(
        by_id(del)["state"],
        "acked",
        "deleting a missing user is done"
    );
    assert_eq!(by_id(del)["return_code"], -10);
    assert_eq!(by_id(info)["state"], "acked");
    assert!(
        by_id(info)["result"]
            .as_str()
            .unwrap()
            .contains("TransactionCount=4031")
    );
    assert_eq!(by_id(reboot)["state"], "sent");
    assert_eq!(by_id(reboot)["destructive"], true);
    // A duplicate, and a failure of the same attempt afterwards, change nothing.
    let r = iclock_post(
        &app,
        &format!("/iclock/devicecmd?SN={NATIVE}"),
        &format!(
            "ID={}&Return=-1&CMD=DATA\nID=garbage&Return=x\nID=99999999&Return=0&CMD=INFO\n",
            w(add)
        ),
    )
    .await;
    assert_eq!(r.body, "OK");
    let (_, v2) = app
        .ops_get(&format!("/ops/terminals/{NATIVE}/commands"))
        .await;
    assert_eq!(v2, v);
    // The destructive command is never re-sent, however long it waits.
    let later = app.state.terminals.clock().now_ms() + 3_600_000;
    let again = app
        .db
        .take_native_commands(NATIVE, later, 60_000, 5, 200)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // A failed command is recorded as CMD_FAILED against it.
    let bad =
        q(json!({"name": "DATA UPDATE USERINFO", "args": {"PIN": "1003", "Name": "Bob"}})).await;
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}")).await;
    assert!(r.body.starts_with(&format!("C:{}:", w(bad))), "{}", r.body);
    iclock_post(
        &app,
        &format!("/iclock/devicecmd?SN={NATIVE}"),
        &format!("ID={}&Return=-1002&CMD=DATA\n", w(bad)),
    )
    .await;
    let (_, e) = app
        .ops_get(&format!("/ops/terminals/{NATIVE}/errors"))
        .await;
    assert_eq!(e["data"][0]["type"], "CMD_FAILED");
    assert_eq!(e["data"][0]["command_id"], bad);
    let (_, ts) = app.ops_get("/ops/terminals").await;
    let t = ts["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sn"] == NATIVE)
        .unwrap();
    assert_eq!(
        (t["open_commands"].as_i64(), t["failed_commands"].as_i64()),
        (Some(1), Some(1)),
        "{t}"
    );
}

#[tokio::test]
async fn unanswered_native_commands_are_resent_with_new_attempt_ids_then_failed() {
    let app = setup().await;
    let (_, v) = app
        .ops_post(
            &format!("/ops/terminals/{NATIVE}/commands"),
            json!({"name": "CHECK"}),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    let t0 = app.state.terminals.clock().now_ms();
    let mut wires = Vec::new();
    for attempt in 0..5 {
        let now = t0 + attempt * 61_000;
        let got = app
            .db
            .take_native_commands(NATIVE, now, 60_000, 5, 200)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        wires.push(got[0].wire_id.clone().unwrap());
        // Not again before the ack timeout.
        assert!(
            app.db
                .take_native_commands(NATIVE, now + 1_000, 60_000, 5, 200)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        wires,
        (1..=5)
            .map(|a| (id * 10 + a).to_string())
            .collect::<Vec<_>>()
    );
    let got = app
        .db
        .take_native_commands(NATIVE, t0 + 5 * 61_000, 60_000, 5, 200)
        .await
        .unwrap();
    assert!(got.is_empty());
    let c = app.db.command(NATIVE, id).await.unwrap().unwrap();
    assert_eq!(c.state.as_str(), "failed");
    // A late success of the first attempt is no longer applied (already failed).
    assert!(
        !app.db
            .finish_command(NATIVE, id, 1, true, 0, "late", t0)
            .await
            .unwrap()
    );
    // Whereas while still sent, a late success of an older attempt confirms it, and an
    // older failure does not override the newer attempt.
    let (_, v) = app
        .ops_post(
            &format!("/ops/terminals/{NATIVE}/commands"),
            json!({"name": "LOG"}),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    app.db
        .take_native_commands(NATIVE, t0, 60_000, 5, 200)
        .await
        .unwrap();
    app.db
        .take_native_commands(NATIVE, t0 + 61_000, 60_000, 5, 200)
        .await
        .unwrap();
    assert!(
        !app.db
            .finish_command(NATIVE, id, 1, false, -1, "old failure", t0)
            .await
            .unwrap()
    );
    assert!(
        app.db
            .finish_command(NATIVE, id, 1, true, 0, "old success", t0)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn tv7_operlog_users_are_observed_and_tv10_tv12_are_acknowledged() {
    let app = setup().await;
    let r = iclock_post(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&table=OPERLOG&Stamp=9999"),
        "OPLOG 30\t0\t2026-08-20 09:20:00\t1003\t0\t0\t0\nUSER PIN=1003\tName=Bob\tPri=0\tPasswd=\tCard=[15CD5B07]\tGrp=1\tTZ=0000000000000000\tVerify=0\tViceCard=\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "OK:2"));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM terminal_users_seen WHERE pin = '1003' AND card = '[15CD5B07]'"
        )
        .await,
        1
    );
    // Observed users never enter the master roster.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM staff").await, 0);
    let t = app.db.terminal(NATIVE).await.unwrap().unwrap();
    assert_eq!(t.operlog_stamp.as_deref(), Some("9999"));
    let r = iclock_post(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&table=options"),
        "FingerFunOn=1,FaceFunOn=1,UserPicURLFunOn=1",
    )
    .await;
    assert_eq!(r.body, "OK");
    let r = iclock_post(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&table=ATTPHOTO&Stamp=1"),
        "PIN=20260820091500-1001.jpg\nSN=0316144680030\nsize=3\nCMD=uploadphoto\0abc",
    )
    .await;
    assert_eq!(r.body, "OK");
    let r = iclock_get(&app, &format!("/iclock/ping?SN={NATIVE}")).await;
    assert_eq!(r.body, "OK");
}

#[tokio::test]
async fn tv8_tv9_backfill_and_count_commands_render_and_record_their_results() {
    let app = setup().await;
    let window = json!({"StartTime": "2026-08-01 00:00:00", "EndTime": "2026-08-20 23:59:59"});
    let (_, a) = app
        .ops_post(
            &format!("/ops/terminals/{NATIVE}/commands"),
            json!({"name": "DATA QUERY ATTLOG", "args": window}),
        )
        .await;
    let (_, b) = app
        .ops_post(
            &format!("/ops/terminals/{NATIVE}/commands"),
            json!({"name": "VERIFY SUM ATTLOG", "args": window}),
        )
        .await;
    let (a, b) = (
        a["id"].as_i64().unwrap() * 10 + 1,
        b["id"].as_i64().unwrap() * 10 + 1,
    );
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}")).await;
    assert_eq!(
        r.body,
        format!(
            "C:{a}:DATA QUERY ATTLOG StartTime=2026-08-01 00:00:00\tEndTime=2026-08-20 23:59:59\nC:{b}:VERIFY SUM ATTLOG StartTime=2026-08-01 00:00:00\tEndTime=2026-08-20 23:59:59\n"
        )
    );
    let r = iclock_post(&app, &format!("/iclock/devicecmd?SN={NATIVE}"), &format!("ID={a}&Return=0&CMD=DATA\nID={b}&Return=0&CMD=VERIFY SUM ATTLOG&StartTime=2026-08-01 00:00:00&EndTime=2026-08-20 23:59:59&AttlogCount=1234\n")).await;
    assert_eq!(r.body, "OK");
    let (_, v) = app
        .ops_get(&format!("/ops/terminals/{NATIVE}/commands"))
        .await;
    assert!(
        v["data"][0]["result"]
            .as_str()
            .unwrap()
            .contains("AttlogCount=1234"),
        "{v}"
    );
    assert_eq!(v["data"][1]["state"], "acked");
    let (st, _) = app
        .ops_post(
            &format!("/ops/terminals/{NATIVE}/commands"),
            json!({"name": "DATA QUERY ATTLOG", "args": {"StartTime": "yesterday"}}),
        )
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn native_terminals_get_roster_changes_as_userinfo_commands() {
    let app = setup().await;
    app.ops_post(
        "/ops/staff",
        json!({"pin": "1001", "name": "Alice", "pri": 0}),
    )
    .await;
    app.ops_post(
        "/ops/staff",
        json!({"pin": "1002", "name": "Bob", "pri": 14, "terminals": [SN]}),
    )
    .await;
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}")).await;
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.body);
    assert!(lines[0].ends_with(":DATA UPDATE USERINFO PIN=1001\tName=Alice\tPri=0\tPasswd=\tCard=\tGrp=1\tTZ=0000000000000000"), "{}", r.body);
    // Nothing more until the roster changes.
    assert_eq!(
        iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}"))
            .await
            .body,
        "OK"
    );
    let r = app
        .http
        .delete(app.url("/ops/staff/1001"))
        .bearer_auth(common::OPS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}")).await;
    assert!(
        r.body.ends_with(":DATA DELETE USERINFO PIN=1001\n"),
        "{}",
        r.body
    );
    // Staff for an unknown terminal is refused and changes nothing.
    let before = app.db.roster_version().await.unwrap();
    let (st, _) = app
        .ops_post(
            "/ops/staff",
            json!({"pin": "9", "name": "X", "pri": 0, "terminals": ["nope"]}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(app.db.roster_version().await.unwrap(), before);
}

// ---- durability ------------------------------------------------------------------------

#[tokio::test]
async fn queued_commands_survive_a_restart_on_both_polls() {
    let app = setup().await;
    let (st, _) = app
        .ops_post(
            &format!("/ops/terminals/{SN}/commands"),
            json!({"name": "syncAttLog"}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, v) = app
        .ops_post(
            &format!("/ops/terminals/{NATIVE}/commands"),
            json!({"name": "INFO"}),
        )
        .await;
    assert_eq!(st, 201);
    let id = v["id"].as_i64().unwrap();
    assert_eq!(bridge(&app, "newRecord", NEW_RECORD_BODY).await.status, 200);
    let url = app.db_url.clone();
    let tdb = app.stop().await;
    let app = spawn_on(tdb, url, "").await;
    let r = bridge(&app, "getCommand", &format!("token={TOKEN}&SN={SN}")).await;
    assert_eq!(
        r.json()["cmd_list"],
        json!({"syncAttLog": ""}),
        "{}",
        r.body
    );
    let r = iclock_get(&app, &format!("/iclock/getrequest?SN={NATIVE}")).await;
    assert_eq!(r.body, format!("C:{}:INFO\n", id * 10 + 1));
    // An attempt sent before a restart is answered after it.
    let app2_url = app.db_url.clone();
    let tdb = app.stop().await;
    let app = spawn_on(tdb, app2_url, "").await;
    iclock_post(
        &app,
        &format!("/iclock/devicecmd?SN={NATIVE}"),
        &format!("ID={}&Return=0&CMD=INFO\n", id * 10 + 1),
    )
    .await;
    assert_eq!(
        app.db
            .command(NATIVE, id)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "acked"
    );
    assert_eq!(punches(&app).await, 1);
}

// ---- ops ---------------------------------------------------------------------------------

#[tokio::test]
async fn ops_lists_terminals_with_liveness_and_pages_punches_with_filters() {
    let app = setup().await;
    let mut lines = String::new();
    for i in 0..25 {
        lines.push_str(&format!(
            "{}\t2026-08-20 09:{:02}:00\t0\t1\n",
            1000 + i % 2,
            i
        ));
    }
    assert_eq!(
        iclock_post(
            &app,
            &format!("/iclock/cdata?SN={NATIVE}&table=ATTLOG"),
            &lines
        )
        .await
        .body,
        "OK:25"
    );
    let (st, v) = app.ops_get("/ops/terminals").await;
    assert_eq!(st, 200);
    assert_eq!(v["total"], 3);
    let native = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sn"] == NATIVE)
        .unwrap();
    assert_eq!(native["punches"], 25);
    assert_eq!(native["quarantined"], 0);
    assert_eq!(native["open_commands"], 0);
    assert_eq!(native["silent"], false);
    assert_eq!(native["last_seen_via"], "iclock");
    let bridge_t = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sn"] == SN)
        .unwrap();
    assert_eq!(bridge_t["silent"], true, "never heard");
    // A terminal heard long ago is shown silent.
    sqlx::query("UPDATE terminals SET last_seen_at = last_seen_at - 3600000 WHERE sn = $1")
        .bind(NATIVE)
        .execute(app.db.pool())
        .await
        .unwrap();
    let (_, v) = app.ops_get("/ops/terminals").await;
    let native = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sn"] == NATIVE)
        .unwrap();
    assert_eq!(native["silent"], true);

    let (_, v) = app.ops_get("/ops/punches?size=10&page=3").await;
    assert_eq!(v["total"], 25);
    assert_eq!(v["data"].as_array().unwrap().len(), 5);
    assert_eq!(v["data"][0]["time"], "2026-08-20 09:04:00", "newest first");
    let (_, v) = app
        .ops_get(&format!("/ops/punches?sn={NATIVE}&pin=1001"))
        .await;
    assert_eq!(v["total"], 12);
    let (_, v) = app
        .ops_get("/ops/punches?from=2026-08-20%2009:10:00&to=2026-08-20%2009:12:00")
        .await;
    assert_eq!(v["total"], 3, "{v}");
    for bad in [
        "?page=0",
        "?size=5000",
        "?from=yesterday",
        "?sn=x&bogus=1",
        "?page=abc",
    ] {
        let (st, v) = app.ops_get(&format!("/ops/punches{bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    let r = app.http.get(app.url("/ops/punches")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Registration is checked.
    for bad in [
        json!({"sn": "all_devices", "token": "12345678"}),
        json!({"sn": "a b", "token": "12345678"}),
        json!({"sn": "X1", "token": "short"}),
        json!({"sn": "X1", "token": "12345678", "timezone": "Mars/Base"}),
        json!({"sn": "X1"}),
        json!({"sn": NATIVE, "token": "12345678", "extra": 1}),
    ] {
        let (st, v) = app.ops_post("/ops/terminals", bad.clone()).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    let (st, _) = app
        .ops_post("/ops/terminals", json!({"sn": NATIVE, "token": "12345678"}))
        .await;
    assert_eq!(st, 409);
    for bad in [
        json!({"pin": "", "name": "a", "pri": 0}),
        json!({"pin": "1", "name": "", "pri": 0}),
        json!({"pin": "1", "name": "a\tb", "pri": 0}),
        json!({"pin": "1", "name": "a", "pri": 3}),
        json!({"pin": "1", "name": "a", "pri": 0, "tz": "1"}),
        json!({"pin": "1", "name": "a", "pri": 0, "passwd": "abc"}),
    ] {
        let (st, v) = app.ops_post("/ops/staff", bad.clone()).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[tokio::test]
async fn attendance_metrics_are_exported() {
    let app = setup().await;
    assert_eq!(bridge(&app, "syncRecord", SYNC_BODY).await.status, 200);
    assert_eq!(bridge(&app, "syncRecord", SYNC_BODY).await.status, 200);
    let text = app.metrics_text().await;
    for name in [
        "kioskd_attendance_punches_total",
        "kioskd_attendance_punch_duplicates_total",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn chinese_language_terminals_get_names_in_gbk_and_others_in_utf8() {
    let app = setup().await;
    let (st, _) = app
        .ops_post(
            "/ops/terminals",
            json!({"sn": "EN1", "token": "another-token"}),
        )
        .await;
    assert_eq!(st, 201);
    iclock_get(
        &app,
        &format!("/iclock/cdata?SN={NATIVE}&options=all&pushver=2.2.14&language=83"),
    )
    .await;
    iclock_get(
        &app,
        "/iclock/cdata?SN=EN1&options=all&pushver=2.2.14&language=69",
    )
    .await;
    let (st, _) = app
        .ops_post("/ops/staff", json!({"pin": "7", "name": "陈", "pri": 0}))
        .await;
    assert_eq!(st, 201);
    let raw = |sn: &'static str| {
        let app = &app;
        async move {
            app.http
                .get(app.url(&format!("/iclock/getrequest?SN={sn}")))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let gbk = raw(NATIVE).await;
    assert!(gbk.windows(2).any(|w| w == [0xB3, 0xC2]), "{gbk:?}");
    let utf8 = String::from_utf8(raw("EN1").await).unwrap();
    assert!(utf8.contains("Name=陈"), "{utf8}");
    // A keypad enrolment uploaded in GBK is read back as 陈.
    let body = [b"USER PIN=8\tName=".as_slice(), &[0xB3, 0xC2], b"\tPri=0\n"].concat();
    let r = app
        .http
        .post(app.url(&format!("/iclock/cdata?SN={NATIVE}&table=OPERLOG&Stamp=5")))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "OK:1");
    let name: String = sqlx::query_scalar("SELECT name FROM terminal_users_seen WHERE pin = '8'")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(name, "陈");
}

#[tokio::test]
async fn a_native_terminal_sharing_a_bridge_token_still_gets_its_roster_commands() {
    let app = setup().await;
    add_terminal(&app, "NATIVE2", TOKEN).await;
    let (st, _) = app
        .ops_post("/ops/staff", json!({"pin": "5", "name": "Eve", "pri": 0}))
        .await;
    assert_eq!(st, 201);
    let v = bridge(
        &app,
        "updateStudent",
        &format!("token={TOKEN}&SN=all_devices&timeStamp=0"),
    )
    .await
    .json();
    assert_eq!(v["users"][0]["PIN"], "5");
    let r = iclock_get(&app, "/iclock/getrequest?SN=NATIVE2").await;
    assert!(
        r.body.contains(":DATA UPDATE USERINFO PIN=5\tName=Eve"),
        "{}",
        r.body
    );
}
