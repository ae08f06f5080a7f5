//! `kioskd demo`: a first run that shows something. The real server on a throw-away
//! SQLite file (a temp dir, removed on shutdown) with a simulated venue: devices across
//! three sites, every kiosk the reference agent (`crate::agent`) on its own task over
//! `/ws/kiosk`, phones that sign in, recharge, start, play and end sessions through the
//! phone pages' own endpoints, an attendance terminal speaking `/iclock`, a maintainer,
//! and three operators (admin `demo`, `staff`, `viewer`) with random passwords.
//!
//! Everything the simulation does goes over HTTP/WebSocket like a real fleet: the venue
//! is set up through the ops API with a random, never printed ops token, the phones send
//! `Sec-Fetch-Site: same-origin` as kioskd's pages do. The demo's settings (dev identity,
//! sandbox payments, an SMS debug code, short billing units, unsigned kiosk sockets) are
//! a configuration layer of this command only; no default changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use kioskd_actors::Clock;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::agent::{Agent, AgentConfig};
use crate::config::Config;

/// How fast the simulated people act.
#[derive(Debug, Clone)]
pub struct Pace {
    /// The billing unit (seconds) of the demo server.
    pub unit_seconds: u64,
    /// A phone waits this long (uniformly between the two) before its next action.
    pub think: (Duration, Duration),
    /// A session lasts this long unless the balance runs out first.
    pub play: (Duration, Duration),
    /// Every this long, one of the flapping kiosks drops its connection...
    pub flap_every: Duration,
    /// ...for this long.
    pub offline_for: Duration,
    /// The attendance terminal polls for commands this often (and punches now and then).
    pub terminal_poll: Duration,
}

impl Pace {
    /// A human pace: sessions of minutes, billing units of 10 s so the console moves.
    pub fn human() -> Self {
        Self {
            unit_seconds: 10,
            think: (Duration::from_secs(15), Duration::from_secs(90)),
            play: (Duration::from_secs(60), Duration::from_secs(300)),
            flap_every: Duration::from_secs(120),
            offline_for: Duration::from_secs(40),
            terminal_poll: Duration::from_secs(30),
        }
    }

    /// A fast pace for tests.
    pub fn fast() -> Self {
        Self {
            unit_seconds: 1,
            think: (Duration::from_millis(50), Duration::from_millis(300)),
            play: (Duration::from_millis(2500), Duration::from_millis(4000)),
            flap_every: Duration::from_secs(2),
            offline_for: Duration::from_millis(500),
            terminal_poll: Duration::from_millis(500),
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the server listens (port 0: any).
    pub listen: SocketAddr,
    /// How many kiosks (at least 4: two postpaid, one in maintenance, one to play on).
    pub kiosks: usize,
    /// Seed of the venue and of every simulated choice (random when none).
    pub seed: Option<u64>,
    /// How fast people act.
    pub pace: Pace,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            kiosks: 36,
            seed: None,
            pace: Pace::human(),
        }
    }
}

/// A sign-in printed once.
#[derive(Debug, Clone)]
pub struct Account {
    /// Username.
    pub username: String,
    /// Role (admin, staff, viewer).
    pub role: String,
    /// The random password.
    pub password: String,
}

/// A running demo.
pub struct Demo {
    /// `http://host:port`.
    pub base: String,
    /// The seed in use.
    pub seed: u64,
    /// The operators (admin `demo` first).
    pub operators: Vec<Account>,
    /// The maintainer's sign-in.
    pub maintainer: Account,
    /// The SMS code the phone pages accept (dev identity).
    pub sms_code: String,
    /// A free prepaid kiosk to open the phone app on.
    pub phone_device: String,
    /// Devices registered.
    pub devices: usize,
    dir: Option<tempfile::TempDir>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The three sites: (province, city, area, location).
const SITES: [(&str, &str, &str, &str); 3] = [
    ("上海", "上海", "浦东", "世纪大道 VR 体验店"),
    ("北京", "北京", "朝阳", "三里屯 电竞馆"),
    ("广东", "深圳", "南山", "海岸城 VR 乐园"),
];

/// Kinds of seat and their price (fen per billing unit).
const KINDS: [(&str, i64); 4] = [
    ("VR 座椅", 30),
    ("赛车模拟", 50),
    ("飞行模拟", 80),
    ("VR 射击舱", 120),
];

const NICKNAMES: [&str; 24] = [
    "小明", "阿杰", "晓雯", "大卫", "丽丽", "老王", "小虎", "思思", "阿强", "Mia", "小鱼", "浩然",
    "佳佳", "Kevin", "子涵", "一诺", "小黑", "宇航", "婷婷", "阿飞", "欣怡", "Tony", "梓轩",
    "小白",
];

const STAFF: [(&str, &str); 4] = [
    ("1001", "张伟"),
    ("1002", "李娜"),
    ("1003", "王芳"),
    ("1004", "刘洋"),
];

/// The demo's configuration layer (over defaults, the `--config` file and `KIOSKD_*`).
fn layer(dir: &Path, addr: SocketAddr, ops_token: &str, sms: &str, pace: &Pace) -> String {
    let db = dir.join("kioskd.db");
    let files = dir.join("files");
    format!(
        r#"[server]
listen = "{addr}"
environment = "development"
[database]
url = "sqlite://{db}"
max_connections = 8
[redis]
url = ""
[ops]
token = "{ops_token}"
[identity]
mode = "dev"
cookie_secret = "{cookie_secret}"
[payments]
mode = "sandbox"
[sms]
debug_code = "{sms}"
[billing]
unit_seconds = {unit}
free_seconds = 0
heartbeat_timeout_seconds = 60
low_balance_minutes = 3
[ws]
allow_unsigned = true
[rest]
service_number = "400-820-0000"
[public]
base_url = "http://{addr}"
[files]
dir = "{files}"
[metrics]
sample_interval_ms = 2000
"#,
        db = db.display(),
        files = files.display(),
        unit = pace.unit_seconds.max(1),
        cookie_secret = kioskd_actors::ids::new_token(),
    )
}

fn password(rng: &mut impl Rng) -> String {
    const CHARS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..16)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn between(rng: &mut impl Rng, (a, b): (Duration, Duration)) -> Duration {
    if b <= a {
        return a;
    }
    Duration::from_millis(rng.random_range(a.as_millis() as u64..=b.as_millis() as u64))
}

/// Sleeps, or returns false when the demo stops meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return false;
    }
    let slept = tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    slept && !*stop.borrow()
}

/// A device of the venue.
#[derive(Debug, Clone)]
struct Device {
    code: String,
    postpaid: bool,
    maintain: bool,
}

/// The ops API with the demo's service token.
#[derive(Clone)]
struct Ops {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Ops {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let st = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(st.is_success(), "POST {path}: {st} {v}");
        Ok(v)
    }
}

impl Demo {
    /// Starts the server and the simulation; returns once the venue is set up.
    pub async fn start(opts: DemoOptions, file: Option<&Path>) -> anyhow::Result<Self> {
        let seed = opts.seed.unwrap_or_else(|| rand::rng().random());
        let mut rng = StdRng::seed_from_u64(seed);
        let kiosks = opts.kiosks.max(4);
        let dir = tempfile::Builder::new()
            .prefix("kioskd-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        std::fs::create_dir_all(dir.path().join("files"))?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        // Secrets are random whatever the seed: the seed makes the venue, not the keys.
        let ops_token = kioskd_actors::ids::new_token();
        let sms_code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
        let cfg = Config::load_layers(
            file,
            &[&layer(dir.path(), addr, &ops_token, &sms_code, &opts.pace)],
        )
        .context("demo configuration")?;
        let app = crate::Application::build(cfg, listener).await?;
        let state = app.state();
        let (stop, stop_rx) = watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(app.run(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
        let base = format!("http://{addr}");

        // People with sign-ins.
        let mut operators = Vec::new();
        for (name, role) in [("demo", "admin"), ("staff", "staff"), ("viewer", "viewer")] {
            let pw = password(&mut rand::rng());
            state
                .operators
                .add(name, &pw, role, &[], Clock::system().now_ms())
                .await
                .map_err(|e| anyhow::anyhow!("cannot add operator {name}: {e}"))?;
            operators.push(Account {
                username: name.into(),
                role: role.into(),
                password: pw,
            });
        }
        let maintainer = Account {
            username: "maintainer".into(),
            role: "maintainer".into(),
            password: password(&mut rand::rng()),
        };
        crate::app::add_maintainer(
            &state.db,
            &maintainer.username,
            &maintainer.password,
            Clock::system().now_ms(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot add the maintainer: {e}"))?;

        let ops = Ops {
            base: base.clone(),
            token: ops_token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
        };

        // The venue: devices spread over the sites, two postpaid dialect-B kiosks, one
        // in maintenance.
        let mut devices = Vec::new();
        for i in 0..kiosks {
            let site = i % SITES.len();
            let (province, city, area, location) = SITES[site];
            let (kind, base_price) = KINDS[rng.random_range(0..KINDS.len())];
            let price = base_price + site as i64 * 10;
            let code = format!("5E-4D-00-00-{:02X}-{:02X}", site + 1, i + 1);
            let postpaid = i == 1 || (i == 5 && kiosks > 12);
            let mut body = json!({
                "device_code": code,
                "name": format!("{kind} {:02}", i / SITES.len() + 1),
                "charge_mode": price,
                "province": province, "city": city, "area": area, "location": location,
            });
            if postpaid {
                body["client_id"] = json!(format!("{}", 9001 + i));
                body["billing_mode"] = json!("postpaid");
            }
            ops.post("/ops/devices", body).await?;
            devices.push(Device {
                code,
                postpaid,
                maintain: i == 2,
            });
        }

        let mut tasks = JoinSet::new();
        // Every kiosk: the reference agent on its own task; two of them drop off now and then.
        let flappers: Vec<usize> = (0..kiosks)
            .filter(|&i| !devices[i].maintain && !devices[i].postpaid)
            .rev()
            .take(2)
            .collect();
        for (i, d) in devices.iter().enumerate() {
            let flap = flappers.iter().position(|&f| f == i);
            tasks.spawn(kiosk(
                base.clone(),
                d.code.clone(),
                flap,
                opts.pace.clone(),
                stop_rx.clone(),
            ));
        }
        // Maintenance: once its kiosk is connected.
        let under_repair = devices.iter().find(|d| d.maintain).map(|d| d.code.clone());
        if let Some(code) = under_repair {
            let ops = ops.clone();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                for _ in 0..50 {
                    let r = ops
                        .post(
                            &format!("/ops/devices/{code}/command"),
                            json!({"name": "maintain", "reason": "演示：头显镜片更换中"}),
                        )
                        .await;
                    if r.is_ok() || !pause(&mut stop, Duration::from_millis(200)).await {
                        break;
                    }
                }
            });
        }

        // The attendance terminal, its staff and their punches.
        let term_token = kioskd_actors::ids::new_token();
        ops.post(
            "/ops/terminals",
            json!({"sn": "DEMO0001", "token": term_token, "name": "世纪大道 前台考勤机", "kind": "native"}),
        )
        .await?;
        for (pin, name) in STAFF {
            ops.post("/ops/staff", json!({"pin": pin, "name": name, "pri": 0}))
                .await?;
        }
        tasks.spawn(terminal(
            base.clone(),
            "DEMO0001".into(),
            opts.pace.clone(),
            StdRng::seed_from_u64(seed ^ 0x7e57),
            stop_rx.clone(),
        ));

        // One kiosk is kept for the person watching (the printed phone app URL).
        let phone_device = devices
            .iter()
            .enumerate()
            .rev()
            .find(|(i, d)| !d.maintain && !d.postpaid && !flappers.contains(i))
            .map(|(_, d)| d)
            .map(|d| d.code.clone())
            .unwrap_or_default();
        // Phones: about two for every three kiosks.
        let phones = (kiosks * 2 / 3).max(3);
        let playable: Arc<Vec<Device>> = Arc::new(
            devices
                .iter()
                .filter(|d| !d.maintain && d.code != phone_device)
                .cloned()
                .collect(),
        );
        let unpaid_device = devices.iter().find(|d| d.postpaid).map(|d| d.code.clone());
        for p in 0..phones {
            let role = match p {
                0 => Role::LeavesUnpaid(unpaid_device.clone()),
                p if p % 4 == 1 => Role::RunsLow,
                _ => Role::Regular,
            };
            tasks.spawn(phone(
                base.clone(),
                p,
                role,
                sms_code.clone(),
                playable.clone(),
                opts.pace.clone(),
                StdRng::seed_from_u64(seed.wrapping_add(1 + p as u64)),
                stop_rx.clone(),
            ));
        }
        tracing::info!(seed, kiosks, phones, "demo venue ready");
        Ok(Self {
            base,
            seed,
            operators,
            maintainer,
            sms_code,
            phone_device,
            devices: kiosks,
            dir: Some(dir),
            stop,
            tasks,
            server,
        })
    }

    /// The temp dir holding the database (removed by `shutdown`).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new(""))
    }

    /// What `kioskd demo` prints: where to look and how to sign in.
    pub fn banner(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "\nkioskd demo: a simulated venue with {} kiosks on 3 sites (seed {})\n\n",
            self.devices, self.seed
        ));
        s.push_str(&format!("  console    {}/console/\n", self.base));
        s.push_str(&format!(
            "  phone app  {}/app/?device_code={}   (open it at phone size; dev sign-in, SMS code {})\n\n",
            self.base, self.phone_device, self.sms_code
        ));
        s.push_str("  sign in (passwords are random, shown only now):\n");
        for a in &self.operators {
            s.push_str(&format!(
                "    {:<10} {:<18} {}\n",
                a.username, a.password, a.role
            ));
        }
        s.push_str(&format!(
            "    {:<10} {:<18} {} (the kiosk's maintenance sign-in)\n",
            self.maintainer.username, self.maintainer.password, self.maintainer.role
        ));
        s.push_str(&format!(
            "\n  data in {} (removed on exit). Ctrl-C stops.\n",
            self.dir().display()
        ));
        s
    }

    /// Stops the simulation and the server and removes the temp dir.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        match tokio::time::timeout(Duration::from_secs(30), &mut self.server).await {
            Ok(r) => r.context("server task")??,
            Err(_) => self.server.abort(),
        }
        if let Some(d) = self.dir.take() {
            let path: PathBuf = d.path().to_path_buf();
            d.close()
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }
}

/// One kiosk: the reference agent, reconnecting on its own; a flapping kiosk is cut off
/// now and then (its socket closes, the fleet shows it offline, then it comes back).
async fn kiosk(
    base: String,
    code: String,
    flap: Option<usize>,
    pace: Pace,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Clock::system();
    let agent = Arc::new(Mutex::new(Agent::new(clock.clone())));
    let mut cfg = AgentConfig::new(&base, &code);
    cfg.backoff_max = Duration::from_secs(5);
    // Staggered: the two flapping kiosks do not drop at once.
    let offset = pace.flap_every / 2 * flap.unwrap_or(0) as u32;
    loop {
        let run_for = match flap {
            Some(_) => pace.flap_every + offset,
            None => Duration::from_secs(u64::MAX / 4),
        };
        let mut s = stop.clone();
        let until = async move {
            tokio::select! {
                _ = tokio::time::sleep(run_for) => {}
                _ = s.wait_for(|v| *v) => {}
            }
        };
        crate::agent::run(cfg.clone(), agent.clone(), clock.clone(), until).await;
        if *stop.borrow() {
            return;
        }
        tracing::info!(device = %code, "demo: kiosk goes offline for a while");
        if !pause(&mut stop, pace.offline_for).await {
            return;
        }
    }
}

/// What a phone does over time.
#[derive(Debug, Clone)]
enum Role {
    /// Plays, recharges when it must.
    Regular,
    /// Recharges little and plays until the balance runs out.
    RunsLow,
    /// Plays once on a postpaid kiosk and never pays the order.
    LeavesUnpaid(Option<String>),
}

/// A phone's browser: a cookie jar and the header kioskd's own pages send.
struct Browser {
    base: String,
    http: reqwest::Client,
}

impl Browser {
    fn new(base: &str) -> anyhow::Result<Self> {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "sec-fetch-site",
            reqwest::header::HeaderValue::from_static("same-origin"),
        );
        Ok(Self {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(h)
                .timeout(Duration::from_secs(20))
                .build()?,
        })
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&serde_urlencoded::to_string(query)?);
        }
        let r = self.http.get(url).send().await?;
        Ok(r.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        Ok(r.json().await?)
    }

    async fn recharge(&self, fen: i64) -> anyhow::Result<()> {
        let v = self.get(&format!("/wechat/recharge/{fen}"), &[]).await?;
        anyhow::ensure!(v["result"] == "success", "recharge: {v}");
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn phone(
    base: String,
    n: usize,
    role: Role,
    sms: String,
    devices: Arc<Vec<Device>>,
    pace: Pace,
    mut rng: StdRng,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = phone_life(&base, n, role, &sms, &devices, &pace, &mut rng, &mut stop).await
        && !*stop.borrow()
    {
        tracing::warn!(phone = n, error = %e, "demo: a phone gave up");
    }
}

#[allow(clippy::too_many_arguments)]
async fn phone_life(
    base: &str,
    n: usize,
    role: Role,
    sms: &str,
    devices: &[Device],
    pace: &Pace,
    rng: &mut StdRng,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // People arrive over the first minutes, not all at once.
    if !pause(stop, between(rng, (Duration::ZERO, pace.think.1))).await {
        return Ok(());
    }
    let b = Browser::new(base)?;
    let nickname = NICKNAMES[n % NICKNAMES.len()];
    let openid = format!("demo-phone-{n}");
    let v = b
        .get("/dev/login", &[("openid", &openid), ("nickname", nickname)])
        .await?;
    anyhow::ensure!(v["success"] == true, "dev login: {v}");
    let mobile = format!("177{:08}", 10_000_000 + n);
    let v = b
        .post("/wechat/login", json!({"mobile": mobile, "code": sms}))
        .await?;
    anyhow::ensure!(v["success"] == true, "bind mobile: {v}");
    let first = match role {
        Role::RunsLow => 300 + 100 * rng.random_range(0..4),
        Role::LeavesUnpaid(_) => 0,
        Role::Regular => 100 * [50, 100, 200, 300][rng.random_range(0..4)],
    };
    if first > 0 {
        b.recharge(first).await?;
    }
    let mut low_runs = 0;
    loop {
        if !pause(stop, between(rng, pace.think)).await {
            return Ok(());
        }
        let device = match &role {
            Role::LeavesUnpaid(Some(code)) => devices.iter().find(|d| &d.code == code),
            _ => devices.choose(rng),
        };
        let Some(device) = device else {
            return Ok(());
        };
        let v = b
            .get(
                &format!("/windows/login/{}", device.code),
                &[("from", "playing")],
            )
            .await?;
        match v["result"].as_i64() {
            None if v["success"] == true => {}
            Some(-5) => {
                // Not enough for a minute: top up (a low runner only after a while).
                low_runs += 1;
                if !matches!(role, Role::RunsLow) || low_runs > 2 {
                    b.recharge(100 * [20, 50, 100][rng.random_range(0..3)])
                        .await?;
                    low_runs = 0;
                }
                continue;
            }
            // Busy, offline, in maintenance, already playing elsewhere: try later.
            _ => continue,
        }
        tracing::info!(phone = n, device = %device.code, "demo: session started");
        let play = between(rng, pace.play);
        let ended_by_server = play_until(&b, stop, play).await;
        if *stop.borrow() {
            // Leave the session running: the next start of a demo is a new venue.
            return Ok(());
        }
        if !ended_by_server {
            let _ = b.get("/windows/offline", &[]).await?;
        }
        if device.postpaid {
            if matches!(role, Role::LeavesUnpaid(_)) {
                tracing::info!(phone = n, "demo: leaves its postpaid order unpaid");
                let _ = stop.wait_for(|s| *s).await;
                return Ok(());
            }
            // Pay the order as the orders page does (the unpaid one is listed first).
            for _ in 0..20 {
                let v = b
                    .get("/wechat/orders", &[("page", "1"), ("size", "1")])
                    .await?;
                if let Some(id) = v["result"]["data"][0]["orderId"].as_str() {
                    let id = id.to_string();
                    b.post("/wechat/order/pay", json!({"orderId": id})).await?;
                    break;
                }
                if !pause(stop, Duration::from_millis(200)).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Watches the live session (as the live page does over `/windows/online/status`) until
/// `play` has passed; true when the server ended it first (balance out).
async fn play_until(b: &Browser, stop: &mut watch::Receiver<bool>, play: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + play;
    let step = (play / 6).max(Duration::from_millis(200));
    while tokio::time::Instant::now() < deadline {
        if !pause(stop, step.min(deadline - tokio::time::Instant::now())).await {
            return false;
        }
        if let Ok(v) = b.get("/windows/online/status", &[]).await
            && v["success"] == false
            && v["result"] == 0
        {
            return true;
        }
    }
    false
}

/// The attendance terminal: a native `/iclock` client that shakes hands, uploads the
/// morning's punches, then polls for commands and punches now and then.
async fn terminal(
    base: String,
    sn: String,
    pace: Pace,
    mut rng: StdRng,
    mut stop: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
    {
        Ok(h) => h,
        Err(_) => return,
    };
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap_or(chrono_tz::Asia::Shanghai);
    let now_local = || chrono::Utc::now().with_timezone(&tz);
    let _ = http
        .get(format!(
            "{base}/iclock/cdata?SN={sn}&options=all&pushver=2.2.14&language=83"
        ))
        .send()
        .await;
    let upload = |lines: String, stamp: i64| {
        let http = http.clone();
        let url = format!("{base}/iclock/cdata?SN={sn}&table=ATTLOG&Stamp={stamp}");
        async move {
            let _ = http.post(url).body(lines).send().await;
        }
    };
    // The morning: everybody clocked in between 08:30 and 09:10 (or an hour ago).
    let today = now_local();
    let mut lines = String::new();
    for (i, (pin, _)) in STAFF.iter().enumerate() {
        let t = today - chrono::Duration::minutes(60 + 10 * i as i64 + rng.random_range(0..10));
        lines.push_str(&format!(
            "{pin}\t{}\t0\t1\t0\t0\t0\n",
            t.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    let mut stamp = 1;
    upload(lines, stamp).await;
    loop {
        if !pause(&mut stop, pace.terminal_poll).await {
            return;
        }
        let _ = http
            .get(format!("{base}/iclock/getrequest?SN={sn}"))
            .send()
            .await;
        if rng.random_ratio(1, 4) {
            let (pin, _) = STAFF[rng.random_range(0..STAFF.len())];
            let status = rng.random_range(0..2);
            stamp += 1;
            upload(
                format!(
                    "{pin}\t{}\t{status}\t1\t0\t0\t0\n",
                    now_local().format("%Y-%m-%d %H:%M:%S")
                ),
                stamp,
            )
            .await;
        }
    }
}
