//! `WS.md` is the realtime protocol's documentation and its examples are test vectors:
//! every ```` ```json client ```` block must be a `ClientMessage` and every
//! ```` ```json server ```` block a `ServerFrame`, each serializing back to the same JSON;
//! the close-code table must list every constant of `ws::close` with the right
//! "reconnect?" answer.

mod doc;

use kioskd_protocol::ws::{ClientMessage, ServerFrame, close};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const DOC: &str = include_str!("../WS.md");
const WS_RS: &str = include_str!("../src/ws.rs");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Client,
    Server,
}

type Example = doc::Example<Kind>;

fn examples() -> Vec<Example> {
    doc::examples(
        "WS.md",
        DOC,
        &[("json client", Kind::Client), ("json server", Kind::Server)],
    )
}

#[track_caller]
fn round_trip<T: DeserializeOwned + Serialize>(e: &Example) -> (Value, T) {
    doc::round_trip("WS.md", e)
}

#[test]
fn every_client_example_is_a_client_message() {
    let client: Vec<_> = examples()
        .into_iter()
        .filter(|e| e.kind == Kind::Client)
        .collect();
    assert!(
        client.len() >= 10,
        "only {} `json client` examples in WS.md",
        client.len()
    );
    let mut kinds = std::collections::BTreeSet::new();
    for e in &client {
        let (v, _msg): (Value, ClientMessage) = round_trip(e);
        kinds.insert(v["type"].as_str().unwrap().to_string());
    }
    for k in [
        "hello",
        "heartbeat",
        "ack",
        "logout",
        "game_state",
        "client_status",
    ] {
        assert!(kinds.contains(k), "no `json client` example of {k}");
    }
}

#[test]
fn every_server_example_is_a_server_frame() {
    let server: Vec<_> = examples()
        .into_iter()
        .filter(|e| e.kind == Kind::Server)
        .collect();
    assert!(
        server.len() >= 10,
        "only {} `json server` examples in WS.md",
        server.len()
    );
    let mut kinds = std::collections::BTreeSet::new();
    for e in &server {
        let (v, frame): (Value, ServerFrame) = round_trip(e);
        let kind = v["type"].as_str().unwrap().to_string();
        // The server never sequences snapshots and errors (stream.rs, http/ws.rs).
        if kind == "snapshot" || kind == "error" {
            assert_eq!(frame.seq, None, "WS.md:{}: a {kind} carries no seq", e.line);
        }
        kinds.insert(kind);
    }
    for k in [
        "snapshot",
        "session_started",
        "billing",
        "balance_low",
        "session_ended",
        "device_status",
        "command",
        "error",
    ] {
        assert!(kinds.contains(k), "no `json server` example of {k}");
    }
}

#[test]
fn the_documented_bad_message_reason_is_the_real_one() {
    // WS.md shows the `error` a kiosk gets for the text `{not json`; the server builds
    // it as `format!("not a protocol message: {e}")`.
    let err = serde_json::from_str::<ClientMessage>("{not json").unwrap_err();
    let reason = format!("not a protocol message: {err}");
    assert!(
        DOC.contains(&format!("\"reason\":\"{reason}\"")),
        "WS.md should show the reason {reason:?}"
    );
}

/// `(name, value)` of every `pub const NAME: u16 = N;` in `ws.rs`'s `mod close`.
fn close_constants_in_source() -> Vec<(String, u16)> {
    let start = WS_RS
        .find("pub mod close {")
        .expect("ws.rs has `pub mod close`");
    let body = &WS_RS[start..];
    let end = body.find("\n}").expect("end of `mod close`");
    body[..end]
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const ")?;
            let (name, rest) = rest.split_once(':')?;
            let value = rest.split_once('=')?.1.trim().trim_end_matches(';').trim();
            Some((
                name.trim().to_string(),
                value.parse().expect("a u16 literal"),
            ))
        })
        .collect()
}

/// Rows of the table in WS.md's "Close codes" section: (code, cells).
fn close_table() -> Vec<(u16, Vec<String>)> {
    let start = DOC
        .find("\n## 7. Close codes")
        .expect("WS.md has a `## 7. Close codes` section");
    let section = &DOC[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    section
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<String> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            let code = cells.first()?.parse::<u16>().ok()?;
            Some((code, cells))
        })
        .collect()
}

#[test]
fn the_close_code_table_lists_every_constant_with_the_right_reconnect_answer() {
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
        ("RATE_LIMITED", close::RATE_LIMITED),
    ];
    // The list above is complete: a constant added to `ws::close` must be added here
    // (and so to the doc).
    let mut in_source = close_constants_in_source();
    in_source.sort();
    let mut listed: Vec<(String, u16)> =
        constants.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    listed.sort();
    assert_eq!(listed, in_source, "ws::close and this test disagree");

    let rows = close_table();
    assert_eq!(
        rows.len(),
        constants.len(),
        "the close-code table has one row per constant"
    );
    for (name, code) in constants {
        let matching: Vec<_> = rows.iter().filter(|(c, _)| c == code).collect();
        assert_eq!(
            matching.len(),
            1,
            "close code {code} ({name}): one row in WS.md"
        );
        let cells = &matching[0].1;
        assert_eq!(
            cells.get(1).map(String::as_str),
            Some(format!("`close::{name}`").as_str()),
            "close code {code}: the constant column"
        );
        let want = if close::should_reconnect(*code) {
            "yes"
        } else {
            "no"
        };
        assert_eq!(
            cells.last().map(String::as_str),
            Some(want),
            "close code {code} ({name}): the reconnect? column must say {want}"
        );
    }
}
