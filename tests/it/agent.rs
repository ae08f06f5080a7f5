//! The reference kiosk agent: its screens against the real server, commands acknowledged,
//! and the lock at `paid_until` when the server is gone (under paused time).

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kioskd::agent::{Agent, AgentConfig, Screen, run};
use kioskd_actors::Clock;
use kioskd_protocol::ws::{ServerEvent, ServerFrame, SessionInfo, Snapshot};
use serde_json::json;

const CODE: &str = "11-22-33-44-55-66-77-86";

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(start_paused = true)]
async fn the_agent_locks_itself_at_paid_until_when_the_server_is_gone() {
    let t0 = 1_800_000_000_000;
    let clock = Clock::starting_at(t0);
    let mut a = Agent::new(clock.clone());
    a.on_frame(&ServerFrame {
        event: ServerEvent::Snapshot(Snapshot {
            version: 1,
            epoch: "e".into(),
            seq: 4,
            server_time: t0,
            device: None,
            session: Some(SessionInfo {
                session_id: 9,
                device_code: CODE.into(),
                user_id: 1,
                started_at: t0 - 30_000,
                charge_mode: 5,
                cost: 5,
                balance: 95,
                minutes_left: 19,
                paid_until: t0 + 30_000,
            }),
            pending_commands: vec![],
            unpaid_order: None,
        }),
        seq: None,
        queued_at: None,
    });
    assert_eq!(a.screen, Screen::InSession);
    let agent = Arc::new(Mutex::new(a));
    let mut cfg = AgentConfig::new(&format!("http://127.0.0.1:{}", closed_port()), CODE);
    cfg.backoff_min = Duration::from_secs(1);
    cfg.backoff_max = Duration::from_secs(8);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(cfg, agent.clone(), clock, async {
        let _ = rx.await;
    }));
    // Paused tokio time: these sleeps cost no real time.
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(
        agent.lock().unwrap().screen,
        Screen::InSession,
        "still paid"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (screen, last) = {
        let a = agent.lock().unwrap();
        (a.screen, a.transitions.last().cloned())
    };
    assert_eq!(screen, Screen::Locked, "locked at paid_until");
    let (at, _, why) = last.unwrap();
    assert!(
        (t0 + 30_000..t0 + 30_500).contains(&at),
        "locked on time ({at})"
    );
    assert!(why.contains("paid_until"), "{why}");
    let _ = tx.send(());
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn replayed_and_resent_frames_act_once_and_commands_are_acknowledged() {
    let clock = Clock::starting_at(1_800_000_000_000);
    let mut a = Agent::new(clock);
    let cmd = |seq: u64| ServerFrame {
        event: ServerEvent::Command(kioskd_protocol::ws::Command {
            id: 3,
            name: "message".into(),
            text: Some("hi".into()),
        }),
        seq: Some(seq),
        queued_at: None,
    };
    let acks = a.on_frame(&cmd(5));
    assert_eq!(acks.len(), 1);
    assert!(
        a.on_frame(&cmd(5)).is_empty(),
        "the same seq twice is ignored"
    );
    let acks = a.on_frame(&cmd(9)); // re-sent after a snapshot: new seq, same id
    assert_eq!(acks.len(), 1, "still acknowledged");
    assert_eq!(a.messages, vec!["hi".to_string()], "but shown once");
}

#[tokio::test]
async fn the_agent_follows_a_session_on_the_real_server_and_locks_when_it_goes() {
    let app = spawn_app("[ws]\nallow_unsigned = true\n[billing]\nunit_seconds = 1\nfree_seconds = 0\nheartbeat_timeout_seconds = 30\n").await;
    app.add_device(CODE, 5).await;
    let (phone, _uid) = app.phone("oAgent", "17717464444", 1000).await;
    let clock = Clock::system();
    let agent = Arc::new(Mutex::new(Agent::new(clock.clone())));
    let mut cfg = AgentConfig::new(&app.base, CODE);
    cfg.grace = Duration::from_millis(300);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(cfg, agent.clone(), clock, async {
        let _ = rx.await;
    }));
    let wait_for = |want: Screen| {
        let agent = agent.clone();
        async move {
            for _ in 0..100 {
                if agent.lock().unwrap().screen == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    // Connected: the socket is the kiosk's heartbeat, so the device is online.
    wait_until(
        "the agent's socket is up",
        Duration::from_secs(5),
        async || agent.lock().unwrap().epoch.is_some(),
    )
    .await;
    assert_eq!(
        phone.scan(CODE).await["result"],
        "success",
        "the agent's socket made the device online"
    );
    assert!(wait_for(Screen::InSession).await);
    let (st, v) = app
        .ops_post(
            &format!("/ops/devices/{CODE}/command"),
            json!({"name":"message","text":"hello kiosk"}),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    wait_until(
        "the agent acknowledges the command",
        Duration::from_secs(5),
        async || {
            let acked: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM device_commands WHERE acked_at IS NOT NULL",
            )
            .fetch_one(app.db.pool())
            .await
            .unwrap();
            acked == 1
        },
    )
    .await;
    assert_eq!(
        agent.lock().unwrap().messages,
        vec!["hello kiosk".to_string()]
    );
    // The server goes away mid-session: the agent locks at paid_until (within a unit).
    app.stop().await;
    assert!(
        wait_for(Screen::Locked).await,
        "{:?}",
        agent.lock().unwrap().transitions
    );
    let _ = tx.send(());
    task.await.unwrap();
}

/// Screen E: a postpaid end naming an order waits for payment (no restart timer), a
/// payment of another order changes nothing, the right one restarts the kiosk.
#[test]
fn a_postpaid_end_waits_on_screen_e_until_its_order_is_paid() {
    use kioskd_protocol::ws::{OrderPaid, SessionEnded};
    let t0 = 1_800_000_000_000;
    let clock = Clock::starting_at(t0);
    let mut a = Agent::new(clock);
    let frame = |event, seq| ServerFrame {
        event,
        seq: Some(seq),
        queued_at: None,
    };
    a.on_frame(&frame(
        ServerEvent::SessionStarted(SessionInfo {
            session_id: 5,
            device_code: CODE.into(),
            user_id: 1,
            started_at: t0,
            charge_mode: 132,
            cost: 0,
            balance: 0,
            minutes_left: 0,
            paid_until: t0,
        }),
        1,
    ));
    assert_eq!(a.screen, Screen::InSession);
    a.on_frame(&frame(
        ServerEvent::SessionEnded(SessionEnded {
            session_id: 5,
            device_code: CODE.into(),
            reason: "phone_offline".into(),
            cost: 264,
            order_id: Some("o1234".into()),
        }),
        2,
    ));
    assert_eq!(a.screen, Screen::WaitPayment);
    assert_eq!(a.restart_at, None, "E waits for the payment, not a timer");
    assert_eq!(a.unpaid_order.as_deref(), Some("o1234"));
    a.on_frame(&frame(
        ServerEvent::OrderPaid(OrderPaid {
            order_id: "o9999".into(),
            device_code: CODE.into(),
        }),
        3,
    ));
    assert_eq!(
        a.screen,
        Screen::WaitPayment,
        "another order changes nothing"
    );
    a.on_frame(&frame(
        ServerEvent::OrderPaid(OrderPaid {
            order_id: "o1234".into(),
            device_code: CODE.into(),
        }),
        4,
    ));
    assert_eq!(a.screen, Screen::Standby);
    assert_eq!(a.restarts, 1);
    // After a reconnect the snapshot says what is due: an unpaid order means E, and
    // E with nothing due any more means it was paid meanwhile.
    let snap = |unpaid: Option<&str>| {
        ServerEvent::Snapshot(Snapshot {
            version: 1,
            epoch: "e2".into(),
            seq: 1,
            server_time: t0,
            device: None,
            session: None,
            pending_commands: vec![],
            unpaid_order: unpaid.map(str::to_string),
        })
    };
    a.on_frame(&ServerFrame {
        event: snap(Some("o7777")),
        seq: None,
        queued_at: None,
    });
    assert_eq!(a.screen, Screen::WaitPayment);
    a.on_frame(&ServerFrame {
        event: snap(None),
        seq: None,
        queued_at: None,
    });
    assert_eq!(a.screen, Screen::Standby);
    assert_eq!(a.restarts, 2);
    assert!(
        a.transitions
            .iter()
            .any(|(_, s, why)| *s == Screen::WaitPayment && why.contains("o1234"))
    );
}
