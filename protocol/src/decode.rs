//! Every decoder of this crate behind one entry per kind of input, for the fuzz targets
//! (`fuzz/`, cargo-fuzz) and the test that replays their corpus on stable
//! (`tests/fuzz_corpus.rs`). A decoder may refuse any input; it must never panic, and
//! what it accepts must survive the checks below (they are the fuzzers' oracles).

use crate::{attendance, rest, wechat, windows, ws};

/// The fuzz targets served by [`decode`] (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[&str] = &[
    "dialect_a",
    "phone",
    "dialect_b",
    "attendance_json",
    "ws_frames",
];

/// Runs every decoder of `target` over `data`. `false` for an unknown target.
pub fn decode(target: &str, data: &[u8]) -> bool {
    match target {
        "dialect_a" => dialect_a(data),
        "phone" => phone(data),
        "dialect_b" => dialect_b(data),
        "attendance_json" => attendance_json(data),
        "ws_frames" => ws_frames(data),
        _ => return false,
    }
    true
}

fn json<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// Dialect A (`/windows/*`) request bodies and the enums read from strings.
fn dialect_a(data: &[u8]) {
    let _ = json::<windows::TokenRequest>(data);
    let _ = json::<windows::KeepaliveRequest>(data);
    let _ = json::<windows::DeviceRequest>(data);
    let _ = json::<windows::MaintainLoginRequest>(data);
    let _ = json::<windows::MaintainLogoutRequest>(data);
    let _ = json::<windows::GameStateRequest>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<windows::DeviceStatus>();
    }
}

/// Phone (`/wechat/*`) request bodies and the upstream user object.
fn phone(data: &[u8]) {
    let _ = json::<wechat::CaptchaRequest>(data);
    let _ = json::<wechat::LoginRequest>(data);
    let _ = json::<wechat::PageRequest>(data);
    let _ = json::<wechat::OrderPayRequest>(data);
    let _ = json::<wechat::JsapiSignatureRequest>(data);
    let _ = json::<wechat::UserInfo>(data);
}

/// Dialect B (`/rest/*`): yuan amounts (exact round trip), endpoint names, and replies as
/// the field client reads them.
fn dialect_b(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fen) = rest::parse_yuan(s) {
        assert_eq!(
            rest::parse_yuan(&rest::yuan(fen)),
            Some(fen),
            "yuan round trip"
        );
    }
    let _ = rest::endpoint(s);
    let mut c = rest::FieldClient::default();
    if c.read(s).is_ok() {
        for k in c.map.keys() {
            let _ = (c.int(k), c.double(k));
        }
    }
}

/// `/ws/attendance` bridge frames: what decodes re-encodes to the same frame.
fn attendance_json(data: &[u8]) {
    if let Some(m) = json::<attendance::BridgeMessage>(data) {
        let again = serde_json::to_vec(&m).expect("a decoded frame encodes");
        assert_eq!(json::<attendance::BridgeMessage>(&again), Some(m));
    }
}

/// `/ws/kiosk`, `/ws/user`, `/ws/ops` client frames: what decodes re-encodes to the same
/// frame.
fn ws_frames(data: &[u8]) {
    if let Some(m) = json::<ws::ClientMessage>(data) {
        let again = serde_json::to_vec(&m).expect("a decoded frame encodes");
        assert_eq!(json::<ws::ClientMessage>(&again), Some(m));
    }
}
