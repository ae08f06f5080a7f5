//! The user's phone API under `/wechat/*` (seed 001, SPEC §7).
//!
//! All request types ignore unknown fields. Every reply is wrapped in
//! [`Envelope`](crate::Envelope). Money is fen.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `result` of calls whose success carries no data (captcha, sandbox recharge, check).
pub const SUCCESS: &str = "success";

/// `UserInfo::state`: the user is active.
pub const USER_ACTIVE: i32 = 0;
/// `UserInfo::state`: the user is disabled.
pub const USER_DISABLED: i32 = 1;
/// `UserInfo::state`: the user is deleted.
pub const USER_DELETED: i32 = 2;

/// Body of `POST /wechat/captcha`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptchaRequest {
    /// The mobile number to send the code to.
    pub mobile: String,
}

/// Body of `POST /wechat/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The mobile number to bind.
    pub mobile: String,
    /// The SMS code received.
    pub code: String,
}

/// The user as `/wechat/user` and `/wechat/login` return it (and `user` in recharge items).
///
/// The name is sent twice, as `nick_name` and as the seed's `nike_name`. Reading accepts
/// either one (at least one is required) and fills the other from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "raw::UserInfoRaw")]
pub struct UserInfo {
    /// User id.
    pub id: i64,
    /// Display name.
    pub nick_name: String,
    /// Display name again, under the seed's spelling.
    pub nike_name: String,
    /// Avatar URL.
    pub head_img_url: String,
    /// Bound mobile number (empty if none).
    pub mobile: String,
    /// Total recharged, fen.
    pub total_account: i64,
    /// Total spent, fen.
    pub used_account: i64,
    /// Balance, fen (`total_account - used_account`).
    pub balance_account: i64,
    /// 0 = active, 1 = disabled, 2 = deleted (see [`USER_ACTIVE`] and friends).
    pub state: i32,
    /// Creation time.
    pub ctime: String,
    /// Last update time.
    pub utime: String,
}

impl UserInfo {
    /// A user with the given id and name (in both name fields); every other field empty or
    /// zero, `state` active. Fill the rest with struct update syntax.
    pub fn new(id: i64, name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            id,
            nick_name: name.clone(),
            nike_name: name,
            head_img_url: String::new(),
            mobile: String::new(),
            total_account: 0,
            used_account: 0,
            balance_account: 0,
            state: USER_ACTIVE,
            ctime: String::new(),
            utime: String::new(),
        }
    }

    /// Sets both name fields.
    pub fn set_name(&mut self, name: impl Into<String>) {
        let name = name.into();
        self.nike_name.clone_from(&name);
        self.nick_name = name;
    }

    /// The display name (`nick_name`).
    pub fn name(&self) -> &str {
        &self.nick_name
    }
}

mod raw {
    use serde::Deserialize;

    /// Wire form of `UserInfo` accepting either name spelling.
    #[derive(Deserialize)]
    pub struct UserInfoRaw {
        pub id: i64,
        #[serde(default)]
        pub nick_name: Option<String>,
        #[serde(default)]
        pub nike_name: Option<String>,
        pub head_img_url: String,
        pub mobile: String,
        pub total_account: i64,
        pub used_account: i64,
        pub balance_account: i64,
        pub state: i32,
        pub ctime: String,
        pub utime: String,
    }
}

impl TryFrom<raw::UserInfoRaw> for UserInfo {
    type Error = &'static str;

    fn try_from(r: raw::UserInfoRaw) -> Result<Self, Self::Error> {
        let (nick_name, nike_name) = match (r.nick_name, r.nike_name) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) => (a.clone(), a),
            (None, Some(b)) => (b.clone(), b),
            (None, None) => return Err("missing field `nick_name` (or `nike_name`)"),
        };
        Ok(Self {
            id: r.id,
            nick_name,
            nike_name,
            head_img_url: r.head_img_url,
            mobile: r.mobile,
            total_account: r.total_account,
            used_account: r.used_account,
            balance_account: r.balance_account,
            state: r.state,
            ctime: r.ctime,
            utime: r.utime,
        })
    }
}

/// Body of `POST /wechat/recharge/list` and `POST /wechat/expense/list`. Every field is
/// optional: `{}` means page 1 of 10.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageRequest {
    /// 1-based page number (default 1).
    pub page: u32,
    /// Page size (default 10).
    pub size: u32,
    /// Only items at or after this time (`YYYY-MM-DD HH:MM:SS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Only items at or before this time (`YYYY-MM-DD HH:MM:SS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            size: 10,
            start_time: None,
            end_time: None,
        }
    }
}

/// A page of items: `{"total":N,"data":[..]}` (`total` counts all matches, not the page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Number of matching items over all pages.
    pub total: i64,
    /// This page's items.
    pub data: Vec<T>,
}

/// One recharge in `/wechat/recharge/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeItem {
    /// Recharge id.
    pub id: i64,
    /// The user who recharged.
    pub user: UserInfo,
    /// Amount, fen.
    pub amount: i64,
    /// WeChat Pay transaction id.
    pub transaction_id: String,
    /// Payment time.
    pub pay_time: String,
    /// Last update time.
    pub utime: String,
    /// Creation time.
    pub ctime: String,
}

/// One ended session in `/wechat/expense/list`. `cost_time` is in minutes here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpenseItem {
    /// Session id.
    pub id: i64,
    /// User id.
    pub user_id: i64,
    /// Device id.
    pub device_id: i64,
    /// Device location: province.
    pub province: String,
    /// Device location: city.
    pub city: String,
    /// Device location: area.
    pub area: String,
    /// Device location: address.
    pub location: String,
    /// Cost, fen.
    pub cost_money: i64,
    /// Session start time.
    pub ctime: String,
    /// Last update time.
    pub utime: String,
    /// Session end time.
    pub end_time: String,
    /// Duration, whole minutes (seconds / 60, rounded down).
    pub cost_time: i64,
}

/// One postpaid order in `GET /wechat/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Order id (URL-safe string).
    #[serde(rename = "orderId")]
    pub order_id: String,
    /// The device the session ran on.
    pub device_code: String,
    /// Amount due, fen.
    pub cost_money: i64,
    /// Duration, whole minutes.
    pub cost_time: i64,
    /// Session start time.
    pub ctime: String,
    /// Session end time.
    pub end_time: String,
    /// Whether the order is paid.
    pub paid: bool,
}

/// Body of `POST /wechat/order/pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayRequest {
    /// The order to pay.
    #[serde(rename = "orderId")]
    pub order_id: String,
}

/// Body of `POST /wechat/jsapi/signature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiSignatureRequest {
    /// The page URL (without `#` fragment) to sign.
    pub url: String,
}

/// `result` of `POST /wechat/jsapi/signature`: the fields `wx.config` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiSignature {
    /// The official account's app id.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Unix seconds used in the signature.
    pub timestamp: i64,
    /// Random string used in the signature.
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// SHA-1 hex signature.
    pub signature: String,
}

/// `result` of a `wechatpay` recharge or order payment: the JSAPI
/// `WeixinJSBridge.invoke('getBrandWCPayRequest', ..)` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiPayParams {
    /// App id.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Unix seconds, as a string (WeChat requires a string here).
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    /// Random string.
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=...`.
    pub package: String,
    /// Signature type (`RSA`).
    #[serde(rename = "signType")]
    pub sign_type: String,
    /// The signature.
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// `result` of `GET /wechat/check`: `"success"` when registered, else a number
/// (-1 no openid, 0 not registered, -2 deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckCode {
    /// Registered: `success:true, result:"success"`.
    Registered,
    /// `result: -1`: no openid in the session.
    NoOpenid,
    /// `result: 0`: the openid has no registered user.
    NotRegistered,
    /// `result: -2`: the user is deleted.
    Deleted,
}

impl CheckCode {
    /// The numeric code, `None` for [`CheckCode::Registered`] (sent as `"success"`).
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Registered => None,
            Self::NoOpenid => Some(-1),
            Self::NotRegistered => Some(0),
            Self::Deleted => Some(-2),
        }
    }

    /// The variant for a numeric code.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            -1 => Some(Self::NoOpenid),
            0 => Some(Self::NotRegistered),
            -2 => Some(Self::Deleted),
            _ => None,
        }
    }

    /// A readable (Chinese) message; `"success"` for registered.
    pub fn message(self) -> &'static str {
        match self {
            Self::Registered => SUCCESS,
            Self::NoOpenid => "没有获取到用户的openid",
            Self::NotRegistered => "用户没有注册",
            Self::Deleted => "用户已被删除",
        }
    }

    /// The whole reply: `ok("success")` when registered, else `fail(code, message)`.
    pub fn envelope(self) -> crate::Envelope<CheckCode> {
        match self {
            Self::Registered => crate::Envelope::ok(self),
            _ => crate::Envelope::fail(self, self.message()),
        }
    }
}

impl Serialize for CheckCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.code() {
            None => serializer.serialize_str(SUCCESS),
            Some(c) => serializer.serialize_i32(c),
        }
    }
}

impl<'de> Deserialize<'de> for CheckCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CheckCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"success\", -1, 0 or -2")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CheckCode, E> {
                if v == SUCCESS {
                    Ok(CheckCode::Registered)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CheckCode, E> {
                CheckCode::from_code(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CheckCode, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(CheckCode::from_code)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_new_fills_both_names() {
        let mut u = UserInfo::new(7, "小明");
        assert_eq!(u.nick_name, "小明");
        assert_eq!(u.nike_name, "小明");
        u.set_name("小红");
        assert_eq!((u.name(), u.nike_name.as_str()), ("小红", "小红"));
        assert_eq!(u.state, USER_ACTIVE);
    }

    #[test]
    fn page_request_defaults() {
        let p: PageRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(p, PageRequest::default());
        assert_eq!((p.page, p.size), (1, 10));
        let p: PageRequest = serde_json::from_str(r#"{"size":20}"#).unwrap();
        assert_eq!((p.page, p.size), (1, 20));
    }

    #[test]
    fn check_code_wire_values() {
        for c in [
            CheckCode::Registered,
            CheckCode::NoOpenid,
            CheckCode::NotRegistered,
            CheckCode::Deleted,
        ] {
            let v = serde_json::to_value(c).unwrap();
            assert_eq!(serde_json::from_value::<CheckCode>(v).unwrap(), c);
        }
        assert_eq!(
            serde_json::to_string(&CheckCode::Registered).unwrap(),
            "\"success\""
        );
        assert_eq!(serde_json::to_string(&CheckCode::Deleted).unwrap(), "-2");
        assert!(serde_json::from_str::<CheckCode>("1").is_err());
        assert!(serde_json::from_str::<CheckCode>("\"ok\"").is_err());
    }
}
