//! `ATTENDANCE.md`'s "Bridge WebSocket" section is the `/ws/attendance` protocol's
//! documentation and its examples are test vectors: every ```` ```json bridge ```` block
//! must be a `BridgeMessage` and every ```` ```json server ```` block a `ServerMessage`,
//! each serializing back to the same JSON; every message type has an example; the
//! close-code table names `ws::close` constants with the right "reconnect?" answer; the
//! documented `bad_message` reason is the real one.

mod doc;

use kioskd_protocol::attendance::{BridgeMessage, ServerMessage};
use kioskd_protocol::ws::close;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const DOC: &str = include_str!("../ATTENDANCE.md");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bridge,
    Server,
}

type Example = doc::Example<Kind>;

fn examples() -> Vec<Example> {
    doc::examples(
        "ATTENDANCE.md",
        DOC,
        &[("json bridge", Kind::Bridge), ("json server", Kind::Server)],
    )
}

#[track_caller]
fn round_trip<T: DeserializeOwned + Serialize>(e: &Example) -> Value {
    doc::round_trip::<T, Kind>("ATTENDANCE.md", e).0
}

fn kinds_of<T: DeserializeOwned + Serialize>(kind: Kind) -> std::collections::BTreeSet<String> {
    examples()
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| round_trip::<T>(e)["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_bridge_example_is_a_bridge_message_and_every_type_is_shown() {
    let kinds = kinds_of::<BridgeMessage>(Kind::Bridge);
    for k in ["hello", "ack", "result", "heartbeat"] {
        assert!(kinds.contains(k), "no `json bridge` example of {k}");
    }
}

#[test]
fn every_server_example_is_a_server_message_and_every_type_is_shown() {
    let kinds = kinds_of::<ServerMessage>(Kind::Server);
    for k in ["welcome", "command", "recorded", "error"] {
        assert!(kinds.contains(k), "no `json server` example of {k}");
    }
}

#[test]
fn the_documented_bad_message_reason_is_the_real_one() {
    // The server builds it as `format!("not a protocol message: {e}")`.
    let err = serde_json::from_str::<BridgeMessage>("{not json").unwrap_err();
    let reason = format!("not a protocol message: {err}");
    assert!(
        DOC.contains(&format!("\"reason\":\"{reason}\"")),
        "ATTENDANCE.md should show the reason {reason:?}"
    );
}

#[test]
fn the_close_code_table_names_ws_close_constants_with_the_right_reconnect_answer() {
    let constants: &[(&str, u16)] = &[
        ("NORMAL", close::NORMAL),
        ("GOING_AWAY", close::GOING_AWAY),
        ("UNSUPPORTED_DATA", close::UNSUPPORTED_DATA),
        ("TOO_BIG", close::TOO_BIG),
        ("INTERNAL", close::INTERNAL),
        ("REPLACED", close::REPLACED),
        ("FORBIDDEN", close::FORBIDDEN),
        ("SLOW_CONSUMER", close::SLOW_CONSUMER),
        ("IDLE_TIMEOUT", close::IDLE_TIMEOUT),
        ("PROTOCOL_ERROR", close::PROTOCOL_ERROR),
    ];
    let start = DOC
        .find("\n### Close codes")
        .expect("ATTENDANCE.md has a `### Close codes` section");
    let section = &DOC[start + 1..];
    let section = &section[..section[1..].find("\n#").map_or(section.len(), |i| i + 1)];
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .filter(|cells: &Vec<String>| cells[0].parse::<u16>().is_ok())
        .collect();
    assert_eq!(rows.len(), constants.len(), "one row per close code");
    for cells in &rows {
        let code: u16 = cells[0].parse().unwrap();
        let (name, _) = constants
            .iter()
            .find(|(_, c)| *c == code)
            .unwrap_or_else(|| panic!("close code {code} is not a ws::close constant"));
        assert_eq!(cells[1], format!("`close::{name}`"), "close code {code}");
        let want = if close::should_reconnect(code) {
            "yes"
        } else {
            "no"
        };
        assert_eq!(
            cells.last().unwrap(),
            want,
            "close code {code}: reconnect? must say {want}"
        );
    }
}
