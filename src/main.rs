//! The `kioskd` binary: `serve`, and the operator CLI (`device add`, `maintainer add`,
//! `terminal add|command`, `staff add|delete`) and `ops ...` over a running server's ops API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kioskd::config::Config;
use kioskd::store::{Db, NewDevice, WriteError};
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::BillingMode;

#[derive(Parser)]
#[command(
    name = "kioskd",
    version,
    about = "Realtime session coordinator for pay-per-minute kiosks"
)]
struct Cli {
    /// Configuration file (over config/default.toml, under KIOSKD_* variables).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve,
    /// Devices.
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// Attendance terminals.
    Terminal {
        #[command(subcommand)]
        cmd: TerminalCmd,
    },
    /// Attendance staff roster.
    Staff {
        #[command(subcommand)]
        cmd: StaffCmd,
    },
    /// Maintainer accounts.
    Maintainer {
        #[command(subcommand)]
        cmd: MaintainerCmd,
    },
    /// Operator accounts (the console and `kioskd ops`).
    Operator {
        #[command(subcommand)]
        cmd: OperatorCmd,
    },
    /// On-call operations over the ops API of a running server (devices, sessions,
    /// lock/unlock/restart/message, end, adjust, terminal commands, audit, tail).
    Ops(kioskd::opscli::OpsArgs),
    /// A first look: the server on a throw-away database with a simulated, live venue
    /// (kiosks, phones, an attendance terminal) and demo sign-ins; runs until Ctrl-C.
    Demo {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// How many kiosks (at least 4).
        #[arg(long, default_value_t = 36)]
        kiosks: usize,
        /// Seed of the venue and of the simulated people (a reproducible run).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the reference kiosk agent for one device (WebSocket client).
    Agent {
        /// The device's code.
        #[arg(long)]
        device_code: String,
        /// Server base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The device's secret (or KIOSKD_DEVICE_SECRET).
        #[arg(long, env = "KIOSKD_DEVICE_SECRET")]
        secret: Option<String>,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Register a device.
    Add {
        /// MAC-like device code, e.g. 11-22-33-44-55-66-77-86.
        #[arg(long)]
        code: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Price in fen per minute.
        #[arg(long)]
        charge_mode: i64,
        /// prepaid or postpaid (default: postpaid with --client-id, else prepaid).
        #[arg(long)]
        billing_mode: Option<String>,
        /// Dialect B numeric client id.
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long, default_value = "")]
        province: String,
        #[arg(long, default_value = "")]
        city: String,
        #[arg(long, default_value = "")]
        area: String,
        #[arg(long, default_value = "")]
        location: String,
        /// WebSocket HMAC secret (at least 16 characters).
        #[arg(long, env = "KIOSKD_DEVICE_SECRET")]
        secret: Option<String>,
    },
}

#[derive(Subcommand)]
enum MaintainerCmd {
    /// Add a maintainer.
    Add {
        #[arg(long)]
        username: String,
        /// Password (or KIOSKD_MAINTAINER_PASSWORD).
        #[arg(long, env = "KIOSKD_MAINTAINER_PASSWORD")]
        password: String,
    },
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Add an operator.
    Add {
        #[arg(long)]
        username: String,
        /// admin (everything), staff (acts on devices and sessions), viewer (reads).
        #[arg(long)]
        role: String,
        /// Limit the operator to devices at this location (repeatable; none: all sites).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Password, at least 10 characters (or KIOSKD_OPERATOR_PASSWORD).
        #[arg(long, env = "KIOSKD_OPERATOR_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Set a new password (signs the operator out of the console).
    Password {
        #[arg(long)]
        username: String,
        /// The new password (or KIOSKD_OPERATOR_PASSWORD).
        #[arg(long, env = "KIOSKD_OPERATOR_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List operators.
    List,
}

fn now_ms() -> i64 {
    kioskd_actors::Clock::system().now_ms()
}

/// mimalloc: faster small allocations than glibc's malloc on the request path, and it
/// returns freed memory (glibc kept the memory of 100k stopped actors).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    // The demo's banner should not drown in the simulated fleet's info lines.
    let filter = match cli.cmd {
        Cmd::Demo { .. } => "warn,kioskd::demo=info",
        _ => cfg.log.filter.as_str(),
    };
    kioskd::telemetry::init_logging(filter);
    match cli.cmd {
        Cmd::Demo {
            listen,
            kiosks,
            seed,
        } => {
            let opts = kioskd::demo::DemoOptions {
                listen,
                kiosks,
                seed,
                ..Default::default()
            };
            let demo = kioskd::demo::Demo::start(opts, cli.config.as_deref()).await?;
            println!("{}", demo.banner());
            shutdown_signal().await;
            demo.shutdown().await
        }
        Cmd::Serve => serve(cfg).await,
        Cmd::Ops(args) => kioskd::opscli::run(args, &cfg, &mut std::io::stdout()).await,
        Cmd::Agent {
            device_code,
            server,
            secret,
        } => {
            let mut ac = kioskd::agent::AgentConfig::new(&server, &device_code);
            ac.secret = secret;
            let clock = kioskd_actors::Clock::system();
            let agent = std::sync::Arc::new(std::sync::Mutex::new(kioskd::agent::Agent::new(
                clock.clone(),
            )));
            kioskd::agent::run(ac, agent, clock, shutdown_signal()).await;
            Ok(())
        }
        Cmd::Device {
            cmd:
                DeviceCmd::Add {
                    code,
                    name,
                    charge_mode,
                    billing_mode,
                    client_id,
                    province,
                    city,
                    area,
                    location,
                    secret,
                },
        } => {
            let code = normalize_device_code(&code)
                .context("device code must look like 11-22-33-44-55-66")?;
            let default_mode = if client_id.is_some() {
                "postpaid"
            } else {
                "prepaid"
            };
            anyhow::ensure!(
                client_id.is_none() || !cfg.rest.service_number.trim().is_empty(),
                "dialect-B devices (--client-id) need rest.service_number set first (KIOSKD_REST__SERVICE_NUMBER): kioskd refuses to start without it"
            );
            let billing_mode = BillingMode::parse(billing_mode.as_deref().unwrap_or(default_mode))
                .context("billing mode must be prepaid or postpaid")?;
            anyhow::ensure!(
                (0..=100_000).contains(&charge_mode),
                "charge mode must be 0-100000 fen per minute"
            );
            let db = Db::connect(cfg.database.url.expose(), 2)
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            let d = NewDevice {
                code,
                client_id,
                name,
                province,
                city,
                area,
                location,
                charge_mode,
                billing_mode,
                secret,
                legacy_unsigned: None,
            };
            match db.add_device(&d, now_ms()).await {
                Ok(rec) => {
                    println!("device {} registered (id {})", rec.code, rec.id);
                    Ok(())
                }
                Err(WriteError::Conflict) => {
                    anyhow::bail!("a device with that code or client id exists")
                }
                Err(e) => Err(anyhow::anyhow!(e.to_string())),
            }
        }
        Cmd::Maintainer {
            cmd: MaintainerCmd::Add { username, password },
        } => {
            let db = Db::connect(cfg.database.url.expose(), 2)
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            kioskd::app::add_maintainer(&db, &username, &password, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!("cannot add maintainer: {e}"))?;
            println!("maintainer {username} added");
            Ok(())
        }
        Cmd::Operator { cmd } => operator_cli(&cfg, cmd).await,
        Cmd::Terminal { cmd } => terminal_cli(&cfg, cmd).await,
        Cmd::Staff { cmd } => staff_cli(&cfg, cmd).await,
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    let app = kioskd::Application::build(cfg, listener).await?;
    app.run(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[derive(Subcommand)]
enum TerminalCmd {
    /// Register an attendance terminal (one bridge token may serve many).
    Add {
        #[arg(long)]
        sn: String,
        /// The bridge's token (or KIOSKD_TERMINAL_TOKEN).
        #[arg(long, env = "KIOSKD_TERMINAL_TOKEN")]
        token: String,
        #[arg(long)]
        name: Option<String>,
        /// IANA zone of the terminal's clock (default: server.time_zone).
        #[arg(long)]
        timezone: Option<String>,
    },
    /// Queue a command for a terminal (see `POST /ops/terminals/<sn>/commands`).
    Command {
        #[arg(long)]
        sn: String,
        #[arg(long)]
        name: String,
        /// Arguments as a JSON object.
        #[arg(long)]
        args: Option<String>,
    },
}

#[derive(Subcommand)]
enum StaffCmd {
    /// Add or replace a staff member.
    Add {
        #[arg(long)]
        pin: String,
        #[arg(long)]
        name: String,
        /// 0 user, 14 super admin.
        #[arg(long, default_value_t = 0)]
        pri: i64,
        #[arg(long)]
        passwd: Option<String>,
        #[arg(long)]
        card: Option<String>,
        #[arg(long)]
        grp: Option<String>,
        #[arg(long)]
        tz: Option<String>,
        /// Limit to these terminals (repeat); none: every terminal.
        #[arg(long = "terminal")]
        terminals: Vec<String>,
    },
    /// Delete a staff member (terminals learn of it through the roster).
    Delete {
        #[arg(long)]
        pin: String,
    },
}

async fn terminal_cli(cfg: &Config, cmd: TerminalCmd) -> anyhow::Result<()> {
    let db = Db::connect(cfg.database.url.expose(), 2)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    match cmd {
        TerminalCmd::Add {
            sn,
            token,
            name,
            timezone,
        } => {
            let t = kioskd::attendance::register_terminal(
                &db,
                &sn,
                &token,
                name.as_deref(),
                timezone.as_deref(),
                cfg.tz().name(),
                now_ms(),
            )
            .await?;
            println!("terminal {} registered ({})", t.sn, t.timezone);
        }
        TerminalCmd::Command { sn, name, args } => {
            let args = match args {
                None => serde_json::Map::new(),
                Some(a) => serde_json::from_str(&a).context("args must be a JSON object")?,
            };
            let c = kioskd::attendance::queue_command(&db, &sn, &name, args, now_ms()).await?;
            println!("command {} queued for {} ({})", c.id, c.sn, c.name);
        }
    }
    Ok(())
}

async fn staff_cli(cfg: &Config, cmd: StaffCmd) -> anyhow::Result<()> {
    let db = Db::connect(cfg.database.url.expose(), 2)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    match cmd {
        StaffCmd::Add {
            pin,
            name,
            pri,
            passwd,
            card,
            grp,
            tz,
            terminals,
        } => {
            let terminals = (!terminals.is_empty()).then_some(terminals);
            let s =
                kioskd::attendance::check_staff(pin, name, pri, passwd, card, grp, tz, terminals)?;
            let v = kioskd::attendance::put_staff(&db, &s, now_ms()).await?;
            println!("staff {} saved (roster version {v})", s.pin);
        }
        StaffCmd::Delete { pin } => {
            let v = kioskd::attendance::delete_staff(&db, &pin, now_ms()).await?;
            println!("staff {pin} deleted (roster version {v})");
        }
    }
    Ok(())
}

async fn operator_cli(cfg: &Config, cmd: OperatorCmd) -> anyhow::Result<()> {
    let db = Db::connect(cfg.database.url.expose(), 2)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let ops = kioskd::operators::Operators::new(db, 0);
    match cmd {
        OperatorCmd::Add {
            username,
            role,
            sites,
            password,
        } => {
            let v = ops
                .add(&username, &password, &role, &sites, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!("cannot add operator: {e}"))?;
            println!("operator {} added ({})", v.username, v.role);
        }
        OperatorCmd::Password { username, password } => {
            ops.update(&username, None, None, None, Some(&password))
                .await
                .map_err(|e| anyhow::anyhow!("cannot change the password: {e}"))?;
            println!("password of {username} changed");
        }
        OperatorCmd::List => {
            for o in ops.list().await.map_err(|e| anyhow::anyhow!("{e}"))? {
                println!(
                    "{}\t{}\t{}\t{}",
                    o.username,
                    o.role,
                    if o.sites.is_empty() {
                        "*".to_string()
                    } else {
                        o.sites.join(",")
                    },
                    if o.disabled { "disabled" } else { "enabled" }
                );
            }
        }
    }
    Ok(())
}
