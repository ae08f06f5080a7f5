//! The dashboards and alert rules proven against a real Prometheus (issue 7): kioskd
//! runs with a scripted fleet (kiosks on WebSocket and on HTTP polling, sessions ticking,
//! one balance exhaustion, one heartbeat timeout, an operator command and a broadcast,
//! punches and a terminal command), a real `prometheus` scrapes it every second and evaluates
//! `dashboards/alerts.yml`, and every query of both Grafana boards and every alert
//! expression is evaluated through Prometheus' HTTP API: each parses and each board
//! query returns series. One fault is injected (a running session left past its
//! `paid_until`, as a stuck meter would leave it) and its alert must fire.
//!
//! Needs the `prometheus` binary (Debian's package): `KIOSKD_TEST_PROMETHEUS=/path`, or
//! `prometheus` on PATH. Without it the test says so and passes, unless
//! `KIOSKD_REQUIRE_PROMETHEUS=1` (set by `.ci/run`) makes a missing binary a failure.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kioskd_actors::Clock;
use serde_json::{Value, json};

const WS_CODES: [&str; 3] = [
    "AA-00-00-00-00-01",
    "AA-00-00-00-00-02",
    "AA-00-00-00-00-03",
];
const HTTP_CODES: [&str; 2] = ["BB-00-00-00-00-01", "BB-00-00-00-00-02"];

fn prometheus_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KIOSKD_TEST_PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    })
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `expr` of every panel target of a Grafana board.
fn board_queries(path: &Path) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((p["title"].as_str().unwrap_or("").to_string(), e.to_string()));
            }
        }
    }
    out
}

/// A board query as Grafana would send it: variables filled in.
fn concrete(expr: &str) -> String {
    expr.replace("$instance", ".*")
        .replace("$__rate_interval", "30s")
        .replace("${datasource}", "")
}

/// `alerts.yml` with every `for:` cut to 0s, so a fault fires at the next evaluation.
fn rules_now(src: &str) -> String {
    src.lines()
        .map(|l| {
            if l.trim_start().starts_with("for:") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}for: 0s")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Prometheus {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(bin: &Path, target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules =
            rules_now(&std::fs::read_to_string(root().join("dashboards/alerts.yml")).unwrap());
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: kioskd\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n",
            dir.path().join("rules.yml").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
        let port = free_port();
        let child = tokio::process::Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let p = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = p.http.get(format!("{}/-/ready", p.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        p
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        self.http
            .get(format!(
                "{}{path}?{}",
                self.base,
                serde_urlencoded::to_string(query).unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// (parsed, number of series).
    async fn query(&self, expr: &str) -> (Result<(), String>, usize) {
        let v = self.api("/api/v1/query", &[("query", expr)]).await;
        if v["status"] != "success" {
            return (Err(v["error"].as_str().unwrap_or("?").to_string()), 0);
        }
        (Ok(()), v["data"]["result"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_evaluate_against_a_real_prometheus() {
    let Some(bin) = prometheus_bin() else {
        assert!(
            std::env::var("KIOSKD_REQUIRE_PROMETHEUS").is_err(),
            "KIOSKD_REQUIRE_PROMETHEUS is set but no prometheus binary was found"
        );
        eprintln!("SKIPPED: no prometheus binary (set KIOSKD_TEST_PROMETHEUS or install it)");
        return;
    };
    // The broker's and the cluster's series exist only with Redis configured (CI sets
    // KIOSKD_TEST_REDIS).
    let redis_url = std::env::var("KIOSKD_TEST_REDIS").ok();
    let redis = redis_url
        .as_ref()
        .map(|u| format!("[redis]\nurl = \"{u}\"\n"))
        .unwrap_or_default();
    let app = spawn_app(&format!(
        "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 3\nlow_balance_minutes = 1\n[metrics]\nsample_interval_ms = 250\n[ws]\nallow_unsigned = true\n{redis}"
    ))
    .await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // -- the fleet ----------------------------------------------------------------------
    for c in WS_CODES.iter().chain(HTTP_CODES.iter()) {
        app.add_device(c, 5).await;
    }
    for code in WS_CODES {
        let mut ac = kioskd::agent::AgentConfig::new(&app.base, code);
        ac.heartbeat = Duration::from_millis(500);
        let agent = Arc::new(Mutex::new(kioskd::agent::Agent::new(Clock::system())));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            kioskd::agent::run(ac, agent, Clock::system(), async move {
                let _ = stop.changed().await;
            })
            .await;
        });
    }
    // HTTP kiosks poll `check`; the second one goes silent after its session starts.
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (i, code) in HTTP_CODES.iter().enumerate() {
        let http = app.http.clone();
        let url = app.url("/windows/check");
        let code = code.to_string();
        let silent = silent.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                if !(i == 1 && silent.load(std::sync::atomic::Ordering::SeqCst)) {
                    let _ = http
                        .post(&url)
                        .json(&json!({"device_code": code}))
                        .send()
                        .await;
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        });
    }
    // Wait for every WS kiosk to hold its socket.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app
        .state
        .kiosk_sockets
        .load(std::sync::atomic::Ordering::SeqCst)
        < WS_CODES.len()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "kiosks did not connect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every kiosk, the polling HTTP ones too, is online before the phones scan.
    common::wait_until(
        "every kiosk is online",
        Duration::from_secs(10),
        async || {
            let (_, v) = app.ops_get("/ops/devices").await;
            v["data"].as_array().is_some_and(|d| {
                d.len() == WS_CODES.len() + HTTP_CODES.len()
                    && d.iter().all(|d| d["online"] == true)
            })
        },
    )
    .await;

    // A long session on a WS kiosk (ticks every second), an exhaustion on another, a
    // heartbeat timeout on the silent HTTP kiosk.
    let (rich, _) = app.phone("oProm1", "17700000011", 100_000).await;
    assert_eq!(rich.scan(WS_CODES[0]).await["result"], "success");
    let (poor, poor_id) = app.phone("oProm2", "17700000012", 10).await;
    assert_eq!(poor.scan(WS_CODES[1]).await["result"], "success");
    let (gone, gone_id) = app.phone("oProm3", "17700000013", 1000).await;
    assert_eq!(gone.scan(HTTP_CODES[1]).await["result"], "success");
    silent.store(true, std::sync::atomic::Ordering::SeqCst);
    // An operator command to a connected kiosk (acknowledged by its agent).
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{}/command", WS_CODES[2]),
            json!({"name": "message", "text": "hello from the test"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    // A broadcast to every connected kiosk (its fan-out timed).
    let (st, v) = app
        .ops_post(
            "/ops/broadcast",
            json!({"name": "message", "text": "closing at 22:00"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    // Pricing: a member group made (the node reloads its catalog), a package made and
    // granted to a user.
    let (st, v) = app
        .ops_post(
            "/ops/pricing/groups",
            json!({"name": "prom members", "discount_pct": 10}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, pkg) = app
        .ops_post(
            "/ops/pricing/packages",
            json!({"name": "prom night", "minutes": 120, "price": 1500, "valid_days": 30}),
        )
        .await;
    assert_eq!(st, 201, "{pkg}");
    let (st, v) = app
        .ops_post(
            &format!("/ops/users/{gone_id}/packages"),
            json!({"package_id": pkg["id"], "reason": "prometheus test"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // A refused upgrade (wrong ops token).
    let refused = tokio_tungstenite::connect_async(format!(
        "{}/ws/ops?token=wrong",
        app.base.replace("http://", "ws://")
    ))
    .await;
    assert!(refused.is_err());
    // Attendance: a native terminal uploads punches (one unreadable line, then the same
    // batch again), a bridge terminal gets a command.
    let (st, _) = app
        .ops_post(
            "/ops/terminals",
            json!({"sn": "PROM0001", "token": "prom-native-token", "timezone": "Asia/Shanghai"}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, _) = app
        .ops_post(
            "/ops/terminals",
            json!({"sn": "PROM0002", "token": "gh_prom_bridge", "timezone": "Asia/Shanghai"}),
        )
        .await;
    assert_eq!(st, 201);
    let r = app
        .http
        .get(app.url("/iclock/cdata?SN=PROM0001&options=all"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = app
            .http
            .post(app.url("/iclock/cdata?SN=PROM0001&table=ATTLOG&Stamp=1"))
            .body("1001\t2026-11-22 09:01:02\t0\t1\t0\t0\t0\nnot a punch\n1002\t2026-11-22 09:03:04\t0\t1\t0\t0\t0\n")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (st, _) = app
        .ops_post(
            "/ops/terminals/PROM0002/commands",
            json!({"name": "syncAttLog"}),
        )
        .await;
    assert_eq!(st, 201);
    let r = app
        .http
        .post(app.url("/weiphp30/index.php?s=/addon/DailyTime/DailyTime/getCommand"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=gh_prom_bridge&SN=PROM0002")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let ended = app.wait_ended(poor_id, Duration::from_secs(20)).await;
    assert_eq!(ended.1.as_deref(), Some("balance_exhausted"));
    let ended = app.wait_ended(gone_id, Duration::from_secs(20)).await;
    assert_eq!(ended.1.as_deref(), Some("heartbeat_timeout"));

    // -- the injected fault: a running session nobody bills (a stuck meter) ---------------
    app.add_device("CC-00-00-00-00-01", 5).await;
    let (_stuck_phone, stuck_id) = app.phone("oProm4", "17700000014", 1000).await;
    let now = Clock::system().now_ms();
    let device_id: i64 =
        sqlx::query_scalar("SELECT id FROM devices WHERE code = 'CC-00-00-00-00-01'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO sessions (token, user_id, device_id, charge_mode, billing_mode, started_at, reserved_units, last_heard_at, utime)
         VALUES ('stuckstuckstuckstuckstuckstuck01', $1, $2, 5, 'prepaid', $3, 1, $4, $4)",
    )
    .bind(stuck_id)
    .bind(device_id)
    .bind(now - 600_000)
    .bind(now)
    .execute(app.db.pool())
    .await
    .unwrap();

    // -- Prometheus -----------------------------------------------------------------------
    let target = app.base.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&bin, &target).await;

    let mut queries = board_queries(&root().join("dashboards/kioskd-live.json"));
    queries.extend(board_queries(
        &root().join("dashboards/kioskd-platform.json"),
    ));
    assert!(queries.len() >= 40, "both boards have their queries");

    // Wait (bounded) until every board query returns series; then report the laggards.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let failures = loop {
        let mut failures = Vec::new();
        for (title, expr) in &queries {
            if redis_url.is_none()
                && (expr.contains("kioskd_broker_") || expr.contains("kioskd_cluster_"))
            {
                continue;
            }
            let e = concrete(expr);
            match prom.query(&e).await {
                (Err(why), _) => failures.push(format!("{title}: does not parse: {why}: {e}")),
                (Ok(()), 0) => failures.push(format!("{title}: no series: {e}")),
                _ => {}
            }
        }
        if failures.is_empty() || tokio::time::Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        failures.is_empty(),
        "board queries failing against a real Prometheus:\n{}",
        failures.join("\n")
    );

    // Every alert rule is loaded and evaluates cleanly.
    let rules = prom.api("/api/v1/rules", &[]).await;
    let rules: Vec<Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    let want = std::fs::read_to_string(root().join("dashboards/alerts.yml"))
        .unwrap()
        .matches("- alert:")
        .count();
    assert_eq!(rules.len(), want, "every rule is loaded");
    for r in &rules {
        let (parsed, _) = prom.query(r["query"].as_str().unwrap()).await;
        assert!(parsed.is_ok(), "{}: {parsed:?}", r["name"]);
    }
    // The injected fault fires its alert; nothing says metrics are absent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = prom.api("/api/v1/alerts", &[]).await;
        let alerts = alerts["data"]["alerts"].as_array().unwrap().clone();
        let firing = |name: &str| {
            alerts
                .iter()
                .any(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
        };
        assert!(!firing("KioskdMetricsAbsent"), "{alerts:#?}");
        if firing("KioskdSessionsOverdue") {
            let a = alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == "KioskdSessionsOverdue")
                .unwrap();
            assert_eq!(a["labels"]["deadline"], "paid_until", "{a}");
            assert_eq!(a["labels"]["severity"], "page");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "KioskdSessionsOverdue never fired: {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The other rules are quiet on a healthy fleet (sandbox mode aside: tests run it).
    let alerts = prom.api("/api/v1/alerts", &[]).await;
    let noisy: Vec<String> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
        .filter(|n| n != "KioskdSessionsOverdue" && n != "KioskdPaymentsSandboxMode")
        .collect();
    assert!(
        noisy.is_empty(),
        "alerts firing on a healthy fleet: {noisy:?}"
    );
    let _ = stop_tx.send(true);
}
