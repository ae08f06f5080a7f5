//! kioskd's own WeChat official account (服务号, `[wechat_mp]`): the access token and
//! JS-SDK ticket (`wechat.md` §7) and the silent `snsapi_base` OAuth that gets a user's
//! openid under the merchant's appid when the open platform's appid cannot pay (§8, §9).

use std::time::Duration;

use serde_json::Value;

use super::UpstreamError;
use crate::config::WechatMp as Cfg;

/// Metric `op` labels.
pub mod op {
    /// `cgi-bin/token`.
    pub const TOKEN: &str = "mp_token";
    /// `cgi-bin/ticket/getticket`.
    pub const TICKET: &str = "mp_ticket";
    /// `sns/oauth2/access_token`.
    pub const OAUTH: &str = "mp_oauth";
}

/// The official-account client.
#[derive(Clone)]
pub struct Mp {
    http: reqwest::Client,
    cfg: Cfg,
}

fn errcode(v: &Value) -> i64 {
    v.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

fn errmsg(v: &Value) -> String {
    v.get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn lifetime_ms(v: &Value) -> i64 {
    v.get("expires_in")
        .and_then(Value::as_i64)
        .filter(|s| *s > 0)
        .unwrap_or(7200)
        * 1000
}

impl Mp {
    /// A client for `cfg`.
    pub fn new(cfg: &Cfg, timeout_ms: u64) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .user_agent("kioskd")
            .build()
            .map_err(|e| UpstreamError::Transport(e.without_url().to_string()))?;
        Ok(Self {
            http,
            cfg: cfg.clone(),
        })
    }

    /// Is an account configured?
    pub fn configured(&self) -> bool {
        !self.cfg.appid.is_empty() && !self.cfg.secret.is_empty()
    }

    /// Its appid.
    pub fn appid(&self) -> &str {
        &self.cfg.appid
    }

    async fn get(
        &self,
        op: &'static str,
        path: &str,
        q: &[(&str, &str)],
    ) -> Result<Value, UpstreamError> {
        if !self.configured() {
            return Err(UpstreamError::NotConfigured(
                "wechat_mp.appid and wechat_mp.secret are not set".into(),
            ));
        }
        let base = self.cfg.api_base_url.trim_end_matches('/');
        let mut u = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| UpstreamError::NotConfigured(format!("wechat_mp.api_base_url: {e}")))?;
        u.query_pairs_mut().extend_pairs(q);
        let res = super::timed(op, self.http.get(u).send()).await?;
        let st = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| UpstreamError::Transport(e.without_url().to_string()))?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.is_object() => Ok(v),
            _ => Err(UpstreamError::Transport(format!("HTTP {st}, not JSON"))),
        }
    }

    /// `cgi-bin/token` → (token, lifetime ms).
    pub async fn fetch_token(&self) -> Result<(String, i64), UpstreamError> {
        let v = self
            .get(
                op::TOKEN,
                "/cgi-bin/token",
                &[
                    ("grant_type", "client_credential"),
                    ("appid", self.cfg.appid.as_str()),
                    ("secret", self.cfg.secret.expose()),
                ],
            )
            .await?;
        match v.get("access_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Ok((t.to_string(), lifetime_ms(&v))),
            _ => Err(UpstreamError::Platform {
                status: errcode(&v),
                msg: errmsg(&v),
            }),
        }
    }

    /// `cgi-bin/ticket/getticket?type=jsapi` → (ticket, lifetime ms).
    pub async fn fetch_ticket(&self, token: &str) -> Result<(String, i64), UpstreamError> {
        let v = self
            .get(
                op::TICKET,
                "/cgi-bin/ticket/getticket",
                &[("access_token", token), ("type", "jsapi")],
            )
            .await?;
        match errcode(&v) {
            0 => match v.get("ticket").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => Ok((t.to_string(), lifetime_ms(&v))),
                _ => Err(UpstreamError::BadReply("getticket without ticket".into())),
            },
            40001 | 40014 | 42001 => Err(UpstreamError::TokenRejected),
            c => Err(UpstreamError::Platform {
                status: c,
                msg: errmsg(&v),
            }),
        }
    }

    /// The silent authorize URL (`snsapi_base`) returning to `redirect_uri` with `state`.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        let base = self.cfg.oauth_base_url.trim_end_matches('/');
        let q = serde_urlencoded::to_string([
            ("appid", self.cfg.appid.as_str()),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", "snsapi_base"),
            ("state", state),
        ])
        .unwrap_or_default();
        format!("{base}/connect/oauth2/authorize?{q}#wechat_redirect")
    }

    /// `sns/oauth2/access_token` → the openid for `code`.
    pub async fn openid_by_code(&self, code: &str) -> Result<String, UpstreamError> {
        let v = self
            .get(
                op::OAUTH,
                "/sns/oauth2/access_token",
                &[
                    ("appid", self.cfg.appid.as_str()),
                    ("secret", self.cfg.secret.expose()),
                    ("code", code),
                    ("grant_type", "authorization_code"),
                ],
            )
            .await?;
        match v.get("openid").and_then(Value::as_str) {
            Some(o) if crate::identity::valid_openid(o) && errcode(&v) == 0 => Ok(o.to_string()),
            _ => Err(UpstreamError::Platform {
                status: errcode(&v),
                msg: errmsg(&v),
            }),
        }
    }
}
