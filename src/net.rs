//! The network edge: the accept loop with a global and a per-address connection cap,
//! hyper's HTTP/1 connection with a header-read timeout (which also bounds an idle
//! keep-alive connection), a body-read timeout, a write-stall guard on every socket (a
//! client that stops reading is closed), and the client address every limiter uses
//! ([`client_ip`]: the TCP peer, or for a trusted proxy the address its
//! `X-Forwarded-For` names).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use kioskd_actors::catalog;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tower::Service;

use crate::config::Config;

/// The TCP peer of a request (a proxy's address when the request came through one).
/// `ConnectInfo<SocketAddr>` holds the client's address (see [`client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Connection accounting and the trusted proxies.
pub struct Edge {
    global: Arc<Semaphore>,
    per_address: dashmap::DashMap<IpAddr, usize>,
    max_per_address: usize,
    trusted: Vec<IpNet>,
}

impl Edge {
    /// From the `[server]` settings.
    pub fn new(cfg: &Config) -> Self {
        Self {
            global: Arc::new(Semaphore::new(cfg.server.max_connections)),
            per_address: Default::default(),
            max_per_address: cfg.server.max_connections_per_address,
            trusted: cfg.trusted_proxies().unwrap_or_default(),
        }
    }

    /// Is `ip` one of the trusted proxies?
    pub fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Open connections from `ip` (tests, metrics).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_address.get(&ip).map(|n| *n).unwrap_or(0)
    }

    /// Admits a new connection from `peer`, or says why not.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnPermit, &'static str> {
        let Ok(global) = self.global.clone().try_acquire_owned() else {
            return Err("global");
        };
        let counted = self.max_per_address > 0 && !self.trusted(peer);
        if counted {
            let mut n = self.per_address.entry(peer).or_insert(0);
            if *n >= self.max_per_address {
                return Err("per_address");
            }
            *n += 1;
        }
        Ok(ConnPermit {
            edge: self.clone(),
            peer,
            counted,
            _global: global,
        })
    }
}

/// A connection's place under the caps; given back when the socket is dropped (for an
/// upgraded WebSocket, when it closes).
struct ConnPermit {
    edge: Arc<Edge>,
    peer: IpAddr,
    counted: bool,
    _global: OwnedSemaphorePermit,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        metrics::gauge!(catalog::CONNECTIONS_OPEN).decrement(1);
        if self.counted {
            self.edge.per_address.remove_if_mut(&self.peer, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

/// The client address of a request from `peer`: the peer itself, or, when the peer is a
/// trusted proxy, the right-most `X-Forwarded-For` entry that is not a trusted proxy
/// (entries further left are the client's own word and prove nothing).
pub fn client_ip(edge: &Edge, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !edge.trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for v in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(v) = v.to_str() else { return client };
        for hop in v.rsplit(',') {
            let hop = hop.trim();
            let Ok(ip) = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
            else {
                return client;
            };
            client = ip;
            if !edge.trusted(ip) {
                return ip;
            }
        }
    }
    client
}

/// Middleware: `ConnectInfo<SocketAddr>` becomes the client's address (with the peer's
/// port), the TCP peer stays in [`PeerAddr`].
pub async fn resolve_client(
    axum::extract::State(edge): axum::extract::State<Arc<Edge>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let ip = client_ip(&edge, peer.ip(), req.headers());
        req.extensions_mut().insert(PeerAddr(peer));
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, peer.port())));
    }
    next.run(req).await
}

/// The client address a handler or limiter sees (set by [`resolve_client`]).
pub fn request_ip(req: &axum::http::request::Parts) -> Option<IpAddr> {
    req.extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client address as an extractor (never refuses; unspecified when unknown, e.g. a
/// router driven without a connection).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// From a request's extensions (after [`resolve_client`]).
    pub fn from_extensions(e: &axum::http::Extensions) -> Option<IpAddr> {
        e.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            request_ip(parts).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

/// A TCP stream whose writes fail after `stall` without progress, holding its place under
/// the connection caps.
struct Guarded {
    io: TcpStream,
    stall: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    _permit: ConnPermit,
}

impl Guarded {
    fn progress<T>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match p {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let stall = self.stall;
                let t = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                if t.as_mut().poll(cx).is_ready() {
                    metrics::counter!(catalog::CONNECTIONS_CLOSED, "reason" => "write_stall")
                        .increment(1);
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(cx, p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(cx, p)
    }
}

/// Timeouts of one connection.
#[derive(Clone, Copy)]
pub struct Timeouts {
    header_read: Duration,
    body_read: Duration,
    write_stall: Duration,
}

impl Timeouts {
    /// From the `[server]` settings.
    pub fn new(cfg: &Config) -> Self {
        Self {
            header_read: Duration::from_secs(cfg.server.header_read_timeout_seconds),
            body_read: Duration::from_secs(cfg.server.body_read_timeout_seconds),
            write_stall: Duration::from_secs(cfg.server.write_stall_timeout_seconds),
        }
    }
}

/// Accepts connections until `shutdown` resolves, then lets open requests finish (at
/// most `drain` long). Upgraded WebSockets are closed by their own tasks.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    edge: Arc<Edge>,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of descriptors and the like: wait a little, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match edge.admit(peer.ip()) {
            Ok(p) => p,
            Err(reason) => {
                metrics::counter!(catalog::CONNECTIONS_REFUSED, "reason" => reason).increment(1);
                drop(stream);
                continue;
            }
        };
        metrics::gauge!(catalog::CONNECTIONS_OPEN).increment(1);
        // Replies and pushes are small and wanted now: no Nagle delay behind an unacked
        // segment (a ping or a reply just written on the same connection).
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Guarded {
            io: stream,
            stall: timeouts.write_stall,
            timer: None,
            _permit: permit,
        });
        let router = app.clone();
        let body_read = timeouts.body_read;
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req =
                req.map(|b| Body::new(tower_http::timeout::TimeoutBody::new(body_read, b)));
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(req)
        });
        let conn = http.serve_connection(io, svc).with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { let _ = r; return; }
                _ = stop.wait_for(|s| *s) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: wait until they are gone (or `drain`).
    let _ = tokio::time::timeout(drain, stop_tx.closed()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(trusted: &str) -> Edge {
        let cfg =
            Config::load_with(None, &format!("[server]\ntrusted_proxies = [{trusted}]\n")).unwrap();
        Edge::new(&cfg)
    }

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in v {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let e = edge("\"10.0.0.0/8\", \"192.0.2.7\"");
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // A stranger's header is ignored.
        assert_eq!(client_ip(&e, stranger, &xff(&["1.1.1.1"])), stranger);
        // Through the proxy: the right-most untrusted hop; what the client wrote to the
        // left of it proves nothing.
        assert_eq!(
            client_ip(&e, proxy, &xff(&["6.6.6.6, 198.51.100.4"])),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&e, proxy, &xff(&["198.51.100.4", "192.0.2.7"])),
            "198.51.100.4".parse::<IpAddr>().unwrap(),
            "two trusted hops, several headers"
        );
        assert_eq!(client_ip(&e, proxy, &HeaderMap::new()), proxy);
        assert_eq!(client_ip(&e, proxy, &xff(&["garbage"])), proxy);
        let none = edge("");
        assert_eq!(client_ip(&none, proxy, &xff(&["1.1.1.1"])), proxy);
    }

    #[test]
    fn bad_proxy_settings_are_refused() {
        assert!(Config::load_with(None, "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]").is_err());
        assert!(Config::load_with(None, "[server]\ntrusted_proxies = [\"proxy\"]").is_err());
    }
}
