//! kioskd-bench: measures what the targets are about, on this machine.
//!
//! * `polling`: N devices in session; closed-loop clients hammer `/windows/keepalive`
//!   and `/windows/check` on random devices, then a static axum route in the same
//!   process with the same clients; throughput and latency percentiles side by side.
//! * `ticks`: N concurrent sessions with start times spread over a window; every unit
//!   reservation's delay from its boundary to its committed debit (the `billing` event
//!   is published after the commit).
//! * `ws` / `cluster`: kiosks on WebSockets (one node: memory and push latency; two
//!   nodes on one Redis: forwarded pushes), see `bench_ws/`.
//! * `passivation`: N registered devices all activated once, then only some of them
//!   used; RSS and live device actors before and after `actors.idle_seconds` passes
//!   (run once with `--idle-seconds 0`, never passivating, to compare).
//! * `attendance`: a bridge's nightly Sync AttLog of N records (the real bridge's form
//!   body: a URL-encoded JSON array), first with every record new, then re-sent whole as
//!   the bridge does every night; then the same records as native iclock ATTLOG posts.
//!
//! Figures and the commands that produced them live in BENCHMARKS.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[path = "bench_ws/mod.rs"]
mod bench_ws;
use hdrhistogram::Histogram;
use kioskd::Application;
use kioskd::config::Config;
use kioskd::http::AppState;
use kioskd_actors::ports::UserRef;
use kioskd_actors::{Event, device::StartRefusal};
use rand::Rng;
use serde_json::json;

#[derive(Parser)]
#[command(name = "kioskd-bench", about = "kioskd benchmarks (see BENCHMARKS.md)")]
struct Cli {
    /// Database URL (default: a fresh SQLite file in a temporary folder).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Legacy polling throughput and latency beside a static route.
    Polling {
        #[arg(long, default_value_t = 5000)]
        devices: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds per route per round.
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        /// Rounds; the routes take turns within each round, so drift in the machine's
        /// load (a shared VM) hits them alike.
        #[arg(long, default_value_t = 5)]
        rounds: u64,
    },
    /// Kiosks on WebSockets against a `kioskd serve` child: memory and push latency.
    Ws {
        #[arg(long, default_value_t = 19000)]
        kiosks: usize,
        /// Loopback source addresses to spread the connections over (127.0.0.1..).
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// Sessions started over HTTP during the run.
        #[arg(long, default_value_t = 500)]
        sessions: usize,
        /// Single-device commands to time.
        #[arg(long, default_value_t = 500)]
        singles: usize,
        /// Broadcasts to all kiosks to time.
        #[arg(long, default_value_t = 3)]
        broadcasts: usize,
        /// Attach to a server started by hand (e.g. under a profiler) at this base URL;
        /// devices are registered through its ops API and only the connections are made.
        #[arg(long)]
        attach: Option<String>,
        /// With --attach: the server's process id (for its RSS).
        #[arg(long, default_value_t = 0)]
        pid: u32,
        /// With --attach: its ops token.
        #[arg(long, default_value = "")]
        ops_token: String,
        /// Then the same kiosks and broadcasts, with the same client, against the Node
        /// `ws` peer (this script; `cd benches/peer && npm ci` first), side by side.
        #[arg(long)]
        peer: Option<String>,
        /// The Node binary for --peer.
        #[arg(long, default_value = "node")]
        node: String,
        /// Then against `bare-server` too: the same stack as kioskd, nothing else.
        #[arg(long)]
        bare: bool,
    },
    /// A bare Rust WebSocket server (a map from code to socket, one frame a broadcast),
    /// the floor `ws --bare` measures kioskd against.
    #[command(hide = true)]
    BareServer {
        #[arg(long, env = "PORT")]
        port: u16,
        #[arg(long, env = "TOKEN")]
        token: String,
    },
    /// Operator push latency and memory per kiosk measured from outside: worker
    /// processes hold the kiosks, commands go through the ops API with an operator's
    /// personal token; the same run against the Node `ws` peer (benches/peer), side by
    /// side with the ratios.
    Push {
        #[arg(long, default_value_t = 19000)]
        kiosks: usize,
        /// Load generator processes.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Loopback source addresses (127.0.0.1..).
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// Commands to time, one at a time.
        #[arg(long, default_value_t = 400)]
        singles: usize,
        #[arg(long, default_value_t = 1)]
        broadcasts: usize,
        /// Measure only kioskd / only the peer.
        #[arg(long)]
        only: Option<String>,
        #[arg(long, default_value = "node")]
        node: String,
        #[arg(long, default_value = "benches/peer/server.js")]
        peer_script: String,
    },
    /// A `push` load generator process (started by `push`).
    #[command(hide = true)]
    PushWorker {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        count: usize,
        /// Every `stride`-th kiosk from `first`.
        #[arg(long, default_value_t = 1)]
        stride: usize,
        #[arg(long, default_value_t = 4)]
        sources: u8,
    },
    /// Two `kioskd serve` children on one database and one Redis: kiosks on node A,
    /// phones and operators on node B; forwarded push latency.
    Cluster {
        #[arg(long, default_value_t = 2000)]
        kiosks: usize,
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// Sessions started by phones on node B.
        #[arg(long, default_value_t = 300)]
        sessions: usize,
        /// Operator commands (half on node B, half on node A).
        #[arg(long, default_value_t = 600)]
        singles: usize,
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis: String,
    },
    /// Billing ticks of many concurrent sessions.
    Ticks {
        #[arg(long, default_value_t = 20000)]
        sessions: usize,
        #[arg(long, default_value_t = 60)]
        unit_seconds: u64,
        /// Session starts are spread over this many seconds.
        #[arg(long, default_value_t = 40)]
        spread_seconds: u64,
        /// Units to observe per session after the last start.
        #[arg(long, default_value_t = 1)]
        units: u64,
        /// Every device on a time-of-day rate plan (through a zone) and every third user
        /// holding a package, so each unit takes the priced path (issue 16).
        #[arg(long)]
        priced: bool,
    },
    /// RSS with many registered devices of which few stay active, with and without
    /// passivation of idle device actors.
    Passivation {
        #[arg(long, default_value_t = 100_000)]
        devices: usize,
        /// Devices that keep polling (`check`) every second.
        #[arg(long, default_value_t = 5_000)]
        active: usize,
        /// `actors.idle_seconds` (0: never passivate).
        #[arg(long, default_value_t = 10)]
        idle_seconds: u64,
        /// How long the active devices poll after every device was activated.
        #[arg(long, default_value_t = 40)]
        seconds: u64,
    },
    /// A bridge's nightly sync batch and native ATTLOG uploads.
    Attendance {
        #[arg(long, default_value_t = 50_000)]
        records: usize,
        /// Re-sends of the whole batch after the first (all duplicates).
        #[arg(long, default_value_t = 3)]
        resends: usize,
        /// Lines per native ATTLOG post (real captures show ~128).
        #[arg(long, default_value_t = 128)]
        lines_per_post: usize,
    },
}

struct Running {
    state: AppState,
    base: String,
    _tmp: Option<tempfile::TempDir>,
}

async fn start(db: Option<String>, extra: &str) -> anyhow::Result<Running> {
    let (url, tmp) = match db {
        Some(u) => (u, None),
        None => {
            let d = tempfile::tempdir()?;
            (format!("sqlite://{}/bench.db", d.path().display()), Some(d))
        }
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n# Every simulated kiosk comes from loopback.\nmax_connections = 100000\nmax_connections_per_address = 0\n[database]\nurl = \"{url}\"\nmax_connections = 32\n[identity]\nmode = \"dev\"\n[log]\nfilter = \"warn\"\n{extra}"
    );
    let cfg = Config::load_with(None, &toml)?;
    kioskd::telemetry::init_logging(&cfg.log.filter);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = Application::build(cfg, listener).await?;
    let addr = app.local_addr()?;
    let state = app.state();
    tokio::spawn(async move {
        let _ = app.run(std::future::pending()).await;
    });
    Ok(Running {
        state,
        base: format!("http://{addr}"),
        _tmp: tmp,
    })
}

fn code(i: usize) -> String {
    let b = (i as u32).to_be_bytes();
    format!("B0-00-{:02X}-{:02X}-{:02X}-{:02X}", b[0], b[1], b[2], b[3])
}

/// Registers `n` devices and `n` users (with a recharge each) in one transaction, then
/// starts a session per device through the coordinator, `spread` apart.
async fn seed_sessions(
    s: &AppState,
    n: usize,
    balance: i64,
    spread: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    seed_rows(s, n, balance).await?;
    start_seeded(s, n, balance, spread).await
}

/// `n` devices (flat 5 fen per unit) and `n` users with `balance` (device `i` and user
/// `i + 1` belong together).
async fn seed_rows(s: &AppState, n: usize, balance: i64) -> anyhow::Result<()> {
    let now = s.coord.clock().now_ms();
    let pool = s.db.pool();
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        existing == 0,
        "the database already holds {existing} devices: the bench seeds its own, so give it an empty database (for PostgreSQL: DROP DATABASE and CREATE DATABASE again)"
    );
    let mut tx = pool.begin().await?;
    for i in 0..n {
        sqlx::query("INSERT INTO devices (code, name, charge_mode, billing_mode, ctime, utime) VALUES ($1, $2, 5, 'prepaid', $3, $3)")
            .bind(code(i))
            .bind(format!("bench {i}"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let uid: i64 = sqlx::query_scalar(
            "INSERT INTO users (openid, mobile, total_account, used_account, balance_account, ctime, utime) VALUES ($1, $2, $3, 0, $3, $4, $4) RETURNING id",
        )
        .bind(format!("bench{i}"))
        .bind(format!("1{:010}", i))
        .bind(balance)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO ledger (id, user_id, amount, kind, created_at) VALUES ($1, $2, $3, 'recharge', $4)")
            .bind(format!("recharge:bench{i}"))
            .bind(uid)
            .bind(balance)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// [`seed_sessions`] with prices: one time-of-day plan (a different rate every half hour
/// of the week, 3–9 fen a minute) for every device through a zone, and a 600-minute
/// package, usable at any time in that zone, held by every third user.
async fn seed_priced_sessions(
    s: &AppState,
    n: usize,
    balance: i64,
    spread: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    seed_rows(s, n, balance).await?;
    let now = s.coord.clock().now_ms();
    let week: Vec<i64> = (0..7 * 48).map(|i| 3 + (i % 7) as i64).collect();
    let plan = s.db.add_plan("bench time of day", &week, 0, now).await?;
    let zone = s.db.add_zone("bench zone", Some(plan), now).await?;
    let pkg =
        s.db.add_package("bench 10 h", 600, 3000, &[zone], &[], 30, now)
            .await?;
    for i in 0..n {
        let id = (i + 1) as i64;
        s.db.assign_device(id, Some(zone), None).await?;
        if i % 3 == 0 {
            s.db.grant_package(id, pkg, now).await?;
        }
    }
    s.coord.set_pricing(s.db.pricing_catalog(s.cfg.tz()).await?);
    start_seeded(s, n, balance, spread).await
}

/// Starts a session on each of the `n` seeded devices, evenly over `spread`.
async fn start_seeded(
    s: &AppState,
    n: usize,
    balance: i64,
    spread: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    let gap = spread / n.max(1) as u32;
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let due = started + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let c = code(i);
        s.coord.check(&c).await?;
        let user = UserRef {
            id: (i + 1) as i64,
            openid: format!("bench{i}"),
            balance,
        };
        match s.coord.start_session(&c, user).await? {
            Ok(v) => tokens.push((c, v.token)),
            Err(StartRefusal::Internal) => anyhow::bail!("start failed for {c}"),
            Err(e) => anyhow::bail!("start refused for {c}: {e}"),
        }
    }
    Ok(tokens)
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Closed-loop load: `concurrency` workers, each sending one request after the other.
async fn load<F>(concurrency: usize, secs: u64, make: F) -> (u64, Histogram<u64>)
where
    F: Fn(&reqwest::Client, &mut rand::rngs::ThreadRng) -> reqwest::RequestBuilder
        + Send
        + Sync
        + 'static,
{
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let make = make.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = {
                    let mut rng = rand::rng();
                    make(&client, &mut rng)
                };
                let t = Instant::now();
                let r = req.send().await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                if let Ok(r) = r {
                    let _ = r.bytes().await;
                }
                if ok {
                    h.record(t.elapsed().as_micros() as u64).ok();
                    n += 1;
                }
            }
            (n, h)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for t in tasks {
        let (n, h) = t.await.unwrap();
        total += n;
        hist.add(h).unwrap();
    }
    (total, hist)
}

async fn polling(
    db: Option<String>,
    devices: usize,
    concurrency: usize,
    secs: u64,
    rounds: u64,
) -> anyhow::Result<()> {
    let r = start(db, "").await?;
    println!("seeding {devices} devices in session ...");
    let t = Instant::now();
    let tokens = Arc::new(seed_sessions(&r.state, devices, 1_000_000, Duration::ZERO).await?);
    println!("seeded in {:.1} s", t.elapsed().as_secs_f64());

    // The static reference: the same framework, a constant JSON body of similar size.
    let body = serde_json::to_string(
        &json!({"success":true,"result":{"status":1,"msg":"keepalive success","data":{"id":1,"user_id":1,"device_id":1,"cost_money":5,"ctime":"2026-11-22 16:21:45","utime":"2026-11-22 16:21:48","cost_time":3,"charge_mode":5,"balance_account":95,"device_code":"11-22-33-44-55-66-77-86","openid":"oTEST1","cur_time":"2026-11-22 16:21:48"}},"error":null}),
    )?;
    let static_app = axum::Router::new().route(
        "/static",
        axum::routing::post(move || {
            let b = body.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], b) }
        }),
    );
    let sl = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let saddr = sl.local_addr()?;
    tokio::spawn(async move { axum::serve(sl, static_app).await });

    let new_hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (mut ka_n, mut ka_h) = (0, new_hist());
    let (mut ck_n, mut ck_h) = (0, new_hist());
    let (mut st_n, mut st_h) = (0, new_hist());
    for _ in 0..rounds {
        let base = r.base.clone();
        let tk = tokens.clone();
        let (n, h) = load(concurrency, secs, move |c, rng| {
            let (code, token) = &tk[rng.random_range(0..tk.len())];
            c.post(format!("{base}/windows/keepalive"))
                .json(&json!({"token": token, "device_code": code}))
        })
        .await;
        ka_n += n;
        ka_h.add(h)?;
        let base = r.base.clone();
        let tk = tokens.clone();
        let (n, h) = load(concurrency, secs, move |c, rng| {
            let (code, _) = &tk[rng.random_range(0..tk.len())];
            c.post(format!("{base}/windows/check"))
                .json(&json!({"device_code": code}))
        })
        .await;
        ck_n += n;
        ck_h.add(h)?;
        let (n, h) = load(concurrency, secs, move |c, _| {
            c.post(format!("http://{saddr}/static"))
                .json(&json!({"device_code": "11-22-33-44-55-66"}))
        })
        .await;
        st_n += n;
        st_h.add(h)?;
    }
    let secs = secs * rounds;
    let rate = |n: u64| n as f64 / secs as f64;
    println!(
        "\n{devices} devices in session, {concurrency} closed-loop clients, {secs} s per route over {rounds} interleaved rounds"
    );
    println!("| route | requests/s | vs static | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, n, h) in [
        ("POST /windows/keepalive", ka_n, &ka_h),
        ("POST /windows/check", ck_n, &ck_h),
        ("static axum route", st_n, &st_h),
    ] {
        println!(
            "| {name} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} |",
            rate(n),
            rate(n) / rate(st_n).max(1.0),
            pct(h, 0.5),
            pct(h, 0.99),
            h.max() as f64 / 1000.0
        );
    }
    Ok(())
}

async fn ticks(
    db: Option<String>,
    sessions: usize,
    unit: u64,
    spread: u64,
    units: u64,
    priced: bool,
) -> anyhow::Result<()> {
    let extra = format!(
        "[billing]\nunit_seconds = {unit}\nheartbeat_timeout_seconds = {}\n",
        unit * (units + 3) + spread * 2
    );
    let r = start(db, &extra).await?;
    let mut events = r.state.coord.events().subscribe();
    let clock = r.state.coord.clock();
    let unit_ms = unit as i64 * 1000;
    let hist = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap(),
    ));
    let sink = hist.clone();
    let collector = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Billing { paid_until, .. }) => {
                    let boundary = paid_until - unit_ms;
                    let lag_us = ((clock.now_ms() - boundary).max(0) * 1000) as u64;
                    sink.lock().unwrap().record(lag_us.max(1)).ok();
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    eprintln!("collector lagged by {k} events");
                }
                Err(_) => break,
            }
        }
    });
    println!("starting {sessions} sessions over {spread} s (unit {unit} s) ...");
    let t = Instant::now();
    let _tokens = if priced {
        seed_priced_sessions(&r.state, sessions, 1_000_000, Duration::from_secs(spread)).await?
    } else {
        seed_sessions(&r.state, sessions, 1_000_000, Duration::from_secs(spread)).await?
    };
    println!(
        "started in {:.1} s; waiting {} unit(s) ...",
        t.elapsed().as_secs_f64(),
        units
    );
    tokio::time::sleep(Duration::from_secs(unit * units + 2)).await;
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    collector.abort();
    let h = hist.lock().unwrap().clone();
    let n = h.len();
    println!("reservations observed: {n}");
    println!(
        "| lag from boundary to committed debit | p50 ms | p99 ms | p99.9 ms | max ms | over 500 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {sessions} sessions | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        pct(&h, 0.5),
        pct(&h, 0.99),
        pct(&h, 0.999),
        h.max() as f64 / 1000.0,
        h.count_between(500_001, u64::MAX)
    );
    println!("{rss}");
    if priced {
        // Evidence that the units took the priced path: how they were paid.
        let (by_package, by_money, min_price, max_price): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN user_package_id IS NULL THEN 0 ELSE 1 END), 0),
                    COALESCE(SUM(CASE WHEN user_package_id IS NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(MIN(price), 0), COALESCE(MAX(price), 0)
             FROM session_units",
        )
        .fetch_one(r.state.db.pool())
        .await?;
        println!(
            "priced units: {by_package} from packages, {by_money} with money, unit prices {min_price}..={max_price} fen"
        );
    }
    Ok(())
}

/// The real bridge's Sync AttLog body for `n` records of one terminal.
fn sync_body(sn: &str, token: &str, n: usize) -> String {
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            // 500 staff, one punch each per minute slot, spread over days.
            let (pin, slot) = (i % 500, i / 500);
            let day = 1 + slot / (24 * 60) % 28;
            let minute = slot % (24 * 60);
            json!({
                "PIN": format!("{:012}", 100_000_000_000u64 + pin as u64),
                "TIME": format!("2026-08-{day:02} {:02}:{:02}:{:02}", minute / 60, minute % 60, pin % 60),
                "STATUS": 255, "VERIFY": "2", "WORKCODE": "0", "RESERVED1": "0", "RESERVED2": "0",
            })
        })
        .collect();
    serde_urlencoded::to_string([
        ("token", token),
        ("SN", sn),
        ("records", &serde_json::Value::Array(records).to_string()),
    ])
    .expect("form encoding")
}

async fn attendance(
    db: Option<String>,
    records: usize,
    resends: usize,
    lines_per_post: usize,
) -> anyhow::Result<()> {
    let r = start(db, "[ops]\ntoken = \"bench-ops-token\"").await?;
    let http = reqwest::Client::new();
    for (sn, token) in [
        ("BENCH1", "bench-bridge-token"),
        ("BENCH2", "bench-native-token"),
    ] {
        let st = http
            .post(format!("{}/ops/terminals", r.base))
            .bearer_auth("bench-ops-token")
            .json(&json!({"sn": sn, "token": token, "timezone": "Asia/Shanghai"}))
            .send()
            .await?
            .status();
        anyhow::ensure!(st.as_u16() == 201, "register {sn}: {st}");
    }
    let body = sync_body("BENCH1", "bench-bridge-token", records);
    println!(
        "attendance: {records} records, sync body {:.1} MB (form-encoded JSON, as the bridge sends it)",
        body.len() as f64 / 1e6
    );
    let url = format!(
        "{}/weiphp30/index.php?s=/addon/DailyTime/DailyTime/syncRecord",
        r.base
    );
    for round in 0..=resends {
        let t = Instant::now();
        let resp = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "sync failed: {status} {text}");
        let what = if round == 0 {
            "first sync (all new)"
        } else {
            "re-sent (all duplicates)"
        };
        println!("  {what}: {:.2} s", t.elapsed().as_secs_f64());
    }
    let kioskd::store::Page { total, .. } = r
        .state
        .db
        .punches(&kioskd::store::PunchFilter::default(), 1, 1)
        .await?;
    anyhow::ensure!(total as usize == records, "stored {total}, want {records}");
    // Native: the same shape of records as sequential ATTLOG posts of `lines_per_post`.
    let lines: Vec<String> = (0..records)
        .map(|i| {
            let (pin, slot) = (i % 500, i / 500);
            let day = 1 + slot / (24 * 60) % 28;
            let minute = slot % (24 * 60);
            format!(
                "{}\t2026-08-{day:02} {:02}:{:02}:{:02}\t0\t1\t0\t0\t0",
                100_000 + pin,
                minute / 60,
                minute % 60,
                pin % 60
            )
        })
        .collect();
    let mut h = Histogram::<u64>::new(3)?;
    let t = Instant::now();
    for chunk in lines.chunks(lines_per_post.max(1)) {
        let one = Instant::now();
        let text = http
            .post(format!("{}/iclock/cdata?SN=BENCH2&table=ATTLOG", r.base))
            .body(chunk.join("\n"))
            .send()
            .await?
            .text()
            .await?;
        anyhow::ensure!(text.starts_with("OK:"), "iclock: {text}");
        h.record(one.elapsed().as_micros() as u64)?;
    }
    println!(
        "  iclock: {} posts of {lines_per_post} lines in {:.2} s; per post p50 {:.1} ms, p99 {:.1} ms",
        h.len(),
        t.elapsed().as_secs_f64(),
        pct(&h, 0.5),
        pct(&h, 0.99)
    );
    Ok(())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// `devices` registered devices; every one is activated by one `check` (a fleet that
/// all polled once, e.g. after a restart), then only `active` of them keep polling for
/// `seconds`. RSS and live device actors at each step.
async fn passivation(
    db: Option<String>,
    devices: usize,
    active: usize,
    idle_seconds: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    let r = start(db, &format!("[actors]\nidle_seconds = {idle_seconds}\n")).await?;
    let s = &r.state;
    let now = s.coord.clock().now_ms();
    let mut tx = s.db.pool().begin().await?;
    for i in 0..devices {
        sqlx::query("INSERT INTO devices (code, name, charge_mode, billing_mode, ctime, utime) VALUES ($1, $2, 5, 'prepaid', $3, $3)")
            .bind(code(i))
            .bind(format!("bench {i}"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let base = rss_mib();
    let live = |s: &AppState| s.coord.actor_stats().devices.actors;
    println!(
        "{devices} devices registered, idle_seconds = {idle_seconds}: RSS {base:.1} MiB, {} device actors",
        live(s)
    );
    let t = Instant::now();
    let workers = 16;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let st = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < devices {
                st.coord.check(&code(i)).await?;
                i += workers;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let all = rss_mib();
    println!(
        "all activated in {:.1} s: RSS {all:.1} MiB, {} device actors ({:.2} KiB per actor over the base)",
        t.elapsed().as_secs_f64(),
        live(s),
        (all - base) * 1024.0 / devices as f64
    );
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let tick = Instant::now();
        for i in 0..active {
            s.coord.check(&code(i)).await?;
        }
        tokio::time::sleep_until((tick + Duration::from_secs(1)).into()).await;
    }
    let after = rss_mib();
    println!(
        "after {seconds} s with {active} active: RSS {after:.1} MiB, {} device actors",
        live(s)
    );
    println!(
        "| idle_seconds | devices | active | device actors | RSS all active (MiB) | RSS after {seconds} s (MiB) |"
    );
    println!(
        "| {idle_seconds} | {devices} | {active} | {} | {all:.1} | {after:.1} |",
        live(s)
    );
    Ok(())
}

/// mimalloc: faster small allocations than glibc's malloc on the request path, and it
/// returns freed memory (glibc kept the memory of 100k stopped actors).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Polling {
            devices,
            concurrency,
            seconds,
            rounds,
        } => polling(cli.database_url, devices, concurrency, seconds, rounds).await,
        Cmd::Ws {
            kiosks,
            sources,
            sessions,
            singles,
            broadcasts,
            attach,
            pid,
            ops_token,
            peer,
            node,
            bare,
        } => match attach {
            Some(base) => {
                let ext = bench_ws::External {
                    base,
                    pid,
                    ops_token,
                };
                bench_ws::run_external(ext, kiosks, sources).await
            }
            None => {
                let mut peers: Vec<_> = peer
                    .map(|script| bench_ws::Peer::Node { node, script })
                    .into_iter()
                    .collect();
                if bare {
                    peers.push(bench_ws::Peer::Bare);
                }
                bench_ws::run(kiosks, sources, sessions, singles, broadcasts, peers).await
            }
        },
        Cmd::Push {
            kiosks,
            workers,
            sources,
            singles,
            broadcasts,
            only,
            node,
            peer_script,
        } => {
            bench_ws::push::run(bench_ws::push::PushArgs {
                kiosks,
                workers,
                sources,
                singles,
                broadcasts,
                kioskd: only.as_deref() != Some("peer"),
                peer: only.as_deref() != Some("kioskd"),
                node,
                peer_script,
            })
            .await
        }
        Cmd::PushWorker {
            port,
            first,
            count,
            stride,
            sources,
        } => bench_ws::push::worker(port, first, count, stride, sources).await,
        Cmd::BareServer { port, token } => bench_ws::bare::serve(port, token).await,
        Cmd::Cluster {
            kiosks,
            sources,
            sessions,
            singles,
            redis,
        } => bench_ws::run_cluster(kiosks, sources, sessions, singles, &redis).await,
        Cmd::Ticks {
            sessions,
            unit_seconds,
            spread_seconds,
            units,
            priced,
        } => {
            ticks(
                cli.database_url,
                sessions,
                unit_seconds,
                spread_seconds,
                units,
                priced,
            )
            .await
        }
        Cmd::Passivation {
            devices,
            active,
            idle_seconds,
            seconds,
        } => passivation(cli.database_url, devices, active, idle_seconds, seconds).await,
        Cmd::Attendance {
            records,
            resends,
            lines_per_post,
        } => attendance(cli.database_url, records, resends, lines_per_post).await,
    }
}
