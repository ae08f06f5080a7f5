//! The test harness: the real application on port 0 over a fresh database (an SQLite
//! file, or a PostgreSQL database of its own when `KIOSKD_TEST_PG` is set), phones with
//! cookie jars, a kiosk speaking dialect A, and the money invariants.
#![allow(dead_code)]

pub mod standin;

use std::time::Duration;

use kioskd::Application;
use kioskd::config::Config;
use kioskd::http::AppState;
use kioskd::store::Db;
use serde_json::{Value, json};
use sqlx::Row;

pub const OPS: &str = "test-ops-token";

/// Where tests keep their databases.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, name: String },
}

impl TestDb {
    pub async fn new() -> (Self, String) {
        match std::env::var("KIOSKD_TEST_PG") {
            Ok(admin) if !admin.is_empty() => {
                let name = format!("kioskd_t_{}", kioskd_actors::ids::new_token());
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                    .expect("KIOSKD_TEST_PG must reach a PostgreSQL server");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                let url = format!("{base}/{name}");
                (TestDb::Postgres { admin, name }, url)
            }
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/kioskd.db", dir.path().display());
                (TestDb::Sqlite(dir), url)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin, name } = self {
            let (admin, name) = (admin.clone(), name.clone());
            // Best effort, outside the test's runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .connect(&admin)
                        .await
                    {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&pool)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub db: Db,
    pub http: reqwest::Client,
    /// The app's background tasks (none runs once `stop` has returned).
    pub tasks: kioskd::tasks::Tasks,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
    pub _db: TestDb,
    pub db_url: String,
}

/// The test defaults every app starts from (dev identity, a fixed ops token).
fn base_layer(db_url: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n# Rate limits are tested against the binary (tests/it/edge.rs).\nrate_limits = false\n[database]\nurl = \"{db_url}\"\n[ops]\ntoken = \"{OPS}\"\n[sms]\ndebug_code = \"123456\"\n[identity]\nmode = \"dev\"\ncookie_secret = \"test-cookie-secret\"\n"
    )
}

pub fn config(db_url: &str, extra: &str) -> Config {
    let base = base_layer(db_url);
    Config::load_layers(None, &[&base, extra]).expect("test config")
}

/// Starts the app with several TOML layers over the test defaults (later ones win).
pub async fn spawn_layers(layers: &[&str]) -> TestApp {
    let (tdb, url) = TestDb::new().await;
    let base = base_layer(&url);
    let mut all = vec![base.as_str()];
    all.extend_from_slice(layers);
    let cfg = Config::load_layers(None, &all).expect("test config");
    start(
        cfg,
        tdb,
        url,
        std::sync::Arc::new(kioskd::sms::LogSender),
        None,
    )
    .await
}

/// Starts the app on a given clock (`Clock::starting_at(ms)` pins the wall time the app
/// reads; under `#[tokio::test(start_paused = true)]` it moves only as tokio time does).
/// `extra` is TOML merged over the test defaults.
pub async fn spawn_clocked(extra: &str, clock: kioskd_actors::Clock) -> TestApp {
    let (tdb, url) = TestDb::new().await;
    let cfg = config(&url, extra);
    start(
        cfg,
        tdb,
        url,
        std::sync::Arc::new(kioskd::sms::LogSender),
        Some(clock),
    )
    .await
}

/// Builds and runs the app on port 0.
async fn start(
    cfg: Config,
    tdb: TestDb,
    url: String,
    sms: std::sync::Arc<dyn kioskd::sms::SmsSender>,
    clock: Option<kioskd_actors::Clock>,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A manual clock unless the test brought its own: `TestApp::advance` moves it past a
    // rule's limit (a captcha's lifetime, a token's ttl) instead of a sleep.
    let clock = clock
        .unwrap_or_else(|| kioskd_actors::Clock::manual(kioskd_actors::Clock::system().now_ms()));
    let app = Application::builder(cfg, listener)
        .sms(sms)
        .clock(clock)
        .build()
        .await
        .expect("app builds");
    let addr = app.local_addr().unwrap();
    let state = app.state();
    let tasks = app.tasks();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(async move {
        app.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        base: format!("http://{addr}"),
        db: state.db.clone(),
        state,
        tasks,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        join: Some(join),
        _db: tdb,
        db_url: url,
    }
}

/// Starts the app. `extra` is TOML merged over the test defaults.
pub async fn spawn_app(extra: &str) -> TestApp {
    let (tdb, url) = TestDb::new().await;
    spawn_on(tdb, url, extra).await
}

pub async fn spawn_on(tdb: TestDb, url: String, extra: &str) -> TestApp {
    spawn_with(tdb, url, extra, std::sync::Arc::new(kioskd::sms::LogSender)).await
}

/// Starts the app again on an existing database, on a given clock: a restart after an
/// outage is `spawn_on_clocked(tdb, url, extra, Clock::manual(before.now_ms() + outage))`
/// instead of sleeping through the outage.
pub async fn spawn_on_clocked(
    tdb: TestDb,
    url: String,
    extra: &str,
    clock: kioskd_actors::Clock,
) -> TestApp {
    let cfg = config(&url, extra);
    start(
        cfg,
        tdb,
        url,
        std::sync::Arc::new(kioskd::sms::LogSender),
        Some(clock),
    )
    .await
}

/// Starts the app with a given SMS sender (tests read the codes it is given).
pub async fn spawn_with(
    tdb: TestDb,
    url: String,
    extra: &str,
    sms: std::sync::Arc<dyn kioskd::sms::SmsSender>,
) -> TestApp {
    let cfg = config(&url, extra);
    start(cfg, tdb, url, sms, None).await
}

/// Polls `f` until it holds, for at most `within`; panics naming `what` otherwise. The
/// way to wait for an effect (a row written, a frame sent, an actor gone) instead of
/// sleeping for a guessed time.
pub async fn wait_until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("not within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// The app's wall clock now (unix ms), as billing reads it.
    pub fn now_ms(&self) -> i64 {
        self.state.coord.clock().now_ms()
    }

    /// Moves the app's clock forward by `by` (every part of the app reads the same
    /// clock). Rules checked when asked (captcha lifetimes, token ttls, order expiry, a
    /// session's end) see it at once; timers already set still fire on tokio's clock.
    /// Only on the default manual clock or one made with `Clock::manual`.
    pub fn advance(&self, by: Duration) {
        let clock = self.state.coord.clock();
        let before = clock.now_ms();
        clock.advance(by);
        assert!(
            clock.now_ms() >= before + by.as_millis() as i64,
            "this app's clock cannot be moved by hand (not Clock::manual)"
        );
    }

    /// Rows in the user's ledger that debit (negative amounts).
    pub async fn debits(&self, user: i64) -> usize {
        self.db
            .ledger(user)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.amount < 0)
            .count()
    }

    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take()
            && let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(15), j).await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        std::mem::replace(&mut self._db, TestDb::Sqlite(tempfile::tempdir().unwrap()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn ops_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(OPS)
            .json(&body)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn ops_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(OPS)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn add_device(&self, code: &str, price: i64) {
        let (st, v) = self
            .ops_post(
                "/ops/devices",
                json!({"device_code": code, "name": "seat", "charge_mode": price, "province": "上海", "city": "上海", "area": "浦东", "location": "A1"}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }

    /// A kiosk posting dialect A.
    pub async fn kiosk(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    pub async fn check(&self, code: &str) -> Value {
        self.kiosk("/windows/check", json!({"device_code": code}))
            .await
    }

    pub async fn token(&self, code: &str) -> Option<String> {
        self.check(code).await["result"]["token"]
            .as_str()
            .map(str::to_string)
    }

    /// A signed-in, registered phone with `fen` recharged. Returns it and its user id.
    pub async fn phone(&self, openid: &str, mobile: &str, fen: i64) -> (Phone, i64) {
        let p = Phone::new(&self.base);
        let v = p
            .get(&format!("/dev/login?openid={openid}&nickname=n{openid}"))
            .await;
        let id = v["result"]["id"].as_i64().unwrap();
        let v = p
            .post("/wechat/login", json!({"mobile": mobile, "code": "123456"}))
            .await;
        assert_eq!(v["success"], true, "{v}");
        if fen > 0 {
            let v = p.get(&format!("/wechat/recharge/{fen}")).await;
            assert_eq!(v["result"], "success", "{v}");
        }
        (p, id)
    }

    /// `balance = total - used = sum(ledger) >= 0` for every user, and no ledger row
    /// without its user.
    pub async fn assert_invariants(&self) {
        let rows =
            sqlx::query("SELECT id, total_account, used_account, balance_account FROM users")
                .fetch_all(self.db.pool())
                .await
                .unwrap();
        for r in rows {
            let id: i64 = r.try_get(0).unwrap();
            let total: i64 = r.try_get(1).unwrap();
            let used: i64 = r.try_get(2).unwrap();
            let bal: i64 = r.try_get(3).unwrap();
            let sum = self.db.ledger_sum(id).await.unwrap();
            assert!(bal >= 0, "user {id}: negative balance {bal}");
            assert_eq!(bal, total - used, "user {id}: balance != total - used");
            assert_eq!(bal, sum, "user {id}: balance != sum(ledger)");
        }
    }

    /// The app's `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of the series `name{label}` (e.g. `source="balance"`) in `/metrics`;
    /// 0 when it is not there yet.
    pub async fn metric(&self, name: &str, label: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn balance(&self, user: i64) -> i64 {
        self.db
            .user_by_id(user)
            .await
            .unwrap()
            .unwrap()
            .balance_account
    }

    /// (ended, reason, cost_money, billed_ms) of the user's latest session.
    pub async fn last_session(&self, user: i64) -> (bool, Option<String>, i64, i64, i64, i64) {
        let r = sqlx::query(
            "SELECT ended_at, end_reason, cost_money, billed_ms, started_at, reserved_units FROM sessions WHERE user_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(user)
        .fetch_one(self.db.pool())
        .await
        .unwrap();
        let ended: Option<i64> = r.try_get(0).unwrap();
        (
            ended.is_some(),
            r.try_get(1).unwrap(),
            r.try_get(2).unwrap(),
            r.try_get(3).unwrap(),
            r.try_get(4).unwrap(),
            r.try_get(5).unwrap(),
        )
    }

    /// Waits (bounded) until the user's latest session has ended.
    pub async fn wait_ended(
        &self,
        user: i64,
        within: Duration,
    ) -> (bool, Option<String>, i64, i64, i64, i64) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let s = self.last_session(user).await;
            if s.0 || tokio::time::Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Counts of rows that any money or session change would touch.
    pub async fn fingerprint(&self) -> (i64, i64, i64, i64) {
        let one = |sql: &'static str| {
            let pool = self.db.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        (
            one("SELECT COUNT(*) FROM sessions").await,
            one("SELECT COUNT(*) FROM ledger").await,
            one("SELECT CAST(COALESCE(SUM(balance_account), 0) AS BIGINT) FROM users").await,
            one("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL").await,
        )
    }
}

/// What a browser sends with a fetch from kioskd's own pages (the phone's
/// state-changing requests refuse anything else: `http::csrf`).
pub fn same_origin() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "sec-fetch-site",
        reqwest::header::HeaderValue::from_static("same-origin"),
    );
    h
}

/// A phone: its own cookie jar.
pub struct Phone {
    pub base: String,
    pub http: reqwest::Client,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Phone {
    pub fn new(base: &str) -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Self {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(same_origin())
                .build()
                .unwrap(),
            jar,
        }
    }

    /// The `Cookie` header this phone sends (for WebSocket clients).
    pub fn cookie_header(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url: reqwest::Url = self.base.parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    /// A GET whose response is returned as is (redirects are not followed).
    pub async fn get_raw(&self, url: &str) -> reqwest::Response {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{}", self.base, url)
        };
        self.http.get(url).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{}", self.base, path))
            .json(&body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    pub async fn scan(&self, code: &str) -> Value {
        self.get(&format!("/windows/login/{code}?from=playing"))
            .await
    }
}
