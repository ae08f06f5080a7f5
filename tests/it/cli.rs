//! The operator CLI registers devices and maintainers in the same database the server
//! uses.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::json;

fn kioskd(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kioskd"))
        .args(args)
        .env("KIOSKD_DATABASE__URL", db_url)
        .env("KIOSKD_LOG__FILTER", "error")
        .env("KIOSKD_MAINTAINER_PASSWORD", "s3cret-pass")
        .output()
        .expect("kioskd runs")
}

#[tokio::test]
async fn device_add_and_maintainer_add_reach_the_server() {
    let (tdb, url) = TestDb::new().await;
    let out = kioskd(
        &url,
        &[
            "device",
            "add",
            "--code",
            "aa:bb:cc:dd:ee:01",
            "--name",
            "VR 1",
            "--charge-mode",
            "7",
            "--city",
            "上海",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("AA-BB-CC-DD-EE-01"));
    let dup = kioskd(
        &url,
        &[
            "device",
            "add",
            "--code",
            "AA-BB-CC-DD-EE-01",
            "--name",
            "again",
            "--charge-mode",
            "7",
        ],
    );
    assert!(!dup.status.success(), "a duplicate device is refused");
    let bad = kioskd(
        &url,
        &[
            "device",
            "add",
            "--code",
            "nope",
            "--name",
            "x",
            "--charge-mode",
            "7",
        ],
    );
    assert!(!bad.status.success());
    let out = kioskd(&url, &["maintainer", "add", "--username", "tech1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let app = spawn_on(tdb, url, "").await;
    let (_, devs) = app.ops_get("/ops/devices").await;
    assert_eq!(devs["total"], 1);
    assert_eq!(devs["data"][0]["device_code"], "AA-BB-CC-DD-EE-01");
    assert_eq!(devs["data"][0]["charge_mode"], 7);
    assert_eq!(devs["data"][0]["city"], "上海");
    app.check("AA-BB-CC-DD-EE-01").await;
    let v = app
        .kiosk(
            "/windows/maintain/login",
            json!({"device_code":"AA-BB-CC-DD-EE-01","username":"tech1","password":"s3cret-pass"}),
        )
        .await;
    assert_eq!(v["success"], true, "{v}");
    app.stop().await;
}
