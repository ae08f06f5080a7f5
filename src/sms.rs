//! SMS captchas: the sender port and the rules (6 digits, 5-minute lifetime, single use,
//! limited guesses, one send per minute and a daily cap per mobile, an hourly cap per
//! client address).

use async_trait::async_trait;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Sends a text message.
#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    /// Sends `code` to `mobile`.
    async fn send_code(&self, mobile: &str, code: &str) -> Result<(), String>;
}

/// The default sender: writes the code to the log (no SMS gateway configured).
pub struct LogSender;

#[async_trait]
impl SmsSender for LogSender {
    async fn send_code(&self, mobile: &str, code: &str) -> Result<(), String> {
        tracing::info!(
            mobile,
            code,
            "sms captcha (log sender: no gateway configured)"
        );
        Ok(())
    }
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
