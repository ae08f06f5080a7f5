//! The `kioskd` binary: `serve`, and the operator CLI (`device add`, `maintainer add`).

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
    /// Maintainer accounts.
    Maintainer {
        #[command(subcommand)]
        cmd: MaintainerCmd,
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
        /// prepaid or postpaid.
        #[arg(long, default_value = "prepaid")]
        billing_mode: String,
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
    kioskd::telemetry::init_logging(&cfg.log.filter);
    match cli.cmd {
        Cmd::Serve => serve(cfg).await,
        Cmd::Agent {
            device_code,
            server,
            secret,
        } => {
            let mut ac = kioskd::agent::AgentConfig::new(&server, &device_code);
            ac.secret = secret;
            let clock = kioskd_actors::Clock::system();
            let agent =
                std::sync::Arc::new(std::sync::Mutex::new(kioskd::agent::Agent::new(clock)));
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
            let billing_mode = BillingMode::parse(&billing_mode)
                .context("billing mode must be prepaid or postpaid")?;
            anyhow::ensure!(
                (0..=100_000).contains(&charge_mode),
                "charge mode must be 0-100000 fen per minute"
            );
            let db = Db::connect(cfg.database.url.expose(), 2)
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?;
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
                .map_err(|e| anyhow::anyhow!(e.0))?;
            kioskd::app::add_maintainer(&db, &username, &password, now_ms())
                .await
                .map_err(|e| anyhow::anyhow!("cannot add maintainer: {e}"))?;
            println!("maintainer {username} added");
            Ok(())
        }
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
