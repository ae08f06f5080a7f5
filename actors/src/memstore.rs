//! An in-memory `Store` with the same rules as the SQL one (one active session per user
//! and per device, deterministic ledger ids, no negative balance). For actor tests that
//! run under paused tokio time, where a real database would only add noise.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::ports::*;

#[derive(Debug, Clone)]
struct MemSession {
    rec: SessionRecord,
    ended: bool,
    reason: Option<String>,
    cost: i64,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemStore {
    state: Mutex<State>,
    /// Held by a test to make device writes (`set_device_updating`) wait: a device actor
    /// busy with storage.
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Device writes waiting on that hold.
    writes_waiting: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct State {
    devices: HashMap<String, DeviceRecord>,
    balances: HashMap<i64, i64>,
    sessions: BTreeMap<i64, MemSession>,
    /// Ledger: id → (user, amount).
    pub ledger: BTreeMap<String, (i64, i64)>,
    next_session: i64,
    /// Commands: id → (device, name, text, acked).
    commands: BTreeMap<i64, (i64, String, Option<String>, bool, i64)>,
    /// Broadcasts: id → (name, text, sent at); and the (device, broadcast) copies
    /// acknowledged.
    broadcasts: BTreeMap<i64, (String, Option<String>, i64)>,
    broadcast_acks: std::collections::HashSet<(i64, i64)>,
    /// Postpaid orders: id → (user, amount, paid).
    orders: BTreeMap<String, (i64, i64, bool)>,
}

/// A free prepaid device at 5 fen per unit, for tests.
pub fn device_record(id: i64, code: &str) -> DeviceRecord {
    DeviceRecord {
        id,
        code: code.into(),
        client_id: None,
        name: "seat".into(),
        province: String::new(),
        city: String::new(),
        area: String::new(),
        location: String::new(),
        charge_mode: 5,
        billing_mode: BillingMode::Prepaid,
        status: PersistedStatus::Free,
        maintainer: None,
        updating: false,
        last_seen_at: None,
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds device writes until the guard is dropped (a device actor that writes one
    /// waits meanwhile, as on a slow database).
    pub fn hold_device_writes(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.writes
            .clone()
            .try_lock_owned()
            .expect("device writes are held once at a time")
    }

    /// How many device writes wait on [`MemStore::hold_device_writes`] now.
    pub fn device_writes_waiting(&self) -> usize {
        self.writes_waiting
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Registers a device.
    pub fn add_device(&self, rec: DeviceRecord) {
        self.state
            .lock()
            .unwrap()
            .devices
            .insert(rec.code.clone(), rec);
    }

    /// Credits a user (a ledger row `credit:<n>`).
    pub fn credit(&self, user_id: i64, amount: i64) {
        let mut s = self.state.lock().unwrap();
        let n = s.ledger.len();
        s.ledger.insert(format!("credit:{n}"), (user_id, amount));
        *s.balances.entry(user_id).or_default() += amount;
    }

    /// Balance of a user.
    pub fn balance(&self, user_id: i64) -> i64 {
        self.state
            .lock()
            .unwrap()
            .balances
            .get(&user_id)
            .copied()
            .unwrap_or(0)
    }

    /// Sum of a user's ledger rows (must equal the balance).
    pub fn ledger_sum(&self, user_id: i64) -> i64 {
        let s = self.state.lock().unwrap();
        s.ledger
            .values()
            .filter(|(u, _)| *u == user_id)
            .map(|(_, a)| a)
            .sum()
    }

    /// (ended, reason, cost) of a session.
    pub fn session_outcome(&self, id: i64) -> Option<(bool, Option<String>, i64)> {
        let s = self.state.lock().unwrap();
        s.sessions
            .get(&id)
            .map(|m| (m.ended, m.reason.clone(), m.cost))
    }

    /// A postpaid order: (user, amount, paid).
    pub fn order(&self, id: &str) -> Option<(i64, i64, bool)> {
        self.state.lock().unwrap().orders.get(id).copied()
    }

    /// Marks an order paid (as a settled payment would).
    pub fn pay_order(&self, id: &str) {
        if let Some(o) = self.state.lock().unwrap().orders.get_mut(id) {
            o.2 = true;
        }
    }

    /// Inserts a running session as if written before a restart.
    pub fn insert_running(&self, rec: SessionRecord) {
        let mut s = self.state.lock().unwrap();
        s.next_session = s.next_session.max(rec.id);
        s.sessions.insert(
            rec.id,
            MemSession {
                rec,
                ended: false,
                reason: None,
                cost: 0,
            },
        );
    }

    /// Inserts a ledger row directly (to mirror what a crashed server had written).
    pub fn insert_ledger(&self, id: &str, user_id: i64, amount: i64) {
        let mut s = self.state.lock().unwrap();
        s.ledger.insert(id.to_string(), (user_id, amount));
        *s.balances.entry(user_id).or_default() += amount;
    }
}

#[async_trait]
impl Store for MemStore {
    async fn device_by_code(&self, code: &str) -> StoreResult<Option<DeviceRecord>> {
        Ok(self.state.lock().unwrap().devices.get(code).cloned())
    }

    async fn set_device_status(
        &self,
        device_id: i64,
        status: PersistedStatus,
        maintainer: Option<&str>,
    ) -> StoreResult<()> {
        let mut s = self.state.lock().unwrap();
        if let Some(d) = s.devices.values_mut().find(|d| d.id == device_id) {
            d.status = status;
            d.maintainer = maintainer.map(str::to_string);
        }
        Ok(())
    }

    async fn set_device_updating(&self, device_id: i64, updating: bool) -> StoreResult<()> {
        self.writes_waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(self.writes.lock().await);
        self.writes_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let mut s = self.state.lock().unwrap();
        if let Some(d) = s.devices.values_mut().find(|d| d.id == device_id) {
            d.updating = updating;
        }
        Ok(())
    }

    async fn start_session(&self, new: NewSession) -> Result<Started, StartError> {
        let mut s = self.state.lock().unwrap();
        if s.sessions
            .values()
            .any(|m| !m.ended && m.rec.user_id == new.user_id)
        {
            return Err(StartError::UserBusy);
        }
        if s.sessions
            .values()
            .any(|m| !m.ended && m.rec.device_id == new.device_id)
        {
            return Err(StartError::DeviceBusy);
        }
        if s.orders.values().any(|o| o.0 == new.user_id && !o.2) {
            return Err(StartError::UnpaidOrder);
        }
        let postpaid = new.billing_mode == BillingMode::Postpaid;
        let bal = s.balances.get(&new.user_id).copied().unwrap_or(0);
        let debit = new.first.map_or(new.charge_mode, |f| f.debit);
        if !postpaid && bal < debit {
            return Err(StartError::InsufficientBalance);
        }
        let first = if postpaid { 0 } else { debit };
        s.next_session += 1;
        let id = s.next_session;
        let code = s
            .devices
            .values()
            .find(|d| d.id == new.device_id)
            .map(|d| d.code.clone())
            .unwrap_or_default();
        let rec = SessionRecord {
            id,
            token: new.token,
            user_id: new.user_id,
            openid: String::new(),
            device_id: new.device_id,
            device_code: code,
            charge_mode: new.charge_mode,
            billing_mode: new.billing_mode,
            started_at: new.started_at,
            reserved_units: 1,
            last_heard_at: new.started_at,
        };
        if !postpaid {
            s.ledger.insert(format!("{id}:1"), (new.user_id, -first));
        }
        *s.balances.entry(new.user_id).or_default() -= first;
        s.sessions.insert(
            id,
            MemSession {
                rec: rec.clone(),
                ended: false,
                reason: None,
                cost: 0,
            },
        );
        Ok(Started {
            session: rec,
            balance: bal - first,
        })
    }

    async fn reserve_unit(
        &self,
        session_id: i64,
        user_id: i64,
        unit: i64,
        price: i64,
        last_heard_at: i64,
        _now: i64,
    ) -> StoreResult<Reserve> {
        let mut s = self.state.lock().unwrap();
        let bal = s.balances.get(&user_id).copied().unwrap_or(0);
        match s.sessions.get(&session_id) {
            Some(m) if !m.ended => {}
            _ => return Ok(Reserve::SessionEnded),
        }
        let id = format!("{session_id}:{unit}");
        if s.ledger.contains_key(&id) {
            return Ok(Reserve::Reserved { balance: bal });
        }
        if bal < price {
            return Ok(Reserve::Insufficient { balance: bal });
        }
        s.ledger.insert(id, (user_id, -price));
        s.balances.insert(user_id, bal - price);
        let m = s.sessions.get_mut(&session_id).unwrap();
        m.rec.reserved_units = m.rec.reserved_units.max(unit);
        m.rec.last_heard_at = m.rec.last_heard_at.max(last_heard_at);
        Ok(Reserve::Reserved {
            balance: bal - price,
        })
    }

    async fn end_session(&self, end: SessionEnd) -> StoreResult<Ended> {
        let mut s = self.state.lock().unwrap();
        let bal = s.balances.get(&end.user_id).copied().unwrap_or(0);
        let Some(m) = s.sessions.get_mut(&end.session_id) else {
            return Ok(Ended {
                changed: false,
                balance: bal,
            });
        };
        if m.ended {
            return Ok(Ended {
                changed: false,
                balance: bal,
            });
        }
        m.ended = true;
        m.reason = Some(end.reason.as_str().to_string());
        m.cost = end.cost;
        if let Some(id) = &end.order_id {
            s.orders
                .insert(id.clone(), (end.user_id, end.cost, end.cost == 0));
        }
        if end.refund > 0 {
            s.ledger.insert(
                format!("{}:refund", end.session_id),
                (end.user_id, end.refund),
            );
            s.balances.insert(end.user_id, bal + end.refund);
        }
        Ok(Ended {
            changed: true,
            balance: bal + end.refund.max(0),
        })
    }

    async fn active_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let s = self.state.lock().unwrap();
        Ok(s.sessions
            .values()
            .filter(|m| !m.ended)
            .map(|m| m.rec.clone())
            .collect())
    }

    async fn record_heartbeats(
        &self,
        devices: &[LastHeard],
        sessions: &[LastHeard],
    ) -> StoreResult<()> {
        let mut s = self.state.lock().unwrap();
        for h in devices {
            if let Some(d) = s.devices.values_mut().find(|d| d.id == h.id) {
                d.last_seen_at = Some(d.last_seen_at.unwrap_or(0).max(h.at));
            }
        }
        for h in sessions {
            if let Some(m) = s.sessions.get_mut(&h.id) {
                m.rec.last_heard_at = m.rec.last_heard_at.max(h.at);
            }
        }
        Ok(())
    }

    async fn user_balance(&self, user_id: i64) -> StoreResult<i64> {
        Ok(self.balance(user_id))
    }

    async fn add_command(
        &self,
        device_id: i64,
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<i64> {
        let mut s = self.state.lock().unwrap();
        let id = s.commands.len() as i64 + 1;
        s.commands.insert(
            id,
            (
                device_id,
                name.to_string(),
                text.map(str::to_string),
                false,
                now,
            ),
        );
        Ok(id)
    }

    async fn add_broadcast(&self, name: &str, text: Option<&str>, now: i64) -> StoreResult<i64> {
        let mut s = self.state.lock().unwrap();
        let id = s.broadcasts.len() as i64 + 1;
        s.broadcasts
            .insert(id, (name.to_string(), text.map(str::to_string), now));
        Ok(id)
    }

    async fn pending_commands(
        &self,
        device_id: i64,
        broadcasts_since: i64,
    ) -> StoreResult<Vec<PendingCommand>> {
        let s = self.state.lock().unwrap();
        let mut out: Vec<_> = s
            .commands
            .iter()
            .filter(|(_, c)| c.0 == device_id && !c.3)
            .map(|(id, c)| PendingCommand {
                id: *id,
                name: c.1.clone(),
                text: c.2.clone(),
                created_at: c.4,
            })
            .collect();
        // (Every device here was registered before any broadcast.)
        for (b, (name, text, at)) in &s.broadcasts {
            if *at >= broadcasts_since
                && !s.broadcast_acks.contains(&(device_id, *b))
                && let Some(id) = broadcast_copy_id(*b, device_id)
            {
                out.push(PendingCommand {
                    id,
                    name: name.clone(),
                    text: text.clone(),
                    created_at: *at,
                });
            }
        }
        Ok(out)
    }

    async fn ack_commands(&self, ids: &[i64], _now: i64) -> StoreResult<()> {
        let mut s = self.state.lock().unwrap();
        for id in ids {
            if let Some((b, device)) = broadcast_of_copy(*id) {
                s.broadcast_acks.insert((device, b));
            } else if let Some(c) = s.commands.get_mut(id) {
                c.3 = true;
            }
        }
        Ok(())
    }
}
