//! The nightly Sync AttLog at field size (issue 5): the bridge re-sends every punch since
//! it booted, tens of thousands of records in one form body, every night. It must be
//! stored once and cheaply. `kioskd-bench attendance` measures the same thing.

use crate::common;

use std::time::{Duration, Instant};

use common::spawn_app;
use serde_json::json;

/// Generous for an unoptimised test build on a shared 2-core machine (measured there:
/// ~4.5 s for the first sync, ~3 s for a re-send); a quadratic slip is far above it.
const BUDGET: Duration = Duration::from_secs(30);

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
async fn a_50000_record_sync_is_stored_once_within_budget_and_resent_cheaply() {
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
        let t = Instant::now();
        let r = app
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let took = t.elapsed();
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap(),
            json!({"state": "OK", "SN": "3637165101475"})
        );
        assert!(took < BUDGET, "round {round} took {took:?}");
        let (total, _) = app
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
