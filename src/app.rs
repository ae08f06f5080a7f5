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

/// A built, not yet running application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
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
        ..CoordinatorConfig::default()
    }
}

impl Application {
    /// Opens storage, recovers running sessions and prepares the routes.
    pub async fn build(cfg: Config, listener: TcpListener) -> Result<Self, BuildError> {
        let sms = crate::sms::sender(&cfg.sms).map_err(BuildError::Config)?;
        Self::build_with(cfg, listener, sms).await
    }

    /// As `build`, with a given SMS sender (tests capture codes with one).
    pub async fn build_with(
        cfg: Config,
        listener: TcpListener,
        sms: Arc<dyn SmsSender>,
    ) -> Result<Self, BuildError> {
        let metrics = crate::telemetry::metrics();
        let db = Db::connect(cfg.database.url.expose(), cfg.database.max_connections)
            .await
            .map_err(|e| BuildError::Db(e.0))?;
        // The field dialect-B client never leaves its start screen without a service
        // number: refuse to run such a fleet without one (SPEC §6).
        if cfg.rest.service_number.trim().is_empty() {
            let n = db
                .dialect_b_devices()
                .await
                .map_err(|e| BuildError::Db(e.0))?;
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
            crate::upstream::Upstream::new(&cfg, db.clone(), Clock::system())
                .map_err(BuildError::Upstream)?,
        );
        let coord = Coordinator::new(
            Arc::new(db.clone()),
            Clock::system(),
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
            b.clone().forward(coord.events());
            crate::telemetry::prime_broker();
            Some(b)
        };
        // Other nodes' events, for this node's /ws/ops and /ws/user feeds.
        let (remote, _) = tokio::sync::broadcast::channel(1024);
        if let Some(b) = &broker {
            b.clone()
                .relay_remote(remote.clone())
                .await
                .map_err(|e| BuildError::Redis(e.to_string()))?;
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
            Clock::system(),
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
        });
        let cfg = &services.cfg;
        let inner = AppInner {
            client_ids: Default::default(),
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

    /// Serves until `shutdown` resolves, then stops the actors.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = router(self.state.clone());
        let sampler = crate::sampler::spawn(self.state.services.clone());
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, "kioskd listening");
        crate::upstream::outbox::spawn(self.state.services.clone(), self.shutdown.subscribe());
        crate::payments::spawn_reconciler(self.state.services.clone(), self.shutdown.subscribe());
        // /metrics on its own listener, when configured (Prometheus only, never the
        // public one).
        let metrics_task = if self.state.cfg.metrics.listen.is_empty() {
            None
        } else {
            let l = TcpListener::bind(&self.state.cfg.metrics.listen).await?;
            tracing::info!(addr = %l.local_addr()?, "metrics listening");
            let app = crate::http::health::metrics_router(self.state.clone());
            let mut stop = self.shutdown.subscribe();
            Some(tokio::spawn(async move {
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|v| *v).await;
                    })
                    .await;
            }))
        };
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
        sampler.abort();
        if let Some(t) = metrics_task {
            t.abort();
        }
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
    #[error("{0}")]
    Store(String),
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
        .map_err(|e| AddError::Store(e.to_string()))?
        .map_err(AddError::Store)?;
    match db.add_maintainer(username, &hash, now).await {
        Ok(()) => Ok(()),
        Err(WriteError::Conflict) => Err(AddError::Exists),
        Err(e) => Err(AddError::Store(e.to_string())),
    }
}
