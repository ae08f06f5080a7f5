//! The attendance CLI (`kioskd terminal ...`, `kioskd staff ...`) against a database the
//! real binary opens, with the same checks as the ops API.

use std::process::Command;

use kioskd::store::Db;
use kioskd_actors::terminal::TerminalStore;

fn kioskd(db_url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kioskd"))
        .args(args)
        .env("KIOSKD_DATABASE__URL", db_url)
        .env("KIOSKD_LOG__FILTER", "error")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_cli_registers_terminals_staff_and_commands_with_the_ops_checks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/kioskd.db", dir.path().display());
    let ok = |args: &[&str]| {
        let (ok, text) = kioskd(&url, args);
        assert!(ok, "{args:?}: {text}");
        text
    };
    ok(&[
        "terminal",
        "add",
        "--sn",
        "3637165101475",
        "--token",
        "gh_2837e31e28ed",
        "--name",
        "前门",
    ]);
    ok(&[
        "terminal",
        "add",
        "--sn",
        "IN1",
        "--token",
        "gh_2837e31e28ed",
        "--timezone",
        "Asia/Kolkata",
    ]);
    let t = ok(&[
        "staff",
        "add",
        "--pin",
        "0042",
        "--name",
        "陈",
        "--pri",
        "14",
        "--terminal",
        "IN1",
    ]);
    assert!(t.contains("roster version 1"), "{t}");
    ok(&[
        "terminal",
        "command",
        "--sn",
        "IN1",
        "--name",
        "DATA QUERY ATTLOG",
        "--args",
        r#"{"StartTime":"2026-08-01 00:00:00","EndTime":"2026-08-02 00:00:00"}"#,
    ]);
    ok(&["staff", "delete", "--pin", "0042"]);
    for bad in [
        vec![
            "terminal",
            "add",
            "--sn",
            "3637165101475",
            "--token",
            "gh_2837e31e28ed",
        ],
        vec![
            "terminal",
            "add",
            "--sn",
            "all_devices",
            "--token",
            "gh_2837e31e28ed",
        ],
        vec!["terminal", "add", "--sn", "X", "--token", "short"],
        vec![
            "terminal",
            "add",
            "--sn",
            "X",
            "--token",
            "long-enough",
            "--timezone",
            "Nowhere",
        ],
        vec!["terminal", "command", "--sn", "IN1", "--name", "clearAll"],
        vec!["terminal", "command", "--sn", "nope", "--name", "INFO"],
        vec![
            "terminal", "command", "--sn", "IN1", "--name", "INFO", "--args", "[1]",
        ],
        vec!["staff", "add", "--pin", "1", "--name", "x", "--pri", "3"],
        vec![
            "staff",
            "add",
            "--pin",
            "1",
            "--name",
            "x",
            "--terminal",
            "nope",
        ],
        vec!["staff", "delete", "--pin", "0042"],
    ] {
        let (ok, text) = kioskd(&url, &bad);
        assert!(!ok, "{bad:?} should fail: {text}");
    }
    let db = Db::connect(&url, 1).await.unwrap();
    let t = db.terminal("IN1").await.unwrap().unwrap();
    assert_eq!(t.timezone, "Asia/Kolkata");
    assert_eq!(
        db.terminal("3637165101475")
            .await
            .unwrap()
            .unwrap()
            .timezone,
        "Asia/Shanghai"
    );
    assert_eq!(
        db.terminals_by_token(&kioskd::attendance::token_hash("gh_2837e31e28ed"))
            .await
            .unwrap()
            .len(),
        2
    );
    let staff = db.all_staff().await.unwrap();
    assert_eq!(staff.len(), 1);
    assert!(staff[0].staff.deleted);
    assert_eq!(staff[0].staff.name, "陈");
    assert_eq!(staff[0].terminals, vec!["IN1".to_string()]);
    assert_eq!(
        db.roster_version().await.unwrap(),
        2,
        "failed commands changed nothing"
    );
    assert_eq!(db.list_commands("IN1").await.unwrap().len(), 1);
}
