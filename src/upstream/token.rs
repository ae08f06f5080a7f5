//! The `TokenKeeper` actor: the one owner of every upstream access token (the open
//! platform's, and the official account's access token and JS-SDK ticket).
//!
//! - A token is fetched once and reused by every request: requests ask the actor, whose
//!   mailbox serialises them, so while one fetch is in flight every other asker waits
//!   for its result instead of fetching again.
//! - It is stored in `upstream_tokens`, so a restart or another node reuses it instead of
//!   spending one of the platform's limited daily fetches. Across nodes a lease row in
//!   the same table makes one node the fetcher; the others wait for the stored result.
//! - It is refreshed `refresh_margin` before it runs out, and at once when the platform
//!   rejects it (`Rejected` invalidates exactly that token, so many requests failing on
//!   the same token cause one refresh).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kameo::prelude::*;
use kioskd_actors::Clock;

use super::{UpstreamError, mp::Mp, open189::Open189};
use crate::store::{Db, StoredToken};

/// Which token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// The open platform's `access_token` (seed 004).
    Open189,
    /// The official account's `access_token` (`cgi-bin/token`).
    Mp,
    /// The official account's JS-SDK `jsapi_ticket`.
    MpTicket,
}

impl TokenKind {
    /// Row name in `upstream_tokens`.
    pub fn name(self) -> &'static str {
        match self {
            TokenKind::Open189 => "open189",
            TokenKind::Mp => "mp",
            TokenKind::MpTicket => "mp_ticket",
        }
    }
}

/// What the keeper needs.
pub struct KeeperArgs {
    /// Storage.
    pub db: Db,
    /// Time.
    pub clock: Clock,
    /// The open platform.
    pub open189: Open189,
    /// The official account.
    pub mp: Mp,
    /// Lifetime of an open-platform token (its reply does not say).
    pub open189_ttl_ms: i64,
    /// Refresh this long before expiry.
    pub margin_ms: i64,
    /// How long one fetch may hold the cross-node lease.
    pub lease_ms: i64,
}

/// The actor.
pub struct TokenKeeper {
    args: KeeperArgs,
    owner: String,
    cache: HashMap<TokenKind, StoredToken>,
}

impl Actor for TokenKeeper {
    type Args = KeeperArgs;
    type Error = std::convert::Infallible;

    fn name() -> &'static str {
        "TokenKeeper"
    }

    async fn on_start(args: Self::Args, _me: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Self {
            args,
            owner: format!("{}-{}", std::process::id(), kioskd_actors::ids::new_token()),
            cache: HashMap::new(),
        })
    }
}

/// Ask for a usable token.
pub struct Get(pub TokenKind);

/// The platform rejected this token: forget it (once).
pub struct Rejected(pub TokenKind, pub String);

impl TokenKeeper {
    fn fresh(&self, t: &StoredToken) -> bool {
        self.args.clock.now_ms() < t.expires_at - self.args.margin_ms
    }

    /// Fetches from the source of `kind`: (token, lifetime in ms).
    async fn fetch(&mut self, kind: TokenKind) -> Result<(String, i64), UpstreamError> {
        match kind {
            TokenKind::Open189 => {
                let t = self.args.open189.fetch_token().await?;
                Ok((t, self.args.open189_ttl_ms))
            }
            TokenKind::Mp => self.args.mp.fetch_token().await,
            TokenKind::MpTicket => {
                // The ticket needs the account's token: get it here (an ask to ourselves
                // would deadlock), refreshing it once if WeChat calls it invalid.
                let tok = Box::pin(self.get(TokenKind::Mp)).await?;
                match self.args.mp.fetch_ticket(&tok).await {
                    Err(UpstreamError::TokenRejected) => {
                        self.reject(TokenKind::Mp, &tok).await;
                        let tok = Box::pin(self.get(TokenKind::Mp)).await?;
                        self.args.mp.fetch_ticket(&tok).await
                    }
                    r => r,
                }
            }
        }
    }

    async fn get(&mut self, kind: TokenKind) -> Result<String, UpstreamError> {
        if let Some(t) = self.cache.get(&kind).filter(|t| self.fresh(t)) {
            return Ok(t.token.clone());
        }
        let name = kind.name();
        let db = self.args.db.clone();
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.args.lease_ms.max(1000) as u64 * 2);
        loop {
            if let Some(t) = db.token(name).await.map_err(UpstreamError::store)?
                && self.fresh(&t)
            {
                let token = t.token.clone();
                self.cache.insert(kind, t);
                return Ok(token);
            }
            let now = self.args.clock.now_ms();
            if db
                .token_lease(
                    name,
                    &self.owner,
                    now,
                    self.args.lease_ms,
                    self.args.margin_ms,
                )
                .await
                .map_err(UpstreamError::store)?
            {
                return match self.fetch(kind).await {
                    Ok((token, ttl)) => {
                        let now = self.args.clock.now_ms();
                        let t = StoredToken {
                            token: token.clone(),
                            expires_at: now + ttl,
                        };
                        db.token_store(name, &t.token, t.expires_at, now)
                            .await
                            .map_err(UpstreamError::store)?;
                        self.cache.insert(kind, t);
                        tracing::info!(token = name, "upstream token fetched");
                        Ok(token)
                    }
                    Err(e) => {
                        let _ = db.token_release(name, &self.owner).await;
                        Err(e)
                    }
                };
            }
            // Another node is fetching, or has just stored a fresh token: read again.
            if tokio::time::Instant::now() > deadline {
                return Err(UpstreamError::Transport(format!(
                    "another node holds the {name} token fetch"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn reject(&mut self, kind: TokenKind, token: &str) {
        if self.cache.get(&kind).is_some_and(|t| t.token == token) {
            self.cache.remove(&kind);
        }
        if let Err(e) = self.args.db.token_invalidate(kind.name(), token).await {
            tracing::warn!(error = %e, "could not invalidate a rejected token");
        }
    }
}

impl Message<Get> for TokenKeeper {
    type Reply = Result<String, UpstreamError>;

    async fn handle(&mut self, m: Get, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.get(m.0).await
    }
}

impl Message<Rejected> for TokenKeeper {
    type Reply = ();

    async fn handle(&mut self, m: Rejected, _ctx: &mut Context<Self, Self::Reply>) {
        self.reject(m.0, &m.1).await;
    }
}

/// A handle to the keeper.
#[derive(Clone)]
pub struct Tokens(pub Arc<ActorRef<TokenKeeper>>);

impl Tokens {
    /// Spawns the keeper.
    pub fn spawn(args: KeeperArgs) -> Self {
        Self(Arc::new(TokenKeeper::spawn_with_mailbox(
            args,
            kameo::mailbox::unbounded(),
        )))
    }

    /// A usable token of `kind`.
    pub async fn get(&self, kind: TokenKind) -> Result<String, UpstreamError> {
        match self
            .0
            .ask(Get(kind))
            .reply_timeout(Duration::from_secs(60))
            .await
        {
            Ok(t) => Ok(t),
            Err(kameo::error::SendError::HandlerError(e)) => Err(e),
            Err(e) => Err(UpstreamError::Transport(format!("token keeper: {e}"))),
        }
    }

    /// Reports a rejected token.
    pub async fn rejected(&self, kind: TokenKind, token: &str) {
        let _ = self
            .0
            .ask(Rejected(kind, token.to_string()))
            .reply_timeout(Duration::from_secs(60))
            .await;
    }

    /// Stops the keeper and waits until it has stopped.
    pub async fn stop(&self) {
        let _ = self.0.stop_gracefully().await;
        self.0.wait_for_shutdown().await;
    }

    /// Whether the keeper is still running.
    pub fn is_running(&self) -> bool {
        self.0.is_alive()
    }
}
