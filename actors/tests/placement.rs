//! Device ownership across nodes, without Redis: three coordinators on one in-memory
//! store and an in-memory `Placement` (the same contract `src/cluster.rs` keeps over
//! Redis), under paused tokio time. Requests reach the owner wherever they land, a
//! device moves with its running session, a dead node's sessions are taken over, and
//! money is debited once per unit whatever the moves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kioskd_actors::coordinator::{Coordinator, CoordinatorConfig};
use kioskd_actors::device::OperatorCommand;
use kioskd_actors::memstore::MemStore;
use kioskd_actors::placement::{Owner, Placement, PlacementError, Reply, Request};
use kioskd_actors::ports::*;
use kioskd_actors::{Clock, DeviceStatus, EndReason, Events};

const T0: i64 = 1_700_000_000_000;
const CODE: &str = "11-22-33-44-55-66-77-86";

#[derive(Default)]
struct Hub {
    owners: Mutex<HashMap<String, String>>,
    alive: Mutex<HashSet<String>>,
    nodes: Mutex<HashMap<String, Coordinator>>,
    forwarded: Mutex<Vec<(String, String)>>,
}

struct MemPlacement {
    node: String,
    hub: Arc<Hub>,
}

impl Hub {
    fn is_alive(&self, n: &str) -> bool {
        self.alive.lock().unwrap().contains(n)
    }
}

#[async_trait::async_trait]
impl Placement for MemPlacement {
    fn node(&self) -> &str {
        &self.node
    }

    async fn claim(&self, code: &str) -> Result<Owner, PlacementError> {
        let mut owners = self.hub.owners.lock().unwrap();
        match owners.get(code) {
            Some(o) if *o == self.node => Ok(Owner::Here),
            Some(o) if self.hub.is_alive(o) => Ok(Owner::There(o.clone())),
            _ => {
                owners.insert(code.to_string(), self.node.clone());
                Ok(Owner::Here)
            }
        }
    }

    async fn owner(&self, code: &str) -> Result<Option<String>, PlacementError> {
        let owners = self.hub.owners.lock().unwrap();
        Ok(owners.get(code).filter(|o| self.hub.is_alive(o)).cloned())
    }

    async fn hand_over(&self, code: &str, to: &str) -> Result<(), PlacementError> {
        let mut owners = self.hub.owners.lock().unwrap();
        if owners.get(code) == Some(&self.node) {
            owners.insert(code.to_string(), to.to_string());
        }
        Ok(())
    }

    async fn release(&self, code: &str) -> Result<(), PlacementError> {
        let mut owners = self.hub.owners.lock().unwrap();
        if owners.get(code) == Some(&self.node) {
            owners.remove(code);
        }
        Ok(())
    }

    async fn peers(&self) -> Result<Vec<String>, PlacementError> {
        let alive = self.hub.alive.lock().unwrap();
        Ok(alive.iter().filter(|n| **n != self.node).cloned().collect())
    }

    async fn forward(&self, node: &str, req: Request) -> Result<Reply, PlacementError> {
        if !self.hub.is_alive(node) {
            return Err(PlacementError(format!("{node} is not listening")));
        }
        let c = self.hub.nodes.lock().unwrap().get(node).cloned();
        let c = c.ok_or_else(|| PlacementError(format!("no node {node}")))?;
        // Over the wire and back, as Redis carries it.
        let req: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        self.hub
            .forwarded
            .lock()
            .unwrap()
            .push((self.node.clone(), node.to_string()));
        let reply = c.serve(req).await;
        Ok(serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap())
    }
}

fn device(id: i64, code: &str) -> DeviceRecord {
    kioskd_actors::memstore::device_record(id, code)
}

struct Cluster {
    store: Arc<MemStore>,
    hub: Arc<Hub>,
    nodes: Vec<Coordinator>,
}

/// Three nodes (a, b, c) on one store, with 60 s units and a 30 s free start.
fn cluster() -> Cluster {
    let store = Arc::new(MemStore::new());
    store.add_device(device(1, CODE));
    let hub = Arc::new(Hub::default());
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let c = Coordinator::new(
            store.clone(),
            Clock::starting_at(T0),
            CoordinatorConfig::default(),
            Events::default(),
        );
        assert!(c.set_placement(Arc::new(MemPlacement {
            node: name.into(),
            hub: hub.clone(),
        })));
        hub.alive.lock().unwrap().insert(name.into());
        hub.nodes.lock().unwrap().insert(name.into(), c.clone());
        nodes.push(c);
    }
    Cluster { store, hub, nodes }
}

impl Cluster {
    fn devices(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|c| c.actor_stats().devices.actors)
            .collect()
    }

    fn sessions(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|c| c.actor_stats().sessions.actors)
            .collect()
    }

    fn owner(&self) -> Option<String> {
        self.hub.owners.lock().unwrap().get(CODE).cloned()
    }

    fn user(&self, id: i64) -> UserRef {
        UserRef {
            id,
            openid: format!("o{id}"),
            balance: self.store.balance(id),
        }
    }
}

async fn secs(s: u64) {
    tokio::time::sleep(Duration::from_secs(s)).await;
}

#[tokio::test(start_paused = true)]
async fn requests_on_any_node_reach_the_one_actor_of_the_device() {
    let cl = cluster();
    let (a, b, c) = (&cl.nodes[0], &cl.nodes[1], &cl.nodes[2]);
    cl.store.credit(7, 100);
    // The kiosk polls node a: the device is a's.
    a.check(CODE).await.unwrap();
    assert_eq!(cl.owner().as_deref(), Some("a"));
    // A phone on node b starts the session; an operator on c sees it.
    let started = b
        .start_session(CODE, cl.user(7))
        .await
        .unwrap()
        .expect("started");
    assert_eq!(cl.devices(), vec![1, 0, 0]);
    assert_eq!(cl.sessions(), vec![1, 0, 0]);
    let on_c = c.device_info(CODE).await.unwrap();
    assert_eq!(on_c.status, DeviceStatus::Busy);
    assert_eq!(
        on_c.session.as_ref().map(|s| s.1.clone()),
        Some(started.token.clone())
    );
    // The kiosk's keepalive lands on c; the user's view on b.
    assert!(c.keepalive(&started.token, CODE).await.unwrap().is_some());
    let view = b.user_session(7).await.unwrap().expect("running");
    assert_eq!(view.id, started.session_id);
    assert_eq!(c.sessions().await.len(), 1, "listed once across nodes");
    // Two minutes later an operator on c locks the device: the session ends on a.
    secs(90).await;
    c.keepalive(&started.token, CODE).await.unwrap();
    let ended = c
        .operate(CODE, OperatorCommand::Lock)
        .await
        .unwrap()
        .unwrap()
        .expect("a session ended");
    assert_eq!(ended.reason, EndReason::Operator);
    assert_eq!(ended.cost, 10, "30 s free, then units begun at 30 and 90 s");
    assert_eq!(cl.store.balance(7), 90);
    assert_eq!(cl.store.ledger_sum(7), 90);
    assert_eq!(
        cl.devices(),
        vec![1, 0, 0],
        "nobody else spawned the device"
    );
    assert!(!cl.hub.forwarded.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_device_moves_with_its_running_session_and_bills_each_unit_once() {
    let cl = cluster();
    let (a, b) = (&cl.nodes[0], &cl.nodes[1]);
    cl.store.credit(7, 100);
    a.check(CODE).await.unwrap();
    let started = a.start_session(CODE, cl.user(7)).await.unwrap().unwrap();
    secs(40).await;
    a.keepalive(&started.token, CODE).await.unwrap();
    // The kiosk's socket connects to node b: a hands the device over, b adopts the session.
    let d = b.device(CODE).await.unwrap();
    assert!(d.is_alive());
    assert_eq!(cl.owner().as_deref(), Some("b"));
    assert_eq!(cl.devices(), vec![0, 1, 0]);
    assert_eq!(cl.sessions(), vec![0, 1, 0]);
    // Billing goes on at b from where the store says it was.
    for _ in 0..4 {
        secs(30).await;
        b.keepalive(&started.token, CODE).await.unwrap();
    }
    // 160 s in: units at 30, 90 and 150 s begun → 15 fen, each debited once.
    let ended = a
        .end_by_token(&started.token, EndReason::UserLogout)
        .await
        .unwrap()
        .expect("ended through b");
    assert_eq!(ended.cost, 15);
    assert_eq!(cl.store.balance(7), 85);
    assert_eq!(cl.store.ledger_sum(7), 85);
    // And back: the device can move again (now without a session).
    a.device(CODE).await.unwrap();
    assert_eq!(cl.devices(), vec![1, 0, 0]);
    assert_eq!(cl.sessions(), vec![0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_dead_nodes_session_is_taken_over_and_ends_on_its_deadline() {
    let cl = cluster();
    let (a, b) = (&cl.nodes[0], &cl.nodes[1]);
    cl.store.credit(7, 100);
    a.check(CODE).await.unwrap();
    let started = a.start_session(CODE, cl.user(7)).await.unwrap().unwrap();
    // Node a dies: its lease is gone and it no longer answers. (Its actors are stopped
    // here so that they cannot bill: a dead process bills nothing.)
    cl.hub.alive.lock().unwrap().remove("a");
    a.shutdown().await;
    assert_eq!(b.recover().await.unwrap(), 1);
    assert_eq!(cl.owner().as_deref(), Some("b"));
    assert_eq!(cl.sessions(), vec![0, 1, 0]);
    // The kiosk is never heard again: the session ends at its heartbeat deadline on b.
    secs(400).await;
    assert_eq!(cl.sessions(), vec![0, 0, 0]);
    let (ended, reason, cost) = cl.store.session_outcome(started.session_id).unwrap();
    assert!(ended);
    assert_eq!(reason.as_deref(), Some("heartbeat_timeout"));
    assert_eq!(cl.store.ledger_sum(7), 100 - cost);
}

#[tokio::test(start_paused = true)]
async fn nodes_racing_for_an_unowned_device_spawn_one_actor() {
    let cl = cluster();
    let (a, b, c) = (
        cl.nodes[0].clone(),
        cl.nodes[1].clone(),
        cl.nodes[2].clone(),
    );
    let (ra, rb, rc) = tokio::join!(a.check(CODE), b.check(CODE), c.check(CODE));
    assert!(ra.is_ok() && rb.is_ok() && rc.is_ok());
    assert_eq!(cl.devices().iter().sum::<usize>(), 1);
    // A request forwarded to a node that no longer owns the device is told so, and the
    // sender looks again (here: the owner moved while the request was on its way).
    let owner = cl.owner().unwrap();
    let not_owner = ["a", "b", "c"].iter().position(|n| *n != owner).unwrap();
    let reply = cl.nodes[not_owner]
        .serve(Request::Device {
            code: CODE.into(),
            op: kioskd_actors::placement::DeviceOp::Info,
        })
        .await;
    assert_eq!(reply, Reply::NotOwner);
    assert_eq!(cl.devices().iter().sum::<usize>(), 1);
}

/// The kiosk's first frame on a socket attached to `d`: the snapshot.
async fn first_snapshot(
    d: &kameo::actor::ActorRef<kioskd_actors::device::DeviceActor>,
) -> kioskd_protocol::ws::Snapshot {
    let (conn, frames) = kioskd_actors::stream::connection(1, 64);
    d.ask(kioskd_actors::device::Attach {
        conn,
        resume_from: None,
        epoch: None,
    })
    .await
    .unwrap();
    let Some(kioskd_actors::stream::Next::Frame(f)) = frames.try_next() else {
        panic!("no frame at once");
    };
    match f.to_server_frame().event {
        kioskd_protocol::ws::ServerEvent::Snapshot(s) => s,
        e => panic!("first frame is not a snapshot: {e:?}"),
    }
}

/// The snapshot shows the running session as the session's own view does.
fn assert_shows(snap: &kioskd_protocol::ws::Snapshot, view: &kioskd_actors::session::SessionView) {
    assert_eq!(
        snap.device.as_ref().map(|d| d.status),
        Some(kioskd_protocol::windows::DeviceStatus::Busy)
    );
    let s = snap.session.as_ref().expect("busy WITH its session");
    assert_eq!(s.session_id, view.id);
    assert_eq!(s.paid_until, view.paid_until);
    assert_eq!(s.balance, view.balance);
    assert_eq!(s.cost, view.reserved * view.charge_mode);
}

#[tokio::test(start_paused = true)]
async fn a_device_pulled_over_by_a_socket_snapshots_its_session_at_once() {
    let cl = cluster();
    let (a, b) = (&cl.nodes[0], &cl.nodes[1]);
    cl.store.credit(7, 100);
    a.check(CODE).await.unwrap();
    let started = a.start_session(CODE, cl.user(7)).await.unwrap().unwrap();
    secs(40).await;
    a.keepalive(&started.token, CODE).await.unwrap();
    let view = a.user_session(7).await.unwrap().unwrap();
    // The kiosk's socket lands on b: its first snapshot, before the session actor there
    // has said anything, is busy with the session and the right paid_until.
    let d = b.device(CODE).await.unwrap();
    assert_shows(&first_snapshot(&d).await, &view);
    assert_eq!(cl.sessions(), vec![0, 1, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_dead_nodes_session_taken_over_snapshots_at_once() {
    let cl = cluster();
    let (a, b) = (&cl.nodes[0], &cl.nodes[1]);
    cl.store.credit(7, 100);
    a.check(CODE).await.unwrap();
    let started = a.start_session(CODE, cl.user(7)).await.unwrap().unwrap();
    secs(40).await;
    a.keepalive(&started.token, CODE).await.unwrap();
    let view = a.user_session(7).await.unwrap().unwrap();
    cl.hub.alive.lock().unwrap().remove("a");
    a.shutdown().await;
    assert_eq!(b.recover().await.unwrap(), 1);
    let d = b.device(CODE).await.unwrap();
    assert_shows(&first_snapshot(&d).await, &view);
}
