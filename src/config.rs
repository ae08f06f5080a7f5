//! Layered configuration: the embedded `config/default.toml`, then an optional file, then
//! `KIOSKD_<SECTION>__<KEY>` environment variables. Unknown keys are rejected; values are
//! validated at start; secrets never appear in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer};

const DEFAULTS: &str = include_str!("../config/default.toml");

/// A secret string: never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Empty?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"[redacted]\"")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_like(d).map(Secret)
    }
}

/// Environment values that look like numbers ("123456") still count as strings.
fn string_like<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Uint(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Uint(u) => u.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server.
    pub server: Server,
    /// Database.
    pub database: Database,
    /// Redis.
    pub redis: Redis,
    /// Ops API.
    pub ops: Ops,
    /// Phone identity.
    pub identity: Identity,
    /// Billing.
    pub billing: Billing,
    /// Actor lifecycles.
    pub actors: Actors,
    /// Payments.
    pub payments: Payments,
    /// SMS captchas.
    pub sms: Sms,
    /// Phone app.
    pub phone: Phone,
    /// Dialect B.
    pub rest: Rest,
    /// Kiosk media.
    pub files: Files,
    /// WebSocket.
    pub ws: Ws,
    /// Public address.
    pub public: Public,
    /// Logging.
    pub log: Log,
    /// Metric sampling.
    pub metrics: Metrics,
    /// Telecom open platform (seed 004).
    pub open189: Open189,
    /// WeChat Pay v3.
    pub wechatpay: WechatPay,
    /// kioskd's own WeChat official account (JS-SDK ticket, payment openids).
    pub wechat_mp: WechatMp,
    /// The durable outbox of upstream sends (prize notices, campaign callbacks).
    pub outbox: Outbox,
    /// Maintainer sign-in (`/windows/maintain/login`): failure backoff, argon2 concurrency.
    pub maintainers: Maintainers,
    /// Browser requests that change state (cross-site refusal).
    pub csrf: Csrf,
    /// Unsigned legacy kiosk calls (the address rule of `http::legacy`).
    pub legacy: Legacy,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Wire time zone.
    pub time_zone: String,
    /// `development` or `production` (production refuses sandbox payments and dev
    /// identity).
    pub environment: Environment,
    /// Most open connections (all kinds, WebSockets included); more are closed at accept.
    pub max_connections: usize,
    /// Most open connections from one client address (0: no cap). Trusted proxies are
    /// not capped (their clients are counted by the rate limits instead).
    pub max_connections_per_address: usize,
    /// A request's headers (and the next request's on an idle keep-alive connection)
    /// must arrive within this; the connection is closed otherwise.
    pub header_read_timeout_seconds: u64,
    /// A request must be answered within this (WebSocket upgrades answer at once).
    pub request_timeout_seconds: u64,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout_seconds: u64,
    /// A connection whose writes make no progress this long (a client that stopped
    /// reading) is closed.
    pub write_stall_timeout_seconds: u64,
    /// Bytes of large request bodies (attendance uploads) being read at once, all
    /// requests together; more wait for their turn.
    pub large_body_budget_bytes: usize,
    /// Proxies whose `X-Forwarded-For` names the real client (addresses or CIDR
    /// blocks). Must be set explicitly in production, even to `[]`.
    #[serde(default)]
    pub trusted_proxies: Option<Vec<String>>,
    /// The per-address rate limits (`src/http/limits.rs`); off only for tests that fire
    /// many bad requests from one address.
    pub rate_limits: bool,
}

/// Where this server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Local use, tests.
    Development,
    /// Real users and real money.
    Production,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// URL (may hold a password).
    pub url: Secret,
    /// Pool size (PostgreSQL).
    pub max_connections: u32,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// URL; empty: none.
    pub url: Secret,
    /// A node's lease on its devices (ms): silent longer, it is taken for dead.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Prefix of every Redis key and channel (events, cluster): one per deployment
    /// sharing a Redis.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "kioskd".into()
}

fn default_lease_ms() -> u64 {
    6000
}

/// `[ops]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// Bearer token.
    pub token: Secret,
    /// How long a console sign-in lasts.
    pub session_ttl_seconds: u64,
}

/// Identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityMode {
    /// `/dev/login` sets the cookie directly.
    Dev,
    /// WeChat OAuth through the telecom open platform.
    Open189,
}

/// `[identity]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Mode.
    pub mode: IdentityMode,
    /// Cookie signing secret.
    pub cookie_secret: Secret,
    /// How long a phone's sign-in lasts (the cookie expires then).
    pub session_ttl_seconds: i64,
    /// How long a sign-in started at the open platform may take to come back.
    pub signin_ttl_seconds: i64,
    /// Path prefixes a sign-in may return to (open-redirect guard).
    pub return_paths: Vec<String>,
}

/// `[billing]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Billing {
    /// One unit in seconds.
    pub unit_seconds: u64,
    /// Free start in seconds.
    pub free_seconds: u64,
    /// Heartbeat timeout in seconds.
    pub heartbeat_timeout_seconds: u64,
    /// Low-balance warning threshold in units.
    pub low_balance_minutes: i64,
}

/// `[actors]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actors {
    /// A device actor with no socket, no session, no pending command and no activity for
    /// this many seconds stops and frees its memory (its next request activates it again
    /// from storage). 0: never.
    pub idle_seconds: u64,
}

/// Payment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentsMode {
    /// Credit at once (no money moves).
    Sandbox,
    /// WeChat Pay v3.
    Wechatpay,
}

/// `[payments]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payments {
    /// Mode.
    pub mode: PaymentsMode,
    /// Largest single recharge (fen).
    pub max_recharge_fen: i64,
    /// Sandbox payments next to a real identity provider (real users get free credit)
    /// only when this says someone meant it.
    pub sandbox_acknowledged: bool,
}

/// `[sms]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    /// Debug code (dev identity mode only).
    pub debug_code: Secret,
    /// Code lifetime.
    pub ttl_seconds: i64,
    /// Minimum gap between two sends to one mobile.
    pub resend_seconds: i64,
    /// Sends per mobile per day.
    pub daily_per_mobile: i64,
    /// Sends per client address per hour.
    pub hourly_per_client: i64,
    /// Sends per mobile per hour.
    pub hourly_per_mobile: i64,
    /// Wrong guesses before a code is burned.
    pub max_attempts: i64,
    /// Who delivers codes: `log` (nobody: the log says a code was made, never which;
    /// refused in production) or `http` (POST to `gateway_url`).
    pub sender: SmsSenderKind,
    /// The SMS gateway (`sender = "http"`): receives `{"mobile","code"}` as JSON.
    pub gateway_url: String,
    /// Bearer token for the gateway.
    pub gateway_token: Secret,
}

/// Who delivers SMS codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsSenderKind {
    /// Nobody (development).
    Log,
    /// An HTTP gateway.
    Http,
}

/// `[maintainers]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintainers {
    /// Consecutive failures after which each further failure backs off.
    pub max_failures: i64,
    /// The first backoff; it doubles with every further failure.
    pub backoff_base_seconds: i64,
    /// The longest backoff.
    pub backoff_max_seconds: i64,
    /// Password verifications (argon2, 19 MiB each) running at once.
    pub verify_concurrency: usize,
    /// How long a login waits for a verification slot before it is answered "busy".
    pub verify_wait_ms: u64,
}

/// `[legacy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Legacy {
    /// A new address must appear within this of the kiosk's last call, and becomes the
    /// kiosk's once the old address has been silent this long.
    pub address_handover_seconds: i64,
    /// After two addresses talked for one device at once, no new address is accepted for
    /// this long.
    pub contested_seconds: i64,
}

/// `[csrf]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Csrf {
    /// Origins (scheme://host[:port]) besides `public.base_url`'s that phone pages are
    /// served from.
    pub extra_origins: Vec<String>,
}

/// `[phone]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phone {
    /// App page URL.
    #[serde(deserialize_with = "string_like")]
    pub app_url: String,
}

/// `[rest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rest {
    /// Customer service number.
    #[serde(deserialize_with = "string_like")]
    pub service_number: String,
}

/// `[files]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Files {
    /// Media folder.
    pub dir: String,
    /// Downloads at once per client address (slow readers hold connections).
    pub max_downloads_per_address: usize,
    /// A download must finish within this, however slowly the client reads.
    pub download_timeout_seconds: u64,
}

/// `[ws]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ws {
    /// Accept devices without a secret.
    pub allow_unsigned: bool,
    /// Most WebSocket connections at once (all kinds).
    pub max_connections: usize,
    /// Largest message accepted (bytes).
    pub max_message_bytes: usize,
    /// Read buffer per connection (bytes): small, for tens of thousands of idle sockets.
    pub read_buffer_bytes: usize,
    /// Frames queued per connection before it counts as a slow consumer.
    pub queue: usize,
    /// Server ping interval.
    pub ping_seconds: u64,
    /// A frame that takes longer than this to write closes the connection as a slow
    /// consumer.
    pub write_timeout_ms: u64,
    /// Close a connection silent this long.
    pub idle_timeout_seconds: u64,
    /// Seconds a signed upgrade's timestamp may differ from the server's clock.
    pub signature_skew_seconds: i64,
    /// Origins browsers may connect from (`/ws/user`, `/ws/ops`); empty: the origin of
    /// `public.base_url` only.
    pub allowed_origins: Vec<String>,
    /// How long a broadcast stays pending for devices that have not acknowledged it
    /// (offline ones get it on their next connection within this time).
    pub broadcast_ttl_seconds: u64,
    /// A kiosk's events are kept this long (and at most 256) for a resume; one that
    /// comes back later gets a snapshot.
    pub resume_window_seconds: u64,
    /// Of `max_connections`, this many are kept for kiosks: other sockets (phones, ops,
    /// bridges) get at most `max_connections - reserved_for_kiosks`.
    pub reserved_for_kiosks: usize,
    /// Most `/ws/user` sockets per signed-in user.
    pub max_per_user: usize,
    /// Most non-kiosk sockets (`/ws/user`, `/ws/ops`, `/ws/attendance`) per client address.
    pub max_per_address: usize,
    /// Messages a client may send per second on one socket (sustained) ...
    pub messages_per_second: u32,
    /// ... and in a burst; a socket over it is closed with 4029.
    pub message_burst: u32,
}

/// `[public]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Public {
    /// The address phones use.
    pub base_url: String,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// tracing-subscriber filter.
    pub filter: String,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// How often the sampler reads storage and the actors for the gauges that are not
    /// counted as things happen (overdue sessions, devices online, queues, mailboxes).
    pub sample_interval_ms: u64,
    /// How far past a deadline a running session must be to count as overdue.
    pub overdue_grace_seconds: u64,
    /// Serve `/metrics` on this address instead of the main listener (empty: on the
    /// main listener).
    pub listen: String,
}

/// `[open189]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Open189 {
    /// Base URL.
    pub base_url: String,
    /// App id.
    #[serde(deserialize_with = "string_like")]
    pub appid: String,
    /// App secret.
    pub secret: Secret,
    /// Path of the user-info call (missing from seed 004; empty: not called).
    pub user_info_path: String,
    /// How POST parameters are sent: `form` (x-www-form-urlencoded) or `json`.
    pub post_format: PostFormat,
    /// Lifetime of an access token (the platform says 7,200 s).
    pub token_ttl_seconds: i64,
    /// Refresh a token this long before it runs out.
    pub token_refresh_margin_seconds: i64,
    /// Timeout of one call.
    pub timeout_ms: u64,
    /// Report mobile bindings to the platform (爱流量 `weekBind/create`).
    pub report_bindings: bool,
    /// Accept `POST /ops/callbacks/flow-order` (爱流量 `flowOrders/create`).
    pub report_flow_orders: bool,
}

/// Body encoding of the open platform's POST calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostFormat {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json`.
    Json,
}

/// `[wechatpay]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatPay {
    /// API base URL.
    pub base_url: String,
    /// App id.
    #[serde(deserialize_with = "string_like")]
    pub appid: String,
    /// Merchant id.
    #[serde(deserialize_with = "string_like")]
    pub mchid: String,
    /// Merchant certificate serial.
    #[serde(deserialize_with = "string_like")]
    pub merchant_serial: String,
    /// Merchant private key (PEM file).
    pub merchant_key_file: String,
    /// APIv3 key.
    pub apiv3_key: Secret,
    /// Platform certificate serial.
    #[serde(deserialize_with = "string_like")]
    pub platform_serial: String,
    /// Platform public key (PEM file).
    pub platform_public_key_file: String,
    /// Notification URL (empty: `public.base_url` + `/wechat/notify`).
    pub notify_url: String,
    /// The open platform's appid is bound to the merchant: its openids can pay. When
    /// false, a silent OAuth pass of `wechat_mp` gets each user's payment openid.
    pub platform_appid_is_merchant: bool,
    /// Notifications whose timestamp is further from now than this are refused.
    pub notify_max_skew_seconds: i64,
    /// Query an unpaid order this long after it was created.
    pub reconcile_after_seconds: i64,
    /// How often the reconciler looks for unpaid orders.
    pub reconcile_interval_seconds: u64,
    /// Give up on (close) an order unpaid this long.
    pub order_expire_seconds: i64,
    /// Timeout of one call.
    pub timeout_ms: u64,
    /// `description` of recharge orders (shown on the user's bill).
    pub description: String,
}

/// `[wechat_mp]`: kioskd's own official account (服务号).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatMp {
    /// App id (empty: none).
    #[serde(deserialize_with = "string_like")]
    pub appid: String,
    /// AppSecret.
    pub secret: Secret,
    /// `https://api.weixin.qq.com`.
    pub api_base_url: String,
    /// `https://open.weixin.qq.com`.
    pub oauth_base_url: String,
}

/// `[outbox]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbox {
    /// How often the worker looks for due sends when nothing woke it.
    pub poll_ms: u64,
    /// First retry delay; doubles per attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Attempts before a send is marked failed.
    pub max_attempts: i64,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Parsing or merging failed.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `file`, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::figment(file)
            .extract()
            .map_err(Box::new)
            .map_err(ConfigError::Load)
            .and_then(Self::validated)
    }

    /// Defaults, then `file`, then the environment, then `overrides` (TOML text; tests).
    pub fn load_with(file: Option<&Path>, overrides: &str) -> Result<Self, ConfigError> {
        Self::load_layers(file, &[overrides])
    }

    /// As `load_with`, with several TOML layers, later ones winning.
    pub fn load_layers(file: Option<&Path>, layers: &[&str]) -> Result<Self, ConfigError> {
        layers
            .iter()
            .fold(Self::figment(file), |f, l| f.merge(Toml::string(l)))
            .extract()
            .map_err(Box::new)
            .map_err(ConfigError::Load)
            .and_then(Self::validated)
    }

    fn figment(file: Option<&Path>) -> Figment {
        let mut f = Figment::from(Toml::string(DEFAULTS));
        if let Some(p) = file {
            f = f.merge(Toml::file_exact(p));
        }
        // Only KIOSKD_<SECTION>__<KEY> is configuration; other KIOSKD_* variables (the
        // CLI's, the tests') are not, and must not trip the unknown-key check.
        f.merge(
            Env::prefixed("KIOSKD_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        )
    }

    fn validated(self) -> Result<Self, ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.billing.unit_seconds == 0 {
            return bad("billing.unit_seconds must be at least 1");
        }
        if self.billing.heartbeat_timeout_seconds == 0 {
            return bad("billing.heartbeat_timeout_seconds must be at least 1");
        }
        if self.server.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return bad("server.time_zone is not a known IANA zone");
        }
        let prod = self.server.environment == Environment::Production;
        if prod && self.payments.mode == PaymentsMode::Sandbox {
            return bad(
                "payments.mode = \"sandbox\" credits without payment and is refused with server.environment = \"production\"",
            );
        }
        if prod && self.identity.mode == IdentityMode::Dev {
            return bad(
                "identity.mode = \"dev\" lets anyone sign in as anyone and is refused with server.environment = \"production\"",
            );
        }
        if self.payments.mode == PaymentsMode::Sandbox
            && self.identity.mode == IdentityMode::Open189
            && !self.open189.appid.is_empty()
            && !self.payments.sandbox_acknowledged
        {
            return bad(
                "payments.mode = \"sandbox\" with a real identity provider (open189.appid) gives real users free credit; configure [wechatpay], or set payments.sandbox_acknowledged = true if that is what you want",
            );
        }
        if prod {
            if self.identity.cookie_secret.expose().len() < 32 {
                return bad("identity.cookie_secret must be at least 32 bytes in production");
            }
            let ops = self.ops.token.expose();
            if !ops.is_empty() && ops.len() < 32 {
                return bad(
                    "ops.token must be empty (operator accounts only) or at least 32 bytes in production",
                );
            }
            if self.ws.allow_unsigned {
                return bad(
                    "ws.allow_unsigned lets anyone connect as any kiosk and is refused in production",
                );
            }
            if self.sms.sender == SmsSenderKind::Log {
                return bad(
                    "sms.sender = \"log\" delivers no code and is refused in production: set sms.sender = \"http\" and sms.gateway_url",
                );
            }
        }
        if self.sms.sender == SmsSenderKind::Http && !self.sms.gateway_url.starts_with("http") {
            return bad("sms.sender = \"http\" needs sms.gateway_url (http:// or https://)");
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return bad("metrics.listen must be an address such as 127.0.0.1:9090, or empty");
        }
        if self.payments.mode == PaymentsMode::Wechatpay {
            let w = &self.wechatpay;
            if w.appid.is_empty()
                || w.mchid.is_empty()
                || w.merchant_serial.is_empty()
                || w.merchant_key_file.is_empty()
                || w.platform_serial.is_empty()
                || w.platform_public_key_file.is_empty()
            {
                return bad(
                    "payments.mode = \"wechatpay\" needs wechatpay.appid, mchid, merchant_serial, merchant_key_file, platform_serial and platform_public_key_file",
                );
            }
            if w.apiv3_key.expose().len() != 32 {
                return bad("wechatpay.apiv3_key must be 32 bytes");
            }
            if !w.platform_appid_is_merchant && self.wechat_mp.appid != w.appid {
                return bad(
                    "wechatpay.platform_appid_is_merchant = false needs wechat_mp.appid equal to wechatpay.appid (the account whose openids pay)",
                );
            }
        }
        if self.identity.session_ttl_seconds <= 0 || self.identity.signin_ttl_seconds <= 0 {
            return bad("identity.session_ttl_seconds and signin_ttl_seconds must be positive");
        }
        if self.open189.token_ttl_seconds <= self.open189.token_refresh_margin_seconds {
            return bad("open189.token_ttl_seconds must exceed token_refresh_margin_seconds");
        }
        if self.outbox.max_attempts < 1
            || self.outbox.retry_base_ms == 0
            || self.outbox.poll_ms == 0
        {
            return bad("outbox.max_attempts, retry_base_ms and poll_ms must be positive");
        }
        if self.wechatpay.reconcile_interval_seconds == 0 {
            return bad("wechatpay.reconcile_interval_seconds must be at least 1");
        }
        // A zero ping period would be a zero-length interval in every socket's writer.
        if self.ws.ping_seconds == 0 || self.ws.idle_timeout_seconds == 0 {
            return bad("ws.ping_seconds and ws.idle_timeout_seconds must be at least 1");
        }
        if !self.sms.debug_code.is_empty() && self.identity.mode != IdentityMode::Dev {
            return bad("sms.debug_code is only allowed with identity.mode = \"dev\"");
        }
        let sv = &self.server;
        if sv.max_connections == 0 {
            return bad("server.max_connections must be at least 1");
        }
        if !(1..=10).contains(&sv.header_read_timeout_seconds) {
            return bad("server.header_read_timeout_seconds must be 1 to 10");
        }
        if sv.request_timeout_seconds == 0
            || sv.body_read_timeout_seconds == 0
            || sv.write_stall_timeout_seconds == 0
        {
            return bad(
                "server.request_timeout_seconds, body_read_timeout_seconds and write_stall_timeout_seconds must be positive",
            );
        }
        if sv.large_body_budget_bytes < 1024 * 1024 {
            return bad("server.large_body_budget_bytes must be at least 1 MiB");
        }
        if let Err(e) = self.trusted_proxies() {
            return Err(ConfigError::Invalid(e));
        }
        if prod && sv.trusted_proxies.is_none() {
            return bad(
                "server.trusted_proxies must be set explicitly in production (the proxies whose X-Forwarded-For names the client, or [] for none)",
            );
        }
        if self.ws.reserved_for_kiosks >= self.ws.max_connections {
            return bad("ws.reserved_for_kiosks must be below ws.max_connections");
        }
        if self.ws.resume_window_seconds == 0 || self.ws.resume_window_seconds > 86_400 {
            return bad("ws.resume_window_seconds must be 1-86400");
        }
        if self.ws.messages_per_second == 0 || self.ws.message_burst == 0 {
            return bad("ws.messages_per_second and ws.message_burst must be positive");
        }
        if self.files.download_timeout_seconds == 0 {
            return bad("files.download_timeout_seconds must be positive");
        }
        if self.payments.max_recharge_fen <= 0 {
            return bad("payments.max_recharge_fen must be positive");
        }
        Ok(self)
    }

    /// The trusted proxies as networks (a bare address is a /32 or /128).
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.server
            .trusted_proxies
            .iter()
            .flatten()
            .map(|p| {
                let p = p.trim();
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("server.trusted_proxies: {p:?} is not an address or CIDR block")
                    })
            })
            .collect()
    }

    /// The wire time zone.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.server
            .time_zone
            .parse()
            .unwrap_or(chrono_tz::Asia::Shanghai)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_secrets_do_not_print() {
        let c = Config::load_with(None, "[ops]\ntoken = \"s3cret\"").unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.billing.unit_seconds, 60);
        assert_eq!(c.actors.idle_seconds, 300);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(Config::load_with(None, "[server]\nlisten_typo = 1").is_err());
        assert!(Config::load_with(None, "[nope]\nx = 1").is_err());
    }

    #[test]
    fn numbers_are_accepted_where_strings_are_expected() {
        let c = Config::load_with(
            None,
            "[identity]\nmode = \"dev\"\n[sms]\ndebug_code = 123456",
        )
        .unwrap();
        assert_eq!(c.sms.debug_code.expose(), "123456");
    }

    #[test]
    fn production_refuses_sandbox_and_dev() {
        let prod = "[server]\nenvironment = \"production\"\n";
        assert!(
            Config::load_layers(None, &[prod]).is_err(),
            "sandbox in production"
        );
        let c = Config::load_layers(None, &[prod, "[identity]\nmode = \"dev\"\n"]);
        assert!(c.is_err(), "dev identity in production");
        let c = Config::load_layers(None, &["[identity]\nmode = \"dev\"\n"]).unwrap();
        assert_eq!(c.server.environment, Environment::Development);
    }

    /// A production configuration that passes every check.
    const GOOD_PROD: &str = r#"
[server]
environment = "production"
trusted_proxies = []
[identity]
cookie_secret = "0123456789abcdef0123456789abcdef"
[ops]
token = "abcdefghijklmnopqrstuvwxyz012345"
[payments]
mode = "wechatpay"
[wechatpay]
appid = "wxapp"
mchid = "1900000001"
merchant_serial = "SER"
merchant_key_file = "/k.pem"
apiv3_key = "0123456789abcdef0123456789abcdef"
platform_serial = "PUB"
platform_public_key_file = "/p.pem"
platform_appid_is_merchant = true
[sms]
sender = "http"
gateway_url = "https://sms.example/send"
"#;

    #[test]
    fn production_refuses_every_unsafe_setting() {
        Config::load_layers(None, &[GOOD_PROD]).expect("the good production config");
        for (layer, key) in [
            ("[identity]\ncookie_secret = \"short\"", "cookie_secret"),
            ("[ops]\ntoken = \"short-token\"", "ops.token"),
            ("[ws]\nallow_unsigned = true", "allow_unsigned"),
            ("[sms]\nsender = \"log\"", "sms.sender"),
            ("[payments]\nmode = \"sandbox\"", "sandbox"),
            ("[identity]\nmode = \"dev\"", "dev"),
        ] {
            let e = Config::load_layers(None, &[GOOD_PROD, layer])
                .expect_err(layer)
                .to_string();
            assert!(e.contains(key), "{layer}: {e}");
        }
        // Operator accounts only: an empty shared token is fine.
        Config::load_layers(None, &[GOOD_PROD, "[ops]\ntoken = \"\""]).unwrap();
    }

    #[test]
    fn sandbox_next_to_a_real_identity_provider_needs_an_acknowledgement() {
        let real = "[open189]\nappid = \"wx1b0d10b65d395395\"\nsecret = \"s\"";
        let e = Config::load_layers(None, &[real]).expect_err("free credit for real users");
        assert!(e.to_string().contains("sandbox_acknowledged"), "{e}");
        Config::load_layers(None, &[real, "[payments]\nsandbox_acknowledged = true"]).unwrap();
    }

    #[test]
    fn open189_is_the_default_and_starts_unconfigured() {
        let c = Config::load_with(None, "").unwrap();
        assert_eq!(c.identity.mode, IdentityMode::Open189);
        assert!(c.open189.appid.is_empty());
    }

    #[test]
    fn wechatpay_needs_its_keys() {
        assert!(Config::load_with(None, "[payments]\nmode = \"wechatpay\"").is_err());
    }

    #[test]
    fn zero_unit_is_refused() {
        assert!(Config::load_with(None, "[billing]\nunit_seconds = 0").is_err());
    }

    #[test]
    fn zero_socket_periods_are_refused() {
        for bad in ["[ws]\nping_seconds = 0", "[ws]\nidle_timeout_seconds = 0"] {
            match Config::load_with(None, bad) {
                Err(ConfigError::Invalid(m)) => assert!(m.contains("ws.ping_seconds"), "{m}"),
                other => panic!("{bad}: {:?}", other.map(|_| ())),
            }
        }
        assert!(Config::load_with(None, "[ws]\nping_seconds = 1").is_ok());
    }
}
