//! The nightly Sync AttLog at field size (issue 5): the bridge re-sends every punch since
//! it booted, tens of thousands of records in one form body, every night. It must be
//! stored once. How fast is `kioskd-bench attendance`'s figure (BENCHMARKS.md), never a
//! timed assertion here: this test holds what it stores, and that a re-send adds nothing.

use crate::common;

use common::spawn_app;
use serde_json::json;

fn sync_body(n: usize) -> String {
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let (pin, slot) = (i % 500, i / 500);
            json!({
                "PIN": format!("{:012}", 100_000_000_000u64 + pin as u64),
                "TIME": format!("2026-08-{:02} {:02}:{:02}:{:02}", 1 + slot / 1440, slot % 1440 / 60, slot % 60, pin % 60),
                "STATUS": 255, "VERIFY": "2", "WORKCODE": "0", "RESERVED1": "0", "RESERVED2": "0",
            })
        })
        .collect();
    serde_urlencoded::to_string([
        ("token", "gh_2837e31e28ed"),
        ("SN", "3637165101475"),
        ("records", &serde_json::Value::Array(records).to_string()),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50000_record_sync_is_stored_once_and_a_resend_adds_nothing() {
    let app = spawn_app("").await;
    let (st, v) = app
        .ops_post(
            "/ops/terminals",
            json!({"sn": "3637165101475", "token": "gh_2837e31e28ed", "timezone": "Asia/Shanghai"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let body = sync_body(50_000);
    assert!(body.len() > 10_000_000, "field-sized body: {}", body.len());
    let url = app.url("/weiphp30/index.php?s=/addon/DailyTime/DailyTime/syncRecord");
    for round in 0..2 {
        let r = app
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap(),
            json!({"state": "OK", "SN": "3637165101475"})
        );
        let kioskd::store::Page { total, .. } = app
            .db
            .punches(&kioskd::store::PunchFilter::default(), 1, 1)
            .await
            .unwrap();
        assert_eq!(total, 50_000, "round {round}");
    }
    assert!(
        app.db
            .quarantined("3637165101475")
            .await
            .unwrap()
            .is_empty()
    );
}
