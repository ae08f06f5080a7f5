//! The composition root: configuration, storage, the actors and the named services,
//! built once by [`crate::app::Application`] and shared by every way in (the HTTP
//! dialects, the WebSockets, the ops API and the background tasks). Nothing here knows
//! about HTTP; the edge keeps its own state (`http::AppInner`) beside an `Arc` of this.

use std::sync::Arc;

use chrono_tz::Tz;
use kioskd_actors::Coordinator;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::sms::SmsSender;
use crate::store::Db;
/// One page of a listing (what the services' paged reads return).
pub use crate::store::Page;

/// Everything below the adapters.
pub struct Services {
    /// Configuration.
    pub cfg: Config,
    /// Storage.
    pub db: Db,
    /// The actors.
    pub coord: Coordinator,
    /// Wire time zone.
    pub tz: Tz,
    /// Sends SMS captchas.
    pub sms: Arc<dyn SmsSender>,
    /// Prometheus exposition.
    pub metrics: PrometheusHandle,
    /// The Redis broker, when configured.
    pub broker: Option<crate::broker::RedisBroker>,
    /// Device ownership across nodes, when Redis is configured.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Events other nodes published through the broker (fed to /ws/ops and /ws/user).
    pub remote: tokio::sync::broadcast::Sender<kioskd_actors::Event>,
    /// Flips to true when the server shuts down (WebSockets close with 1001).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Open kiosk WebSockets (devices online over ws on this node).
    pub kiosk_sockets: std::sync::atomic::AtomicUsize,
    /// The attendance terminal actors.
    pub terminals: kioskd_actors::terminal::Terminals,
    /// Upstream clients (open platform, official account, WeChat Pay) and the token
    /// keeper.
    pub upstream: Arc<crate::upstream::Upstream>,
    /// Operator accounts, console sessions and personal tokens.
    pub operators: crate::operators::Operators,
    /// Dialect B client id → device code (client ids never change once registered).
    pub client_ids: dashmap::DashMap<String, String>,
}

/// What the server is not ready for.
#[derive(Debug, thiserror::Error)]
pub enum Unready {
    /// The database does not answer.
    #[error("database: {0}")]
    Database(kioskd_actors::ports::StoreError),
    /// Redis is configured and does not answer.
    #[error("redis: {0}")]
    Redis(String),
}

impl Services {
    /// Ready to serve: the database answers, and Redis when configured.
    pub async fn ready(&self) -> Result<(), Unready> {
        self.db.ping().await.map_err(Unready::Database)?;
        if let Some(b) = &self.broker {
            b.ping().await.map_err(|e| Unready::Redis(e.to_string()))?;
        }
        Ok(())
    }
}
