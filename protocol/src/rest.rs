//! Dialect B: the "rest" kiosk API under `/rest/*` (seed 002, SPEC §6).
//!
//! The field client (a Windows C++ program) reads every reply into a flat string map:
//! only top-level keys count, numbers are read as 32-bit integers or `%f` doubles, nested
//! values become empty, and a key missing from a reply keeps its previous value. So every
//! reply here is a flat JSON object whose keys are all present on every reply of its
//! endpoint, failures included; ids are strings; money is yuan written from integer fen
//! (`132` → `1.32`, `3960` → `39.6`, `0` → `0`) without any floating point; durations are
//! whole minutes; text is raw UTF-8.
//!
//! Replies are written by hand (`to_json`) rather than through serde so that the yuan
//! numbers come from integer arithmetic and the key order is the seed's, byte for byte.
//! [`FieldClient`] reads replies the way the field client does (tests and the reference
//! agent use it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `onlineStatus` 1: waiting for a user (待上机), or the last session is paid / free.
pub const ONLINE_IDLE: i32 = 1;
/// `onlineStatus` 2: in session (上机中).
pub const ONLINE_PLAYING: i32 = 2;
/// `onlineStatus` 3: the last session ended with its order unpaid (不可上机).
pub const ONLINE_BLOCKED: i32 = 3;

/// `/rest/clientStatus` `data`: heartbeat taken; in session (or never had one).
pub const CLIENT_OK: i32 = 1;
/// `/rest/clientStatus` `data`: the last session ended and is paid (or free); also a
/// refused request (unknown client, bad parameters).
pub const CLIENT_ENDED_PAID: i32 = 0;
/// `/rest/clientStatus` `data`: the last session ended and its order is unpaid.
pub const CLIENT_ENDED_UNPAID: i32 = 2;

/// `orderStatus` 0: not paid yet.
pub const ORDER_UNPAID: i32 = 0;
/// `orderStatus` 1: paid (the kiosk reboots).
pub const ORDER_PAID: i32 = 1;

/// Formats fen as a yuan JSON number with integer arithmetic: at most two decimals,
/// trailing zeros dropped (`0`, `5`, `39.6`, `1.32`, `3243.24`).
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    let (whole, cents) = (a / 100, a % 100);
    match cents {
        0 => format!("{sign}{whole}"),
        c if c % 10 == 0 => format!("{sign}{whole}.{}", c / 10),
        c => format!("{sign}{whole}.{c:02}"),
    }
}

/// Parses a yuan number as written by [`yuan`] (or by the original server) back to fen,
/// exactly: `"1.32"` → 132. `None` for more than two decimals or anything else.
pub fn parse_yuan(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let v = w.checked_mul(100)?.checked_add(f)?;
    Some(if neg { -v } else { v })
}

/// One value of a flat reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// A JSON integer.
    Int(i64),
    /// A JSON string.
    Str(String),
    /// Fen, written as a yuan number.
    Yuan(i64),
}

/// A flat JSON object with keys in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flat(pub Vec<(&'static str, Val)>);

impl Flat {
    /// The JSON text: no spaces, raw UTF-8, keys in order.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.0.len() * 24);
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(&mut out, k);
            out.push(':');
            match v {
                Val::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Val::Str(s) => push_str(&mut out, s),
                Val::Yuan(f) => out.push_str(&yuan(*f)),
            }
        }
        out.push('}');
        out
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `GET /rest/serviceNum`: `{"data":1,"serviceNum":"..","phone":".."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNum {
    /// 1 found, 0 none configured.
    pub data: i32,
    /// The customer service number.
    pub service_num: String,
}

impl ServiceNum {
    /// The reply; `phone` (what the field client reads) repeats `serviceNum`.
    pub fn flat(&self) -> Flat {
        Flat(vec![
            ("data", Val::Int(self.data as i64)),
            ("serviceNum", Val::Str(self.service_num.clone())),
            ("phone", Val::Str(self.service_num.clone())),
        ])
    }
}

/// `GET /rest/clientStatus`: `{"data":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientStatusReply {
    /// `CLIENT_OK`, `CLIENT_ENDED_PAID` or `CLIENT_ENDED_UNPAID`.
    pub data: i32,
}

impl ClientStatusReply {
    /// The reply.
    pub fn flat(&self) -> Flat {
        Flat(vec![("data", Val::Int(self.data as i64))])
    }
}

/// `GET /rest/status_client`: the user's session on a client, keys in the seed's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusClient {
    /// 1 answered, 0 unknown client or bad request.
    pub data: i32,
    /// Whole minutes.
    pub duration: i64,
    /// The user (kioskd's user id).
    pub union_id: String,
    /// The client.
    pub client_id: String,
    /// Cost, fen (written as yuan).
    pub cost_fen: i64,
    /// `ONLINE_IDLE`, `ONLINE_PLAYING` or `ONLINE_BLOCKED`.
    pub online_status: i32,
    /// Price, fen per minute (written as yuan).
    pub charging_fen: i64,
    /// Session start, or empty.
    pub start_time: String,
    /// The request time while in session, the end time after it, or empty.
    pub end_time: String,
}

impl StatusClient {
    /// Nothing to report for `client_id` (idle, or refused with `data` 0): the seed's
    /// idle shape with zeros and empty times.
    pub fn idle(data: i32, union_id: String, client_id: String) -> Self {
        Self {
            data,
            duration: 0,
            union_id,
            client_id,
            cost_fen: 0,
            online_status: ONLINE_IDLE,
            charging_fen: 0,
            start_time: String::new(),
            end_time: String::new(),
        }
    }

    /// The reply.
    pub fn flat(&self) -> Flat {
        Flat(vec![
            ("data", Val::Int(self.data as i64)),
            ("duration", Val::Int(self.duration)),
            ("unionId", Val::Str(self.union_id.clone())),
            ("clientId", Val::Str(self.client_id.clone())),
            ("cost", Val::Yuan(self.cost_fen)),
            ("onlineStatus", Val::Int(self.online_status as i64)),
            ("charging", Val::Yuan(self.charging_fen)),
            ("startTime", Val::Str(self.start_time.clone())),
            ("endTime", Val::Str(self.end_time.clone())),
        ])
    }
}

/// `GET /rest/offline`: `{"data":1,"orderId":".."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineReply {
    /// 1 ended (or already ended: the same order again), 0 nothing to end.
    pub data: i32,
    /// The order to pay (empty when `data` is 0 or the device is prepaid).
    pub order_id: String,
}

impl OfflineReply {
    /// The reply.
    pub fn flat(&self) -> Flat {
        Flat(vec![
            ("data", Val::Int(self.data as i64)),
            ("orderId", Val::Str(self.order_id.clone())),
        ])
    }
}

/// `GET /rest/orderStatus`: an order as the kiosk's payment screen (E) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStatusReply {
    /// 1 found, 0 unknown order or bad request.
    pub data: i32,
    /// The order.
    pub order_id: String,
    /// `ORDER_UNPAID` or `ORDER_PAID`.
    pub order_status: i32,
    /// Amount due, fen (written as yuan).
    pub cost_fen: i64,
    /// Whole minutes billed.
    pub duration: i64,
    /// The client it ran on.
    pub client_id: String,
    /// The user.
    pub union_id: String,
    /// Price, fen per minute (written as yuan).
    pub charging_fen: i64,
    /// Session start.
    pub start_time: String,
    /// Session end.
    pub end_time: String,
}

impl OrderStatusReply {
    /// An unknown order (or a bad request): every key present, nothing found.
    pub fn unknown(order_id: String) -> Self {
        Self {
            data: 0,
            order_id,
            order_status: ORDER_UNPAID,
            cost_fen: 0,
            duration: 0,
            client_id: String::new(),
            union_id: String::new(),
            charging_fen: 0,
            start_time: String::new(),
            end_time: String::new(),
        }
    }

    /// The reply.
    pub fn flat(&self) -> Flat {
        Flat(vec![
            ("data", Val::Int(self.data as i64)),
            ("orderId", Val::Str(self.order_id.clone())),
            ("orderStatus", Val::Int(self.order_status as i64)),
            ("cost", Val::Yuan(self.cost_fen)),
            ("duration", Val::Int(self.duration)),
            ("clientId", Val::Str(self.client_id.clone())),
            ("unionId", Val::Str(self.union_id.clone())),
            ("charging", Val::Yuan(self.charging_fen)),
            ("startTime", Val::Str(self.start_time.clone())),
            ("endTime", Val::Str(self.end_time.clone())),
        ])
    }
}

/// The reply to anything under `/rest/` that is not one of its endpoints (404, 405) or
/// that failed inside (500): `{"data":0,"msg":".."}` plus, for a known endpoint, every
/// key of that endpoint's replies, so the field client's map is left consistent.
pub fn fallback(path: &str, msg: &str) -> Flat {
    let mut f = match endpoint(path) {
        Some("serviceNum") => ServiceNum {
            data: 0,
            service_num: String::new(),
        }
        .flat(),
        Some("clientStatus") => ClientStatusReply {
            data: CLIENT_ENDED_PAID,
        }
        .flat(),
        // No clientId: the kiosk acts only on replies naming its own client id, so a
        // failed poll never moves its screen.
        Some("status_client") => StatusClient::idle(0, String::new(), String::new()).flat(),
        Some("offline") => OfflineReply {
            data: 0,
            order_id: String::new(),
        }
        .flat(),
        Some("orderStatus") => OrderStatusReply::unknown(String::new()).flat(),
        _ => Flat(vec![("data", Val::Int(0))]),
    };
    f.0.push(("msg", Val::Str(msg.to_string())));
    f
}

/// The endpoint name of a `/rest/<name>` path, if it is one of dialect B's.
pub fn endpoint(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix("/rest/")?.trim_end_matches('/');
    ENDPOINTS.iter().copied().find(|e| *e == name)
}

/// Every `/rest/*` endpoint.
pub const ENDPOINTS: [&str; 5] = [
    "serviceNum",
    "clientStatus",
    "status_client",
    "offline",
    "orderStatus",
];

/// The field client's view of the replies it has read: a flat string map where only
/// top-level keys count, nested values are empty, and a key missing from a reply keeps
/// its previous value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldClient {
    /// Key → raw text of the value (strings unquoted, numbers as written).
    pub map: BTreeMap<String, String>,
}

/// Why a reply could not be read as the field client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Not JSON.
    NotJson(String),
    /// JSON, but not an object.
    NotAnObject,
}

impl FieldClient {
    /// Reads one reply into the map.
    pub fn read(&mut self, body: &str) -> Result<(), ReadError> {
        let v: serde_json::Value =
            serde_json::from_str(body).map_err(|e| ReadError::NotJson(e.to_string()))?;
        let serde_json::Value::Object(o) = v else {
            return Err(ReadError::NotAnObject);
        };
        for (k, v) in o {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => String::new(),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => String::new(),
            };
            self.map.insert(k, text);
        }
        Ok(())
    }

    /// A value as the client's `%d` read: a 32-bit integer (0 when absent or not one).
    pub fn int(&self, key: &str) -> i32 {
        self.map
            .get(key)
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0)
    }

    /// A value as the client's `%f` read (0.0 when absent or not a number).
    pub fn double(&self, key: &str) -> f64 {
        self.map
            .get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// A string value (empty when absent).
    pub fn str(&self, key: &str) -> &str {
        self.map.get(key).map(String::as_str).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_is_exact() {
        for (fen, s) in [
            (0, "0"),
            (5, "0.05"),
            (50, "0.5"),
            (132, "1.32"),
            (500, "5"),
            (528, "5.28"),
            (3960, "39.6"),
            (324324, "3243.24"),
            (i64::MAX, "92233720368547758.07"),
        ] {
            assert_eq!(yuan(fen), s);
            assert_eq!(parse_yuan(s), Some(fen), "{s}");
        }
        assert_eq!(parse_yuan("1.321"), None);
        assert_eq!(parse_yuan("abc"), None);
        assert_eq!(parse_yuan(".5"), None);
    }

    #[test]
    fn strings_are_raw_utf8_and_escaped() {
        let f = Flat(vec![("k", Val::Str("上机 \"x\"\n".into()))]);
        assert_eq!(f.to_json(), "{\"k\":\"上机 \\\"x\\\"\\n\"}");
    }

    #[test]
    fn fallback_keeps_the_endpoint_keys() {
        let j = fallback("/rest/status_client", "x").to_json();
        let mut c = FieldClient::default();
        c.read(&j).unwrap();
        for k in [
            "data",
            "duration",
            "unionId",
            "clientId",
            "cost",
            "onlineStatus",
            "charging",
            "startTime",
            "endTime",
            "msg",
        ] {
            assert!(c.map.contains_key(k), "{k} in {j}");
        }
        assert_eq!(endpoint("/rest/nope"), None);
        assert_eq!(
            fallback("/rest/nope", "m").to_json(),
            r#"{"data":0,"msg":"m"}"#
        );
    }
}
