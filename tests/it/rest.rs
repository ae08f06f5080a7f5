//! Dialect B end to end (seed 002, SPEC §3, §6, §7): a kiosk that reads every `/rest/*`
//! reply the way the field client does (flat string map, top-level keys only, numbers
//! as `%d`/`%f`, nested values empty, missing keys keep their value) drives its screens
//! against the real app, a phone starts and pays, and the money invariants hold. Time
//! runs on a shortened billing unit (1 s), never on long sleeps.

use crate::common;

use std::time::Duration;

use common::*;
use kioskd_protocol::rest::{FieldClient, parse_yuan};
use serde_json::{Value, json};

const CODE: &str = "11-22-33-44-55-66-77-88";
const CLIENT: &str = "370011";
const SERVICE: &str = "13738196887";

/// Test config: 1 s "minutes", no free start, the service number, a media folder.
fn extra(files: &std::path::Path, heartbeat: u64) -> String {
    format!(
        "[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = {heartbeat}\n[rest]\nservice_number = \"{SERVICE}\"\n[files]\ndir = \"{}\"\n",
        files.display()
    )
}

/// The field client: every reply goes through its flat map.
struct Kiosk {
    http: reqwest::Client,
    base: String,
    client_id: String,
    seen: FieldClient,
}

impl Kiosk {
    fn new(app: &TestApp, client_id: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            client_id: client_id.to_string(),
            seen: FieldClient::default(),
        }
    }

    /// Sends a request, checks the reply is what the field client can read (a flat
    /// object, no compression, no redirect), reads it into the map. Returns (status,
    /// this reply's own keys).
    async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
    ) -> (u16, serde_json::Map<String, Value>) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert!(
            !(300..400).contains(&status),
            "no redirects under /rest/: {status}"
        );
        assert!(
            r.headers().get("content-encoding").is_none(),
            "no compression"
        );
        let body = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {body:?} (status {status})"));
        let Value::Object(o) = v else {
            panic!("not a JSON object: {body}")
        };
        for (k, v) in &o {
            assert!(
                !v.is_object() && !v.is_array(),
                "nested value under {k}: {body}"
            );
        }
        self.seen.read(&body).unwrap();
        (status, o)
    }

    async fn get(
        &mut self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> (u16, serde_json::Map<String, Value>) {
        let q = serde_urlencoded::to_string(query).unwrap();
        let req = self.http.get(format!("{}/rest/{endpoint}?{q}", self.base));
        self.send(req).await
    }

    async fn status_client(&mut self) -> serde_json::Map<String, Value> {
        let id = self.client_id.clone();
        let (st, o) = self.get("status_client", &[("clientId", &id)]).await;
        assert_eq!(st, 200);
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
        ] {
            assert!(o.contains_key(k), "status_client lacks {k}: {o:?}");
        }
        o
    }

    async fn client_status(&mut self) -> i32 {
        let id = self.client_id.clone();
        let (st, o) = self
            .get("clientStatus", &[("clientId", &id), ("clientStatus", "1")])
            .await;
        assert_eq!(st, 200);
        o["data"].as_i64().unwrap() as i32
    }

    /// The kiosk's rule: act only on replies naming its own client id.
    fn online_status(&self) -> i32 {
        assert_eq!(self.seen.str("clientId"), self.client_id);
        self.seen.int("onlineStatus")
    }

    /// cost == duration × charging, exactly, in fen.
    fn assert_cost_consistent(&self) -> (i64, i64) {
        let cost = parse_yuan(self.seen.str("cost")).expect("cost is a yuan number");
        let charging = parse_yuan(self.seen.str("charging")).expect("charging is yuan");
        let minutes = self.seen.int("duration") as i64;
        assert_eq!(cost, minutes * charging, "{:?}", self.seen.map);
        (cost, minutes)
    }
}

async fn add_b_device(app: &TestApp, code: &str, client_id: &str, price: i64) {
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": code, "client_id": client_id, "name": "VR B", "charge_mode": price}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["billing_mode"], "postpaid",
        "dialect B defaults to postpaid"
    );
}

async fn orders(p: &Phone) -> Value {
    let r = p
        .http
        .get(format!("{}/wechat/orders", p.base))
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

#[tokio::test]
async fn field_client_drives_every_screen_and_pays_through_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&extra(dir.path(), 300)).await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let mut k = Kiosk::new(&app, CLIENT);

    // Start screen: the service number (the kiosk reads `phone`).
    let (st, o) = k.get("serviceNum", &[]).await;
    assert_eq!((st, o["data"].as_i64()), (200, Some(1)));
    assert_eq!(k.seen.str("phone"), SERVICE);
    assert_eq!(k.seen.str("serviceNum"), SERVICE);

    // A/B idle polls: heartbeat accepted, no session ever → data 0, onlineStatus 1.
    assert_eq!(k.client_status().await, 1);
    let o = k.status_client().await;
    assert_eq!(o["data"], 0);
    assert_eq!(k.online_status(), 1);

    // The phone (no balance at all: postpaid) scans the QR code.
    let (phone, uid) = app.phone("oB1", "17700000001", 0).await;
    let v = phone.scan(CODE).await;
    assert_eq!(v["result"], "success", "{v}");
    // Seen within one 2 s poll: the very next one.
    k.status_client().await;
    assert_eq!(k.online_status(), 2);
    assert_eq!(k.seen.str("unionId"), uid.to_string());
    assert_eq!(k.seen.str("charging"), "1.32");

    // C screen: stable while billing ticks (1 s units), cost = minutes × 1.32 exactly;
    // the kiosk polls (every 600 ms, its cadence) until three units have accrued.
    let mut last = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while last.1 < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "units accrued: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(k.client_status().await, 1);
        k.status_client().await;
        assert_eq!(k.online_status(), 2);
        let now = k.assert_cost_consistent();
        assert!(now >= last, "cost never goes back: {last:?} → {now:?}");
        last = now;
    }
    assert!(last.1 >= 3, "units accrued: {last:?}");

    // D: the user ends at the kiosk → orderId.
    let (st, o) = k.get("offline", &[("clientId", CLIENT)]).await;
    assert_eq!((st, o["data"].as_i64()), (200, Some(1)));
    let order = k.seen.str("orderId").to_string();
    assert!(!order.is_empty() && order.bytes().all(|b| b.is_ascii_alphanumeric()));
    // A retry of the same offline answers the same order.
    k.get("offline", &[("clientId", CLIENT)]).await;
    assert_eq!(k.seen.str("orderId"), order);

    // E: unpaid → onlineStatus 3, clientStatus 2, orderStatus 0.
    k.status_client().await;
    assert_eq!(k.online_status(), 3);
    let (cost, minutes) = k.assert_cost_consistent();
    assert!(minutes >= 3);
    assert_eq!(k.client_status().await, 2);
    let (st, _) = k.get("orderStatus", &[("orderId", &order)]).await;
    assert_eq!(st, 200);
    assert_eq!(k.seen.int("data"), 1);
    assert_eq!(k.seen.int("orderStatus"), 0);
    assert_eq!(parse_yuan(k.seen.str("cost")), Some(cost));
    assert_eq!(k.seen.str("clientId"), CLIENT);
    let (_, _, session_cost, billed_ms, _, _) = app.last_session(uid).await;
    assert_eq!(session_cost, cost);
    assert_eq!(
        cost,
        (billed_ms + 999) / 1000 * 132,
        "ceil(billed / unit) × price"
    );

    // The user is blocked until paid, on this device and any other.
    let v = phone.scan(CODE).await;
    assert_eq!(v["result"], -18, "{v}");

    // The phone lists and pays its order.
    let v = orders(&phone).await;
    assert_eq!(v["result"]["total"], 1, "{v}");
    let item = &v["result"]["data"][0];
    assert_eq!(item["orderId"], order.as_str());
    assert_eq!(item["cost_money"], cost);
    assert_eq!(item["cost_time"], minutes);
    assert_eq!(item["paid"], false);
    assert_eq!(item["device_code"], CODE);
    let v = phone
        .post("/wechat/order/pay", json!({"orderId": order}))
        .await;
    assert_eq!(v["result"], "success", "{v}");

    // orderStatus 1 → the kiosk reboots; status_client back to 1, clientStatus 0.
    k.get("orderStatus", &[("orderId", &order)]).await;
    assert_eq!(k.seen.int("orderStatus"), 1);
    k.status_client().await;
    assert_eq!(k.online_status(), 1);
    assert_eq!(k.client_status().await, 0);

    // Paying again changes nothing; the ledger shows the payment and the charge.
    let v = phone
        .post("/wechat/order/pay", json!({"orderId": order}))
        .await;
    assert_eq!(v["result"], "success", "{v}");
    let u = app.db.user_by_id(uid).await.unwrap().unwrap();
    assert_eq!(
        (u.total_account, u.used_account, u.balance_account),
        (cost, cost, 0)
    );
    let ledger = app.db.ledger(uid).await.unwrap();
    let mut ids: Vec<_> = ledger.iter().map(|l| (l.id.clone(), l.amount)).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            (format!("order:{order}"), cost),
            (format!("order:{order}:debit"), -cost)
        ]
    );
    app.assert_invariants().await;

    // Unblocked: the next session starts.
    let v = phone.scan(CODE).await;
    assert_eq!(v["result"], "success", "{v}");
    k.status_client().await;
    assert_eq!(k.online_status(), 2);
}

/// Waits (bounded) until the kiosk's status_client shows `want`.
async fn wait_online(k: &mut Kiosk, want: i32, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        k.status_client().await;
        if k.online_status() == want || tokio::time::Instant::now() > deadline {
            assert_eq!(k.online_status(), want, "{:?}", k.seen.map);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ends_from_phone_heartbeat_and_operator_move_online_status_off_2() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&extra(dir.path(), 2)).await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let mut k = Kiosk::new(&app, CLIENT);
    let (phone, uid) = app.phone("oB2", "17700000002", 0).await;

    for how in ["phone", "heartbeat", "operator"] {
        assert_eq!(k.client_status().await, if how == "phone" { 1 } else { 0 });
        let v = phone.scan(CODE).await;
        assert_eq!(v["result"], "success", "{how}: {v}");
        wait_online(&mut k, 2, Duration::from_secs(2)).await;
        wait_until(
            "the second unit accrues",
            Duration::from_secs(10),
            async || {
                k.status_client().await;
                k.assert_cost_consistent().1 >= 2
            },
        )
        .await;
        // In session, the kiosk's heartbeat (then, for one case, silence), at its
        // cadence (the scenario).
        assert_eq!(k.client_status().await, 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        match how {
            "phone" => {
                k.client_status().await;
                let v = phone.get("/windows/offline").await;
                assert_eq!(v["result"]["status"], 1, "{v}");
            }
            // The kiosk goes silent (status_client is not a heartbeat; clientStatus is):
            // the session ends at its last sign of life within the 2 s timeout.
            "heartbeat" => {}
            _ => {
                let (st, v) = app
                    .ops_post(
                        &format!("/ops/devices/{CODE}/command"),
                        json!({"name": "lock"}),
                    )
                    .await;
                assert_eq!(st, 200, "{v}");
            }
        }
        wait_online(&mut k, 3, Duration::from_secs(5)).await;
        let (ended, reason, cost, _, _, _) = app.wait_ended(uid, Duration::from_secs(1)).await;
        assert!(ended);
        let want = match how {
            "phone" => "phone_offline",
            "heartbeat" => "heartbeat_timeout",
            _ => "operator",
        };
        assert_eq!(reason.as_deref(), Some(want));
        assert!(cost > 0);
        k.assert_cost_consistent();
        assert_eq!(parse_yuan(k.seen.str("cost")), Some(cost));
        // Pay, and the kiosk's E screen sees 1.
        let v = orders(&phone).await;
        let order = v["result"]["data"][0]["orderId"]
            .as_str()
            .unwrap()
            .to_string();
        let v = phone
            .post("/wechat/order/pay", json!({"orderId": order}))
            .await;
        assert_eq!(v["result"], "success");
        wait_online(&mut k, 1, Duration::from_secs(1)).await;
        if how == "operator" {
            let (st, _) = app
                .ops_post(
                    &format!("/ops/devices/{CODE}/command"),
                    json!({"name": "unlock"}),
                )
                .await;
            assert_eq!(st, 200);
        }
    }
    app.assert_invariants().await;
}

#[tokio::test]
async fn bad_input_gets_flat_objects_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&extra(dir.path(), 300)).await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let mut k = Kiosk::new(&app, CLIENT);
    k.client_status().await;
    let before = app.fingerprint().await;
    let b = app.base.clone();
    let h = k.http.clone();
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (h.get(format!("{b}/rest/status_client?clientId=999")), 200),
        (h.get(format!("{b}/rest/clientStatus?clientId=999")), 200),
        (h.get(format!("{b}/rest/offline?clientId=999")), 200),
        (h.get(format!("{b}/rest/offline?clientId={CLIENT}")), 200),
        (h.get(format!("{b}/rest/orderStatus?orderId=onope")), 200),
        (h.get(format!("{b}/rest/status_client")), 400),
        (h.get(format!("{b}/rest/status_client?clientId=")), 400),
        (h.get(format!("{b}/rest/status_client?clientId=abc")), 400),
        (h.get(format!("{b}/rest/status_client?clientId=-1")), 400),
        (
            h.get(format!("{b}/rest/status_client?clientId=1'%20OR%201=1")),
            400,
        ),
        (
            h.get(format!(
                "{b}/rest/status_client?clientId={}",
                "9".repeat(40)
            )),
            400,
        ),
        (h.get(format!("{b}/rest/clientStatus?clientStatus=1")), 400),
        (h.get(format!("{b}/rest/orderStatus")), 400),
        (h.get(format!("{b}/rest/orderStatus?orderId=../../x")), 400),
        (h.get(format!("{b}/rest/offline?clientId=%ZZ")), 400),
        (h.post(format!("{b}/rest/offline")).body("{not json"), 400),
        (
            h.post(format!("{b}/rest/offline"))
                .body(r#"{"clientId":[1]}"#),
            400,
        ),
        (
            h.post(format!("{b}/rest/offline")).body(vec![b'a'; 70_000]),
            400,
        ),
        (h.get(format!("{b}/rest/nope")), 404),
        (h.get(format!("{b}/rest/")), 404),
        (h.get(format!("{b}/rest/status_client/")), 404),
        (
            h.put(format!("{b}/rest/status_client?clientId={CLIENT}")),
            405,
        ),
        (h.delete(format!("{b}/rest/offline?clientId={CLIENT}")), 405),
    ];
    for (req, want) in cases {
        let dbg = format!("{req:?}");
        let (st, o) = k.send(req).await;
        assert_eq!(st, want, "{dbg}: {o:?}");
        assert_eq!(o.get("data"), Some(&json!(0)), "{dbg}: {o:?}");
        assert!(
            o.get("msg")
                .and_then(Value::as_str)
                .is_some_and(|m| !m.is_empty()),
            "{dbg}: {o:?}"
        );
        // The status_client shape keeps every key even when refused, and names no client
        // the kiosk would act on.
        if dbg.contains("status_client") && want != 200 {
            assert_eq!(o["clientId"], "");
            assert!(o.contains_key("onlineStatus"));
        }
    }
    // Form and JSON bodies are read like the query string.
    let (st, o) = k
        .send(
            h.post(format!("{b}/rest/status_client"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("clientId={CLIENT}")),
        )
        .await;
    assert_eq!((st, o["clientId"].as_str()), (200, Some(CLIENT)));
    let (st, o) = k
        .send(
            h.post(format!("{b}/rest/status_client"))
                .body(r#"{"clientId":370011}"#),
        )
        .await;
    assert_eq!((st, o["clientId"].as_str()), (200, Some(CLIENT)));
    assert_eq!(app.fingerprint().await, before);
    app.assert_invariants().await;
}

#[tokio::test]
async fn concurrent_payments_of_one_order_settle_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&extra(dir.path(), 300)).await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let mut k = Kiosk::new(&app, CLIENT);
    k.client_status().await;
    let (phone, uid) = app.phone("oB3", "17700000003", 0).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    wait_until(
        "the second unit accrues",
        Duration::from_secs(10),
        async || {
            k.status_client().await;
            k.assert_cost_consistent().1 >= 2
        },
    )
    .await;
    k.get("offline", &[("clientId", CLIENT)]).await;
    let order = k.seen.str("orderId").to_string();
    let o = app.db.order(&order).await.unwrap().unwrap();
    // Twenty phone taps and twenty notifications of one transaction at once.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (p, s, order, amount) = (
            Phone {
                base: phone.base.clone(),
                http: phone.http.clone(),
                jar: phone.jar.clone(),
            },
            app.state.clone(),
            order.clone(),
            o.amount,
        );
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let v = p.post("/wechat/order/pay", json!({"orderId": order})).await;
                assert_eq!(v["result"], "success", "{v}");
            } else {
                let r = kioskd::orders::settle_order(&s, &order, "wechatpay", "wx-tx-1", amount)
                    .await
                    .unwrap();
                assert!(
                    matches!(
                        r,
                        kioskd::store::OrderSettle::Paid { .. }
                            | kioskd::store::OrderSettle::AlreadyPaid { .. }
                            | kioskd::store::OrderSettle::AlreadyPaidOtherwise
                    ),
                    "{r:?}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let u = app.db.user_by_id(uid).await.unwrap().unwrap();
    assert_eq!((u.total_account, u.used_account), (o.amount, o.amount));
    assert_eq!(app.db.ledger(uid).await.unwrap().len(), 2);
    // A wrong amount or an unknown order changes nothing.
    let r = kioskd::orders::settle_order(&app.state, &order, "wechatpay", "wx-tx-2", 1)
        .await
        .unwrap();
    assert_ne!(r, kioskd::store::OrderSettle::Paid { user_id: uid });
    let r = kioskd::orders::settle_order(&app.state, "onope", "wechatpay", "wx-tx-3", 1)
        .await
        .unwrap();
    assert_eq!(r, kioskd::store::OrderSettle::UnknownOrder);
    // Another user's order is unknown to this phone.
    let (other, _) = app.phone("oB4", "17700000004", 0).await;
    let v = other
        .post("/wechat/order/pay", json!({"orderId": order}))
        .await;
    assert_eq!(v["result"], -19, "{v}");
    assert_eq!(orders(&other).await["result"]["total"], 0);
    app.assert_invariants().await;
}

#[tokio::test]
async fn one_fleet_serves_both_dialects() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&extra(dir.path(), 300)).await;
    let a_code = "11-22-33-44-55-66-77-86";
    app.add_device(a_code, 5).await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let mut k = Kiosk::new(&app, CLIENT);
    k.client_status().await;
    app.check(a_code).await;
    let (pa, ua) = app.phone("oA", "17700000005", 100).await;
    let (pb, _) = app.phone("oB", "17700000006", 0).await;
    assert_eq!(pa.scan(a_code).await["result"], "success");
    assert_eq!(pb.scan(CODE).await["result"], "success");
    k.status_client().await;
    assert_eq!(k.online_status(), 2);
    assert!(app.token(a_code).await.is_some());
    // A prepaid device on /rest/* (no client id) is unknown there; the dialect-B device
    // is a device like any other for operators.
    let (_, v) = app.ops_get("/ops/sessions").await;
    assert_eq!(
        v["total"].as_i64().or(v.as_array().map(|a| a.len() as i64)),
        Some(2),
        "{v}"
    );
    let v = pa.get("/windows/offline").await;
    assert_eq!(v["result"]["status"], 1);
    assert!(app.balance(ua).await < 100);
    app.assert_invariants().await;
}

#[tokio::test]
async fn media_head_get_range_conditional_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&extra(dir.path(), 300)).await;
    let http = reqwest::Client::new();
    let url = |n: &str| format!("{}/files/{n}", app.base);

    // Missing: 404 with an empty body (the kiosk would save any body as its picture).
    for n in [
        "background.png",
        "video.mp4",
        "%2E%2E%2FCargo.toml",
        ".x",
        "a%2Fb",
    ] {
        let r = http.get(url(n)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{n}");
        assert_eq!(r.bytes().await.unwrap().len(), 0, "{n}");
    }
    let r = http
        .get(format!("{}/files/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.bytes().await.unwrap().len(), 0);

    let png: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("background.png"), &png).unwrap();
    let video: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("video.mp4"), &video).unwrap();

    // HEAD: exact length, no body.
    let r = http.head(url("background.png")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "5000");
    assert_eq!(r.headers()["content-type"], "image/png");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let lm = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert!(r.bytes().await.unwrap().is_empty());

    // GET: the bytes.
    let r = http.get(url("background.png")).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "5000");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.bytes().await.unwrap().as_ref(), png.as_slice());

    // Conditional: 304 by ETag and by date.
    let r = http
        .get(url("background.png"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http
        .get(url("background.png"))
        .header("if-modified-since", &lm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Range on the video: 206 with the slice, suffix ranges, 416 beyond the end.
    let r = http
        .get(url("video.mp4"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/300000");
    assert_eq!(r.headers()["content-length"], "1000");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &video[1000..2000]);
    let r = http
        .get(url("video.mp4"))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &video[299_990..]);
    let r = http
        .get(url("video.mp4"))
        .header("range", "bytes=300000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */300000");
    let r = http.get(url("video.mp4")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 300_000);

    // Operators replace a file without a restart: new bytes, new ETag.
    let tmp = dir.path().join("background.png.new");
    std::fs::write(&tmp, b"new picture").unwrap();
    std::fs::rename(&tmp, dir.path().join("background.png")).unwrap();
    let r = http
        .get(url("background.png"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.headers()["content-length"], "11");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"new picture");
    // And removing it is a 404 again.
    std::fs::remove_file(dir.path().join("background.png")).unwrap();
    let r = http.head(url("background.png")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn dialect_b_devices_need_the_service_number() {
    let dir = tempfile::tempdir().unwrap();
    // Without a number, operators cannot register a dialect-B device...
    let app = spawn_app("").await;
    let (st, v) = app
        .ops_post(
            "/ops/devices",
            json!({"device_code": CODE, "client_id": CLIENT, "name": "B", "charge_mode": 1}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("service_number"),
        "{v}"
    );
    let mut k = Kiosk::new(&app, CLIENT);
    let (st, o) = k.get("serviceNum", &[]).await;
    assert_eq!((st, o["data"].as_i64()), (200, Some(0)));
    assert_eq!(k.seen.str("phone"), "");
    let tdb = app.stop().await;

    // ...and with dialect-B devices registered, kioskd refuses to start without one.
    let url = match &tdb {
        TestDb::Sqlite(d) => format!("sqlite://{}/kioskd.db", d.path().display()),
        TestDb::Postgres { admin, name } => {
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
            format!("{base}/{name}")
        }
    };
    let app = spawn_on(tdb, url.clone(), &extra(dir.path(), 300)).await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let tdb = app.stop().await;
    let cfg = config(&url, "");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = match kioskd::Application::build(cfg, listener).await {
        Ok(_) => panic!("started without a service number"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("rest.service_number"), "{err}");
    assert!(err.contains("KIOSKD_REST__SERVICE_NUMBER"), "{err}");
    drop(tdb);
}

#[tokio::test]
async fn a_dialect_b_kiosk_on_the_websocket_sees_the_same_session() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&format!(
        "{}[ws]\nallow_unsigned = true\n",
        extra(dir.path(), 300)
    ))
    .await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let url = format!(
        "{}/ws/kiosk?client_id={CLIENT}",
        app.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "hello", "data": {}}).to_string().into(),
    ))
    .await
    .unwrap();
    async fn until(
        ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
        kind: &str,
    ) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a frame within 5 s")
                .expect("open")
                .unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
        }
    }
    until(&mut ws, "snapshot").await;
    // The socket is the kiosk's heartbeat: the phone can start at once.
    let (phone, _) = app.phone("oW", "17700000009", 0).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    until(&mut ws, "session_started").await;
    let mut k = Kiosk::new(&app, CLIENT);
    k.status_client().await;
    assert_eq!(k.online_status(), 2);
    until(&mut ws, "billing").await;
    k.get("offline", &[("clientId", CLIENT)]).await;
    let ended = until(&mut ws, "session_ended").await;
    let cost = ended["data"]["cost"].as_i64().unwrap();
    assert!(cost > 0);
    k.status_client().await;
    assert_eq!(k.online_status(), 3);
    assert_eq!(parse_yuan(k.seen.str("cost")), Some(cost));
}

#[tokio::test]
async fn a_postpaid_session_survives_a_restart_and_bills_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(&extra(dir.path(), 300)).await;
    add_b_device(&app, CODE, CLIENT, 132).await;
    let mut k = Kiosk::new(&app, CLIENT);
    k.client_status().await;
    let (phone, uid) = app.phone("oR", "17700000010", 0).await;
    assert_eq!(phone.scan(CODE).await["result"], "success");
    let url = app.db_url.clone();
    wait_until(
        "the second unit accrues",
        Duration::from_secs(10),
        async || {
            k.status_client().await;
            k.assert_cost_consistent().1 >= 2
        },
    )
    .await;
    k.client_status().await;
    let down_at = app.now_ms();
    let tdb = app.stop().await;
    // Down for 1.5 s (the outage is the scenario: the restarted app's clock starts that
    // much later); the kiosk keeps polling once it is back.
    let clock = kioskd_actors::Clock::manual(down_at + 1500);
    let app = spawn_on_clocked(tdb, url, &extra(dir.path(), 300), clock).await;
    let mut k = Kiosk::new(&app, CLIENT);
    assert_eq!(k.client_status().await, 1);
    k.status_client().await;
    assert_eq!(k.online_status(), 2, "recovered and still running");
    let (cost, minutes) = k.assert_cost_consistent();
    assert!(minutes >= 3, "the outage is billed: {minutes}");
    k.get("offline", &[("clientId", CLIENT)]).await;
    let order = k.seen.str("orderId").to_string();
    let o = app.db.order(&order).await.unwrap().unwrap();
    assert!(o.amount >= cost);
    assert_eq!(o.amount, (o.billed_ms + 999) / 1000 * 132);
    assert!(!o.paid);
    let (ended, reason, ..) = app.last_session(uid).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("user_logout"));
    app.assert_invariants().await;
}
