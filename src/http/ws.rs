//! WebSocket adapters (SPEC §9): `/ws/kiosk` (a device's stream, authenticated by its
//! HMAC secret before the upgrade), `/ws/user` (the phone's own session), `/ws/ops`
//! (every event). Each connection has a reader (this task) and a writer task fed by a
//! bounded channel: actors only ever `try_send` to it, and a connection that cannot keep
//! up is closed with `SLOW_CONSUMER`. Refusals happen before the 101. The pieces shared
//! with `/ws/attendance` (`ws_attendance.rs`): the connection cap, the upgrade limits, the
//! generic writer task and the idle-timed reader.

use std::future::IntoFuture;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;
use futures::{FutureExt, SinkExt, StreamExt};
use kioskd_actors::device::{Attach, Detach, wire_status};
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::stream::{ConnFrames, Next};
use kioskd_actors::{Event, catalog};
use kioskd_protocol::ws::{self as wire, ClientMessage, ErrorMsg, ServerEvent, ServerFrame, close};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use crate::devices::{self, KioskId};
use crate::identity;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ws/kiosk", get(kiosk))
        .route("/ws/user", get(user))
        .route("/ws/ops", get(ops))
}

pub(super) fn refuse(status: StatusCode, reason: &'static str) -> Response {
    metrics::counter!(catalog::WS_REFUSED, "reason" => reason).increment(1);
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}

pub use crate::kiosk_auth::signature;

/// Origins browsers may connect from.
pub(super) fn origin_allowed(s: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser
    };
    let allowed = &s.cfg.ws.allowed_origins;
    if allowed.is_empty() {
        // Our own pages: the public base URL, or the origin the request was sent to.
        let base = s.cfg.public.base_url.trim_end_matches('/');
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        return origin == base || (!host.is_empty() && origin_host == host);
    }
    allowed.iter().any(|a| a == origin)
}

/// Counts a connection under the caps; the guard gives its places back.
pub(super) struct Slot {
    s: AppState,
    user: Option<i64>,
    addr: Option<IpAddr>,
}

/// Takes one place under `cap` in `map[key]`, or none.
fn take_place<K: std::hash::Hash + Eq + Clone>(
    map: &dashmap::DashMap<K, usize>,
    key: &K,
    cap: usize,
) -> bool {
    let mut n = map.entry(key.clone()).or_insert(0);
    if *n >= cap {
        return false;
    }
    *n += 1;
    true
}

fn give_place<K: std::hash::Hash + Eq>(map: &dashmap::DashMap<K, usize>, key: &K) {
    map.remove_if_mut(key, |_, n| {
        *n = n.saturating_sub(1);
        *n == 0
    });
}

impl Slot {
    /// A kiosk's place: anywhere under `ws.max_connections` (the reserve is theirs).
    pub(super) fn kiosk(s: &AppState) -> Option<Slot> {
        let n = s.ws_connections.fetch_add(1, Ordering::AcqRel);
        if n >= s.cfg.ws.max_connections {
            s.ws_connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot {
            s: s.clone(),
            user: None,
            addr: None,
        })
    }

    /// Any other socket's place: under the total less the kiosks' reserve, under the
    /// per-address cap and (for a phone) the per-user cap. `Err` names the cap.
    pub(super) fn other(
        s: &AppState,
        addr: IpAddr,
        user: Option<i64>,
    ) -> Result<Slot, &'static str> {
        let cap = s.cfg.ws.max_connections - s.cfg.ws.reserved_for_kiosks;
        let n = s.ws_connections.fetch_add(1, Ordering::AcqRel);
        if n >= cap {
            s.ws_connections.fetch_sub(1, Ordering::AcqRel);
            return Err("too_many_connections");
        }
        // From here on, dropping the slot gives back whatever it holds.
        let mut slot = Slot {
            s: s.clone(),
            user: None,
            addr: None,
        };
        if !take_place(&s.ws_per_address, &addr, s.cfg.ws.max_per_address) {
            return Err("too_many_from_address");
        }
        slot.addr = Some(addr);
        if let Some(u) = user {
            if !take_place(&s.ws_per_user, &u, s.cfg.ws.max_per_user) {
                return Err("too_many_for_user");
            }
            slot.user = Some(u);
        }
        Ok(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.s.ws_connections.fetch_sub(1, Ordering::AcqRel);
        if let Some(a) = &self.addr {
            give_place(&self.s.ws_per_address, a);
        }
        if let Some(u) = &self.user {
            give_place(&self.s.ws_per_user, u);
        }
    }
}

/// A socket's incoming message budget (`ws.messages_per_second`, `ws.message_burst`):
/// one GCRA limiter per connection.
pub(super) struct MessageBudget(governor::DefaultDirectRateLimiter);

impl MessageBudget {
    pub(super) fn new(s: &AppState) -> Self {
        Self::scaled(s, 1)
    }

    /// `scale` times the configured budget (bridges relay many terminals' traffic).
    pub(super) fn scaled(s: &AppState, scale: u32) -> Self {
        let per_s = std::num::NonZeroU32::new(s.cfg.ws.messages_per_second.saturating_mul(scale))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let burst = std::num::NonZeroU32::new(s.cfg.ws.message_burst.saturating_mul(scale))
            .unwrap_or(std::num::NonZeroU32::MIN);
        Self(governor::RateLimiter::direct(
            governor::Quota::per_second(per_s).allow_burst(burst),
        ))
    }

    /// One more message: `Err(code)` closes the socket.
    pub(super) fn spend(&self, kind: &'static str) -> Result<(), u16> {
        self.0.check().map_err(|_| {
            metrics::counter!(catalog::WS_RATE_LIMITED, "kind" => kind).increment(1);
            close::RATE_LIMITED
        })
    }
}

fn configure(ws: WebSocketUpgrade, s: &AppState) -> WebSocketUpgrade {
    configure_limits(ws, s, s.cfg.ws.max_message_bytes)
}

/// The upgrade's limits: largest message `max_message`, the small configured read
/// buffer, no write buffering beyond a few messages.
pub(super) fn configure_limits(
    ws: WebSocketUpgrade,
    s: &AppState,
    max_message: usize,
) -> WebSocketUpgrade {
    ws.max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(s.cfg.ws.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(max_message * 4)
}

#[derive(Deserialize)]
struct KioskQuery {
    device_code: Option<String>,
    client_id: Option<String>,
    ts: Option<String>,
    nonce: Option<String>,
    sig: Option<String>,
}

fn param(q: &Option<String>, headers: &HeaderMap, name: &str) -> Option<String> {
    q.clone()
        .or_else(|| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .filter(|v| !v.is_empty())
}

/// `GET /ws/kiosk?device_code=..|client_id=..[&ts&nonce&sig]`.
async fn kiosk(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<KioskQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return refuse(StatusCode::BAD_REQUEST, "bad_query");
    };
    let ws = match accept(ws, &s, &headers) {
        Ok(ws) => ws,
        Err(r) => return r,
    };
    let normalized;
    let id = match (&q.device_code, &q.client_id) {
        (Some(code), _) => match normalize_device_code(code) {
            Some(c) => {
                normalized = c;
                KioskId::Code(&normalized)
            }
            None => return refuse(StatusCode::FORBIDDEN, "unknown_device"),
        },
        (None, Some(id)) => KioskId::ClientId(id),
        (None, None) => return refuse(StatusCode::BAD_REQUEST, "no_device"),
    };
    let (device, secret) = match devices::kiosk_credentials(&s, id).await {
        Ok(Some(d)) => d,
        Ok(None) => return refuse(StatusCode::FORBIDDEN, "unknown_device"),
        Err(e) => {
            tracing::error!(error = %e, "ws kiosk lookup failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "storage");
        }
    };
    match secret {
        Some(secret) => {
            let nonce = param(&q.nonce, &headers, "x-kiosk-nonce");
            let now_s = s.coord.clock().now_ms() / 1000;
            if let Err(e) = crate::kiosk_auth::check(
                &secret,
                &device.code,
                param(&q.ts, &headers, "x-kiosk-ts").as_deref(),
                nonce.as_deref(),
                param(&q.sig, &headers, "x-kiosk-sig").as_deref(),
                now_s,
                s.cfg.ws.signature_skew_seconds,
            ) {
                return refuse(StatusCode::UNAUTHORIZED, e.reason());
            }
            let nonce = nonce.unwrap_or_default();
            // A nonce is accepted once (remembered past the skew window).
            let key = format!("{}:{nonce}", device.id);
            let expiry = now_s + 2 * s.cfg.ws.signature_skew_seconds;
            if !s.remember_nonce(key, expiry).await {
                return refuse(StatusCode::UNAUTHORIZED, "signature_replayed");
            }
        }
        None if s.cfg.ws.allow_unsigned => {}
        None => return refuse(StatusCode::UNAUTHORIZED, "unsigned_not_allowed"),
    }
    let Some(slot) = Slot::kiosk(&s) else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too_many_connections");
    };
    // One box in axum's upgrade closure rather than its three captures: the upgrade
    // task keeps that closure's place beside the connection's future for the
    // connection's life (`kiosk_conn`).
    let conn = Box::new(KioskConn {
        code: device.code.clone(),
        slot,
    });
    configure(ws, &s)
        .on_upgrade(move |socket| kiosk_conn(socket, conn))
        .into_response()
}

/// What a kiosk's connection task starts from (besides its socket).
struct KioskConn {
    code: String,
    slot: Slot,
}

/// What ends a connection's writer.
enum Stop {
    /// The device (or a newer connection) closed it.
    Kicked(u16),
    /// The reader side is done; close with this code.
    Local(u16),
    /// Shutdown.
    Shutdown,
}

/// Timing and labelling of a connection's writer.
pub(super) struct WriterOpts {
    ping: Duration,
    write_timeout: Duration,
    kind: &'static str,
}

impl WriterOpts {
    pub(super) fn new(s: &AppState, kind: &'static str) -> Self {
        Self {
            ping: Duration::from_secs(s.cfg.ws.ping_seconds),
            write_timeout: Duration::from_millis(s.cfg.ws.write_timeout_ms),
            kind,
        }
    }
}

/// A frame a writer can time: live pushes carry the instant they were produced.
pub(super) trait Timed {
    /// When the frame was produced for a live push, if it was.
    fn queued_at(&self) -> Option<std::time::Instant> {
        None
    }
}

impl Timed for ServerFrame {
    fn queued_at(&self) -> Option<std::time::Instant> {
        self.queued_at
    }
}

impl Timed for kioskd_actors::stream::Frame {
    fn queued_at(&self) -> Option<std::time::Instant> {
        kioskd_actors::stream::Frame::queued_at(self)
    }
}

/// Counts a written frame and, for a live push, its latency from production to the
/// socket.
fn pushed(kind: &'static str, f: &impl Timed) {
    metrics::counter!(catalog::WS_PUSHED, "kind" => kind).increment(1);
    if let Some(at) = f.queued_at() {
        metrics::histogram!(catalog::WS_PUSH_LATENCY, "kind" => kind)
            .record(at.elapsed().as_secs_f64());
    }
}

/// Writes frames (any serializable type) until told to stop, pinging on an interval; a
/// frame that cannot be written within the write timeout closes with `SLOW_CONSUMER`.
pub(super) async fn writer<F: serde::Serialize + Timed + Send + Sync + 'static>(
    mut sink: futures::stream::SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Arc<F>>,
    mut kick: oneshot::Receiver<u16>,
    mut local: oneshot::Receiver<u16>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    opts: WriterOpts,
) {
    let WriterOpts {
        ping,
        write_timeout,
        kind,
    } = opts;
    let mut tick = tokio::time::interval(ping);
    tick.tick().await;
    // The device drops its end of `kick` when the connection detaches; that is not a kick.
    let mut kick_open = true;
    let stop = loop {
        tokio::select! {
            biased;
            code = &mut kick, if kick_open => match code {
                Ok(c) => break Stop::Kicked(c),
                Err(_) => kick_open = false,
            },
            code = &mut local => break Stop::Local(code.unwrap_or(close::NORMAL)),
            _ = shutdown.changed() => break Stop::Shutdown,
            f = rx.recv() => match f {
                Some(f) => {
                    let text = match serde_json::to_string(&*f) {
                        Ok(t) => t,
                        Err(_) => continue,
                    };
                    let sent = tokio::time::timeout(write_timeout, sink.send(WsMessage::Text(Utf8Bytes::from(text)))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break Stop::Local(close::SLOW_CONSUMER);
                    }
                    pushed(kind, &*f);
                }
                None => break Stop::Local(close::NORMAL),
            },
            _ = tick.tick() => {
                if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                    break Stop::Local(close::NORMAL);
                }
            }
        }
    };
    if let Stop::Local(_) = stop {
        // The reader's last words (an `error` frame saying why) go out before the close.
        while let Ok(f) = rx.try_recv() {
            let Ok(text) = serde_json::to_string(&*f) else {
                continue;
            };
            let sent = tokio::time::timeout(
                write_timeout,
                sink.send(WsMessage::Text(Utf8Bytes::from(text))),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
    }
    let code = match stop {
        Stop::Kicked(c) | Stop::Local(c) => c,
        Stop::Shutdown => close::GOING_AWAY,
    };
    let reason = close_reason(code);
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        sink.send(WsMessage::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }))),
    )
    .await;
    let _ = sink.close().await;
}

/// The reason text sent with a close code.
fn close_reason(code: u16) -> &'static str {
    match code {
        close::REPLACED => "replaced by a newer connection",
        close::SLOW_CONSUMER => "slow consumer",
        close::IDLE_TIMEOUT => "idle timeout",
        close::GOING_AWAY => "server shutting down",
        close::UNSUPPORTED_DATA => "text frames only",
        close::TOO_BIG => "message too big",
        close::PROTOCOL_ERROR => "too many malformed messages",
        close::FORBIDDEN => "forbidden",
        close::INTERNAL => "internal error",
        _ => "",
    }
}

/// Malformed messages tolerated (each answered with an `error` event) before closing.
pub(super) const MAX_BAD_MESSAGES: u32 = 10;

/// Reads one frame with the idle timeout. `Err(code)` ends the connection.
pub(super) async fn read_frame(
    stream: &mut futures::stream::SplitStream<WebSocket>,
    idle: Duration,
) -> Result<WsMessage, u16> {
    match tokio::time::timeout(idle, stream.next()).await {
        Err(_) => Err(close::IDLE_TIMEOUT),
        Ok(None) => Err(close::NORMAL),
        Ok(Some(Err(e))) => {
            let text = e.to_string();
            Err(
                if text.contains("too long")
                    || text.contains("Space limit")
                    || text.contains("size")
                {
                    close::TOO_BIG
                } else {
                    close::NORMAL
                },
            )
        }
        Ok(Some(Ok(m))) => Ok(m),
    }
}

fn unsequenced(event: ServerEvent) -> Arc<ServerFrame> {
    Arc::new(ServerFrame {
        event,
        seq: None,
        queued_at: Some(std::time::Instant::now()),
    })
}

/// Serves one kiosk in one task: frames from the device's queue go out, frames from the
/// kiosk go to its device through a `KioskLink` (heartbeats and acks recorded on this
/// task, the rest told to the device's actor). (One task rather than a reader and a
/// writer: a kiosk connection is mostly idle, and its memory is what a fleet pays for.)
///
/// A plain `fn` returning the task's future, not an `async fn`: an `async fn` keeps its
/// arguments twice for the connection's life (as captured and as moved into its
/// locals: the 368-byte `WebSocket` among them), and the task's size decides the
/// allocator class every connected kiosk pays (`a_kiosk_connection_task_fits_its_size_class`).
#[expect(
    clippy::boxed_local,
    reason = "the box is axum's upgrade closure's one capture (see `kiosk`)"
)]
fn kiosk_conn(
    mut socket: WebSocket,
    conn: Box<KioskConn>,
) -> impl std::future::Future<Output = ()> + Send {
    let KioskConn { code, slot } = *conn;
    async move {
        let s = &slot.s;
        metrics::gauge!(catalog::WS_CONNECTIONS, "kind" => "kiosk").increment(1);
        s.kiosk_sockets.fetch_add(1, Ordering::Relaxed);
        let code_sent = serve_kiosk(s, &mut socket, &code).await;
        let reason = close_reason(code_sent);
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(2),
            socket.send(WsMessage::Close(Some(CloseFrame {
                code: code_sent,
                reason: Utf8Bytes::from_static(reason),
            }))),
        ))
        .await;
        metrics::gauge!(catalog::WS_CONNECTIONS, "kind" => "kiosk").decrement(1);
        s.kiosk_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What happened to one incoming frame.
enum Incoming {
    /// Pass this to the device (None: only a sign of life).
    Deliver(Option<ClientMessage>),
    /// Close with this code.
    Close(u16),
}

fn incoming(msg: WsMessage, bad: &mut u32, tx: &ConnFrames) -> Incoming {
    match msg {
        WsMessage::Text(t) => match serde_json::from_str::<ClientMessage>(&t) {
            Ok(m) => Incoming::Deliver(Some(m)),
            Err(e) => {
                *bad += 1;
                tx.try_send(unsequenced(ErrorMsg::event(
                    "bad_message",
                    format!("not a protocol message: {e}"),
                )));
                if *bad > MAX_BAD_MESSAGES {
                    Incoming::Close(close::PROTOCOL_ERROR)
                } else {
                    // Still a sign of life.
                    Incoming::Deliver(None)
                }
            }
        },
        WsMessage::Binary(_) => Incoming::Close(close::UNSUPPORTED_DATA),
        WsMessage::Close(_) => Incoming::Close(close::NORMAL),
        WsMessage::Ping(_) | WsMessage::Pong(_) => Incoming::Deliver(None),
    }
}

fn read_error_code(e: axum::Error) -> u16 {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") || text.contains("size") {
        close::TOO_BIG
    } else {
        close::NORMAL
    }
}

/// The connection's life; returns the close code to send. (A plain `fn` for the reason
/// `kiosk_conn` is one.)
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps its arguments twice in the connection's future"
)]
fn serve_kiosk<'a>(
    s: &'a AppState,
    socket: &'a mut WebSocket,
    code: &'a str,
) -> impl std::future::Future<Output = u16> + Send + 'a {
    async move {
        let idle = Duration::from_secs(s.cfg.ws.idle_timeout_seconds);
        let write_timeout = Duration::from_millis(s.cfg.ws.write_timeout_ms);
        let ask_timeout = s.coord.config().ask_timeout;
        // The awaits taken once per connection (or once per incoming message) are boxed: a
        // task keeps its future for the connection's whole life, and a future is as large as
        // its largest await state, so an inline lookup, ask or timeout would cost every
        // idle kiosk its size (BENCHMARKS.md, "memory per kiosk").
        let link = match Box::pin(s.coord.kiosk_link(code)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(device = %code, error = %e, "ws kiosk: device unavailable");
                return close::INTERNAL;
            }
        };
        // The first frame may be `hello` (resume); anything else starts fresh and is then
        // handled as usual. (In a block, so that the first frame's place is not kept.)
        let (resume_from, epoch, mut pending) = {
            let first = match Box::pin(tokio::time::timeout(
                Duration::from_secs(10).min(idle),
                socket.recv(),
            ))
            .await
            {
                Err(_) => return close::IDLE_TIMEOUT,
                Ok(None) => return close::NORMAL,
                Ok(Some(Err(e))) => return read_error_code(e),
                Ok(Some(Ok(m))) => m,
            };
            match first {
                WsMessage::Text(t) => match serde_json::from_str::<ClientMessage>(&t) {
                    Ok(ClientMessage::Hello(h)) => (h.resume_from, h.epoch, None),
                    _ => (None, None, Some(WsMessage::Text(t))),
                },
                other => (None, None, Some(other)),
            }
        };
        let conn_id = s.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (conn, frames) = kioskd_actors::stream::connection(conn_id, s.cfg.ws.queue.max(2));
        let attach = link
            .actor()
            .ask(Attach {
                conn,
                resume_from,
                epoch,
            })
            .reply_timeout(ask_timeout);
        if Box::pin(attach.into_future()).await.is_err() {
            return close::INTERNAL;
        }
        let mut shutdown = s.shutdown.clone();
        // One wait for the shutdown signal for the connection's life: a `changed()` made
        // afresh on every pass of the loop entered and left the signal's shared waiter list
        // twice per frame (BENCHMARKS.md, durable broadcast).
        let mut shutting_down = std::pin::pin!(shutdown.changed());
        // One timer for the connection's life, for the next ping and the idle timeout, armed
        // again only when it fires: a fresh idle timer per frame was a timer-wheel insert and
        // removal for every frame and every ack (BENCHMARKS.md, durable broadcast).
        let ping_every = Duration::from_secs(s.cfg.ws.ping_seconds);
        let start = tokio::time::Instant::now();
        let mut next_ping = start + ping_every;
        let mut heard_at = start;
        let mut timer = Box::pin(tokio::time::sleep_until(next_ping.min(heard_at + idle)));
        let mut bad = 0u32;
        let budget = MessageBudget::new(s);
        // Set while a broadcast this connection has written is still going out to other
        // kiosks: nothing is read from this one until then, so its ack does not compete
        // with the copies not yet written (BENCHMARKS.md, durable broadcast).
        // A connection waits again only once it has read something since its last
        // wait: broadcasts coming faster than they fan out cannot keep a kiosk unread.
        let mut fan_out: Option<FanOutWait> = None;
        let mut read_since_wait = true;
        let code_out = loop {
            if let Some(m) = pending.take() {
                // A heartbeat or an ack is taken on this task; the rest is told to the
                // device, not asked: an answer comes back through the stream. The tell
                // waits only while the device's mailbox is full (back-pressure). (Made in
                // one statement and awaited after it, so that the frame's temporaries are
                // not kept across the await.)
                let tell = match incoming(m, &mut bad, &frames) {
                    Incoming::Close(c) => break c,
                    Incoming::Deliver(parsed) => link
                        .from_kiosk(conn_id, parsed)
                        .map(|msg| Box::pin(link.actor().tell(msg).send())),
                };
                if let Some(tell) = tell
                    && tell.await.is_err()
                {
                    break close::INTERNAL;
                }
            }
            tokio::select! {
                biased;
                _ = &mut shutting_down => break close::GOING_AWAY,
                // The device's close (a newer connection, a slow consumer, removal) before
                // any queued frame; then the frames in order.
                n = frames.next() => {
                    let f = match n {
                        Next::Kicked(c) => break c,
                        Next::Frame(f) => f,
                    };
                    let Some(text) = f.to_json() else { continue };
                    if !send_within(socket, WsMessage::Text(Utf8Bytes::from(text)), write_timeout).await {
                        break close::SLOW_CONSUMER;
                    }
                    pushed("kiosk", &f);
                    if read_since_wait && let Some(b) = f.fanning_out() {
                        fan_out = Some(Box::pin(b.clone().until_fanned_out()));
                        read_since_wait = false;
                    }
                }
                () = fanned_out(&mut fan_out) => fan_out = None,
                m = socket.recv(), if fan_out.is_none() => match m {
                    None => break close::NORMAL,
                    Some(Err(e)) => break read_error_code(e),
                    Some(Ok(m)) => {
                        if let Err(c) = budget.spend("kiosk") {
                            break c;
                        }
                        heard_at = tokio::time::Instant::now();
                        read_since_wait = true;
                        pending = Some(m);
                    }
                },
                () = &mut timer => {
                    let now = tokio::time::Instant::now();
                    if now >= heard_at + idle {
                        break close::IDLE_TIMEOUT;
                    }
                    if now >= next_ping {
                        if !send_within(socket, WsMessage::Ping(Default::default()), write_timeout).await {
                            break close::NORMAL;
                        }
                        next_ping = now + ping_every;
                    }
                    timer.as_mut().reset(next_ping.min(heard_at + idle));
                }
            }
        };
        let _ = link.actor().tell(Detach(conn_id)).try_send();
        code_out
    }
}

/// A wait for a broadcast's fan-out to end.
type FanOutWait = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Ends when the fan-out waited for ends; never when there is none.
fn fanned_out(wait: &mut Option<FanOutWait>) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| match wait {
        Some(w) => w.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
}

/// Sends `msg` within `limit`; `false` when it could not be. The timeout (a boxed timer)
/// is set up only when the socket does not take the frame at once, which on a kiosk's
/// connection is almost never (BENCHMARKS.md, durable broadcast).
/// (A plain `fn`: an `async fn` would keep the message twice in the connection's
/// future while the frame is written.)
fn send_within<'a>(
    socket: &'a mut WebSocket,
    msg: WsMessage,
    limit: Duration,
) -> impl std::future::Future<Output = bool> + Send + 'a {
    // The sink's `send` (a future that may be polled again), not axum's `async fn`.
    let mut send = SinkExt::send(socket, msg);
    async move {
        match (&mut send).now_or_never() {
            Some(r) => r.is_ok(),
            None => matches!(
                Box::pin(tokio::time::timeout(limit, send)).await,
                Ok(Ok(()))
            ),
        }
    }
}

/// The wire form of a coordinator event (user and ops streams).
pub fn to_wire(e: &Event, now: i64) -> ServerEvent {
    match e.clone() {
        Event::SessionStarted {
            device_code,
            session_id,
            user_id,
            paid_until,
            started_at,
            charge_mode,
            balance,
            units_left,
        } => ServerEvent::SessionStarted(wire::SessionInfo {
            session_id,
            device_code,
            user_id,
            started_at,
            charge_mode,
            cost: charge_mode,
            balance,
            minutes_left: units_left,
            paid_until,
        }),
        Event::Billing {
            device_code,
            session_id,
            units,
            cost,
            balance,
            units_left,
            paid_until,
            ..
        } => ServerEvent::Billing(wire::Billing {
            session_id,
            device_code,
            minutes: units,
            cost,
            balance,
            minutes_left: units_left,
            paid_until,
            server_time: now,
        }),
        Event::BalanceLow {
            device_code,
            session_id,
            units_left,
            ..
        } => ServerEvent::BalanceLow(wire::BalanceLow {
            session_id,
            device_code,
            minutes_left: units_left,
        }),
        Event::SessionEnded {
            device_code,
            session_id,
            reason,
            cost,
            order_id,
            ..
        } => ServerEvent::SessionEnded(wire::SessionEnded {
            session_id,
            device_code,
            reason: reason.as_str().to_string(),
            cost,
            order_id,
        }),
        Event::DeviceStatus {
            device_code,
            status,
        } => ServerEvent::DeviceStatus(wire::DeviceStatusMsg {
            device_code,
            status: wire_status(status),
        }),
    }
}

fn event_user(e: &Event) -> Option<i64> {
    match e {
        Event::SessionStarted { user_id, .. }
        | Event::Billing { user_id, .. }
        | Event::BalanceLow { user_id, .. }
        | Event::SessionEnded { user_id, .. } => Some(*user_id),
        Event::DeviceStatus { .. } => None,
    }
}

/// A feed of coordinator events (user or ops): snapshot first, then live events that
/// pass `filter`; incoming frames only count as liveness.
async fn feed(
    s: AppState,
    socket: WebSocket,
    kind: &'static str,
    snapshot: ServerEvent,
    filter: impl Fn(&Event) -> bool + Send + 'static,
    slot: Slot,
) {
    let _slot = slot;
    metrics::gauge!(catalog::WS_CONNECTIONS, "kind" => kind).increment(1);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(s.cfg.ws.queue.max(2));
    let (kick_tx, kick_rx) = oneshot::channel::<u16>();
    let (local_tx, local_rx) = oneshot::channel();
    let w = tokio::spawn(writer(
        sink,
        rx,
        kick_rx,
        local_rx,
        s.shutdown.clone(),
        WriterOpts::new(&s, kind),
    ));
    let _ = tx.try_send(unsequenced(snapshot));
    let mut events = s.coord.events().subscribe();
    // Events of other nodes (through the Redis broker, when configured).
    let mut remote = s.remote.subscribe();
    let clock = s.coord.clock();
    let pump_tx = tx.clone();
    // Events to the writer; a full queue or a lagging subscription closes the feed.
    let pump = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                e = events.recv() => e,
                e = remote.recv() => e,
            };
            match next {
                Ok(e) => {
                    if filter(&e)
                        && pump_tx
                            .try_send(unsequenced(to_wire(&e, clock.now_ms())))
                            .is_err()
                    {
                        metrics::counter!(catalog::WS_SLOW_CONSUMERS).increment(1);
                        let _ = kick_tx.send(close::SLOW_CONSUMER);
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!(catalog::WS_SLOW_CONSUMERS).increment(1);
                    let _ = kick_tx.send(close::SLOW_CONSUMER);
                    return;
                }
                Err(_) => return,
            }
        }
    });
    let idle = Duration::from_secs(s.cfg.ws.idle_timeout_seconds);
    let budget = MessageBudget::new(&s);
    let code = loop {
        let frame = read_frame(&mut stream, idle).await;
        if frame.is_ok()
            && let Err(c) = budget.spend(kind)
        {
            break c;
        }
        match frame {
            Ok(WsMessage::Binary(_)) => break close::UNSUPPORTED_DATA,
            Ok(WsMessage::Close(_)) => break close::NORMAL,
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    let _ = local_tx.send(code);
    pump.abort();
    drop(tx);
    let _ = w.await;
    metrics::gauge!(catalog::WS_CONNECTIONS, "kind" => kind).decrement(1);
}

/// `GET /ws/user`: the signed-in phone's own session events.
async fn user(
    State(s): State<AppState>,
    crate::net::ClientIp(ip): crate::net::ClientIp,
    headers: HeaderMap,
    jar: SignedCookieJar,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match accept(ws, &s, &headers) {
        Ok(ws) => ws,
        Err(r) => return r,
    };
    let user = match identity::active(&s, &jar).await {
        Ok(Some(u)) => u,
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "not_signed_in"),
        Err(e) => {
            tracing::error!(error = %e, "ws user lookup failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "storage");
        }
    };
    let now = s.coord.clock().now_ms();
    let session = match s.coord.user_session(user.id).await {
        Ok(v) => v.map(|v| wire::SessionInfo {
            session_id: v.id,
            device_code: v.device_code,
            user_id: v.user_id,
            started_at: v.started_at,
            charge_mode: v.charge_mode,
            cost: v.reserved * v.charge_mode,
            balance: v.balance,
            minutes_left: if v.charge_mode > 0 {
                (v.balance / v.charge_mode).min(kioskd_actors::billing::UNLIMITED_UNITS)
            } else {
                kioskd_actors::billing::UNLIMITED_UNITS
            },
            paid_until: v.paid_until,
        }),
        Err(_) => None,
    };
    let snapshot = ServerEvent::Snapshot(wire::Snapshot {
        version: wire::WS_PROTOCOL_VERSION,
        epoch: String::new(),
        seq: 0,
        server_time: now,
        device: None,
        session,
        pending_commands: vec![],
        unpaid_order: None,
    });
    let slot = match Slot::other(&s, ip, Some(user.id)) {
        Ok(slot) => slot,
        Err(why) => return refuse(StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let uid = user.id;
    configure(ws, &s)
        .on_upgrade(move |socket| {
            feed(
                s,
                socket,
                "user",
                snapshot,
                move |e| event_user(e) == Some(uid),
                slot,
            )
        })
        .into_response()
}

/// The upgrade itself (or axum's refusal of a request that is not one) and the browser
/// Origin check every WebSocket endpoint makes first.
pub(super) fn accept(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    s: &AppState,
    headers: &HeaderMap,
) -> Result<WebSocketUpgrade, Response> {
    let ws = ws.map_err(IntoResponse::into_response)?;
    if !origin_allowed(s, headers) {
        return Err(refuse(StatusCode::FORBIDDEN, "origin"));
    }
    Ok(ws)
}

/// `?token=` on an upgrade (for clients that cannot set headers).
#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// The token an upgrade presents: `Authorization: Bearer` first, else `?token=`.
pub(super) fn presented_token(
    headers: &HeaderMap,
    q: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| q.ok().and_then(|Query(q)| q.token))
        .filter(|t| !t.is_empty())
}

/// `GET /ws/ops`: every device and session event.
async fn ops(
    State(s): State<AppState>,
    crate::net::ClientIp(ip): crate::net::ClientIp,
    headers: HeaderMap,
    q: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match accept(ws, &s, &headers) {
        Ok(ws) => ws,
        Err(r) => return r,
    };
    // The shared token, a personal token, or the console's cookie; a cookie only from a
    // page of our own origin (cross-site WebSocket hijacking).
    let qtoken = q.ok().and_then(|Query(q)| q.token);
    match super::authz::principal(&s, &headers, qtoken.as_deref()).await {
        Ok(Some(p))
            if p.via != crate::operators::Via::Session
                || super::authz::same_origin(&headers, &s.cfg.public.base_url) => {}
        Ok(_) => return refuse(StatusCode::UNAUTHORIZED, "ops_token"),
        Err(e) => {
            tracing::error!(error = %e, "ops socket: sign-in lookup failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        }
    }
    let snapshot = ServerEvent::Snapshot(wire::Snapshot {
        version: wire::WS_PROTOCOL_VERSION,
        epoch: String::new(),
        seq: 0,
        server_time: s.coord.clock().now_ms(),
        device: None,
        session: None,
        pending_commands: vec![],
        unpaid_order: None,
    });
    let slot = match Slot::other(&s, ip, None) {
        Ok(slot) => slot,
        Err(why) => return refuse(StatusCode::SERVICE_UNAVAILABLE, why),
    };
    configure(ws, &s)
        .on_upgrade(move |socket| feed(s, socket, "ops", snapshot, |_| true, slot))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, R>(_: fn(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every connected kiosk pays for its connection task: tokio's task cell (a 32-byte
    /// header, the scheduler handle, task id and stage tag, axum's upgrade future
    /// around this one with its own ~136 bytes of captures, a 48-byte trailer) aligned
    /// to 128 bytes, so the cell is this future + ~240 rounded up to 128. mimalloc
    /// serves a 1,408-byte cell from its 1,536-byte class and a 1,536-byte one from the
    /// 1,792 class (~1.8 KB), so at most 1,168 here. It was 1,712 (a 2,048-byte cell)
    /// while `kiosk_conn`, `serve_kiosk` and `send_within` were `async fn`s keeping
    /// their arguments twice.
    #[test]
    fn a_kiosk_connection_task_fits_its_size_class() {
        let n = returned_size(kiosk_conn);
        assert!(
            n <= 1168,
            "kiosk_conn's future is {n} bytes: its task cell leaves mimalloc's 1,536-byte class"
        );
    }
}
