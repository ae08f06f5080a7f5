//! SMS captchas: the sender port and the rules (6 digits, 5-minute lifetime, single use,
//! limited guesses, one send per minute and a daily cap per mobile, an hourly cap per
//! client address).

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use crate::config::Sms as SmsConfig;
use crate::services::Services;
use crate::store::Db;
use kioskd_actors::ports::StoreError;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Sends a text message.
#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    /// Sends `code` to `mobile`.
    async fn send_code(&self, mobile: &str, code: &str) -> Result<(), String>;
}

/// The development sender: delivers nothing. The log says a code was made for a masked
/// mobile — never the code (use `sms.debug_code` in dev identity mode).
pub struct LogSender;

/// `17717463317` → `177****3317`.
pub fn mask_mobile(mobile: &str) -> String {
    let chars: Vec<char> = mobile.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

#[async_trait]
impl SmsSender for LogSender {
    async fn send_code(&self, mobile: &str, _code: &str) -> Result<(), String> {
        tracing::info!(
            mobile = %mask_mobile(mobile),
            "sms captcha made, not delivered (sms.sender = \"log\": no gateway configured)"
        );
        Ok(())
    }
}

/// Delivers codes through an HTTP gateway: `POST gateway_url {"mobile","code"}` with a
/// bearer token; any 2xx is sent.
pub struct HttpSender {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl HttpSender {
    /// A sender for `url`.
    pub fn new(url: &str, token: &str) -> Result<HttpSender, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .user_agent("kioskd")
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(HttpSender {
            url: url.to_string(),
            token: token.to_string(),
            http,
        })
    }
}

#[async_trait]
impl SmsSender for HttpSender {
    async fn send_code(&self, mobile: &str, code: &str) -> Result<(), String> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&serde_json::json!({ "mobile": mobile, "code": code }));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("sms gateway: {}", e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "sms gateway answered HTTP {}",
                resp.status().as_u16()
            ))
        }
    }
}

/// The sender the configuration names.
pub fn sender(cfg: &SmsConfig) -> Result<std::sync::Arc<dyn SmsSender>, String> {
    Ok(match cfg.sender {
        crate::config::SmsSenderKind::Log => std::sync::Arc::new(LogSender),
        crate::config::SmsSenderKind::Http => std::sync::Arc::new(HttpSender::new(
            &cfg.gateway_url,
            cfg.gateway_token.expose(),
        )?),
    })
}

/// A fresh 6-digit code from the OS-seeded CSPRNG.
pub fn new_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// The stored form of a code (bound to its mobile).
pub fn hash_code(mobile: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{mobile}:{code}").as_bytes()))
}

/// A mainland mobile number: 11 digits starting with 1.
pub fn valid_mobile(m: &str) -> bool {
    m.len() == 11 && m.starts_with('1') && m.chars().all(|c| c.is_ascii_digit())
}

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// The mobile's gap, hourly or daily cap.
    Mobile,
    /// The client address's hourly cap.
    Client,
}

/// What a send failed on (not the caller's fault).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SMS gateway.
    #[error("sms: {0}")]
    Gateway(String),
}

/// The captcha rules over storage and a sender. Every limit is one conditional statement
/// in the database ([`Db::take_send_quota`], [`Db::captcha_guess`]): the database's
/// word, never a read followed by a write, so parallel requests cannot exceed it.
pub struct Captchas<'a> {
    /// Storage.
    pub db: &'a Db,
    /// The limits.
    pub cfg: &'a SmsConfig,
    /// The sender.
    pub sender: &'a dyn SmsSender,
}

impl Captchas<'_> {
    /// Sends a fresh code to `mobile` for a request from `client` (its address), unless a
    /// limit refuses. The client's quota is taken first (an address hammering many mobiles
    /// is stopped without using up their quotas), then the mobile's.
    pub async fn send(
        &self,
        mobile: &str,
        client: &str,
        now: i64,
    ) -> Result<Result<(), SendRefusal>, SendError> {
        let c = self.cfg;
        if !self
            .db
            .take_send_quota(
                &format!("captcha:client:{client}"),
                now,
                0,
                c.hourly_per_client,
                i64::MAX,
            )
            .await?
        {
            return Ok(Err(SendRefusal::Client));
        }
        if !self
            .db
            .take_send_quota(
                &format!("captcha:mobile:{mobile}"),
                now,
                c.resend_seconds.saturating_mul(1000),
                c.hourly_per_mobile,
                c.daily_per_mobile,
            )
            .await?
        {
            return Ok(Err(SendRefusal::Mobile));
        }
        let code = new_code();
        self.db
            .insert_captcha(
                mobile,
                &hash_code(mobile, &code),
                client,
                now,
                now.saturating_add(c.ttl_seconds.saturating_mul(1000)),
            )
            .await?;
        self.sender
            .send_code(mobile, &code)
            .await
            .map_err(SendError::Gateway)?;
        Ok(Ok(()))
    }

    /// One guess at the newest code of `mobile`: true when it matched (the code is then
    /// used up). A wrong guess counts; the code burns after `max_attempts` of them.
    pub async fn verify(&self, mobile: &str, code: &str, now: i64) -> Result<bool, StoreError> {
        let hash = hash_code(mobile, code);
        let stored = self
            .db
            .captcha_guess(mobile, &hash, now, self.cfg.max_attempts)
            .await?;
        Ok(stored.is_some_and(|h| bool::from(h.as_bytes().ct_eq(hash.as_bytes()))))
    }
}

/// The captcha rules over the composition root's storage, limits and sender.
pub fn captchas(s: &Services) -> Captchas<'_> {
    Captchas {
        db: &s.db,
        cfg: &s.cfg.sms,
        sender: s.sms.as_ref(),
    }
}

/// Sends a fresh code to `mobile` for a request from `client` (`POST /wechat/captcha`).
pub async fn send_captcha(
    s: &Services,
    mobile: &str,
    client: &str,
) -> Result<Result<(), SendRefusal>, SendError> {
    let now = s.coord.clock().now_ms();
    captchas(s).send(mobile, client, now).await
}

/// Checks a captcha: the debug code (dev identity mode only, compared in constant time)
/// or one guess at the newest unused code ([`Captchas::verify`]: burns on success or
/// after too many wrong guesses).
pub async fn check_code(s: &Services, mobile: &str, code: &str) -> Result<bool, StoreError> {
    let dbg = s.cfg.sms.debug_code.expose();
    if s.cfg.identity.mode == crate::config::IdentityMode::Dev
        && !dbg.is_empty()
        && bool::from(dbg.as_bytes().ct_eq(code.as_bytes()))
    {
        return Ok(true);
    }
    let now = s.coord.clock().now_ms();
    captchas(s).verify(mobile, code, now).await
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    #[test]
    fn mobiles_are_masked_in_the_middle() {
        assert_eq!(mask_mobile("17717463317"), "177****3317");
        assert_eq!(mask_mobile("123"), "***");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_mobiles_are_checked() {
        let c = new_code();
        assert_eq!(c.len(), 6);
        assert!(c.chars().all(|d| d.is_ascii_digit()));
        assert!(valid_mobile("17717463317"));
        assert!(!valid_mobile("2771746331"));
        assert!(!valid_mobile("1771746331x"));
        assert_ne!(
            hash_code("17717463317", "123456"),
            hash_code("17717463318", "123456")
        );
    }
}
