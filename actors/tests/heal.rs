//! Actors that heal (issue 14): a panic in a device or session handler, or a device actor
//! that dies outright, leaves no stale directory entry; the device and the user are
//! usable again at once, the running session bills on from the database, and the ledger
//! is exact. Passivation: an idle device actor stops and comes back from storage on its
//! next request. Paused tokio time, in-memory store; the panics come from a test-only
//! hook (`test-hooks` feature).

use std::sync::Arc;
use std::time::Duration;

use kioskd_actors::coordinator::{Coordinator, CoordinatorConfig};
use kioskd_actors::memstore::MemStore;
use kioskd_actors::ports::*;
use kioskd_actors::{Clock, DeviceStatus, EndReason, Events};

const T0: i64 = 1_700_000_000_000;
const CODE: &str = "11-22-33-44-55-66-77-86";

fn setup_with(cfg: CoordinatorConfig) -> (Arc<MemStore>, Coordinator) {
    let store = Arc::new(MemStore::new());
    store.add_device(kioskd_actors::memstore::device_record(1, CODE));
    let coord = Coordinator::new(
        store.clone(),
        Clock::starting_at(T0),
        cfg,
        Events::default(),
    );
    (store, coord)
}

fn setup() -> (Arc<MemStore>, Coordinator) {
    setup_with(CoordinatorConfig::default())
}

fn user(id: i64, store: &MemStore) -> UserRef {
    UserRef {
        id,
        openid: format!("o{id}"),
        balance: store.balance(id),
    }
}

async fn secs(s: u64) {
    tokio::time::sleep(Duration::from_secs(s)).await;
}

/// Polls `f` (under paused time) until it holds, for at most ten simulated seconds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s: {what}");
}

/// A session started at T0 with 100 fen, kept alive every 30 s until `crash_at` seconds.
async fn running(store: &MemStore, coord: &Coordinator) -> String {
    store.credit(7, 100);
    coord.check(CODE).await.unwrap();
    let s = coord
        .start_session(CODE, user(7, store))
        .await
        .unwrap()
        .unwrap();
    secs(30).await;
    coord.keepalive(&s.token, CODE).await.unwrap().unwrap();
    secs(10).await;
    coord.keepalive(&s.token, CODE).await.unwrap().unwrap();
    s.token
}

/// From 40 s to 160 s with keepalives every 30 s, then a logout: units begun at 30, 90
/// and 150 s (after the free start) cost 15 fen, each debited once.
async fn finish_and_check_ledger(store: &MemStore, coord: &Coordinator, token: &str) {
    finish_costing(store, coord, token, 15).await
}

/// Four keepalives 30 s apart, then a logout costing `cost`; the ledger is exact.
async fn finish_costing(store: &MemStore, coord: &Coordinator, token: &str, cost: i64) {
    for _ in 0..4 {
        secs(30).await;
        assert!(
            coord.keepalive(token, CODE).await.unwrap().is_some(),
            "the session runs on"
        );
    }
    let ended = coord
        .end_by_token(token, EndReason::UserLogout)
        .await
        .unwrap()
        .expect("the session was running");
    assert_eq!(ended.cost, cost);
    assert_eq!(store.balance(7), 100 - cost);
    assert_eq!(
        store.ledger_sum(7),
        100 - cost,
        "the ledger holds each unit once"
    );
    assert_eq!(coord.check(CODE).await.unwrap().status, DeviceStatus::Free);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_session_handler_restarts_it_from_storage_in_place() {
    let (store, coord) = setup();
    let token = running(&store, &coord).await;
    let before = coord.actor_ids(CODE, &token);
    let view = coord.user_session(7).await.unwrap().unwrap();
    assert!(coord.crash_session(&token).await);
    // Usable again at once: the same session (same actor, same address), its state from
    // the database (the hook zeroed the actor's meter and balance before panicking).
    let again = coord
        .keepalive(&token, CODE)
        .await
        .unwrap()
        .expect("running");
    assert_eq!(again.id, view.id);
    assert_eq!(again.reserved, view.reserved);
    assert_eq!(again.balance, view.balance);
    assert_eq!(again.paid_until, view.paid_until);
    assert_eq!(coord.actor_ids(CODE, &token), before);
    assert_eq!(coord.user_session(7).await.unwrap().unwrap().id, view.id);
    let c = coord.check(CODE).await.unwrap();
    assert_eq!(
        (c.status, c.token.as_deref()),
        (DeviceStatus::Busy, Some(token.as_str()))
    );
    finish_and_check_ledger(&store, &coord, &token).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_device_handler_restarts_it_from_storage_in_place() {
    let (store, coord) = setup();
    let token = running(&store, &coord).await;
    let before = coord.actor_ids(CODE, &token);
    // The hook drops the device's link to its session before panicking.
    assert!(coord.crash_device(CODE).await);
    let c = coord.check(CODE).await.unwrap();
    assert_eq!(
        (c.status, c.token.as_deref()),
        (DeviceStatus::Busy, Some(token.as_str())),
        "the device knows its running session again"
    );
    assert_eq!(
        coord.actor_ids(CODE, &token),
        before,
        "restarted in place: no second session actor"
    );
    assert_eq!(coord.actor_stats().sessions.actors, 1);
    // Another user is still kept away; the user is not "playing elsewhere" on it.
    store.credit(8, 100);
    assert_eq!(
        coord.start_session(CODE, user(8, &store)).await.unwrap(),
        Err(kioskd_actors::device::StartRefusal::DeviceTaken)
    );
    finish_and_check_ledger(&store, &coord, &token).await;
}

#[tokio::test(start_paused = true)]
async fn a_device_actor_that_dies_is_replaced_from_storage_with_its_session() {
    let (store, coord) = setup();
    let token = running(&store, &coord).await;
    let (dev_before, sess_before) = coord.actor_ids(CODE, &token);
    // Killed outright: no restart in place. Its linked session actor stops too, and a new
    // device actor picks the session up from the database — at once, or on this request.
    assert!(coord.kill_device(CODE).await);
    let c = coord.check(CODE).await.unwrap();
    assert_eq!(
        (c.status, c.token.as_deref()),
        (DeviceStatus::Busy, Some(token.as_str()))
    );
    assert!(coord.keepalive(&token, CODE).await.unwrap().is_some());
    let (dev_after, sess_after) = coord.actor_ids(CODE, &token);
    assert!(
        dev_after.is_some() && dev_after != dev_before,
        "a new device actor"
    );
    assert!(
        sess_after.is_some() && sess_after != sess_before,
        "a new session actor"
    );
    eventually("one device and one session actor", || {
        let st = coord.actor_stats();
        (st.devices.actors, st.sessions.actors) == (1, 1)
    })
    .await;
    finish_and_check_ledger(&store, &coord, &token).await;
}

#[tokio::test(start_paused = true)]
async fn a_device_that_dies_holding_a_session_is_revived_without_a_request() {
    let (store, coord) = setup();
    let token = running(&store, &coord).await;
    assert!(coord.kill_device(CODE).await);
    // Nobody asks: the session still bills (a new actor took it over at once).
    eventually("a new device actor with the session", || {
        let (d, s) = coord.actor_ids(CODE, &token);
        d.is_some() && s.is_some()
    })
    .await;
    let bal = store.balance(7);
    secs(60).await;
    assert_eq!(store.balance(7), bal - 5, "the next unit was debited");
    // Ends at 220 s: units begun at 30, 90, 150 and 210 s.
    finish_costing(&store, &coord, &token, 20).await;
}

#[tokio::test(start_paused = true)]
async fn a_session_actor_that_keeps_panicking_is_restarted_by_its_device() {
    let (store, coord) = setup();
    let token = running(&store, &coord).await;
    let (_, first) = coord.actor_ids(CODE, &token);
    let view = coord.user_session(7).await.unwrap().unwrap();
    // Three restarts in place are allowed per minute; the fourth panic stops the actor,
    // and its device (linked to it) starts a new one from storage.
    for _ in 0..4 {
        assert!(coord.crash_session(&token).await);
        tokio::task::yield_now().await;
    }
    eventually("a new session actor", || {
        let (_, s) = coord.actor_ids(CODE, &token);
        s.is_some() && s != first
    })
    .await;
    assert!(coord.keepalive(&token, CODE).await.unwrap().is_some());
    let again = coord.user_session(7).await.unwrap().unwrap();
    assert_eq!(
        (again.id, again.reserved, again.balance, again.paid_until),
        (view.id, view.reserved, view.balance, view.paid_until)
    );
    eventually("one session actor", || {
        coord.actor_stats().sessions.actors == 1
    })
    .await;
    finish_and_check_ledger(&store, &coord, &token).await;
}

#[tokio::test(start_paused = true)]
async fn a_device_actor_past_its_restart_limit_leaves_no_stale_entry() {
    let (store, coord) = setup();
    coord.check(CODE).await.unwrap();
    let (first, _) = coord.actor_ids(CODE, "");
    for _ in 0..4 {
        assert!(coord.crash_device(CODE).await);
        tokio::task::yield_now().await;
    }
    eventually("the dead actor's entry is gone", || {
        coord.actor_stats().devices.actors == 0
    })
    .await;
    // The next request activates a new actor from storage, and it works.
    store.credit(7, 100);
    coord.check(CODE).await.unwrap();
    let (second, _) = coord.actor_ids(CODE, "");
    assert!(second.is_some() && second != first);
    let s = coord
        .start_session(CODE, user(7, &store))
        .await
        .unwrap()
        .expect("started");
    let e = coord
        .end_by_token(&s.token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.cost, e.balance), (0, 100));
    assert_eq!(store.ledger_sum(7), 100);
}

#[tokio::test(start_paused = true)]
async fn an_idle_device_actor_stops_and_comes_back_from_storage() {
    let cfg = CoordinatorConfig {
        idle: Some(Duration::from_secs(300)),
        ..CoordinatorConfig::default()
    };
    let (store, coord) = setup_with(cfg);
    store.add_device(kioskd_actors::memstore::device_record(
        2,
        "AA-BB-CC-DD-EE-FF",
    ));
    coord.check(CODE).await.unwrap();
    coord.check("AA-BB-CC-DD-EE-FF").await.unwrap();
    // An operator puts CODE into maintenance (stored), then nothing uses it.
    coord
        .operate(CODE, kioskd_actors::device::OperatorCommand::Maintain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(coord.actor_stats().devices.actors, 2);
    // The other kiosk keeps polling: its actor stays.
    for _ in 0..12 {
        secs(30).await;
        coord.check("AA-BB-CC-DD-EE-FF").await.unwrap();
    }
    eventually("the idle actor stopped", || {
        coord.actor_stats().devices.actors == 1
    })
    .await;
    let (gone, _) = coord.actor_ids(CODE, "");
    assert_eq!(gone, None);
    // The next request activates it again from storage, transparently.
    let v = coord.device_info(CODE).await.unwrap();
    assert_eq!(v.status, DeviceStatus::Maintain);
    assert_eq!(coord.actor_stats().devices.actors, 2);
}

#[tokio::test(start_paused = true)]
async fn a_device_with_a_session_or_a_pending_command_is_not_passivated() {
    let cfg = CoordinatorConfig {
        idle: Some(Duration::from_secs(60)),
        heartbeat_timeout_ms: 3_600_000,
        ..CoordinatorConfig::default()
    };
    let (store, coord) = setup_with(cfg);
    store.add_device(kioskd_actors::memstore::device_record(
        2,
        "AA-BB-CC-DD-EE-FF",
    ));
    store.credit(7, 1000);
    coord.check(CODE).await.unwrap();
    let s = coord
        .start_session(CODE, user(7, &store))
        .await
        .unwrap()
        .unwrap();
    coord
        .ask_device(
            "AA-BB-CC-DD-EE-FF",
            kioskd_actors::device::SendCommand {
                name: "message".into(),
                text: Some("hi".into()),
            },
        )
        .await
        .unwrap()
        .unwrap();
    secs(600).await;
    assert_eq!(coord.actor_stats().devices.actors, 2);
    let (d, _) = coord.actor_ids(CODE, &s.token);
    assert!(d.is_some());
    let ended = coord
        .end_by_token(&s.token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.ledger_sum(7), 1000 - ended.cost);
}
