//! Postpaid sessions (SPEC §3, dialect B) through the same session actors as prepaid,
//! under paused tokio time against the in-memory store: cost accrues per started minute
//! after the free start with nothing debited, every end creates an order, and the user
//! is blocked until it is paid.

use std::sync::Arc;
use std::time::Duration;

use kioskd_actors::coordinator::{Coordinator, CoordinatorConfig};
use kioskd_actors::device::{OperatorCommand, StartRefusal};
use kioskd_actors::memstore::MemStore;
use kioskd_actors::ports::*;
use kioskd_actors::{Clock, EndReason, Events};

const T0: i64 = 1_700_000_000_000;
const CODE: &str = "11-22-33-44-55-66-77-88";

fn setup(price: i64) -> (Arc<MemStore>, Coordinator) {
    let store = Arc::new(MemStore::new());
    store.add_device(DeviceRecord {
        id: 1,
        code: CODE.into(),
        client_id: Some("370011".into()),
        name: "seat".into(),
        province: String::new(),
        city: String::new(),
        area: String::new(),
        location: String::new(),
        charge_mode: price,
        billing_mode: BillingMode::Postpaid,
        status: PersistedStatus::Free,
        maintainer: None,
        updating: false,
        last_seen_at: None,
    });
    let coord = Coordinator::new(
        store.clone(),
        Clock::starting_at(T0),
        CoordinatorConfig::default(),
        Events::default(),
    );
    (store, coord)
}

fn user(id: i64) -> UserRef {
    UserRef {
        id,
        openid: format!("o{id}"),
        balance: 0,
    }
}

async fn ms(n: u64) {
    tokio::time::sleep(Duration::from_millis(n)).await;
}

/// Keeps the kiosk alive (a `clientStatus` every 20 s) for `total_ms`.
async fn poll_for(coord: &Coordinator, total_ms: u64) {
    let mut left = total_ms;
    while left > 0 {
        let step = left.min(20_000);
        ms(step).await;
        left -= step;
        coord.heard(CODE).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn spec_vector_offline_at_185_seconds_is_four_minutes_528_fen() {
    let (store, coord) = setup(132);
    coord.heard(CODE).await.unwrap();
    // No balance at all: postpaid needs none.
    let s = coord.start_session(CODE, user(7)).await.unwrap().unwrap();
    poll_for(&coord, 185_000).await;
    let v = coord.user_session(7).await.unwrap().unwrap();
    assert_eq!(v.cost_money, 528, "live cost: ceil(185/60) x 132");
    let e = coord
        .end_by_token(&s.token, EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.cost, e.refund), (528, 0));
    let order = e.order_id.expect("postpaid end creates an order");
    assert_eq!(store.order(&order), Some((7, 528, false)));
    // Nothing moved on the wallet: no ledger rows, balance untouched.
    assert_eq!((store.balance(7), store.ledger_sum(7)), (0, 0));
    // Blocked until paid, on any device.
    let r = coord.start_session(CODE, user(7)).await.unwrap();
    assert_eq!(r.unwrap_err(), StartRefusal::UnpaidOrder);
    store.pay_order(&order);
    assert!(coord.start_session(CODE, user(7)).await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn long_sessions_cost_exactly_minutes_times_price() {
    // The seed's in-session example: 2457 whole minutes and 45 s at 1.32 yuan.
    for (price, secs) in [
        (132_i64, 2457 * 60 + 45),
        (1, 29),
        (7, 30),
        (99_999, 3 * 3600),
    ] {
        let (store, coord) = setup(price);
        coord.heard(CODE).await.unwrap();
        let s = coord.start_session(CODE, user(9)).await.unwrap().unwrap();
        poll_for(&coord, secs * 1000).await;
        let e = coord
            .end_by_token(&s.token, EndReason::UserLogout)
            .await
            .unwrap()
            .unwrap();
        let secs = secs as i64;
        let want = if secs < 30 {
            0
        } else {
            (secs + 59) / 60 * price
        };
        assert_eq!(e.cost, want, "price {price}, {secs} s");
        let (_, amount, paid) = store.order(&e.order_id.unwrap()).unwrap();
        assert_eq!(amount, want);
        // A free session's order is born paid: nothing blocks the user.
        assert_eq!(paid, want == 0);
        assert_eq!(store.balance(9), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_bills_to_the_last_sign_of_life() {
    let (store, coord) = setup(132);
    coord.heard(CODE).await.unwrap();
    let s = coord.start_session(CODE, user(7)).await.unwrap().unwrap();
    poll_for(&coord, 120_000).await;
    // Silent from t=120 s: ends at t=420 s, billed to 120 s (2 minutes).
    ms(301_000).await;
    for _ in 0..100 {
        if store.session_outcome(s.session_id).unwrap().0 {
            break;
        }
        ms(10).await;
    }
    let (ended, reason, cost) = store.session_outcome(s.session_id).unwrap();
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("heartbeat_timeout"));
    assert_eq!(cost, 264);
}

#[tokio::test(start_paused = true)]
async fn operator_lock_ends_a_postpaid_session_with_an_order() {
    let (store, coord) = setup(132);
    coord.heard(CODE).await.unwrap();
    coord.start_session(CODE, user(7)).await.unwrap().unwrap();
    poll_for(&coord, 61_000).await;
    let e = coord
        .operate(CODE, OperatorCommand::Lock)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.reason, EndReason::Operator);
    assert_eq!(store.order(&e.order_id.unwrap()), Some((7, 264, false)));
}

#[tokio::test(start_paused = true)]
async fn a_recovered_postpaid_session_catches_up_in_one_step_and_bills_the_outage() {
    let (store, coord) = setup(132);
    // Written before a restart: started 3 hours ago, kiosk heard just now.
    store.insert_running(SessionRecord {
        id: 5,
        token: "t5".into(),
        user_id: 7,
        openid: "o7".into(),
        device_id: 1,
        device_code: CODE.into(),
        charge_mode: 132,
        billing_mode: BillingMode::Postpaid,
        started_at: T0 - 3 * 3_600_000 - 1_000,
        reserved_units: 1,
        last_heard_at: T0,
    });
    let mut events = coord.events().subscribe();
    assert_eq!(coord.recover().await.unwrap(), 1);
    coord.heard(CODE).await.unwrap();
    let v = coord.user_session(7).await.unwrap().unwrap();
    assert_eq!(v.cost_money, 181 * 132, "3 h 1 s: 181 minutes begun");
    let mut billing = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, kioskd_actors::Event::Billing { .. }) {
            billing += 1;
        }
    }
    assert!(billing <= 2, "{billing} billing events for one catch-up");
    let e = coord
        .end_by_token("t5", EndReason::UserLogout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.cost, 181 * 132);
    assert_eq!(
        store.order(&e.order_id.unwrap()),
        Some((7, 181 * 132, false))
    );
}
