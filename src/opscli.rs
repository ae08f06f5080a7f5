//! `kioskd ops ...`: the on-call operator's CLI over the ops API of a running server (it
//! never touches the database). The server address comes from `--server`,
//! `KIOSKD_OPS_SERVER` or the configuration's `[server] listen`. The operator signs in
//! once with `kioskd ops login --username U` (a personal API token is saved to
//! `$XDG_CONFIG_HOME/kioskd/token`, mode 0600) or passes a token (`--token`,
//! `KIOSKD_OPS_TOKEN`); automation may use the shared `[ops] token`, audited as
//! `service`. The server's audit log names the authenticated operator; each action may
//! carry a reason (`kioskd ops audit`).

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::config::Config;

/// Connection flags shared by every `ops` subcommand.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Server base URL (default: http:// + [server] listen of the configuration).
    #[arg(long, env = "KIOSKD_OPS_SERVER")]
    pub server: Option<String>,
    /// A personal API token (default: the one `kioskd ops login` saved, else the
    /// shared [ops] token of the configuration / KIOSKD_OPS__TOKEN).
    #[arg(long, env = "KIOSKD_OPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: OpsCmd,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum OpsCmd {
    /// Sign in as an operator and save a personal API token for the next commands
    /// (password from KIOSKD_OPERATOR_PASSWORD, else one line on standard input).
    Login {
        /// Operator username.
        #[arg(long)]
        username: String,
    },
    /// Who the token belongs to.
    Whoami,
    /// List devices (status, online, running session).
    Devices,
    /// List running sessions.
    Sessions,
    /// Lock a device (ends its running session, billed to now).
    Lock {
        /// Device code.
        code: String,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unlock a device.
    Unlock {
        /// Device code.
        code: String,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Tell a kiosk to restart (delivered over its WebSocket, kept until acknowledged).
    Restart {
        /// Device code.
        code: String,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show a message on a kiosk.
    Message {
        /// Device code.
        code: String,
        /// The text (1-500 characters).
        text: String,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// End a running session (billed to now, the rest refunded).
    End {
        /// Session id (see `kioskd ops sessions`).
        session_id: i64,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Credit (positive) or debit (negative) a user's balance, in fen.
    Adjust {
        /// User id.
        user_id: i64,
        /// Amount in fen.
        #[arg(allow_negative_numbers = true)]
        amount: i64,
        /// Why (required).
        #[arg(long)]
        reason: String,
        /// Idempotency key (default: a fresh one per invocation). The same key never
        /// adjusts twice, so a retry after a lost answer is safe.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Queue a command for an attendance terminal.
    TerminalCommand {
        /// Terminal serial number.
        sn: String,
        /// Command name (e.g. `INFO`, `CHECK`, `updatestd`; see `protocol/ATTENDANCE.md`).
        name: String,
        /// Arguments as a JSON object.
        #[arg(long)]
        args: Option<String>,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show the audit log (newest first).
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only this operator.
        #[arg(long)]
        operator: Option<String>,
        /// Only this target (device code, user id, sn ...).
        #[arg(long)]
        target: Option<String>,
    },
    /// Rate plans, zones, member groups and packages (docs/pricing.md).
    Pricing {
        #[command(subcommand)]
        cmd: PricingCmd,
    },
    /// Stream live events from /ws/ops, one line each.
    Tail {
        /// Only events of this device (repeatable).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Only events of this type: session_started, billing, balance_low,
        /// session_ended, device_status (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `kioskd ops pricing ...`. Changes take `--reason` (kept in the audit log).
#[derive(Debug, Subcommand)]
pub enum PricingCmd {
    /// List rate plans.
    Plans,
    /// Show one plan's week as runs of equal rates per day.
    Plan {
        /// Plan id.
        id: i64,
    },
    /// Create a plan from a grid file (336 rates in fen per minute, Monday 00:00 first:
    /// a JSON array, flat or 7 × 48, or numbers separated by spaces, commas or lines).
    CreatePlan {
        /// Name.
        #[arg(long)]
        name: String,
        /// The grid file.
        #[arg(long)]
        grid: std::path::PathBuf,
        /// Minimum charge of a session, in fen.
        #[arg(long, default_value_t = 0)]
        min_charge: i64,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Replace a plan's weekly grid from a file (see create-plan).
    SetGrid {
        /// Plan id.
        id: i64,
        /// The grid file.
        #[arg(long)]
        grid: std::path::PathBuf,
        /// Minimum charge of a session, in fen.
        #[arg(long, default_value_t = 0)]
        min_charge: i64,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a plan nothing uses.
    DeletePlan {
        /// Plan id.
        id: i64,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List zones with their devices.
    Zones,
    /// Create a zone.
    CreateZone {
        /// Name.
        #[arg(long)]
        name: String,
        /// Its plan.
        #[arg(long)]
        plan: Option<i64>,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Set a zone's plan (none without --plan).
    ZonePlan {
        /// Zone id.
        id: i64,
        /// The plan.
        #[arg(long)]
        plan: Option<i64>,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put a device in a zone and/or on a plan of its own (each cleared when omitted).
    Assign {
        /// Device code.
        code: String,
        /// Zone id.
        #[arg(long)]
        zone: Option<i64>,
        /// Plan id.
        #[arg(long)]
        plan: Option<i64>,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List member groups.
    Groups,
    /// Create a member group.
    CreateGroup {
        /// Name.
        #[arg(long)]
        name: String,
        /// Discount in percent (0-100).
        #[arg(long, default_value_t = 0)]
        discount: i64,
        /// Its own plan.
        #[arg(long)]
        plan: Option<i64>,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put a user in a group (no group without --group).
    UserGroup {
        /// User id.
        user_id: i64,
        /// Group id.
        #[arg(long)]
        group: Option<i64>,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List packages.
    Packages,
    /// Put a package on sale.
    CreatePackage {
        /// Name.
        #[arg(long)]
        name: String,
        /// Minutes of use.
        #[arg(long)]
        minutes: i64,
        /// Price in fen.
        #[arg(long)]
        price: i64,
        /// Days of validity.
        #[arg(long)]
        valid_days: i64,
        /// A zone where usable (repeatable; none: any device).
        #[arg(long = "zone")]
        zones: Vec<i64>,
        /// A daily window HH:MM-HH:MM (repeatable; none: all day).
        #[arg(long = "window")]
        windows: Vec<String>,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Withdraw a package from sale (holders keep it).
    Withdraw {
        /// Package id.
        id: i64,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give a user a package without payment.
    Grant {
        /// User id.
        user_id: i64,
        /// Package id.
        package_id: i64,
        /// Why (audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// An ops API client.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Where `kioskd ops login` keeps the personal token.
pub fn token_file() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
        })?;
    Some(dir.join("kioskd").join("token"))
}

fn saved_token() -> Option<String> {
    let t = std::fs::read_to_string(token_file()?).ok()?;
    Some(t.trim().to_string()).filter(|t| !t.is_empty())
}

fn base_url(args: &OpsArgs, cfg: &Config) -> String {
    args.server
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.server.listen))
        .trim_end_matches('/')
        .to_string()
}

/// `kioskd ops login`: signs in, creates a personal token, saves it (0600).
async fn login(
    args: &OpsArgs,
    cfg: &Config,
    username: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let base = base_url(args, cfg);
    let password = match std::env::var("KIOSKD_OPERATOR_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .cookie_store(true)
        .build()?;
    let resp = http
        .post(format!("{base}/ops/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = resp.status();
    let who: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "sign-in refused ({status}): {}",
            who["error"].as_str().unwrap_or("no reason given")
        );
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".into());
    // The session cookie authorises a state change only from our own origin: say so.
    let resp = http
        .post(format!("{base}/ops/tokens"))
        .header(reqwest::header::ORIGIN, &base)
        .json(&json!({ "name": format!("kioskd ops on {host}") }))
        .send()
        .await?;
    let status = resp.status();
    let tok: Value = resp.json().await.unwrap_or(Value::Null);
    let Some(token) = tok["token"].as_str().filter(|_| status.is_success()) else {
        bail!(
            "cannot create a token ({status}): {}",
            tok["error"].as_str().unwrap_or("no reason given")
        );
    };
    let _ = http
        .post(format!("{base}/ops/logout"))
        .header(reqwest::header::ORIGIN, &base)
        .send()
        .await;
    let path = token_file().context("no HOME or XDG_CONFIG_HOME to keep the token in")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(&path, token)?;
    writeln!(
        out,
        "signed in as {} ({}); token saved to {}",
        who["username"].as_str().unwrap_or(username),
        who["role"].as_str().unwrap_or("?"),
        path.display()
    )?;
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

impl Client {
    /// A client from the flags and the configuration.
    pub fn new(args: &OpsArgs, cfg: &Config) -> anyhow::Result<Self> {
        let base = base_url(args, cfg);
        let token = args
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(saved_token)
            .unwrap_or_else(|| cfg.ops.token.expose().to_string());
        if token.is_empty() {
            bail!(
                "no ops token: run `kioskd ops login --username U`, pass --token, or set \
                 KIOSKD_OPS__TOKEN / [ops] token in --config"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self { base, token, http })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        reason: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut req = req.bearer_auth(&self.token);
        if let Some(r) = reason {
            req = req.header(crate::audit::REASON_HEADER, r);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = body
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string());
            bail!("{} {}", status.as_u16(), msg);
        }
        Ok(body)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)), None)
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(
        &self,
        path: &str,
        body: Value,
        reason: Option<&str>,
    ) -> anyhow::Result<Value> {
        self.send(
            self.http.put(format!("{}{path}", self.base)).json(&body),
            reason,
        )
        .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, reason: Option<&str>) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)), reason)
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(
        &self,
        path: &str,
        body: Value,
        reason: Option<&str>,
    ) -> anyhow::Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(&body),
            reason,
        )
        .await
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn yuan(fen: &Value) -> String {
    match fen.as_i64() {
        Some(f) => format!(
            "{}{}.{:02}",
            if f < 0 { "-" } else { "" },
            f.unsigned_abs() / 100,
            f.unsigned_abs() % 100
        ),
        None => "-".into(),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.to_vec());
    t
}

fn devices_table(v: &Value) -> Table {
    let mut t = table(&[
        "CODE",
        "NAME",
        "STATUS",
        "ONLINE",
        "LAST SEEN",
        "PRICE",
        "MODE",
        "SESSION",
    ]);
    for d in v["data"].as_array().into_iter().flatten() {
        t.add_row(vec![
            s(d, "device_code"),
            s(d, "name"),
            s(d, "status"),
            if d["online"].as_bool() == Some(true) {
                "yes".into()
            } else {
                "no".into()
            },
            s(d, "last_seen"),
            yuan(&d["charge_mode"]),
            s(d, "billing_mode"),
            d["session"]
                .get("id")
                .map(|i| format!("#{i} user {}", s(&d["session"], "user_id")))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

fn sessions_table(v: &Value) -> Table {
    let mut t = table(&[
        "ID",
        "DEVICE",
        "USER",
        "STARTED",
        "MINUTES",
        "COST",
        "BALANCE",
        "PAID UNTIL",
        "LAST HEARD",
    ]);
    for x in v["data"].as_array().into_iter().flatten() {
        t.add_row(vec![
            s(x, "id"),
            s(x, "device_code"),
            s(x, "user_id"),
            s(x, "started_at"),
            x["cost_time"]
                .as_i64()
                .map_or("-".into(), |secs| (secs / 60).to_string()),
            yuan(&x["cost_money"]),
            yuan(&x["balance_account"]),
            s(x, "paid_until"),
            s(x, "last_heard"),
        ]);
    }
    t
}

fn audit_table(v: &Value) -> Table {
    let mut t = table(&[
        "ID", "AT", "OPERATOR", "ACTION", "TARGET", "STATUS", "REASON",
    ]);
    for x in v["data"].as_array().into_iter().flatten() {
        let at = x["at"]
            .as_i64()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or("-".into(), |t| {
                t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            });
        t.add_row(vec![
            s(x, "id"),
            at,
            s(x, "operator"),
            s(x, "action"),
            s(x, "target"),
            s(x, "status"),
            s(x, "reason"),
        ]);
    }
    t
}

/// One `/ws/ops` event as a line, or `None` when the filters drop it.
pub fn tail_line(ev: &Value, devices: &[String], types: &[String]) -> Option<String> {
    let ty = ev.get("type")?.as_str()?;
    if ty == "snapshot" {
        return None;
    }
    if !types.is_empty() && !types.iter().any(|t| t == ty) {
        return None;
    }
    let data = ev.get("data").cloned().unwrap_or(Value::Null);
    let code = data
        .get("device_code")
        .and_then(|c| c.as_str())
        .unwrap_or("-")
        .to_string();
    if !devices.is_empty() {
        let want = |d: &String| {
            kioskd_actors::ids::normalize_device_code(d).is_some_and(|d| d == code) || *d == code
        };
        if !devices.iter().any(want) {
            return None;
        }
    }
    let mut rest = data.as_object().cloned().unwrap_or_default();
    rest.remove("device_code");
    let now = chrono::Utc::now().format("%H:%M:%S%.3f");
    Some(format!("{now} {ty:<15} {code:<23} {}", Value::Object(rest)))
}

async fn tail(
    c: &Client,
    devices: &[String],
    types: &[String],
    count: Option<usize>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws_base = if let Some(rest) = c.base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = c.base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        bail!("server must be an http:// or https:// URL");
    };
    let mut req = format!("{ws_base}/ws/ops").into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", c.token)
            .parse()
            .context("token is not a valid header value")?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .with_context(|| format!("cannot open {ws_base}/ws/ops"))?;
    let mut seen = 0usize;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                let Ok(ev) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                if let Some(line) = tail_line(&ev, devices, types) {
                    writeln!(out, "{line}")?;
                    out.flush()?;
                    seen += 1;
                    if count.is_some_and(|n| seen >= n) {
                        return Ok(());
                    }
                }
            }
            Message::Close(f) => {
                let why = f.map(|f| format!("{} {}", u16::from(f.code), f.reason));
                bail!("server closed the stream: {}", why.unwrap_or_default());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs one `kioskd ops` command, printing to `out`.
pub async fn run(args: OpsArgs, cfg: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    if let OpsCmd::Login { username } = &args.cmd {
        return login(&args, cfg, username, out).await;
    }
    let c = Client::new(&args, cfg)?;
    let json_out = args.json;
    let show = |v: &Value, t: Option<Table>, out: &mut dyn Write| -> anyhow::Result<()> {
        match t {
            Some(t) if !json_out => {
                for line in t.lines() {
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
            _ => writeln!(out, "{}", serde_json::to_string_pretty(v)?)?,
        }
        Ok(())
    };
    match args.cmd {
        OpsCmd::Login { .. } => Ok(()),
        OpsCmd::Whoami => {
            let v = c.get("/ops/me").await?;
            if !json_out {
                let sites = v["sites"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{} ({}, via {}){}",
                    v["username"].as_str().unwrap_or("?"),
                    v["role"].as_str().unwrap_or("?"),
                    v["via"].as_str().unwrap_or("?"),
                    if sites.is_empty() {
                        String::new()
                    } else {
                        format!("; sites: {sites}")
                    }
                )?;
                return Ok(());
            }
            show(&v, None, out)
        }
        OpsCmd::Devices => {
            let v = c.get("/ops/devices").await?;
            show(&v, Some(devices_table(&v)), out)
        }
        OpsCmd::Sessions => {
            let v = c.get("/ops/sessions").await?;
            show(&v, Some(sessions_table(&v)), out)
        }
        OpsCmd::Lock { code, reason } => {
            device_command(&c, &code, "lock", None, reason.as_deref(), out).await
        }
        OpsCmd::Unlock { code, reason } => {
            device_command(&c, &code, "unlock", None, reason.as_deref(), out).await
        }
        OpsCmd::Restart { code, reason } => {
            device_command(&c, &code, "restart", None, reason.as_deref(), out).await
        }
        OpsCmd::Message { code, text, reason } => {
            device_command(&c, &code, "message", Some(&text), reason.as_deref(), out).await
        }
        OpsCmd::End { session_id, reason } => {
            let v = c
                .post(
                    &format!("/ops/sessions/{session_id}/end"),
                    json!({ "reason": reason }),
                    None,
                )
                .await?;
            writeln!(
                out,
                "session {} ended: cost {} yuan, refunded {} yuan, balance {} yuan",
                s(&v, "id"),
                yuan(&v["cost_money"]),
                yuan(&v["refund"]),
                yuan(&v["balance_account"])
            )?;
            Ok(())
        }
        OpsCmd::Adjust {
            user_id,
            amount,
            reason,
            idempotency_key,
        } => {
            let key = idempotency_key
                .unwrap_or_else(|| format!("cli-{}", kioskd_actors::ids::new_token()));
            let path = format!("/ops/users/{user_id}/adjust");
            let body = json!({ "amount": amount, "reason": reason });
            // One retry on a transport failure: the key makes it safe.
            let mut attempt = 0;
            let v = loop {
                attempt += 1;
                let req = c
                    .http
                    .post(format!("{}{path}", c.base))
                    .header("idempotency-key", &key)
                    .json(&body);
                match c.send(req, None).await {
                    Err(e) if attempt < 2 && e.downcast_ref::<reqwest::Error>().is_some() => {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    r => break r?,
                }
            };
            if json_out {
                return show(&v, None, out);
            }
            writeln!(
                out,
                "user {user_id} adjusted by {} yuan: balance {} yuan",
                yuan(&json!(amount)),
                yuan(&v["balance_account"])
            )?;
            Ok(())
        }
        OpsCmd::TerminalCommand {
            sn,
            name,
            args: cmd_args,
            reason,
        } => {
            let mut body = json!({ "name": name });
            if let Some(a) = cmd_args {
                let a: Value = serde_json::from_str(&a).context("--args must be a JSON object")?;
                body["args"] = a;
            }
            let v = c
                .post(
                    &format!("/ops/terminals/{sn}/commands"),
                    body,
                    reason.as_deref(),
                )
                .await?;
            if json_out {
                return show(&v, None, out);
            }
            writeln!(
                out,
                "terminal {sn}: command {name} queued (id {})",
                s(&v, "id")
            )?;
            Ok(())
        }
        OpsCmd::Audit {
            limit,
            operator,
            target,
        } => {
            let mut q = vec![("limit".to_string(), limit.to_string())];
            if let Some(o) = operator {
                q.push(("operator".into(), o));
            }
            if let Some(t) = target {
                q.push(("target".into(), t));
            }
            let qs = serde_urlencoded::to_string(&q)?;
            let v = c.get(&format!("/ops/audit?{qs}")).await?;
            show(&v, Some(audit_table(&v)), out)
        }
        OpsCmd::Tail {
            devices,
            types,
            count,
        } => tail(&c, &devices, &types, count, out).await,
        OpsCmd::Pricing { cmd } => pricing(&c, cmd, json_out, out).await,
    }
}

/// A grid file's 336 rates: a JSON array (flat, or 7 rows of 48) or numbers separated by
/// whitespace or commas.
pub fn parse_grid(text: &str) -> anyhow::Result<Vec<i64>> {
    let t = text.trim();
    let rates: Vec<i64> = if t.starts_with('[') {
        let v: Value = serde_json::from_str(t).context("the grid file is not valid JSON")?;
        let mut out = vec![];
        for x in v.as_array().into_iter().flatten() {
            match x {
                Value::Array(row) => {
                    for r in row {
                        out.push(r.as_i64().context("rates are whole fen per minute")?);
                    }
                }
                r => out.push(r.as_i64().context("rates are whole fen per minute")?),
            }
        }
        out
    } else {
        t.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|x| !x.is_empty())
            .map(|x| {
                x.parse()
                    .with_context(|| format!("{x:?} is not a whole number of fen per minute"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let want = kioskd_actors::pricing::SLOTS_PER_WEEK;
    if rates.len() != want {
        bail!(
            "the grid must have {want} rates (7 days × 48 half hours), the file has {}",
            rates.len()
        );
    }
    Ok(rates)
}

/// A day's 48 rates as runs: `00:00-18:00 60 · 18:00-24:00 300`.
pub fn day_runs(day: &[Value]) -> String {
    let hm = |slot: usize| format!("{:02}:{:02}", slot / 2, (slot % 2) * 30);
    let mut out = vec![];
    let mut start = 0;
    for i in 1..=day.len() {
        if i == day.len() || day[i] != day[start] {
            out.push(format!("{}-{} {}", hm(start), hm(i), day[start]));
            start = i;
        }
    }
    out.join(" · ")
}

fn id_or_none(v: Option<i64>) -> Value {
    v.map_or(Value::Null, |x| json!(x))
}

async fn pricing(
    c: &Client,
    cmd: PricingCmd,
    json_out: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let print = |v: &Value, t: Option<Table>, out: &mut dyn Write| -> anyhow::Result<()> {
        match t {
            Some(t) if !json_out => {
                for line in t.lines() {
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
            _ => writeln!(out, "{}", serde_json::to_string_pretty(v)?)?,
        }
        Ok(())
    };
    let grid = |p: &std::path::Path| -> anyhow::Result<Vec<i64>> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        parse_grid(&text)
    };
    let v = match cmd {
        PricingCmd::Plans => {
            let v = c.get("/ops/pricing/plans").await?;
            let mut t = table(&["ID", "NAME", "MIN CHARGE", "RATES", "OVERRIDES", "USED BY"]);
            for p in v["data"].as_array().into_iter().flatten() {
                let mut rates: Vec<i64> = p["week"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .collect();
                rates.sort_unstable();
                rates.dedup();
                let u = &p["used_by"];
                t.add_row(vec![
                    s(p, "id"),
                    s(p, "name"),
                    yuan(&p["min_charge"]),
                    rates
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join("/"),
                    p["overrides"].as_object().map_or(0, |o| o.len()).to_string(),
                    format!(
                        "{} zones, {} groups, {} devices",
                        u["zones"], u["groups"], u["devices"]
                    ),
                ]);
            }
            return print(&v, Some(t), out);
        }
        PricingCmd::Plan { id } => {
            let v = c.get(&format!("/ops/pricing/plans/{id}")).await?;
            if json_out {
                return print(&v, None, out);
            }
            writeln!(
                out,
                "plan {} {:?} (fen per minute; minimum charge {} yuan)",
                s(&v, "id"),
                s(&v, "name"),
                yuan(&v["min_charge"])
            )?;
            let week = v["week"].as_array().cloned().unwrap_or_default();
            for (d, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
                .iter()
                .enumerate()
            {
                let day = week.get(d * 48..(d + 1) * 48).unwrap_or(&[]);
                writeln!(out, "{name}  {}", day_runs(day))?;
            }
            for (date, slots) in v["overrides"].as_object().into_iter().flatten() {
                let day = slots.as_array().cloned().unwrap_or_default();
                writeln!(out, "{date}  {}", day_runs(&day))?;
            }
            return Ok(());
        }
        PricingCmd::CreatePlan {
            name,
            grid: file,
            min_charge,
            reason,
        } => {
            let week = grid(&file)?;
            c.post(
                "/ops/pricing/plans",
                json!({"name": name, "week": week, "min_charge": min_charge}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::SetGrid {
            id,
            grid: file,
            min_charge,
            reason,
        } => {
            let week = grid(&file)?;
            c.put(
                &format!("/ops/pricing/plans/{id}"),
                json!({"week": week, "min_charge": min_charge}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::DeletePlan { id, reason } => {
            c.delete(&format!("/ops/pricing/plans/{id}"), reason.as_deref())
                .await?
        }
        PricingCmd::Zones => {
            let v = c.get("/ops/pricing/zones").await?;
            let mut t = table(&["ID", "NAME", "PLAN", "DEVICES"]);
            for z in v["data"].as_array().into_iter().flatten() {
                let devices = z["devices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| s(d, "device_code"))
                    .collect::<Vec<_>>()
                    .join(" ");
                t.add_row(vec![s(z, "id"), s(z, "name"), s(z, "plan_id"), devices]);
            }
            return print(&v, Some(t), out);
        }
        PricingCmd::CreateZone { name, plan, reason } => {
            c.post(
                "/ops/pricing/zones",
                json!({"name": name, "plan_id": id_or_none(plan)}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::ZonePlan { id, plan, reason } => {
            c.put(
                &format!("/ops/pricing/zones/{id}"),
                json!({"plan_id": id_or_none(plan)}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::Assign {
            code,
            zone,
            plan,
            reason,
        } => {
            c.put(
                &format!("/ops/pricing/devices/{}", urlencode(&code)),
                json!({"zone_id": id_or_none(zone), "plan_id": id_or_none(plan)}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::Groups => {
            let v = c.get("/ops/pricing/groups").await?;
            let mut t = table(&["ID", "NAME", "DISCOUNT %", "PLAN"]);
            for g in v["data"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    s(g, "id"),
                    s(g, "name"),
                    s(g, "discount_pct"),
                    s(g, "plan_id"),
                ]);
            }
            return print(&v, Some(t), out);
        }
        PricingCmd::CreateGroup {
            name,
            discount,
            plan,
            reason,
        } => {
            c.post(
                "/ops/pricing/groups",
                json!({"name": name, "discount_pct": discount, "plan_id": id_or_none(plan)}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::UserGroup {
            user_id,
            group,
            reason,
        } => {
            c.put(
                &format!("/ops/users/{user_id}/group"),
                json!({"group_id": id_or_none(group)}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::Packages => {
            let v = c.get("/ops/pricing/packages").await?;
            let mut t = table(&[
                "ID", "NAME", "MINUTES", "PRICE", "ZONES", "WINDOWS", "DAYS", "ON SALE",
            ]);
            for p in v["data"].as_array().into_iter().flatten() {
                let list = |k: &str| {
                    p[k].as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                t.add_row(vec![
                    s(p, "id"),
                    s(p, "name"),
                    s(p, "minutes"),
                    yuan(&p["price"]),
                    list("zones"),
                    list("windows"),
                    s(p, "valid_days"),
                    s(p, "on_sale"),
                ]);
            }
            return print(&v, Some(t), out);
        }
        PricingCmd::CreatePackage {
            name,
            minutes,
            price,
            valid_days,
            zones,
            windows,
            reason,
        } => {
            c.post(
                "/ops/pricing/packages",
                json!({"name": name, "minutes": minutes, "price": price, "valid_days": valid_days, "zones": zones, "windows": windows}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::Withdraw { id, reason } => {
            c.put(
                &format!("/ops/pricing/packages/{id}"),
                json!({"on_sale": false}),
                reason.as_deref(),
            )
            .await?
        }
        PricingCmd::Grant {
            user_id,
            package_id,
            reason,
        } => {
            c.post(
                &format!("/ops/users/{user_id}/packages"),
                json!({"package_id": package_id}),
                reason.as_deref(),
            )
            .await?
        }
    };
    if json_out {
        return print(&v, None, out);
    }
    // A change: its answer in one line.
    writeln!(out, "ok {}", serde_json::to_string(&v)?)?;
    Ok(())
}

async fn device_command(
    c: &Client,
    code: &str,
    name: &str,
    text: Option<&str>,
    reason: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut body = json!({ "name": name });
    if let Some(t) = text {
        body["text"] = json!(t);
    }
    let v = c
        .post(
            &format!("/ops/devices/{}/command", urlencode(code)),
            body,
            reason,
        )
        .await?;
    let code = s(&v, "device_code");
    match name {
        "lock" => match v.get("ended_session").filter(|e| !e.is_null()) {
            Some(e) => writeln!(
                out,
                "device {code} locked; session {} ended (cost {} yuan, refunded {} yuan)",
                s(e, "id"),
                yuan(&e["cost"]),
                yuan(&e["refund"])
            )?,
            None => writeln!(out, "device {code} locked")?,
        },
        "unlock" => writeln!(out, "device {code} unlocked")?,
        _ => writeln!(
            out,
            "device {code}: {name} queued as command {} ({})",
            s(&v, "id"),
            if v["delivered"].as_bool() == Some(true) {
                "delivered to the kiosk's socket"
            } else {
                "kiosk not connected; sent when it reconnects"
            }
        )?,
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_from_fen() {
        assert_eq!(yuan(&json!(132)), "1.32");
        assert_eq!(yuan(&json!(-5)), "-0.05");
        assert_eq!(yuan(&json!(0)), "0.00");
        assert_eq!(yuan(&Value::Null), "-");
    }

    #[test]
    fn tail_filters_by_type_and_device() {
        let ev = json!({"type":"billing","seq":3,"data":{"session_id":1,"device_code":"11-22-33-44-55-66","minutes":2}});
        let line = tail_line(&ev, &[], &[]).unwrap();
        assert!(line.contains("billing") && line.contains("11-22-33-44-55-66"));
        assert!(line.contains("\"minutes\":2"));
        assert!(tail_line(&ev, &[], &["session_ended".into()]).is_none());
        assert!(tail_line(&ev, &["11:22:33:44:55:66".into()], &[]).is_some());
        assert!(tail_line(&ev, &["AA-BB-CC-DD-EE-FF".into()], &[]).is_none());
        assert!(tail_line(&json!({"type":"snapshot","data":{}}), &[], &[]).is_none());
    }

    #[test]
    fn grid_files_are_read_whole() {
        let flat = vec!["60"; 336].join(" ");
        assert_eq!(parse_grid(&flat).unwrap(), vec![60; 336]);
        let rows = vec![vec![5; 48]; 7];
        assert_eq!(
            parse_grid(&serde_json::to_string(&rows).unwrap()).unwrap(),
            vec![5; 336]
        );
        assert!(parse_grid(&vec!["60"; 335].join(",")).is_err());
        assert!(parse_grid("60 x").is_err());
        let mut day = vec![json!(60); 36];
        day.extend(vec![json!(300); 12]);
        assert_eq!(day_runs(&day), "00:00-18:00 60 · 18:00-24:00 300");
    }

    #[test]
    fn device_codes_are_path_safe() {
        assert_eq!(urlencode("11-22 33/x"), "11-22%2033%2Fx");
    }
}
