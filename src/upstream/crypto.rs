//! The cryptography of WeChat Pay API v3 and the JS-SDK (`shared/reference/wechat.md`
//! §2, §4, §5, §7), on RustCrypto crates: SHA256withRSA (RSASSA-PKCS1-v1_5, SHA-256)
//! request signing, `paySign` and notification/response verification, AEAD_AES_256_GCM
//! decryption of a notification's `resource`, and the `wx.config` SHA-1 signature.
//! Nothing here panics on input: every malformed value is an `Err` or `false`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A key that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The merchant API private key (PKCS#8 PEM, `apiclient_key.pem`): signs requests and
/// `paySign`.
#[derive(Clone)]
pub struct MerchantKey(SigningKey<Sha256>);

impl std::fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MerchantKey([redacted])")
    }
}

impl MerchantKey {
    /// From PKCS#8 PEM text (`BEGIN PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let k = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| KeyError(format!("merchant key is not a PKCS#8 RSA PEM: {e}")))?;
        Ok(Self(SigningKey::<Sha256>::new(k)))
    }

    /// base64(SHA256withRSA(message)).
    pub fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.0.sign(message).to_bytes())
    }

    /// The matching public key (tests use one key for both roles).
    pub fn public(&self) -> PlatformKey {
        PlatformKey(VerifyingKey::<Sha256>::new(RsaPublicKey::from(
            self.0.as_ref(),
        )))
    }
}

/// The WeChat Pay public key (SPKI PEM, `BEGIN PUBLIC KEY`): verifies notifications and
/// responses.
#[derive(Clone, Debug)]
pub struct PlatformKey(VerifyingKey<Sha256>);

impl PlatformKey {
    /// From SPKI PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let k = RsaPublicKey::from_public_key_pem(pem)
            .map_err(|e| KeyError(format!("platform key is not an SPKI RSA PEM: {e}")))?;
        Ok(Self(VerifyingKey::<Sha256>::new(k)))
    }

    /// Does base64 `signature` sign `message`? False for anything malformed.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let Ok(raw) = B64.decode(signature.trim()) else {
            return false;
        };
        let Ok(sig) = Signature::try_from(raw.as_slice()) else {
            return false;
        };
        self.0.verify(message, &sig).is_ok()
    }
}

/// The string a Pay API request signs: `METHOD\nURL\nTS\nNONCE\nBODY\n`.
pub fn request_message(
    method: &str,
    canonical_url: &str,
    ts: i64,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{canonical_url}\n{ts}\n{nonce}\n{body}\n")
}

/// The `Authorization` header of a signed Pay API request.
pub fn authorization(mchid: &str, serial: &str, nonce: &str, ts: i64, signature: &str) -> String {
    format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"{mchid}\",nonce_str=\"{nonce}\",timestamp=\"{ts}\",serial_no=\"{serial}\",signature=\"{signature}\""
    )
}

/// The string `paySign` signs: `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn pay_sign_message(appid: &str, ts: &str, nonce: &str, package: &str) -> String {
    format!("{appid}\n{ts}\n{nonce}\n{package}\n")
}

/// The bytes a notification or response signature covers: `TS\nNONCE\nBODY\n`.
pub fn notify_message(ts: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ts.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(ts.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// Why a `resource` could not be decrypted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    /// The APIv3 key is not 32 bytes.
    #[error("the APIv3 key must be 32 bytes")]
    Key,
    /// The nonce is not 12 bytes.
    #[error("the nonce must be 12 bytes")]
    Nonce,
    /// The ciphertext is not base64.
    #[error("the ciphertext is not base64")]
    Base64,
    /// The tag did not match (wrong key, nonce, AAD or altered ciphertext).
    #[error("authentication failed")]
    Tag,
}

/// AEAD_AES_256_GCM: key = the APIv3 key bytes, IV = `nonce`, AAD = `associated_data`,
/// input = base64 `ciphertext` whose last 16 bytes are the tag.
pub fn decrypt_resource(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, DecryptError> {
    if apiv3_key.len() != 32 {
        return Err(DecryptError::Key);
    }
    if nonce.len() != 12 {
        return Err(DecryptError::Nonce);
    }
    let cipher = Aes256Gcm::new_from_slice(apiv3_key).map_err(|_| DecryptError::Key)?;
    let ct = B64
        .decode(ciphertext_b64)
        .map_err(|_| DecryptError::Base64)?;
    cipher
        .decrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &ct,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| DecryptError::Tag)
}

/// The inverse of [`decrypt_resource`] (the stand-in WeChat Pay of the tests uses it).
pub fn encrypt_resource(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String, DecryptError> {
    if nonce.len() != 12 {
        return Err(DecryptError::Nonce);
    }
    let cipher = Aes256Gcm::new_from_slice(apiv3_key).map_err(|_| DecryptError::Key)?;
    let ct = cipher
        .encrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: plaintext,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| DecryptError::Tag)?;
    Ok(B64.encode(ct))
}

/// The `wx.config` signature: lowercase hex SHA-1 of
/// `jsapi_ticket=T&noncestr=N&timestamp=TS&url=U`, with `U` cut at `#`.
pub fn jsapi_signature(ticket: &str, noncestr: &str, timestamp: &str, url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let s = format!("jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}");
    hex::encode(Sha1::digest(s.as_bytes()))
}

/// `n` random characters of `[0-9A-Za-z]` (nonces, as the official SDKs make them).
pub fn nonce_str(n: usize) -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    //! The vectors of `shared/reference/wechat.md` §10, with its throwaway test key.
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/wechatpay_test_key.pem");
    const PUB: &str = include_str!("../../tests/fixtures/wechatpay_test_pub.pem");
    const BODY: &[u8] = include_bytes!("../../tests/fixtures/wechatpay_notify_body.json");
    const APIV3: &[u8] = b"5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vv";
    const NOTIFY_SIG: &str = "gRNU52cDFPQTSEg+GT5TdFK+nNZRmSLxjnErAwjIcCUlnVZXdNSHuZ+2CrBKIWS1JWFHuwc86QmJrsS08VtIrlZ59RkdT5pWDfbYT8BknrZf0FVGr1SwZPbyWcKzLD5jUVwQbxIabx5q8uwvxQiF/6hQUGiaj0LqpYoQMbUkz5Zb8d0qLKDWnri+nw593my9bzLRqvcQtTi+HT7UCA98PkQZGJZdFxPGpx7yRsUJdqDB1CMVWJwRETFsIL/sg4pI+RD+BJ7ztw/QQov802kL8A1Xi+Ys7rDT92eVo5+WE7rwNY3vmzxsjx6VvaiAc6RGmZy9unMpatqn1nFdDTapiA==";

    #[test]
    fn notification_vector_verifies_and_decrypts() {
        assert_eq!(BODY.len(), 901);
        assert_eq!(
            hex::encode(Sha256::digest(BODY)),
            "c9d9cde4d5fa5d919d67a7b9e38bbcaeda8efd716f625a650ce4fa44bfacc0a3"
        );
        let key = PlatformKey::from_pem(PUB).unwrap();
        let msg = notify_message("1736908206", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", BODY);
        assert_eq!(msg.len(), 946);
        assert!(key.verify(&msg, NOTIFY_SIG));
        // Any changed byte fails.
        let mut bad = BODY.to_vec();
        bad[10] ^= 1;
        assert!(!key.verify(
            &notify_message("1736908206", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", &bad),
            NOTIFY_SIG
        ));
        assert!(!key.verify(&msg, "WECHATPAY/SIGNTEST/abc"));
        assert!(!key.verify(&msg, "not base64 !!"));

        let v: serde_json::Value = serde_json::from_slice(BODY).unwrap();
        let r = &v["resource"];
        let plain = decrypt_resource(
            APIV3,
            r["nonce"].as_str().unwrap(),
            r["associated_data"].as_str().unwrap(),
            r["ciphertext"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(plain.len(), 424);
        let t: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(t["transaction_id"], "4200002345202501151234567890");
        assert_eq!(t["out_trade_no"], "R20250115103000A1B2");
        assert_eq!(t["amount"]["total"], 1000);
        assert_eq!(t["mchid"], "1900000109");
        assert_eq!(t["appid"], "wx0123456789abcdef");
        // The tag is the ciphertext's last 16 bytes.
        let ct = B64.decode(r["ciphertext"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(&ct[ct.len() - 16..]),
            "ab7e8dfbcd9cb3c60bd1ec8f8f29cc8b"
        );
        // Another key, nonce or AAD fails the tag; bad sizes fail cleanly.
        let c = r["ciphertext"].as_str().unwrap();
        assert_eq!(
            decrypt_resource(
                b"5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vX",
                "fCl8IqDd5HBp",
                "transaction",
                c
            ),
            Err(DecryptError::Tag)
        );
        assert_eq!(
            decrypt_resource(APIV3, "fCl8IqDd5HBq", "transaction", c),
            Err(DecryptError::Tag)
        );
        assert_eq!(
            decrypt_resource(APIV3, "fCl8IqDd5HBp", "", c),
            Err(DecryptError::Tag)
        );
        assert_eq!(
            decrypt_resource(APIV3, "short", "transaction", c),
            Err(DecryptError::Nonce)
        );
        assert_eq!(
            decrypt_resource(b"short", "fCl8IqDd5HBp", "transaction", c),
            Err(DecryptError::Key)
        );
        assert_eq!(
            decrypt_resource(APIV3, "fCl8IqDd5HBp", "transaction", "%%%"),
            Err(DecryptError::Base64)
        );
        // Round trip through the stand-in's encryption.
        let again = encrypt_resource(APIV3, "fCl8IqDd5HBp", "transaction", &plain).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn pay_sign_vector() {
        let key = MerchantKey::from_pem(KEY).unwrap();
        let msg = pay_sign_message(
            "wx0123456789abcdef",
            "1736908200",
            "e61463f8efa94090b1f366cccfbbb444",
            "prepay_id=wx15103000912345b2c3d4e5f60718293a0000",
        );
        assert_eq!(
            hex::encode(Sha256::digest(msg.as_bytes())),
            "118c15890f3372d6f1c2e8e21f67bd438bcb7a7d6f5efe9e6e7b1019fa4fcf09"
        );
        assert_eq!(
            key.sign(msg.as_bytes()),
            "V5UvvvNSiB+RWRoaeMLqo7UbXly+w1bd0nFCoWttJ4TFLZE3xtWV9fXMXcozIWRztwT6y7hGCeAcToBbDvwDZO+8DqGwgEYP2JSTNfxe2Cc5laQwntkHOU00hTKTyV1fRLrqPJsVGa1TPTpXTbquhyapwfnPObuWmSG54x8P/2H0FwaixDFUGvSVc5QQF+9S9U2A/1fM+ZIItLEOjMLqimih3T+3zgO5G1Q7OVjcxx71VUkohSEQZDlWJVUfn3HFFQyZSDoFZi6TT786+lEfI8lnLp8IKICFxNNSjLy7zpJ1G5wnvpiNOxYqat0JOKqNcxlXEih6w/Gh+QVVjAfEuA=="
        );
        assert!(
            key.public()
                .verify(msg.as_bytes(), &key.sign(msg.as_bytes()))
        );
    }

    #[test]
    fn request_signing_vectors() {
        let key = MerchantKey::from_pem(KEY).unwrap();
        let body = r#"{"appid":"wx0123456789abcdef","mchid":"1900000109","description":"Kiosk balance top-up","out_trade_no":"R20250115103000A1B2","notify_url":"https://kiosk.example.com/wechat/notify","amount":{"total":1000,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}"#;
        let nonce = "593BEC0C930BF1AFEB40B4A08C8FB242";
        let msg = request_message(
            "POST",
            "/v3/pay/transactions/jsapi",
            1736908199,
            nonce,
            body,
        );
        let sig = key.sign(msg.as_bytes());
        assert_eq!(
            authorization(
                "1900000109",
                "0123456789ABCDEF0123456789ABCDEF01234567",
                nonce,
                1736908199,
                &sig
            ),
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000109\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",timestamp=\"1736908199\",serial_no=\"0123456789ABCDEF0123456789ABCDEF01234567\",signature=\"SnelcwekUkmhaVwpyTu2q6CpEXeyQdb9XJpbDEA8fi9xgrvS0YswMXTh6wyAHEUSHmhZaKFMxfbJSA+DqW1tLMkgvNdkaGjKdFJDmI5KfV0uw+aB8pG9//0vJPmaoV2JZUwQY8iwOSdiBHMIK8XHL5NIaw5dRIoeN8INoNN7mBDX7gkjQ53DedabPXOTLzeEKpCCsTDrPXRWAuBdF98n26lcWwXIC64qCYCxoAkswRXvg1SRBXVzU5KaG8IiXLt9/TqgN9NMYh61gPE/80G0nNlARNJRxqiVd8xiGyshvJz0VsvJSZEv7k5XwFNWyWW//hBH3NNT/MFo9zBMMsezZg==\""
        );
        let get = request_message(
            "GET",
            "/v3/pay/transactions/out-trade-no/R20250115103000A1B2?mchid=1900000109",
            1736908199,
            nonce,
            "",
        );
        assert!(get.ends_with("C8FB242\n\n"));
        assert_eq!(
            key.sign(get.as_bytes()),
            "fdk5PrBSOxNs9yeQO/oWhFYTbUc5q2Z0MntbG3EruPN0RhycVVIKUwKD7+6W1OIeOtc67U2YKH67QQzn73rqrE5f66MN7fren2C5HtzRYsqNI57Nkpt6xtU+nad6GNOeQdv9D3sn2EzOeRYxd2lUL3LCAad1jCBn7wF1OQlmxUauPlRTq3WooZrDb+feJ1XfyZlXj/GbU4XQqeyC6MdTDzeYjF7KRuXMmxfiBGvzzH/xRKhreoWgFt29I6HZP2I89a3a7y5joDS+yhUo1E2CE/cEJeQ7HPT9PRt9+aYIGBefWR52NnA6mjWqkolv11/Khv7Mkv+R/AlKc1mBFWEvtA=="
        );
    }

    #[test]
    fn jsapi_signature_vectors() {
        let t = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
        assert_eq!(
            jsapi_signature(
                t,
                "Wm3WZYTPz0wzccnW",
                "1414587457",
                "http://mp.weixin.qq.com"
            ),
            "f4d90daf4b3bca3078ab155816175ba34c443a7b"
        );
        assert_eq!(
            jsapi_signature(
                t,
                "Wm3WZYTPz0wzccnW",
                "1414587457",
                "http://mp.weixin.qq.com?params=value"
            ),
            "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
        );
        assert_eq!(
            jsapi_signature(
                "kgt8ON7yVITDhtdwci0qeT4-bOLxIgnVFmmXq0l4HkDnn0gb8R0Tg6ES2lO9Ij8pQTXh4cN8yKuXkW8ygYjJ9A",
                "Q7fN2xYp4LmZ8aKd",
                "1736908300",
                "https://kiosk.example.com/h5/index.html?device=K0001&from=scan#/recharge"
            ),
            "f1caca21ae6da39f0fe1c872b9f0e613b4416d35"
        );
    }

    #[test]
    fn bad_keys_are_errors() {
        assert!(MerchantKey::from_pem("nope").is_err());
        assert!(PlatformKey::from_pem(KEY).is_err());
        assert_eq!(nonce_str(32).len(), 32);
    }
}
