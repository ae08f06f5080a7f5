//! Test vectors transcribed from seed 002 (`/rest/*`, dialect B) plus SPEC §6's
//! additions. The seed's replies are compared byte for byte: the field client is a C++
//! program that reads them into a flat string map, so key names, key order, number
//! shapes (`3243.24`, `39.6`, `0`) and string ids all matter.
//!
//! One transcription fix: the seed's ended example closes `endTime` with a typographic
//! quote (`"2017-08-07 16:35:12“`), which is not JSON; it is read as `"`.

use kioskd_protocol::rest::*;

#[test]
fn s002_service_num() {
    // The seed's reply, as the kiosk reads it; kioskd adds `phone` (what the field
    // client reads) with the same number.
    let ours = ServiceNum {
        data: 1,
        service_num: "13738196887".into(),
    }
    .flat()
    .to_json();
    assert_eq!(
        ours,
        r#"{"data":1,"serviceNum":"13738196887","phone":"13738196887"}"#
    );
    let mut k = FieldClient::default();
    k.read(r#"{"data":1,"serviceNum":"13738196887"}"#).unwrap();
    k.read(&ours).unwrap();
    assert_eq!(k.str("serviceNum"), k.str("phone"));
    // Failure: {"data":0} (the seed writes it with typographic quotes).
    let f = fallback("/rest/serviceNum", "none").to_json();
    assert_eq!(f, r#"{"data":0,"serviceNum":"","phone":"","msg":"none"}"#);
}

#[test]
fn s002_client_status() {
    for (data, json) in [
        (CLIENT_OK, r#"{"data":1}"#),
        (CLIENT_ENDED_PAID, r#"{"data":0}"#),
        (CLIENT_ENDED_UNPAID, r#"{"data":2}"#),
    ] {
        assert_eq!(ClientStatusReply { data }.flat().to_json(), json);
    }
}

#[test]
fn s002_status_client_idle() {
    let ours = StatusClient::idle(1, "775233".into(), "370011".into())
        .flat()
        .to_json();
    assert_eq!(
        ours,
        r#"{"data":1,"duration":0,"unionId":"775233","clientId":"370011","cost":0,"onlineStatus":1,"charging":0,"startTime":"","endTime":""}"#
    );
}

#[test]
fn s002_status_client_in_session() {
    let ours = StatusClient {
        data: 1,
        duration: 2457,
        union_id: "775233".into(),
        client_id: "370011".into(),
        cost_fen: 324_324,
        online_status: ONLINE_PLAYING,
        charging_fen: 132,
        start_time: "2017-08-07 16:32:20".into(),
        end_time: "2017-08-09 09:30:05".into(),
    }
    .flat()
    .to_json();
    assert_eq!(
        ours,
        r#"{"data":1,"duration":2457,"unionId":"775233","clientId":"370011","cost":3243.24,"onlineStatus":2,"charging":1.32,"startTime":"2017-08-07 16:32:20","endTime":"2017-08-09 09:30:05"}"#
    );
    // The field client reads the numbers as it does: %d and %f.
    let mut k = FieldClient::default();
    k.read(&ours).unwrap();
    assert_eq!(k.int("onlineStatus"), 2);
    assert_eq!(k.int("duration"), 2457);
    assert!((k.double("cost") - 3243.24).abs() < 1e-9);
    assert_eq!(parse_yuan(k.str("cost")), Some(324_324));
    assert_eq!(parse_yuan(k.str("charging")), Some(132));
}

#[test]
fn s002_status_client_ended_unpaid() {
    let ours = StatusClient {
        data: 1,
        duration: 30,
        union_id: "775233".into(),
        client_id: "370011".into(),
        cost_fen: 3960,
        online_status: ONLINE_BLOCKED,
        charging_fen: 132,
        start_time: "2017-08-07 16:32:20".into(),
        end_time: "2017-08-07 16:35:12".into(),
    }
    .flat()
    .to_json();
    assert_eq!(
        ours,
        r#"{"data":1,"duration":30,"unionId":"775233","clientId":"370011","cost":39.6,"onlineStatus":3,"charging":1.32,"startTime":"2017-08-07 16:32:20","endTime":"2017-08-07 16:35:12"}"#
    );
}

#[test]
fn s002_offline_carries_the_order() {
    // Seed: {"data":1} / {"data":0}; SPEC §6 adds the order to pay.
    assert_eq!(
        OfflineReply {
            data: 1,
            order_id: "o_3kT9xQ".into()
        }
        .flat()
        .to_json(),
        r#"{"data":1,"orderId":"o_3kT9xQ"}"#
    );
    assert_eq!(
        fallback("/rest/offline", "no session").to_json(),
        r#"{"data":0,"orderId":"","msg":"no session"}"#
    );
}

#[test]
fn spec_order_status() {
    let paid = OrderStatusReply {
        data: 1,
        order_id: "o_3kT9xQ".into(),
        order_status: ORDER_PAID,
        cost_fen: 528,
        duration: 4,
        client_id: "370011".into(),
        union_id: "775233".into(),
        charging_fen: 132,
        start_time: "2017-10-01 12:00:00".into(),
        end_time: "2017-10-01 12:03:05".into(),
    };
    assert_eq!(
        paid.flat().to_json(),
        r#"{"data":1,"orderId":"o_3kT9xQ","orderStatus":1,"cost":5.28,"duration":4,"clientId":"370011","unionId":"775233","charging":1.32,"startTime":"2017-10-01 12:00:00","endTime":"2017-10-01 12:03:05"}"#
    );
    // Unknown: every key still there, so nothing stale survives in the kiosk's map.
    let mut k = FieldClient::default();
    k.read(&paid.flat().to_json()).unwrap();
    k.read(&OrderStatusReply::unknown("nope".into()).flat().to_json())
        .unwrap();
    assert_eq!(k.int("data"), 0);
    assert_eq!(k.int("orderStatus"), ORDER_UNPAID);
    assert_eq!(k.str("cost"), "0");
}

#[test]
fn field_client_keeps_missing_keys_and_empties_nested_values() {
    let mut k = FieldClient::default();
    k.read(r#"{"data":1,"onlineStatus":2}"#).unwrap();
    k.read(r#"{"data":0,"x":{"a":1},"y":[1]}"#).unwrap();
    assert_eq!(k.int("onlineStatus"), 2, "a missing key keeps its value");
    assert_eq!(k.str("x"), "");
    assert_eq!(k.str("y"), "");
    assert!(k.read("[1]").is_err());
    assert!(k.read("<html>").is_err());
}
