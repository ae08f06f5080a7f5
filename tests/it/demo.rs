//! `kioskd demo`: the demo machinery on port 0 with a few kiosks at a fast pace. The
//! printed admin sign-in works, and the ops API shows what a newcomer should see: online
//! kiosks, a running session and ledger rows; shutdown removes the temp dir.

use std::time::Duration;

use kioskd::demo::{Demo, DemoOptions, Pace};
use serde_json::{Value, json};

async fn get(http: &reqwest::Client, url: String) -> Value {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_live_venue_and_cleans_up() {
    let demo = Demo::start(
        DemoOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            kiosks: 6,
            seed: Some(7),
            pace: Pace::fast(),
        },
        None,
    )
    .await
    .expect("the demo starts");
    let dir = demo.dir().to_path_buf();
    assert!(dir.join("kioskd.db").exists(), "a throw-away SQLite file");
    let banner = demo.banner();
    let admin = &demo.operators[0];
    assert_eq!(
        (admin.username.as_str(), admin.role.as_str()),
        ("demo", "admin")
    );
    assert!(banner.contains(&admin.password), "{banner}");
    assert!(
        banner.contains(&format!("{}/console/", demo.base)),
        "{banner}"
    );
    assert_eq!(
        demo.operators
            .iter()
            .map(|a| a.role.as_str())
            .collect::<Vec<_>>(),
        ["admin", "staff", "viewer"]
    );

    // The console's sign-in with the printed password.
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/ops/login", demo.base))
        .json(&json!({"username": "demo", "password": admin.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me = get(&http, format!("{}/ops/me", demo.base)).await;
    assert_eq!(me["role"], "admin", "{me}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut sessions, mut ledger) = (0, 0);
    let mut punched = false;
    let postpaid = loop {
        let devices = get(&http, format!("{}/ops/devices", demo.base)).await;
        let data = devices["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(data.len(), 6, "{devices}");
        let online = data.iter().filter(|d| d["online"] == true).count();
        let maintain = data.iter().filter(|d| d["status"] == "maintain").count();
        let postpaid = data.iter().filter(|d| d["client_id"].is_string()).count();
        let s = get(&http, format!("{}/ops/sessions", demo.base)).await;
        sessions = sessions.max(s["total"].as_u64().unwrap_or(0));
        if ledger == 0 {
            for id in 1..=4 {
                let r = http
                    .get(format!("{}/ops/users/{id}/ledger", demo.base))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    let v: Value = r.json().await.unwrap();
                    ledger += v["total"].as_u64().unwrap_or(0);
                }
            }
        }
        if !punched {
            let p = get(&http, format!("{}/ops/punches", demo.base)).await;
            punched = p.to_string().contains("1001");
        }
        if online >= 3 && sessions >= 1 && ledger >= 1 && maintain == 1 && punched {
            break postpaid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "online {online}, sessions {sessions}, ledger {ledger}, maintain {maintain}, punched {punched}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(postpaid >= 1, "a postpaid dialect-B kiosk");

    demo.shutdown().await.expect("a clean shutdown");
    assert!(!dir.exists(), "the temp dir is gone: {}", dir.display());
}
