//! The coordinator: the directory that finds or spawns a device's actor by its code, the
//! index of running sessions by token and by user, and the operations every adapter
//! (legacy HTTP, phone API, ops API, CLI, WebSocket) calls. Adapters never touch actor
//! state directly; they send messages through here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use kameo::prelude::*;
use tokio::sync::mpsc;

use crate::billing::EndReason;
use crate::catalog;
use crate::clock::Clock;
use crate::device::{
    Check, CheckView, DeviceActor, DeviceArgs, DeviceRefusal, DeviceView, GameUpdate, Info,
    KioskHeard, KioskLink, MaintainLogin, MaintainLogout, Operate, OperatorCommand,
    OrderPaidNotice, Recover, Reload, Retire, SendCommand, StartRefusal, StartSession, StartedView,
};
use crate::events::Events;
use crate::placement::{DeviceOp, Owner, Placement, PlacementError, Reply, Request, SessionOp};
use crate::ports::{ActiveKey, DeviceRecord, LastHeard, SessionRecord, Store, StoreError, UserRef};
use crate::session::{
    BalanceChanged, End, EndedView, Keepalive, SessionActor, SessionError, SessionView, View,
};
use crate::stream::{Broadcast, DeviceStream, SharedStream};
use kioskd_protocol::ws::close;

/// Billing and liveness settings (milliseconds and fen).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// One billing unit.
    pub unit_ms: i64,
    /// The free start.
    pub free_ms: i64,
    /// Silence after which a session ends and a device is offline.
    pub heartbeat_timeout_ms: i64,
    /// Warn when this many units or fewer are left.
    pub low_balance_units: i64,
    /// How often heartbeats are written to storage.
    pub heartbeat_flush: Duration,
    /// Retry delay after a storage failure in a billing step.
    pub retry_ms: i64,
    /// Bound on every ask between actors and from adapters.
    pub ask_timeout: Duration,
    /// A device actor with no socket, no session, no pending command and no activity for
    /// this long stops (passivation); its next request activates it again from storage.
    /// `None`: never.
    pub idle: Option<Duration>,
    /// A broadcast is pending for a device that has not acknowledged it only this long
    /// after it was sent (commands to one device stay pending until acknowledged).
    pub broadcast_ttl_ms: i64,
    /// A device's stream keeps its events for a resume this long (and at most 256).
    pub resume_window: Duration,
}

impl CoordinatorConfig {
    /// A device's last-heard time is written to storage at most this often: a tenth of
    /// the heartbeat timeout, between 1 and 30 s. Storage's time serves what is not
    /// live on this node (another node's devices, "online" counts, a restart), where
    /// a tenth of the timeout is well inside it; live views read the exact time from the
    /// device. (Every sign of life, each ack of a broadcast included, was a row a second:
    /// BENCHMARKS.md, durable broadcast.)
    pub fn heartbeat_store_ms(&self) -> i64 {
        (self.heartbeat_timeout_ms / 10).clamp(1_000, 30_000)
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            unit_ms: 60_000,
            free_ms: 30_000,
            heartbeat_timeout_ms: 300_000,
            low_balance_units: 5,
            heartbeat_flush: Duration::from_secs(1),
            retry_ms: 1_000,
            ask_timeout: Duration::from_secs(10),
            idle: Some(Duration::from_secs(300)),
            broadcast_ttl_ms: 3_600_000,
            resume_window: crate::stream::RESUME_WINDOW,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Beat {
    Device(i64, i64),
    Session(i64, i64),
    /// Shutdown: write what is pending, then end (queued after every earlier beat).
    Stop,
}

/// Shared by the coordinator and its actors.
pub struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Clock,
    pub(crate) cfg: CoordinatorConfig,
    pub(crate) events: Events,
    /// Live device actors by code, with the device's id and its kiosk stream (shared
    /// with the actor: broadcasts go into it from here).
    devices: DashMap<String, (i64, ActorRef<DeviceActor>, Arc<SharedStream>)>,
    sessions: DashMap<String, ActorRef<SessionActor>>,
    by_user: DashMap<i64, String>,
    beats: mpsc::Sender<Beat>,
    /// Kiosks' command acknowledgements, to the ack writer.
    acks: mpsc::UnboundedSender<Vec<i64>>,
    /// Set when several nodes share the database (Redis configured).
    placement: std::sync::OnceLock<Arc<dyn Placement>>,
    /// Shutting down: no more actors are spawned.
    closing: std::sync::atomic::AtomicBool,
    /// Devices whose actor died holding a running session: the next actor for the code
    /// picks the session up from storage (`DeviceArgs::adopt`).
    orphans: DashMap<String, ()>,
    /// Recent at-once revivals per device (window start, count), against restart storms.
    revivals: DashMap<String, (i64, u8)>,
    /// The coordinator's own background tasks (heartbeat writer, idle sweeper), ended and
    /// joined by `shutdown` (which takes the join handles; the abort handles stay, to
    /// tell whether they run).
    tasks: std::sync::Mutex<(
        Vec<tokio::task::JoinHandle<()>>,
        Vec<tokio::task::AbortHandle>,
    )>,
    /// Rate plans, zones and groups (issue 16); empty: every device bills flat.
    pricing: std::sync::RwLock<Arc<crate::pricing::Catalog>>,
}

impl Inner {
    /// The pricing catalog as it stands.
    pub(crate) fn pricing(&self) -> Arc<crate::pricing::Catalog> {
        self.pricing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn remember_session(&self, token: &str, user_id: i64, a: ActorRef<SessionActor>) {
        self.sessions.insert(token.to_string(), a);
        self.by_user.insert(user_id, token.to_string());
    }

    pub(crate) fn forget_session(&self, token: &str, user_id: i64) {
        self.sessions.remove(token);
        self.by_user.remove_if(&user_id, |_, t| t == token);
    }

    /// A session actor stopped (however it stopped): its entries go, unless they already
    /// name a newer actor for the same session.
    pub(crate) fn session_stopped(&self, token: &str, user_id: i64, id: ActorId) {
        if self
            .sessions
            .remove_if(token, |_, a| a.id() == id)
            .is_some()
        {
            self.by_user.remove_if(&user_id, |_, t| t == token);
        }
    }

    /// A device actor stopped (however it stopped): its entry goes, unless it already
    /// names a newer actor for the device.
    pub(crate) fn device_stopped(&self, code: &str, id: ActorId) {
        self.devices.remove_if(code, |_, (_, a, _)| a.id() == id);
    }

    /// Is `id` the device's actor in the directory?
    pub(crate) fn is_current_device(&self, code: &str, id: ActorId) -> bool {
        self.devices.get(code).is_some_and(|e| e.1.id() == id)
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A device's actor died holding a running session: the session must go on billing,
    /// so a new actor picks it up from storage — at once, unless this device was revived
    /// too often lately (then on its next use).
    pub(crate) fn device_died_with_session(self: &Arc<Self>, code: &str) {
        self.orphans.insert(code.to_string(), ());
        if self.closing() {
            return;
        }
        let now = self.clock.now_ms();
        let allowed = {
            let mut e = self.revivals.entry(code.to_string()).or_insert((now, 0));
            if now - e.0 >= RESTART_WINDOW_MS {
                *e = (now, 0);
            }
            e.1 += 1;
            e.1 <= RESTART_LIMIT
        };
        if !allowed {
            tracing::error!(device = %code, "device actor keeps dying: revived on its next use only");
            return;
        }
        let coord = Coordinator {
            inner: self.clone(),
        };
        let code = code.to_string();
        tokio::spawn(async move {
            if let Err(e) = coord.device(&code).await {
                tracing::warn!(device = %code, error = %e, "reviving a device actor failed");
            }
        });
    }

    /// The live actor of the session holding `token`, if any.
    pub(crate) fn live_session(&self, token: &str) -> Option<ActorRef<SessionActor>> {
        self.sessions
            .get(token)
            .map(|a| a.clone())
            .filter(|a| a.is_alive())
    }

    pub(crate) fn user_has_session(&self, user_id: i64) -> bool {
        self.by_user.contains_key(&user_id)
    }

    fn node(&self) -> Option<&str> {
        self.placement.get().map(|p| p.node())
    }

    pub(crate) fn beat_device(&self, id: i64, at: i64) {
        let _ = self.beats.try_send(Beat::Device(id, at));
    }

    pub(crate) fn beat_session(&self, id: i64, at: i64) {
        let _ = self.beats.try_send(Beat::Session(id, at));
    }

    /// Records acknowledged commands (their pending state in the actor is already
    /// gone): written by the ack writer, batched with whatever else arrived meanwhile.
    pub(crate) fn acked(&self, ids: Vec<i64>) {
        // An empty batch would read as the stop (`shutdown`).
        if !ids.is_empty() {
            let _ = self.acks.send(ids);
        }
    }
}

/// A failure of a coordinator operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CoordError {
    /// No such device.
    #[error("no such device")]
    NoSuchDevice,
    /// Storage failed.
    #[error("{0}")]
    Store(StoreError),
    /// An actor did not answer in time or died.
    #[error("actor unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for CoordError {
    fn from(e: StoreError) -> Self {
        CoordError::Store(e)
    }
}

fn unavailable<M, E: std::fmt::Debug>(e: SendError<M, E>) -> CoordError {
    CoordError::Unavailable(format!("{e:?}").chars().take(200).collect())
}

/// The coordinator handle (cheap to clone).
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

impl Coordinator {
    /// A coordinator over `store`. Spawns the heartbeat writer; call `recover` next.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        cfg: CoordinatorConfig,
        events: Events,
    ) -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let flush = cfg.heartbeat_flush;
        let inner = Arc::new(Inner {
            store: store.clone(),
            clock,
            cfg,
            events,
            devices: DashMap::new(),
            sessions: DashMap::new(),
            by_user: DashMap::new(),
            beats: tx,
            acks,
            placement: std::sync::OnceLock::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
            orphans: DashMap::new(),
            revivals: DashMap::new(),
            tasks: std::sync::Mutex::new((Vec::new(), Vec::new())),
            pricing: Default::default(),
        });
        let mut tasks = vec![
            tokio::spawn(heartbeat_writer(store.clone(), rx, flush)),
            tokio::spawn(ack_writer(store, inner.clock.clone(), acks_rx)),
        ];
        if let Some(idle) = inner.cfg.idle {
            tasks.push(tokio::spawn(idle_sweeper(Arc::downgrade(&inner), idle)));
        }
        if let Ok(mut t) = inner.tasks.lock() {
            t.1 = tasks.iter().map(|h| h.abort_handle()).collect();
            t.0 = tasks;
        }
        Self { inner }
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    #[cfg(test)]
    pub(crate) fn inner_for_tests(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// Replaces the pricing catalog (rate plans, zones, groups): every session prices the
    /// units that begin from now on with it; units already reserved keep their price.
    pub fn set_pricing(&self, catalog: crate::pricing::Catalog) {
        *self
            .inner
            .pricing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(catalog);
    }

    /// The pricing catalog in force.
    pub fn pricing(&self) -> Arc<crate::pricing::Catalog> {
        self.inner.pricing()
    }

    /// What a session on `device` would cost if it began at `now`, for `user` (id and
    /// balance) or anyone (`None`): the price in force, what a start reserves and how
    /// many units the balance and packages buy (`session::Quote`).
    pub async fn quote(
        &self,
        device: &crate::ports::DeviceRecord,
        user: Option<(i64, i64)>,
        now: i64,
    ) -> Result<crate::session::Quote, crate::ports::StoreError> {
        crate::session::Quote::load(&self.inner, device, user, now).await
    }

    /// The billing settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.cfg
    }

    /// Runs this coordinator as one of several nodes: device ownership and forwarding go
    /// through `p` from now on. Call before the first request (and before `recover`).
    pub fn set_placement(&self, p: Arc<dyn Placement>) -> bool {
        self.inner.placement.set(p).is_ok()
    }

    /// This node's name when several nodes run.
    pub fn node(&self) -> Option<&str> {
        self.inner.placement.get().map(|p| p.node())
    }

    /// The device's actor on this node, spawning it if needed. With several nodes the
    /// device is claimed for this node, taking it over from its owner (which stops its
    /// actor; the running session continues here from the database): a kiosk's
    /// WebSocket pins its device to the node it is connected to.
    pub async fn device(&self, code: &str) -> Result<ActorRef<DeviceActor>, CoordError> {
        for _ in 0..ROUTE_ATTEMPTS {
            match self.route(code).await? {
                Route::Here(a) => return Ok(a),
                Route::There(node) => {
                    let to = self.inner.node().unwrap_or_default().to_string();
                    let req = Request::Release {
                        code: code.to_string(),
                        to,
                    };
                    match self.forward(&node, req).await? {
                        Reply::Done(_) | Reply::NotOwner => {}
                        Reply::Failed(e) => return Err(e),
                        r => return Err(unexpected(r)),
                    }
                }
            }
        }
        Err(moving())
    }

    /// A kiosk connection's way to its device's actor here (found, spawned, or moved
    /// here from another node): see [`KioskLink`].
    pub async fn kiosk_link(&self, code: &str) -> Result<KioskLink, CoordError> {
        let actor = self.device(code).await?;
        let shared = self
            .inner
            .devices
            .get(code)
            .filter(|e| e.1.id() == actor.id())
            .map(|e| (e.0, e.2.clone()));
        Ok(KioskLink::new(actor, shared, self.inner.clone()))
    }

    /// Where a device's actor is: here (found or just spawned) or on another node.
    async fn route(&self, code: &str) -> Result<Route, CoordError> {
        let cached = self.inner.devices.get(code).map(|e| e.1.clone());
        let mut died = false;
        if let Some(a) = cached {
            if a.is_alive() {
                return Ok(Route::Here(a));
            }
            // Died, and its `on_stop` has not cleared the entry yet: never handed out; a
            // new actor is activated from storage below, with any running session.
            self.inner.device_stopped(code, a.id());
            died = true;
        }
        if self.inner.closing() {
            return Err(CoordError::Unavailable("shutting down".into()));
        }
        let Some(p) = self.inner.placement.get() else {
            let rec = self
                .inner
                .store
                .device_by_code(code)
                .await?
                .ok_or(CoordError::NoSuchDevice)?;
            // A device whose actor died with a running session picks it up again.
            let adopt = died || self.inner.orphans.contains_key(code);
            let a = self.spawn_device(rec, adopt, None);
            if adopt {
                a.wait_for_startup().await;
            }
            return Ok(Route::Here(a));
        };
        match p.claim(code).await.map_err(placement_err)? {
            Owner::There(node) => Ok(Route::There(node)),
            Owner::Here => {
                let rec = match self.inner.store.device_by_code(code).await {
                    Ok(Some(rec)) => rec,
                    Ok(None) => {
                        let _ = p.release(code).await;
                        return Err(CoordError::NoSuchDevice);
                    }
                    Err(e) => {
                        let _ = p.release(code).await;
                        return Err(e.into());
                    }
                };
                // Taken over (from a node that released it or died): its running session
                // is picked up from the database before any message is handled.
                let a = self.spawn_device(rec, true, None);
                a.wait_for_startup().await;
                Ok(Route::Here(a))
            }
        }
    }

    /// The device's actor, spawned unless one is in the directory. `adopt`: it picks the
    /// device's running session up from storage before any message; `running`: the
    /// session row (and balance) the caller already holds, attached the same way. Either
    /// way the actor's first snapshot shows the session.
    fn spawn_device(
        &self,
        rec: DeviceRecord,
        adopt: bool,
        running: Option<(SessionRecord, i64)>,
    ) -> ActorRef<DeviceActor> {
        let inner = self.inner.clone();
        let id = rec.id;
        let code = rec.code.clone();
        self.inner
            .devices
            .entry(code.clone())
            .or_insert_with(|| {
                let orphan = self.inner.orphans.remove(&code).is_some();
                let adopt = adopt || orphan;
                let running = running.map(Box::new);
                let stream = SharedStream::new(DeviceStream::with_window(
                    Vec::new(),
                    self.inner.cfg.resume_window,
                ));
                (
                    id,
                    DeviceActor::spawn(DeviceArgs {
                        rec,
                        inner,
                        adopt,
                        running,
                        stream: stream.clone(),
                    }),
                    stream,
                )
            })
            .1
            .clone()
    }

    async fn forward(&self, node: &str, req: Request) -> Result<Reply, CoordError> {
        let p = self
            .inner
            .placement
            .get()
            .ok_or_else(|| CoordError::Unavailable("no placement".into()))?;
        p.forward(node, req).await.map_err(placement_err)
    }

    /// Forwards to the node taken for the device's owner: `None` when it is not (any
    /// more), so the caller looks again.
    async fn forward_to_owner(
        &self,
        node: &str,
        req: Request,
    ) -> Result<Option<Reply>, CoordError> {
        match self.forward(node, req).await? {
            Reply::NotOwner => Ok(None),
            Reply::Failed(e) => Err(e),
            r => Ok(Some(r)),
        }
    }

    /// Runs a device operation where the device lives.
    async fn on_device(&self, code: &str, op: DeviceOp) -> Result<Reply, CoordError> {
        for _ in 0..ROUTE_ATTEMPTS {
            match self.route(code).await? {
                Route::Here(d) => match self.exec_device(code, &d, op.clone()).await {
                    // It stopped (passivated) before taking the message: the next
                    // attempt activates it again.
                    Err(CoordError::Unavailable(e)) if e == NOT_RUNNING => {
                        self.inner.device_stopped(code, d.id());
                    }
                    r => return r,
                },
                Route::There(node) => {
                    let req = Request::Device {
                        code: code.to_string(),
                        op: op.clone(),
                    };
                    if let Some(r) = self.forward_to_owner(&node, req).await? {
                        return Ok(r);
                    }
                }
            }
        }
        Err(moving())
    }

    async fn exec_device(
        &self,
        code: &str,
        d: &ActorRef<DeviceActor>,
        op: DeviceOp,
    ) -> Result<Reply, CoordError> {
        let t = self.inner.cfg.ask_timeout;
        Ok(match op {
            DeviceOp::Check => Reply::Check(refused(d.ask(Check).reply_timeout(t).await)?),
            DeviceOp::Heard { at } => {
                if let Err(SendError::ActorNotRunning(_)) = d.tell(KioskHeard(at)).try_send() {
                    return Err(CoordError::Unavailable(NOT_RUNNING.into()));
                }
                Reply::Done(Ok(()))
            }
            DeviceOp::StartSession { user } => Reply::Started(refused(
                d.ask(StartSession { user }).reply_timeout(t).await,
            )?),
            DeviceOp::Info => Reply::Info(refused(d.ask(Info).reply_timeout(t).await)?),
            DeviceOp::Operate { cmd } => {
                Reply::Operated(refused(d.ask(Operate(cmd)).reply_timeout(t).await)?)
            }
            DeviceOp::SendCommand { name, text } => Reply::Queued(refused(
                d.ask(SendCommand { name, text }).reply_timeout(t).await,
            )?),
            DeviceOp::MaintainLogin { username } => Reply::Done(refused(
                d.ask(MaintainLogin { username }).reply_timeout(t).await,
            )?),
            DeviceOp::MaintainLogout { username } => Reply::Done(refused(
                d.ask(MaintainLogout { username }).reply_timeout(t).await,
            )?),
            DeviceOp::GameUpdate { set } => {
                Reply::Flag(refused(d.ask(GameUpdate(set)).reply_timeout(t).await)?)
            }
            DeviceOp::OrderPaid { order_id } => {
                let _ = d.tell(OrderPaidNotice { order_id }).try_send();
                Reply::Done(Ok(()))
            }
            DeviceOp::Reload => {
                if let Some(rec) = self.inner.store.device_by_code(code).await? {
                    let _ = d.tell(Reload(rec)).await;
                }
                Reply::Done(Ok(()))
            }
        })
    }

    /// Runs a session operation where the session's device lives.
    async fn on_session(&self, op: SessionOp) -> Result<Reply, CoordError> {
        if let Some(s) = self.local_session(&op) {
            return self.exec_session(s, op).await;
        }
        if self.inner.placement.get().is_none() {
            return Ok(no_session(&op));
        }
        // Not running here: the database says on which device it runs, if anywhere.
        let key = match &op {
            SessionOp::Keepalive { token, .. } | SessionOp::EndByToken { token, .. } => {
                ActiveKey::Token(token)
            }
            SessionOp::EndForUser { user_id, .. }
            | SessionOp::View { user_id }
            | SessionOp::BalanceChanged { user_id, .. } => ActiveKey::User(*user_id),
        };
        let Some(rec) = self.inner.store.active_session(key).await? else {
            return Ok(no_session(&op));
        };
        for _ in 0..ROUTE_ATTEMPTS {
            match self.route(&rec.device_code).await? {
                Route::Here(_) => {
                    return match self.local_session(&op) {
                        Some(s) => self.exec_session(s, op).await,
                        None => Ok(no_session(&op)),
                    };
                }
                Route::There(node) => {
                    let req = Request::Session {
                        code: rec.device_code.clone(),
                        op: op.clone(),
                    };
                    if let Some(r) = self.forward_to_owner(&node, req).await? {
                        return Ok(r);
                    }
                }
            }
        }
        Err(moving())
    }

    fn local_session(&self, op: &SessionOp) -> Option<ActorRef<SessionActor>> {
        match op {
            SessionOp::Keepalive { token, .. } | SessionOp::EndByToken { token, .. } => {
                self.session_by_token(token)
            }
            SessionOp::EndForUser { user_id, .. }
            | SessionOp::View { user_id }
            | SessionOp::BalanceChanged { user_id, .. } => self.session_of_user(*user_id),
        }
    }

    async fn exec_session(
        &self,
        s: ActorRef<SessionActor>,
        op: SessionOp,
    ) -> Result<Reply, CoordError> {
        let t = self.inner.cfg.ask_timeout;
        Ok(match op {
            SessionOp::Keepalive { device_code, .. } => Reply::Session(session_reply(
                s.ask(Keepalive { device_code }).reply_timeout(t).await,
            )?),
            SessionOp::EndByToken { reason, .. } | SessionOp::EndForUser { reason, .. } => {
                Reply::Ended(session_reply(s.ask(End { reason }).reply_timeout(t).await)?)
            }
            SessionOp::View { .. } => {
                Reply::Session(session_reply(s.ask(View).reply_timeout(t).await)?)
            }
            SessionOp::BalanceChanged { balance, .. } => {
                let _ = s.tell(BalanceChanged(balance)).await;
                Reply::Done(Ok(()))
            }
        })
    }

    /// Answers a request another node forwarded here.
    pub async fn serve(&self, req: Request) -> Reply {
        let r = match req {
            Request::Device { code, op } => match self.route(&code).await {
                Ok(Route::Here(d)) => self.exec_device(&code, &d, op).await,
                Ok(Route::There(_)) => Ok(Reply::NotOwner),
                Err(e) => Err(e),
            },
            Request::Session { code, op } => match self.route(&code).await {
                Ok(Route::Here(_)) => match self.local_session(&op) {
                    Some(s) => self.exec_session(s, op).await,
                    None => Ok(no_session(&op)),
                },
                Ok(Route::There(_)) => Ok(Reply::NotOwner),
                Err(e) => Err(e),
            },
            Request::Release { code, to } => self.release(&code, &to).await,
            Request::Broadcast { name, text, id } => {
                let id = match id {
                    Some(id) => Ok(id),
                    None => self.store_broadcast(&name, text.as_deref()).await,
                };
                match id {
                    Ok(id) => Ok(Reply::Count(self.broadcast_local(id, name, text))),
                    Err(e) => Err(e),
                }
            }
            Request::Sessions => Ok(Reply::Sessions(self.local_sessions().await)),
            Request::LiveDevices => Ok(Reply::Devices(self.local_devices().await)),
        };
        r.unwrap_or_else(Reply::Failed)
    }

    /// Stops the device's actor here and passes its claim to `to`.
    async fn release(&self, code: &str, to: &str) -> Result<Reply, CoordError> {
        let actor = self.inner.devices.remove(code).map(|(_, (_, a, _))| a);
        // Passed on first, so a request arriving here meanwhile is forwarded to `to`
        // instead of spawning the actor here again.
        let handed = match self.inner.placement.get() {
            Some(p) => p.hand_over(code, to).await.map_err(placement_err),
            None => Ok(()),
        };
        if let Some(a) = actor {
            self.retire(a, close::REPLACED).await;
            tracing::info!(device = %code, to = %to, "device handed over to another node");
        }
        handed.map(|()| Reply::Done(Ok(())))
    }

    /// Stops a device actor and its session's actor without ending anything: the session
    /// stays running in the database for whichever node owns the device next.
    async fn retire(&self, a: ActorRef<DeviceActor>, close_code: u16) {
        let _ = a
            .ask(Retire(close_code))
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await;
    }

    /// This node lost its claims (its lease expired while it was cut off): every device
    /// and session actor here stops (kiosk sockets are told to reconnect), then the
    /// sessions nobody live owns are taken back.
    pub async fn fence(&self) {
        let devices: Vec<_> = self.inner.devices.iter().map(|e| e.key().clone()).collect();
        for code in devices {
            if let Some((_, (_, a, _))) = self.inner.devices.remove(&code) {
                self.retire(a, close::GOING_AWAY).await;
            }
        }
        tracing::warn!("lease lost: every device actor of this node stopped");
    }

    /// Re-attaches every session the database says is running (after a restart). With
    /// several nodes, only those whose device no live node owns (claimed here).
    pub async fn recover(&self) -> Result<usize, CoordError> {
        let active = self.inner.store.active_sessions().await?;
        let mut n = 0;
        let mut failed = 0;
        for rec in active {
            if self.inner.devices.contains_key(&rec.device_code) {
                continue;
            }
            let code = rec.device_code.clone();
            match self.recover_one(rec).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) if self.inner.placement.get().is_some() => {
                    failed += 1;
                    tracing::warn!(device = %code, error = %e, "taking over a session failed");
                }
                Err(e) => return Err(e),
            }
        }
        if n > 0 {
            tracing::info!(sessions = n, "recovered running sessions");
        }
        if failed > 0 {
            // The caller tries again (the cluster's next check, or a restart).
            return Err(CoordError::Unavailable(format!(
                "{failed} running sessions could not be taken over"
            )));
        }
        Ok(n)
    }

    /// Re-attaches one running session to its device's actor here, unless another live
    /// node owns the device (several nodes). Whether it did.
    async fn recover_one(&self, rec: SessionRecord) -> Result<bool, CoordError> {
        if let Some(p) = self.inner.placement.get()
            && p.claim(&rec.device_code).await.map_err(placement_err)? != Owner::Here
        {
            return Ok(false);
        }
        let dev = self
            .inner
            .store
            .device_by_code(&rec.device_code)
            .await?
            .ok_or(CoordError::NoSuchDevice)?;
        let balance = self.inner.store.user_balance(rec.user_id).await?;
        if let Some(device) = self.inner.devices.get(&dev.code).map(|e| e.1.clone())
            && device.is_alive()
        {
            device
                .ask(Recover { rec, balance })
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await
                .map_err(unavailable)?;
            return Ok(true);
        }
        // Spawned with the session attached in its start, so no kiosk ever sees the
        // device without it (its first snapshot is `busy` with the session).
        let mut rec = rec;
        rec.device_code = dev.code.clone();
        let code = dev.code.clone();
        let device = self.spawn_device(dev, false, Some((rec, balance)));
        device.wait_for_startup().await;
        if !device.is_alive() {
            return Err(CoordError::Unavailable(format!(
                "device {code} did not start"
            )));
        }
        Ok(true)
    }

    /// The operator changed a device's registration: the live actor picks it up.
    pub async fn device_updated(&self, rec: DeviceRecord) {
        if let Some(a) = self.inner.devices.get(&rec.code).map(|a| a.1.clone()) {
            let _ = a.tell(Reload(rec)).await;
            return;
        }
        self.tell_owner(&rec.code, DeviceOp::Reload).await;
    }

    /// Sends a fire-and-forget device operation to the device's live owner elsewhere.
    async fn tell_owner(&self, code: &str, op: DeviceOp) {
        let Some(p) = self.inner.placement.get() else {
            return;
        };
        match p.owner(code).await {
            Ok(Some(node)) if node != p.node() => {
                let req = Request::Device {
                    code: code.to_string(),
                    op,
                };
                if let Err(e) = p.forward(&node, req).await {
                    tracing::warn!(device = %code, node = %node, error = %e, "forwarding to the owner failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(device = %code, error = %e, "looking up the owner failed"),
        }
    }

    /// The kiosk's `check`.
    pub async fn check(&self, code: &str) -> Result<CheckView, CoordError> {
        match self.on_device(code, DeviceOp::Check).await? {
            Reply::Check(Ok(v)) => Ok(v),
            Reply::Check(Err(e)) => Err(CoordError::Store(StoreError::other(format!(
                "device status: {e}"
            )))),
            r => Err(unexpected(r)),
        }
    }

    /// A sign of life from a kiosk outside a session call (a keepalive with a dead token,
    /// dialect B's `clientStatus`): refreshes the device and its running session.
    pub async fn heard(&self, code: &str) -> Result<(), CoordError> {
        let at = self.inner.clock.now_ms();
        self.on_device(code, DeviceOp::Heard { at }).await.map(drop)
    }

    /// Starts (or finds, for the same user) a session on a device.
    pub async fn start_session(
        &self,
        code: &str,
        user: UserRef,
    ) -> Result<Result<StartedView, StartRefusal>, CoordError> {
        match self
            .on_device(code, DeviceOp::StartSession { user })
            .await?
        {
            Reply::Started(r) => Ok(r),
            r => Err(unexpected(r)),
        }
    }

    fn session_by_token(&self, token: &str) -> Option<ActorRef<SessionActor>> {
        self.inner.sessions.get(token).map(|a| a.clone())
    }

    fn session_of_user(&self, user_id: i64) -> Option<ActorRef<SessionActor>> {
        let token = self.inner.by_user.get(&user_id)?.clone();
        self.session_by_token(&token)
    }

    /// The kiosk's keepalive. `Ok(None)`: the token is dead (ended or unknown).
    pub async fn keepalive(
        &self,
        token: &str,
        device_code: &str,
    ) -> Result<Option<SessionView>, CoordError> {
        let op = SessionOp::Keepalive {
            token: token.to_string(),
            device_code: device_code.to_string(),
        };
        match self.on_session(op).await? {
            Reply::Session(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// Ends the session holding `token`. `Ok(None)`: it was not running.
    pub async fn end_by_token(
        &self,
        token: &str,
        reason: EndReason,
    ) -> Result<Option<EndedView>, CoordError> {
        let op = SessionOp::EndByToken {
            token: token.to_string(),
            reason,
        };
        match self.on_session(op).await? {
            Reply::Ended(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// Ends the user's running session. `Ok(None)`: none was running.
    pub async fn end_for_user(
        &self,
        user_id: i64,
        reason: EndReason,
    ) -> Result<Option<EndedView>, CoordError> {
        match self
            .on_session(SessionOp::EndForUser { user_id, reason })
            .await?
        {
            Reply::Ended(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// The user's running session, if any.
    pub async fn user_session(&self, user_id: i64) -> Result<Option<SessionView>, CoordError> {
        match self.on_session(SessionOp::View { user_id }).await? {
            Reply::Session(v) => Ok(v),
            r => Err(unexpected(r)),
        }
    }

    /// Tells a running session that the user's balance changed.
    pub async fn balance_changed(&self, user_id: i64, balance: i64) {
        if let Err(e) = self
            .on_session(SessionOp::BalanceChanged { user_id, balance })
            .await
        {
            tracing::warn!(user = user_id, error = %e, "telling the session of a balance change failed");
        }
    }

    /// Every running session (on every node).
    pub async fn sessions(&self) -> Vec<SessionView> {
        let mut out = self.local_sessions().await;
        for node in self.peers().await {
            match self.forward(&node, Request::Sessions).await {
                Ok(Reply::Sessions(v)) => out.extend(v),
                Ok(r) => tracing::warn!(node = %node, reply = ?r, "unexpected reply to sessions"),
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "listing a node's sessions failed")
                }
            }
        }
        out.sort_by_key(|v| v.id);
        out
    }

    async fn peers(&self) -> Vec<String> {
        let Some(p) = self.inner.placement.get() else {
            return Vec::new();
        };
        p.peers().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "listing the other nodes failed");
            Vec::new()
        })
    }

    async fn local_sessions(&self) -> Vec<SessionView> {
        let actors: Vec<_> = self
            .inner
            .sessions
            .iter()
            .map(|e| e.value().clone())
            .collect();
        let mut out = Vec::with_capacity(actors.len());
        for a in actors {
            if let Ok(v) = a.ask(View).reply_timeout(self.inner.cfg.ask_timeout).await {
                out.push(v);
            }
        }
        out
    }

    /// How many sessions run on this node now.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// The live view of a device.
    pub async fn device_info(&self, code: &str) -> Result<DeviceView, CoordError> {
        match self.on_device(code, DeviceOp::Info).await? {
            Reply::Info(Ok(v)) => Ok(v),
            Reply::Info(Err(e)) => Err(CoordError::Unavailable(e.to_string())),
            r => Err(unexpected(r)),
        }
    }

    /// The live views of every device whose actor runs (on any node), by code: no
    /// spawning, for listings of many devices.
    pub async fn live_devices(&self) -> HashMap<String, DeviceView> {
        let mut out: HashMap<String, DeviceView> = self
            .local_devices()
            .await
            .into_iter()
            .map(|v| (v.code.clone(), v))
            .collect();
        for node in self.peers().await {
            match self.forward(&node, Request::LiveDevices).await {
                Ok(Reply::Devices(v)) => out.extend(v.into_iter().map(|v| (v.code.clone(), v))),
                Ok(r) => {
                    tracing::warn!(node = %node, reply = ?r, "unexpected reply to live devices")
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "listing a node's devices failed")
                }
            }
        }
        out
    }

    async fn local_devices(&self) -> Vec<DeviceView> {
        let actors: Vec<_> = self
            .inner
            .devices
            .iter()
            .map(|e| e.value().1.clone())
            .collect();
        let mut out = Vec::with_capacity(actors.len());
        for a in actors {
            if let Ok(v) = a.ask(Info).reply_timeout(self.inner.cfg.ask_timeout).await {
                out.push(v);
            }
        }
        out
    }

    /// Asks a device to do something for an operator.
    pub async fn operate(
        &self,
        code: &str,
        cmd: OperatorCommand,
    ) -> Result<Result<Option<EndedView>, DeviceRefusal>, CoordError> {
        match self.on_device(code, DeviceOp::Operate { cmd }).await? {
            Reply::Operated(r) => Ok(r),
            r => Err(unexpected(r)),
        }
    }

    /// Asks a device for something that replies `Result<T, DeviceRefusal>` (commands,
    /// maintainer log-in and log-out, the game-update flag), wherever it lives.
    pub async fn ask_device<M: DeviceAsk>(
        &self,
        code: &str,
        msg: M,
    ) -> Result<Result<M::Out, DeviceRefusal>, CoordError> {
        let r = self.on_device(code, msg.op()).await?;
        M::out(r)
    }

    /// Sends a command to every device: stored once (one broadcast row, whatever the
    /// number of devices), then pushed by every live device actor (on every node) as
    /// that device's own copy, pending until its kiosk acknowledges it; devices not live
    /// now get it when their actor next starts. Returns how many live devices it was
    /// pushed to.
    pub async fn broadcast(&self, name: &str, text: Option<&str>) -> Result<usize, CoordError> {
        let id = self.store_broadcast(name, text).await?;
        let mut n = self.broadcast_local(id, name.to_string(), text.map(str::to_string));
        for node in self.peers().await {
            let req = Request::Broadcast {
                name: name.to_string(),
                text: text.map(str::to_string),
                id: Some(id),
            };
            match self.forward(&node, req).await {
                Ok(Reply::Count(c)) => n += c,
                Ok(r) => {
                    tracing::warn!(node = %node, reply = ?r, "unexpected reply to a broadcast")
                }
                Err(e) => tracing::warn!(node = %node, error = %e, "broadcasting on a node failed"),
            }
        }
        Ok(n)
    }

    async fn store_broadcast(&self, name: &str, text: Option<&str>) -> Result<i64, CoordError> {
        let now = self.inner.clock.now_ms();
        Ok(self.inner.store.add_broadcast(name, text, now).await?)
    }

    /// Puts a stored broadcast's copy into the stream of every device live here, from
    /// this loop: no message per device, no storage on the way. Each copy is pushed at
    /// once to a connected kiosk and stays pending until acknowledged (or
    /// `broadcast_ttl_ms`); its wire id is derived from (broadcast, device).
    fn broadcast_local(&self, id: i64, name: String, text: Option<String>) -> usize {
        let expires_at = self
            .inner
            .clock
            .now_ms()
            .saturating_add(self.inner.cfg.broadcast_ttl_ms);
        // Serialised once: each copy adds its own id and seq.
        let broadcast = Broadcast::fanning_out(name, text);
        // In device order: the kiosks' acks then come back roughly in that order, and
        // storage records them in runs of neighbouring rows rather than all over its
        // index (BENCHMARKS.md, durable broadcast).
        let mut live: Vec<(i64, Arc<SharedStream>)> = self
            .inner
            .devices
            .iter()
            .map(|e| (e.value().0, e.value().2.clone()))
            .collect();
        live.sort_unstable_by_key(|(device_id, _)| *device_id);
        let mut n = 0;
        for (device_id, stream) in &live {
            let Some(copy) = crate::ports::broadcast_copy_id(id, *device_id) else {
                tracing::warn!(
                    device = device_id,
                    broadcast = id,
                    "broadcast or device id out of the copy-id range"
                );
                continue;
            };
            stream.lock().deliver(&broadcast, copy, expires_at);
            n += 1;
        }
        // Connections that wrote their copy read again once every copy is taken (or
        // after the fan-out's patience).
        broadcast.fanned_out();
        metrics::counter!(catalog::COMMANDS_QUEUED).increment(n as u64);
        n
    }

    /// A postpaid order of `code`'s was paid: its kiosk is told (when its actor is live,
    /// here or on another node).
    pub fn order_paid(&self, code: &str, order_id: &str) {
        let notice = OrderPaidNotice {
            order_id: order_id.to_string(),
        };
        if let Some(d) = self.inner.devices.get(code).map(|e| e.value().1.clone()) {
            let _ = d.tell(notice).try_send();
        } else if self.inner.placement.get().is_some() {
            let me = self.clone();
            let code = code.to_string();
            tokio::spawn(async move {
                me.tell_owner(
                    &code,
                    DeviceOp::OrderPaid {
                        order_id: notice.order_id,
                    },
                )
                .await;
            });
        }
    }

    /// Live actors and their mailboxes, for the metric sampler.
    pub fn actor_stats(&self) -> ActorStats {
        let mut st = ActorStats::default();
        for e in self.inner.devices.iter() {
            st.devices.add(e.value().1.mailbox_sender());
        }
        for e in self.inner.sessions.iter() {
            st.sessions.add(e.value().mailbox_sender());
        }
        st
    }

    /// Test hook: a panic in a handler of the device's live actor. Whether one was live.
    #[cfg(any(test, feature = "test-hooks"))]
    pub async fn crash_device(&self, code: &str) -> bool {
        let a = self.inner.devices.get(code).map(|e| e.1.clone());
        match a {
            Some(a) => a.tell(crate::device::Crash).await.is_ok(),
            None => false,
        }
    }

    /// Test hook: a panic in a handler of the actor of the session holding `token`.
    #[cfg(any(test, feature = "test-hooks"))]
    pub async fn crash_session(&self, token: &str) -> bool {
        match self.session_by_token(token) {
            Some(a) => a.tell(crate::device::Crash).await.is_ok(),
            None => false,
        }
    }

    /// Test hook: kills the device's live actor outright (no restart in place), as a
    /// panic beyond the restart limit would stop it.
    #[cfg(any(test, feature = "test-hooks"))]
    pub async fn kill_device(&self, code: &str) -> bool {
        let a = self.inner.devices.get(code).map(|e| e.1.clone());
        match a {
            Some(a) => {
                a.kill();
                a.wait_for_shutdown().await;
                true
            }
            None => false,
        }
    }

    /// Test hook: the ids of the device's live actor and of its session's (by token).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn actor_ids(&self, code: &str, token: &str) -> (Option<ActorId>, Option<ActorId>) {
        (
            self.inner.devices.get(code).map(|e| e.1.id()),
            self.session_by_token(token).map(|a| a.id()),
        )
    }

    /// Stops every actor (graceful shutdown). Sessions stay active in the database and
    /// are recovered by the next start.
    pub async fn shutdown(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let sessions: Vec<_> = self
            .inner
            .sessions
            .iter()
            .map(|e| e.value().clone())
            .collect();
        self.inner.sessions.clear();
        self.inner.by_user.clear();
        for s in sessions {
            let _ = s.stop_gracefully().await;
        }
        let devices: Vec<_> = self
            .inner
            .devices
            .iter()
            .map(|e| e.value().1.clone())
            .collect();
        self.inner.devices.clear();
        for d in devices {
            let _ = d.stop_gracefully().await;
        }
        // The background tasks: the heartbeat and ack writers write what they were given
        // and end, the idle sweeper is stopped; all are joined.
        let _ = self.inner.beats.send(Beat::Stop).await;
        let _ = self.inner.acks.send(Vec::new());
        let handles = match self.inner.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut t.0),
            Err(_) => Vec::new(),
        };
        for (i, h) in handles.into_iter().enumerate() {
            // The writers (first two) end by themselves; the sweeper is aborted.
            if i > 1 {
                h.abort();
            }
            let _ = h.await;
        }
    }

    /// How many of the coordinator's background tasks are still running (0 after
    /// `shutdown`).
    pub fn background_tasks(&self) -> usize {
        self.inner
            .tasks
            .lock()
            .map(|t| t.1.iter().filter(|h| !h.is_finished()).count())
            .unwrap_or(0)
    }
}

/// Counts of one kind of actor and the messages waiting for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Live actors.
    pub actors: usize,
    /// Messages waiting, summed over their (bounded) mailboxes.
    pub queued: usize,
    /// The deepest single mailbox.
    pub max_queued: usize,
}

impl MailboxStats {
    /// Counts one actor's mailbox.
    pub fn add<A: Actor>(&mut self, m: &kameo::mailbox::MailboxSender<A>) {
        self.actors += 1;
        if let (Some(max), Some(free)) = (m.max_capacity(), m.capacity()) {
            let depth = max.saturating_sub(free);
            self.queued += depth;
            self.max_queued = self.max_queued.max(depth);
        }
    }
}

/// Device and session actors of this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActorStats {
    /// Device actors.
    pub devices: MailboxStats,
    /// Session actors.
    pub sessions: MailboxStats,
}

/// How often an operation looks for a device's owner again when ownership moves.
const ROUTE_ATTEMPTS: usize = 3;

/// A device's actor had stopped before it took the message (nothing was done).
const NOT_RUNNING: &str = "the device's actor had stopped; retry";

/// At most this many restarts of one actor (in place after a panic, or revivals of a
/// device that died holding a session) within `RESTART_WINDOW_MS`; beyond that the
/// actor stops, and a device comes back on its next use.
pub(crate) const RESTART_LIMIT: u8 = 3;
/// See `RESTART_LIMIT`.
pub(crate) const RESTART_WINDOW_MS: i64 = 60_000;

/// Restarts of one actor in the current window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Restarts {
    since: i64,
    count: u8,
}

impl Restarts {
    /// Counts one restart at `now`: whether it is within the limit.
    pub(crate) fn allow(&mut self, now: i64) -> bool {
        if self.count == 0 || now - self.since >= RESTART_WINDOW_MS {
            self.since = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= RESTART_LIMIT
    }
}

/// Passivation: every so often each live device actor is asked whether it has been
/// idle long enough to stop (it decides; see `device::IdleCheck`). Holds the coordinator
/// weakly, so it ends with it.
async fn idle_sweeper(inner: std::sync::Weak<Inner>, idle: Duration) {
    let every = (idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { break };
        if inner.closing() {
            break;
        }
        let live: Vec<ActorRef<DeviceActor>> =
            inner.devices.iter().map(|e| e.value().1.clone()).collect();
        drop(inner);
        for (i, a) in live.into_iter().enumerate() {
            let _ = a.tell(crate::device::IdleCheck).try_send();
            if i % 1024 == 1023 {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Where a device's actor is.
enum Route {
    /// On this node.
    Here(ActorRef<DeviceActor>),
    /// On another node.
    There(String),
}

fn moving() -> CoordError {
    CoordError::Unavailable("the device's owner kept changing; retry".into())
}

fn placement_err(e: PlacementError) -> CoordError {
    CoordError::Unavailable(e.0)
}

fn unexpected(r: Reply) -> CoordError {
    CoordError::Unavailable(
        format!("unexpected reply: {r:?}")
            .chars()
            .take(200)
            .collect(),
    )
}

/// The reply to a session operation when no such session runs.
fn no_session(op: &SessionOp) -> Reply {
    match op {
        SessionOp::Keepalive { .. } | SessionOp::View { .. } => Reply::Session(None),
        SessionOp::EndByToken { .. } | SessionOp::EndForUser { .. } => Reply::Ended(None),
        SessionOp::BalanceChanged { .. } => Reply::Done(Ok(())),
    }
}

/// A device's answer, with its refusal kept apart from delivery failures.
fn refused<T, M, E: std::fmt::Debug>(
    r: Result<T, SendError<M, E>>,
) -> Result<Result<T, E>, CoordError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(SendError::HandlerError(e)) => Ok(Err(e)),
        Err(SendError::ActorNotRunning(_)) => Err(CoordError::Unavailable(NOT_RUNNING.into())),
        Err(e) => Err(unavailable(e)),
    }
}

/// A device message `ask_device` can carry to the device's node.
pub trait DeviceAsk {
    /// What it answers.
    type Out;
    /// As it travels.
    fn op(self) -> DeviceOp;
    /// Its answer out of the reply.
    fn out(r: Reply) -> Result<Result<Self::Out, DeviceRefusal>, CoordError>;
}

/// `DeviceAsk` for a message: its reply variant and how it travels.
macro_rules! device_ask {
    ($msg:ty, $out:ty, $variant:ident, |$m:ident| $op:expr) => {
        impl DeviceAsk for $msg {
            type Out = $out;
            fn op(self) -> DeviceOp {
                let $m = self;
                $op
            }
            fn out(r: Reply) -> Result<Result<$out, DeviceRefusal>, CoordError> {
                match r {
                    Reply::$variant(v) => Ok(v),
                    r => Err(unexpected(r)),
                }
            }
        }
    };
}

device_ask!(SendCommand, (i64, bool), Queued, |m| {
    DeviceOp::SendCommand {
        name: m.name,
        text: m.text,
    }
});
device_ask!(MaintainLogin, (), Done, |m| DeviceOp::MaintainLogin {
    username: m.username
});
device_ask!(MaintainLogout, (), Done, |m| DeviceOp::MaintainLogout {
    username: m.username
});
device_ask!(GameUpdate, bool, Flag, |m| DeviceOp::GameUpdate {
    set: m.0
});

fn session_reply<T, M>(r: Result<T, SendError<M, SessionError>>) -> Result<Option<T>, CoordError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(SendError::HandlerError(SessionError::Gone))
        | Err(SendError::ActorNotRunning(_))
        | Err(SendError::ActorStopped) => Ok(None),
        Err(SendError::HandlerError(SessionError::Store(e))) => Err(CoordError::Store(e)),
        Err(e) => Err(unavailable(e)),
    }
}

/// How long the ack writer gathers acks after the first of a batch: an ack is durable
/// at most this much later.
const ACK_GATHER: Duration = Duration::from_millis(20);

/// Writes command acknowledgements: each write takes everything that arrived while the
/// previous one ran and within [`ACK_GATHER`] of its batch's first ack, so a broadcast's
/// 19,000 acks are a few transactions, not 19,000 (and no device actor waits for the
/// database to take its kiosk's ack). An ack lost to a crash before its write only means
/// the command is sent again after the restart; the kiosk deduplicates on its id (WS.md
/// §6).
async fn ack_writer(
    store: Arc<dyn Store>,
    clock: Clock,
    mut rx: mpsc::UnboundedReceiver<Vec<i64>>,
) {
    // An empty batch is the coordinator's stop: write what came before it and end.
    let mut stop = false;
    while let Some(mut ids) = rx.recv().await {
        stop |= ids.is_empty();
        // Gather for a moment before writing: a broadcast's acks arrive over hundreds of
        // milliseconds, and written as they came they were many small batches, each
        // a round trip (or several) to SQLite's worker thread and a statement of a
        // size not seen before (BENCHMARKS.md, durable broadcast).
        let until = tokio::time::Instant::now() + ACK_GATHER;
        while !stop {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(more)) => {
                    stop |= more.is_empty();
                    ids.extend(more);
                }
                Ok(None) => stop = true,
                Err(_) => break,
            }
        }
        if ids.is_empty() {
            break;
        }
        if let Err(e) = store.ack_commands(&ids, clock.now_ms()).await {
            metrics::counter!(catalog::STORE_ERRORS, "op" => "ack_commands").increment(1);
            tracing::warn!(error = %e, "recording command acks failed");
        }
        if stop {
            break;
        }
    }
}

/// Writes last-heard times in batches: at most one row update per device and session per
/// flush, so polling kiosks cost no database write per request.
async fn heartbeat_writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Beat>, every: Duration) {
    let mut devices: HashMap<i64, i64> = HashMap::new();
    let mut sessions: HashMap<i64, i64> = HashMap::new();
    loop {
        let first = rx.recv().await;
        let Some(first) = first else { break };
        if matches!(first, Beat::Stop) {
            break;
        }
        let mut stop = false;
        let deadline = tokio::time::Instant::now() + every;
        let mut add = |b: Beat| match b {
            Beat::Device(id, at) => {
                let e = devices.entry(id).or_insert(at);
                *e = (*e).max(at);
            }
            Beat::Session(id, at) => {
                let e = sessions.entry(id).or_insert(at);
                *e = (*e).max(at);
            }
            Beat::Stop => {}
        };
        add(first);
        loop {
            tokio::select! {
                b = rx.recv() => match b {
                    Some(Beat::Stop) | None => { stop = true; break }
                    Some(b) => add(b),
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let heard = |(id, at)| LastHeard { id, at };
        let d: Vec<LastHeard> = devices.drain().map(heard).collect();
        let s: Vec<LastHeard> = sessions.drain().map(heard).collect();
        let n = (d.len() + s.len()) as u64;
        if let Err(e) = store.record_heartbeats(&d, &s).await {
            metrics::counter!(catalog::STORE_ERRORS, "op" => "record_heartbeats").increment(1);
            tracing::warn!(error = %e, "writing heartbeats failed");
        } else {
            metrics::counter!(catalog::HEARTBEATS_FLUSHED).increment(n);
        }
        if stop {
            break;
        }
    }
}
