//! The reference kiosk agent (`kioskd agent`): a real client of `/ws/kiosk` that holds
//! the socket, reconnects with backoff and resume, acknowledges commands, follows the
//! kiosk screens of seed 002 and locks itself at `paid_until` when it loses the server,
//! so a kiosk is never used unpaid. Every screen change is logged.
//!
//! The screen logic is a pure state machine (`Agent`); `run` is the transport around it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kioskd_actors::Clock;
use kioskd_protocol::windows::DeviceStatus;
use kioskd_protocol::ws::{Ack, ClientMessage, Hello, ServerEvent, ServerFrame, close};
use rand::Rng;
use tokio_tungstenite::tungstenite::Message;

/// How the agent reaches its server.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Server base URL (`http://host:port` or `ws://host:port`).
    pub server: String,
    /// The device's code.
    pub device_code: String,
    /// The device's secret (signed upgrades), if it has one.
    pub secret: Option<String>,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Heartbeat interval on the socket.
    pub heartbeat: Duration,
    /// Grace after `paid_until` while connected (a tick may be on its way).
    pub grace: Duration,
}

impl AgentConfig {
    /// Defaults for a device.
    pub fn new(server: &str, device_code: &str) -> Self {
        Self {
            server: server.to_string(),
            device_code: device_code.to_string(),
            secret: None,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            heartbeat: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }
}

/// The kiosk's screens (seed 002): A standby video, B QR code, C in session, D end
/// confirmation, E waiting for payment; plus the lock screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// A: standby video (free, nobody at it).
    Standby,
    /// B: the QR code to scan.
    QrCode,
    /// C: in session.
    InSession,
    /// D: the session ended; the kiosk restarts 3 minutes later.
    EndConfirm,
    /// E: waiting for payment (postpaid).
    WaitPayment,
    /// Locked (operator, maintenance, game update, or unpaid time).
    Locked,
}

/// What the agent knows.
#[derive(Debug)]
pub struct Agent {
    clock: Clock,
    /// Current screen.
    pub screen: Screen,
    /// Session id and `paid_until` (server clock, unix ms) while in session.
    pub session: Option<(i64, i64)>,
    /// Server clock minus local clock (ms), from the last `billing`/`snapshot`.
    pub skew_ms: i64,
    /// Resume position.
    pub epoch: Option<String>,
    /// Last sequence number processed.
    pub last_seq: u64,
    /// When D's restart is due (local ms).
    pub restart_at: Option<i64>,
    /// The unpaid postpaid order screen E waits for.
    pub unpaid_order: Option<String>,
    /// Recently executed command ids (dedupe of re-sent commands).
    done: VecDeque<i64>,
    /// Screen transitions: (local ms, screen, why).
    pub transitions: Vec<(i64, Screen, String)>,
    /// Operator messages shown.
    pub messages: Vec<String>,
    /// Restarts requested by operators.
    pub restarts: u32,
}

/// D → restart delay (seed 002: "3 minutes after D is confirmed").
pub const RESTART_AFTER_MS: i64 = 180_000;

impl Agent {
    /// A fresh agent on the standby screen.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            screen: Screen::Standby,
            session: None,
            skew_ms: 0,
            epoch: None,
            last_seq: 0,
            restart_at: None,
            unpaid_order: None,
            done: VecDeque::new(),
            transitions: Vec::new(),
            messages: Vec::new(),
            restarts: 0,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn go(&mut self, screen: Screen, why: &str) {
        if self.screen != screen {
            tracing::info!(from = ?self.screen, to = ?screen, why, "screen");
            self.screen = screen;
            let now = self.now();
            self.transitions.push((now, screen, why.to_string()));
        }
    }

    fn device_status(&mut self, st: DeviceStatus, why: &str) {
        match st {
            DeviceStatus::Busy => {}
            DeviceStatus::Lock | DeviceStatus::Maintain => {
                if self.session.is_none() {
                    self.go(Screen::Locked, why)
                }
            }
            DeviceStatus::Free => {
                if self.session.is_none() && matches!(self.screen, Screen::Locked) {
                    self.go(Screen::Standby, why)
                }
            }
        }
    }

    /// The local instant at which the kiosk must lock unless it hears otherwise.
    pub fn lock_deadline(&self) -> Option<i64> {
        self.session.map(|(_, paid)| paid - self.skew_ms)
    }

    /// Handles one server frame; returns the messages to send back (acks).
    pub fn on_frame(&mut self, f: &ServerFrame) -> Vec<ClientMessage> {
        let mut out = Vec::new();
        if let Some(seq) = f.seq {
            if seq <= self.last_seq {
                return out; // replayed twice: already done
            }
            self.last_seq = seq;
        }
        let now = self.now();
        match &f.event {
            ServerEvent::Snapshot(s) => {
                self.epoch = Some(s.epoch.clone());
                self.last_seq = s.seq;
                self.skew_ms = s.server_time - now;
                match &s.session {
                    Some(info) => {
                        self.session = Some((info.session_id, info.paid_until));
                        self.go(Screen::InSession, "snapshot: session running");
                    }
                    None => {
                        let ended = self.session.take().is_some();
                        match (&s.unpaid_order, ended || self.screen == Screen::WaitPayment) {
                            // The last session left an unpaid order: screen E.
                            (Some(order), _) => {
                                self.restart_at = None;
                                if self.unpaid_order.as_ref() != Some(order) {
                                    self.unpaid_order = Some(order.clone());
                                    self.go(
                                        Screen::WaitPayment,
                                        &format!("snapshot: order {order} unpaid"),
                                    );
                                }
                            }
                            // Waiting for a payment that is no longer due: paid meanwhile.
                            (None, true) if self.unpaid_order.take().is_some() => {
                                self.restarts += 1;
                                self.go(Screen::Standby, "snapshot: order paid: restarted");
                            }
                            (None, true) if ended => {
                                self.go(Screen::EndConfirm, "snapshot: session over");
                                self.restart_at = Some(now + RESTART_AFTER_MS);
                            }
                            _ => {}
                        }
                        if let Some(d) = &s.device {
                            self.device_status(d.status, "snapshot");
                        }
                    }
                }
            }
            ServerEvent::SessionStarted(info) => {
                self.session = Some((info.session_id, info.paid_until));
                self.restart_at = None;
                self.go(Screen::InSession, "session started");
            }
            ServerEvent::Billing(b) => {
                self.skew_ms = b.server_time - now;
                if self.session.is_some_and(|(id, _)| id == b.session_id) {
                    self.session = Some((b.session_id, b.paid_until));
                    if self.screen == Screen::Locked {
                        self.go(Screen::InSession, "paid again");
                    }
                }
            }
            ServerEvent::BalanceLow(b) => {
                self.messages
                    .push(format!("{} minutes left", b.minutes_left));
            }
            ServerEvent::SessionEnded(e) => {
                if self.session.take().is_some() || self.screen == Screen::InSession {
                    if let Some(order) = &e.order_id {
                        // Postpaid: E until the phone pays (no restart timer: the
                        // kiosk restarts once the order is paid).
                        self.unpaid_order = Some(order.clone());
                        self.restart_at = None;
                        self.go(
                            Screen::WaitPayment,
                            &format!(
                                "session ended ({}): pay order {order} on the phone",
                                e.reason
                            ),
                        );
                    } else {
                        self.go(Screen::EndConfirm, &format!("session ended: {}", e.reason));
                        self.restart_at = Some(now + RESTART_AFTER_MS);
                    }
                }
            }
            ServerEvent::OrderPaid(o) => {
                if self.unpaid_order.as_deref() == Some(o.order_id.as_str()) {
                    self.unpaid_order = None;
                    self.restarts += 1;
                    self.go(
                        Screen::Standby,
                        &format!("order {} paid: restarted", o.order_id),
                    );
                }
            }
            ServerEvent::DeviceStatus(d) => self.device_status(d.status, "device status"),
            ServerEvent::Command(c) => {
                if !self.done.contains(&c.id) {
                    self.done.push_back(c.id);
                    if self.done.len() > 256 {
                        self.done.pop_front();
                    }
                    match c.name.as_str() {
                        "lock" => self.go(Screen::Locked, "operator lock"),
                        "unlock" => self.go(Screen::Standby, "operator unlock"),
                        "restart" => {
                            self.restarts += 1;
                            tracing::info!("operator restart");
                        }
                        "message" => self.messages.push(c.text.clone().unwrap_or_default()),
                        other => tracing::info!(command = other, "command"),
                    }
                }
                if let Some(seq) = f.seq {
                    out.push(ClientMessage::Ack(Ack {
                        seq,
                        epoch: self.epoch.clone(),
                    }));
                }
            }
            ServerEvent::Error(e) => {
                tracing::warn!(code = %e.code, reason = %e.reason, "server error")
            }
        }
        out
    }

    /// Time passed: lock at the deadline (plus `grace`), restart after D.
    pub fn on_time(&mut self, grace_ms: i64) {
        let now = self.now();
        if let Some(deadline) = self.lock_deadline()
            && now >= deadline + grace_ms
            && self.screen != Screen::Locked
        {
            self.go(
                Screen::Locked,
                "paid_until passed without news from the server",
            );
        }
        if self.restart_at.is_some_and(|t| now >= t) {
            self.restart_at = None;
            self.restarts += 1;
            self.go(Screen::Standby, "restarted after the end screen");
        }
    }

    /// The hello that resumes where this agent left off.
    pub fn hello(&self) -> ClientMessage {
        ClientMessage::Hello(Hello {
            resume_from: self.epoch.as_ref().map(|_| self.last_seq),
            epoch: self.epoch.clone(),
            version: Some(kioskd_protocol::ws::WS_PROTOCOL_VERSION),
        })
    }

    /// The next local instant `on_time` has something to do.
    pub fn next_wake(&self, grace_ms: i64) -> Option<i64> {
        let lock = self
            .lock_deadline()
            .filter(|_| self.screen != Screen::Locked)
            .map(|d| d + grace_ms);
        match (lock, self.restart_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn ws_url(cfg: &AgentConfig, clock: &Clock) -> String {
    let base = cfg
        .server
        .trim_end_matches('/')
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let code = kioskd_actors::ids::normalize_device_code(&cfg.device_code)
        .unwrap_or_else(|| cfg.device_code.clone());
    let mut url = format!("{base}/ws/kiosk?device_code={code}");
    if let Some(secret) = &cfg.secret {
        let ts = clock.now_ms() / 1000;
        let nonce = kioskd_actors::ids::new_token();
        let sig = crate::kiosk_auth::signature(secret, &code, ts, &nonce);
        url.push_str(&format!("&ts={ts}&nonce={nonce}&sig={sig}"));
    }
    url
}

async fn sleep_until_ms(clock: &Clock, at: Option<i64>) {
    match at {
        Some(ms) => tokio::time::sleep_until(clock.instant_at(ms)).await,
        None => std::future::pending::<()>().await,
    }
}

/// Runs the agent until `stop` resolves: connect, resume, serve, reconnect with backoff.
pub async fn run(
    cfg: AgentConfig,
    agent: Arc<Mutex<Agent>>,
    clock: Clock,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let grace = cfg.grace.as_millis() as i64;
    let mut backoff = cfg.backoff_min;
    loop {
        let url = ws_url(&cfg, &clock);
        let connected = tokio::select! {
            _ = &mut stop => return,
            c = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url)) => c,
        };
        if let Ok(Ok((ws, _))) = connected {
            tracing::info!("connected");
            backoff = cfg.backoff_min;
            let (mut sink, mut stream) = ws.split();
            let hello = agent.lock().unwrap().hello();
            let _ = sink
                .send(Message::Text(
                    serde_json::to_string(&hello).unwrap_or_default().into(),
                ))
                .await;
            let mut beat = tokio::time::interval(cfg.heartbeat);
            let stop_code = loop {
                let wake = agent.lock().unwrap().next_wake(grace);
                tokio::select! {
                    _ = &mut stop => {
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
                    _ = beat.tick() => {
                        let hb = serde_json::to_string(&ClientMessage::Heartbeat).unwrap_or_default();
                        if sink.send(Message::Text(hb.into())).await.is_err() { break None; }
                    }
                    _ = sleep_until_ms(&clock, wake) => agent.lock().unwrap().on_time(grace),
                    m = stream.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let Ok(frame) = serde_json::from_str::<ServerFrame>(&t) else { continue };
                            let replies = agent.lock().unwrap().on_frame(&frame);
                            for r in replies {
                                let text = serde_json::to_string(&r).unwrap_or_default();
                                if sink.send(Message::Text(text.into())).await.is_err() { break; }
                            }
                        }
                        Some(Ok(Message::Close(c))) => break c.map(|c| u16::from(c.code)),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break None,
                    },
                }
            };
            tracing::info!(code = ?stop_code, "disconnected");
            if let Some(code) = stop_code
                && !close::should_reconnect(code)
                && code != close::NORMAL
            {
                tracing::warn!(code, "the server said not to reconnect");
                return;
            }
        }
        // Disconnected: wait (with jitter), locking at paid_until meanwhile.
        let jitter = rand::rng().random_range(0.5..1.0);
        let until = clock.now_ms() + (backoff.as_millis() as f64 * jitter) as i64;
        loop {
            let wake = agent
                .lock()
                .unwrap()
                .next_wake(0)
                .map_or(until, |w| w.min(until));
            tokio::select! {
                _ = &mut stop => return,
                _ = sleep_until_ms(&clock, Some(wake)) => {}
            }
            agent.lock().unwrap().on_time(0);
            if clock.now_ms() >= until {
                break;
            }
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}
