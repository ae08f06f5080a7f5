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
}

/// `[ops]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// Bearer token.
    pub token: Secret,
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
    /// Wrong guesses before a code is burned.
    pub max_attempts: i64,
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
    /// Path of the user-info call.
    pub user_info_path: String,
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
    /// Notification URL.
    pub notify_url: String,
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
        if self.payments.mode == PaymentsMode::Wechatpay {
            return bad(
                "payments.mode = \"wechatpay\" is not available in this build yet; use \"sandbox\"",
            );
        }
        if self.identity.mode == IdentityMode::Open189 {
            return bad(
                "identity.mode = \"open189\" is not available in this build yet; use \"dev\"",
            );
        }
        if !self.sms.debug_code.is_empty() && self.identity.mode != IdentityMode::Dev {
            return bad("sms.debug_code is only allowed with identity.mode = \"dev\"");
        }
        if self.payments.max_recharge_fen <= 0 {
            return bad("payments.max_recharge_fen must be positive");
        }
        Ok(self)
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
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(Config::load_with(None, "[server]\nlisten_typo = 1").is_err());
        assert!(Config::load_with(None, "[nope]\nx = 1").is_err());
    }

    #[test]
    fn numbers_are_accepted_where_strings_are_expected() {
        let c = Config::load_with(None, "[sms]\ndebug_code = 123456").unwrap();
        assert_eq!(c.sms.debug_code.expose(), "123456");
    }

    #[test]
    fn zero_unit_is_refused() {
        assert!(Config::load_with(None, "[billing]\nunit_seconds = 0").is_err());
    }
}
