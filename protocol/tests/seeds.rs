//! Test vectors transcribed from seeds 000 (`/windows/*`) and 001 (`/wechat/*`), plus the
//! SPEC §5/§7 shapes. Python literals were turned into JSON (`True` → `true`, `None` →
//! `null`, single quotes → double quotes, placeholders → concrete values).

use kioskd_protocol::Envelope;
use kioskd_protocol::wechat::{
    self, CaptchaRequest, CheckCode, ExpenseItem, JsapiSignatureRequest, LoginRequest, OrderItem,
    OrderPayRequest, Page, PageRequest, RechargeItem, UserInfo,
};
use kioskd_protocol::windows::{
    self, CheckResult, DeviceRequest, DeviceStatus, GameList, GameStateRequest, GameUpdateState,
    KeepaliveRequest, KeepaliveResult, LoginCode, MaintainLoginRequest, MaintainLogoutRequest,
    SessionObject, StatusMsg, TokenRequest, UpdateState,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Asserts that two JSON values have the same object keys at every level.
#[track_caller]
fn assert_same_keys(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let ek: Vec<_> = e.keys().collect();
            let ak: Vec<_> = a.keys().collect();
            assert_eq!(ek, ak, "key sets differ at {path}");
            for (k, ev) in e {
                assert_same_keys(ev, &a[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "array lengths differ at {path}");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_same_keys(ev, av, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

/// Parses `json` into `T`, serializes it back and asserts the JSON is the same.
#[track_caller]
fn vector<T: Serialize + DeserializeOwned>(json: &str) -> T {
    let expected: Value = serde_json::from_str(json).expect("test vector is valid JSON");
    let typed: T = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("vector does not deserialize: {e}\n{json}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_same_keys(&expected, &back, "$");
    assert_eq!(back, expected);
    typed
}

/// Asserts that `json` does not deserialize into `T`.
#[track_caller]
fn rejects<T: DeserializeOwned + std::fmt::Debug>(json: &str) {
    let r = serde_json::from_str::<T>(json);
    assert!(r.is_err(), "should have been rejected: {json} → {r:?}");
}

#[track_caller]
fn to_string<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

const SESSION: &str = r#"{
    "id": 42,
    "user_id": 7,
    "device_id": 3,
    "cost_money": 15,
    "ctime": "2017-10-01 12:00:00",
    "utime": "2017-10-01 12:02:30",
    "cost_time": 150,
    "charge_mode": 5,
    "balance_account": 85,
    "device_code": "11-22-33-44-55-66-77-86",
    "openid": "oABCdefGHIjkl",
    "cur_time": "2017-10-01 12:02:31"
}"#;

const USER_BOTH_NAMES: &str = r#"{
    "id": 7,
    "nick_name": "小明",
    "nike_name": "小明",
    "head_img_url": "http://wx.qlogo.cn/mmopen/abc/0",
    "mobile": "13800138000",
    "total_account": 10000,
    "used_account": 1500,
    "balance_account": 8500,
    "state": 0,
    "ctime": "2017-09-01 08:00:00",
    "utime": "2017-10-01 12:02:31"
}"#;

// ===========================================================================
// Seed 000 — /windows/*
// ===========================================================================

// 1. 扫码登录 GET /windows/login/<device_code>

#[test]
fn s000_login_success() {
    let e: Envelope<String> = vector(r#"{"success": true, "result": "success", "error": null}"#);
    assert_eq!(e, Envelope::ok(windows::LOGIN_OK.to_owned()));
}

#[test]
fn s000_login_failures_are_numeric_codes() {
    for code in LoginCode::ALL {
        let json = to_string(&code.envelope());
        let expected = format!(
            r#"{{"success":false,"result":{},"error":{}}}"#,
            code.code(),
            serde_json::to_string(code.message()).unwrap()
        );
        assert_eq!(json, expected);
        let back: Envelope<LoginCode> = vector(&json);
        assert_eq!(back.result, code);
    }
    let e: Envelope<LoginCode> = vector(r#"{"success":false,"result":-5,"error":"余额不足"}"#);
    assert_eq!(e.result, LoginCode::BalanceTooLow);
    assert_eq!(LoginCode::NotSignedIn.message(), windows::NOT_SIGNED_IN_MSG);
    assert_eq!(windows::NOT_SIGNED_IN_MSG, "当前用户没有登录");
}

// 2. 微信端下机接口 GET /windows/offline

#[test]
fn s000_offline_seed_and_spec_forms() {
    // The seed documents `result: 'success'`; SPEC §5 replaces it by a StatusMsg.
    let seed: Envelope<String> = vector(r#"{"success": true, "result": "success", "error": null}"#);
    assert!(seed.success);
    let spec: Envelope<StatusMsg> = vector(
        r#"{"success": true, "result": {"status": 1, "msg": "logout successed!"}, "error": null}"#,
    );
    assert_eq!(spec, Envelope::ok(StatusMsg::logged_out()));
    let not_playing: Envelope<StatusMsg> = vector(
        r#"{"success": true, "result": {"status": 0, "msg": "当前用户没有上机"}, "error": null}"#,
    );
    assert_eq!(
        not_playing,
        Envelope::ok(StatusMsg::not_in_session(windows::NOT_PLAYING_MSG))
    );
}

// 3. 当前用户上机状态 GET /windows/online/status

#[test]
fn s000_online_status_not_playing() {
    let json = r#"{"success":false,"result":0,"error":"当前用户没有上机"}"#;
    let e: Envelope<i32> = vector(json);
    assert_eq!(
        to_string(&Envelope::fail(
            windows::NOT_PLAYING_CODE,
            windows::NOT_PLAYING_MSG
        )),
        json
    );
    assert_eq!(e.result, 0);
}

#[test]
fn s000_online_status_seed_session_object() {
    // The seed's object, without the SPEC additions `openid` and `cur_time`.
    let seed = r#"{
        "id": 42,
        "user_id": 7,
        "device_id": 3,
        "cost_money": 15,
        "ctime": "2017-10-01 12:00:00",
        "utime": "2017-10-01 12:02:30",
        "cost_time": 150,
        "charge_mode": 5,
        "balance_account": 100,
        "device_code": "xxx-xxx-xxx-xx"
    }"#;
    let s: SessionObject = serde_json::from_str(seed).unwrap();
    assert_eq!(s.charge_mode, 5);
    assert_eq!(s.device_code, "xxx-xxx-xxx-xx");
    // Serialization always carries every seed key plus the two SPEC additions.
    let mut expected: Value = serde_json::from_str(seed).unwrap();
    expected["openid"] = json!("");
    expected["cur_time"] = json!("");
    let back = serde_json::to_value(&s).unwrap();
    assert_same_keys(&expected, &back, "$");
    assert_eq!(back, expected);
}

#[test]
fn s000_online_status_spec_session_object() {
    let json = format!(r#"{{"success":true,"result":{SESSION},"error":null}}"#);
    let e: Envelope<SessionObject> = vector(&json);
    assert_eq!(e.result.cost_time, 150, "seconds in the session object");
    assert_eq!(e.result.openid, "oABCdefGHIjkl");
}

#[test]
fn s000_phone_not_signed_in() {
    let json = r#"{"success":false,"result":-1,"error":"当前用户没有登录"}"#;
    let e: Envelope<i32> = vector(json);
    assert_eq!(e.result, LoginCode::NotSignedIn.code());
    assert_eq!(to_string(&LoginCode::NotSignedIn.envelope()), json);
}

// 2. 下线接口 POST /windows/logout

#[test]
fn s000_logout() {
    let r: TokenRequest = vector(r#"{"token": "xxxx"}"#);
    assert_eq!(r.token, "xxxx");
    let e: Envelope<StatusMsg> = vector(
        r#"{
            "success": true,
            "result": {"status": 1, "msg": "logout successed!"},
            "error": null
        }"#,
    );
    assert_eq!(e, Envelope::ok(StatusMsg::logged_out()));
    assert_eq!(
        to_string(&Envelope::ok(StatusMsg::logged_out())),
        r#"{"success":true,"result":{"status":1,"msg":"logout successed!"},"error":null}"#
    );
    assert_eq!(windows::LOGOUT_OK, "logout successed!");
}

#[test]
fn s000_logout_unknown_token_is_not_an_error() {
    let e = Envelope::ok(StatusMsg::not_in_session("token not found"));
    assert_eq!(
        to_string(&e),
        r#"{"success":true,"result":{"status":0,"msg":"token not found"},"error":null}"#
    );
}

// 3. 心跳接口 POST /windows/keepalive

#[test]
fn s000_keepalive() {
    let r: KeepaliveRequest =
        vector(r#"{"token": "xxxx", "device_code": "11-22-33-44-55-66-77-86"}"#);
    assert_eq!(r.device_code, "11-22-33-44-55-66-77-86");
    let json = format!(
        r#"{{
            "success": true,
            "result": {{"status": 1, "msg": "keepalive success", "data": {SESSION}}},
            "error": null
        }}"#
    );
    let e: Envelope<KeepaliveResult> = vector(&json);
    let data = e.result.data.clone().expect("data present");
    assert_eq!(e, Envelope::ok(KeepaliveResult::alive(data)));
    assert_eq!(e.result.msg, windows::KEEPALIVE_OK);
}

#[test]
fn s000_keepalive_dead_token_has_no_data() {
    let json = r#"{"success":true,"result":{"status":0,"msg":"session ended"},"error":null}"#;
    let e: Envelope<KeepaliveResult> = vector(json);
    assert_eq!(
        to_string(&Envelope::ok(KeepaliveResult::dead("session ended"))),
        json
    );
    assert!(e.result.data.is_none());
}

// 4. 校验是否登录接口 POST /windows/check

#[test]
fn s000_check_request() {
    let r: DeviceRequest = vector(r#"{"device_code": "11-22-33-44-55-66-77-86"}"#);
    assert_eq!(r.device_code, "11-22-33-44-55-66-77-86");
}

#[test]
fn s000_check_in_session_lock() {
    let e: Envelope<CheckResult> = vector(
        r#"{
            "success": true,
            "result": {"status": 1, "token": "xxxx", "device_status": "lock", "msg": "login successed!"},
            "error": null
        }"#,
    );
    assert_eq!(
        e.result,
        CheckResult::in_session("xxxx", DeviceStatus::Lock)
    );
}

#[test]
fn s000_check_short_form_without_device_status_reads() {
    // The seed's first, shorter line: no device_status.
    let r: CheckResult =
        serde_json::from_str(r#"{"status": 1, "token": "xxxx", "msg": "login successed!"}"#)
            .unwrap();
    assert_eq!(r.device_status, None);
    assert_eq!(r.token.as_deref(), Some("xxxx"));
}

#[test]
fn s000_check_device_status_values() {
    for s in ["lock", "busy", "free", "maintain"] {
        let json = format!(r#"{{"status":0,"device_status":"{s}","msg":"not login"}}"#);
        let r: CheckResult = vector(&json);
        assert_eq!(r.device_status.unwrap().as_str(), s);
    }
    rejects::<CheckResult>(r#"{"status":0,"device_status":"offline","msg":"not login"}"#);
}

#[test]
fn s000_check_exact_strings() {
    assert_eq!(
        to_string(&CheckResult::not_deployed()),
        r#"{"status":-1,"device_status":null,"msg":"not deploy"}"#
    );
    assert_eq!(
        to_string(&CheckResult::idle(DeviceStatus::Free)),
        r#"{"status":0,"device_status":"free","msg":"not login"}"#
    );
    assert_eq!(
        to_string(&CheckResult::in_session("abc", DeviceStatus::Busy)),
        r#"{"status":1,"token":"abc","device_status":"busy","msg":"login successed!"}"#
    );
    assert_eq!(
        to_string(&Envelope::ok(CheckResult::not_deployed())),
        r#"{"success":true,"result":{"status":-1,"device_status":null,"msg":"not deploy"},"error":null}"#
    );
    let _: CheckResult = vector(r#"{"status":-1,"device_status":null,"msg":"not deploy"}"#);
}

// 5. 维护人员登录接口 POST /windows/maintain/login

#[test]
fn s000_maintain_login() {
    let r: MaintainLoginRequest = vector(
        r#"{
            "device_code": "11-22-33-44-55-66-77-86",
            "username": "youfeng243",
            "password": "123456"
        }"#,
    );
    assert_eq!(
        r,
        MaintainLoginRequest {
            device_code: "11-22-33-44-55-66-77-86".into(),
            username: "youfeng243".into(),
            password: "123456".into(),
        }
    );
    let e: Envelope<String> = vector(r#"{"result": "登录成功", "success": true, "error": null}"#);
    assert_eq!(e, Envelope::ok(windows::MAINTAIN_LOGIN_OK.to_owned()));
}

#[test]
fn s000_maintain_logout() {
    let r: MaintainLogoutRequest =
        vector(r#"{"device_code": "11-22-33-44-55-66-77-86", "username": "youfeng243"}"#);
    assert_eq!(r.username, "youfeng243");
    rejects::<MaintainLogoutRequest>(r#"{"device_code": "11-22-33-44-55-66-77-86"}"#);
}

// 6. 获取需要更新的游戏列表 POST /windows/game/list

#[test]
fn s000_game_list() {
    // The seed's body has a trailing comma (not JSON); transcribed without it.
    let _: DeviceRequest = vector(r#"{"device_code": "11-22-33-44-55-66-77-86"}"#);
    // The seed documents the reply as `{}`: an empty list.
    let empty: GameList = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, GameList::default());
    assert_eq!(to_string(&empty), r#"{"total":0,"data":[]}"#);
    let e: Envelope<GameList> = vector(
        r#"{
            "success": true,
            "result": {
                "total": 2,
                "data": [
                    {"id": 1, "name": "Beat Saber", "current_version": "1.2", "newest_version": "1.3",
                     "need_update": true, "url": "http://example.com/bs-1.3.zip",
                     "md5": "0123456789abcdef0123456789abcdef"},
                    {"id": 2, "name": "节奏空间", "current_version": null, "newest_version": "2.0",
                     "need_update": true, "url": "http://example.com/jz-2.0.zip",
                     "md5": "fedcba9876543210fedcba9876543210"}
                ]
            },
            "error": null
        }"#,
    );
    assert_eq!(e.result.total, 2);
    assert_eq!(e.result.data[1].current_version, None);
}

// 7. 设置当前设备游戏更新状态 /windows/game/state

#[test]
fn s000_game_state_set() {
    let r: GameStateRequest =
        vector(r#"{"device_code": "11-22-33-44-55-66-77-88", "update_state": "finish"}"#);
    assert_eq!(r.update_state, Some(UpdateState::Finish));
    let r: GameStateRequest =
        vector(r#"{"device_code": "11-22-33-44-55-66-77-88", "update_state": "ing"}"#);
    assert_eq!(r.update_state, Some(UpdateState::Ing));
    let e: Envelope<String> =
        vector(r#"{"result": "设备游戏更新状态设置成功!", "success": true, "error": null}"#);
    assert_eq!(e.result, windows::GAME_STATE_SET_OK);
}

#[test]
fn s000_game_state_read() {
    let r: GameStateRequest = vector(r#"{"device_code": "11-22-33-44-55-66-77-88"}"#);
    assert_eq!(r.update_state, None);
    let r: GameStateRequest =
        serde_json::from_str(r#"{"device_code": "a", "update_state": null}"#).unwrap();
    assert_eq!(r.update_state, None);
    for s in ["wait", "ing", "finish"] {
        let e: Envelope<GameUpdateState> = vector(&format!(
            r#"{{"success":true,"result":"{s}","error":null}}"#
        ));
        assert_eq!(e.result.as_str(), s);
    }
}

#[test]
fn s000_game_state_bogus_is_rejected() {
    rejects::<GameStateRequest>(r#"{"device_code": "a", "update_state": "bogus"}"#);
    rejects::<GameStateRequest>(r#"{"device_code": "a", "update_state": "wait"}"#);
    rejects::<GameStateRequest>(r#"{"device_code": "a", "update_state": "FINISH"}"#);
    rejects::<Envelope<GameUpdateState>>(r#"{"success":true,"result":"done","error":null}"#);
}

// Negative and leniency tests for dialect A requests.

#[test]
fn s000_wrong_types_and_missing_fields_are_rejected() {
    rejects::<DeviceRequest>(r#"{"device_code": 5}"#);
    rejects::<DeviceRequest>(r#"{}"#);
    rejects::<DeviceRequest>(r#"{"device_code": null}"#);
    rejects::<TokenRequest>(r#"{}"#);
    rejects::<TokenRequest>(r#"{"token": 123}"#);
    rejects::<KeepaliveRequest>(r#"{"token": "xxxx"}"#);
    rejects::<KeepaliveRequest>(r#"{"device_code": "a"}"#);
    rejects::<MaintainLoginRequest>(r#"{"device_code": "a", "username": "u"}"#);
    rejects::<MaintainLoginRequest>(r#"{"device_code": "a", "username": "u", "password": 123456}"#);
    rejects::<GameStateRequest>(r#"{"update_state": "ing"}"#);
    rejects::<DeviceRequest>(r#""11-22-33-44-55-66-77-86""#);
    rejects::<DeviceRequest>("not json");
}

#[test]
fn s000_unknown_fields_are_ignored() {
    let r: KeepaliveRequest = serde_json::from_str(
        r#"{"token": "t", "device_code": "d", "version": "2.1", "extra": {"a": [1, 2]}}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        KeepaliveRequest {
            token: "t".into(),
            device_code: "d".into()
        }
    );
    let r: DeviceRequest =
        serde_json::from_str(r#"{"device_code": "d", "client_version": 3}"#).unwrap();
    assert_eq!(r.device_code, "d");
    let r: TokenRequest = serde_json::from_str(r#"{"token": "t", "device_code": "d"}"#).unwrap();
    assert_eq!(r.token, "t");
    let r: MaintainLoginRequest = serde_json::from_str(
        r#"{"device_code": "d", "username": "u", "password": "p", "remember": true}"#,
    )
    .unwrap();
    assert_eq!(r.password, "p");
    let r: GameStateRequest =
        serde_json::from_str(r#"{"device_code": "d", "update_state": "ing", "game_id": 4}"#)
            .unwrap();
    assert_eq!(r.update_state, Some(UpdateState::Ing));
}

// ===========================================================================
// Seed 001 — /wechat/*
// ===========================================================================

// 1. 用户登录 POST /wechat/login

#[test]
fn s001_login() {
    let r: LoginRequest = vector(r#"{"mobile": "13800138000", "code": "123456"}"#);
    assert_eq!(r.code, "123456");
    let json = format!(r#"{{"result": {USER_BOTH_NAMES}, "success": true, "error": null}}"#);
    let e: Envelope<UserInfo> = vector(&json);
    assert_eq!(e.result.mobile, "13800138000");
    rejects::<LoginRequest>(r#"{"mobile": "13800138000"}"#);
    rejects::<LoginRequest>(r#"{"mobile": "13800138000", "code": 123456}"#);
}

// 2. 请求短信验证码 POST /wechat/captcha

#[test]
fn s001_captcha() {
    let r: CaptchaRequest = vector(r#"{"mobile": "13800138000"}"#);
    assert_eq!(r.mobile, "13800138000");
    let e: Envelope<String> = vector(r#"{"success": true, "result": "success", "error": null}"#);
    assert_eq!(e, Envelope::ok(wechat::SUCCESS.to_owned()));
    rejects::<CaptchaRequest>(r#"{"mobile": 13800138000}"#);
    let _: CaptchaRequest =
        serde_json::from_str(r#"{"mobile": "13800138000", "scene": "login"}"#).unwrap();
}

// 3. 微信端获取用户信息 GET /wechat/user

#[test]
fn s001_user_seed_form_gains_nick_name() {
    // Exactly the seed's keys: the name only as `nike_name`.
    let seed = r#"{
        "success": true,
        "result": {
            "id": 7,
            "nike_name": "小明",
            "head_img_url": "http://wx.qlogo.cn/mmopen/abc/0",
            "mobile": "13800138000",
            "total_account": 10000,
            "used_account": 1500,
            "balance_account": 8500,
            "state": 0,
            "ctime": "2017-09-01 08:00:00",
            "utime": "2017-10-01 12:02:31"
        },
        "error": null
    }"#;
    let e: Envelope<UserInfo> = serde_json::from_str(seed).unwrap();
    assert_eq!(e.result.nick_name, "小明");
    assert_eq!(e.result.nike_name, "小明");
    let back = serde_json::to_value(&e).unwrap();
    let mut expected: Value = serde_json::from_str(seed).unwrap();
    expected["result"]["nick_name"] = json!("小明");
    assert_same_keys(&expected, &back, "$");
    assert_eq!(back, expected);
    assert_eq!(
        back["result"],
        serde_json::from_str::<Value>(USER_BOTH_NAMES).unwrap()
    );
}

#[test]
fn s001_user_both_names_serialize() {
    let u: UserInfo = vector(USER_BOTH_NAMES);
    let v = serde_json::to_value(&u).unwrap();
    assert_eq!(v["nick_name"], "小明");
    assert_eq!(v["nike_name"], "小明");
    let built = UserInfo {
        head_img_url: "http://wx.qlogo.cn/mmopen/abc/0".into(),
        mobile: "13800138000".into(),
        total_account: 10000,
        used_account: 1500,
        balance_account: 8500,
        ctime: "2017-09-01 08:00:00".into(),
        utime: "2017-10-01 12:02:31".into(),
        ..UserInfo::new(7, "小明")
    };
    assert_eq!(built, u);
    // Only the new spelling is also accepted.
    let mut only_nick: Value = serde_json::from_str(USER_BOTH_NAMES).unwrap();
    only_nick.as_object_mut().unwrap().remove("nike_name");
    let u2: UserInfo = serde_json::from_value(only_nick).unwrap();
    assert_eq!(u2, u);
}

#[test]
fn s001_user_rejects_missing_name_or_wrong_types() {
    let mut v: Value = serde_json::from_str(USER_BOTH_NAMES).unwrap();
    v.as_object_mut().unwrap().remove("nike_name");
    v.as_object_mut().unwrap().remove("nick_name");
    assert!(serde_json::from_value::<UserInfo>(v).is_err());
    let mut v: Value = serde_json::from_str(USER_BOTH_NAMES).unwrap();
    v["balance_account"] = json!("85.00");
    assert!(serde_json::from_value::<UserInfo>(v).is_err());
    let mut v: Value = serde_json::from_str(USER_BOTH_NAMES).unwrap();
    v.as_object_mut().unwrap().remove("state");
    assert!(serde_json::from_value::<UserInfo>(v).is_err());
}

#[test]
fn s001_user_states() {
    assert_eq!(
        (
            wechat::USER_ACTIVE,
            wechat::USER_DISABLED,
            wechat::USER_DELETED
        ),
        (0, 1, 2)
    );
}

// 4. 微信端充值接口 GET /wechat/recharge/<int:account>

#[test]
fn s001_recharge_sandbox() {
    let e: Envelope<String> = vector(r#"{"success": true, "result": "success", "error": null}"#);
    assert_eq!(e.result, wechat::SUCCESS);
}

// 5. 分页查询用户充值信息 POST /wechat/recharge/list

#[test]
fn s001_page_request() {
    let r: PageRequest = vector(
        r#"{
            "page": 1,
            "size": 10,
            "start_time": "2017-07-01 23:23:23",
            "end_time": "2017-10-30 23:23:23"
        }"#,
    );
    assert_eq!(r.start_time.as_deref(), Some("2017-07-01 23:23:23"));
    let r: PageRequest = vector(r#"{"page": 3, "size": 20}"#);
    assert_eq!((r.page, r.size, r.start_time), (3, 20, None));
    let r: PageRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(r, PageRequest::default());
    assert_eq!(to_string(&r), r#"{"page":1,"size":10}"#);
    rejects::<PageRequest>(r#"{"page": "1"}"#);
    rejects::<PageRequest>(r#"{"page": -1}"#);
    rejects::<PageRequest>(r#"{"start_time": 20170701}"#);
}

#[test]
fn s001_recharge_list() {
    let json = format!(
        r#"{{
            "result": {{
                "total": 200,
                "data": [
                    {{
                        "id": 31,
                        "user": {USER_BOTH_NAMES},
                        "amount": 5000,
                        "transaction_id": "4200000001201710011234567890",
                        "pay_time": "2017-10-01 11:00:00",
                        "utime": "2017-10-01 11:00:01",
                        "ctime": "2017-10-01 10:59:30"
                    }}
                ]
            }},
            "success": true,
            "error": null
        }}"#
    );
    let e: Envelope<Page<RechargeItem>> = vector(&json);
    assert_eq!(e.result.total, 200);
    assert_eq!(e.result.data[0].amount, 5000);
    assert_eq!(e.result.data[0].user.nike_name, "小明");
}

// 6. 判断当前用户是否已经注册或者是否存在openid GET /wechat/check

#[test]
fn s001_check_variants() {
    let e: Envelope<CheckCode> = vector(r#"{"success": true, "result": "success", "error": null}"#);
    assert_eq!(e, CheckCode::Registered.envelope());
    assert_eq!(
        to_string(&CheckCode::Registered.envelope()),
        r#"{"success":true,"result":"success","error":null}"#
    );

    let e: Envelope<CheckCode> = vector(r#"{"success": false, "result": -1, "error": "xxxx"}"#);
    assert_eq!(e.result, CheckCode::NoOpenid);
    let e: Envelope<CheckCode> = vector(r#"{"success": false, "result": 0, "error": "xxxx"}"#);
    assert_eq!(e.result, CheckCode::NotRegistered);
    let e: Envelope<CheckCode> = vector(r#"{"success": false, "result": -2, "error": "xxxx"}"#);
    assert_eq!(e.result, CheckCode::Deleted);

    for c in [
        CheckCode::NoOpenid,
        CheckCode::NotRegistered,
        CheckCode::Deleted,
    ] {
        let v = serde_json::to_value(c.envelope()).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["result"], json!(c.code().unwrap()));
        assert_eq!(v["error"], c.message());
    }
    rejects::<Envelope<CheckCode>>(r#"{"success": false, "result": 5, "error": "x"}"#);
}

// 7. 查询用户消费记录信息 POST /wechat/expense/list

#[test]
fn s001_expense_list() {
    let _: PageRequest = vector(
        r#"{"page": 1, "size": 10, "start_time": "2017-07-01 23:23:23", "end_time": "2017-10-30 23:23:23"}"#,
    );
    let e: Envelope<Page<ExpenseItem>> = vector(
        r#"{
            "result": {
                "total": 200,
                "data": [
                    {
                        "id": 42,
                        "user_id": 7,
                        "device_id": 3,
                        "province": "广东省",
                        "city": "深圳市",
                        "area": "南山区",
                        "location": "科技园一路 1 号",
                        "cost_money": 15,
                        "ctime": "2017-10-01 12:00:00",
                        "utime": "2017-10-01 12:02:30",
                        "end_time": "2017-10-01 12:02:30",
                        "cost_time": 2
                    }
                ]
            },
            "success": true,
            "error": null
        }"#,
    );
    assert_eq!(e.result.data[0].cost_time, 2, "minutes in the expense list");
}

// SPEC §7 additions.

#[test]
fn spec_orders_and_pay() {
    let e: Envelope<Page<OrderItem>> = vector(
        r#"{
            "success": true,
            "result": {
                "total": 1,
                "data": [
                    {"orderId": "o_3kT9xQ", "device_code": "11-22-33-44-55-66-77-86",
                     "cost_money": 528, "cost_time": 4, "ctime": "2017-10-01 12:00:00",
                     "end_time": "2017-10-01 12:03:05", "paid": false}
                ]
            },
            "error": null
        }"#,
    );
    assert_eq!(e.result.data[0].order_id, "o_3kT9xQ");
    let r: OrderPayRequest = vector(r#"{"orderId": "o_3kT9xQ"}"#);
    assert_eq!(r.order_id, "o_3kT9xQ");
    rejects::<OrderPayRequest>(r#"{"order_id": "o_3kT9xQ"}"#);
}

#[test]
fn spec_jsapi_signature_request() {
    let r: JsapiSignatureRequest = vector(r#"{"url": "https://example.com/app/index.html"}"#);
    assert_eq!(r.url, "https://example.com/app/index.html");
    rejects::<JsapiSignatureRequest>("{}");
}

#[test]
fn spec_jsapi_shapes() {
    let _: Envelope<wechat::JsapiSignature> = vector(
        r#"{"success":true,"result":{"appId":"wx123","timestamp":1506830400,"nonceStr":"abc","signature":"0f"},"error":null}"#,
    );
    let _: Envelope<wechat::JsapiPayParams> = vector(
        r#"{"success":true,"result":{"appId":"wx123","timeStamp":"1506830400","nonceStr":"abc","package":"prepay_id=wx1","signType":"RSA","paySign":"c2ln"},"error":null}"#,
    );
}

#[test]
fn protocol_version() {
    assert_eq!(kioskd_protocol::PROTOCOL_VERSION, "1");
}
