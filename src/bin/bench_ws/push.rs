//! `kioskd-bench push`: what an operator waits for, measured from outside. The load
//! generator runs in separate processes (`--workers` copies of this binary, started with
//! the hidden `push-worker` subcommand), each holding its share of the kiosk WebSockets
//! to a separately started `kioskd serve`; the bench posts operator commands through the
//! ops HTTP API with a real operator's personal token (the operator is added with
//! `kioskd operator add`, the token made by `/ops/login` + `/ops/tokens` as `kioskd ops
//! login` does, so every command is authenticated and audited), one at a time, and
//! times each from the POST to the frame at its kiosk; then broadcasts (POST → each
//! kiosk). Server RSS per connected kiosk is read from `/proc/<pid>/status`.
//!
//! The same run is then made against a minimal peer, `benches/peer/server.js` (Node and
//! `ws`: a map from device code to socket, a command handler that sends the frame; no
//! actors, no database, no audit), and both are printed with the ratios.
//!
//! Workers talk to the bench over their stdout, one line per event: `up <connected>
//! <failed>` once their kiosks are connected, `s <kiosk> <µs>` for a single command's
//! latency, `b <µs>` for a broadcast copy's. They exit when their stdin closes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{code, micros, rss_kib, seed};

const OPERATOR: &str = "bench-operator";
const PASSWORD: &str = "bench-operator-password";

/// Options of a run.
pub struct PushArgs {
    pub kiosks: usize,
    pub workers: usize,
    pub sources: u8,
    pub singles: usize,
    pub broadcasts: usize,
    /// Run against kioskd only / the peer only.
    pub kioskd: bool,
    pub peer: bool,
    /// Node binary and the peer script.
    pub node: String,
    pub peer_script: String,
}

/// What one server did.
struct Figures {
    connected: usize,
    rss_idle_kib: u64,
    /// kioskd's RSS before the operator signed in (the peer's: its idle RSS).
    rss_fresh_kib: u64,
    rss_kib: u64,
    single: Histogram<u64>,
    broadcast: Histogram<u64>,
    /// CPU per broadcast (ms, with the 0.5 s pause before each): the server, the load
    /// generators.
    cpu: Option<(f64, f64)>,
}

impl Figures {
    fn per_kiosk_kb(&self) -> f64 {
        self.rss_kib.saturating_sub(self.rss_idle_kib) as f64 * 1.024 / self.connected.max(1) as f64
    }

    /// The same from the RSS before any sign-in (an upper bound: nothing the kiosks could
    /// reuse is counted as idle).
    fn per_kiosk_fresh_kb(&self) -> f64 {
        self.rss_kib.saturating_sub(self.rss_fresh_kib) as f64 * 1.024
            / self.connected.max(1) as f64
    }
}

/// A child process killed when dropped.
pub(super) struct Proc(pub(super) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) async fn wait_ready(base: &str, path: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..800 {
        if http
            .get(format!("{base}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{base} did not become ready")
}

/// Runs the benchmark against kioskd and/or the peer and prints the table.
pub async fn run(a: PushArgs) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let me = std::env::current_exe()?;
    let server_exe = me.with_file_name("kioskd");
    let mut k = None;
    let mut p = None;
    if a.kioskd {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}/push-bench.db", dir.path().display());
        seed(&url, a.kiosks).await?;
        let port = free_port()?;
        let env = |c: &mut Command| {
            c.env("KIOSKD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
                .env("KIOSKD_DATABASE__URL", &url)
                .env("KIOSKD_WS__ALLOW_UNSIGNED", "true")
                .env(
                    "KIOSKD_WS__MAX_CONNECTIONS",
                    (a.kiosks + 100).max(20_000).to_string(),
                )
                .env(
                    "KIOSKD_SERVER__MAX_CONNECTIONS",
                    (a.kiosks + 200).max(20_100).to_string(),
                )
                .env("KIOSKD_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "0")
                .env("KIOSKD_OPS__TOKEN", "")
                .env("KIOSKD_IDENTITY__MODE", "dev")
                .env("KIOSKD_LOG__FILTER", "error")
                .env("KIOSKD_OPERATOR_PASSWORD", PASSWORD)
                .stdout(Stdio::null());
        };
        // The operator, as an administrator adds one.
        let mut add = Command::new(&server_exe);
        add.args(["operator", "add", "--username", OPERATOR, "--role", "admin"]);
        env(&mut add);
        let st = add.status().await?;
        anyhow::ensure!(st.success(), "kioskd operator add failed: {st}");
        let mut serve = Command::new(&server_exe);
        serve.arg("serve").kill_on_drop(true);
        env(&mut serve);
        let server = Proc(serve.spawn()?);
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base, "/readyz").await?;
        let pid = server.0.id().unwrap_or(0);
        // Before the operator's sign-in: its password hash takes a ~19 MiB buffer,
        // held until its blocking thread retires (see `measure`).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let fresh = rss_kib(pid);
        let token = personal_token(&base).await?;
        println!("kioskd serve (pid {pid}) on {base}, operator {OPERATOR} with a personal token");
        k = Some(measure(&a, &me, port, pid, &base, &token, Some(fresh)).await?);
        drop(server);
        drop(dir);
    }
    if a.peer {
        let port = free_port()?;
        let mut c = Command::new(&a.node);
        c.arg(&a.peer_script)
            .env("PORT", port.to_string())
            .env("TOKEN", "peer-token")
            .kill_on_drop(true)
            .stdout(Stdio::null());
        let peer = Proc(
            c.spawn()
                .map_err(|e| anyhow::anyhow!("cannot start {} {}: {e}", a.node, a.peer_script))?,
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base, "/readyz").await?;
        let pid = peer.0.id().unwrap_or(0);
        println!("peer (node {}, pid {pid}) on {base}", a.peer_script);
        p = Some(measure(&a, &me, port, pid, &base, "peer-token", None).await?);
        drop(peer);
    }
    print_table(&a, k.as_ref(), p.as_ref());
    Ok(())
}

/// `/ops/login` and `/ops/tokens`, as `kioskd ops login` does.
async fn personal_token(base: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let r = http
        .post(format!("{base}/ops/login"))
        .json(&json!({"username": OPERATOR, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "operator login: {}", r.status());
    let v: serde_json::Value = http
        .post(format!("{base}/ops/tokens"))
        .header(reqwest::header::ORIGIN, base)
        .json(&json!({"name": "kioskd-bench"}))
        .send()
        .await?
        .json()
        .await?;
    v["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no token: {v}"))
}

/// One line from a worker.
enum Ev {
    Up(usize, usize),
    Single(usize, u64),
    Broadcast(u64),
}

async fn measure(
    a: &PushArgs,
    me: &std::path::Path,
    port: u16,
    pid: u32,
    base: &str,
    token: &str,
    before_sign_in: Option<u64>,
) -> anyhow::Result<Figures> {
    // Settled first. kioskd's operator sign-in hashes a password with a ~19 MiB buffer
    // on a blocking thread; the allocator gives it back only when that thread retires
    // (tokio keeps an idle blocking thread 10 s), which used to happen while the kiosks
    // connected, so an idle figure read 3 s after the sign-in flattered the per-kiosk
    // figure by ~1 KB. Wait (up to 20 s) until the RSS is back near the pre-sign-in one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(fresh) = before_sign_in {
        let t = Instant::now();
        while rss_kib(pid) > fresh + 4 * 1024 && t.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let rss_idle_kib = rss_kib(pid);
    let rss_fresh_kib = before_sign_in.unwrap_or(rss_idle_kib);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    // Worker w holds every `workers`-th kiosk from w, not a range of device ids: a
    // server that writes in device order would otherwise serve one worker after another
    // and spare the load generators' CPU in a way no fleet of kiosks does.
    let stride = a.workers.max(1);
    let t = Instant::now();
    for w in 0..stride {
        let count = a.kiosks.saturating_sub(w).div_ceil(stride);
        if count == 0 {
            break;
        }
        let mut child = Command::new(me)
            .args([
                "push-worker",
                "--port",
                &port.to_string(),
                "--first",
                &w.to_string(),
                "--count",
                &count.to_string(),
                "--stride",
                &stride.to_string(),
                "--sources",
                &a.sources.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut it = l.split_whitespace();
                let ev = match (it.next(), it.next(), it.next()) {
                    (Some("up"), Some(c), Some(f)) => {
                        Ev::Up(c.parse().unwrap_or(0), f.parse().unwrap_or(0))
                    }
                    (Some("s"), Some(i), Some(us)) => {
                        Ev::Single(i.parse().unwrap_or(usize::MAX), us.parse().unwrap_or(0))
                    }
                    (Some("b"), Some(us), _) => Ev::Broadcast(us.parse().unwrap_or(0)),
                    _ => continue,
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        workers.push(Proc(child));
    }
    drop(tx);
    let (mut connected, mut failed, mut up) = (0, 0, 0);
    while up < workers.len() {
        match tokio::time::timeout(Duration::from_secs(300), rx.recv()).await {
            Ok(Some(Ev::Up(c, f))) => {
                connected += c;
                failed += f;
                up += 1;
            }
            Ok(Some(_)) => {}
            _ => anyhow::bail!("workers did not connect"),
        }
    }
    println!(
        "  {connected} of {} kiosks connected in {:.1} s by {} worker processes ({failed} failed)",
        a.kiosks,
        t.elapsed().as_secs_f64(),
        workers.len()
    );
    // Let the server settle (hellos answered, actors started, their first heartbeats
    // written), then take the median of 21 readings over 5 s: a single reading moved by
    // ±5 MiB with what the connection storm and the heartbeat flush still held (the
    // per-kiosk figure by ±0.3 KB from run to run).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut readings = Vec::new();
    for _ in 0..21 {
        readings.push(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    readings.sort_unstable();
    let rss = readings[readings.len() / 2];
    let http = reqwest::Client::new();
    let mut single = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut broadcast = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut lost = 0;
    for n in 0..a.singles {
        let i = (n * 7919) % a.kiosks.max(1);
        let r = http
            .post(format!("{base}/ops/devices/{}/command", code(i)))
            .bearer_auth(token)
            .json(
                &json!({"name":"message","text": format!("s:{}", micros()), "reason": "benchmark"}),
            )
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 202,
            "command refused: {}",
            r.status()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ev::Single(k, us))) if k == i => {
                    single.record(us.max(1))?;
                    break;
                }
                Ok(Some(_)) => {}
                _ => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    let mut broadcast_lost = 0;
    // CPU over the broadcasts: the server's, and the load generators' (the workers and
    // this process, which reads their receipts).
    let load_pids: Vec<String> = workers
        .iter()
        .filter_map(|w| w.0.id())
        .map(|p| p.to_string())
        .chain(["self".to_string()])
        .collect();
    let load_ticks = || {
        load_pids
            .iter()
            .filter_map(|p| super::cpu_ticks(p))
            .sum::<u64>()
    };
    let cpu0 = (super::cpu_ticks(&pid.to_string()), load_ticks());
    for _ in 0..a.broadcasts {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = http
            .post(format!("{base}/ops/broadcast"))
            .bearer_auth(token)
            .json(
                &json!({"name":"message","text": format!("b:{}", micros()), "reason": "benchmark"}),
            )
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 202,
            "broadcast refused: {}",
            r.status()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while seen < connected {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ev::Broadcast(us))) => {
                    broadcast.record(us.max(1))?;
                    seen += 1;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        broadcast_lost += connected - seen;
    }
    let cpu1 = (super::cpu_ticks(&pid.to_string()), load_ticks());
    let per = |t0: u64, t1: u64| t1.saturating_sub(t0) as f64 * 10.0 / a.broadcasts.max(1) as f64;
    let cpu = cpu0
        .0
        .zip(cpu1.0)
        .map(|(s0, s1)| (per(s0, s1), per(cpu0.1, cpu1.1)));
    if lost + broadcast_lost > 0 {
        println!(
            "  not received within the deadline: {lost} commands, {broadcast_lost} broadcast copies"
        );
    }
    for mut w in workers {
        drop(w.0.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), w.0.wait()).await;
    }
    Ok(Figures {
        connected,
        rss_idle_kib,
        rss_fresh_kib,
        rss_kib: rss,
        single,
        broadcast,
        cpu,
    })
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// A table row: its label, how to read it from a run, its unit.
type Row<'a> = (&'a str, &'a dyn Fn(&Figures) -> f64, &'a str);

fn print_table(a: &PushArgs, k: Option<&Figures>, p: Option<&Figures>) {
    println!();
    println!(
        "{} kiosks, {} worker processes, {} commands one at a time, {} broadcast(s):",
        a.kiosks, a.workers, a.singles, a.broadcasts
    );
    println!("| figure | Node `ws` peer | kioskd | kioskd / peer |");
    println!("| --- | ---: | ---: | ---: |");
    let cell = |f: Option<&Figures>, get: &dyn Fn(&Figures) -> f64, unit: &str| {
        f.map(|f| match unit {
            "" => format!("{:.0}", get(f)),
            _ => format!("{:.2} {unit}", get(f)),
        })
        .unwrap_or_else(|| "—".into())
    };
    let rows: [Row; 12] = [
        ("kiosks connected", &|f| f.connected as f64, ""),
        (
            "server RSS idle",
            &|f| f.rss_idle_kib as f64 / 1024.0,
            "MiB",
        ),
        (
            "server RSS per connected kiosk",
            &|f| f.per_kiosk_kb(),
            "KB",
        ),
        (
            "server RSS idle before the operator's sign-in",
            &|f| f.rss_fresh_kib as f64 / 1024.0,
            "MiB",
        ),
        (
            "server RSS per connected kiosk, from that",
            &|f| f.per_kiosk_fresh_kb(),
            "KB",
        ),
        (
            "server RSS with the kiosks",
            &|f| f.rss_kib as f64 / 1024.0,
            "MiB",
        ),
        ("command POST → kiosk, p50", &|f| ms(&f.single, 0.5), "ms"),
        ("command POST → kiosk, p99", &|f| ms(&f.single, 0.99), "ms"),
        (
            "broadcast POST → each kiosk, p50",
            &|f| ms(&f.broadcast, 0.5),
            "ms",
        ),
        (
            "broadcast POST → each kiosk, p99",
            &|f| ms(&f.broadcast, 0.99),
            "ms",
        ),
        (
            "server CPU per broadcast",
            &|f| f.cpu.map_or(0.0, |c| c.0),
            "ms",
        ),
        (
            "load generators' CPU per broadcast",
            &|f| f.cpu.map_or(0.0, |c| c.1),
            "ms",
        ),
    ];
    for (what, get, unit) in rows {
        let ratio = match (k, p) {
            (Some(k), Some(p)) if get(p) > 0.0 => format!("{:.2}×", get(k) / get(p)),
            _ => "—".into(),
        };
        println!(
            "| {what} | {} | {} | {ratio} |",
            cell(p, get, unit),
            cell(k, get, unit)
        );
    }
    for (name, f) in [("kioskd", k), ("peer", p)] {
        if let Some(f) = f {
            println!(
                "{name}: commands {} (max {:.2} ms), broadcast copies {} (max {:.2} ms)",
                f.single.len(),
                f.single.max() as f64 / 1000.0,
                f.broadcast.len(),
                f.broadcast.max() as f64 / 1000.0
            );
        }
    }
}

/// The worker: holds `count` kiosks, every `stride`-th from `first`, acks commands,
/// reports latencies.
pub async fn worker(
    port: u16,
    first: usize,
    count: usize,
    stride: usize,
    sources: u8,
) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    // One writer: lines batched into as few writes as the reader allows.
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut buf = String::new();
        while let Some(l) = out_rx.recv().await {
            buf.push_str(&l);
            buf.push('\n');
            while let Ok(l) = out_rx.try_recv() {
                buf.push_str(&l);
                buf.push('\n');
            }
            if out.write_all(buf.as_bytes()).await.is_err() || out.flush().await.is_err() {
                break;
            }
            buf.clear();
        }
    });
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(128));
    let (up_tx, mut up_rx) = mpsc::unbounded_channel::<bool>();
    for i in (first..).step_by(stride.max(1)).take(count) {
        let permit = sem.clone().acquire_owned().await?;
        let out = out_tx.clone();
        let up = up_tx.clone();
        let src = Ipv4Addr::new(127, 0, 0, 1 + (i % sources.max(1) as usize) as u8);
        let url = format!("ws://127.0.0.1:{port}/ws/kiosk?device_code={}", code(i));
        tokio::spawn(async move {
            let stream = match TcpSocket::new_v4().and_then(|s| {
                s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
                Ok(s)
            }) {
                Ok(s) => s.connect(server).await.ok(),
                Err(_) => None,
            };
            let cfg = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let ws = match stream {
                Some(st) => tokio_tungstenite::client_async_with_config(url, st, Some(cfg))
                    .await
                    .ok(),
                None => None,
            };
            drop(permit);
            let Some((ws, _)) = ws else {
                let _ = up.send(false);
                return;
            };
            let mut ws = ws;
            if ws
                .send(Message::Text(r#"{"type":"hello"}"#.into()))
                .await
                .is_err()
            {
                let _ = up.send(false);
                return;
            }
            let _ = up.send(true);
            drop(up);
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let now = micros();
                let Some(f) = super::Incoming::parse(&t) else {
                    continue;
                };
                if f.kind != "command" {
                    continue;
                }
                if let Some((kind, sent)) = f.timed() {
                    let lat = now.saturating_sub(sent);
                    let _ = out.send(match kind {
                        "s" => format!("s {i} {lat}"),
                        _ => format!("b {lat}"),
                    });
                }
                let _ = ws.send(Message::Text(f.ack().into())).await;
            }
        });
    }
    drop(up_tx);
    let (mut ok, mut failed) = (0, 0);
    while let Some(u) = up_rx.recv().await {
        if u {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    let _ = out_tx.send(format!("up {ok} {failed}"));
    // Until the bench closes our stdin.
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut sink).await;
    drop(out_tx);
    writer.abort();
    Ok(())
}
