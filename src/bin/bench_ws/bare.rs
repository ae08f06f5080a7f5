//! `kioskd-bench bare-server`: the floor a Rust server on kioskd's own stack (tokio, axum's
//! WebSocket) reaches on this machine — the Rust twin of the Node peer
//! (`benches/peer/server.js`). A map from device code to a connection's queue, one task
//! per connection, and a broadcast that serialises its frame once and queues the same
//! bytes for every socket. No actors, no storage, no audit, no acknowledgement state, no
//! resume. A benchmark tool only: `kioskd-bench ws --bare` runs it as a child process,
//! measured with the same client as kioskd.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::json;
use tokio::sync::mpsc;

#[derive(Clone)]
struct Bare {
    sockets: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Utf8Bytes>>>>,
    token: Arc<str>,
    ids: Arc<AtomicU64>,
}

#[derive(serde::Deserialize)]
struct Push {
    name: String,
    text: Option<String>,
}

#[derive(serde::Deserialize)]
struct Kiosk {
    device_code: String,
}

/// Serves on 127.0.0.1:`port` until killed.
pub async fn serve(port: u16, token: String) -> anyhow::Result<()> {
    let state = Bare {
        sockets: Arc::default(),
        token: token.into(),
        ids: Arc::default(),
    };
    let app = Router::new()
        .route("/readyz", get(|| async { "ok" }))
        .route("/ws/kiosk", get(kiosk))
        .route("/ops/broadcast", post(broadcast))
        .route("/ops/devices/{code}/command", post(command))
        .with_state(state);
    // The socket settings kioskd uses (a bare server deserves them too): no Nagle delay,
    // and small per-connection buffers (tungstenite's default read buffer is 128 KiB a
    // connection).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, app).await?;
    Ok(())
}

/// The next command id, for a request that carries the token (`None`: it does not).
fn admit(s: &Bare, headers: &HeaderMap) -> Option<u64> {
    let authorised = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == &*s.token);
    authorised.then(|| s.ids.fetch_add(1, Ordering::Relaxed) + 1)
}

fn frame(id: u64, p: &Push) -> Utf8Bytes {
    let f =
        json!({"type": "command", "seq": id, "data": {"id": id, "name": p.name, "text": p.text}});
    Utf8Bytes::from(f.to_string())
}

async fn broadcast(
    State(s): State<Bare>,
    headers: HeaderMap,
    axum::Json(p): axum::Json<Push>,
) -> Response {
    let Some(id) = admit(&s, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // One frame, serialised once; every socket's queue gets the same bytes.
    let f = frame(id, &p);
    let n = {
        let sockets = s.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for tx in sockets.values() {
            let _ = tx.send(f.clone());
        }
        sockets.len()
    };
    (StatusCode::ACCEPTED, axum::Json(json!({"devices": n}))).into_response()
}

async fn command(
    State(s): State<Bare>,
    Path(code): Path<String>,
    headers: HeaderMap,
    axum::Json(p): axum::Json<Push>,
) -> Response {
    let Some(id) = admit(&s, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let delivered = s
        .sockets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&code)
        .is_some_and(|tx| tx.send(frame(id, &p)).is_ok());
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": id, "delivered": delivered})),
    )
        .into_response()
}

async fn kiosk(State(s): State<Bare>, Query(q): Query<Kiosk>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(256)
        .write_buffer_size(0)
        .on_upgrade(move |socket| conn(s, q.device_code, socket))
}

/// One task per connection: queued frames out, anything read (hello, acks) dropped.
async fn conn(s: Bare, code: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    s.sockets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(code.clone(), tx.clone());
    loop {
        tokio::select! {
            biased;
            f = rx.recv() => match f {
                Some(f) => {
                    if futures::SinkExt::send(&mut socket, Message::Text(f)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut sockets = s.sockets.lock().unwrap_or_else(|e| e.into_inner());
    if sockets.get(&code).is_some_and(|t| t.same_channel(&tx)) {
        sockets.remove(&code);
    }
}
