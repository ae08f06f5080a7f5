//! The telecom "微厅开放平台" of seed 004: one method per call. Replies are read the way
//! the seed shows them (success is `status: 200` inside the JSON; the quick-entry call
//! answers `errcode`), and every failure reply becomes a [`UpstreamError`] with the
//! platform's own message. Tokens, codes and openids cross plain HTTP: none is logged.

use std::time::Duration;

use serde_json::{Value, json};

use super::UpstreamError;
use crate::config::{Open189 as Cfg, PostFormat};

/// A profile from the bound-user-info call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Nickname.
    pub nickname: String,
    /// Head image URL.
    pub headimg: String,
    /// Bound device numbers (mobiles, fixed lines).
    pub devices: Vec<String>,
}

/// 爱流量 `weekBind/create`: a user bound a mobile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeekBind {
    /// WeChat openid (platform appid).
    pub openid: String,
    /// Mobile number.
    pub deviceno: String,
    /// Operator (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operators: String,
    /// Home area (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub qcellcore: String,
}

/// 爱流量 `flowOrders/create`: a traffic package was ordered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowOrder {
    /// WeChat openid.
    pub openid: String,
    /// Mobile number.
    pub deviceno: String,
    /// Package name.
    pub traffic_package_name: String,
    /// Date of the order (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transaction_date: String,
}

/// `sendPrizeNotice`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrizeNotice {
    /// Recipient's openid.
    pub openid: String,
    /// 中奖描述.
    pub first: String,
    /// 活动名称.
    pub activity: String,
    /// 奖品.
    pub prize: String,
    /// 备注.
    #[serde(default)]
    pub remark: String,
    /// 模板链接.
    #[serde(default)]
    pub url: String,
}

/// The open-platform client (no token handling: see `Upstream::open189_call`).
#[derive(Clone)]
pub struct Open189 {
    http: reqwest::Client,
    cfg: Cfg,
}

/// The call names (metric `op` labels).
pub mod op {
    /// `1.0/access/token`.
    pub const TOKEN: &str = "open189_token";
    /// `wxoauth/2.0/getBaseUrl`.
    pub const BASE_URL: &str = "open189_base_url";
    /// `wxoauth/2.0/getOpenidByCode`.
    pub const OPENID: &str = "open189_openid";
    /// The bound-user-info call.
    pub const USER_INFO: &str = "open189_user_info";
    /// `1.0/sendPrizeNotice`.
    pub const PRIZE: &str = "open189_prize_notice";
    /// `weekBind/create`.
    pub const WEEK_BIND: &str = "open189_week_bind";
    /// `flowOrders/create`.
    pub const FLOW_ORDER: &str = "open189_flow_order";
    /// `appOauthen/Ticket`.
    pub const TICKET: &str = "open189_app_ticket";
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The platform's message in whichever field this envelope uses.
fn message(v: &Value) -> String {
    for k in ["errMsg", "errmsg", "result", "data", "msg"] {
        if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
            if let Some(m) = x.get("mobile") {
                return text(m);
            }
            return text(x);
        }
    }
    String::new()
}

/// Reads a `{status, ...}` envelope: 200 is success; a message about the access token
/// means the token was refused; 40005 is the platform's retryable failure.
pub fn check_status(v: &Value) -> Result<(), UpstreamError> {
    let status = v.get("status").and_then(|s| {
        s.as_i64()
            .or_else(|| s.as_str().and_then(|x| x.parse().ok()))
    });
    let msg = message(v);
    if status == Some(200) {
        return Ok(());
    }
    if msg.to_ascii_lowercase().contains("access_token") || status == Some(40001) {
        return Err(UpstreamError::TokenRejected);
    }
    match status {
        Some(40005) => Err(UpstreamError::Code40005(msg)),
        Some(s) => Err(UpstreamError::Platform { status: s, msg }),
        None => Err(UpstreamError::BadReply(format!(
            "no status in the reply: {}",
            truncate(&v.to_string())
        ))),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

impl Open189 {
    /// A client for `cfg`.
    pub fn new(cfg: &Cfg) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("kioskd")
            .build()
            .map_err(|e| UpstreamError::Transport(e.without_url().to_string()))?;
        Ok(Self {
            http,
            cfg: cfg.clone(),
        })
    }

    /// Are appid and secret configured?
    pub fn configured(&self) -> bool {
        !self.cfg.appid.is_empty() && !self.cfg.secret.is_empty()
    }

    /// The configured user-info path, if any.
    pub fn has_user_info(&self) -> bool {
        !self.cfg.user_info_path.is_empty()
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, UpstreamError> {
        let base = self.cfg.base_url.trim_end_matches('/');
        let mut u = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| UpstreamError::NotConfigured(format!("open189.base_url: {e}")))?;
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        Ok(u)
    }

    async fn read(op: &'static str, r: reqwest::RequestBuilder) -> Result<Value, UpstreamError> {
        let res = super::timed(op, r.send()).await?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| UpstreamError::Transport(e.without_url().to_string()))?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.is_object() => Ok(v),
            _ if status.is_server_error() => Err(UpstreamError::Transport(format!(
                "HTTP {status} from the platform"
            ))),
            _ => Err(UpstreamError::BadReply(format!(
                "HTTP {status}, not a JSON object"
            ))),
        }
    }

    async fn get(
        &self,
        op: &'static str,
        path: &str,
        q: &[(&str, &str)],
    ) -> Result<Value, UpstreamError> {
        let u = self.url(path, q)?;
        Self::read(op, self.http.get(u)).await
    }

    async fn post(
        &self,
        op: &'static str,
        path: &str,
        token: &str,
        params: &Value,
    ) -> Result<Value, UpstreamError> {
        let u = self.url(path, &[("access_token", token)])?;
        let r = match self.cfg.post_format {
            PostFormat::Json => self.http.post(u).json(params),
            PostFormat::Form => {
                let pairs: Vec<(String, String)> = params
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                    .unwrap_or_default();
                let body = serde_urlencoded::to_string(&pairs)
                    .map_err(|e| UpstreamError::BadReply(e.to_string()))?;
                self.http
                    .post(u)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
        };
        Self::read(op, r).await
    }

    /// `GET /service/1.0/access/token?appid=&secret=` → the token.
    pub async fn fetch_token(&self) -> Result<String, UpstreamError> {
        if !self.configured() {
            return Err(UpstreamError::NotConfigured(
                "open189.appid and open189.secret are not set".into(),
            ));
        }
        let v = self
            .get(
                op::TOKEN,
                "/service/1.0/access/token",
                &[
                    ("appid", self.cfg.appid.as_str()),
                    ("secret", self.cfg.secret.expose()),
                ],
            )
            .await?;
        check_status(&v)?;
        match v.get("data").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Ok(t.to_string()),
            _ => Err(UpstreamError::BadReply("token reply without data".into())),
        }
    }

    /// `POST getBaseUrl` with `state` = the return URL → the WeChat authorize URL.
    pub async fn base_url(&self, token: &str, return_url: &str) -> Result<String, UpstreamError> {
        let v = self
            .post(
                op::BASE_URL,
                "/service/wxoauth/2.0/getBaseUrl",
                token,
                &json!({ "state": return_url }),
            )
            .await?;
        check_status(&v)?;
        match v.get("redirect").and_then(Value::as_str) {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(u.to_string()),
            _ => Err(UpstreamError::BadReply(
                "getBaseUrl reply without redirect".into(),
            )),
        }
    }

    /// `POST getOpenidByCode` → the openid. An expired code is `Code40005`.
    pub async fn openid_by_code(&self, token: &str, code: &str) -> Result<String, UpstreamError> {
        let v = self
            .post(
                op::OPENID,
                "/service/wxoauth/2.0/getOpenidByCode",
                token,
                &json!({ "code": code }),
            )
            .await?;
        check_status(&v)?;
        match v.get("openid").and_then(Value::as_str) {
            Some(o) if crate::identity::valid_openid(o) => Ok(o.to_string()),
            _ => Err(UpstreamError::BadReply(
                "getOpenidByCode reply without a usable openid".into(),
            )),
        }
    }

    /// The bound-user-info call (`open189.user_info_path`): nickname, head image, devices.
    pub async fn user_info(&self, token: &str, openid: &str) -> Result<Profile, UpstreamError> {
        let v = self
            .get(
                op::USER_INFO,
                &self.cfg.user_info_path.clone(),
                &[("access_token", token), ("openid", openid)],
            )
            .await?;
        if v.get("status").is_some() {
            check_status(&v)?;
        }
        let flag = v.get("flag").and_then(Value::as_i64);
        let Some(r) = v.get("result").filter(|r| r.is_object()) else {
            return Err(UpstreamError::Platform {
                status: flag.unwrap_or(-1),
                msg: message(&v),
            });
        };
        if flag.is_some_and(|f| f != 0) {
            return Err(UpstreamError::Platform {
                status: flag.unwrap_or(-1),
                msg: message(&v),
            });
        }
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(Profile {
            nickname: s("nickname").chars().take(64).collect(),
            headimg: s("headimg").chars().take(512).collect(),
            devices: r
                .get("accounts")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.get("deviceno").and_then(Value::as_str))
                        .map(|d| d.trim().to_string())
                        .filter(|d| !d.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// `POST sendPrizeNotice` → the platform's `result` text.
    pub async fn prize_notice(
        &self,
        token: &str,
        n: &PrizeNotice,
    ) -> Result<String, UpstreamError> {
        let v = self
            .post(
                op::PRIZE,
                "/service/1.0/sendPrizeNotice",
                token,
                &serde_json::to_value(n).unwrap_or_default(),
            )
            .await?;
        check_status(&v)?;
        Ok(message(&v))
    }

    /// `POST weekBind/create`.
    pub async fn week_bind(&self, token: &str, b: &WeekBind) -> Result<String, UpstreamError> {
        let mut p = serde_json::to_value(b).unwrap_or_default();
        p["channel"] = json!("1");
        p["from"] = json!("love flow");
        let v = self
            .post(op::WEEK_BIND, "/service/weekBind/create", token, &p)
            .await?;
        check_status(&v)?;
        Ok(message(&v))
    }

    /// `POST flowOrders/create` → the platform's order number.
    pub async fn flow_order(&self, token: &str, o: &FlowOrder) -> Result<String, UpstreamError> {
        let mut p = serde_json::to_value(o).unwrap_or_default();
        p["channel"] = json!("1");
        p["from"] = json!("love flow");
        let v = self
            .post(op::FLOW_ORDER, "/service/flowOrders/create", token, &p)
            .await?;
        check_status(&v)?;
        Ok(message(&v))
    }

    /// `GET appOauthen/Ticket?ticket=` → the mobile.
    pub async fn ticket_mobile(&self, token: &str, ticket: &str) -> Result<String, UpstreamError> {
        let v = self
            .get(
                op::TICKET,
                "/service/appOauthen/Ticket",
                &[("access_token", token), ("ticket", ticket)],
            )
            .await?;
        match v.get("errcode").and_then(Value::as_i64) {
            Some(0) => {
                let m = v
                    .get("data")
                    .and_then(|d| d.get("mobile"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if crate::sms::valid_mobile(m) {
                    Ok(m.to_string())
                } else {
                    Err(UpstreamError::BadReply(
                        "ticket reply without a mobile".into(),
                    ))
                }
            }
            Some(code) => Err(UpstreamError::Platform {
                status: code,
                msg: message(&v),
            }),
            None => {
                check_status(&v)?;
                Err(UpstreamError::BadReply(
                    "ticket reply without errcode".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The failure replies of seed 004, verbatim.
    use super::*;

    fn st(s: &str) -> Result<(), UpstreamError> {
        check_status(&serde_json::from_str(s).unwrap())
    }

    #[test]
    fn seed_replies_are_classified() {
        assert!(
            st(r#"{"data":"=jLdmlnLUyr-BzKfriqsMEr3X9=rRjrtSln9ryLcH","status":200,"info":0}"#)
                .is_ok()
        );
        assert!(matches!(
            st(r#"{"status":40005,"errMsg":"code 已过期"}"#),
            Err(UpstreamError::Code40005(m)) if m == "code 已过期"
        ));
        assert!(matches!(
            st(r#"{"status":0,"result":"发送失败"}"#),
            Err(UpstreamError::Platform { status: 0, msg }) if msg == "发送失败"
        ));
        assert!(matches!(
            st(r#"{"status":40005,"errMsg":"推送接口异常"}"#),
            Err(UpstreamError::Code40005(_))
        ));
        assert!(matches!(
            st(r#"{"data":"错误信息","status":0,"info":0}"#),
            Err(UpstreamError::Platform { status: 0, msg }) if msg == "错误信息"
        ));
        assert!(matches!(
            st(r#"{"status":0,"errMsg":"access_token校验异常"}"#),
            Err(UpstreamError::TokenRejected)
        ));
        assert!(matches!(st(r#"{"x":1}"#), Err(UpstreamError::BadReply(_))));
    }
}
