//! Several nodes (ARCHITECTURE "Several nodes"): the Redis implementation of the
//! coordinator's [`Placement`] port.
//!
//! Keys and channels (all under `<redis.namespace>:`, `kioskd:` by default):
//! - `alive:<node>`: set by each node with a lease (`cluster.lease_ms`) and renewed every
//!   third of it. A node whose key has expired is dead.
//! - `nodes`: every node that has run (dead ones are removed once their sessions have
//!   been taken over).
//! - `owner:<device code>`: the node that owns the device's actor. A node claims a device
//!   when nobody live owns it (one atomic script); the owner never expires by itself, it
//!   dies with its node's `alive` key.
//! - channel `node:<node>`: requests for that node and replies to it (JSON [`Wire`]).
//!
//! A node that finds its own `alive` key gone (it was cut off longer than the lease and
//! other nodes may have taken its devices) stops every device actor it has, then takes
//! back what nobody owns. Each node also looks for dead nodes and takes over the running
//! sessions of their devices (whoever claims a device first gets it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use kioskd_actors::Coordinator;
use kioskd_actors::catalog;
use kioskd_actors::placement::{Owner, Placement, PlacementError, Reply, Request};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Claims `KEYS[1]` for `ARGV[1]` unless a live node (its `alive` key exists) owns it;
/// returns the owner afterwards.
const CLAIM: &str = r"
local o = redis.call('GET', KEYS[1])
if o == ARGV[1] then return o end
if o and redis.call('EXISTS', ARGV[2] .. o) == 1 then return o end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
";

/// The live owner of `KEYS[1]`, or nil.
const OWNER: &str = r"
local o = redis.call('GET', KEYS[1])
if o and redis.call('EXISTS', ARGV[1] .. o) == 1 then return o end
return false
";

/// Sets `KEYS[1]` to `ARGV[2]` if `ARGV[1]` holds it.
const HAND_OVER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
";

/// Deletes `KEYS[1]` if `ARGV[1]` holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// What travels on a node's channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Wire {
    /// A request for the channel's node.
    Req {
        /// Correlation id (the sender's).
        id: u64,
        /// The sender, where the reply goes.
        from: String,
        /// What it asks.
        req: Request,
    },
    /// A reply to a request the channel's node sent.
    Rep {
        /// The request's id.
        id: u64,
        /// The answer.
        reply: Reply,
    },
}

/// Cluster settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How long a node's `alive` key lives without renewal.
    pub lease: Duration,
    /// How long a forwarded request waits for its reply.
    pub timeout: Duration,
    /// Prefix of every key and channel (one per deployment sharing a Redis).
    pub namespace: String,
}

/// This node's membership and its way to the others.
pub struct Cluster {
    client: redis::Client,
    conn: ConnectionManager,
    node: String,
    cfg: ClusterConfig,
    /// `<namespace>:`
    prefix: String,
    pending: DashMap<u64, oneshot::Sender<Reply>>,
    next_id: AtomicU64,
    /// The listener and the lease keeper (stopped by `leave`).
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn err(e: impl std::fmt::Display) -> PlacementError {
    PlacementError(e.to_string())
}

impl Cluster {
    /// Joins the cluster as `node` (registers the lease); call [`Cluster::run`] next.
    pub async fn join(
        client: redis::Client,
        conn: ConnectionManager,
        node: &str,
        cfg: ClusterConfig,
    ) -> Result<Arc<Self>, PlacementError> {
        let c = Arc::new(Self {
            client,
            conn,
            node: node.to_string(),
            prefix: format!("{}:", cfg.namespace),
            cfg,
            pending: DashMap::new(),
            next_id: AtomicU64::new(1),
            tasks: Default::default(),
        });
        c.register().await?;
        Ok(c)
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    fn alive_prefix(&self) -> String {
        format!("{}alive:", self.prefix)
    }

    fn lease_ms(&self) -> u64 {
        self.cfg.lease.as_millis().max(1) as u64
    }

    async fn register(&self) -> Result<(), PlacementError> {
        let mut c = self.conn.clone();
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(self.key("alive", &self.node))
            .arg(1)
            .arg("PX")
            .arg(self.lease_ms())
            .ignore()
            .cmd("SADD")
            .arg(self.nodes_key())
            .arg(&self.node)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Renews the lease; false when it had expired (this node was taken for dead).
    async fn renew(&self) -> Result<bool, PlacementError> {
        let mut c = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(self.key("alive", &self.node))
            .arg(1)
            .arg("XX")
            .arg("PX")
            .arg(self.lease_ms())
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(r.is_some())
    }

    /// The other nodes that have run, each with whether its lease is live.
    async fn others(&self) -> Result<Vec<(String, bool)>, PlacementError> {
        let mut c = self.conn.clone();
        let nodes: Vec<String> = c.smembers(self.nodes_key()).await.map_err(err)?;
        let mut out = Vec::new();
        for n in nodes {
            if n != self.node {
                let alive: bool = c.exists(self.key("alive", &n)).await.map_err(err)?;
                out.push((n, alive));
            }
        }
        Ok(out)
    }

    /// Nodes that have run and whose lease has expired.
    async fn dead_nodes(&self) -> Result<Vec<String>, PlacementError> {
        let others = self.others().await?;
        Ok(others
            .into_iter()
            .filter(|(_, a)| !a)
            .map(|(n, _)| n)
            .collect())
    }

    /// Subscribes to this node's channel, then serves requests and routes replies; keeps
    /// the lease and takes over dead nodes' sessions. Runs until the process ends.
    pub async fn run(self: Arc<Self>, coord: Coordinator) -> Result<(), PlacementError> {
        let first = self.subscribe().await?;
        let (me, me2, c2) = (self.clone(), self.clone(), coord.clone());
        let listen = tokio::spawn(crate::broker::keep_subscribed(
            first,
            move || {
                let me = me.clone();
                async move { me.subscribe().await }
            },
            move |m: redis::Msg| me2.received(&m, &c2),
            "cluster subscription",
            Duration::from_secs(5),
        ));
        let me = self.clone();
        let lease = tokio::spawn(async move { me.keep_lease(coord).await });
        if let Ok(mut t) = self.tasks.lock() {
            t.extend([listen, lease]);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
    ) -> Result<impl futures::Stream<Item = redis::Msg> + Send + Unpin + use<>, PlacementError>
    {
        let mut ps = self.client.get_async_pubsub().await.map_err(err)?;
        ps.subscribe(self.key("node", &self.node))
            .await
            .map_err(err)?;
        Ok(ps.into_on_message())
    }

    /// A message on this node's channel: a request to serve or a reply to hand back.
    fn received(self: &Arc<Self>, m: &redis::Msg, coord: &Coordinator) {
        let Ok(payload) = m.get_payload::<String>() else {
            return;
        };
        match serde_json::from_str::<Wire>(&payload) {
            Ok(Wire::Req { id, from, req }) => {
                let me = self.clone();
                let coord = coord.clone();
                tokio::spawn(async move {
                    let reply = coord.serve(req).await;
                    me.send(&from, &Wire::Rep { id, reply }).await;
                });
            }
            Ok(Wire::Rep { id, reply }) => {
                if let Some((_, tx)) = self.pending.remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            Err(e) => tracing::warn!(error = %e, "malformed cluster message skipped"),
        }
    }

    /// Publishes on `node`'s channel; how many subscribers got it.
    async fn send(&self, node: &str, msg: &Wire) -> i64 {
        let payload = match serde_json::to_string(msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "encoding a cluster message failed");
                return 0;
            }
        };
        let mut c = self.conn.clone();
        match c.publish(self.key("node", node), payload).await {
            Ok(n) => n,
            Err(e) => {
                metrics::counter!(catalog::BROKER_ERRORS, "op" => "forward").increment(1);
                tracing::warn!(node = %node, error = %e, "publishing a cluster message failed");
                0
            }
        }
    }

    async fn keep_lease(self: Arc<Self>, coord: Coordinator) {
        let every = (self.cfg.lease / 3).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(node = %self.node, "this node's lease expired: giving up its devices");
                    coord.fence().await;
                    if let Err(e) = self.register().await {
                        tracing::warn!(error = %e, "re-registering the node failed");
                        continue;
                    }
                    if let Err(e) = coord.recover().await {
                        tracing::warn!(error = %e, "taking sessions back failed");
                    }
                    continue;
                }
                Err(e) => {
                    metrics::counter!(catalog::BROKER_ERRORS, "op" => "lease").increment(1);
                    tracing::warn!(error = %e, "renewing the node lease failed");
                    continue;
                }
            }
            match self.dead_nodes().await {
                Ok(dead) if !dead.is_empty() => {
                    tracing::info!(nodes = ?dead, "nodes died: taking over their running sessions");
                    match coord.recover().await {
                        Ok(_) => {
                            let mut c = self.conn.clone();
                            let r: Result<(), _> = c.srem(self.nodes_key(), &dead).await;
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "forgetting dead nodes failed");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "taking over sessions failed"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "looking for dead nodes failed"),
            }
        }
    }

    /// Leaves the cluster (graceful shutdown): the lease is dropped at once, so the other
    /// nodes take over this node's running sessions at their next check instead of
    /// waiting for the lease to run out.
    pub async fn leave(&self) {
        let tasks: Vec<_> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for h in tasks {
            h.abort();
            let _ = h.await;
        }
        let mut c = self.conn.clone();
        let r: Result<(), _> = c.del(self.key("alive", &self.node)).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "dropping the node lease failed");
        }
    }

    async fn eval(
        &self,
        script: &str,
        k: &str,
        args: &[&str],
    ) -> Result<redis::Value, PlacementError> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(1).arg(k);
        for a in args {
            cmd.arg(*a);
        }
        cmd.query_async(&mut c).await.map_err(err)
    }
}

#[async_trait::async_trait]
impl Placement for Cluster {
    fn node(&self) -> &str {
        &self.node
    }

    async fn claim(&self, code: &str) -> Result<Owner, PlacementError> {
        let v = self
            .eval(
                CLAIM,
                &self.key("owner", code),
                &[&self.node, &self.alive_prefix()],
            )
            .await?;
        let owner: String = redis::FromRedisValue::from_redis_value(v).map_err(err)?;
        Ok(if owner == self.node {
            Owner::Here
        } else {
            Owner::There(owner)
        })
    }

    async fn owner(&self, code: &str) -> Result<Option<String>, PlacementError> {
        let v = self
            .eval(OWNER, &self.key("owner", code), &[&self.alive_prefix()])
            .await?;
        redis::FromRedisValue::from_redis_value(v).map_err(err)
    }

    async fn hand_over(&self, code: &str, to: &str) -> Result<(), PlacementError> {
        self.eval(HAND_OVER, &self.key("owner", code), &[&self.node, to])
            .await
            .map(drop)
    }

    async fn release(&self, code: &str) -> Result<(), PlacementError> {
        self.eval(RELEASE, &self.key("owner", code), &[&self.node])
            .await
            .map(drop)
    }

    async fn peers(&self) -> Result<Vec<String>, PlacementError> {
        let others = self.others().await?;
        Ok(others
            .into_iter()
            .filter(|(_, a)| *a)
            .map(|(n, _)| n)
            .collect())
    }

    async fn forward(&self, node: &str, req: Request) -> Result<Reply, PlacementError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        let msg = Wire::Req {
            id,
            from: self.node.clone(),
            req,
        };
        if self.send(node, &msg).await == 0 {
            self.pending.remove(&id);
            return Err(PlacementError(format!("node {node} is not listening")));
        }
        metrics::counter!(catalog::CLUSTER_FORWARDED).increment(1);
        match tokio::time::timeout(self.cfg.timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                self.pending.remove(&id);
                Err(PlacementError(format!(
                    "node {node} did not answer in time"
                )))
            }
        }
    }
}
