//! `DeviceActor`: one per active device. It owns the device's status (free, busy, lock,
//! maintain), its last sign of life, its game-update flag and the link to its running
//! session. Every way in (legacy HTTP polling, the phone, operators, later the kiosk's
//! WebSocket) reaches the device through these messages, so all of them see one state.

use std::sync::Arc;

use kameo::prelude::*;

use crate::billing::EndReason;
use crate::catalog;
use crate::coordinator::{Inner, Restarts};
use crate::events::{DeviceStatus, Event};
use crate::ports::{
    BillingMode, DeviceRecord, NewSession, PersistedStatus, SessionRecord, StartError, StoreError,
    UserRef,
};
use crate::session::{End, EndedView, Heard as SessionHeard, SessionActor, SessionArgs};
use crate::stream::{Conn, Resumed, SessionMark, SharedStream};
use kioskd_protocol::windows::{DeviceStatus as WireStatus, UpdateState};
use kioskd_protocol::ws::{
    Ack, ClientMessage, Command, DeviceInfo, DeviceStatusMsg, ErrorMsg, OrderPaid, ServerEvent,
    SessionEnded, SessionInfo, Snapshot, WS_PROTOCOL_VERSION,
};

/// The wire form of a status.
pub fn wire_status(s: DeviceStatus) -> WireStatus {
    match s {
        DeviceStatus::Free => WireStatus::Free,
        DeviceStatus::Busy => WireStatus::Busy,
        DeviceStatus::Lock => WireStatus::Lock,
        DeviceStatus::Maintain => WireStatus::Maintain,
    }
}

/// Why a lock is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// The last session ran out of balance: shown to the kiosk once (so it locks its
    /// screen), it does not keep the next customer away.
    Balance,
}

struct Running {
    id: i64,
    token: String,
    user_id: i64,
    actor: ActorRef<SessionActor>,
    /// Says "in a session" to the kiosk's connection task, which then passes every sign
    /// of life on to this actor (for the session).
    _mark: SessionMark,
}

/// The actor.
pub struct DeviceActor {
    rec: DeviceRecord,
    /// Boxed, like `session_info`: most devices have none, and the actor is held per
    /// device (BENCHMARKS.md, memory per kiosk).
    session: Option<Box<Running>>,
    transient_lock: Option<Lock>,
    inner: Arc<Inner>,
    shown: DeviceStatus,
    /// The kiosk's WebSocket stream (shared with the coordinator's directory, which
    /// pushes broadcasts into it) and the device's signs of life (shared with the kiosk's
    /// connection task, which records heartbeats and acks: [`KioskLink`]).
    stream: Arc<SharedStream>,
    /// The running session as last reported by its actor (for snapshots).
    session_info: Option<Box<SessionInfo>>,
    /// The unpaid postpaid order the last session left (screen E), for snapshots.
    unpaid_order: Option<String>,
    /// The last request that used the device (unix ms), for passivation.
    active_at: i64,
    /// Restarts after panics (and of its session's actor), against restart storms.
    restarts: Restarts,
}

/// Arguments to spawn a device actor.
pub struct DeviceArgs {
    pub(crate) rec: DeviceRecord,
    pub(crate) inner: Arc<Inner>,
    /// Taken over from another node (or its last actor died holding a session): pick up
    /// the device's running session from storage before handling any message.
    pub(crate) adopt: bool,
    /// The running session (row and the user's balance) the caller already holds:
    /// attached before any message (a dead node's session taken over).
    pub(crate) running: Option<Box<(SessionRecord, i64)>>,
    /// The device's stream, already in the directory (a broadcast may reach it before
    /// the actor has started).
    pub(crate) stream: Arc<SharedStream>,
}

impl Actor for DeviceActor {
    type Args = DeviceArgs;
    type Error = kameo::error::Infallible;

    fn name() -> &'static str {
        "Device"
    }

    async fn on_start(args: Self::Args, me: ActorRef<Self>) -> Result<Self, Self::Error> {
        let adopt = args.adopt;
        let since = args.inner.clock.now_ms() - args.inner.cfg.broadcast_ttl_ms;
        let pending = match args.inner.store.pending_commands(args.rec.id, since).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(device = %args.rec.code, error = %e, "loading pending commands failed");
                Vec::new()
            }
        };
        // Broadcast copies stay pending for `broadcast_ttl_ms` after they were sent.
        let ttl = args.inner.cfg.broadcast_ttl_ms;
        let expiries: Vec<(i64, i64)> = pending
            .iter()
            .filter(|c| c.id < 0)
            .map(|c| (c.id, c.created_at.saturating_add(ttl)))
            .collect();
        let pending = pending
            .into_iter()
            .map(|c| Command {
                id: c.id,
                name: c.name,
                text: c.text,
            })
            .collect();
        // Only postpaid sessions leave orders: prepaid devices skip the query.
        let unpaid_order = if args.rec.billing_mode == crate::ports::BillingMode::Postpaid {
            match args.inner.store.unpaid_order_of_device(args.rec.id).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(device = %args.rec.code, error = %e, "loading the unpaid order failed");
                    None
                }
            }
        } else {
            None
        };
        let now = args.inner.clock.now_ms();
        let mut d = DeviceActor {
            stream: {
                args.stream.lock().add_pending(pending, &expiries);
                args.stream.life().heard_by(args.rec.last_seen_at);
                args.stream
            },
            session_info: None,
            unpaid_order,
            rec: args.rec,
            session: None,
            transient_lock: None,
            inner: args.inner,
            shown: DeviceStatus::Free,
            active_at: now,
            restarts: Restarts::default(),
        };
        d.shown = d.status();
        metrics::gauge!(catalog::DEVICES, "status" => d.shown.as_str()).increment(1.0);
        let running = match args.running {
            Some(r) => Some(*r),
            None if adopt => Box::pin(running_session(&d.inner, &d.rec)).await,
            None => None,
        };
        if let Some((mut rec, balance)) = running {
            rec.device_code = d.rec.code.clone();
            Box::pin(d.attach(rec, balance, false, None, &me)).await;
        }
        Ok(d)
    }

    /// A handler panicked: the device is restarted in place from storage (its record and
    /// its running session), keeping its address, its directory entry and its kiosk's
    /// socket. Beyond the restart limit (or if storage fails) it stops; `on_stop` then
    /// clears its entry and a new actor picks the device up.
    async fn on_panic(
        &mut self,
        me: WeakActorRef<Self>,
        err: PanicError,
    ) -> Result<std::ops::ControlFlow<ActorStopReason>, Self::Error> {
        use std::ops::ControlFlow;
        let now = self.inner.clock.now_ms();
        metrics::counter!(catalog::ACTOR_RESTARTS, "kind" => "device").increment(1);
        if self.inner.closing() || !self.restarts.allow(now) {
            tracing::error!(device = %self.rec.code, error = %err, "device actor panicked: stopping it");
            return Ok(ControlFlow::Break(ActorStopReason::Panicked(err)));
        }
        tracing::warn!(device = %self.rec.code, error = %err, "device actor panicked: restarting it from storage");
        let Some(me) = me.upgrade() else {
            return Ok(ControlFlow::Break(ActorStopReason::Panicked(err)));
        };
        match Box::pin(self.restart_from_storage(&me)).await {
            Ok(()) => Ok(ControlFlow::Continue(())),
            Err(e) => {
                tracing::warn!(device = %self.rec.code, error = %e, "restarting the device from storage failed: stopping it");
                Ok(ControlFlow::Break(ActorStopReason::Panicked(err)))
            }
        }
    }

    /// The running session's actor died (not a normal stop): it is started again from
    /// storage, billing on from what the database holds.
    async fn on_link_died(
        &mut self,
        me: WeakActorRef<Self>,
        id: ActorId,
        reason: ActorStopReason,
    ) -> Result<std::ops::ControlFlow<ActorStopReason>, Self::Error> {
        use std::ops::ControlFlow;
        let ours = self.session.as_ref().is_some_and(|s| s.actor.id() == id);
        if !ours
            || matches!(
                reason,
                ActorStopReason::Normal | ActorStopReason::SupervisorRestart
            )
        {
            return Ok(ControlFlow::Continue(()));
        }
        metrics::counter!(catalog::ACTOR_RESTARTS, "kind" => "session").increment(1);
        let now = self.inner.clock.now_ms();
        let Some(me) = me.upgrade() else {
            return Ok(ControlFlow::Continue(()));
        };
        if self.inner.closing() || !self.restarts.allow(now) {
            tracing::error!(device = %self.rec.code, reason = ?reason, "the session's actor keeps dying: stopping the device");
            return Ok(ControlFlow::Break(ActorStopReason::LinkDied {
                id,
                reason: Box::new(reason),
            }));
        }
        tracing::warn!(device = %self.rec.code, reason = ?reason, "the session's actor died: restarting it from storage");
        // Forgotten first, so storage's running session gets a new actor (the dead one
        // may not have closed its mailbox yet).
        let run = self.session.take().expect("checked: ours");
        self.inner.session_stopped(&run.token, run.user_id, id);
        self.session_info = None;
        match Box::pin(self.restart_from_storage(&me)).await {
            Ok(()) => Ok(ControlFlow::Continue(())),
            Err(e) => {
                // Stopping with the session still ours: `on_stop` has it adopted anew.
                if self.session.is_none() {
                    self.session = Some(run);
                }
                tracing::warn!(device = %self.rec.code, error = %e, "restarting the session from storage failed: stopping the device");
                Ok(ControlFlow::Break(ActorStopReason::LinkDied {
                    id,
                    reason: Box::new(reason),
                }))
            }
        }
    }

    /// However the actor stops, its directory entry goes. One that dies (not a normal
    /// stop) holding a running session has it picked up by a new actor from storage.
    async fn on_stop(
        &mut self,
        me: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        metrics::gauge!(catalog::DEVICES, "status" => self.shown.as_str()).decrement(1.0);
        self.inner.device_stopped(&self.rec.code, me.id());
        if self.session.is_some() && !matches!(reason, ActorStopReason::Normal) {
            self.inner.device_died_with_session(&self.rec.code);
        }
        Ok(())
    }
}

/// The device's running session and its user's balance, from storage.
async fn load_running(
    inner: &Inner,
    rec: &DeviceRecord,
) -> Result<Option<(SessionRecord, i64)>, StoreError> {
    let found = inner
        .store
        .active_session(crate::ports::ActiveKey::Device(rec.id))
        .await?;
    let Some(mut s) = found else {
        return Ok(None);
    };
    let balance = inner.store.user_balance(s.user_id).await?;
    s.device_code = rec.code.clone();
    Ok(Some((s, balance)))
}

/// The device's running session and its user's balance, from storage (a device taken
/// over from another node).
async fn running_session(inner: &Inner, rec: &DeviceRecord) -> Option<(SessionRecord, i64)> {
    match load_running(inner, rec).await {
        Ok(Some((s, balance))) => {
            tracing::info!(device = %rec.code, session = s.id, "running session taken over");
            Some((s, balance))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(device = %rec.code, error = %e, "loading the running session failed");
            None
        }
    }
}

/// What a device looks like to adapters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceView {
    /// Device id.
    pub id: i64,
    /// Device code.
    pub code: String,
    /// Status.
    pub status: DeviceStatus,
    /// Heard from within the heartbeat timeout.
    pub online: bool,
    /// Last heard (unix ms).
    pub last_heard: Option<i64>,
    /// Running session: (id, token, user id).
    pub session: Option<(i64, String, i64)>,
    /// Maintainer logged in.
    pub maintainer: Option<String>,
    /// A game update is running.
    pub updating: bool,
}

/// Why a session could not start on this device.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum StartRefusal {
    /// Another user is on it.
    #[error("device used by another user")]
    DeviceTaken,
    /// The user plays elsewhere.
    #[error("user playing elsewhere")]
    UserBusyElsewhere,
    /// Offline, locked, in maintenance or updating.
    #[error("device not available")]
    DeviceUnavailable,
    /// Balance below one unit.
    #[error("balance too low")]
    BalanceTooLow,
    /// Disabled or deleted user.
    #[error("user not allowed")]
    UserNotAllowed,
    /// The user has a postpaid order to pay first.
    #[error("user has an unpaid order")]
    UnpaidOrder,
    /// Storage failed.
    #[error("internal error")]
    Internal,
}

/// Refusals of maintainer and operator requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum DeviceRefusal {
    /// Not heard from within the heartbeat timeout.
    #[error("设备不在线")]
    Offline,
    /// In session.
    #[error("设备正在使用中")]
    Busy,
    /// Not in maintenance by that maintainer.
    #[error("设备不在维护状态")]
    NotInMaintenance,
    /// Storage failed.
    #[error("内部错误")]
    Internal,
}

impl DeviceActor {
    fn online(&self, now: i64) -> bool {
        self.stream
            .life()
            .last_heard()
            .is_some_and(|h| now - h < self.inner.cfg.heartbeat_timeout_ms)
    }

    fn status(&self) -> DeviceStatus {
        if self.session.is_some() {
            DeviceStatus::Busy
        } else if self.rec.status == PersistedStatus::Maintain {
            DeviceStatus::Maintain
        } else if self.rec.status == PersistedStatus::OperatorLock
            || self.rec.updating
            || self.transient_lock.is_some()
        {
            DeviceStatus::Lock
        } else {
            DeviceStatus::Free
        }
    }

    /// Publishes a status change (event + gauge) if the status changed.
    fn changed(&mut self) {
        let now = self.status();
        if now != self.shown {
            metrics::gauge!(catalog::DEVICES, "status" => self.shown.as_str()).decrement(1.0);
            metrics::gauge!(catalog::DEVICES, "status" => now.as_str()).increment(1.0);
            self.shown = now;
            self.inner.events.publish(Event::DeviceStatus {
                device_code: self.rec.code.clone(),
                status: now,
            });
            self.stream
                .lock()
                .push(ServerEvent::DeviceStatus(DeviceStatusMsg {
                    device_code: self.rec.code.clone(),
                    status: wire_status(now),
                }));
        }
    }

    /// The running session is over: tell the kiosk, free (or lock) the device. Whichever
    /// comes first — the session's own notice or the reply to our `End` — does it.
    fn session_closed(
        &mut self,
        session_id: i64,
        reason: Option<EndReason>,
        cost: i64,
        order_id: Option<String>,
    ) {
        if self.session.as_ref().is_none_or(|s| s.id != session_id) {
            return;
        }
        self.session = None;
        self.session_info = None;
        if order_id.is_some() {
            self.unpaid_order = order_id.clone();
        }
        if let Some(reason) = reason {
            self.stream
                .lock()
                .push(ServerEvent::SessionEnded(SessionEnded {
                    session_id,
                    device_code: self.rec.code.clone(),
                    reason: reason.as_str().to_string(),
                    cost,
                    order_id: order_id.clone(),
                }));
        }
        if reason == Some(EndReason::BalanceExhausted) {
            self.transient_lock = Some(Lock::Balance);
        }
        self.changed();
    }

    fn snapshot(&self, epoch: String, seq: u64, pending: Vec<Command>) -> Snapshot {
        Snapshot {
            version: WS_PROTOCOL_VERSION,
            epoch,
            seq,
            server_time: self.inner.clock.now_ms(),
            device: Some(DeviceInfo {
                device_code: self.rec.code.clone(),
                status: wire_status(self.status()),
            }),
            session: self.session_info.as_deref().cloned(),
            pending_commands: pending,
            unpaid_order: self.unpaid_order.clone(),
        }
    }

    /// Queues a command for the kiosk (stored first, then pushed if connected).
    async fn queue_command(
        &mut self,
        name: &str,
        text: Option<String>,
    ) -> Result<(i64, bool), DeviceRefusal> {
        let now = self.inner.clock.now_ms();
        let id = self
            .inner
            .store
            .add_command(self.rec.id, name, text.as_deref(), now)
            .await
            .map_err(|e| {
                tracing::warn!(device = %self.rec.code, error = %e, "storing a command failed");
                DeviceRefusal::Internal
            })?;
        metrics::counter!(catalog::COMMANDS_QUEUED).increment(1);
        let mut stream = self.stream.lock();
        stream.command(Command {
            id,
            name: name.to_string(),
            text,
        });
        Ok((id, stream.connected()))
    }

    /// Records a sign of life; passes it on to the session at most once a second and to
    /// storage at most once per `CoordinatorConfig::heartbeat_store_ms`.
    /// `from_session`: the session told us (no need to tell it back).
    fn heard(&mut self, at: i64, from_session: bool) {
        self.active_at = self.active_at.max(at);
        let to = self
            .stream
            .life()
            .heard(at, self.inner.cfg.heartbeat_store_ms());
        if to.store {
            self.inner.beat_device(self.rec.id, at);
        }
        if to.session
            && !from_session
            && let Some(run) = &self.session
        {
            let _ = run.actor.tell(SessionHeard(at)).try_send();
        }
    }

    fn view(&self, now: i64) -> DeviceView {
        DeviceView {
            id: self.rec.id,
            code: self.rec.code.clone(),
            status: self.status(),
            online: self.online(now),
            last_heard: self.stream.life().last_heard(),
            session: self
                .session
                .as_ref()
                .map(|s| (s.id, s.token.clone(), s.user_id)),
            maintainer: if self.rec.status == PersistedStatus::Maintain {
                self.rec.maintainer.clone()
            } else {
                None
            },
            updating: self.rec.updating,
        }
    }

    fn touch(&mut self) {
        self.active_at = self.active_at.max(self.inner.clock.now_ms());
    }

    /// Reloads what storage holds about the device (its record, its running session) into
    /// this actor, after a panic or the death of its session's actor. A running session
    /// whose actor still lives is kept; one whose actor died is started again (billing
    /// from the database's state: units already debited are never debited again).
    async fn restart_from_storage(&mut self, me: &ActorRef<Self>) -> Result<(), StoreError> {
        let rec = self
            .inner
            .store
            .device_by_code(&self.rec.code)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.rec = rec;
        self.stream.life().heard_by(self.rec.last_seen_at);
        let running = load_running(&self.inner, &self.rec).await?;
        let alive = self
            .session
            .as_ref()
            .is_some_and(|run| run.actor.is_alive());
        match running {
            Some((s, _)) if alive && self.session.as_ref().is_some_and(|r| r.id == s.id) => {}
            // Still running in a live actor this one lost track of: taken back.
            Some((s, balance)) if !alive && self.inner.live_session(&s.token).is_some() => {
                let actor = self.inner.live_session(&s.token).expect("checked");
                self.session_info = Some(Box::new(crate::session::initial_info(
                    &s,
                    balance,
                    &self.inner.cfg,
                )));
                self.session = Some(Box::new(Running {
                    id: s.id,
                    token: s.token,
                    user_id: s.user_id,
                    actor,
                    _mark: SessionMark::new(&self.stream),
                }));
                self.transient_lock = None;
            }
            Some((s, balance)) => {
                if let Some(old) = self.session.take() {
                    self.inner.forget_session(&old.token, old.user_id);
                    let _ = old.actor.stop_gracefully().await;
                }
                tracing::info!(device = %self.rec.code, session = s.id, "running session restarted from storage");
                self.attach(s, balance, false, None, me).await;
            }
            // Ended in storage: the live actor tells us itself; a dead one cannot.
            None if alive => {}
            None => {
                if let Some(old) = self.session.as_ref().map(|r| r.id) {
                    self.session_closed(old, None, 0, None);
                }
            }
        }
        self.changed();
        Ok(())
    }

    async fn persist_status(
        &mut self,
        status: PersistedStatus,
        maintainer: Option<String>,
    ) -> Result<(), DeviceRefusal> {
        self.inner
            .store
            .set_device_status(self.rec.id, status, maintainer.as_deref())
            .await
            .map_err(|e| {
                tracing::warn!(device = %self.rec.code, error = %e, "persisting device status failed");
                DeviceRefusal::Internal
            })?;
        self.rec.status = status;
        self.rec.maintainer = maintainer;
        self.changed();
        Ok(())
    }

    /// Starts the session's actor, linked to this one (each learns of the other's death),
    /// and shows the session at once: the device's next snapshot carries it, before the
    /// session actor's first update.
    async fn attach(
        &mut self,
        rec: SessionRecord,
        balance: i64,
        fresh: bool,
        pricing: Option<crate::session::StartPricing>,
        me: &ActorRef<Self>,
    ) {
        let token = rec.token.clone();
        let (id, user_id) = (rec.id, rec.user_id);
        self.session_info = Some(Box::new(crate::session::initial_info(
            &rec,
            balance,
            &self.inner.cfg,
        )));
        let actor = SessionActor::spawn_link(
            me,
            SessionArgs {
                rec,
                balance,
                device: me.downgrade(),
                inner: self.inner.clone(),
                fresh,
                pricing,
                flat: self.rec.charge_mode,
            },
        )
        .await;
        self.inner.remember_session(&token, user_id, actor.clone());
        // Someone else sits down: the last session's order is the phone's business now.
        self.unpaid_order = None;
        self.session = Some(Box::new(Running {
            id,
            token,
            user_id,
            actor,
            _mark: SessionMark::new(&self.stream),
        }));
        self.transient_lock = None;
        self.changed();
    }

    /// Ends the running session (operator or maintenance) and waits for its settlement.
    async fn end_running(&mut self, reason: EndReason) -> Result<Option<EndedView>, DeviceRefusal> {
        let Some(run) = self.session.as_ref() else {
            return Ok(None);
        };
        let actor = run.actor.clone();
        let r = actor
            .ask(End { reason })
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await;
        match r {
            Ok(v) => {
                let unpaid = v.order_id.clone().filter(|_| v.cost > 0);
                self.session_closed(v.id, Some(v.reason), v.cost, unpaid);
                Ok(Some(v))
            }
            Err(SendError::HandlerError(crate::session::SessionError::Gone))
            | Err(SendError::ActorNotRunning(_))
            | Err(SendError::ActorStopped) => {
                self.session = None;
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(device = %self.rec.code, error = ?e, "ending the running session failed");
                Err(DeviceRefusal::Internal)
            }
        }
    }
}

/// The kiosk's `check`: a heartbeat that answers the device's status and token.
#[derive(Debug)]
pub struct Check;

/// The answer to `Check`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckView {
    /// Status to report.
    pub status: DeviceStatus,
    /// The running session's token.
    pub token: Option<String>,
}

impl Message<Check> for DeviceActor {
    type Reply = Result<CheckView, DeviceRefusal>;

    async fn handle(&mut self, _: Check, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let now = self.inner.clock.now_ms();
        self.heard(now, false);
        // Real kiosks never call a maintain logout: their next check ends maintenance.
        if self.rec.status == PersistedStatus::Maintain {
            self.persist_status(PersistedStatus::Free, None).await?;
        }
        let status = self.status();
        // The balance lock is shown once; the kiosk has now seen it.
        if self.transient_lock.take().is_some() {
            self.changed();
        }
        Ok(CheckView {
            status,
            token: self.session.as_ref().map(|s| s.token.clone()),
        })
    }
}

/// A sign of life relayed by the session (keepalive), or seen by an adapter.
#[derive(Debug)]
pub struct Heard(pub i64);

impl Message<Heard> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, Heard(at): Heard, _ctx: &mut Context<Self, Self::Reply>) {
        self.heard(at, true);
    }
}

/// A sign of life from the kiosk outside a session call (dialect B's `clientStatus`, a
/// keepalive with a dead token): refreshes the device and its running session.
#[derive(Debug)]
pub struct KioskHeard(pub i64);

impl Message<KioskHeard> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, KioskHeard(at): KioskHeard, _ctx: &mut Context<Self, Self::Reply>) {
        self.heard(at, false);
    }
}

/// Starts a session for a user (the phone scanned the QR code).
#[derive(Debug)]
pub struct StartSession {
    /// The signed-in, registered user.
    pub user: UserRef,
}

/// A started (or already running) session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartedView {
    /// Session id.
    pub session_id: i64,
    /// Token.
    pub token: String,
    /// False when the same user's session was already running (idempotent start).
    pub created: bool,
}

impl Message<StartSession> for DeviceActor {
    type Reply = Result<StartedView, StartRefusal>;

    async fn handle(
        &mut self,
        msg: StartSession,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch();
        let now = self.inner.clock.now_ms();
        if let Some(run) = &self.session {
            return if run.user_id == msg.user.id {
                Ok(StartedView {
                    session_id: run.id,
                    token: run.token.clone(),
                    created: false,
                })
            } else {
                Err(StartRefusal::DeviceTaken)
            };
        }
        if !self.online(now) || self.rec.status != PersistedStatus::Free || self.rec.updating {
            return Err(StartRefusal::DeviceUnavailable);
        }
        if self.inner.user_has_session(msg.user.id) {
            return Err(StartRefusal::UserBusyElsewhere);
        }
        // The first unit's price: the flat `charge_mode`, unless a rate plan, a member
        // group or a package prices it (issue 16).
        let pricing = crate::session::StartPricing::load(
            &self.inner,
            &self.rec,
            msg.user.id,
            now,
        )
        .await
        .map_err(|e| {
            metrics::counter!(catalog::STORE_ERRORS, "op" => "start_session").increment(1);
            tracing::warn!(device = %self.rec.code, error = %e, "loading a user's pricing failed");
            StartRefusal::Internal
        })?;
        let (charge_mode, first_debit) = match &pricing.first {
            Some(c) => (c.price, c.debit),
            None => (self.rec.charge_mode, self.rec.charge_mode),
        };
        // Postpaid sessions need no balance: the cost becomes an order at the end.
        if self.rec.billing_mode == BillingMode::Prepaid && msg.user.balance < first_debit {
            return Err(StartRefusal::BalanceTooLow);
        }
        let new = NewSession {
            token: crate::ids::new_token(),
            user_id: msg.user.id,
            device_id: self.rec.id,
            charge_mode,
            billing_mode: self.rec.billing_mode,
            started_at: now,
            first: pricing.first,
        };
        let started = self.inner.store.start_session(new).await.map_err(|e| match e {
            StartError::UserBusy => StartRefusal::UserBusyElsewhere,
            StartError::DeviceBusy => StartRefusal::DeviceTaken,
            StartError::InsufficientBalance => StartRefusal::BalanceTooLow,
            StartError::UserNotAllowed => StartRefusal::UserNotAllowed,
            StartError::UnpaidOrder => StartRefusal::UnpaidOrder,
            StartError::Store(e) => {
                metrics::counter!(catalog::STORE_ERRORS, "op" => "start_session").increment(1);
                tracing::warn!(device = %self.rec.code, error = %e, "starting a session failed");
                StartRefusal::Internal
            }
        })?;
        let mut rec = started.session;
        rec.openid = msg.user.openid.clone();
        rec.device_code = self.rec.code.clone();
        let view = StartedView {
            session_id: rec.id,
            token: rec.token.clone(),
            created: true,
        };
        self.attach(rec, started.balance, true, Some(pricing), ctx.actor_ref())
            .await;
        tracing::info!(device = %self.rec.code, session = view.session_id, user = msg.user.id, "session started");
        Ok(view)
    }
}

/// Re-attaches a session recovered from the database after a restart.
#[derive(Debug)]
pub struct Recover {
    /// The session row.
    pub rec: SessionRecord,
    /// The user's balance.
    pub balance: i64,
}

impl Message<Recover> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, msg: Recover, ctx: &mut Context<Self, Self::Reply>) {
        if self.session.is_none() {
            let mut rec = msg.rec;
            rec.device_code = self.rec.code.clone();
            self.attach(rec, msg.balance, false, None, ctx.actor_ref())
                .await;
        }
    }
}

/// The session told its device that it is over.
#[derive(Debug)]
pub struct SessionClosed {
    /// Which session.
    pub session_id: i64,
    /// Why (None: ended elsewhere).
    pub reason: Option<EndReason>,
    /// Final cost (fen).
    pub cost: i64,
    /// The unpaid postpaid order it left, if any.
    pub order_id: Option<String>,
}

impl Message<SessionClosed> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, msg: SessionClosed, _ctx: &mut Context<Self, Self::Reply>) {
        self.session_closed(msg.session_id, msg.reason, msg.cost, msg.order_id);
    }
}

/// The unpaid order of one of this device's sessions was paid: tell the kiosk.
#[derive(Debug)]
pub struct OrderPaidNotice {
    /// The order.
    pub order_id: String,
}

impl Message<OrderPaidNotice> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, msg: OrderPaidNotice, _ctx: &mut Context<Self, Self::Reply>) {
        if self.unpaid_order.as_deref() == Some(msg.order_id.as_str()) {
            self.unpaid_order = None;
        }
        self.stream.lock().push(ServerEvent::OrderPaid(OrderPaid {
            order_id: msg.order_id,
            device_code: self.rec.code.clone(),
        }));
    }
}

/// The session's state changed (and, optionally, an event for the kiosk).
#[derive(Debug)]
pub struct SessionUpdate {
    /// The session as it stands.
    pub info: SessionInfo,
    /// What to push.
    pub event: Option<ServerEvent>,
}

impl Message<SessionUpdate> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, msg: SessionUpdate, _ctx: &mut Context<Self, Self::Reply>) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.id == msg.info.session_id)
        {
            self.session_info = Some(Box::new(msg.info));
            if let Some(e) = msg.event {
                self.stream.lock().push(e);
            }
        }
    }
}

/// A kiosk's WebSocket connects (authenticated by the adapter).
#[derive(Debug)]
pub struct Attach {
    /// The connection.
    pub conn: Conn,
    /// From the kiosk's `hello`.
    pub resume_from: Option<u64>,
    /// From the kiosk's `hello`.
    pub epoch: Option<String>,
}

impl Message<Attach> for DeviceActor {
    type Reply = Result<Resumed, DeviceRefusal>;

    async fn handle(&mut self, msg: Attach, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let now = self.inner.clock.now_ms();
        self.heard(now, false);
        // A handle of its own, so the snapshot closure can read the rest of the actor.
        let shared = self.stream.clone();
        let mut stream = shared.lock();
        // A broadcast past its time is not sent again on this (re)connect.
        stream.expire(now);
        let r = stream.attach(
            msg.conn,
            msg.resume_from,
            msg.epoch.as_deref(),
            |e, s, p| self.snapshot(e, s, p),
        );
        Ok(r)
    }
}

/// The kiosk's WebSocket closed.
#[derive(Debug)]
pub struct Detach(pub u64);

impl Message<Detach> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, Detach(id): Detach, _ctx: &mut Context<Self, Self::Reply>) {
        self.touch();
        self.stream.lock().detach(id);
    }
}

/// A message from the kiosk's WebSocket `conn` (any frame is also a heartbeat; `msg` is
/// `None` for one that only says so). Sent with `tell`: the connection task goes on
/// reading, and an answer (an `error` frame) goes back on that connection, unsequenced,
/// through the stream (dropped when that connection is no longer the device's). A
/// broadcast brings 19,000 acks at once: an `ask` per ack was a reply channel and a
/// second wake-up of the connection task each (BENCHMARKS.md, durable broadcast).
#[derive(Debug)]
pub struct FromKiosk {
    /// The connection it came on.
    pub conn: u64,
    /// The message.
    pub msg: Option<ClientMessage>,
}

impl Message<FromKiosk> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, m: FromKiosk, _ctx: &mut Context<Self, Self::Reply>) {
        if let Some(answer) = self.on_kiosk_message(m.msg).await {
            self.stream.lock().answer(m.conn, answer);
        }
    }
}

/// Takes a kiosk's ack: the acknowledged commands leave the stream's pending list and
/// go to the ack writer. An ack for another epoch is answered `stale_epoch`.
fn ack(stream: &SharedStream, inner: &Inner, a: &Ack) -> Option<ServerEvent> {
    let done = {
        let mut s = stream.lock();
        if a.epoch.as_deref().is_some_and(|e| e != s.epoch()) {
            return Some(ErrorMsg::event(
                "stale_epoch",
                "ack for another epoch: resume with hello to get the current one",
            ));
        }
        s.ack(a.seq)
    };
    if !done.is_empty() {
        inner.acked(done);
    }
    None
}

/// A kiosk connection's way to its device. What needs nothing of the device's actor
/// while no session runs (a sign of life, a heartbeat, a status report, an ack) is taken
/// here, on the connection's task: the device's signs of life and its stream are shared
/// with the actor. At 19,000 kiosks a broadcast brings 19,000 acks at once, and a turn
/// of each device's actor was a mailbox slot, a task wake-up and a turn more per ack
/// (BENCHMARKS.md, durable broadcast). Everything else, and everything while a session
/// runs (the session hears of the kiosk through the actor), goes to the actor as
/// [`FromKiosk`].
pub struct KioskLink {
    actor: ActorRef<DeviceActor>,
    /// The device's id and stream, when the directory still had this actor's entry.
    shared: Option<(i64, Arc<SharedStream>)>,
    inner: Arc<Inner>,
}

impl KioskLink {
    pub(crate) fn new(
        actor: ActorRef<DeviceActor>,
        shared: Option<(i64, Arc<SharedStream>)>,
        inner: Arc<Inner>,
    ) -> Self {
        Self {
            actor,
            shared,
            inner,
        }
    }

    /// The device's actor.
    pub fn actor(&self) -> &ActorRef<DeviceActor> {
        &self.actor
    }

    /// Takes what the kiosk sent on connection `conn` (`None`: only a sign of life).
    /// Returns the message for the actor when it is the actor's to handle. An answer
    /// (`stale_epoch`) goes back through the stream, as the actor's do.
    pub fn from_kiosk(&self, conn: u64, msg: Option<ClientMessage>) -> Option<FromKiosk> {
        let quick = matches!(
            msg,
            None | Some(
                ClientMessage::Heartbeat | ClientMessage::ClientStatus(_) | ClientMessage::Ack(_)
            )
        );
        // A dead actor's stream is no longer the device's: the message goes to the actor,
        // whose closed mailbox ends the connection.
        let Some((id, stream)) = self
            .shared
            .as_ref()
            .filter(|(_, stream)| quick && !stream.life().in_session() && self.actor.is_alive())
        else {
            return Some(FromKiosk { conn, msg });
        };
        let now = self.inner.clock.now_ms();
        if stream
            .life()
            .heard(now, self.inner.cfg.heartbeat_store_ms())
            .store
        {
            self.inner.beat_device(*id, now);
        }
        if let Some(ClientMessage::Ack(a)) = &msg
            && let Some(answer) = ack(stream, &self.inner, a)
        {
            stream.lock().answer(conn, answer);
        }
        None
    }
}

impl DeviceActor {
    async fn on_kiosk_message(&mut self, msg: Option<ClientMessage>) -> Option<ServerEvent> {
        let now = self.inner.clock.now_ms();
        self.heard(now, false);
        match msg? {
            ClientMessage::Hello(_) => Some(ErrorMsg::event(
                "bad_message",
                "hello is only valid as the first message",
            )),
            ClientMessage::Heartbeat | ClientMessage::ClientStatus(_) => None,
            ClientMessage::Ack(a) => ack(&self.stream, &self.inner, &a),
            ClientMessage::Logout => match self.end_running(EndReason::UserLogout).await {
                Ok(Some(_)) => None,
                Ok(None) => Some(ErrorMsg::event("not_in_session", "no session is running")),
                Err(_) => Some(ErrorMsg::event(
                    "internal",
                    "the session could not be ended; retry",
                )),
            },
            ClientMessage::GameState(g) => {
                let updating = g.update_state == UpdateState::Ing;
                if updating != self.rec.updating {
                    if self
                        .inner
                        .store
                        .set_device_updating(self.rec.id, updating)
                        .await
                        .is_err()
                    {
                        return Some(ErrorMsg::event("internal", "game state not saved; retry"));
                    }
                    self.rec.updating = updating;
                    self.changed();
                }
                None
            }
        }
    }
}

/// Queues an operator command for the kiosk.
#[derive(Debug)]
pub struct SendCommand {
    /// `restart`, `message`, `update_games`, `lock` or `unlock`.
    pub name: String,
    /// Text for `message`.
    pub text: Option<String>,
}

impl Message<SendCommand> for DeviceActor {
    type Reply = Result<(i64, bool), DeviceRefusal>;

    async fn handle(
        &mut self,
        msg: SendCommand,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch();
        self.queue_command(&msg.name, msg.text).await
    }
}

/// Closes the kiosk's WebSocket with a code (shutdown, device removed).
#[derive(Debug)]
pub struct CloseSocket(pub u16);

impl Message<CloseSocket> for DeviceActor {
    type Reply = ();

    async fn handle(
        &mut self,
        CloseSocket(code): CloseSocket,
        _ctx: &mut Context<Self, Self::Reply>,
    ) {
        self.stream.lock().close(code);
    }
}

/// Stops the device here without ending anything (its claim went to another node, or
/// this node lost it): the session's actor stops, the session stays running in storage,
/// the kiosk's socket is closed with the given code.
#[derive(Debug)]
pub struct Retire(pub u16);

impl Message<Retire> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, Retire(code): Retire, ctx: &mut Context<Self, Self::Reply>) {
        if let Some(run) = self.session.take() {
            self.inner.forget_session(&run.token, run.user_id);
            let _ = run.actor.stop_gracefully().await;
            let _ = run.actor.wait_for_shutdown_result().await;
        }
        self.stream.lock().close(code);
        ctx.stop();
    }
}

/// A maintainer logs in (password already verified by the adapter).
#[derive(Debug)]
pub struct MaintainLogin {
    /// Maintainer username.
    pub username: String,
}

impl Message<MaintainLogin> for DeviceActor {
    type Reply = Result<(), DeviceRefusal>;

    async fn handle(
        &mut self,
        msg: MaintainLogin,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch();
        let now = self.inner.clock.now_ms();
        if !self.online(now) {
            return Err(DeviceRefusal::Offline);
        }
        if self.session.is_some() {
            return Err(DeviceRefusal::Busy);
        }
        self.transient_lock = None;
        self.persist_status(PersistedStatus::Maintain, Some(msg.username))
            .await
    }
}

/// A maintainer logs out.
#[derive(Debug)]
pub struct MaintainLogout {
    /// Maintainer username.
    pub username: String,
}

impl Message<MaintainLogout> for DeviceActor {
    type Reply = Result<(), DeviceRefusal>;

    async fn handle(
        &mut self,
        msg: MaintainLogout,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch();
        if self.rec.status != PersistedStatus::Maintain
            || self.rec.maintainer.as_deref() != Some(msg.username.as_str())
        {
            return Err(DeviceRefusal::NotInMaintenance);
        }
        self.persist_status(PersistedStatus::Free, None).await
    }
}

/// Sets (`Some`) or reads (`None`) the game-update flag.
#[derive(Debug)]
pub struct GameUpdate(pub Option<bool>);

impl Message<GameUpdate> for DeviceActor {
    type Reply = Result<bool, DeviceRefusal>;

    async fn handle(
        &mut self,
        GameUpdate(set): GameUpdate,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch();
        if let Some(updating) = set
            && updating != self.rec.updating
        {
            self.inner
                .store
                .set_device_updating(self.rec.id, updating)
                .await
                .map_err(|_| DeviceRefusal::Internal)?;
            self.rec.updating = updating;
            self.changed();
        }
        Ok(self.rec.updating)
    }
}

/// Operator commands that change the device's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OperatorCommand {
    /// End any session (`operator`) and lock until unlocked.
    Lock,
    /// Clear an operator lock (or any lock).
    Unlock,
    /// End any session (`maintenance`) and put the device into maintenance.
    Maintain,
}

/// An operator command.
#[derive(Debug)]
pub struct Operate(pub OperatorCommand);

impl Message<Operate> for DeviceActor {
    type Reply = Result<Option<EndedView>, DeviceRefusal>;

    async fn handle(
        &mut self,
        Operate(cmd): Operate,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch();
        match cmd {
            OperatorCommand::Lock => {
                let ended = self.end_running(EndReason::Operator).await?;
                self.persist_status(PersistedStatus::OperatorLock, None)
                    .await?;
                self.queue_command("lock", None).await?;
                Ok(ended)
            }
            OperatorCommand::Maintain => {
                let ended = self.end_running(EndReason::Maintenance).await?;
                self.persist_status(PersistedStatus::Maintain, Some("operator".into()))
                    .await?;
                Ok(ended)
            }
            OperatorCommand::Unlock => {
                self.transient_lock = None;
                self.persist_status(PersistedStatus::Free, None).await?;
                self.queue_command("unlock", None).await?;
                Ok(None)
            }
        }
    }
}

/// Asks for the device's view.
#[derive(Debug)]
pub struct Info;

impl Message<Info> for DeviceActor {
    type Reply = Result<DeviceView, DeviceRefusal>;

    async fn handle(&mut self, _: Info, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Ok(self.view(self.inner.clock.now_ms()))
    }
}

/// The operator changed the device's registration (name, price, ...).
#[derive(Debug)]
pub struct Reload(pub DeviceRecord);

impl Message<Reload> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, Reload(rec): Reload, _ctx: &mut Context<Self, Self::Reply>) {
        self.rec = rec;
        self.stream.life().heard_by(self.rec.last_seen_at);
        self.changed();
    }
}

/// Passivation: stop if nothing needs this actor (no socket, no session, no pending
/// command, no balance lock to show) and nothing used it for `actors.idle_seconds`. Its
/// directory entry goes first, so the next request activates a new actor from storage.
#[derive(Debug)]
pub struct IdleCheck;

impl Message<IdleCheck> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, _: IdleCheck, ctx: &mut Context<Self, Self::Reply>) {
        let Some(idle) = self.inner.cfg.idle else {
            return;
        };
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let quiet_since = self
            .active_at
            .max(self.stream.life().last_heard().unwrap_or(i64::MIN));
        let now = self.inner.clock.now_ms();
        let (connected, has_pending) = {
            let mut stream = self.stream.lock();
            // An expired broadcast copy no longer keeps the actor alive.
            stream.expire(now);
            // Nor does a quiet device keep old events for a resume.
            stream.forget_older_than(std::time::Instant::now());
            (stream.connected(), stream.has_pending())
        };
        let me = ctx.actor_ref();
        let queued = me
            .mailbox_sender()
            .capacity()
            .zip(me.mailbox_sender().max_capacity())
            .is_some_and(|(free, max)| free < max);
        if self.session.is_none()
            && !connected
            && !has_pending
            && self.transient_lock.is_none()
            && !queued
            && now.saturating_sub(quiet_since) >= idle_ms
            && self.inner.is_current_device(&self.rec.code, me.id())
        {
            self.inner.device_stopped(&self.rec.code, me.id());
            metrics::counter!(catalog::DEVICES_PASSIVATED).increment(1);
            ctx.stop();
        }
    }
}

/// Test hook: makes the handler panic (to show a panicked actor is restarted).
#[cfg(any(test, feature = "test-hooks"))]
#[derive(Debug)]
pub struct Crash;

#[cfg(any(test, feature = "test-hooks"))]
impl Message<Crash> for DeviceActor {
    type Reply = ();

    async fn handle(&mut self, _: Crash, _ctx: &mut Context<Self, Self::Reply>) {
        // A half-done change, as a real bug would leave it.
        self.session = None;
        self.session_info = None;
        panic!("injected panic in a device handler");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::{Coordinator, CoordinatorConfig};

    /// Every device actor's task holds kameo's lifecycle future for the actor's life, so
    /// what kameo keeps beside the actor is paid once per device (issue 3's per-kiosk
    /// budget). Unpatched kameo 0.22.2 kept about 3.3 KB beside a 560-byte actor; the
    /// vendored patch (`vendor/kameo/PATCHES.md`) about 1.1 KB.
    #[tokio::test]
    async fn the_actor_task_keeps_little_beside_the_actor() {
        let coord = Coordinator::new(
            Arc::new(crate::memstore::MemStore::new()),
            crate::clock::Clock::starting_at(0),
            CoordinatorConfig::default(),
            crate::events::Events::default(),
        );
        let rec = crate::memstore::device_record(1, "AA-BB-CC-DD-EE-FF");
        let args = DeviceArgs {
            rec,
            inner: coord.inner_for_tests(),
            adopt: false,
            running: None,
            stream: SharedStream::new(crate::stream::DeviceStream::new(Vec::new())),
        };
        let lifecycle = DeviceActor::prepare().run(args);
        let actor = std::mem::size_of::<DeviceActor>();
        let whole = std::mem::size_of_val(&lifecycle);
        let beside = whole - actor;
        // The actor itself: what only a device in a session holds is boxed (it was 464
        // bytes with the running session and its info inline).
        assert!(
            actor <= 336,
            "DeviceActor is {actor} bytes: box what most devices never hold"
        );
        assert!(
            beside <= 1280,
            "kameo's lifecycle future keeps {beside} bytes beside the actor (patched kameo: about 1.1 KB)"
        );
        // The task's cell: tokio's 32-byte header, its scheduler handle, task id and
        // stage tag, kameo's task-local actor id around this future, a 48-byte trailer,
        // aligned to 128 bytes: this future + 128. mimalloc serves a 1,152-byte cell
        // from its ~1,280-byte class and a 1,280-byte one from the 1,536 class, so at
        // most 1,024 here. It was 1,176 (a 1,408-byte cell) before the vendored kameo's
        // third patch (PATCHES.md).
        assert!(
            whole <= 1024,
            "the device's lifecycle future is {whole} bytes: its task cell leaves mimalloc's 1,280-byte class"
        );
    }
}
