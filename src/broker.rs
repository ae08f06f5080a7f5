//! The broker: how events leave this node. With Redis configured, every coordinator
//! event is published on a Redis channel (`<redis.namespace>:events`, `kioskd:events` by
//! default) as JSON (`{"node", "event"}`) so that other
//! nodes and tools see device and session changes as they happen. Redis pub/sub is
//! at-most-once: it is a doorbell, never the record (the database is).

use futures::{Stream, StreamExt};
use kioskd_actors::{Event, Events, catalog};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// Channel every node publishes its events on (in the default namespace).
pub const EVENTS_CHANNEL: &str = "kioskd:events";

/// Channel a node announces a pricing change on (in the default namespace).
pub const PRICING_CHANNEL: &str = "kioskd:pricing";

/// An event as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that published it.
    pub node: String,
    /// What happened.
    pub event: Event,
}

/// A Redis-backed broker.
#[derive(Clone)]
pub struct RedisBroker {
    client: redis::Client,
    conn: ConnectionManager,
    node: String,
    /// `<namespace>:events`.
    channel: String,
    /// `<namespace>:pricing`: "the pricing catalog changed" notices (the payload is the
    /// announcing node's name).
    pricing_channel: String,
}

/// The broker failed.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct BrokerError(String);

impl From<redis::RedisError> for BrokerError {
    fn from(e: redis::RedisError) -> Self {
        BrokerError(e.to_string())
    }
}

impl RedisBroker {
    /// Connects (and checks the server answers).
    pub async fn connect(url: &str, node: &str) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        let b = Self {
            client,
            conn,
            node: node.to_string(),
            channel: EVENTS_CHANNEL.to_string(),
            pricing_channel: PRICING_CHANNEL.to_string(),
        };
        b.ping().await?;
        Ok(b)
    }

    /// Publishes and subscribes in `namespace` (one per deployment sharing a Redis).
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.channel = format!("{namespace}:events");
        self.pricing_channel = format!("{namespace}:pricing");
        self
    }

    /// A round trip.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Sets `key` if absent, expiring after `ttl_seconds`; true if it was absent.
    pub async fn set_once(&self, key: &str, ttl_seconds: u64) -> Result<bool, BrokerError> {
        let mut c = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds)
            .query_async(&mut c)
            .await?;
        Ok(r.is_some())
    }

    /// Publishes one event; returns how many subscribers received it.
    pub async fn publish(&self, event: &Event) -> Result<i64, BrokerError> {
        let payload = serde_json::to_string(&Envelope {
            node: self.node.clone(),
            event: event.clone(),
        })
        .map_err(|e| BrokerError(e.to_string()))?;
        let mut c = self.conn.clone();
        Ok(c.publish(&self.channel, payload).await?)
    }

    /// Every event any node publishes from now on (malformed payloads are skipped).
    pub async fn subscribe(
        &self,
    ) -> Result<impl Stream<Item = Envelope> + Send + Unpin + use<>, BrokerError> {
        let mut ps = self.client.get_async_pubsub().await?;
        ps.subscribe(&self.channel).await?;
        Ok(ps.into_on_message().filter_map(|m| {
            let parsed = m
                .get_payload::<String>()
                .ok()
                .and_then(|p| serde_json::from_str(&p).ok());
            futures::future::ready(parsed)
        }))
    }

    /// Tells the other nodes that the pricing catalog changed (they reload it).
    pub async fn publish_pricing_changed(&self) -> Result<i64, BrokerError> {
        let mut c = self.conn.clone();
        Ok(c.publish(&self.pricing_channel, &self.node).await?)
    }

    /// The pricing-change notices of the other nodes from now on (this node's own are
    /// skipped).
    async fn subscribe_pricing(
        &self,
    ) -> Result<impl Stream<Item = ()> + Send + Unpin + use<>, BrokerError> {
        let mut ps = self.client.get_async_pubsub().await?;
        ps.subscribe(&self.pricing_channel).await?;
        let me = self.node.clone();
        Ok(ps.into_on_message().filter_map(move |m| {
            let other = m.get_payload::<String>().is_ok_and(|n| n != me);
            futures::future::ready(other.then_some(()))
        }))
    }

    /// Subscribes now, then notifies `kick` on every pricing change another node
    /// announces, resubscribing with backoff when the subscription drops. The task is
    /// returned (the application owns it).
    pub async fn on_pricing_changed(
        self,
        kick: std::sync::Arc<tokio::sync::Notify>,
    ) -> Result<tokio::task::JoinHandle<()>, BrokerError> {
        let first = self.subscribe_pricing().await?;
        let me = self.clone();
        Ok(tokio::spawn(keep_subscribed(
            first,
            move || {
                let me = me.clone();
                async move { me.subscribe_pricing().await }
            },
            move |()| kick.notify_one(),
            "redis pricing subscription",
            std::time::Duration::from_secs(10),
        )))
    }

    /// The client (for subscriptions of its own).
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// The shared connection.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// This node's name on the channel.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Subscribes now, then relays every event another node publishes to `to` (this
    /// node's own are skipped: they are already on its bus). Resubscribes with backoff
    /// when the subscription drops. The relay's task is returned (the application owns
    /// it).
    pub async fn relay_remote(
        self,
        to: tokio::sync::broadcast::Sender<Event>,
    ) -> Result<tokio::task::JoinHandle<()>, BrokerError> {
        let first = self.subscribe().await?;
        let me = self.clone();
        Ok(tokio::spawn(keep_subscribed(
            first,
            move || {
                let me = me.clone();
                async move { me.subscribe().await }
            },
            move |env: Envelope| {
                if env.node != self.node {
                    let _ = to.send(env.event);
                }
            },
            "redis subscription",
            std::time::Duration::from_secs(10),
        )))
    }

    /// Forwards this node's events to Redis until the bus closes. A lagging forwarder
    /// skips events (pub/sub is best effort anyway) rather than slowing the actors.
    pub fn forward(self, events: &Events) -> tokio::task::JoinHandle<()> {
        let mut rx = events.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => match self.publish(&e).await {
                        Ok(_) => {
                            metrics::counter!(catalog::BROKER_PUBLISHED).increment(1);
                            metrics::gauge!(catalog::BROKER_CONNECTED).set(1.0);
                        }
                        Err(err) => {
                            metrics::counter!(catalog::BROKER_ERRORS, "op" => "publish")
                                .increment(1);
                            metrics::gauge!(catalog::BROKER_CONNECTED).set(0.0);
                            tracing::warn!(error = %err, "publishing an event to redis failed");
                        }
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "event forwarder lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }
}

/// Runs `handle` on every item of a subscription; when it ends (the connection dropped),
/// subscribes again with backoff (200 ms doubling to `max_backoff`), counting each drop
/// and failed attempt in `kioskd_broker_errors_total{op="subscribe"}`.
pub async fn keep_subscribed<S, E, F, Fut>(
    first: S,
    mut subscribe: F,
    mut handle: impl FnMut(S::Item),
    what: &'static str,
    max_backoff: std::time::Duration,
) where
    S: Stream + Unpin,
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S, E>>,
{
    let mut sub = Some(first);
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        if let Some(mut s) = sub.take() {
            while let Some(item) = s.next().await {
                handle(item);
            }
            metrics::counter!(catalog::BROKER_ERRORS, "op" => "subscribe").increment(1);
            tracing::warn!("{what} closed; resubscribing");
        }
        tokio::time::sleep(backoff).await;
        match subscribe().await {
            Ok(s) => {
                sub = Some(s);
                backoff = std::time::Duration::from_millis(200);
            }
            Err(e) => {
                metrics::counter!(catalog::BROKER_ERRORS, "op" => "subscribe").increment(1);
                tracing::warn!(error = %e, "{what}: resubscribing failed");
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}
