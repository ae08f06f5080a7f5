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
    Check, CheckView, DeviceActor, DeviceArgs, DeviceRefusal, DeviceView, Info, Operate,
    OperatorCommand, Recover, Reload, StartRefusal, StartSession, StartedView,
};
use crate::events::Events;
use crate::ports::{DeviceRecord, Store, StoreError, UserRef};
use crate::session::{
    BalanceChanged, End, EndedView, Keepalive, SessionActor, SessionError, SessionView, View,
};

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
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Beat {
    Device(i64, i64),
    Session(i64, i64),
}

/// Shared by the coordinator and its actors.
pub struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Clock,
    pub(crate) cfg: CoordinatorConfig,
    pub(crate) events: Events,
    /// Live device actors by code, with the device's id.
    devices: DashMap<String, (i64, ActorRef<DeviceActor>)>,
    sessions: DashMap<String, ActorRef<SessionActor>>,
    by_user: DashMap<i64, String>,
    beats: mpsc::Sender<Beat>,
}

impl Inner {
    pub(crate) fn remember_session(&self, token: &str, user_id: i64, a: ActorRef<SessionActor>) {
        self.sessions.insert(token.to_string(), a);
        self.by_user.insert(user_id, token.to_string());
    }

    pub(crate) fn forget_session(&self, token: &str, user_id: i64) {
        self.sessions.remove(token);
        self.by_user.remove_if(&user_id, |_, t| t == token);
    }

    pub(crate) fn user_has_session(&self, user_id: i64) -> bool {
        self.by_user.contains_key(&user_id)
    }

    pub(crate) fn beat_device(&self, id: i64, at: i64) {
        let _ = self.beats.try_send(Beat::Device(id, at));
    }

    pub(crate) fn beat_session(&self, id: i64, at: i64) {
        let _ = self.beats.try_send(Beat::Session(id, at));
    }
}

/// A failure of a coordinator operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// No such device.
    #[error("no such device")]
    NoSuchDevice,
    /// Storage failed.
    #[error("storage failed: {0}")]
    Store(String),
    /// An actor did not answer in time or died.
    #[error("actor unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for CoordError {
    fn from(e: StoreError) -> Self {
        CoordError::Store(e.0)
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
        });
        tokio::spawn(heartbeat_writer(store, rx, flush));
        Self { inner }
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    #[cfg(test)]
    pub(crate) fn inner_for_tests(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// The billing settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.cfg
    }

    /// Finds or spawns the actor of a device (by normalised code).
    pub async fn device(&self, code: &str) -> Result<ActorRef<DeviceActor>, CoordError> {
        if let Some(a) = self.inner.devices.get(code) {
            return Ok(a.1.clone());
        }
        let rec = self
            .inner
            .store
            .device_by_code(code)
            .await?
            .ok_or(CoordError::NoSuchDevice)?;
        Ok(self.spawn_device(rec))
    }

    fn spawn_device(&self, rec: DeviceRecord) -> ActorRef<DeviceActor> {
        let inner = self.inner.clone();
        let id = rec.id;
        self.inner
            .devices
            .entry(rec.code.clone())
            .or_insert_with(|| (id, DeviceActor::spawn(DeviceArgs { rec, inner })))
            .1
            .clone()
    }

    /// The operator changed a device's registration: the live actor picks it up.
    pub async fn device_updated(&self, rec: DeviceRecord) {
        if let Some(a) = self.inner.devices.get(&rec.code).map(|a| a.1.clone()) {
            let _ = a.tell(Reload(rec)).await;
        }
    }

    /// Re-attaches every session the database says is running (after a restart).
    pub async fn recover(&self) -> Result<usize, CoordError> {
        let active = self.inner.store.active_sessions().await?;
        let n = active.len();
        for rec in active {
            let device = self.device(&rec.device_code).await?;
            let balance = self.inner.store.user_balance(rec.user_id).await?;
            device
                .ask(Recover { rec, balance })
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await
                .map_err(unavailable)?;
        }
        if n > 0 {
            tracing::info!(sessions = n, "recovered running sessions");
        }
        Ok(n)
    }

    /// The kiosk's `check`.
    pub async fn check(&self, code: &str) -> Result<CheckView, CoordError> {
        let d = self.device(code).await?;
        match d.ask(Check).reply_timeout(self.inner.cfg.ask_timeout).await {
            Ok(v) => Ok(v),
            Err(SendError::HandlerError(DeviceRefusal::Internal)) => {
                Err(CoordError::Store("device status".into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A sign of life from a kiosk outside a session call (a keepalive with a dead token,
    /// dialect B's `clientStatus`): refreshes the device and its running session.
    pub async fn heard(&self, code: &str) -> Result<(), CoordError> {
        let d = self.device(code).await?;
        let _ = d
            .tell(crate::device::KioskHeard(self.inner.clock.now_ms()))
            .try_send();
        Ok(())
    }

    /// Starts (or finds, for the same user) a session on a device.
    pub async fn start_session(
        &self,
        code: &str,
        user: UserRef,
    ) -> Result<Result<StartedView, StartRefusal>, CoordError> {
        let d = self.device(code).await?;
        match d
            .ask(StartSession { user })
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await
        {
            Ok(v) => Ok(Ok(v)),
            Err(SendError::HandlerError(r)) => Ok(Err(r)),
            Err(e) => Err(unavailable(e)),
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
        let Some(s) = self.session_by_token(token) else {
            return Ok(None);
        };
        let r = s
            .ask(Keepalive {
                device_code: device_code.to_string(),
            })
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await;
        session_reply(r)
    }

    /// Ends the session holding `token`. `Ok(None)`: it was not running.
    pub async fn end_by_token(
        &self,
        token: &str,
        reason: EndReason,
    ) -> Result<Option<EndedView>, CoordError> {
        let Some(s) = self.session_by_token(token) else {
            return Ok(None);
        };
        session_reply(
            s.ask(End { reason })
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// Ends the user's running session. `Ok(None)`: none was running.
    pub async fn end_for_user(
        &self,
        user_id: i64,
        reason: EndReason,
    ) -> Result<Option<EndedView>, CoordError> {
        let Some(s) = self.session_of_user(user_id) else {
            return Ok(None);
        };
        session_reply(
            s.ask(End { reason })
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// The user's running session, if any.
    pub async fn user_session(&self, user_id: i64) -> Result<Option<SessionView>, CoordError> {
        let Some(s) = self.session_of_user(user_id) else {
            return Ok(None);
        };
        session_reply(s.ask(View).reply_timeout(self.inner.cfg.ask_timeout).await)
    }

    /// Tells a running session that the user's balance changed.
    pub async fn balance_changed(&self, user_id: i64, balance: i64) {
        if let Some(s) = self.session_of_user(user_id) {
            let _ = s.tell(BalanceChanged(balance)).await;
        }
    }

    /// Every running session.
    pub async fn sessions(&self) -> Vec<SessionView> {
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
        out.sort_by_key(|v| v.id);
        out
    }

    /// How many sessions run now.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// The live view of a device.
    pub async fn device_info(&self, code: &str) -> Result<DeviceView, CoordError> {
        let d = self.device(code).await?;
        d.ask(Info)
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await
            .map_err(unavailable)
    }

    /// The live view of a device whose actor is running (no spawning).
    pub async fn live_device_info(&self, code: &str) -> Option<DeviceView> {
        let d = self.inner.devices.get(code).map(|a| a.1.clone())?;
        d.ask(Info)
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await
            .ok()
    }

    /// Asks a device to do something for an operator.
    pub async fn operate(
        &self,
        code: &str,
        cmd: OperatorCommand,
    ) -> Result<Result<Option<EndedView>, DeviceRefusal>, CoordError> {
        let d = self.device(code).await?;
        match d
            .ask(Operate(cmd))
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await
        {
            Ok(v) => Ok(Ok(v)),
            Err(SendError::HandlerError(r)) => Ok(Err(r)),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Asks a device actor anything that replies `Result<T, DeviceRefusal>`.
    pub async fn ask_device<M, T>(
        &self,
        code: &str,
        msg: M,
    ) -> Result<Result<T, DeviceRefusal>, CoordError>
    where
        M: Send + 'static,
        T: Send + 'static,
        DeviceActor: kameo::message::Message<M, Reply = Result<T, DeviceRefusal>>,
    {
        let d = self.device(code).await?;
        match d.ask(msg).reply_timeout(self.inner.cfg.ask_timeout).await {
            Ok(v) => Ok(Ok(v)),
            Err(SendError::HandlerError(r)) => Ok(Err(r)),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Sends a command to every live device at once: stored for all in one transaction,
    /// then pushed by each device actor. Returns how many devices it was queued for.
    pub async fn broadcast(&self, name: &str, text: Option<&str>) -> Result<usize, CoordError> {
        let live: Vec<(i64, ActorRef<DeviceActor>)> = self
            .inner
            .devices
            .iter()
            .map(|e| e.value().clone())
            .collect();
        if live.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = live.iter().map(|(id, _)| *id).collect();
        let now = self.inner.clock.now_ms();
        let cmd_ids = self.inner.store.add_commands(&ids, name, text, now).await?;
        for ((_, actor), id) in live.iter().zip(cmd_ids) {
            let cmd = kioskd_protocol::ws::Command {
                id,
                name: name.to_string(),
                text: text.map(str::to_string),
            };
            let _ = actor.tell(crate::device::Deliver(cmd)).try_send();
        }
        metrics::counter!(catalog::COMMANDS_QUEUED).increment(live.len() as u64);
        Ok(live.len())
    }

    /// A postpaid order of `code`'s was paid: its kiosk is told (when its actor is live).
    pub fn order_paid(&self, code: &str, order_id: &str) {
        if let Some(d) = self.inner.devices.get(code).map(|e| e.value().1.clone()) {
            let _ = d
                .tell(crate::device::OrderPaidNotice {
                    order_id: order_id.to_string(),
                })
                .try_send();
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

    /// Stops every actor (graceful shutdown). Sessions stay active in the database and
    /// are recovered by the next start.
    pub async fn shutdown(&self) {
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

/// Writes last-heard times in batches: at most one row update per device and session per
/// flush, so polling kiosks cost no database write per request.
async fn heartbeat_writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Beat>, every: Duration) {
    let mut devices: HashMap<i64, i64> = HashMap::new();
    let mut sessions: HashMap<i64, i64> = HashMap::new();
    loop {
        let first = rx.recv().await;
        let Some(first) = first else { break };
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
        };
        add(first);
        loop {
            tokio::select! {
                b = rx.recv() => match b { Some(b) => add(b), None => break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let d: Vec<(i64, i64)> = devices.drain().collect();
        let s: Vec<(i64, i64)> = sessions.drain().collect();
        let n = (d.len() + s.len()) as u64;
        if let Err(e) = store.record_heartbeats(&d, &s).await {
            metrics::counter!(catalog::STORE_ERRORS, "op" => "record_heartbeats").increment(1);
            tracing::warn!(error = %e, "writing heartbeats failed");
        } else {
            metrics::counter!(catalog::HEARTBEATS_FLUSHED).increment(n);
        }
    }
}
