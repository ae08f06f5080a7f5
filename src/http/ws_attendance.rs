//! `/ws/attendance` (`protocol/ATTENDANCE.md`, "Bridge WebSocket"): an attendance bridge
//! authenticates at the upgrade with its token, names the terminals it serves in `hello`,
//! and from then on each of those terminals' actors pushes its commands to this
//! connection's writer the moment they are queued (`try_send` on a bounded queue: a bridge
//! that does not keep up is closed as a slow consumer, never waited for). The bridge's
//! `ack` and `result` frames go to the terminal's actor and are answered with `recorded`
//! once stored. Limits, the writer task, the idle-timed reader and the shutdown close are
//! those of `ws.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use kioskd_actors::catalog;
use kioskd_actors::terminal::{TermError, TerminalRecord, WsAnswer, WsLink, WsOutcome};
use kioskd_protocol::attendance::{self as wire, BridgeMessage, ServerMessage};
use kioskd_protocol::ws::close;
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::ws::{
    MAX_BAD_MESSAGES, Slot, Timed, TokenQuery, WriterOpts, accept, configure_limits,
    presented_token, read_frame, refuse, writer,
};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ws/attendance", get(upgrade))
}

/// How long a new connection has to send `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a live connection's terminals are recorded as heard.
const ALIVE_EVERY: Duration = Duration::from_secs(60);

/// `GET /ws/attendance` with `Authorization: Bearer <bridge token>` (or `?token=`).
async fn upgrade(
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
    let Some(token) = presented_token(&headers, q) else {
        return refuse(StatusCode::UNAUTHORIZED, "no_token");
    };
    let owned = match crate::attendance::terminals_for_token(&s, &token).await {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return refuse(StatusCode::FORBIDDEN, "wrong_token"),
        Err(e) => {
            tracing::error!(error = %e, "ws attendance token lookup failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "storage");
        }
    };
    let slot = match Slot::other(&s, ip, None) {
        Ok(slot) => slot,
        Err(why) => return refuse(StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let max = wire::MAX_MESSAGE_BYTES.min(s.cfg.ws.max_message_bytes);
    configure_limits(ws, &s, max)
        .on_upgrade(move |socket| conn(s, socket, owned, slot))
        .into_response()
}

/// One bridge connection: a writer task fed by a bounded queue (shared with the
/// terminals' actors) and this reader.
async fn conn(s: AppState, socket: WebSocket, owned: Vec<TerminalRecord>, slot: Slot) {
    let _slot = slot;
    metrics::gauge!(catalog::WS_CONNECTIONS, "kind" => "attendance").increment(1);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Arc<ServerMessage>>(s.cfg.ws.queue.max(2));
    let (kick_tx, kick_rx) = oneshot::channel();
    let (local_tx, local_rx) = oneshot::channel();
    let mut w = tokio::spawn(writer(
        sink,
        rx,
        kick_rx,
        local_rx,
        s.shutdown.clone(),
        WriterOpts::new(&s, "attendance"),
    ));
    let id = s.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let link = WsLink::new(id, tx.clone(), kick_tx);
    let mut served = Vec::new();
    let code = tokio::select! {
        c = serve(&s, &mut stream, &tx, &link, &owned, &mut served) => Some(c),
        // The writer closed the connection (replaced, slow consumer, shutdown).
        _ = &mut w => None,
    };
    for sn in &served {
        s.terminals.ws_detach(sn, id);
    }
    if let Some(code) = code {
        let _ = local_tx.send(code);
        drop(link);
        drop(tx);
        let _ = w.await;
    }
    metrics::gauge!(catalog::WS_CONNECTIONS, "kind" => "attendance").decrement(1);
}

/// Attendance frames are not timed (their latency is the command latency histogram).
impl Timed for ServerMessage {}

fn say(tx: &mpsc::Sender<Arc<ServerMessage>>, m: ServerMessage) -> bool {
    if tx.try_send(Arc::new(m)).is_ok() {
        true
    } else {
        metrics::counter!(catalog::WS_SLOW_CONSUMERS).increment(1);
        false
    }
}

/// The first frame that is not a ping or pong, within the hello timeout.
async fn first_frame(
    stream: &mut futures::stream::SplitStream<WebSocket>,
    idle: Duration,
) -> Result<WsMessage, u16> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT.min(idle);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match read_frame(stream, left).await? {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            m => return Ok(m),
        }
    }
}

/// The connection's life; returns the close code to send. `served` collects the
/// terminals attached so far (detached by the caller).
async fn serve(
    s: &AppState,
    stream: &mut futures::stream::SplitStream<WebSocket>,
    tx: &mpsc::Sender<Arc<ServerMessage>>,
    link: &WsLink,
    owned: &[TerminalRecord],
    served: &mut Vec<String>,
) -> u16 {
    let idle = Duration::from_secs(s.cfg.ws.idle_timeout_seconds);
    let hello = match first_frame(stream, idle).await {
        Err(code) => return code,
        Ok(WsMessage::Text(t)) => match serde_json::from_str::<BridgeMessage>(&t) {
            Ok(BridgeMessage::Hello(h)) => h,
            Ok(_) => {
                say(
                    tx,
                    ServerMessage::error("hello_expected", "the first frame must be hello"),
                );
                return close::PROTOCOL_ERROR;
            }
            Err(e) => {
                say(
                    tx,
                    ServerMessage::error("bad_message", format!("not a protocol message: {e}")),
                );
                return close::PROTOCOL_ERROR;
            }
        },
        Ok(WsMessage::Binary(_)) => return close::UNSUPPORTED_DATA,
        Ok(_) => return close::NORMAL,
    };
    if hello.version != wire::ATTENDANCE_WS_VERSION {
        say(
            tx,
            ServerMessage::error(
                "unsupported_version",
                format!(
                    "version {} is not spoken here; this server speaks {}",
                    hello.version,
                    wire::ATTENDANCE_WS_VERSION
                ),
            ),
        );
        return close::PROTOCOL_ERROR;
    }
    let mut want: Vec<&TerminalRecord> = Vec::new();
    if hello.terminals.is_empty() {
        want.extend(owned);
    } else {
        for sn in &hello.terminals {
            match owned.iter().find(|t| &t.sn == sn) {
                Some(t) if !want.iter().any(|w| w.sn == t.sn) => want.push(t),
                Some(_) => {}
                None => {
                    say(
                        tx,
                        ServerMessage::error(
                            "unknown_terminal",
                            format!("{sn} is not registered with this token"),
                        ),
                    );
                    return close::FORBIDDEN;
                }
            }
        }
    }
    say(
        tx,
        ServerMessage::Welcome(wire::Welcome {
            version: wire::ATTENDANCE_WS_VERSION,
            server_time: s.terminals.clock().now_ms(),
            terminals: want
                .iter()
                .map(|t| wire::TerminalInfo {
                    sn: t.sn.clone(),
                    timezone: t.timezone.clone(),
                })
                .collect(),
        }),
    );
    for t in &want {
        match s.terminals.ws_attach(&t.sn, link.clone()).await {
            Ok(_) => served.push(t.sn.clone()),
            Err(TermError::NoSuchTerminal) => {
                say(
                    tx,
                    ServerMessage::error("unknown_terminal", format!("{} was removed", t.sn)),
                );
                return close::FORBIDDEN;
            }
            Err(e) => {
                tracing::warn!(sn = %t.sn, error = %e, "ws attendance: terminal unavailable");
                return close::INTERNAL;
            }
        }
    }
    tracing::info!(bridge = ?hello.bridge, terminals = served.len(), "attendance bridge connected");
    let mut bad = 0u32;
    let mut alive_at = tokio::time::Instant::now();
    let budget = super::ws::MessageBudget::scaled(s, 10);
    loop {
        let frame = read_frame(stream, idle).await;
        if frame.is_ok()
            && let Err(c) = budget.spend("attendance")
        {
            return c;
        }
        // Any frame (pongs included) is a sign of life: the terminals count as heard,
        // at most every ALIVE_EVERY.
        if frame.is_ok() && alive_at.elapsed() >= ALIVE_EVERY {
            alive_at = tokio::time::Instant::now();
            for sn in served.iter() {
                s.terminals.ws_alive(sn);
            }
        }
        let text = match frame {
            Err(code) => return code,
            Ok(WsMessage::Text(t)) => t,
            Ok(WsMessage::Binary(_)) => return close::UNSUPPORTED_DATA,
            Ok(WsMessage::Close(_)) => return close::NORMAL,
            Ok(_) => continue,
        };
        let reply = match serde_json::from_str::<BridgeMessage>(&text) {
            Err(e) => Err(("bad_message", format!("not a protocol message: {e}"))),
            Ok(BridgeMessage::Heartbeat) => continue,
            Ok(BridgeMessage::Hello(_)) => Err((
                "hello_twice",
                "hello is only the first frame of a connection".to_string(),
            )),
            Ok(BridgeMessage::Ack(r)) => answer(s, served, r.sn, r.id, r.attempt, None).await,
            Ok(BridgeMessage::Result(r)) => {
                answer(s, served, r.sn, r.id, r.attempt, Some((r.code, r.text))).await
            }
        };
        let frame = match reply {
            Ok(rec) => ServerMessage::Recorded(rec),
            Err((code, reason)) => {
                // Storage trouble is not the bridge's fault: it sends the frame again.
                if code != "storage" {
                    bad += 1;
                }
                ServerMessage::error(code, reason)
            }
        };
        if !say(tx, frame) {
            return close::SLOW_CONSUMER;
        }
        if bad > MAX_BAD_MESSAGES {
            return close::PROTOCOL_ERROR;
        }
    }
}

/// An `ack` (`result: None`) or `result` from the bridge, stored by the terminal's actor.
async fn answer(
    s: &AppState,
    served: &[String],
    sn: String,
    id: i64,
    attempt: i64,
    result: Option<(i64, String)>,
) -> Result<wire::Recorded, (&'static str, String)> {
    if !served.contains(&sn) {
        return Err((
            "unknown_terminal",
            format!("this connection does not serve {sn}"),
        ));
    }
    let recorded = |state: &str| wire::Recorded {
        sn: sn.clone(),
        id,
        attempt,
        state: state.to_string(),
    };
    match s
        .terminals
        .ws_answer(
            &sn,
            WsAnswer {
                id,
                attempt,
                result,
            },
        )
        .await
    {
        Ok(WsOutcome::Recorded(state)) => Ok(recorded(state.as_str())),
        Ok(WsOutcome::Ignored) => Ok(recorded("ignored")),
        Ok(WsOutcome::Unknown) => Err((
            "unknown_command",
            format!("attempt {attempt} of command {id} was not delivered to {sn} on this protocol"),
        )),
        Err(e) => {
            tracing::warn!(%sn, error = %e, "ws attendance: answer not stored");
            Err((
                "storage",
                "not stored (storage unavailable); send it again".to_string(),
            ))
        }
    }
}
