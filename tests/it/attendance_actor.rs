//! The terminal actors over the real store with short configured units: a native
//! command unanswered past the (shortened) ack timeout is sent again as a new attempt,
//! a destructive one never is, and concurrent polls never hand out one attempt twice.

use std::sync::Arc;
use std::time::Duration;

use kioskd::store::Db;
use kioskd_actors::Clock;
use kioskd_actors::terminal::{CmdResult, TerminalConfig, Terminals};
use serde_json::Map;

async fn setup(ack_timeout_ms: i64) -> (Terminals, Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/k.db", dir.path().display()), 1)
        .await
        .unwrap();
    db.add_terminal("T1", "hash", "", "Asia/Shanghai", 0)
        .await
        .unwrap();
    let cfg = TerminalConfig {
        ack_timeout_ms,
        max_attempts: 3,
        ..TerminalConfig::default()
    };
    (
        Terminals::new(
            Arc::new(db.clone()),
            Clock::manual(Clock::system().now_ms()),
            cfg,
        ),
        db,
        dir,
    )
}

#[tokio::test]
async fn unanswered_commands_are_resent_after_the_ack_timeout_and_destructive_ones_never() {
    let (t, db, _dir) = setup(150).await;
    let check = t.enqueue("T1", "CHECK", Map::new()).await.unwrap();
    let reboot = t.enqueue("T1", "REBOOT", Map::new()).await.unwrap();
    let first = t.native_poll("T1", None).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[1].text, "REBOOT", "REBOOT goes last");
    assert!(t.native_poll("T1", None).await.unwrap().is_empty());
    // Past the ack timeout on the terminals' clock.
    t.clock().advance(Duration::from_millis(200));
    let second = t.native_poll("T1", None).await.unwrap();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0].text, "CHECK");
    assert_eq!(second[0].wire_id, (check.id * 10 + 2).to_string());
    // The answer to the second attempt completes it.
    let r = t
        .native_results(
            "T1",
            vec![CmdResult {
                wire_id: second[0].wire_id.clone(),
                code: 0,
                text: "ok".into(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(r.applied, 1);
    // Past the ack timeout again: an answered command is not resent.
    t.clock().advance(Duration::from_millis(200));
    assert!(t.native_poll("T1", None).await.unwrap().is_empty());
    let rows = db.list_commands("T1").await.unwrap();
    let state = |id| rows.iter().find(|c| c.id == id).unwrap().state.as_str();
    assert_eq!(state(check.id), "acked");
    assert_eq!(state(reboot.id), "sent");
}

#[tokio::test]
async fn concurrent_polls_never_hand_out_the_same_attempt_twice() {
    let (t, _db, _dir) = setup(60_000).await;
    for _ in 0..50 {
        t.enqueue("T1", "INFO", Map::new()).await.unwrap();
    }
    let polls: Vec<_> = (0..8)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move { t.native_poll("T1", None).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for p in polls {
        ids.extend(p.await.unwrap().into_iter().map(|c| c.wire_id));
    }
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (50, 50));
}

#[tokio::test]
async fn an_unknown_terminal_has_no_actor() {
    let (t, _db, _dir) = setup(60_000).await;
    assert!(t.native_poll("NOPE", None).await.is_err());
    assert!(!t.is_live("NOPE"));
    assert!(t.enqueue("NOPE", "INFO", Map::new()).await.is_err());
}
