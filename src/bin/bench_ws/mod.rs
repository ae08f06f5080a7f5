//! `kioskd-bench ws`: N kiosks holding WebSockets to a `kioskd serve` child process (so
//! each process stays under the open-files limit), from several loopback source
//! addresses. Reports connections held, the server's RSS per connection (actors
//! included), and push latency for single-device commands and for a broadcast to all.

pub mod bare;
pub mod push;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use kioskd::store::Db;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const OPS: &str = "bench-ops-token";

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time a process has used (user + system), in clock ticks (`/proc/<pid>/stat`;
/// 100 a second on Linux). `None` where there is no `/proc`.
pub(crate) fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace().skip(11);
    let user: u64 = f.next()?.parse().ok()?;
    let system: u64 = f.next()?.parse().ok()?;
    Some(user + system)
}

/// What the load generators read of a server frame: its type, its seq, and a command's
/// text (`<kind>:<sent µs>` for timed pushes). Borrowed, without building a JSON tree: the
/// generators share the cores with the server, so their cost per frame is kept small.
#[derive(serde::Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default, borrow)]
    data: Option<IncomingData<'a>>,
}

#[derive(serde::Deserialize)]
struct IncomingData<'a> {
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Incoming<'a> {
    pub(crate) fn parse(t: &'a str) -> Option<Self> {
        serde_json::from_str(t).ok()
    }

    /// A timed push's kind (`s`, `f`, `b`) and when it was sent (µs since the epoch).
    pub(crate) fn timed(&self) -> Option<(&str, u64)> {
        let text = self.data.as_ref()?.text.as_deref()?;
        let (kind, sent) = text.split_once(':')?;
        Some((kind, sent.parse().ok()?))
    }

    /// The `ack` for this frame.
    pub(crate) fn ack(&self) -> String {
        match self.seq {
            Some(seq) => format!(r#"{{"type":"ack","data":{{"seq":{seq}}}}}"#),
            None => r#"{"type":"ack","data":{"seq":null}}"#.to_string(),
        }
    }
}

fn code(i: usize) -> String {
    let b = (i as u32).to_be_bytes();
    format!("C0-00-{:02X}-{:02X}-{:02X}-{:02X}", b[0], b[1], b[2], b[3])
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Stats {
    single: Mutex<Histogram<u64>>,
    broadcast: Mutex<Histogram<u64>>,
    /// The broadcast in flight only (reset before each).
    this_broadcast: Mutex<Histogram<u64>>,
    /// Commands posted to another node than the kiosk's.
    forwarded: Mutex<Histogram<u64>>,
    /// When each kiosk (by index) last saw `session_started` (µs).
    started: Mutex<std::collections::HashMap<usize, u64>>,
    broadcast_seen: AtomicU64,
    connected: AtomicUsize,
    failed: AtomicUsize,
}

/// A server started by hand (e.g. under a heap profiler) instead of a child process.
pub struct External {
    /// Its base URL.
    pub base: String,
    /// Its process id (for RSS).
    pub pid: u32,
    /// Its ops token.
    pub ops_token: String,
}

/// Runs against a server started elsewhere: registers the devices through the ops API
/// (already-registered ones are fine), connects the kiosks and holds them for 10 s.
pub async fn run_external(ext: External, kiosks: usize, sources: u8) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let http = reqwest::Client::new();
    for i in 0..kiosks {
        let r = http
            .post(format!("{}/ops/devices", ext.base))
            .bearer_auth(&ext.ops_token)
            .json(&json!({"device_code": code(i), "name": format!("kiosk {i}"), "charge_mode": 5}))
            .send()
            .await?;
        anyhow::ensure!(
            matches!(r.status().as_u16(), 201 | 409),
            "registering a device: {}",
            r.status()
        );
    }
    let port: u16 = ext
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(8080);
    let rss0 = rss_kib(ext.pid);
    let stats = new_stats()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = connect_all(port, kiosks, sources, &stats, &stop_rx).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = stats.connected.load(Ordering::Relaxed);
    let rss1 = rss_kib(ext.pid);
    println!(
        "connected {connected} of {kiosks}; server RSS {} -> {} MiB: {:.1} KB per kiosk",
        rss0 / 1024,
        rss1 / 1024,
        (rss1.saturating_sub(rss0)) as f64 * 1.024 / connected.max(1) as f64
    );
    println!("holding the connections for 10 s (take a profile now)");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Runs the benchmark.
pub async fn run(
    kiosks: usize,
    sources: u8,
    sessions: usize,
    singles: usize,
    broadcasts: usize,
    peers: Vec<Peer>,
) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/ws-bench.db", dir.path().display());
    seed(&url, kiosks).await?;
    let (server, port) = serve(&exe_dir()?, &url, kiosks, &[]).await?;
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let rss0 = rss_kib(pid);

    let stats = new_stats()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let tasks = connect_all(port, kiosks, sources, &stats, &stop_rx).await?;
    let connect_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = stats.connected.load(Ordering::Relaxed);
    let rss1 = rss_kib(pid);
    println!(
        "connected {connected} of {kiosks} kiosks in {connect_secs:.1} s from {sources} source addresses ({} failed)",
        stats.failed.load(Ordering::Relaxed)
    );
    println!(
        "server RSS: {} MiB idle, {} MiB with the kiosks: {:.1} KB per connected kiosk (socket, device actor, stream)",
        rss0 / 1024,
        rss1 / 1024,
        (rss1.saturating_sub(rss0)) as f64 * 1.024 / connected.max(1) as f64
    );

    // Sessions over HTTP on the first devices, as phones would start them.
    let t = Instant::now();
    let mut started = 0;
    for i in 0..sessions.min(connected) {
        let phone = phone(&base, i).await?;
        let v: serde_json::Value = phone
            .get(format!("{base}/windows/login/{}?from=playing", code(i)))
            .send()
            .await?
            .json()
            .await?;
        if v["result"] == "success" {
            started += 1;
        }
    }
    println!(
        "{started} sessions started over HTTP in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Single-device commands, one after another on random kiosks.
    for n in 0..singles {
        let i = (n * 7919) % connected.max(1);
        timed_command(&http, &base, i, "s").await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Broadcasts to every kiosk.
    let kioskd = broadcasts_to_all(&http, &base, OPS, &stats, connected, broadcasts, pid).await?;
    let rss2 = rss_kib(pid);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(server);
    let s = stats.single.lock().unwrap().clone();
    let b = stats.broadcast.lock().unwrap().clone();
    println!("| push | count | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row("single-device command (POST → kiosk)", &s);
    row(
        &format!("broadcast to all {connected} (POST → each kiosk)"),
        &b,
    );
    println!("server RSS at the end: {} MiB", rss2 / 1024);
    if peers.is_empty() {
        return Ok(());
    }
    let mut rows = vec![("kioskd".to_string(), kioskd)];
    for peer in &peers {
        let r = peer_broadcasts(peer, kiosks, sources, broadcasts).await?;
        rows.push((peer.name(), r));
    }
    println!();
    println!(
        "broadcasts to all, the same in-process client; kioskd keeps actors, storage and acks, the peers none:"
    );
    println!(
        "| server | kiosks | p50 ms | p99 ms | p99 / kioskd's | server CPU ms / broadcast | client CPU ms / broadcast |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let p99 = pct(&rows[0].1.all, 0.99);
    for (name, r) in &rows {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.connected,
            pct(&r.all, 0.5),
            pct(&r.all, 0.99),
            pct(&r.all, 0.99) / p99.max(0.001),
            r.cpu.map_or("-".into(), |c| format!("{:.0}", c.0)),
            r.cpu.map_or("-".into(), |c| format!("{:.0}", c.1)),
        );
    }
    Ok(())
}

/// A minimal server to measure the same broadcasts against.
pub enum Peer {
    /// The Node `ws` peer: the Node binary and the script (benches/peer/server.js).
    Node { node: String, script: String },
    /// `kioskd-bench bare-server` (bare.rs): the same stack as kioskd, nothing else.
    Bare,
}

impl Peer {
    fn name(&self) -> String {
        match self {
            Peer::Node { .. } => "Node `ws` peer".into(),
            Peer::Bare => "bare Rust server".into(),
        }
    }
}

/// What the broadcasts to all did.
struct Broadcasts {
    connected: usize,
    /// Every copy's latency (µs).
    all: Histogram<u64>,
    /// CPU per broadcast (ms): the server, this process.
    cpu: Option<(f64, f64)>,
}

/// Posts `broadcasts` broadcasts one after another, each once the last has reached every
/// connected kiosk (or after 60 s); prints each one's p99 and the CPU both sides used.
async fn broadcasts_to_all(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    stats: &Stats,
    connected: usize,
    broadcasts: usize,
    pid: u32,
) -> anyhow::Result<Broadcasts> {
    let mut each = Vec::new();
    let cpu0 = cpu_ticks(&pid.to_string()).zip(cpu_ticks("self"));
    for _ in 0..broadcasts {
        stats.this_broadcast.lock().unwrap().reset();
        let before = stats.broadcast_seen.load(Ordering::Relaxed);
        let r = http
            .post(format!("{base}/ops/broadcast"))
            .bearer_auth(token)
            .json(&json!({"name":"message","text": format!("b:{}", micros())}))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 202,
            "broadcast refused: {}",
            r.status()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while stats.broadcast_seen.load(Ordering::Relaxed) < before + connected as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let h = stats.this_broadcast.lock().unwrap();
        each.push(format!("{:.0}", h.value_at_quantile(0.99) as f64 / 1000.0));
    }
    let mut cpu = None;
    if !each.is_empty() {
        println!("broadcast p99 one by one (ms): {}", each.join(", "));
        // The CPU both sides used over the broadcasts (with the 20 ms polls of this
        // loop): on shared cores, their sum bounds the latency.
        let cpu1 = cpu_ticks(&pid.to_string()).zip(cpu_ticks("self"));
        if let Some(((s0, c0), (s1, c1))) = cpu0.zip(cpu1) {
            let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * 10.0 / each.len() as f64;
            cpu = Some((per(s0, s1), per(c0, c1)));
            println!(
                "CPU per broadcast (ms): server {:.0}, this client {:.0}",
                per(s0, s1),
                per(c0, c1)
            );
        }
    }
    Ok(Broadcasts {
        connected,
        all: stats.broadcast.lock().unwrap().clone(),
        cpu,
    })
}

/// The same kiosks and broadcasts against the Node `ws` peer, with the same client.
async fn peer_broadcasts(
    peer: &Peer,
    kiosks: usize,
    sources: u8,
    broadcasts: usize,
) -> anyhow::Result<Broadcasts> {
    let port = push::free_port()?;
    let mut cmd = match peer {
        Peer::Node { node, script } => {
            let mut c = tokio::process::Command::new(node);
            c.arg(script);
            c
        }
        Peer::Bare => {
            let mut c = tokio::process::Command::new(std::env::current_exe()?);
            c.arg("bare-server");
            c
        }
    };
    let child = cmd
        .env("PORT", port.to_string())
        .env("TOKEN", OPS)
        .kill_on_drop(true)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the {}: {e}", peer.name()))?;
    let child = push::Proc(child);
    let base = format!("http://127.0.0.1:{port}");
    push::wait_ready(&base, "/readyz").await?;
    let pid = child.0.id().unwrap_or(0);
    println!();
    println!("{} (pid {pid}) on {base}", peer.name());
    let stats = new_stats()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = connect_all(port, kiosks, sources, &stats, &stop_rx).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = stats.connected.load(Ordering::Relaxed);
    println!("connected {connected} of {kiosks} kiosks");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    let r = broadcasts_to_all(&http, &base, OPS, &stats, connected, broadcasts, pid).await?;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(child);
    Ok(r)
}

/// Devices go straight into the database before the servers start.
async fn seed(url: &str, kiosks: usize) -> anyhow::Result<()> {
    let db = Db::connect(url, 1)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let pool = db.pool();
    let mut tx = pool.begin().await?;
    for i in 0..kiosks {
        sqlx::query("INSERT INTO devices (code, name, charge_mode, billing_mode, ctime, utime) VALUES ($1, $2, 5, 'prepaid', 0, 0)")
            .bind(code(i))
            .bind(format!("kiosk {i}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

fn exe_dir() -> anyhow::Result<std::path::PathBuf> {
    Ok(std::env::current_exe()?.with_file_name("kioskd"))
}

/// Starts `kioskd serve` on a free port over `url` (plus `env`) and waits until it is
/// ready; returns it and its port.
async fn serve(
    exe: &std::path::Path,
    url: &str,
    kiosks: usize,
    env: &[(&str, String)],
) -> anyhow::Result<(Server, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .env("KIOSKD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("KIOSKD_DATABASE__URL", url)
        .env("KIOSKD_WS__ALLOW_UNSIGNED", "true")
        .env(
            "KIOSKD_WS__MAX_CONNECTIONS",
            (kiosks + 100).max(20_000).to_string(),
        )
        // The load comes from four loopback addresses: the per-address caps and rate
        // limits (issue 13's defences) would refuse most of it.
        .env(
            "KIOSKD_SERVER__MAX_CONNECTIONS",
            (kiosks + 200).max(20_100).to_string(),
        )
        .env("KIOSKD_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "0")
        .env("KIOSKD_SERVER__RATE_LIMITS", "false")
        .env("KIOSKD_OPS__TOKEN", OPS)
        .env("KIOSKD_IDENTITY__MODE", "dev")
        .env("KIOSKD_SMS__DEBUG_CODE", "123456")
        .env("KIOSKD_LOG__FILTER", "error")
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", exe.display()))?;
    let server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok((server, port));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("server did not become ready")
}

/// A phone signed in on `base` with a balance; the client keeps its cookie.
async fn phone(base: &str, i: usize) -> anyhow::Result<reqwest::Client> {
    // A phone app page's same-origin fetches (kioskd refuses cross-site state changes).
    let mut same_origin = reqwest::header::HeaderMap::new();
    same_origin.insert(
        "sec-fetch-site",
        reqwest::header::HeaderValue::from_static("same-origin"),
    );
    let phone = reqwest::Client::builder()
        .cookie_store(true)
        .default_headers(same_origin)
        .build()?;
    phone
        .get(format!("{base}/dev/login?openid=bench{i}"))
        .send()
        .await?;
    phone
        .post(format!("{base}/wechat/login"))
        .json(&json!({"mobile": format!("1{:010}", i), "code": "123456"}))
        .send()
        .await?;
    phone
        .get(format!("{base}/wechat/recharge/100000"))
        .send()
        .await?;
    Ok(phone)
}

/// Posts a timed `message` command (`kind` tags the histogram the kiosk records it in).
async fn timed_command(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    kind: &str,
) -> anyhow::Result<()> {
    let r = http
        .post(format!("{base}/ops/devices/{}/command", code(i)))
        .bearer_auth(OPS)
        .json(&json!({"name":"message","text": format!("{kind}:{}", micros())}))
        .send()
        .await?;
    anyhow::ensure!(
        r.status().as_u16() == 202,
        "command refused: {}",
        r.status()
    );
    Ok(())
}

fn new_stats() -> anyhow::Result<Arc<Stats>> {
    let h = || Histogram::new_with_bounds(1, 600_000_000, 3);
    Ok(Arc::new(Stats {
        single: Mutex::new(h()?),
        broadcast: Mutex::new(h()?),
        this_broadcast: Mutex::new(h()?),
        forwarded: Mutex::new(h()?),
        started: Mutex::new(std::collections::HashMap::new()),
        broadcast_seen: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    }))
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn row(what: &str, h: &Histogram<u64>) {
    println!(
        "| {what} | {} | {:.2} | {:.2} | {:.2} |",
        h.len(),
        pct(h, 0.5),
        pct(h, 0.99),
        h.max() as f64 / 1000.0
    );
}

/// Two nodes on one SQLite file and one Redis: kiosks hold their sockets on node A,
/// phones and operators use node B. Times a phone's start on B until the kiosk on A has
/// `session_started`, and operator commands posted to B (forwarded to A) beside the same
/// commands posted to A.
pub async fn run_cluster(
    kiosks: usize,
    sources: u8,
    sessions: usize,
    singles: usize,
    redis: &str,
) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/cluster-bench.db", dir.path().display());
    seed(&url, kiosks).await?;
    let ns = format!("kioskd-bench-{}", micros());
    let env = [
        ("KIOSKD_REDIS__URL", redis.to_string()),
        ("KIOSKD_REDIS__NAMESPACE", ns),
    ];
    let exe = exe_dir()?;
    let (node_a, port_a) = serve(&exe, &url, kiosks, &env).await?;
    let (node_b, port_b) = serve(&exe, &url, kiosks, &env).await?;
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let stats = new_stats()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = connect_all(port_a, kiosks, sources, &stats, &stop_rx).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected = stats.connected.load(Ordering::Relaxed);
    println!("{connected} of {kiosks} kiosks connected to node A");
    let http = reqwest::Client::new();
    // Phones on node B start sessions on kiosks held by node A.
    let mut start_http = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut start_push = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for i in 0..sessions.min(connected) {
        let p = phone(&base_b, i).await?;
        let sent = micros();
        let v: serde_json::Value = p
            .get(format!("{base_b}/windows/login/{}?from=playing", code(i)))
            .send()
            .await?
            .json()
            .await?;
        let answered = micros();
        anyhow::ensure!(v["result"] == "success", "start refused: {v}");
        start_http.record(answered.saturating_sub(sent).max(1))?;
        let mut seen = None;
        for _ in 0..200 {
            seen = stats.started.lock().unwrap().remove(&i);
            if seen.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let at = seen.ok_or_else(|| anyhow::anyhow!("kiosk {i} never saw its session start"))?;
        start_push.record(at.saturating_sub(sent).max(1))?;
    }
    // Operator commands, alternately on node B (forwarded) and node A (local).
    for n in 0..singles {
        let i = (n * 7919) % connected.max(1);
        if n % 2 == 0 {
            timed_command(&http, &base_b, i, "f").await?;
        } else {
            timed_command(&http, &base_a, i, "s").await?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(node_b);
    drop(node_a);
    println!("| two nodes, kiosks on A | count | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    row("phone start on B: HTTP reply", &start_http);
    row(
        "phone start on B → `session_started` at the kiosk on A",
        &start_push,
    );
    row(
        "command POST to B (forwarded) → kiosk on A",
        &stats.forwarded.lock().unwrap(),
    );
    row(
        "command POST to A (local) → kiosk on A",
        &stats.single.lock().unwrap(),
    );
    Ok(())
}

/// Opens `kiosks` WebSockets from `sources` loopback addresses; each task answers commands
/// with acks and records latencies until `stop` flips.
async fn connect_all(
    port: u16,
    kiosks: usize,
    sources: u8,
    stats: &Arc<Stats>,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let server_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(kiosks);
    for i in 0..kiosks {
        let permit = sem.clone().acquire_owned().await?;
        let stats = stats.clone();
        let mut stop = stop_rx.clone();
        let src = Ipv4Addr::new(127, 0, 0, 1 + (i % sources.max(1) as usize) as u8);
        let ws_url = format!("ws://127.0.0.1:{port}/ws/kiosk?device_code={}", code(i));
        tasks.push(tokio::spawn(async move {
            let sock = TcpSocket::new_v4().and_then(|s| {
                s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
                Ok(s)
            });
            let stream = match sock {
                Ok(s) => s.connect(server_addr).await,
                Err(e) => Err(e),
            };
            let cfg = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let ws = match stream {
                Ok(st) => tokio_tungstenite::client_async_with_config(ws_url, st, Some(cfg))
                    .await
                    .ok(),
                Err(_) => None,
            };
            drop(permit);
            let Some((ws, _)) = ws else {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut ws = ws;
            if ws
                .send(Message::Text(r#"{"type":"hello"}"#.into()))
                .await
                .is_err()
            {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            stats.connected.fetch_add(1, Ordering::Relaxed);
            // One wait for the stop signal for the connection's life (a fresh `changed()`
            // per frame would register and drop a waiter on the shared channel each time).
            let mut stopped = std::pin::pin!(stop.changed());
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let now = micros();
                            let Some(f) = Incoming::parse(&t) else { continue };
                            if f.kind == "session_started" {
                                stats.started.lock().unwrap().insert(i, now);
                            }
                            if f.kind == "command" {
                                if let Some((kind, sent)) = f.timed() {
                                    let lat = now.saturating_sub(sent).max(1);
                                    if kind == "s" {
                                        stats.single.lock().unwrap().record(lat).ok();
                                    } else if kind == "f" {
                                        stats.forwarded.lock().unwrap().record(lat).ok();
                                    } else {
                                        stats.broadcast.lock().unwrap().record(lat).ok();
                                        stats.this_broadcast.lock().unwrap().record(lat).ok();
                                        stats.broadcast_seen.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                let _ = ws.send(Message::Text(f.ack().into())).await;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
        }));
    }
    // Wait for the stragglers to finish their handshakes.
    for _ in 0..200 {
        if stats.connected.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed) >= kiosks
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(tasks)
}
