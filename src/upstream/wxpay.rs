//! WeChat Pay API v3, JSAPI (`shared/reference/wechat.md` §2–§6): signed order creation,
//! the H5 page's pay parameters, order query and close (every 2xx reply verified), and
//! the verification of payment notifications (raw body, timestamp window, SIGNTEST
//! probes, key by serial, AES-256-GCM resource).

use std::time::Duration;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::UpstreamError;
use super::crypto::{self, MerchantKey, PlatformKey};
use crate::config::WechatPay as Cfg;

/// Metric `op` labels.
pub mod op {
    /// `POST /v3/pay/transactions/jsapi`.
    pub const ORDER: &str = "wxpay_order";
    /// `GET /v3/pay/transactions/out-trade-no/{no}`.
    pub const QUERY: &str = "wxpay_query";
    /// `POST .../close`.
    pub const CLOSE: &str = "wxpay_close";
}

/// Amounts of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Order amount (fen).
    #[serde(default)]
    pub total: i64,
    /// What the payer paid (fen).
    #[serde(default)]
    pub payer_total: Option<i64>,
    /// `CNY`.
    #[serde(default)]
    pub currency: String,
}

/// A transaction as a notification's resource or an order query describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Merchant id.
    #[serde(default)]
    pub mchid: String,
    /// App id.
    #[serde(default)]
    pub appid: String,
    /// Our order number.
    #[serde(default)]
    pub out_trade_no: String,
    /// WeChat's payment id.
    #[serde(default)]
    pub transaction_id: String,
    /// `SUCCESS`, `NOTPAY`, `CLOSED`, `REFUND`, ...
    #[serde(default)]
    pub trade_state: String,
    /// Amounts.
    #[serde(default)]
    pub amount: Amount,
}

/// What the H5 page passes to `getBrandWCPayRequest` (plus our order number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayParams {
    /// App id.
    pub app_id: String,
    /// Unix seconds (string).
    pub time_stamp: String,
    /// Random.
    pub nonce_str: String,
    /// `prepay_id=...`.
    pub package: String,
    /// `RSA`.
    pub sign_type: String,
    /// SHA256withRSA of `appId\ntimeStamp\nnonceStr\npackage\n`.
    pub pay_sign: String,
    /// Our order number (to poll).
    #[serde(rename = "out_trade_no")]
    pub out_trade_no: String,
}

/// A verified notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// `TRANSACTION.SUCCESS` with its decrypted transaction.
    Transaction(Transaction),
    /// Another verified event (refunds, ...): acknowledged and logged.
    Other(String),
}

/// Why a notification was refused (answered 4xx with `{"code":"FAIL"}`; WeChat retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A header is missing or repeated.
    #[error("missing or repeated Wechatpay-* header: {0}")]
    Header(&'static str),
    /// Too far from now.
    #[error("timestamp outside the allowed window")]
    Stale,
    /// A deliberate bad-signature probe.
    #[error("signature probe")]
    Probe,
    /// An unknown key serial.
    #[error("unknown Wechatpay-Serial")]
    Serial,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Unsupported signature type.
    #[error("unsupported Wechatpay-Signature-Type")]
    SignatureType,
    /// Not the JSON WeChat Pay sends.
    #[error("malformed body: {0}")]
    Body(String),
    /// The resource did not decrypt.
    #[error("resource: {0}")]
    Decrypt(crypto::DecryptError),
}

/// The WeChat Pay client.
#[derive(Clone)]
pub struct WxPay {
    http: reqwest::Client,
    cfg: Cfg,
    merchant: MerchantKey,
    platform: PlatformKey,
    notify_url: String,
}

impl std::fmt::Debug for WxPay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxPay")
            .field("mchid", &self.cfg.mchid)
            .finish()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, Refused> {
    let mut it = h.get_all(name).iter();
    match (it.next(), it.next()) {
        (Some(v), None) => v.to_str().map_err(|_| Refused::Header(name)),
        _ => Err(Refused::Header(name)),
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl WxPay {
    /// Reads the key files of `cfg`. `public_base_url` makes the default notify URL.
    pub fn new(cfg: &Cfg, public_base_url: &str) -> Result<Self, String> {
        let read = |what: &str, p: &str| {
            std::fs::read_to_string(p).map_err(|e| format!("wechatpay.{what} ({p}): {e}"))
        };
        let merchant = MerchantKey::from_pem(&read("merchant_key_file", &cfg.merchant_key_file)?)
            .map_err(|e| e.to_string())?;
        let platform = PlatformKey::from_pem(&read(
            "platform_public_key_file",
            &cfg.platform_public_key_file,
        )?)
        .map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .user_agent("kioskd")
            .build()
            .map_err(|e| e.to_string())?;
        let notify_url = if cfg.notify_url.is_empty() {
            format!("{}/wechat/notify", public_base_url.trim_end_matches('/'))
        } else {
            cfg.notify_url.clone()
        };
        Ok(Self {
            http,
            cfg: cfg.clone(),
            merchant,
            platform,
            notify_url,
        })
    }

    /// The merchant's appid.
    pub fn appid(&self) -> &str {
        &self.cfg.appid
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        &self.cfg.mchid
    }

    /// A signed call; a 2xx reply must carry a valid platform signature.
    async fn call(
        &self,
        op: &'static str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<(u16, Vec<u8>), UpstreamError> {
        let ts = now_s();
        let nonce = crypto::nonce_str(32);
        let body_s = body.clone().unwrap_or_default();
        let sig = self.merchant.sign(
            crypto::request_message(method.as_str(), path_and_query, ts, &nonce, &body_s)
                .as_bytes(),
        );
        let auth =
            crypto::authorization(&self.cfg.mchid, &self.cfg.merchant_serial, &nonce, ts, &sig);
        let url = format!(
            "{}{}",
            self.cfg.base_url.trim_end_matches('/'),
            path_and_query
        );
        let mut r = self
            .http
            .request(method, url)
            .header("Authorization", auth)
            .header("Accept", "application/json")
            .header("Wechatpay-Serial", &self.cfg.platform_serial);
        if let Some(b) = body {
            r = r.header("Content-Type", "application/json").body(b);
        }
        let res = super::timed(op, r.send()).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| UpstreamError::Transport(e.without_url().to_string()))?
            .to_vec();
        if (200..300).contains(&status) {
            self.verify_signed(&headers, &bytes, now_s()).map_err(|e| {
                UpstreamError::BadReply(format!("unverifiable WeChat Pay reply: {e}"))
            })?;
        }
        Ok((status, bytes))
    }

    fn error_of(status: u16, body: &[u8]) -> UpstreamError {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let code = v
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let msg = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if status >= 500 || status == 429 {
            UpstreamError::Transport(format!("WeChat Pay HTTP {status} {code}: {msg}"))
        } else {
            UpstreamError::Platform {
                status: status as i64,
                msg: format!("{code}: {msg}"),
            }
        }
    }

    /// `POST /v3/pay/transactions/jsapi` → the prepay id.
    pub async fn jsapi_order(
        &self,
        out_trade_no: &str,
        amount: i64,
        description: &str,
        payer_openid: &str,
    ) -> Result<String, UpstreamError> {
        let body = json!({
            "appid": self.cfg.appid,
            "mchid": self.cfg.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "notify_url": self.notify_url,
            "amount": {"total": amount, "currency": "CNY"},
            "payer": {"openid": payer_openid},
        })
        .to_string();
        let (st, b) = self
            .call(
                op::ORDER,
                reqwest::Method::POST,
                "/v3/pay/transactions/jsapi",
                Some(body),
            )
            .await?;
        if st != 200 {
            return Err(Self::error_of(st, &b));
        }
        let v: Value = serde_json::from_slice(&b).unwrap_or_default();
        v.get("prepay_id")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .ok_or_else(|| UpstreamError::BadReply("order reply without prepay_id".into()))
    }

    /// The H5 page's `getBrandWCPayRequest` parameters for a prepay id.
    pub fn pay_params(&self, prepay_id: &str, out_trade_no: &str) -> PayParams {
        let ts = now_s().to_string();
        let nonce = crypto::nonce_str(32);
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = self
            .merchant
            .sign(crypto::pay_sign_message(&self.cfg.appid, &ts, &nonce, &package).as_bytes());
        PayParams {
            app_id: self.cfg.appid.clone(),
            time_stamp: ts,
            nonce_str: nonce,
            package,
            sign_type: "RSA".into(),
            pay_sign,
            out_trade_no: out_trade_no.to_string(),
        }
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` → the transaction, or `None`
    /// when WeChat Pay has no such order.
    pub async fn query(&self, out_trade_no: &str) -> Result<Option<Transaction>, UpstreamError> {
        let pq = format!(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            self.cfg.mchid
        );
        let (st, b) = self
            .call(op::QUERY, reqwest::Method::GET, &pq, None)
            .await?;
        match st {
            200 => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| UpstreamError::BadReply(format!("query reply: {e}"))),
            404 => Ok(None),
            _ => Err(Self::error_of(st, &b)),
        }
    }

    /// `POST .../out-trade-no/{no}/close`.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), UpstreamError> {
        let pq = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        let body = json!({"mchid": self.cfg.mchid}).to_string();
        let (st, b) = self
            .call(op::CLOSE, reqwest::Method::POST, &pq, Some(body))
            .await?;
        if (200..300).contains(&st) {
            Ok(())
        } else {
            Err(Self::error_of(st, &b))
        }
    }

    /// Checks the `Wechatpay-*` headers and signature of a reply or notification.
    pub fn verify_signed(&self, h: &HeaderMap, body: &[u8], now: i64) -> Result<(), Refused> {
        let ts = header(h, "wechatpay-timestamp")?;
        let nonce = header(h, "wechatpay-nonce")?;
        let sig = header(h, "wechatpay-signature")?;
        let serial = header(h, "wechatpay-serial")?;
        if h.get_all("wechatpay-signature-type").iter().count() > 1 {
            return Err(Refused::Header("wechatpay-signature-type"));
        }
        if let Some(t) = h.get("wechatpay-signature-type")
            && t.as_bytes() != b"WECHATPAY2-SHA256-RSA2048"
        {
            return Err(Refused::SignatureType);
        }
        let t: i64 = ts.parse().map_err(|_| Refused::Stale)?;
        if now.abs_diff(t) >= self.cfg.notify_max_skew_seconds.unsigned_abs() {
            return Err(Refused::Stale);
        }
        if sig.starts_with("WECHATPAY/SIGNTEST/") {
            return Err(Refused::Probe);
        }
        if serial != self.cfg.platform_serial {
            return Err(Refused::Serial);
        }
        if !self
            .platform
            .verify(&crypto::notify_message(ts, nonce, body), sig)
        {
            return Err(Refused::Signature);
        }
        Ok(())
    }

    /// Verifies and decrypts a payment notification received at `now` (unix seconds).
    pub fn verify_notification(
        &self,
        h: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Notified, Refused> {
        self.verify_signed(h, body, now)?;
        let v: Value = serde_json::from_slice(body).map_err(|e| Refused::Body(e.to_string()))?;
        let s = |x: &Value, k: &str| x.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let event = s(&v, "event_type");
        let r = v.get("resource").cloned().unwrap_or_default();
        if event != "TRANSACTION.SUCCESS" {
            return Ok(Notified::Other(event));
        }
        if s(&v, "resource_type") != "encrypt-resource"
            || s(&r, "algorithm") != "AEAD_AES_256_GCM"
            || s(&r, "original_type") != "transaction"
        {
            return Err(Refused::Body("not an encrypted transaction".into()));
        }
        let plain = crypto::decrypt_resource(
            self.cfg.apiv3_key.expose().as_bytes(),
            &s(&r, "nonce"),
            &s(&r, "associated_data"),
            &s(&r, "ciphertext"),
        )
        .map_err(Refused::Decrypt)?;
        serde_json::from_slice(&plain)
            .map(Notified::Transaction)
            .map_err(|e| Refused::Body(format!("transaction: {e}")))
    }
}

#[cfg(test)]
mod tests {
    //! `wechat.md` §10 (a): the notification vector at its fixed clock.
    use super::*;
    use crate::config::Secret;

    const BODY: &[u8] = include_bytes!("../../tests/fixtures/wechatpay_notify_body.json");
    const SIG: &str = "gRNU52cDFPQTSEg+GT5TdFK+nNZRmSLxjnErAwjIcCUlnVZXdNSHuZ+2CrBKIWS1JWFHuwc86QmJrsS08VtIrlZ59RkdT5pWDfbYT8BknrZf0FVGr1SwZPbyWcKzLD5jUVwQbxIabx5q8uwvxQiF/6hQUGiaj0LqpYoQMbUkz5Zb8d0qLKDWnri+nw593my9bzLRqvcQtTi+HT7UCA98PkQZGJZdFxPGpx7yRsUJdqDB1CMVWJwRETFsIL/sg4pI+RD+BJ7ztw/QQov802kL8A1Xi+Ys7rDT92eVo5+WE7rwNY3vmzxsjx6VvaiAc6RGmZy9unMpatqn1nFdDTapiA==";
    const SERIAL: &str = "PUB_KEY_ID_TEST0000000000000000000000000001";

    fn pay(apiv3: &str) -> WxPay {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let cfg = Cfg {
            base_url: "http://127.0.0.1:9".into(),
            appid: "wx0123456789abcdef".into(),
            mchid: "1900000109".into(),
            merchant_serial: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
            merchant_key_file: format!("{dir}wechatpay_test_key.pem"),
            apiv3_key: Secret(apiv3.into()),
            platform_serial: SERIAL.into(),
            platform_public_key_file: format!("{dir}wechatpay_test_pub.pem"),
            notify_url: String::new(),
            platform_appid_is_merchant: true,
            notify_max_skew_seconds: 300,
            reconcile_after_seconds: 300,
            reconcile_interval_seconds: 60,
            order_expire_seconds: 7200,
            timeout_ms: 1000,
            description: "x".into(),
        };
        WxPay::new(&cfg, "https://kiosk.example.com").unwrap()
    }

    fn headers(sig: &str, serial: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Wechatpay-Timestamp", "1736908206".parse().unwrap());
        h.insert(
            "Wechatpay-Nonce",
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".parse().unwrap(),
        );
        h.insert("Wechatpay-Serial", serial.parse().unwrap());
        h.insert(
            "Wechatpay-Signature-Type",
            "WECHATPAY2-SHA256-RSA2048".parse().unwrap(),
        );
        h.insert("Wechatpay-Signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn the_vector_is_accepted_at_its_clock() {
        let p = pay("5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vv");
        let Notified::Transaction(t) = p
            .verify_notification(&headers(SIG, SERIAL), BODY, 1736908206)
            .unwrap()
        else {
            panic!("not a transaction")
        };
        assert_eq!(t.transaction_id, "4200002345202501151234567890");
        assert_eq!(t.amount.total, 1000);
        assert_eq!(t.amount.payer_total, Some(1000));
        assert_eq!(t.trade_state, "SUCCESS");
        // Within the window on either side.
        assert!(
            p.verify_notification(&headers(SIG, SERIAL), BODY, 1736908206 + 299)
                .is_ok()
        );
        assert!(
            p.verify_notification(&headers(SIG, SERIAL), BODY, 1736908206 - 299)
                .is_ok()
        );
        // Without the optional signature-type header too.
        let mut h = headers(SIG, SERIAL);
        h.remove("Wechatpay-Signature-Type");
        assert!(p.verify_notification(&h, BODY, 1736908206).is_ok());
    }

    #[test]
    fn every_mutation_is_refused() {
        let p = pay("5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vv");
        let at = 1736908206;
        let mut body = BODY.to_vec();
        body[50] ^= 0x20;
        assert_eq!(
            p.verify_notification(&headers(SIG, SERIAL), &body, at),
            Err(Refused::Signature)
        );
        assert_eq!(
            p.verify_notification(&headers("WECHATPAY/SIGNTEST/abc", SERIAL), BODY, at),
            Err(Refused::Probe)
        );
        assert_eq!(
            p.verify_notification(&headers(SIG, SERIAL), BODY, at + 300),
            Err(Refused::Stale)
        );
        assert_eq!(
            p.verify_notification(&headers(SIG, SERIAL), BODY, at - 300),
            Err(Refused::Stale)
        );
        assert_eq!(
            p.verify_notification(&headers(SIG, "PUB_KEY_ID_OTHER"), BODY, at),
            Err(Refused::Serial)
        );
        let mut h = headers(SIG, SERIAL);
        h.remove("Wechatpay-Nonce");
        assert_eq!(
            p.verify_notification(&h, BODY, at),
            Err(Refused::Header("wechatpay-nonce"))
        );
        let mut h = headers(SIG, SERIAL);
        h.append("Wechatpay-Timestamp", "1736908206".parse().unwrap());
        assert_eq!(
            p.verify_notification(&h, BODY, at),
            Err(Refused::Header("wechatpay-timestamp"))
        );
        let mut h = headers(SIG, SERIAL);
        h.insert("Wechatpay-Signature-Type", "OTHER".parse().unwrap());
        assert_eq!(
            p.verify_notification(&h, BODY, at),
            Err(Refused::SignatureType)
        );
        // A changed APIv3 key fails the tag.
        let other = pay("5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vX");
        assert_eq!(
            other.verify_notification(&headers(SIG, SERIAL), BODY, at),
            Err(Refused::Decrypt(crypto::DecryptError::Tag))
        );
    }
}
