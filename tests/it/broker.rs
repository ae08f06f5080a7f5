//! The Redis broker against a real Redis server (`KIOSKD_TEST_REDIS`, default
//! redis://127.0.0.1:6379): events published by one node reach a subscriber on another
//! connection, and the app forwards its coordinator events there.

use crate::common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kioskd::broker::RedisBroker;
use kioskd_actors::{DeviceStatus, Event};

fn redis_url() -> String {
    std::env::var("KIOSKD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn an_event_published_by_one_node_reaches_another() {
    let a = RedisBroker::connect(&redis_url(), "node-a")
        .await
        .expect("redis reachable");
    let b = RedisBroker::connect(&redis_url(), "node-b").await.unwrap();
    let mut sub = b.subscribe().await.unwrap();
    let e = Event::DeviceStatus {
        device_code: "11-22-33-44-55-66".into(),
        status: DeviceStatus::Lock,
    };
    // The subscription is live once the server counts it.
    let mut delivered = 0;
    for _ in 0..50 {
        delivered = a.publish(&e).await.unwrap();
        if delivered > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(delivered >= 1);
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let env = sub.next().await.expect("stream open");
            if env.node == "node-a" {
                return env;
            }
        }
    })
    .await
    .expect("delivered within 5 s");
    assert_eq!(got.event, e);
}

#[tokio::test]
async fn the_app_forwards_session_events_to_redis() {
    let watcher = RedisBroker::connect(&redis_url(), "watcher")
        .await
        .expect("redis reachable");
    let mut sub = watcher.subscribe().await.unwrap();
    let app = spawn_app(&format!("[redis]\nurl = \"{}\"\n", redis_url())).await;
    let code = "11-22-33-44-55-66-77-99";
    app.add_device(code, 5).await;
    let (phone, uid) = app.phone("oRedis", "17717461111", 100).await;
    app.check(code).await;
    assert_eq!(phone.scan(code).await["result"], "success");
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let started = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let env = sub.next().await.expect("stream open");
            if let Event::SessionStarted {
                device_code,
                user_id,
                ..
            } = &env.event
                && device_code == code
                && *user_id == uid
            {
                return env;
            }
        }
    })
    .await
    .expect("session_started reached redis");
    assert_ne!(started.node, "watcher");
    app.stop().await;
}

/// Two nodes on one database and one Redis: an operator watching `/ws/ops` on node B
/// sees a session that started on node A, once, and node A's own feed does not see its
/// events twice.
#[tokio::test]
async fn ops_feeds_see_sessions_of_other_nodes_once() {
    let redis = format!("[redis]\nurl = \"{}\"\n", redis_url());
    let (tdb, url) = TestDb::new().await;
    let a = spawn_on(tdb, url.clone(), &redis).await;
    let b = spawn_on(TestDb::Sqlite(tempfile::tempdir().unwrap()), url, &redis).await;
    let code = "11-22-33-44-55-66-77-98";
    a.add_device(code, 5).await;
    let connect = |app: &TestApp| {
        let u = format!(
            "{}/ws/ops?token={OPS}",
            app.base.replace("http://", "ws://")
        );
        async move { tokio_tungstenite::connect_async(u).await.unwrap().0 }
    };
    let mut on_b = connect(&b).await;
    let mut on_a = connect(&a).await;
    // Both feeds are subscribed once their snapshot arrived.
    for ws in [&mut on_a, &mut on_b] {
        let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(first.to_text().unwrap().contains("\"snapshot\""));
    }
    let (phone, uid) = a.phone("oCross", "17717462222", 100).await;
    a.check(code).await;
    assert_eq!(phone.scan(code).await["result"], "success");
    assert_eq!(
        count_started(&mut on_b, code, uid).await,
        1,
        "node B relays node A's event once"
    );
    assert_eq!(
        count_started(&mut on_a, code, uid).await,
        1,
        "node A does not echo its own event"
    );
    b.stop().await;
    a.stop().await;
}

/// Two deployments sharing one Redis under different `redis.namespace`s: an operator on
/// one never sees the other's sessions.
#[tokio::test]
async fn deployments_in_other_namespaces_do_not_see_each_others_events() {
    let layer = |ns: &str| format!("[redis]\nurl = \"{}\"\nnamespace = \"{ns}\"\n", redis_url());
    let tag = kioskd_actors::ids::new_token();
    let a = spawn_app(&layer(&format!("staging-{tag}"))).await;
    let b = spawn_app(&layer(&format!("prod-{tag}"))).await;
    let c = spawn_app(&layer(&format!("prod-{tag}"))).await;
    let code = "11-22-33-44-55-66-77-97";
    a.add_device(code, 5).await;
    let connect = |app: &TestApp| {
        let u = format!(
            "{}/ws/ops?token={OPS}",
            app.base.replace("http://", "ws://")
        );
        async move { tokio_tungstenite::connect_async(u).await.unwrap().0 }
    };
    let mut on_b = connect(&b).await;
    let first = tokio::time::timeout(Duration::from_secs(5), on_b.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.to_text().unwrap().contains("\"snapshot\""));
    let (phone, uid) = a.phone("oNsA", "17717463333", 100).await;
    a.check(code).await;
    assert_eq!(phone.scan(code).await["result"], "success");
    assert_eq!(
        count_started(&mut on_b, code, uid).await,
        0,
        "staging is not prod"
    );
    // Within one namespace the events still travel (c and b share "prod").
    c.add_device("11-22-33-44-55-66-77-96", 5).await;
    let (phone, uid) = c.phone("oNsC", "17717464444", 100).await;
    c.check("11-22-33-44-55-66-77-96").await;
    assert_eq!(
        phone.scan("11-22-33-44-55-66-77-96").await["result"],
        "success"
    );
    assert_eq!(
        count_started(&mut on_b, "11-22-33-44-55-66-77-96", uid).await,
        1
    );
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

/// `session_started` frames of `code` for `uid` arriving within 1.5 s.
async fn count_started(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    code: &str,
    uid: i64,
) -> usize {
    let mut n = 0;
    let end = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, ws.next()).await {
        if m.to_text().is_ok_and(|t| {
            // Other tests share the Redis channel: match the device too.
            t.contains("\"session_started\"")
                && t.contains(code)
                && t.contains(&format!("\"user_id\":{uid}"))
        }) {
            n += 1;
        }
    }
    n
}
