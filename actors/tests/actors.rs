//! The actors under paused tokio time against the in-memory store: the worked examples
//! of SPEC §3 driven by timers, not sleeps.

use std::sync::Arc;
use std::time::Duration;

use kioskd_actors::coordinator::{Coordinator, CoordinatorConfig};
use kioskd_actors::device::StartRefusal;
use kioskd_actors::memstore::MemStore;
use kioskd_actors::ports::*;
use kioskd_actors::{Clock, EndReason, Event, Events};

const T0: i64 = 1_700_000_000_000;
const CODE: &str = "11-22-33-44-55-66-77-86";

fn device(id: i64, code: &str) -> DeviceRecord {
    kioskd_actors::memstore::device_record(id, code)
}

fn setup() -> (Arc<MemStore>, Coordinator) {
    let store = Arc::new(MemStore::new());
    store.add_device(device(1, CODE));
    store.add_device(device(2, "AA-BB-CC-DD-EE-FF"));
    let coord = Coordinator::new(
        store.clone(),
        Clock::starting_at(T0),
        CoordinatorConfig::default(),
        Events::default(),
    );
    (store, coord)
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

/// `code`'s device with a kiosk connection (id `conn_id`) attached, its snapshot taken.
async fn attached(
    coord: &Coordinator,
    code: &str,
    conn_id: u64,
) -> (
    kameo::actor::ActorRef<kioskd_actors::device::DeviceActor>,
    kioskd_actors::stream::ConnFrames,
) {
    use kioskd_actors::device::Attach;
    use kioskd_actors::stream::{Next, connection};
    let d = coord.device(code).await.unwrap();
    let (conn, frames) = connection(conn_id, 512);
    d.ask(Attach {
        conn,
        resume_from: None,
        epoch: None,
    })
    .await
    .unwrap();
    assert!(
        matches!(frames.try_next(), Some(Next::Frame(_))),
        "the snapshot"
    );
    (d, frames)
}

async fn wait_ended(store: &MemStore, id: i64) -> (bool, Option<String>, i64) {
    for _ in 0..100 {
        let o = store.session_outcome(id).unwrap();
        if o.0 {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.session_outcome(id).unwrap()
}

#[tokio::test(start_paused = true)]
async fn balance_12_reserves_two_minutes_then_exhausts_and_locks() {
    let (store, coord) = setup();
    store.credit(7, 12);
    let mut events = coord.events().subscribe();
    coord.check(CODE).await.unwrap();
    let started = coord
        .start_session(CODE, user(7, &store))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.balance(7), 7);
    secs(61).await;
    assert_eq!(store.balance(7), 2);
    // The kiosk keeps polling: the session stays alive until the balance is out.
    let token = started.token.clone();
    assert!(coord.keepalive(&token, CODE).await.unwrap().is_some());
    secs(60).await;
    let (ended, reason, cost) = wait_ended(&store, started.session_id).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("balance_exhausted"));
    assert_eq!(cost, 10);
    assert_eq!(store.balance(7), 2);
    assert_eq!(store.ledger_sum(7), 2);
    // The kiosk learns it from its next check (lock), then the device is free again.
    let c = coord.check(CODE).await.unwrap();
    assert_eq!(c.status, kioskd_actors::DeviceStatus::Lock);
    assert_eq!(c.token, None);
    assert_eq!(
        coord.check(CODE).await.unwrap().status,
        kioskd_actors::DeviceStatus::Free
    );
    assert!(coord.keepalive(&token, CODE).await.unwrap().is_none());
    let mut saw_low = false;
    while let Ok(e) = events.try_recv() {
        if let Event::BalanceLow { units_left, .. } = e {
            saw_low = true;
            assert_eq!(units_left, 1);
        }
    }
    assert!(saw_low, "a low-balance warning went out");
}

#[tokio::test(start_paused = true)]
async fn leaving_within_the_free_start_costs_nothing() {
    let (store, coord) = setup();
    store.credit(7, 100);
    coord.check(CODE).await.unwrap();
    let s = coord
        .start_session(CODE, user(7, &store))
        .await
        .unwrap()
        .unwrap();
    secs(20).await;
    let e = coord
        .end_by_token(&s.token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.cost, e.refund, e.balance), (0, 5, 100));
    assert_eq!(store.ledger_sum(7), 100);
    // A repeated logout is not an error: the token is simply gone.
    assert!(
        coord
            .end_by_token(&s.token, EndReason::UserLogout)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn leaving_at_150_seconds_costs_three_minutes() {
    let (store, coord) = setup();
    store.credit(7, 100);
    coord.check(CODE).await.unwrap();
    let s = coord
        .start_session(CODE, user(7, &store))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..5 {
        secs(30).await;
        coord.keepalive(&s.token, CODE).await.unwrap().unwrap();
    }
    let e = coord
        .end_for_user(7, EndReason::PhoneOffline)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.cost, e.balance), (15, 85));
    assert_eq!(store.ledger_sum(7), 85);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_bills_to_last_heartbeat() {
    let (store, coord) = setup();
    store.credit(7, 100);
    coord.check(CODE).await.unwrap();
    let s = coord
        .start_session(CODE, user(7, &store))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..13 {
        secs(10).await;
        coord.keepalive(&s.token, CODE).await.unwrap().unwrap();
    }
    // Last heard at t=130. Reservations continue until t=430.
    secs(289).await; // t=419
    assert_eq!(store.balance(7), 100 - 7 * 5);
    secs(2).await; // t=421: unit 8 reserved at t=420
    assert_eq!(store.balance(7), 100 - 8 * 5);
    secs(10).await; // t=431
    let (ended, reason, cost) = wait_ended(&store, s.session_id).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("heartbeat_timeout"));
    assert_eq!(cost, 15);
    assert_eq!(store.balance(7), 85);
    assert_eq!(store.ledger_sum(7), 85);
}

#[tokio::test(start_paused = true)]
async fn recovered_session_whose_kiosk_is_silent_ends_at_last_heard() {
    let store = Arc::new(MemStore::new());
    store.add_device(device(1, CODE));
    store.credit(7, 100);
    // Before the crash: started at T0, units 1 and 2 debited, last heard at t=65.
    store.insert_ledger("1:1", 7, -5);
    store.insert_ledger("1:2", 7, -5);
    store.insert_running(SessionRecord {
        id: 1,
        token: "t".into(),
        user_id: 7,
        openid: "o7".into(),
        device_id: 1,
        device_code: CODE.into(),
        charge_mode: 5,
        billing_mode: BillingMode::Prepaid,
        started_at: T0,
        reserved_units: 2,
        last_heard_at: T0 + 65_000,
    });
    // Restarted at t=100.
    let coord = Coordinator::new(
        store.clone(),
        Clock::starting_at(T0 + 100_000),
        CoordinatorConfig::default(),
        Events::default(),
    );
    assert_eq!(coord.recover().await.unwrap(), 1);
    secs(21).await; // t=121: unit 3 reserved as usual
    assert_eq!(store.balance(7), 85);
    secs(250).await; // t=371 > 65 + 300
    let (ended, reason, cost) = wait_ended(&store, 1).await;
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("heartbeat_timeout"));
    assert_eq!(cost, 10);
    assert_eq!(store.balance(7), 90);
    assert_eq!(store.ledger_sum(7), 90);
}

#[tokio::test(start_paused = true)]
async fn recovered_session_heard_again_continues_and_bills_the_outage() {
    let store = Arc::new(MemStore::new());
    store.add_device(device(1, CODE));
    store.credit(7, 100);
    store.insert_ledger("1:1", 7, -5);
    store.insert_ledger("1:2", 7, -5);
    store.insert_running(SessionRecord {
        id: 1,
        token: "t".into(),
        user_id: 7,
        openid: "o7".into(),
        device_id: 1,
        device_code: CODE.into(),
        charge_mode: 5,
        billing_mode: BillingMode::Prepaid,
        started_at: T0,
        reserved_units: 2,
        last_heard_at: T0 + 65_000,
    });
    let coord = Coordinator::new(
        store.clone(),
        Clock::starting_at(T0 + 100_000),
        CoordinatorConfig::default(),
        Events::default(),
    );
    coord.recover().await.unwrap();
    secs(5).await; // t=105: the kiosk is back
    let v = coord.keepalive("t", CODE).await.unwrap().unwrap();
    assert_eq!(v.cost_time, 105);
    secs(45).await; // t=150
    let e = coord
        .end_by_token("t", EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.cost, e.balance), (15, 85));
}

#[tokio::test(start_paused = true)]
async fn one_user_two_devices_and_two_users_one_device() {
    let (store, coord) = setup();
    store.credit(7, 100);
    store.credit(8, 100);
    coord.check(CODE).await.unwrap();
    coord.check("AA-BB-CC-DD-EE-FF").await.unwrap();
    let (a, b) = tokio::join!(
        coord.start_session(CODE, user(7, &store)),
        coord.start_session("AA-BB-CC-DD-EE-FF", user(7, &store)),
    );
    let oks = [&a, &b]
        .iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(oks, 1, "{a:?} {b:?}");
    let other = if a.as_ref().unwrap().is_ok() { b } else { a };
    assert_eq!(other.unwrap().unwrap_err(), StartRefusal::UserBusyElsewhere);
    let busy_code = coord.sessions().await[0].device_code.clone();
    let r = coord
        .start_session(&busy_code, user(8, &store))
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), StartRefusal::DeviceTaken);
    assert_eq!(store.balance(7), 95);
    assert_eq!(store.balance(8), 100);
}

#[tokio::test(start_paused = true)]
async fn offline_device_refuses_sessions() {
    let (store, coord) = setup();
    store.credit(7, 100);
    let r = coord.start_session(CODE, user(7, &store)).await.unwrap();
    assert_eq!(r.unwrap_err(), StartRefusal::DeviceUnavailable);
    coord.check(CODE).await.unwrap();
    secs(301).await;
    let r = coord.start_session(CODE, user(7, &store)).await.unwrap();
    assert_eq!(r.unwrap_err(), StartRefusal::DeviceUnavailable);
}

/// A broadcast made while a device's mailbox is full (its actor busy with a slow storage
/// call) still reaches its connected kiosk once the actor catches up, not only at the
/// kiosk's next reconnect.
#[tokio::test]
async fn a_broadcast_reaches_a_connected_kiosk_whose_device_was_busy() {
    use kioskd_actors::device::FromKiosk;
    use kioskd_actors::stream::Next;
    use kioskd_protocol::windows::UpdateState;
    use kioskd_protocol::ws::{ClientMessage, GameStateMsg, ServerEvent};

    let (store, coord) = setup();
    let (d, frames) = attached(&coord, CODE, 1).await;
    // Busy: a game-state write waiting on storage, then a mailbox filled with heartbeats.
    let hold = store.hold_device_writes();
    let busy = FromKiosk {
        conn: 1,
        msg: Some(ClientMessage::GameState(GameStateMsg {
            update_state: UpdateState::Ing,
        })),
    };
    d.tell(busy).send().await.unwrap();
    let mut queued = 0;
    while d.tell(FromKiosk { conn: 1, msg: None }).try_send().is_ok() {
        queued += 1;
        assert!(queued < 10_000, "the mailbox never filled");
    }
    assert_eq!(
        coord
            .broadcast("message", Some("closing at 22:00"))
            .await
            .unwrap(),
        1
    );
    drop(hold);
    let command = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match frames.next().await {
                Next::Frame(f) => {
                    if let ServerEvent::Command(c) = &f.to_server_frame().event {
                        return c.clone();
                    }
                }
                Next::Kicked(code) => panic!("closed with {code}"),
            }
        }
    })
    .await
    .expect("the broadcast arrives once the device catches up");
    assert_eq!(command.text.as_deref(), Some("closing at 22:00"));
}

/// A broadcast's connections read again once every copy it queued has been taken; a
/// copy left in a slow connection's queue holds the others up only for
/// `FAN_OUT_PATIENCE`.
#[tokio::test(start_paused = true)]
async fn a_fan_out_ends_when_its_copies_are_taken_or_its_patience_is_over() {
    use kioskd_actors::stream::{FAN_OUT_PATIENCE, Frame, Next};

    let (_store, coord) = setup();
    let mut queues = Vec::new();
    for (id, code) in [(1, CODE), (2, "AA-BB-CC-DD-EE-FF")] {
        queues.push(attached(&coord, code, id).await.1);
    }
    let copy = |frames: &kioskd_actors::stream::ConnFrames| match frames.try_next() {
        Some(Next::Frame(f @ Frame::Copy(_))) => f,
        other => panic!("not a copy: {other:?}"),
    };
    // Both copies taken: the fan-out is over.
    assert_eq!(coord.broadcast("message", Some("one")).await.unwrap(), 2);
    let first = copy(&queues[0]);
    assert!(
        first.fanning_out().is_some(),
        "device 2's copy is still queued"
    );
    let second = copy(&queues[1]);
    assert!(first.fanning_out().is_none() && second.fanning_out().is_none());
    // Device 2's copy is left in its queue: device 1's connection waits for the
    // patience, no longer.
    assert_eq!(coord.broadcast("message", Some("two")).await.unwrap(), 2);
    let first = copy(&queues[0]);
    assert!(first.fanning_out().is_some());
    tokio::time::sleep(FAN_OUT_PATIENCE - Duration::from_millis(10)).await;
    assert!(first.fanning_out().is_some(), "not before its time");
    let wait = first.fanning_out().unwrap().clone().until_fanned_out();
    tokio::time::timeout(Duration::from_millis(20), wait)
        .await
        .expect("open once its patience is over");
    assert!(first.fanning_out().is_none());
}

/// A kiosk's signs of life and acks are taken on its connection's task, not by its
/// device's actor: they land while the actor is busy (a slow storage call, a full
/// mailbox), the acknowledged copy leaves storage's pending list, and the actor then
/// reports the kiosk heard at that time. An ack for another epoch is answered.
#[tokio::test]
async fn a_kiosks_acks_and_signs_of_life_are_taken_while_its_device_is_busy() {
    use kioskd_actors::device::{Attach, FromKiosk, Info};
    use kioskd_actors::stream::{Next, connection};
    use kioskd_protocol::windows::UpdateState;
    use kioskd_protocol::ws::{Ack, ClientMessage, GameStateMsg, ServerEvent};

    let store = Arc::new(MemStore::new());
    store.add_device(device(1, CODE));
    let clock = Clock::manual(T0);
    let coord = Coordinator::new(
        store.clone(),
        clock.clone(),
        CoordinatorConfig::default(),
        Events::default(),
    );
    let link = coord.kiosk_link(CODE).await.unwrap();
    let (conn, frames) = connection(1, 512);
    link.actor()
        .ask(Attach {
            conn,
            resume_from: None,
            epoch: None,
        })
        .await
        .unwrap();
    let next = || async {
        match tokio::time::timeout(Duration::from_secs(10), frames.next()).await {
            Ok(Next::Frame(f)) => f.to_server_frame(),
            Ok(Next::Kicked(code)) => panic!("closed with {code}"),
            Err(_) => panic!("no frame"),
        }
    };
    assert!(matches!(next().await.event, ServerEvent::Snapshot(_)));
    assert_eq!(coord.broadcast("message", Some("hi")).await.unwrap(), 1);
    let copy = next().await;
    assert!(matches!(copy.event, ServerEvent::Command(_)));
    let seq = copy.seq.expect("a command is sequenced");
    assert_eq!(store.pending_commands(1, 0).await.unwrap().len(), 1);

    // Busy: a game-state write waiting on storage, then a mailbox full of messages.
    let hold = store.hold_device_writes();
    let busy = FromKiosk {
        conn: 1,
        msg: Some(ClientMessage::GameState(GameStateMsg {
            update_state: UpdateState::Ing,
        })),
    };
    link.actor().tell(busy).send().await.unwrap();
    // The actor has heard the game state and waits on storage before the clock moves:
    // taken later, its sign of life would be later than the ones below (FLAKY once).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.device_writes_waiting() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the game-state write never started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // (Filled with what does not hear the kiosk itself.)
    let mut queued = 0;
    while link.actor().tell(Info).try_send().is_ok() {
        queued += 1;
        assert!(queued < 10_000, "the mailbox never filled");
    }

    // Later than anything the actor heard itself (it heard the game state before).
    clock.advance(Duration::from_secs(5));
    let before = clock.now_ms();
    assert!(
        link.from_kiosk(1, None).is_none(),
        "a sign of life is taken"
    );
    let ack = |epoch: Option<&str>| {
        Some(ClientMessage::Ack(Ack {
            seq,
            epoch: epoch.map(str::to_string),
        }))
    };
    assert!(link.from_kiosk(1, ack(Some("elsewhere"))).is_none());
    match next().await.event {
        ServerEvent::Error(e) => assert_eq!(e.code, "stale_epoch"),
        other => panic!("expected stale_epoch, got {other:?}"),
    }
    assert!(link.from_kiosk(1, ack(None)).is_none(), "the ack is taken");
    // (Each of these was a sign of life too: the last of them is the kiosk's last.)
    let after = clock.now_ms();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store.pending_commands(1, 0).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack never reached storage"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Messages for the actor are still the actor's.
    assert!(
        link.from_kiosk(1, Some(ClientMessage::Logout)).is_some(),
        "a logout goes to the actor"
    );

    drop(hold);
    let view = coord.device_info(CODE).await.unwrap();
    let heard = view.last_heard.expect("heard");
    assert!(
        (before..=after).contains(&heard),
        "heard at {heard}, taken between {before} and {after}"
    );
    assert!(view.online);
}

/// While a session runs, every sign of life goes through the device's actor (which
/// keeps the session informed); once it ends, they are taken on the connection again.
#[tokio::test(start_paused = true)]
async fn a_kiosks_signs_of_life_go_through_its_device_while_a_session_runs() {
    let (store, coord) = setup();
    store.credit(7, 600);
    let link = coord.kiosk_link(CODE).await.unwrap();
    assert!(link.from_kiosk(1, None).is_none());
    let started = coord
        .start_session(CODE, user(7, &store))
        .await
        .unwrap()
        .unwrap();
    assert!(
        link.from_kiosk(1, None).is_some(),
        "the session hears of the kiosk through the actor"
    );
    coord
        .end_by_token(&started.token, EndReason::UserLogout)
        .await
        .unwrap();
    let mut waited = 0;
    while link.from_kiosk(1, None).is_some() {
        waited += 1;
        assert!(waited < 1_000, "still in a session after it ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
