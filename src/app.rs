//! The application: built from a configuration and a bound listener, run until a
//! shutdown future resolves. `main` and the tests start it the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kioskd_actors::{Clock, Coordinator, CoordinatorConfig, Events, catalog};
use tokio::net::TcpListener;

use crate::config::{Config, IdentityMode, PaymentsMode};
use crate::http::{AppInner, AppState, router};
use crate::services::Services;
use crate::sms::SmsSender;
use crate::store::{Db, WriteError};
use crate::tasks::{Stop, Tasks};
use kioskd_actors::ports::StoreError;

/// How long `run` waits, after the listener stops, for the background tasks that finish
/// their work on the shutdown signal (outbox send, reconciliation pass, metrics
/// listener) before aborting them.
const TASKS_BOUND: Duration = Duration::from_secs(10);

/// A built, not yet running application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Tasks,
    /// Notified when another node announces a pricing change.
    pricing_kick: Arc<tokio::sync::Notify>,
}

/// Builds an [`Application`] with what tests (or embedders) replace: the SMS sender and
/// the clock. `Application::build` is `Application::builder(cfg, listener).build()`.
pub struct Builder {
    cfg: Config,
    listener: TcpListener,
    sms: Option<Arc<dyn SmsSender>>,
    clock: Option<Clock>,
}

impl Builder {
    /// Sends SMS captchas through `sms` (tests capture codes with one) instead of the
    /// configured sender.
    pub fn sms(mut self, sms: Arc<dyn SmsSender>) -> Self {
        self.sms = Some(sms);
        self
    }

    /// Reads time from `clock` (billing, deadlines, timestamps, the upstream token
    /// keeper, attendance terminals) instead of the system clock. A clock pinned with
    /// `Clock::starting_at` under paused tokio time is fully controlled.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Opens storage, recovers running sessions and prepares the routes.
    pub async fn build(self) -> Result<Application, BuildError> {
        let sms = match self.sms {
            Some(s) => s,
            None => crate::sms::sender(&self.cfg.sms).map_err(BuildError::Config)?,
        };
        let clock = self.clock.unwrap_or_else(Clock::system);
        Application::assemble(self.cfg, self.listener, sms, clock).await
    }
}

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Db(String),
    /// Redis is configured but unreachable.
    #[error("redis: {0}")]
    Redis(String),
    /// Sessions could not be recovered.
    #[error("recovery: {0}")]
    Recover(String),
    /// The configuration does not fit what the database holds.
    #[error("configuration: {0}")]
    Config(String),
    /// Socket trouble.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// An upstream client could not be set up (e.g. an unreadable WeChat Pay key).
    #[error("upstream: {0}")]
    Upstream(String),
}

/// The coordinator settings a configuration implies.
pub fn coordinator_config(cfg: &Config) -> CoordinatorConfig {
    CoordinatorConfig {
        unit_ms: cfg.billing.unit_seconds as i64 * 1000,
        free_ms: cfg.billing.free_seconds as i64 * 1000,
        heartbeat_timeout_ms: cfg.billing.heartbeat_timeout_seconds as i64 * 1000,
        low_balance_units: cfg.billing.low_balance_minutes,
        idle: (cfg.actors.idle_seconds > 0)
            .then(|| std::time::Duration::from_secs(cfg.actors.idle_seconds)),
        broadcast_ttl_ms: cfg.ws.broadcast_ttl_seconds as i64 * 1000,
        resume_window: std::time::Duration::from_secs(cfg.ws.resume_window_seconds),
        ..CoordinatorConfig::default()
    }
}

impl Application {
    /// A builder, to replace the SMS sender or the clock.
    pub fn builder(cfg: Config, listener: TcpListener) -> Builder {
        Builder {
            cfg,
            listener,
            sms: None,
            clock: None,
        }
    }

    /// Opens storage, recovers running sessions and prepares the routes.
    pub async fn build(cfg: Config, listener: TcpListener) -> Result<Self, BuildError> {
        Self::builder(cfg, listener).build().await
    }

    /// As `build`, with a given SMS sender (tests capture codes with one).
    pub async fn build_with(
        cfg: Config,
        listener: TcpListener,
        sms: Arc<dyn SmsSender>,
    ) -> Result<Self, BuildError> {
        Self::builder(cfg, listener).sms(sms).build().await
    }

    async fn assemble(
        cfg: Config,
        listener: TcpListener,
        sms: Arc<dyn SmsSender>,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let tasks = Tasks::new();
        let metrics = crate::telemetry::metrics();
        let db = Db::connect(cfg.database.url.expose(), cfg.database.max_connections)
            .await
            .map_err(|e| BuildError::Db(e.to_string()))?;
        // The field dialect-B client never leaves its start screen without a service
        // number: refuse to run such a fleet without one (SPEC §6).
        if cfg.rest.service_number.trim().is_empty() {
            let n = db
                .dialect_b_devices()
                .await
                .map_err(|e| BuildError::Db(e.to_string()))?;
            if n > 0 {
                return Err(BuildError::Config(format!(
                    "{n} dialect-B device(s) (with a client_id) are registered but rest.service_number is empty; \
                     set it (KIOSKD_REST__SERVICE_NUMBER=...): their kiosks do not start without it"
                )));
            }
        }
        if cfg.payments.mode == PaymentsMode::Sandbox {
            tracing::warn!(
                "payments.mode = sandbox: recharges and postpaid orders are credited WITHOUT payment; never run this in production"
            );
            metrics::gauge!(catalog::PAYMENTS_SANDBOX).set(1.0);
        } else {
            metrics::gauge!(catalog::PAYMENTS_SANDBOX).set(0.0);
        }
        if cfg.identity.mode == IdentityMode::Open189
            && (cfg.open189.appid.is_empty() || cfg.open189.secret.is_empty())
        {
            tracing::warn!(
                "identity.mode = open189 but open189.appid / open189.secret are not set: phones CANNOT sign in (they get a clear error) until they are configured; set identity.mode = \"dev\" for local use"
            );
        }
        if cfg.identity.mode == IdentityMode::Dev {
            tracing::warn!(
                "identity.mode = dev: GET /dev/login signs anyone in as anyone; never expose this"
            );
        }
        let upstream = Arc::new(
            crate::upstream::Upstream::new(&cfg, db.clone(), clock.clone())
                .map_err(BuildError::Upstream)?,
        );
        let coord = Coordinator::new(
            Arc::new(db.clone()),
            clock.clone(),
            coordinator_config(&cfg),
            Events::default(),
        );
        // Rate plans, zones and groups (issue 16), before any session is recovered so
        // that recovered sessions price their next units with them.
        coord.set_pricing(
            db.pricing_catalog(cfg.tz())
                .await
                .map_err(|e| BuildError::Recover(e.to_string()))?,
        );
        let broker = if cfg.redis.url.is_empty() {
            None
        } else {
            let node = format!("{}-{}", std::process::id(), kioskd_actors::ids::new_token());
            let b = crate::broker::RedisBroker::connect(cfg.redis.url.expose(), &node)
                .await
                .map_err(|e| BuildError::Redis(e.to_string()))?
                .with_namespace(&cfg.redis.namespace);
            tasks.adopt(
                "event forwarder",
                Stop::Abort,
                b.clone().forward(coord.events()),
            );
            crate::telemetry::prime_broker();
            Some(b)
        };
        // Other nodes' events, for this node's /ws/ops and /ws/user feeds.
        let (remote, _) = tokio::sync::broadcast::channel(1024);
        if let Some(b) = &broker {
            let relay = b
                .clone()
                .relay_remote(remote.clone())
                .await
                .map_err(|e| BuildError::Redis(e.to_string()))?;
            tasks.adopt("event relay", Stop::Abort, relay);
        }
        // Pricing changes other nodes announce: this node reloads its catalog.
        let pricing_kick = Arc::new(tokio::sync::Notify::new());
        if let Some(b) = &broker {
            let sub = b
                .clone()
                .on_pricing_changed(pricing_kick.clone())
                .await
                .map_err(|e| BuildError::Redis(e.to_string()))?;
            tasks.adopt("pricing subscription", Stop::Abort, sub);
        }
        // Several nodes: device ownership and forwarding through Redis.
        let cluster = match &broker {
            None => None,
            Some(b) => {
                let c = crate::cluster::Cluster::join(
                    b.client(),
                    b.conn(),
                    b.node(),
                    crate::cluster::ClusterConfig {
                        lease: Duration::from_millis(cfg.redis.lease_ms.max(300)),
                        timeout: coordinator_config(&cfg).ask_timeout,
                        namespace: cfg.redis.namespace.clone(),
                    },
                )
                .await
                .map_err(|e| BuildError::Redis(e.to_string()))?;
                coord.set_placement(c.clone());
                c.clone()
                    .run(coord.clone())
                    .await
                    .map_err(|e| BuildError::Redis(e.to_string()))?;
                Some(c)
            }
        };
        coord
            .recover()
            .await
            .map_err(|e| BuildError::Recover(e.to_string()))?;
        let terminals = kioskd_actors::terminal::Terminals::new(
            Arc::new(db.clone()),
            clock,
            kioskd_actors::terminal::TerminalConfig::default(),
        );
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let services = Arc::new(Services {
            operators: crate::operators::Operators::new(
                db.clone(),
                (cfg.ops.session_ttl_seconds as i64).saturating_mul(1000),
            ),
            terminals,
            shutdown: shutdown_rx,
            kiosk_sockets: Default::default(),
            tz: cfg.tz(),
            cfg,
            db,
            coord,
            sms,
            metrics,
            broker,
            cluster,
            remote,
            upstream,
            client_ids: Default::default(),
        });
        let cfg = &services.cfg;
        let inner = AppInner {
            legacy: Default::default(),
            ws_connections: Default::default(),
            next_conn_id: std::sync::atomic::AtomicU64::new(1),
            nonces: Default::default(),
            edge: Arc::new(crate::net::Edge::new(cfg)),
            ws_per_user: Default::default(),
            ws_per_address: Default::default(),
            downloads: Default::default(),
            limits: crate::http::limits::Limits::new(cfg),
            large_bodies: Arc::new(tokio::sync::Semaphore::new(
                cfg.server.large_body_budget_bytes / 1024,
            )),
            large_body_kib: cfg.server.large_body_budget_bytes / 1024,
            cookie_key: crate::identity::key(cfg.identity.cookie_secret.expose()),
            services: services.clone(),
        };
        Ok(Self {
            listener,
            state: AppState(Arc::new(inner)),
            shutdown,
            tasks,
            pricing_kick,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Handler state (tests reach the store and the coordinator through it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The application's background tasks (a test checks none outlives `run`).
    pub fn tasks(&self) -> Tasks {
        self.tasks.clone()
    }

    /// Serves until `shutdown` resolves, then stops the actors and ends and joins every
    /// background task.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = router(self.state.clone());
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, "kioskd listening");
        // /metrics on its own listener, when configured (Prometheus only, never the
        // public one).
        let metrics_listener = if self.state.cfg.metrics.listen.is_empty() {
            None
        } else {
            let l = TcpListener::bind(&self.state.cfg.metrics.listen).await?;
            tracing::info!(addr = %l.local_addr()?, "metrics listening");
            Some(l)
        };
        let tasks = &self.tasks;
        let services = &self.state.services;
        tasks.spawn(
            "sampler",
            Stop::Abort,
            crate::sampler::run(services.clone()),
        );
        // The pricing catalog follows changes announced by any node, and is reloaded
        // every minute regardless (a lost notice, a change made straight in the
        // database).
        tasks.spawn(
            "pricing reloader",
            Stop::Abort,
            crate::pricing::keep_current(
                services.clone(),
                self.pricing_kick.clone(),
                crate::pricing::RELOAD_EVERY,
            ),
        );
        tasks.adopt(
            "outbox",
            Stop::Signal,
            crate::upstream::outbox::spawn(services.clone(), self.shutdown.subscribe()),
        );
        if let Some(h) =
            crate::payments::spawn_reconciler(services.clone(), self.shutdown.subscribe())
        {
            tasks.adopt("reconciler", Stop::Signal, h);
        }
        if let Some(l) = metrics_listener {
            let app = crate::http::health::metrics_router(self.state.clone());
            let mut stop = self.shutdown.subscribe();
            tasks.spawn("metrics listener", Stop::Signal, async move {
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|v| *v).await;
                    })
                    .await;
            });
        }
        let tx = self.shutdown.clone();
        let shutdown = async move {
            shutdown.await;
            // WebSockets close with 1001 so clients reconnect elsewhere or later.
            let _ = tx.send(true);
        };
        crate::net::serve(
            self.listener,
            app,
            self.state.edge.clone(),
            crate::net::Timeouts::new(&self.state.cfg),
            shutdown,
            Duration::from_secs(15),
        )
        .await?;
        // Sessions stay active in the database; the next start recovers them.
        tokio::time::timeout(Duration::from_secs(10), self.state.coord.shutdown())
            .await
            .ok();
        // The other nodes take over this node's running sessions right away.
        if let Some(c) = &self.state.cluster {
            c.leave().await;
        }
        tokio::time::timeout(Duration::from_secs(10), self.state.terminals.shutdown())
            .await
            .ok();
        self.state.upstream.tokens.stop().await;
        // The listener has stopped and the shutdown signal was sent: every background
        // task ends (those that watch the signal finish their work first) and is joined.
        let _ = self.shutdown.send(true);
        self.tasks.join(TASKS_BOUND).await;
        Ok(())
    }
}

/// Why a maintainer could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Bad username or password.
    #[error("{0}")]
    Invalid(String),
    /// The username exists.
    #[error("exists")]
    Exists,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// Hashing the password failed.
    #[error("{0}")]
    Internal(String),
}

/// Adds a maintainer (shared by the ops API and the CLI).
pub async fn add_maintainer(
    db: &Db,
    username: &str,
    password: &str,
    now: i64,
) -> Result<(), AddError> {
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(AddError::Invalid(
            "username must be 1-64 of [A-Za-z0-9._-]".into(),
        ));
    }
    if password.chars().count() < 6 || password.len() > 256 {
        return Err(AddError::Invalid(
            "password must be 6-256 characters".into(),
        ));
    }
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || crate::passwords::hash(&pw))
        .await
        .map_err(|e| AddError::Internal(e.to_string()))?
        .map_err(AddError::Internal)?;
    match db.add_maintainer(username, &hash, now).await {
        Ok(()) => Ok(()),
        Err(WriteError::Conflict) => Err(AddError::Exists),
        Err(e) => Err(AddError::Store(e)),
    }
}
