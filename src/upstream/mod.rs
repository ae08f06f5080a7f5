//! Upstreams (issue 6): the telecom open platform of seed 004 (`open189`), kioskd's own
//! official account (`mp`), WeChat Pay v3 (`wxpay`), the access-token keeper actor
//! (`token`), the crypto they need (`crypto`) and the durable outbox worker (`outbox`).

pub mod crypto;
pub mod mp;
pub mod notices;
pub mod open189;
pub mod outbox;
pub mod token;
pub mod wxpay;

use kioskd_actors::ports::StoreError;
use kioskd_actors::{Clock, catalog};

use crate::config::Config;
use crate::store::Db;
use mp::Mp;
use open189::Open189;
use token::{KeeperArgs, TokenKind, Tokens};
use wxpay::WxPay;

/// An upstream call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Not configured (appid/secret/keys missing).
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// Network trouble, timeout, 5xx: retryable.
    #[error("transport: {0}")]
    Transport(String),
    /// The platform refused the access token.
    #[error("access token rejected")]
    TokenRejected,
    /// Seed 004's `40005`: an expired OAuth code, or the platform's retryable failure.
    #[error("40005: {0}")]
    Code40005(String),
    /// Any other failure reply, with the platform's status and message.
    #[error("platform status {status}: {msg}")]
    Platform {
        /// The reply's status (or errcode, or HTTP status for WeChat Pay).
        status: i64,
        /// The reply's message.
        msg: String,
    },
    /// A reply kioskd cannot read.
    #[error("unreadable reply: {0}")]
    BadReply(String),
    /// Our own storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UpstreamError {
    /// From a storage error.
    pub fn store(e: StoreError) -> Self {
        UpstreamError::Store(e)
    }

    /// The metric `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            UpstreamError::NotConfigured(_) => "not_configured",
            UpstreamError::Transport(_) => "transport",
            UpstreamError::TokenRejected => "token_rejected",
            UpstreamError::Code40005(_) => "code_40005",
            UpstreamError::Platform { .. } => "platform",
            UpstreamError::BadReply(_) => "bad_reply",
            UpstreamError::Store(_) => "store",
        }
    }

    /// Worth retrying later (outbox).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Transport(_)
                | UpstreamError::TokenRejected
                | UpstreamError::Code40005(_)
                | UpstreamError::Store(_)
        )
    }
}

/// Sends a request, mapping transport failures.
pub(crate) async fn timed(
    _op: &'static str,
    f: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
) -> Result<reqwest::Response, UpstreamError> {
    f.await.map_err(|e| {
        // reqwest's error text holds the URL, whose query may carry a token: drop it.
        UpstreamError::Transport(e.without_url().to_string())
    })
}

/// Counts a finished call by `op` and outcome.
pub fn record<T>(op: &'static str, r: &Result<T, UpstreamError>) {
    let outcome = match r {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    metrics::counter!(catalog::UPSTREAM_CALLS, "op" => op, "outcome" => outcome).increment(1);
}

/// Every upstream client, built from the configuration.
pub struct Upstream {
    /// The open platform.
    pub open189: Open189,
    /// kioskd's own official account.
    pub mp: Mp,
    /// The token keeper.
    pub tokens: Tokens,
    /// WeChat Pay (`payments.mode = "wechatpay"`).
    pub pay: Option<WxPay>,
    /// Wakes the outbox worker when something was recorded.
    pub outbox_wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Upstream {
    /// Builds the clients and spawns the token keeper.
    pub fn new(cfg: &Config, db: Db, clock: Clock) -> Result<Self, String> {
        let open189 = Open189::new(&cfg.open189).map_err(|e| e.to_string())?;
        let mp = Mp::new(&cfg.wechat_mp, cfg.open189.timeout_ms).map_err(|e| e.to_string())?;
        let pay = if cfg.payments.mode == crate::config::PaymentsMode::Wechatpay {
            Some(WxPay::new(&cfg.wechatpay, &cfg.public.base_url)?)
        } else {
            None
        };
        let tokens = Tokens::spawn(KeeperArgs {
            db,
            clock,
            open189: open189.clone(),
            mp: mp.clone(),
            open189_ttl_ms: cfg.open189.token_ttl_seconds * 1000,
            margin_ms: cfg.open189.token_refresh_margin_seconds * 1000,
            lease_ms: cfg.open189.timeout_ms as i64 + 5000,
        });
        Ok(Self {
            open189,
            mp,
            tokens,
            pay,
            outbox_wake: Default::default(),
        })
    }

    /// Runs an open-platform call with the shared token; when the platform rejects the
    /// token, it is refreshed once and the call retried once.
    pub async fn open189_call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, UpstreamError>
    where
        F: Fn(Open189, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let r = async {
            let token = self.tokens.get(TokenKind::Open189).await?;
            match f(self.open189.clone(), token.clone()).await {
                Err(UpstreamError::TokenRejected) => {
                    self.tokens.rejected(TokenKind::Open189, &token).await;
                    let token = self.tokens.get(TokenKind::Open189).await?;
                    f(self.open189.clone(), token).await
                }
                r => r,
            }
        }
        .await;
        record(op, &r);
        r
    }
}
