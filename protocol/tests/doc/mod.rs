//! Shared by the doc-example tests (`ws_doc.rs`, `attendance_doc.rs`): the fenced
//! ```` ```json <tag> ```` blocks of a protocol document, and the round trip every
//! example must survive.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One tagged example.
pub struct Example<K> {
    pub kind: K,
    pub line: usize,
    pub text: String,
}

/// Every fenced block of `doc` whose info string starts with `json`; each such block must
/// carry exactly one of `tags` (`("json client", Kind::Client)`, ...).
pub fn examples<K: Copy>(name: &str, doc: &str, tags: &[(&str, K)]) -> Vec<Example<K>> {
    let mut out = Vec::new();
    let mut open: Option<(Option<K>, usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim_end();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let kind = tags.iter().find(|(t, _)| *t == info).map(|(_, k)| *k);
                    assert!(
                        kind.is_some() || !info.trim_start().starts_with("json"),
                        "{name}:{line_no}: a json block must be tagged exactly one of {:?}, not {info:?}",
                        tags.iter().map(|(t, _)| *t).collect::<Vec<_>>()
                    );
                    open = Some((kind, line_no, String::new()));
                }
            }
            Some((kind, start, body)) => {
                if trimmed == "```" {
                    if let Some(kind) = *kind {
                        out.push(Example {
                            kind,
                            line: *start,
                            text: std::mem::take(body),
                        });
                    }
                    open = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{name} ends inside a fenced block");
    out
}

/// Parses an example as one JSON object with a string `type`, reads it as `T`, writes it
/// back and compares.
#[track_caller]
pub fn round_trip<T: DeserializeOwned + Serialize, K: std::fmt::Debug>(
    name: &str,
    e: &Example<K>,
) -> (Value, T) {
    let at = format!("{name}:{} ({:?} example)", e.line, e.kind);
    let value: Value = serde_json::from_str(&e.text)
        .unwrap_or_else(|err| panic!("{at}: not exactly one JSON value: {err}\n{}", e.text));
    assert!(
        value.is_object() && value.get("type").is_some_and(Value::is_string),
        "{at}: an example is an object with a string `type`"
    );
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|err| panic!("{at}: does not deserialize: {err}\n{}", e.text));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, value, "{at}: re-serializing changes the JSON");
    (value, typed)
}
