//! Local stand-ins of the upstreams, on port 0: the telecom open platform of seed 004
//! (every call, its success and failure replies), the WeChat side a phone passes through
//! (authorize redirects of the platform and of kioskd's own account, `cgi-bin/token`,
//! `getticket`, `sns/oauth2/access_token`) and WeChat Pay v3 (JSAPI order, query, close,
//! signed with the throwaway key of `shared/reference/wechat.md`; notifications built and
//! signed on demand).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kioskd::upstream::crypto::{self, MerchantKey, PlatformKey};
use serde_json::{Value, json};

pub const APPID: &str = "testapp";
pub const SECRET: &str = "testsecret";
pub const PAY_APPID: &str = "wx0123456789abcdef";
pub const MCHID: &str = "1900000109";
pub const MERCHANT_SERIAL: &str = "0123456789ABCDEF0123456789ABCDEF01234567";
pub const PLATFORM_SERIAL: &str = "PUB_KEY_ID_TEST0000000000000000000000000001";
pub const APIV3: &str = "5OxGtgpZRdbnPrA8CrcE57xBbUtrT9vv";
pub const KEY_PEM: &str = include_str!("../../fixtures/wechatpay_test_key.pem");

pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A canned reply for one call of the open platform.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This JSON with HTTP 200.
    Json(Value),
    /// HTTP 500 with an HTML body (a transport-level failure).
    Http500,
}

#[derive(Default)]
pub struct World {
    pub base: String,
    /// Open platform tokens issued, and which still work.
    pub token_fetches: usize,
    pub token_delay_ms: u64,
    pub valid_tokens: HashSet<String>,
    /// The openid the next authorize hands out, and codes issued.
    pub next_openid: String,
    pub next_code_expired: usize,
    pub codes: HashMap<String, String>,
    pub expired_codes: HashSet<String>,
    pub code_counter: usize,
    pub profiles: HashMap<String, Value>,
    pub tickets: HashMap<String, String>,
    /// Scripted replies per call name (`prize`, `week_bind`, `flow_order`, `ticket`,
    /// `base_url`, `openid`), used before the normal behaviour.
    pub script: HashMap<&'static str, VecDeque<Reply>>,
    pub calls: HashMap<&'static str, usize>,
    pub notices: Vec<Value>,
    pub week_binds: Vec<Value>,
    pub flow_orders: Vec<Value>,
    pub last_post_content_type: String,
    /// Official account.
    pub mp_token_fetches: usize,
    pub mp_ticket_fetches: usize,
    pub mp_codes: HashMap<String, String>,
    pub next_pay_openid: String,
    /// WeChat Pay: orders by out_trade_no, and the paid ones (transaction id).
    pub orders: HashMap<String, Value>,
    pub paid: HashMap<String, String>,
    pub closed: HashSet<String>,
    pub order_script: VecDeque<(StatusCode, Value)>,
}

#[derive(Clone)]
pub struct Standin {
    pub base: String,
    pub world: Arc<Mutex<World>>,
    key: MerchantKey,
    merchant_pub: PlatformKey,
}

impl Standin {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let key = MerchantKey::from_pem(KEY_PEM).unwrap();
        let s = Standin {
            base: base.clone(),
            world: Arc::new(Mutex::new(World {
                base: base.clone(),
                next_openid: "oPlatformUser1".into(),
                next_pay_openid: "oPayUser1".into(),
                ..Default::default()
            })),
            merchant_pub: key.public(),
            key,
        };
        let app = Router::new()
            .route("/service/1.0/access/token", get(token))
            .route("/service/wxoauth/2.0/getBaseUrl", post(base_url))
            .route("/service/wxoauth/2.0/getOpenidByCode", post(openid))
            .route("/service/1.0/userInfo", get(user_info))
            .route("/service/1.0/sendPrizeNotice", post(prize))
            .route("/service/weekBind/create", post(week_bind))
            .route("/service/flowOrders/create", post(flow_order))
            .route("/service/appOauthen/Ticket", get(ticket))
            .route("/wx/authorize", get(wx_authorize))
            .route("/mp/connect/oauth2/authorize", get(mp_authorize))
            .route("/cgi-bin/token", get(mp_token))
            .route("/cgi-bin/ticket/getticket", get(mp_ticket))
            .route("/sns/oauth2/access_token", get(mp_oauth))
            .route("/v3/pay/transactions/jsapi", post(pay_order))
            .route("/v3/pay/transactions/out-trade-no/{no}", get(pay_query))
            .route(
                "/v3/pay/transactions/out-trade-no/{no}/close",
                post(pay_close),
            )
            .with_state(s.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        s
    }

    pub fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    pub fn script(&self, call: &'static str, replies: Vec<Reply>) {
        self.w().script.insert(call, replies.into());
    }

    pub fn calls(&self, call: &'static str) -> usize {
        *self.w().calls.get(call).unwrap_or(&0)
    }

    /// Every platform token stops working (as after a fetch elsewhere, or a reset).
    pub fn revoke_tokens(&self) {
        self.w().valid_tokens.clear();
    }

    /// The TOML that points an app at this stand-in (open189 identity, the official
    /// account, WeChat Pay with the test key).
    pub fn toml(&self, wechatpay: bool) -> String {
        let b = &self.base;
        let mut t = format!(
            "[identity]\nmode = \"open189\"\n[sms]\ndebug_code = \"\"\n\
             [open189]\nbase_url = \"{b}\"\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\nuser_info_path = \"/service/1.0/userInfo\"\ntimeout_ms = 3000\n\
             [wechat_mp]\nappid = \"{PAY_APPID}\"\nsecret = \"mpsecret\"\napi_base_url = \"{b}\"\noauth_base_url = \"{b}/mp\"\n\
             [outbox]\npoll_ms = 50\nretry_base_ms = 50\nretry_max_ms = 400\nmax_attempts = 5\n"
        );
        if !wechatpay {
            // A test deployment: sandbox credit next to the stand-in platform is meant.
            t.push_str("[payments]\nsandbox_acknowledged = true\n");
        }
        if wechatpay {
            t.push_str(&format!(
                "[payments]\nmode = \"wechatpay\"\n\
                 [wechatpay]\nbase_url = \"{b}\"\nappid = \"{PAY_APPID}\"\nmchid = \"{MCHID}\"\nmerchant_serial = \"{MERCHANT_SERIAL}\"\n\
                 merchant_key_file = \"{}\"\napiv3_key = \"{APIV3}\"\nplatform_serial = \"{PLATFORM_SERIAL}\"\n\
                 platform_public_key_file = \"{}\"\nreconcile_after_seconds = 0\nreconcile_interval_seconds = 3600\n",
                fixture("wechatpay_test_key.pem"),
                fixture("wechatpay_test_pub.pem"),
            ));
        }
        t
    }

    fn signed(&self, status: StatusCode, body: String) -> Response {
        let ts = now_s().to_string();
        let nonce = crypto::nonce_str(32);
        let sig = self
            .key
            .sign(&crypto::notify_message(&ts, &nonce, body.as_bytes()));
        (
            status,
            [
                ("Wechatpay-Timestamp", ts),
                ("Wechatpay-Nonce", nonce),
                ("Wechatpay-Signature", sig),
                ("Wechatpay-Serial", PLATFORM_SERIAL.to_string()),
                ("Content-Type", "application/json".to_string()),
            ],
            body,
        )
            .into_response()
    }

    fn transaction(&self, no: &str, tx: &str, total: i64, state: &str) -> Value {
        let w = self.w();
        let payer = w
            .orders
            .get(no)
            .and_then(|o| o["payer"]["openid"].as_str())
            .unwrap_or("oUnknown")
            .to_string();
        json!({
            "mchid": MCHID, "appid": PAY_APPID, "out_trade_no": no, "transaction_id": tx,
            "trade_type": "JSAPI", "trade_state": state, "trade_state_desc": "支付成功",
            "bank_type": "OTHERS", "attach": "", "success_time": "2025-01-15T10:30:05+08:00",
            "payer": {"openid": payer},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}
        })
    }

    /// A payment notification as WeChat Pay sends it: headers and the raw body. `edit`
    /// changes the decrypted transaction before it is encrypted and signed.
    pub fn notification(
        &self,
        no: &str,
        tx: &str,
        total: i64,
        ts: i64,
        edit: impl FnOnce(&mut Value),
    ) -> (Vec<(&'static str, String)>, String) {
        let mut t = self.transaction(no, tx, total, "SUCCESS");
        edit(&mut t);
        let nonce12 = crypto::nonce_str(12);
        let ct = crypto::encrypt_resource(
            APIV3.as_bytes(),
            &nonce12,
            "transaction",
            t.to_string().as_bytes(),
        )
        .unwrap();
        let body = json!({
            "id": format!("EV-{}", crypto::nonce_str(10)), "create_time": "2025-01-15T10:30:06+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": ct, "associated_data": "transaction", "nonce": nonce12}
        })
        .to_string();
        let ts = ts.to_string();
        let nonce = crypto::nonce_str(32);
        let sig = self
            .key
            .sign(&crypto::notify_message(&ts, &nonce, body.as_bytes()));
        (
            vec![
                ("Wechatpay-Timestamp", ts),
                ("Wechatpay-Nonce", nonce),
                ("Wechatpay-Signature", sig),
                ("Wechatpay-Serial", PLATFORM_SERIAL.to_string()),
                (
                    "Wechatpay-Signature-Type",
                    "WECHATPAY2-SHA256-RSA2048".into(),
                ),
            ],
            body,
        )
    }

    /// WeChat Pay marks an order paid (without notifying).
    pub fn pay(&self, no: &str, tx: &str) {
        self.w().paid.insert(no.to_string(), tx.to_string());
    }
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn count(s: &Standin, call: &'static str) -> Option<Reply> {
    let mut w = s.w();
    *w.calls.entry(call).or_default() += 1;
    w.script.get_mut(call).and_then(VecDeque::pop_front)
}

fn reply(r: Reply) -> Response {
    match r {
        Reply::Json(v) => axum::Json(v).into_response(),
        Reply::Http500 => (StatusCode::INTERNAL_SERVER_ERROR, "<html>busy</html>").into_response(),
    }
}

fn token_ok(s: &Standin, q: &HashMap<String, String>) -> bool {
    q.get("access_token")
        .is_some_and(|t| s.w().valid_tokens.contains(t))
}

fn bad_token() -> Response {
    axum::Json(json!({"status": 0, "errMsg": "access_token校验异常"})).into_response()
}

/// POST parameters as form (the default) or JSON.
fn params(s: &Standin, headers: &HeaderMap, body: &Bytes) -> HashMap<String, String> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    s.w().last_post_content_type = ct.clone();
    if ct.starts_with("application/json") {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        serde_urlencoded::from_bytes(body).unwrap_or_default()
    }
}

async fn token(State(s): State<Standin>, Query(q): Query<HashMap<String, String>>) -> Response {
    let delay = s.w().token_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if q.get("appid").map(String::as_str) != Some(APPID)
        || q.get("secret").map(String::as_str) != Some(SECRET)
    {
        return axum::Json(json!({"data": "appid或secret错误", "status": 0, "info": 0}))
            .into_response();
    }
    let mut w = s.w();
    w.token_fetches += 1;
    let t = format!("=jLdmlnLUyr-{}", w.token_fetches);
    w.valid_tokens.insert(t.clone());
    axum::Json(json!({"data": t, "status": 200, "info": 0})).into_response()
}

async fn base_url(
    State(s): State<Standin>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = count(&s, "base_url") {
        return reply(r);
    }
    if !token_ok(&s, &q) {
        return bad_token();
    }
    let p = params(&s, &headers, &body);
    let state = p.get("state").cloned().unwrap_or_default();
    let enc = |x: &str| serde_urlencoded::to_string([("v", x)]).unwrap()[2..].to_string();
    let redirect = format!(
        "{}/wx/authorize?appid=wx1b0d10b65d395395&redirect_uri={}&response_type=code&scope=snsapi_base&state={}#wechat_redirect",
        s.base,
        enc("http://m.sh.189.cn/service/wxoauth/2.0/wxcode"),
        enc(&state)
    );
    axum::Json(json!({"status": 200, "redirect": redirect})).into_response()
}

/// WeChat's authorize page and the platform's `wxcode` handler in one: a code for the
/// next openid, appended to the return URL (`state`).
async fn wx_authorize(
    State(s): State<Standin>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = q.get("state").cloned().unwrap_or_default();
    let mut w = s.w();
    w.code_counter += 1;
    let code = format!("NTc1ZmFmNGIwODYxM2U3YjZkOTE3ZWUz{}", w.code_counter);
    let openid = w.next_openid.clone();
    w.codes.insert(code.clone(), openid);
    if w.next_code_expired > 0 {
        w.next_code_expired -= 1;
        w.expired_codes.insert(code.clone());
    }
    (
        StatusCode::FOUND,
        [("Location", format!("{state}?code={code}"))],
    )
        .into_response()
}

async fn openid(
    State(s): State<Standin>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = count(&s, "openid") {
        return reply(r);
    }
    if !token_ok(&s, &q) {
        return bad_token();
    }
    let code = params(&s, &headers, &body)
        .get("code")
        .cloned()
        .unwrap_or_default();
    let mut w = s.w();
    if w.expired_codes.remove(&code) {
        w.codes.remove(&code);
        return axum::Json(json!({"status": 40005, "errMsg": "code 已过期"})).into_response();
    }
    match w.codes.remove(&code) {
        Some(o) => axum::Json(json!({"status": 200, "openid": o})).into_response(),
        None => axum::Json(json!({"status": 40005, "errMsg": "code 已过期"})).into_response(),
    }
}

async fn user_info(State(s): State<Standin>, Query(q): Query<HashMap<String, String>>) -> Response {
    count(&s, "user_info");
    if !token_ok(&s, &q) {
        return bad_token();
    }
    let openid = q.get("openid").cloned().unwrap_or_default();
    let w = s.w();
    let r = w.profiles.get(&openid).cloned().unwrap_or_else(|| {
        json!({"_id": "57eb5210e4dace7558b81421", "openid": openid, "nickname": "xx",
               "headimg": "http://wx.qlogo.cn/mmopen/STan0NGQ/0", "__v": 0,
               "accounts": [{"deviceno": "62306600", "devicename": "固话", "bindtime": "2016-05-27 11:04:36", "bpn": "92125567729", "sort": "1"}, {"sort": "1"}]})
    });
    axum::Json(json!({"result": r, "flag": 0})).into_response()
}

async fn callback_call(
    s: Standin,
    call: &'static str,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !token_ok(&s, &q) {
        count(&s, call);
        return bad_token();
    }
    if let Some(r) = count(&s, call) {
        return reply(r);
    }
    let p = params(&s, &headers, &body);
    let v = serde_json::to_value(&p).unwrap();
    let mut w = s.w();
    match call {
        "prize" => {
            w.notices.push(v);
            axum::Json(json!({"status": 200, "result": "发送成功"})).into_response()
        }
        "week_bind" => {
            w.week_binds.push(v);
            axum::Json(json!({"data": "success", "status": 200, "info": 0})).into_response()
        }
        _ => {
            w.flow_orders.push(v);
            let n = w.flow_orders.len();
            axum::Json(json!({"data": format!("FO{n}"), "status": 200, "info": 0})).into_response()
        }
    }
}

async fn prize(
    State(s): State<Standin>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    callback_call(s, "prize", q, headers, body).await
}

async fn week_bind(
    State(s): State<Standin>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    callback_call(s, "week_bind", q, headers, body).await
}

async fn flow_order(
    State(s): State<Standin>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    callback_call(s, "flow_order", q, headers, body).await
}

async fn ticket(State(s): State<Standin>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = count(&s, "ticket") {
        return reply(r);
    }
    if !token_ok(&s, &q) {
        return bad_token();
    }
    let t = q.get("ticket").cloned().unwrap_or_default();
    if t.is_empty() {
        return axum::Json(json!({"errcode": 1, "data": {"mobile": "ticket必须给出"}}))
            .into_response();
    }
    match s.w().tickets.get(&t) {
        Some(m) => axum::Json(json!({"errcode": 0, "data": {"mobile": m}})).into_response(),
        None => axum::Json(json!({
            "errcode": 1, "data": "手机号码获取异常",
            "msg": {"CAPRoot": {"SessionHeader": [{"TransactionID": ["3599901201610144084678881"], "ActionCode": ["1"], "RspTime": ["20161014084034"],
                    "Response": [{"RspType": ["1"], "RspCode": ["1992"], "RspDesc": ["根据ticket查询网站注册用户信息为空!"]}]}]}}
        }))
        .into_response(),
    }
}

async fn mp_authorize(
    State(s): State<Standin>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    let mut w = s.w();
    w.code_counter += 1;
    let code = format!("PC{}", w.code_counter);
    let o = w.next_pay_openid.clone();
    w.mp_codes.insert(code.clone(), o);
    (
        StatusCode::FOUND,
        [("Location", format!("{redirect}?code={code}&state={state}"))],
    )
        .into_response()
}

async fn mp_token(State(s): State<Standin>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("secret").map(String::as_str) != Some("mpsecret") {
        return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential"}))
            .into_response();
    }
    let mut w = s.w();
    w.mp_token_fetches += 1;
    axum::Json(
        json!({"access_token": format!("MPTOKEN{}", w.mp_token_fetches), "expires_in": 7200}),
    )
    .into_response()
}

async fn mp_ticket(State(s): State<Standin>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut w = s.w();
    if !q
        .get("access_token")
        .is_some_and(|t| t.starts_with("MPTOKEN"))
    {
        return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential"}))
            .into_response();
    }
    w.mp_ticket_fetches += 1;
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "ticket": format!("TICKET{}", w.mp_ticket_fetches), "expires_in": 7200}))
        .into_response()
}

async fn mp_oauth(State(s): State<Standin>, Query(q): Query<HashMap<String, String>>) -> Response {
    let code = q.get("code").cloned().unwrap_or_default();
    match s.w().mp_codes.remove(&code) {
        Some(o) => axum::Json(json!({"access_token": "x", "expires_in": 7200, "refresh_token": "y", "openid": o, "scope": "snsapi_base"}))
            .into_response(),
        None => axum::Json(json!({"errcode": 40029, "errmsg": "invalid code"})).into_response(),
    }
}

/// Checks the merchant's request signature as WeChat Pay does.
fn merchant_signed(s: &Standin, method: &str, pq: &str, headers: &HeaderMap, body: &str) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(rest) = auth.strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
        return false;
    };
    let kv: HashMap<&str, &str> = rest
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    let (Some(ts), Some(nonce), Some(sig)) = (
        kv.get("timestamp"),
        kv.get("nonce_str"),
        kv.get("signature"),
    ) else {
        return false;
    };
    kv.get("mchid") == Some(&MCHID)
        && kv.get("serial_no") == Some(&MERCHANT_SERIAL)
        && s.merchant_pub.verify(
            crypto::request_message(method, pq, ts.parse().unwrap_or(0), nonce, body).as_bytes(),
            sig,
        )
}

async fn pay_order(State(s): State<Standin>, headers: HeaderMap, body: String) -> Response {
    if !merchant_signed(&s, "POST", "/v3/pay/transactions/jsapi", &headers, &body) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": "SIGN_ERROR", "message": "签名错误"})),
        )
            .into_response();
    }
    if let Some((st, v)) = s.w().order_script.pop_front() {
        return s.signed(st, v.to_string());
    }
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    let no = v["out_trade_no"].as_str().unwrap_or_default().to_string();
    s.w().orders.insert(no.clone(), v);
    s.signed(
        StatusCode::OK,
        json!({"prepay_id": format!("wx_prepay_{no}")}).to_string(),
    )
}

async fn pay_query(
    State(s): State<Standin>,
    Path(no): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let pq = format!(
        "/v3/pay/transactions/out-trade-no/{no}?mchid={}",
        q.get("mchid").cloned().unwrap_or_default()
    );
    if !merchant_signed(&s, "GET", &pq, &headers, "") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": "SIGN_ERROR", "message": "签名错误"})),
        )
            .into_response();
    }
    let (order, paid, closed) = {
        let w = s.w();
        (
            w.orders.get(&no).cloned(),
            w.paid.get(&no).cloned(),
            w.closed.contains(&no),
        )
    };
    let Some(order) = order else {
        return s.signed(
            StatusCode::NOT_FOUND,
            json!({"code": "ORDER_NOT_EXIST", "message": "订单不存在"}).to_string(),
        );
    };
    let total = order["amount"]["total"].as_i64().unwrap_or(0);
    let t = match (paid, closed) {
        (Some(tx), _) => s.transaction(&no, &tx, total, "SUCCESS"),
        (None, true) => s.transaction(&no, "", total, "CLOSED"),
        (None, false) => s.transaction(&no, "", total, "NOTPAY"),
    };
    s.signed(StatusCode::OK, t.to_string())
}

async fn pay_close(
    State(s): State<Standin>,
    Path(no): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let pq = format!("/v3/pay/transactions/out-trade-no/{no}/close");
    if !merchant_signed(&s, "POST", &pq, &headers, &body) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": "SIGN_ERROR", "message": "签名错误"})),
        )
            .into_response();
    }
    s.w().closed.insert(no);
    s.signed(StatusCode::NO_CONTENT, String::new())
}
