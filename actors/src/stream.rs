//! A device's event stream for its kiosk's WebSocket: per-device sequence numbers under
//! an epoch, a ring of recent events to replay on resume, the one live connection, and
//! the operator commands that stay pending until the kiosk acknowledges them.
//!
//! Pushing never waits: a frame goes to the connection's bounded queue
//! ([`connection`]) with `try_send`, and a connection that is full is closed as a slow
//! consumer (its events stay in the ring, so it resumes where it was).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use kioskd_protocol::ws::{Command, ServerEvent, ServerFrame, Snapshot, close};

/// Events kept for resume, at most (and only those younger than the stream's window).
pub const RING: usize = 256;

/// How long an event is kept for resume unless the device's configuration says otherwise
/// (`ws.resume_window_seconds`).
pub const RESUME_WINDOW: Duration = Duration::from_secs(600);

/// Every `command` frame starts so, up to its id (a [`ServerFrame`] of a
/// [`ServerEvent::Command`] as serde writes it).
const COMMAND_HEAD: &str = r#"{"type":"command","data":{"id":"#;

/// A broadcast's command as its copies go on the wire, serialised once: a copy adds only
/// its own id and sequence number. The bytes around them are cut from what serde writes
/// for the same [`ServerFrame`], so the two cannot drift apart (BENCHMARKS.md, durable
/// broadcast).
///
/// Beside it, the broadcast's fan-out ([`Broadcast::fanning_out`]): while copies are
/// still queued for their connections, a connection that has written its copy reads
/// nothing more from its kiosk until every queued copy has been taken (or
/// [`FAN_OUT_PATIENCE`] is over), so the kiosks' acks do not compete with the copies
/// of kiosks not yet served (BENCHMARKS.md, durable broadcast).
#[derive(Debug)]
pub struct Broadcast {
    /// The command, its id aside.
    command: Command,
    /// What comes between a copy's id and its sequence number: `,"name":…,"text":…},"seq":`
    /// (`None` if serde's layout ever stops starting with the id and ending with the
    /// seq: each copy is then serialised whole).
    mid: Option<Box<str>>,
    fan_out: FanOut,
}

/// How long connections hold off reading while a broadcast's copies go out, at most: a
/// copy stuck in a slow connection's queue does not keep the others from their kiosks'
/// acks for longer than this.
pub const FAN_OUT_PATIENCE: Duration = Duration::from_secs(1);

/// A broadcast's fan-out: the copies queued and not yet taken by their connections.
#[derive(Debug)]
struct FanOut {
    /// Copies queued to connections and not yet taken from their queue, plus one held by
    /// the fan-out itself until it has gone through every device.
    in_flight: AtomicUsize,
    /// Every copy has been taken (or patience ran out, or there was no fan-out).
    open: AtomicBool,
    /// Told when `open` turns true.
    opened: tokio::sync::Notify,
    /// When the fan-out began (`None`: no fan-out).
    began: Option<Instant>,
}

impl PartialEq for Broadcast {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command && self.mid == other.mid
    }
}

impl Eq for Broadcast {}

impl Broadcast {
    /// A broadcast of command `name` (with `text`), not being fanned out (a copy loaded
    /// from storage).
    pub fn new(name: String, text: Option<String>) -> Arc<Self> {
        Arc::new(Self::make(name, text, false))
    }

    /// A broadcast about to be fanned out: connections that write one of its copies hold
    /// off reading until every copy queued before [`fanned_out`](Self::fanned_out) has
    /// been taken from its queue, or until [`open`](Self::open).
    pub fn fanning_out(name: String, text: Option<String>) -> Arc<Self> {
        Arc::new(Self::make(name, text, true))
    }

    fn make(name: String, text: Option<String>, fanning_out: bool) -> Self {
        let command = Command { id: 0, name, text };
        // Once per broadcast: serde's bytes for the command with id 0 and seq 0.
        let probe = ServerFrame {
            event: ServerEvent::Command(command.clone()),
            seq: Some(0),
            queued_at: None,
        };
        let mid = serde_json::to_string(&probe).ok().and_then(|json| {
            json.strip_prefix(COMMAND_HEAD)?
                .strip_prefix('0')?
                .strip_suffix("0}")
                .map(Box::from)
        });
        Self {
            command,
            mid,
            fan_out: FanOut {
                in_flight: AtomicUsize::new(usize::from(fanning_out)),
                open: AtomicBool::new(!fanning_out),
                opened: tokio::sync::Notify::new(),
                began: fanning_out.then(Instant::now),
            },
        }
    }

    /// The copy with id `id` as a command.
    pub fn command(&self, id: i64) -> Command {
        Command {
            id,
            ..self.command.clone()
        }
    }

    /// The fan-out has gone through every device: once the copies it queued are taken,
    /// connections read again, and at the latest [`FAN_OUT_PATIENCE`] from now (a copy
    /// stuck in a slow connection's queue holds them up no longer). Within a tokio
    /// runtime.
    pub fn fanned_out(self: &Arc<Self>) {
        self.taken();
        if self.is_fanning_out() {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(FAN_OUT_PATIENCE).await;
                this.open();
            });
        }
    }

    /// Ends the wait for the fan-out whatever is still queued (its patience is over).
    pub fn open(&self) {
        self.end_fan_out("patience");
    }

    fn end_fan_out(&self, outcome: &'static str) {
        if !self.fan_out.open.swap(true, Ordering::AcqRel) {
            self.fan_out.opened.notify_waiters();
            if let Some(began) = self.fan_out.began {
                metrics::histogram!(crate::catalog::WS_FAN_OUT, "outcome" => outcome)
                    .record(began.elapsed().as_secs_f64());
            }
        }
    }

    /// Are copies of this broadcast still on their way to connections?
    pub fn is_fanning_out(&self) -> bool {
        !self.fan_out.open.load(Ordering::Acquire)
    }

    /// Waits until no copy of this broadcast is on its way any more.
    pub async fn until_fanned_out(self: Arc<Self>) {
        // Made before the look at `open`: a `notify_waiters` after it is not missed.
        let opened = self.fan_out.opened.notified();
        if self.is_fanning_out() {
            opened.await;
        }
    }

    /// A copy goes into a connection's queue: counted while the fan-out runs.
    fn queued(self: &Arc<Self>) -> Option<Taken> {
        if !self.is_fanning_out() {
            return None;
        }
        self.fan_out.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Taken(self.clone()))
    }

    fn taken(&self) {
        if self.fan_out.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.end_fan_out("taken");
        }
    }
}

/// A fan-out's copy in a connection's queue: counted off when it leaves the queue
/// (taken by the connection task, refused, or dropped with the queue).
#[derive(Debug)]
struct Taken(Arc<Broadcast>);

impl Drop for Taken {
    fn drop(&mut self) {
        self.0.taken();
    }
}

/// A broadcast's copy for one device, in its stream.
#[derive(Debug, PartialEq)]
pub struct CopyFrame {
    /// The broadcast.
    pub broadcast: Arc<Broadcast>,
    /// The copy's command id (one per broadcast and device).
    pub id: i64,
    /// Its sequence number in the device's stream.
    pub seq: u64,
    /// When it was pushed (a live push; `None` for a replay).
    pub queued_at: Option<Instant>,
}

/// A frame on its way to a kiosk.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// An event, serialised by the connection task.
    Event(Arc<ServerFrame>),
    /// A broadcast's copy: the broadcast's bytes plus the copy's id and seq.
    Copy(Arc<CopyFrame>),
}

impl From<Arc<ServerFrame>> for Frame {
    fn from(f: Arc<ServerFrame>) -> Self {
        Frame::Event(f)
    }
}

impl Frame {
    /// The broadcast whose fan-out is still running, if this is one of its copies: its
    /// connection reads nothing more until [`Broadcast::until_fanned_out`].
    pub fn fanning_out(&self) -> Option<&Arc<Broadcast>> {
        match self {
            Frame::Copy(c) if c.broadcast.is_fanning_out() => Some(&c.broadcast),
            _ => None,
        }
    }

    /// The frame's sequence number (none for answers and snapshots).
    pub fn seq(&self) -> Option<u64> {
        match self {
            Frame::Event(f) => f.seq,
            Frame::Copy(c) => Some(c.seq),
        }
    }

    /// When the frame was produced for a live push, if it was.
    pub fn queued_at(&self) -> Option<Instant> {
        match self {
            Frame::Event(f) => f.queued_at,
            Frame::Copy(c) => c.queued_at,
        }
    }

    /// The frame as the kiosk reads it (JSON text).
    pub fn to_json(&self) -> Option<String> {
        match self {
            Frame::Event(f) => serde_json::to_string(&**f).ok(),
            Frame::Copy(c) => {
                let Some(mid) = &c.broadcast.mid else {
                    return serde_json::to_string(&self.to_server_frame()).ok();
                };
                let mut s = String::with_capacity(COMMAND_HEAD.len() + mid.len() + 42);
                s.push_str(COMMAND_HEAD);
                s.push_str(itoa::Buffer::new().format(c.id));
                s.push_str(mid);
                s.push_str(itoa::Buffer::new().format(c.seq));
                s.push('}');
                Some(s)
            }
        }
    }

    /// The frame as a protocol value.
    pub fn to_server_frame(&self) -> ServerFrame {
        match self {
            Frame::Event(f) => (**f).clone(),
            Frame::Copy(c) => ServerFrame {
                event: ServerEvent::Command(c.broadcast.command(c.id)),
                seq: Some(c.seq),
                queued_at: c.queued_at,
            },
        }
    }

    /// The same frame, not timed as a live push (a replay).
    fn replayed(&self) -> Frame {
        match self {
            Frame::Event(f) => Frame::Event(Arc::new(ServerFrame {
                queued_at: None,
                ..(**f).clone()
            })),
            Frame::Copy(c) => Frame::Copy(Arc::new(CopyFrame {
                broadcast: c.broadcast.clone(),
                id: c.id,
                seq: c.seq,
                queued_at: None,
            })),
        }
    }
}

/// The frames between a device actor and its kiosk's connection task, and the close code
/// the device may send it ("kick"), in one small shared allocation per connection (~0.15
/// KB; a tokio `mpsc` channel, with its cache-padded header and first block of 32 slots,
/// and a `oneshot` for the kick cost ~0.9 KB per connected kiosk: BENCHMARKS.md, memory
/// per kiosk). Bounded: a push to a full (or closed) queue fails, and the device closes
/// the connection as a slow consumer. The connection task is the one waiter, so its
/// wake-up is an `AtomicWaker` (a tokio `Notify` kept a list of waiters under a lock,
/// entered and left on every frame: BENCHMARKS.md, durable broadcast).
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: AtomicWaker,
}

#[derive(Debug)]
struct Queue {
    /// Frames in order, each fan-out copy with its count (dropped when it leaves).
    frames: VecDeque<(Frame, Option<Taken>)>,
    capacity: usize,
    /// The device closed the connection with this code (taken before any frame).
    kick: Option<u16>,
    /// The connection task is gone: pushes fail.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The lock is never held across a panic-prone call; a poisoned queue is still
        // a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_push(&self, frame: Frame) -> Result<(), Frame> {
        let mut q = self.lock();
        if q.closed || q.frames.len() >= q.capacity {
            return Err(frame);
        }
        let taken = match &frame {
            Frame::Copy(c) => c.broadcast.queued(),
            Frame::Event(_) => None,
        };
        q.frames.push_back((frame, taken));
        drop(q);
        self.wake.wake();
        Ok(())
    }
}

/// One live connection, as the device's stream holds it.
#[derive(Debug)]
pub struct Conn {
    /// Connection id (unique per process).
    pub id: u64,
    shared: Arc<Shared>,
}

impl Conn {
    /// Queues a frame for the connection; `Err` when it is full or gone.
    pub fn try_send(&self, frame: Frame) -> Result<(), Frame> {
        self.shared.try_push(frame)
    }

    /// Tells the connection task to close with `code` (ahead of any queued frame).
    pub fn close(self, code: u16) {
        let mut q = self.shared.lock();
        q.kick.get_or_insert(code);
        drop(q);
        self.shared.wake.wake();
    }
}

/// What a connection task gets next from its device.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Close with this code.
    Kicked(u16),
    /// Write this frame.
    Frame(Frame),
}

/// The connection task's end of a [`Conn`]: frames and the kick, and room for its own
/// replies (which share the bound).
#[derive(Debug)]
pub struct ConnFrames {
    shared: Arc<Shared>,
}

impl ConnFrames {
    /// Queues a frame of the connection's own (a reply, an error); `false` when full.
    pub fn try_send(&self, frame: impl Into<Frame>) -> bool {
        self.shared.try_push(frame.into()).is_ok()
    }

    /// The kick, else the oldest frame, if either is there.
    pub fn try_next(&self) -> Option<Next> {
        let mut q = self.shared.lock();
        if let Some(code) = q.kick.take() {
            return Some(Next::Kicked(code));
        }
        let f = q.frames.pop_front();
        // A replay burst leaves no large buffer behind on an idle connection.
        if q.frames.is_empty() && q.frames.capacity() > 16 {
            q.frames.shrink_to(4);
        }
        drop(q);
        // (A fan-out's copy is counted off here, after the lock.)
        f.map(|(f, _taken)| Next::Frame(f))
    }

    /// Waits for the kick or the next frame. Cancel-safe: nothing is taken unless it is
    /// returned. Only the connection task waits (one waiter per queue).
    pub fn next(&self) -> impl std::future::Future<Output = Next> + '_ {
        std::future::poll_fn(|cx| {
            if let Some(n) = self.try_next() {
                return std::task::Poll::Ready(n);
            }
            self.shared.wake.register(cx.waker());
            // A push between the first look and the registration is seen here: no
            // wake-up is lost.
            match self.try_next() {
                Some(n) => std::task::Poll::Ready(n),
                None => std::task::Poll::Pending,
            }
        })
    }
}

impl Drop for ConnFrames {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        let frames = std::mem::take(&mut q.frames);
        drop(q);
        // (Fan-out copies still queued are counted off outside the lock.)
        drop(frames);
    }
}

/// A connection's two ends: the device's [`Conn`] and the task's [`ConnFrames`], at most
/// `capacity` frames between them.
pub fn connection(id: u64, capacity: usize) -> (Conn, ConnFrames) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            frames: VecDeque::new(),
            capacity: capacity.max(1),
            kick: None,
            closed: false,
        }),
        wake: AtomicWaker::new(),
    });
    (
        Conn {
            id,
            shared: shared.clone(),
        },
        ConnFrames { shared },
    )
}

/// A device's stream as its actor and the coordinator's directory share it, behind a
/// short lock that is never held across an await. The actor pushes its own events; a
/// broadcast goes into every live device's stream straight from the coordinator's
/// fan-out, without a message (a mailbox slot, a task wake-up and an actor turn) per
/// device: BENCHMARKS.md, durable broadcast. Beside it, outside the lock, the device's
/// signs of life ([`Life`]): the kiosk's connection task records a heartbeat or an ack
/// here without a turn of the device's actor.
#[derive(Debug)]
pub struct SharedStream {
    stream: Mutex<DeviceStream>,
    life: Life,
}

impl SharedStream {
    /// Shares a stream.
    pub fn new(stream: DeviceStream) -> Arc<Self> {
        Arc::new(Self {
            stream: Mutex::new(stream),
            life: Life::default(),
        })
    }

    /// The stream, locked. A poisoned lock still guards a consistent stream: every
    /// method leaves it whole before anything that could panic.
    pub fn lock(&self) -> MutexGuard<'_, DeviceStream> {
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device's signs of life.
    pub fn life(&self) -> &Life {
        &self.life
    }
}

/// When a device was last heard from, and when that was last passed on: shared by its
/// actor and its kiosk's connection task, which records the heartbeats and acks that
/// need nothing else of the actor (at 19,000 kiosks a broadcast brings 19,000 acks at
/// once: BENCHMARKS.md, durable broadcast).
#[derive(Debug)]
pub struct Life {
    /// Unix ms; `i64::MIN`: never.
    heard: AtomicI64,
    /// Unix ms the last sign of life was passed on to a running session.
    relayed: AtomicI64,
    /// Unix ms of the last sign of life passed on to storage.
    stored: AtomicI64,
    /// Running sessions the actor holds ([`SessionMark`]s alive): while there is one,
    /// every sign of life goes through the actor, which tells the session.
    sessions: AtomicU32,
}

impl Default for Life {
    fn default() -> Self {
        Self {
            heard: AtomicI64::new(i64::MIN),
            relayed: AtomicI64::new(i64::MIN),
            stored: AtomicI64::new(i64::MIN),
            sessions: AtomicU32::new(0),
        }
    }
}

/// A sign of life is passed on to a running session at most this often.
pub const RELAY_EVERY_MS: i64 = 1_000;

/// Where a sign of life is to be passed on (the default: nowhere).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    /// To a running session (at most once per [`RELAY_EVERY_MS`]).
    pub session: bool,
    /// To storage's last-heard time (at most once per
    /// `CoordinatorConfig::heartbeat_store_ms`).
    pub store: bool,
}

impl Life {
    /// When the device was last heard from (unix ms).
    pub fn last_heard(&self) -> Option<i64> {
        let h = self.heard.load(Ordering::Relaxed);
        (h != i64::MIN).then_some(h)
    }

    /// Heard from at `at` at the latest (what storage remembers): never moves back.
    pub fn heard_by(&self, at: Option<i64>) {
        if let Some(at) = at {
            self.heard.fetch_max(at, Ordering::Relaxed);
        }
    }

    /// Records a sign of life at `at` and says where to pass it on: to a running session
    /// at most once per [`RELAY_EVERY_MS`], to storage at most once per `store_every_ms`,
    /// whoever records it (the actor or the connection task). Nothing for a time no
    /// later than one already recorded.
    pub fn heard(&self, at: i64, store_every_ms: i64) -> Heard {
        if self.heard.fetch_max(at, Ordering::Relaxed) >= at {
            return Heard::default();
        }
        Heard {
            session: Self::due(&self.relayed, at, RELAY_EVERY_MS),
            store: Self::due(&self.stored, at, store_every_ms),
        }
    }

    /// Moves `mark` to `at` when `every` has passed since it (one caller wins).
    fn due(mark: &AtomicI64, at: i64, every: i64) -> bool {
        let last = mark.load(Ordering::Relaxed);
        at.saturating_sub(last) >= every
            && mark
                .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Does the actor hold a running session?
    pub fn in_session(&self) -> bool {
        self.sessions.load(Ordering::Acquire) > 0
    }
}

/// Held beside a running session by its device's actor: while one is alive,
/// [`Life::in_session`] says so. A count rather than a flag, so a session replaced by
/// another (both held for a moment) leaves it right whatever the order of their ends.
#[derive(Debug)]
pub struct SessionMark(Arc<SharedStream>);

impl SessionMark {
    /// Marks `stream`'s device as in a session until the mark is dropped.
    pub fn new(stream: &Arc<SharedStream>) -> Self {
        stream.life.sessions.fetch_add(1, Ordering::AcqRel);
        Self(stream.clone())
    }
}

impl Drop for SessionMark {
    fn drop(&mut self) {
        self.0.life.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A pending command: one of the device's own, or its copy of a broadcast (which shares
/// the broadcast's name and text with every other copy).
#[derive(Debug, Clone, PartialEq, Eq)]
enum PendingCmd {
    Own(Command),
    Copy(Arc<Broadcast>, i64),
}

impl PendingCmd {
    fn id(&self) -> i64 {
        match self {
            PendingCmd::Own(c) => c.id,
            PendingCmd::Copy(_, id) => *id,
        }
    }

    fn command(&self) -> Command {
        match self {
            PendingCmd::Own(c) => c.clone(),
            PendingCmd::Copy(b, id) => b.command(*id),
        }
    }
}

/// A pending command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// The command.
    cmd: PendingCmd,
    /// The sequence number it was last sent with.
    seq: u64,
    /// A broadcast copy is pending only until then (unix ms); a command to this device
    /// alone, until acknowledged.
    expires_at: Option<i64>,
}

/// The stream.
#[derive(Debug)]
pub struct DeviceStream {
    epoch: String,
    seq: u64,
    /// Recent events for resume: at most [`RING`], none older than `window_s`. A kiosk
    /// in a session gets a `billing` frame per unit; 256 of them are ~60 KB a device, so
    /// 19,000 busy kiosks would keep ~1 GB for resumes nobody makes after minutes away
    /// (a kiosk resuming from an event no longer kept gets a snapshot instead).
    ring: VecDeque<Frame>,
    conn: Option<Conn>,
    pending: Vec<Pending>,
    /// Seconds an event is kept for resume.
    window_s: u32,
}

/// How a (re)connect was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// Missed events were replayed.
    Replayed(usize),
    /// A fresh snapshot was sent.
    Snapshot,
}

impl DeviceStream {
    /// A new stream with a fresh epoch, keeping events for resume [`RESUME_WINDOW`].
    pub fn new(pending: Vec<Command>) -> Self {
        Self::with_window(pending, RESUME_WINDOW)
    }

    /// A new stream with a fresh epoch, keeping events for resume `window` (whole
    /// seconds, at least one).
    pub fn with_window(pending: Vec<Command>, window: Duration) -> Self {
        let mut s = Self {
            epoch: crate::ids::new_token()[..12].to_string(),
            seq: 0,
            // Allocated at the first event: an idle kiosk has none.
            ring: VecDeque::new(),
            conn: None,
            pending: Vec::new(),
            window_s: u32::try_from(window.as_secs()).unwrap_or(u32::MAX).max(1),
        };
        s.add_pending(pending, &[]);
        s
    }

    fn is_pending(&self, id: i64) -> bool {
        self.pending.iter().any(|p| p.cmd.id() == id)
    }

    /// Adds commands loaded from storage to the pending ones (those already pending, by
    /// id, are left as they are), each broadcast copy pending until its time in
    /// `expiries` (id, unix ms). A broadcast pushed into the stream while its actor was
    /// still loading is pending once, whichever came first.
    pub fn add_pending(&mut self, pending: Vec<Command>, expiries: &[(i64, i64)]) {
        for cmd in pending {
            if !self.is_pending(cmd.id) {
                self.pending.push(Pending {
                    cmd: PendingCmd::Own(cmd),
                    seq: 0,
                    expires_at: None,
                });
            }
        }
        for (id, at) in expiries {
            self.expire_at(*id, *at);
        }
    }

    /// A broadcast's copy for this device: pushed now if connected, pending until
    /// acknowledged or until `expires_at` (unix ms). A copy already pending (loaded from
    /// storage by an actor that started after the broadcast was stored) is not pushed
    /// twice.
    pub fn deliver(&mut self, broadcast: &Arc<Broadcast>, id: i64, expires_at: i64) {
        if !self.is_pending(id) {
            self.queue(PendingCmd::Copy(broadcast.clone(), id), Some(expires_at));
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The last sequence number assigned.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Is a connection attached?
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Are commands waiting for the kiosk's acknowledgement?
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Commands not yet acknowledged.
    pub fn pending(&self) -> Vec<Command> {
        self.pending.iter().map(|p| p.cmd.command()).collect()
    }

    /// Assigns the next sequence number, keeps the event for resume and sends it to the
    /// connection if there is one. Returns the sequence number.
    pub fn push(&mut self, event: ServerEvent) -> u64 {
        self.push_frame(|seq, now| {
            Frame::Event(Arc::new(ServerFrame {
                event,
                seq: Some(seq),
                queued_at: Some(now),
            }))
        })
    }

    /// [`push`](Self::push) of the frame `make` builds from the sequence number and the
    /// time.
    fn push_frame(&mut self, make: impl FnOnce(u64, Instant) -> Frame) -> u64 {
        self.seq += 1;
        let now = Instant::now();
        let frame = make(self.seq, now);
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.forget_older_than(now);
        self.ring.push_back(frame.clone());
        self.send(frame);
        self.seq
    }

    /// Forgets the events kept for resume that are older than the window as of `now`
    /// (pushing does this too; the device's periodic check calls it for a quiet one).
    pub fn forget_older_than(&mut self, now: Instant) {
        let Some(cutoff) = now.checked_sub(Duration::from_secs(u64::from(self.window_s))) else {
            return;
        };
        while self
            .ring
            .front()
            .is_some_and(|f| f.queued_at().is_some_and(|at| at < cutoff))
        {
            self.ring.pop_front();
        }
        if self.ring.capacity() > 32 && self.ring.len() < self.ring.capacity() / 4 {
            self.ring.shrink_to(self.ring.len().max(4));
        }
    }

    /// Events kept for resume.
    pub fn kept(&self) -> usize {
        self.ring.len()
    }

    /// Queues a command: pending until acknowledged, pushed now if connected.
    pub fn command(&mut self, cmd: Command) -> u64 {
        self.queue(PendingCmd::Own(cmd), None)
    }

    /// Pushes `cmd` and keeps it pending (until `expires_at`, if given).
    fn queue(&mut self, cmd: PendingCmd, expires_at: Option<i64>) -> u64 {
        let seq = self.push_frame(|seq, at| command_frame(&cmd, seq, at));
        self.pending.push(Pending {
            cmd,
            seq,
            expires_at,
        });
        seq
    }

    /// Command `id` stays pending only until `at` (unix ms).
    pub fn expire_at(&mut self, id: i64, at: i64) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.cmd.id() == id) {
            p.expires_at = Some(at);
        }
    }

    /// Forgets pending commands whose time is over (by `now`, unix ms).
    pub fn expire(&mut self, now: i64) {
        self.pending
            .retain(|p| p.expires_at.is_none_or(|at| at > now));
    }

    fn send(&mut self, frame: Frame) {
        let full = match &self.conn {
            Some(c) => c.try_send(frame).is_err(),
            None => false,
        };
        if full && let Some(c) = self.conn.take() {
            metrics::counter!(crate::catalog::WS_SLOW_CONSUMERS).increment(1);
            c.close(close::SLOW_CONSUMER);
        }
    }

    /// A connection arrives. Any older one is closed (`REPLACED`). If `resume_from` of
    /// the same epoch is still in the ring, the missed events are replayed; otherwise a
    /// snapshot (built by `snapshot(epoch, seq, pending)`) is sent, followed by every
    /// pending command again.
    pub fn attach(
        &mut self,
        conn: Conn,
        resume_from: Option<u64>,
        epoch: Option<&str>,
        snapshot: impl FnOnce(String, u64, Vec<Command>) -> Snapshot,
    ) -> Resumed {
        if let Some(old) = self.conn.take() {
            old.close(close::REPLACED);
        }
        self.conn = Some(conn);
        let oldest = self
            .ring
            .front()
            .and_then(Frame::seq)
            .unwrap_or(self.seq + 1);
        if let (Some(from), Some(ep)) = (resume_from, epoch)
            && ep == self.epoch
            && from <= self.seq
            && from + 1 >= oldest
        {
            let missed: Vec<_> = self
                .ring
                .iter()
                .filter(|f| f.seq().is_some_and(|s| s > from))
                // A replay is not a live push: it carries no push time, so the latency
                // histogram measures live pushes only.
                .map(Frame::replayed)
                .collect();
            let n = missed.len();
            for f in missed {
                self.send(f);
            }
            metrics::counter!(crate::catalog::WS_RESUMES, "outcome" => "replayed").increment(1);
            return Resumed::Replayed(n);
        }
        metrics::counter!(crate::catalog::WS_RESUMES, "outcome" => "snapshot").increment(1);
        let snap = snapshot(self.epoch.clone(), self.seq, self.pending());
        self.send(Frame::Event(Arc::new(ServerFrame {
            event: ServerEvent::Snapshot(snap),
            seq: None,
            queued_at: Some(std::time::Instant::now()),
        })));
        for i in 0..self.pending.len() {
            let cmd = self.pending[i].cmd.clone();
            self.pending[i].seq = self.push_frame(|seq, at| command_frame(&cmd, seq, at));
        }
        Resumed::Snapshot
    }

    /// An answer to a message of connection `conn_id` (an `error` frame): sent on it
    /// unsequenced and not kept for resume; dropped when that connection is gone.
    pub fn answer(&mut self, conn_id: u64, event: ServerEvent) {
        if self.conn.as_ref().is_some_and(|c| c.id == conn_id) {
            self.send(Frame::Event(Arc::new(ServerFrame {
                event,
                seq: None,
                queued_at: None,
            })));
        }
    }

    /// The connection went away (only if it is still the current one).
    pub fn detach(&mut self, conn_id: u64) {
        if self.conn.as_ref().is_some_and(|c| c.id == conn_id) {
            self.conn = None;
        }
    }

    /// Closes the connection with a code.
    pub fn close(&mut self, code: u16) {
        if let Some(c) = self.conn.take() {
            c.close(code);
        }
    }

    /// The kiosk processed everything up to `seq`: returns the ids of commands that are
    /// now acknowledged.
    pub fn ack(&mut self, seq: u64) -> Vec<i64> {
        let mut done = Vec::new();
        self.pending.retain(|p| {
            if p.seq != 0 && p.seq <= seq {
                done.push(p.cmd.id());
                false
            } else {
                true
            }
        });
        done
    }
}

/// The frame that sends pending command `cmd` with `seq`, pushed at `at`.
fn command_frame(cmd: &PendingCmd, seq: u64, at: Instant) -> Frame {
    match cmd {
        PendingCmd::Own(c) => Frame::Event(Arc::new(ServerFrame {
            event: ServerEvent::Command(c.clone()),
            seq: Some(seq),
            queued_at: Some(at),
        })),
        PendingCmd::Copy(b, id) => Frame::Copy(Arc::new(CopyFrame {
            broadcast: b.clone(),
            id: *id,
            seq,
            queued_at: Some(at),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kioskd_protocol::ws::ErrorMsg;

    fn conn(id: u64, cap: usize) -> (Conn, ConnFrames) {
        connection(id, cap)
    }

    /// Signs of life go to a running session at most once a second and to storage at
    /// most once per the given period (a broadcast's 19,000 acks, each a sign of life,
    /// were 19,000 heartbeat rows); a time no later than the last one goes nowhere.
    #[test]
    fn signs_of_life_reach_the_session_each_second_and_storage_each_period() {
        let life = Life::default();
        let both = Heard {
            session: true,
            store: true,
        };
        let session_only = Heard {
            session: true,
            store: false,
        };
        let neither = Heard::default();
        assert_eq!(life.heard(10_000, 30_000), both, "the first");
        assert_eq!(life.heard(10_500, 30_000), neither);
        assert_eq!(life.heard(10_500, 30_000), neither, "not later");
        assert_eq!(life.heard(11_000, 30_000), session_only);
        assert_eq!(life.heard(39_000, 30_000), session_only);
        assert_eq!(life.heard(40_000, 30_000), both);
        assert_eq!(life.heard(39_500, 30_000), neither, "earlier");
        assert_eq!(life.last_heard(), Some(40_000));
    }

    fn snap(epoch: String, seq: u64, pending: Vec<Command>) -> Snapshot {
        Snapshot {
            version: 1,
            epoch,
            seq,
            server_time: 0,
            device: None,
            session: None,
            pending_commands: pending,
            unpaid_order: None,
        }
    }

    fn ev(n: u64) -> ServerEvent {
        ErrorMsg::event("test", n.to_string())
    }

    fn seqs(rx: &mut ConnFrames) -> Vec<Option<u64>> {
        let mut v = Vec::new();
        while let Some(Next::Frame(f)) = rx.try_next() {
            v.push(f.seq());
        }
        v
    }

    #[test]
    fn resume_replays_missed_events_in_order_without_duplicates() {
        let mut s = DeviceStream::new(vec![]);
        let (c, mut rx) = conn(1, 64);
        assert_eq!(s.attach(c, None, None, snap), Resumed::Snapshot);
        for i in 0..5 {
            s.push(ev(i));
        }
        assert_eq!(
            seqs(&mut rx),
            vec![None, Some(1), Some(2), Some(3), Some(4), Some(5)]
        );
        s.detach(1);
        for i in 5..8 {
            s.push(ev(i));
        }
        let epoch = s.epoch().to_string();
        let (c, mut rx) = conn(2, 64);
        assert_eq!(
            s.attach(c, Some(5), Some(&epoch), snap),
            Resumed::Replayed(3)
        );
        assert_eq!(seqs(&mut rx), vec![Some(6), Some(7), Some(8)]);
    }

    #[test]
    fn a_gap_too_old_or_another_epoch_gets_a_snapshot() {
        let mut s = DeviceStream::new(vec![]);
        for i in 0..(RING as u64 + 10) {
            s.push(ev(i));
        }
        let epoch = s.epoch().to_string();
        let (c, mut rx) = conn(1, 8);
        assert_eq!(s.attach(c, Some(3), Some(&epoch), snap), Resumed::Snapshot);
        assert_eq!(seqs(&mut rx), vec![None]);
        let (c, mut rx) = conn(2, 8);
        assert_eq!(
            s.attach(c, Some(s.seq()), Some("other"), snap),
            Resumed::Snapshot
        );
        assert_eq!(seqs(&mut rx), vec![None]);
    }

    #[test]
    fn commands_are_resent_until_acknowledged() {
        let mut s = DeviceStream::new(vec![Command {
            id: 1,
            name: "restart".into(),
            text: None,
        }]);
        let (c, mut rx) = conn(1, 64);
        s.attach(c, None, None, snap);
        let got = seqs(&mut rx);
        assert_eq!(
            got,
            vec![None, Some(1)],
            "snapshot, then the pending command"
        );
        s.command(Command {
            id: 2,
            name: "message".into(),
            text: Some("hi".into()),
        });
        assert_eq!(s.ack(1), vec![1]);
        assert_eq!(s.pending().len(), 1);
        s.detach(1);
        // Reconnect without resume: snapshot, then command 2 again with a new seq.
        let (c, mut rx) = conn(2, 64);
        s.attach(c, None, None, snap);
        assert_eq!(seqs(&mut rx), vec![None, Some(3)]);
        assert_eq!(s.ack(3), vec![2]);
        assert!(s.pending().is_empty());
    }

    #[test]
    fn a_full_connection_is_closed_as_a_slow_consumer_and_a_new_one_replaces_the_old() {
        let mut s = DeviceStream::new(vec![]);
        let (c, kicked) = conn(1, 2);
        s.attach(c, None, None, snap); // snapshot takes one slot
        s.push(ev(1));
        s.push(ev(2)); // full
        assert_eq!(kicked.try_next(), Some(Next::Kicked(close::SLOW_CONSUMER)));
        assert!(!s.connected());
        let (c, k1) = conn(2, 8);
        s.attach(c, None, None, snap);
        let (c, _k2) = conn(3, 8);
        s.attach(c, None, None, snap);
        assert_eq!(k1.try_next(), Some(Next::Kicked(close::REPLACED)));
        s.detach(2); // stale detach of the replaced connection changes nothing
        assert!(s.connected());
    }

    fn frame(n: u64) -> Frame {
        Frame::Event(Arc::new(ServerFrame {
            event: ev(n),
            seq: Some(n),
            queued_at: None,
        }))
    }

    #[test]
    fn a_connection_queue_is_bounded_shared_by_both_ends_and_the_kick_goes_first() {
        let (c, rx) = connection(1, 2);
        assert!(c.try_send(frame(1)).is_ok());
        assert!(
            rx.try_send(frame(2)),
            "the task's own reply shares the bound"
        );
        assert!(c.try_send(frame(3)).is_err(), "full");
        assert!(!rx.try_send(frame(4)), "full for the task too");
        c.close(close::REPLACED);
        assert_eq!(rx.try_next(), Some(Next::Kicked(close::REPLACED)));
        assert_eq!(rx.try_next(), Some(Next::Frame(frame(1))));
        assert_eq!(rx.try_next(), Some(Next::Frame(frame(2))));
        assert_eq!(rx.try_next(), None);
    }

    #[test]
    fn a_queue_whose_task_is_gone_refuses_frames() {
        let (c, rx) = connection(1, 8);
        drop(rx);
        assert!(c.try_send(frame(1)).is_err());
    }

    #[tokio::test]
    async fn next_waits_for_a_push_and_a_cancelled_wait_loses_nothing() {
        let (c, rx) = connection(1, 8);
        // A wait given up (as a `select!` does when another branch wins) takes nothing.
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(1), rx.next()).await;
        assert!(gave_up.is_err());
        let waiter = tokio::spawn(async move {
            let a = rx.next().await;
            let b = rx.next().await;
            (a, b)
        });
        tokio::task::yield_now().await;
        assert!(c.try_send(frame(7)).is_ok());
        c.close(close::GOING_AWAY);
        let (a, b) = waiter.await.unwrap();
        // Whichever the task saw first, it saw both.
        let mut got = vec![a, b];
        got.sort_by_key(|n| matches!(n, Next::Frame(_)));
        assert_eq!(
            got,
            vec![Next::Kicked(close::GOING_AWAY), Next::Frame(frame(7))]
        );
    }

    #[test]
    fn events_older_than_the_window_are_not_kept_and_a_resume_from_them_gets_a_snapshot() {
        let mut s = DeviceStream::with_window(vec![], Duration::from_secs(600));
        let (c, _rx) = conn(1, 64);
        s.attach(c, None, None, snap);
        let epoch = s.epoch().to_string();
        for i in 0..5 {
            s.push(ev(i));
        }
        assert_eq!(s.kept(), 5);
        // Ten minutes on: nothing is young enough (the cut-off is explicit here; the
        // device passes `Instant::now()`).
        s.forget_older_than(Instant::now() + Duration::from_secs(601));
        assert_eq!(s.kept(), 0);
        s.detach(1);
        let (c, mut rx) = conn(2, 64);
        assert_eq!(s.attach(c, Some(2), Some(&epoch), snap), Resumed::Snapshot);
        assert_eq!(seqs(&mut rx), vec![None], "a snapshot, not a replay");
        // Within the window, a resume replays.
        s.push(ev(6));
        s.push(ev(7));
        s.forget_older_than(Instant::now() + Duration::from_secs(599));
        assert_eq!(s.kept(), 2);
        s.detach(2);
        let (c, mut rx) = conn(3, 64);
        assert_eq!(
            s.attach(c, Some(6), Some(&epoch), snap),
            Resumed::Replayed(1)
        );
        assert_eq!(seqs(&mut rx), vec![Some(7)]);
    }

    #[test]
    fn a_broadcast_copy_is_pending_once_whether_it_came_before_or_after_the_load() {
        let copy = Command {
            id: -7,
            name: "message".into(),
            text: Some("closing at 22:00".into()),
        };
        // Pushed by the fan-out while the actor was still loading, then loaded.
        let b = Broadcast::new(copy.name.clone(), copy.text.clone());
        let mut s = DeviceStream::new(vec![]);
        s.deliver(&b, -7, 1_000);
        s.add_pending(vec![copy.clone()], &[(-7, 1_000)]);
        assert_eq!(s.pending(), vec![copy.clone()]);
        s.expire(1_001);
        assert!(s.pending().is_empty(), "a copy is pending until its time");
        // Loaded (and sent on connect), then pushed by the fan-out: sent once.
        let mut s = DeviceStream::new(vec![]);
        s.add_pending(vec![copy.clone()], &[]);
        let (c, mut rx) = conn(1, 64);
        s.attach(c, None, None, snap);
        s.deliver(&b, -7, 1_000);
        assert_eq!(seqs(&mut rx), vec![None, Some(1)]);
        assert_eq!(s.pending(), vec![copy]);
        assert_eq!(s.ack(1), vec![-7]);
    }

    #[test]
    fn a_broadcast_copy_is_written_as_serde_writes_the_same_frame() {
        let texts = [
            None,
            Some(String::new()),
            Some("closing at 22:00".to_string()),
            Some("\"quoted\" \\ back\nslash \u{1} 营业至 22:00 🎮".to_string()),
        ];
        for text in texts {
            for (id, seq) in [(-7_i64, 1_u64), (i64::MIN, u64::MAX), (123_456_789, 42)] {
                let b = Broadcast::new("message".into(), text.clone());
                let copy = Frame::Copy(Arc::new(CopyFrame {
                    broadcast: b.clone(),
                    id,
                    seq,
                    queued_at: None,
                }));
                let plain = ServerFrame {
                    event: ServerEvent::Command(Command {
                        id,
                        name: "message".into(),
                        text: text.clone(),
                    }),
                    seq: Some(seq),
                    queued_at: None,
                };
                assert!(b.mid.is_some(), "cut from serde's bytes");
                assert_eq!(copy.to_json(), serde_json::to_string(&plain).ok());
                // Were serde's layout ever not to allow the cut, the copy is written whole.
                let whole = Frame::Copy(Arc::new(CopyFrame {
                    broadcast: Arc::new(Broadcast {
                        mid: None,
                        ..Broadcast::make("message".into(), text.clone(), false)
                    }),
                    id,
                    seq,
                    queued_at: None,
                }));
                assert_eq!(whole.to_json(), copy.to_json());
                assert_eq!(copy.to_server_frame(), plain);
                let read: ServerFrame =
                    serde_json::from_str(&copy.to_json().unwrap_or_default()).unwrap();
                assert_eq!(read, plain);
            }
        }
    }

    #[test]
    fn a_broadcast_copy_is_replayed_on_resume_and_sent_again_after_a_snapshot() {
        let b = Broadcast::new("message".into(), Some("hi".into()));
        let mut s = DeviceStream::new(vec![]);
        let (c, mut rx) = conn(1, 64);
        s.attach(c, None, None, snap);
        s.push(ev(0));
        s.deliver(&b, -9, i64::MAX);
        assert_eq!(seqs(&mut rx), vec![None, Some(1), Some(2)]);
        s.detach(1);
        // Resumed from seq 1: the copy comes again, same seq, not timed as a live push.
        let epoch = s.epoch().to_string();
        let (c, rx) = conn(2, 64);
        assert_eq!(
            s.attach(c, Some(1), Some(&epoch), snap),
            Resumed::Replayed(1)
        );
        let Some(Next::Frame(f)) = rx.try_next() else {
            panic!("no replay")
        };
        assert_eq!(f.seq(), Some(2));
        assert_eq!(f.queued_at(), None);
        assert_eq!(
            f.to_server_frame().event,
            ServerEvent::Command(b.command(-9))
        );
        // A fresh start: snapshot listing it, then the copy with a new seq.
        let (c, rx) = conn(3, 64);
        let mut listed = Vec::new();
        s.attach(c, None, None, |e, q, p| {
            listed = p.clone();
            snap(e, q, p)
        });
        assert_eq!(listed, vec![b.command(-9)]);
        let _snapshot = rx.try_next();
        let Some(Next::Frame(f)) = rx.try_next() else {
            panic!("no command after the snapshot")
        };
        assert_eq!(f.seq(), Some(3));
        assert!(matches!(f, Frame::Copy(_)));
        assert_eq!(s.ack(3), vec![-9]);
        assert!(!s.has_pending());
    }

    #[test]
    fn the_ring_keeps_at_most_ring_events_and_gives_back_its_room() {
        let mut s = DeviceStream::new(vec![]);
        for i in 0..(RING as u64 * 2) {
            s.push(ev(i));
        }
        assert_eq!(s.kept(), RING);
        s.forget_older_than(Instant::now() + RESUME_WINDOW + Duration::from_secs(1));
        assert_eq!(s.kept(), 0);
        assert!(
            s.ring.capacity() <= 32,
            "room given back: {}",
            s.ring.capacity()
        );
    }

    /// Connections that wrote their copy of a broadcast read again only once every copy
    /// queued by the fan-out has left its queue: taken by its connection, or dropped
    /// with a connection that went away; one that was never queued (no connection, a
    /// full queue) does not count.
    #[tokio::test]
    async fn a_fan_out_ends_when_every_queued_copy_has_left_its_queue() {
        let b = Broadcast::fanning_out("message".into(), Some("closing".into()));
        let (c1, rx1) = conn(1, 8);
        let (c2, rx2) = conn(2, 8);
        let (c3, rx3) = conn(3, 1);
        let mut s1 = DeviceStream::new(vec![]);
        let mut s2 = DeviceStream::new(vec![]);
        let mut s3 = DeviceStream::new(vec![]);
        let mut idle = DeviceStream::new(vec![]);
        s1.attach(c1, None, None, snap);
        s2.attach(c2, None, None, snap);
        s3.attach(c3, None, None, snap); // its one slot holds the snapshot: full
        let wait = tokio::spawn(b.clone().until_fanned_out());
        for (n, s) in [&mut s1, &mut s2, &mut s3, &mut idle]
            .into_iter()
            .enumerate()
        {
            s.deliver(&b, -(n as i64) - 1, 1_000);
        }
        assert!(!s3.connected(), "a full queue closes its connection");
        b.fanned_out();
        assert!(b.is_fanning_out(), "two copies are still queued");
        // Connection 1 takes its snapshot, then its copy.
        assert!(matches!(rx1.try_next(), Some(Next::Frame(f)) if f.fanning_out().is_none()));
        let Some(Next::Frame(copy)) = rx1.try_next() else {
            panic!("no copy")
        };
        assert!(
            copy.fanning_out().is_some(),
            "its connection is told to wait"
        );
        assert!(b.is_fanning_out());
        assert!(!wait.is_finished());
        drop(rx2); // connection 2 went away with its copy unwritten
        assert!(!b.is_fanning_out());
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the waiter is told")
            .unwrap();
        assert!(copy.fanning_out().is_none());
        drop(rx3);
        // A broadcast that is not being fanned out (a copy loaded from storage) never
        // holds a connection up.
        let loaded = Broadcast::new("message".into(), None);
        assert!(!loaded.is_fanning_out());
        loaded.clone().until_fanned_out().await;
    }

    /// A copy that stays queued (a slow connection) holds the others up only until the
    /// fan-out is opened, as `fanned_out` arranges after `FAN_OUT_PATIENCE`.
    #[tokio::test]
    async fn a_fan_out_opened_early_lets_its_waiters_go() {
        let b = Broadcast::fanning_out("restart".into(), None);
        let (c, rx) = conn(1, 8);
        let mut s = DeviceStream::new(vec![]);
        s.attach(c, None, None, snap);
        s.deliver(&b, -1, 1_000);
        b.fanned_out();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(b.clone().until_fanned_out()))
            .collect();
        tokio::task::yield_now().await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        b.open();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("told")
                .unwrap();
        }
        // The copy leaving its queue later changes nothing.
        drop(rx);
        assert!(!b.is_fanning_out());
    }
}
