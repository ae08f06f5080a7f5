//! `SessionActor`: one per running session. It owns the session's billing clock: it
//! reserves each unit when it begins, ends the session when the balance runs out or the
//! kiosk falls silent, and settles (refunds) at the end. Time reaches it as messages
//! (`Wake`) from a timer task that holds only a weak reference.

use std::sync::Arc;

use kameo::prelude::*;
use tokio::task::JoinHandle;

use crate::billing::{EndReason, Meter, Step, Tariff, UNLIMITED_UNITS, units_left, units_started};
use crate::catalog;
use crate::coordinator::{CoordinatorConfig, Inner, Restarts};
use crate::device::{DeviceActor, SessionClosed, SessionUpdate};
use crate::events::Event;
use crate::ports::{
    ActiveKey, BillingMode, DeviceRecord, Reserve, SessionEnd, SessionRecord, StoreError,
    UnitCharge,
};
use crate::pricing::{Charge, HeldPackage, PriceContext, consume, settle_charges};
use kioskd_protocol::ws::{self as wire, ServerEvent, SessionInfo};

/// What adapters see of a running session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    /// Session id.
    pub id: i64,
    /// Token.
    pub token: String,
    /// User id.
    pub user_id: i64,
    /// User openid.
    pub openid: String,
    /// Device id.
    pub device_id: i64,
    /// Device code.
    pub device_code: String,
    /// Start (unix ms).
    pub started_at: i64,
    /// When this view was taken (unix ms).
    pub now: i64,
    /// Cost if it ended now (fen).
    pub cost_money: i64,
    /// Seconds since the start.
    pub cost_time: i64,
    /// Fen per unit.
    pub charge_mode: i64,
    /// Balance (fen).
    pub balance: i64,
    /// Paid up to (unix ms).
    pub paid_until: i64,
    /// Units reserved.
    pub reserved: i64,
    /// Last heartbeat (unix ms).
    pub last_heard: i64,
}

/// The final account of an ended session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndedView {
    /// Session id.
    pub id: i64,
    /// Why.
    pub reason: EndReason,
    /// When (unix ms).
    pub ended_at: i64,
    /// Final cost (fen).
    pub cost: i64,
    /// Refunded (fen).
    pub refund: i64,
    /// Balance after (fen).
    pub balance: i64,
    /// Postpaid: the order created for `cost` (paid already when the cost is 0).
    pub order_id: Option<String>,
}

/// The session is gone (ended, or never existed here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session has ended")]
pub struct Gone;

/// A failure while ending or viewing a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session has ended.
    #[error("session has ended")]
    Gone,
    /// Storage failed; nothing changed.
    #[error("{0}")]
    Store(StoreError),
}

/// Arguments to spawn a session actor.
pub struct SessionArgs {
    pub(crate) rec: SessionRecord,
    pub(crate) balance: i64,
    pub(crate) device: WeakActorRef<DeviceActor>,
    pub(crate) inner: Arc<Inner>,
    /// True for a session that just started (false when recovered after a restart).
    pub(crate) fresh: bool,
    /// What the start priced (fresh sessions); `None`: loaded from storage on start.
    pub(crate) pricing: Option<StartPricing>,
    /// The device's flat `charge_mode` (a priced session's row holds unit 1's price).
    pub(crate) flat: i64,
}

/// How many units ahead `minutes_left` is counted for a priced session (a day): beyond
/// that the balance is reported as lasting this long.
pub const PRICED_LOOKAHEAD_UNITS: i64 = 1_440;

/// The user's side of a session's pricing, loaded when it starts: the member group, the
/// packages held, and how unit 1 is paid (`None`: flat, as before plans existed).
#[derive(Debug, Clone, Default)]
pub struct StartPricing {
    /// The user's member group.
    pub group: Option<i64>,
    /// Packages held at the start.
    pub held: Vec<HeldPackage>,
    /// Unit 1 when it is priced by a plan, a group or a package.
    pub first: Option<UnitCharge>,
}

impl StartPricing {
    /// Prices unit 1 of a session of `user_id` on `device` starting at `now`.
    pub(crate) async fn load(
        inner: &Inner,
        device: &DeviceRecord,
        user_id: i64,
        now: i64,
    ) -> Result<StartPricing, StoreError> {
        let group = inner.store.user_group(user_id).await?;
        let postpaid = device.billing_mode == BillingMode::Postpaid;
        // Packages cover prepaid units only: a postpaid session's cost becomes an order.
        let held = if postpaid {
            Vec::new()
        } else {
            inner.store.held_packages(user_id, now).await?
        };
        let ctx = inner
            .pricing()
            .context(device.id, device.charge_mode, group, inner.cfg.unit_ms);
        let first = (!ctx.is_flat() || !held.is_empty()).then(|| {
            let c = ctx.charge_at(now, &held);
            unit_charge(&ctx, 1, c, postpaid)
        });
        Ok(StartPricing { group, held, first })
    }
}

/// The count `minutes_left` shows: units `balance` buys from unit `first_unit`
/// beginning at `from_ms` on, at their real prices, packages first, at most a day ahead
/// (beyond that, `UNLIMITED_UNITS`). `flat`: the session's flat tariff while nothing has
/// priced it (with no packages and a flat context, the count is the flat one, exactly
/// as before plans existed). Postpaid: unlimited.
pub fn minutes_left(
    ctx: &PriceContext,
    flat: Option<&Tariff>,
    postpaid: bool,
    first_unit: i64,
    from_ms: i64,
    balance: i64,
    held: &[HeldPackage],
) -> i64 {
    if let Some(t) = flat
        && held.is_empty()
        && ctx.is_flat()
    {
        return units_left(t, balance);
    }
    if postpaid {
        return UNLIMITED_UNITS;
    }
    let n = ctx.units_affordable(first_unit, from_ms, balance, held, PRICED_LOOKAHEAD_UNITS);
    if n >= PRICED_LOOKAHEAD_UNITS {
        UNLIMITED_UNITS
    } else {
        n
    }
}

/// What a session of a user on a device would cost if it began now: what the phone's
/// start page shows. Priced by the same code a start uses (`StartPricing::load`) and
/// counted by the same code as a running session's `minutes_left`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quote {
    /// Milliseconds per unit.
    pub unit_ms: i64,
    /// Fen for a unit beginning now: the plan in force (group, device, zone) with the
    /// group's discount, else the device's flat `charge_mode`. Before packages.
    pub price: i64,
    /// The plan in force, if any.
    pub plan: Option<String>,
    /// The user's group discount in percent (0: none or anonymous).
    pub discount_pct: i64,
    /// The plan's minimum charge per session (fen; 0 without a plan).
    pub min_charge: i64,
    /// The user package that would cover a unit beginning now.
    pub package_now: Option<i64>,
    /// Fen a start now reserves (unit 1 with the minimum charge; 0 when a package
    /// covers it or the device is postpaid).
    pub first_debit: i64,
    /// Units the balance (with the packages held) buys from now on; `UNLIMITED_UNITS`
    /// for a postpaid device or beyond a day. `None` for an anonymous quote.
    pub units: Option<i64>,
    /// The user packages held that may be used on this device (its zone), soonest
    /// expiry first.
    pub packages: Vec<i64>,
}

impl Quote {
    /// Quotes a start at `now` on `device` for `user` (id, balance), or anonymously (no
    /// group, no packages, no balance).
    pub(crate) async fn load(
        inner: &Inner,
        device: &DeviceRecord,
        user: Option<(i64, i64)>,
        now: i64,
    ) -> Result<Quote, StoreError> {
        let pricing = match user {
            Some((id, _)) => StartPricing::load(inner, device, id, now).await?,
            None => StartPricing::default(),
        };
        let postpaid = device.billing_mode == BillingMode::Postpaid;
        let ctx = inner.pricing().context(
            device.id,
            device.charge_mode,
            pricing.group,
            inner.cfg.unit_ms,
        );
        let charge = ctx.charge_at(now, &pricing.held);
        let flat = Tariff {
            unit_ms: inner.cfg.unit_ms,
            free_ms: inner.cfg.free_ms,
            price: device.charge_mode,
        };
        let units = user.map(|(_, balance)| {
            if postpaid {
                // Nothing is reserved: the cost becomes an order at the end.
                return UNLIMITED_UNITS;
            }
            minutes_left(&ctx, Some(&flat), false, 1, now, balance, &pricing.held)
        });
        let mut usable: Vec<&HeldPackage> = pricing
            .held
            .iter()
            .filter(|p| p.zones.is_empty() || ctx.zone.is_some_and(|z| p.zones.contains(&z)))
            .collect();
        usable.sort_by_key(|p| (p.expires_at, p.id));
        Ok(Quote {
            unit_ms: ctx.unit_ms,
            price: ctx.price_at(now),
            plan: ctx.plan.as_ref().map(|p| p.name.clone()),
            discount_pct: ctx.discount_pct,
            min_charge: ctx.min_charge(),
            package_now: match charge {
                Charge::Package(id) => Some(id),
                Charge::Money(_) => None,
            },
            first_debit: if postpaid {
                0
            } else {
                ctx.reservation(1, charge)
            },
            units,
            packages: usable.iter().map(|p| p.id).collect(),
        })
    }
}

/// How storage records unit `unit` paid as `c`.
fn unit_charge(ctx: &PriceContext, unit: i64, c: Charge, postpaid: bool) -> UnitCharge {
    UnitCharge {
        unit,
        price: c.money(),
        debit: if postpaid {
            0
        } else {
            ctx.reservation(unit, c)
        },
        package: match c {
            Charge::Package(id) => Some(crate::pricing::PackageTime {
                user_package: id,
                seconds: ctx.unit_ms / 1000,
            }),
            Charge::Money(_) => None,
        },
    }
}

/// The actor.
pub struct SessionActor {
    rec: SessionRecord,
    meter: Meter,
    balance: i64,
    warned_low: bool,
    device: WeakActorRef<DeviceActor>,
    inner: Arc<Inner>,
    timer: Option<JoinHandle<()>>,
    /// The instant the running timer wakes at.
    armed_at: i64,
    ended: Option<EndedView>,
    /// When a heartbeat was last passed on (to the device and the heartbeat writer).
    relayed_at: i64,
    /// Restarts after panics, against restart storms.
    restarts: Restarts,
    /// The user's member group.
    group: Option<i64>,
    /// The packages the user holds (storage has the last word when one is used).
    held: Vec<HeldPackage>,
    /// How each unit so far was paid (unit 1 first). Flat units are `Money(charge_mode)`.
    charges: Vec<Charge>,
    /// Fen debited for unit 1 (its price plus the minimum charge's top-up): the floor of
    /// the bill when unit 1 was paid with money.
    first_debit: i64,
    /// True once any unit was priced by a plan, a group or a package: the session settles
    /// by its units' real prices. False: the flat rules, exactly as before plans existed.
    priced: bool,
    /// The device's flat price, for units no plan prices.
    flat: i64,
}

/// The billing meter of a session as storage holds it.
fn meter_of(rec: &SessionRecord, cfg: &CoordinatorConfig) -> Meter {
    Meter {
        tariff: Tariff {
            unit_ms: cfg.unit_ms,
            free_ms: cfg.free_ms,
            price: rec.charge_mode,
        },
        heartbeat_timeout_ms: cfg.heartbeat_timeout_ms,
        started_at: rec.started_at,
        reserved: rec.reserved_units,
        last_heard: rec.last_heard_at,
        postpaid: rec.billing_mode == BillingMode::Postpaid,
    }
}

/// The session as the kiosk's stream shows it.
fn info_of(rec: &SessionRecord, meter: &Meter, balance: i64) -> SessionInfo {
    let minutes_left = if meter.postpaid {
        UNLIMITED_UNITS
    } else {
        units_left(&meter.tariff, balance)
    };
    SessionInfo {
        session_id: rec.id,
        device_code: rec.device_code.clone(),
        user_id: rec.user_id,
        started_at: rec.started_at,
        charge_mode: rec.charge_mode,
        cost: meter.reserved * rec.charge_mode,
        balance,
        minutes_left,
        paid_until: meter.paid_until(),
    }
}

/// The session as storage holds it, for the device to show before the session's actor
/// has reported (a session taken over or restarted: `paid_until` is what was paid).
pub(crate) fn initial_info(
    rec: &SessionRecord,
    balance: i64,
    cfg: &CoordinatorConfig,
) -> SessionInfo {
    info_of(rec, &meter_of(rec, cfg), balance)
}

/// Heartbeats are passed on at most this often: liveness is judged in seconds, and a
/// kiosk polling many times a second must not cost a message and a write each time.
const RELAY_EVERY_MS: i64 = 1_000;

impl Actor for SessionActor {
    type Args = SessionArgs;
    type Error = kameo::error::Infallible;

    fn name() -> &'static str {
        "Session"
    }

    async fn on_start(args: Self::Args, me: ActorRef<Self>) -> Result<Self, Self::Error> {
        let meter = meter_of(&args.rec, &args.inner.cfg);
        metrics::gauge!(catalog::SESSIONS_ACTIVE).increment(1.0);
        let (group, held, units) = match args.pricing {
            Some(p) => (p.group, p.held, p.first.into_iter().collect()),
            None => load_pricing(&args.inner, &args.rec).await,
        };
        let mut s = SessionActor {
            rec: args.rec,
            meter,
            balance: args.balance,
            warned_low: false,
            device: args.device,
            inner: args.inner,
            timer: None,
            armed_at: i64::MAX,
            ended: None,
            relayed_at: i64::MIN,
            restarts: Restarts::default(),
            group,
            held,
            charges: Vec::new(),
            first_debit: 0,
            priced: false,
            flat: args.flat,
        };
        s.restore_charges(&units);
        if args.fresh {
            metrics::counter!(catalog::SESSIONS_STARTED).increment(1);
            s.inner.events.publish(Event::SessionStarted {
                device_code: s.rec.device_code.clone(),
                session_id: s.rec.id,
                user_id: s.rec.user_id,
                paid_until: s.meter.paid_until(),
                started_at: s.rec.started_at,
                charge_mode: s.rec.charge_mode,
                balance: s.balance,
                units_left: s.units_left(s.balance),
            });
            let info = s.info();
            s.tell_device(Some(ServerEvent::SessionStarted(info)));
        } else {
            s.tell_device(None);
        }
        s.maybe_warn_low();
        // A recovered session may have boundaries or a deadline already due: the first
        // wake happens at once in that case.
        s.arm(&me);
        Ok(s)
    }

    /// A handler panicked: the session is restarted in place from storage (its row and
    /// the user's balance), keeping its address and its directory entries, so the user
    /// and the kiosk can go on at once. Units the database holds as debited are never
    /// debited again (and a debit's ledger id is unique anyway). Beyond the restart limit
    /// (or if storage fails) it stops, and its device starts it again from storage.
    async fn on_panic(
        &mut self,
        me: WeakActorRef<Self>,
        err: PanicError,
    ) -> Result<std::ops::ControlFlow<ActorStopReason>, Self::Error> {
        use std::ops::ControlFlow;
        let now = self.inner.clock.now_ms();
        metrics::counter!(catalog::ACTOR_RESTARTS, "kind" => "session").increment(1);
        if self.ended.is_some() || self.inner.closing() || !self.restarts.allow(now) {
            tracing::error!(session = self.rec.id, error = %err, "session actor panicked: stopping it");
            return Ok(ControlFlow::Break(ActorStopReason::Panicked(err)));
        }
        tracing::warn!(session = self.rec.id, error = %err, "session actor panicked: restarting it from storage");
        let Some(me) = me.upgrade() else {
            return Ok(ControlFlow::Break(ActorStopReason::Panicked(err)));
        };
        let found = self
            .inner
            .store
            .active_session(ActiveKey::Device(self.rec.device_id))
            .await;
        let rec = match found {
            Ok(Some(rec)) if rec.id == self.rec.id => rec,
            Ok(_) => {
                // Ended in storage meanwhile: nothing left to run.
                self.close_without_settling();
                return Ok(ControlFlow::Break(ActorStopReason::Normal));
            }
            Err(e) => {
                tracing::warn!(session = self.rec.id, error = %e, "reloading the session failed: stopping it");
                return Ok(ControlFlow::Break(ActorStopReason::Panicked(err)));
            }
        };
        let balance = match self.inner.store.user_balance(rec.user_id).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(session = self.rec.id, error = %e, "reloading the balance failed: stopping it");
                return Ok(ControlFlow::Break(ActorStopReason::Panicked(err)));
            }
        };
        let mut meter = meter_of(&rec, &self.inner.cfg);
        // What this actor heard is newer than the last flush; postpaid units are not
        // written, so the actor's count stands.
        meter.heard(self.meter.last_heard);
        if meter.postpaid {
            meter.reserved(self.meter.reserved);
        }
        self.meter = meter;
        self.balance = balance;
        let (group, held, units) = load_pricing(&self.inner, &rec).await;
        self.group = group;
        self.held = held;
        self.restore_charges(&units);
        self.rec.reserved_units = rec.reserved_units;
        self.rec.last_heard_at = rec.last_heard_at;
        self.inner
            .remember_session(&self.rec.token, self.rec.user_id, me.clone());
        self.tell_device(None);
        self.arm_at(&me, self.meter.next_wake());
        Ok(ControlFlow::Continue(()))
    }

    /// However the actor stops, its directory entries go (unless they already name a
    /// newer actor for the same session).
    async fn on_stop(
        &mut self,
        me: WeakActorRef<Self>,
        _reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.inner
            .session_stopped(&self.rec.token, self.rec.user_id, me.id());
        metrics::gauge!(catalog::SESSIONS_ACTIVE).decrement(1.0);
        Ok(())
    }
}

impl SessionActor {
    /// Makes sure a `Wake` comes no later than the meter's next boundary or deadline.
    /// A running timer that wakes earlier is kept (waking early only recomputes), so a
    /// keepalive that pushes the deadline back costs no new timer.
    fn arm(&mut self, me: &ActorRef<Self>) {
        let at = self.meter.next_wake();
        let running = self.timer.as_ref().is_some_and(|t| !t.is_finished());
        if !running || at < self.armed_at {
            self.arm_at(me, at);
        }
    }

    fn arm_at(&mut self, me: &ActorRef<Self>, at_ms: i64) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.armed_at = at_ms;
        let at = self.inner.clock.instant_at(at_ms);
        let weak = me.downgrade();
        self.timer = Some(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(me) = weak.upgrade() {
                let _ = me.tell(Wake).try_send();
            }
        }));
    }

    /// The session as the kiosk's stream shows it. A priced session shows the price of
    /// the unit in progress as `charge_mode` and what it has reserved so far as `cost`.
    fn info(&self) -> SessionInfo {
        let mut i = info_of(&self.rec, &self.meter, self.balance);
        if self.priced {
            i.charge_mode = self.price_now();
            i.cost = self.reserved_money();
            i.minutes_left = self.units_left(self.balance);
        }
        i
    }

    /// The pricing of units beginning now (the catalog may have changed since the last).
    fn ctx(&self) -> PriceContext {
        self.inner.pricing().context(
            self.rec.device_id,
            self.flat,
            self.group,
            self.inner.cfg.unit_ms,
        )
    }

    /// Rebuilds how the reserved units were paid from storage's `session_units` (units
    /// missing there were billed flat at the session's `charge_mode`).
    fn restore_charges(&mut self, units: &[UnitCharge]) {
        let flat = self.rec.charge_mode;
        let n = self
            .meter
            .reserved
            .max(units.iter().map(|u| u.unit).max().unwrap_or(0));
        self.priced = !units.is_empty();
        self.charges = (1..=n)
            .map(|u| {
                units
                    .iter()
                    .find(|c| c.unit == u)
                    .map_or(Charge::Money(flat), |c| c.charge())
            })
            .collect();
        self.first_debit = units.iter().find(|c| c.unit == 1).map_or(flat, |c| c.debit);
        if self.meter.postpaid {
            // Postpaid units are not written: they are priced again as they are counted,
            // and nothing was debited (the minimum charge floors the bill all the same).
            self.charges.truncate(1);
            if let Some(&c) = self.charges.first() {
                self.first_debit = self.ctx().reservation(1, c);
            }
        }
    }

    /// The price of the unit in progress (0 when a package covers it).
    fn price_now(&self) -> i64 {
        self.charges
            .last()
            .map_or(self.rec.charge_mode, |c| c.money())
    }

    /// Fen reserved so far (postpaid: accrued).
    fn reserved_money(&self) -> i64 {
        if !self.priced {
            return self.meter.reserved * self.rec.charge_mode;
        }
        let sum: i64 = self.charges.iter().map(|c| c.money()).sum();
        sum + match self.charges.first() {
            Some(Charge::Money(p)) => (self.first_debit - p).max(0),
            _ => 0,
        }
    }

    /// Units the balance still buys from the next boundary on, at their real prices and
    /// with the packages held (flat sessions: as before).
    fn units_left(&self, balance: i64) -> i64 {
        minutes_left(
            &self.ctx(),
            (!self.priced).then_some(&self.meter.tariff),
            self.meter.postpaid,
            self.meter.reserved + 1,
            self.meter.next_boundary(),
            balance,
            &self.held,
        )
    }

    /// Settles an end billed up to `billed_to`: the flat rules for a flat session, else
    /// each billed unit at its recorded price (SPEC §3's free start and the plan's minimum
    /// charge), unused reservations refunded and unused package time given back.
    fn settle(
        &mut self,
        billed_to: i64,
    ) -> (crate::billing::Settlement, Vec<crate::pricing::PackageTime>) {
        if !self.priced {
            return (self.meter.settle(billed_to), Vec::new());
        }
        let t = self.meter.tariff;
        let elapsed = (billed_to - self.rec.started_at).max(0);
        let billed_ms = if self.meter.postpaid {
            elapsed
        } else {
            elapsed.min(self.meter.reserved * t.unit_ms)
        };
        let units = if billed_ms < t.free_ms {
            0
        } else {
            units_started(&t, billed_ms)
        };
        if self.meter.postpaid {
            self.price_postpaid_units(units);
        }
        let s = settle_charges(&self.charges, units, self.first_debit, t.unit_ms);
        (
            crate::billing::Settlement {
                billed_ms,
                cost: s.cost,
                refund: if self.meter.postpaid { 0 } else { s.refund },
            },
            if self.meter.postpaid {
                Vec::new()
            } else {
                s.package_returns
            },
        )
    }

    /// Postpaid: prices the units up to `n` not priced yet, each at its start.
    fn price_postpaid_units(&mut self, n: i64) {
        let ctx = self.ctx();
        while (self.charges.len() as i64) < n {
            let at = self.rec.started_at + self.charges.len() as i64 * ctx.unit_ms;
            self.charges.push(Charge::Money(ctx.price_at(at)));
        }
    }

    /// Keeps the device's copy of the session current and pushes `event` to its kiosk.
    fn tell_device(&self, event: Option<ServerEvent>) {
        if let Some(d) = self.device.upgrade() {
            let _ = d
                .tell(SessionUpdate {
                    info: self.info(),
                    event,
                })
                .try_send();
        }
    }

    fn billing_event(&self) -> ServerEvent {
        let i = self.info();
        ServerEvent::Billing(wire::Billing {
            session_id: i.session_id,
            device_code: i.device_code,
            minutes: self.meter.reserved,
            cost: i.cost,
            balance: i.balance,
            minutes_left: i.minutes_left,
            paid_until: i.paid_until,
            server_time: self.inner.clock.now_ms(),
        })
    }

    /// What a priced session would cost if it ended at `now`.
    fn clone_settle(&self, now: i64) -> i64 {
        let t = self.meter.tariff;
        let elapsed = (now - self.rec.started_at).max(0);
        let billed_ms = if self.meter.postpaid {
            elapsed
        } else {
            elapsed.min(self.meter.reserved * t.unit_ms)
        };
        let units = if billed_ms < t.free_ms {
            0
        } else {
            units_started(&t, billed_ms)
        };
        let mut charges = self.charges.clone();
        if self.meter.postpaid {
            let ctx = self.ctx();
            while (charges.len() as i64) < units {
                let at = self.rec.started_at + charges.len() as i64 * ctx.unit_ms;
                charges.push(Charge::Money(ctx.price_at(at)));
            }
        }
        settle_charges(&charges, units, self.first_debit, t.unit_ms).cost
    }

    fn view(&self, now: i64) -> SessionView {
        SessionView {
            id: self.rec.id,
            token: self.rec.token.clone(),
            user_id: self.rec.user_id,
            openid: self.rec.openid.clone(),
            device_id: self.rec.device_id,
            device_code: self.rec.device_code.clone(),
            started_at: self.rec.started_at,
            now,
            cost_money: if self.priced {
                self.clone_settle(now)
            } else {
                self.meter.cost_at(now)
            },
            cost_time: ((now - self.rec.started_at) / 1000).max(0),
            charge_mode: if self.priced {
                self.price_now()
            } else {
                self.rec.charge_mode
            },
            balance: self.balance,
            paid_until: self.meter.paid_until(),
            reserved: self.meter.reserved,
            last_heard: self.meter.last_heard,
        }
    }

    /// Carries out every step due by `now`. Returns `Err` when storage failed (the caller
    /// retries later; nothing was half-done because every step is one transaction).
    async fn catch_up(&mut self, now: i64) -> Result<(), StoreError> {
        while self.ended.is_none() {
            let Some(step) = self.meter.step(now) else {
                return Ok(());
            };
            match step {
                Step::Reserve { unit, .. } if self.meter.postpaid => self.accrue(unit, now),
                Step::Reserve { unit, due_at } => self.reserve(unit, due_at).await?,
                Step::End {
                    reason,
                    at,
                    billed_to,
                } => {
                    self.finish(reason, at, billed_to).await?;
                }
            }
        }
        Ok(())
    }

    /// Postpaid: units begin without a debit. Nothing is written: the cost is a function
    /// of the start and the end, and a recovered session re-counts its units from the
    /// start time — all the units begun by `now` at once, with one event (a session
    /// recovered after hours must not flood its kiosk's stream).
    fn accrue(&mut self, unit: i64, now: i64) {
        metrics::counter!(catalog::BILLING_TICKS, "outcome" => "accrued").increment(1);
        let begun = units_started(&self.meter.tariff, now - self.rec.started_at);
        self.meter.reserved(unit.max(begun));
        if !self.priced && !self.ctx().is_flat() {
            // A plan now applies: the units so far were flat, the next ones are priced.
            self.priced = true;
        }
        if self.priced {
            self.price_postpaid_units(self.meter.reserved);
        }
        self.inner.events.publish(Event::Billing {
            device_code: self.rec.device_code.clone(),
            session_id: self.rec.id,
            user_id: self.rec.user_id,
            units: self.meter.reserved,
            cost: self.reserved_money(),
            balance: self.balance,
            units_left: UNLIMITED_UNITS,
            paid_until: self.meter.paid_until(),
        });
        self.tell_device(Some(self.billing_event()));
    }

    async fn reserve(&mut self, unit: i64, due_at: i64) -> Result<(), StoreError> {
        // Each unit is priced at its own start by the catalog in force now: a plan change
        // applies from the next unit on, never to one already reserved.
        let ctx = self.ctx();
        let flat = !self.priced && ctx.is_flat() && self.held.is_empty();
        let charge = if flat {
            Charge::Money(self.rec.charge_mode)
        } else {
            ctx.charge_at(due_at, &self.held)
        };
        let r = if flat {
            self.inner
                .store
                .reserve_unit(
                    self.rec.id,
                    self.rec.user_id,
                    unit,
                    self.rec.charge_mode,
                    self.meter.last_heard,
                    self.inner.clock.now_ms(),
                )
                .await
        } else {
            self.inner
                .store
                .reserve_priced_unit(
                    self.rec.id,
                    self.rec.user_id,
                    unit_charge(&ctx, unit, charge, false),
                    self.meter.last_heard,
                    self.inner.clock.now_ms(),
                )
                .await
        };
        match r {
            Ok(Reserve::Reserved { balance }) => {
                if !flat {
                    self.priced = true;
                }
                // Replays of a unit already recorded leave the record as it is.
                if self.charges.len() as i64 == unit - 1 {
                    self.charges.push(charge);
                    if let Charge::Package(id) = charge {
                        consume(&mut self.held, id, ctx.unit_ms);
                    }
                }
                let lag = (self.inner.clock.now_ms() - due_at).max(0) as f64 / 1000.0;
                metrics::histogram!(catalog::BILLING_TICK_LAG).record(lag);
                metrics::counter!(catalog::BILLING_TICKS, "outcome" => "reserved").increment(1);
                self.meter.reserved(unit);
                self.balance = balance;
                let left = self.units_left(balance);
                self.inner.events.publish(Event::Billing {
                    device_code: self.rec.device_code.clone(),
                    session_id: self.rec.id,
                    user_id: self.rec.user_id,
                    units: self.meter.reserved,
                    cost: self.reserved_money(),
                    balance,
                    units_left: left,
                    paid_until: self.meter.paid_until(),
                });
                self.tell_device(Some(self.billing_event()));
                self.maybe_warn_low();
                Ok(())
            }
            Ok(Reserve::Insufficient { balance }) => {
                metrics::counter!(catalog::BILLING_TICKS, "outcome" => "insufficient").increment(1);
                self.balance = balance;
                let Step::End {
                    reason,
                    at,
                    billed_to,
                } = self.meter.exhausted()
                else {
                    return Ok(());
                };
                self.finish(reason, at, billed_to).await
            }
            Ok(Reserve::SessionEnded) => {
                // Ended behind our back (another node, an operator tool): stop quietly.
                self.close_without_settling();
                Ok(())
            }
            Ok(Reserve::PackageGone) => {
                // The package has not a unit's time left after all (used elsewhere, or an
                // operator changed it): forget it; the catch-up prices the unit again.
                if let Charge::Package(id) = charge {
                    self.held.retain(|p| p.id != id);
                }
                Ok(())
            }
            Err(e) => {
                metrics::counter!(catalog::BILLING_TICKS, "outcome" => "error").increment(1);
                metrics::counter!(catalog::STORE_ERRORS, "op" => "reserve_unit").increment(1);
                tracing::warn!(session = self.rec.id, unit, error = %e, "reserving a unit failed; will retry");
                Err(e)
            }
        }
    }

    fn maybe_warn_low(&mut self) {
        if self.meter.postpaid {
            return;
        }
        let left = self.units_left(self.balance);
        if !self.warned_low && left <= self.inner.cfg.low_balance_units {
            self.warned_low = true;
            metrics::counter!(catalog::BALANCE_LOW).increment(1);
            self.inner.events.publish(Event::BalanceLow {
                device_code: self.rec.device_code.clone(),
                session_id: self.rec.id,
                user_id: self.rec.user_id,
                units_left: left,
            });
            self.tell_device(Some(ServerEvent::BalanceLow(wire::BalanceLow {
                session_id: self.rec.id,
                device_code: self.rec.device_code.clone(),
                minutes_left: left,
            })));
        }
    }

    /// Settles and ends the session: one transaction, then everyone is told.
    async fn finish(
        &mut self,
        reason: EndReason,
        at: i64,
        billed_to: i64,
    ) -> Result<(), StoreError> {
        let (s, package_returns) = self.settle(billed_to);
        let end = SessionEnd {
            session_id: self.rec.id,
            user_id: self.rec.user_id,
            ended_at: at,
            reason,
            billed_ms: s.billed_ms,
            cost: s.cost,
            refund: s.refund,
            order_id: self
                .meter
                .postpaid
                // 31 characters, so that `O` + the rest is a WeChat Pay out_trade_no
                // (at most 32).
                .then(|| format!("o{}", &crate::ids::new_token()[..30])),
            package_returns,
        };
        let order_id = end.order_id.clone();
        let ended = match self.inner.store.end_session(end).await {
            Ok(e) => e,
            Err(e) => {
                metrics::counter!(catalog::STORE_ERRORS, "op" => "end_session").increment(1);
                tracing::warn!(session = self.rec.id, error = %e, "ending a session failed");
                return Err(e);
            }
        };
        if !ended.changed {
            self.close_without_settling();
            return Ok(());
        }
        self.balance = ended.balance;
        metrics::counter!(catalog::SESSIONS_ENDED, "reason" => reason.as_str()).increment(1);
        metrics::counter!(catalog::REVENUE_FEN).increment(s.cost.max(0) as u64);
        metrics::counter!(catalog::REFUNDED_FEN).increment(s.refund.max(0) as u64);
        if order_id.is_some() {
            let outcome = if s.cost == 0 { "free" } else { "unpaid" };
            metrics::counter!(catalog::ORDERS_CREATED, "outcome" => outcome).increment(1);
        }
        self.ended = Some(EndedView {
            id: self.rec.id,
            reason,
            ended_at: at,
            cost: s.cost,
            refund: s.refund,
            balance: ended.balance,
            order_id: order_id.clone(),
        });
        self.inner.forget_session(&self.rec.token, self.rec.user_id);
        if let Some(device) = self.device.upgrade() {
            let _ = device
                .tell(SessionClosed {
                    session_id: self.rec.id,
                    reason: Some(reason),
                    cost: s.cost,
                    order_id: order_id.clone().filter(|_| s.cost > 0),
                })
                .try_send();
        }
        self.inner.events.publish(Event::SessionEnded {
            device_code: self.rec.device_code.clone(),
            session_id: self.rec.id,
            user_id: self.rec.user_id,
            reason,
            cost: s.cost,
            order_id: order_id.filter(|_| s.cost > 0),
        });
        tracing::info!(session = self.rec.id, device = %self.rec.device_code, reason = reason.as_str(), cost = s.cost, refund = s.refund, "session ended");
        Ok(())
    }

    fn close_without_settling(&mut self) {
        self.inner.forget_session(&self.rec.token, self.rec.user_id);
        if let Some(device) = self.device.upgrade() {
            let _ = device
                .tell(SessionClosed {
                    session_id: self.rec.id,
                    reason: None,
                    cost: 0,
                    order_id: None,
                })
                .try_send();
        }
        self.ended = Some(EndedView {
            id: self.rec.id,
            reason: EndReason::Operator,
            ended_at: self.inner.clock.now_ms(),
            cost: 0,
            refund: 0,
            balance: self.balance,
            order_id: None,
        });
    }

    /// After any message: stop if ended, else make sure the timer is armed.
    fn after<R: Reply>(&mut self, ctx: &mut Context<Self, R>, store_failed: bool) {
        if self.ended.is_some() {
            if let Some(t) = self.timer.take() {
                t.abort();
            }
            ctx.stop();
        } else if store_failed {
            let retry = self.inner.clock.now_ms() + self.inner.cfg.retry_ms;
            self.arm_at(ctx.actor_ref(), retry);
        } else {
            self.arm(ctx.actor_ref());
        }
    }
}

/// Timer message: do whatever is due now.
#[derive(Debug)]
pub struct Wake;

impl Message<Wake> for SessionActor {
    type Reply = ();

    async fn handle(&mut self, _: Wake, ctx: &mut Context<Self, Self::Reply>) {
        // The timer that sent this is spent (it may not have finished exiting yet).
        self.timer = None;
        self.armed_at = i64::MAX;
        let now = self.inner.clock.now_ms();
        let failed = self.catch_up(now).await.is_err();
        self.after(ctx, failed);
    }
}

/// A sign of life from the kiosk at the given instant (unix ms).
#[derive(Debug)]
pub struct Heard(pub i64);

impl Message<Heard> for SessionActor {
    type Reply = ();

    async fn handle(&mut self, Heard(at): Heard, _ctx: &mut Context<Self, Self::Reply>) {
        if self.ended.is_none() {
            self.meter.heard(at);
            if at.saturating_sub(self.relayed_at) >= RELAY_EVERY_MS {
                self.relayed_at = at;
                self.inner.beat_session(self.rec.id, at);
            }
        }
    }
}

/// The kiosk's keepalive: a heartbeat, answered with the session.
#[derive(Debug)]
pub struct Keepalive {
    /// The device code the kiosk sent (must match the session's).
    pub device_code: String,
}

impl Message<Keepalive> for SessionActor {
    type Reply = Result<SessionView, SessionError>;

    async fn handle(
        &mut self,
        msg: Keepalive,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if self.ended.is_some() || msg.device_code != self.rec.device_code {
            return Err(SessionError::Gone);
        }
        let now = self.inner.clock.now_ms();
        // Due steps first: a deadline that passed before this keepalive still ends the
        // session (the kiosk was silent too long).
        let failed = self.catch_up(now).await.is_err();
        if self.ended.is_none() {
            self.meter.heard(now);
            if now.saturating_sub(self.relayed_at) >= RELAY_EVERY_MS {
                self.relayed_at = now;
                self.inner.beat_session(self.rec.id, now);
                if let Some(d) = self.device.upgrade() {
                    let _ = d.tell(crate::device::Heard(now)).try_send();
                }
            }
        }
        self.after(ctx, failed);
        match self.ended {
            Some(_) => Err(SessionError::Gone),
            None => Ok(self.view(now)),
        }
    }
}

/// Asks for the session as it stands.
#[derive(Debug)]
pub struct View;

impl Message<View> for SessionActor {
    type Reply = Result<SessionView, SessionError>;

    async fn handle(&mut self, _: View, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let now = self.inner.clock.now_ms();
        let failed = self.catch_up(now).await.is_err();
        self.after(ctx, failed);
        match self.ended {
            Some(_) => Err(SessionError::Gone),
            None => Ok(self.view(now)),
        }
    }
}

/// Ends the session now for `reason`.
#[derive(Debug)]
pub struct End {
    /// Why.
    pub reason: EndReason,
}

impl Message<End> for SessionActor {
    type Reply = Result<EndedView, SessionError>;

    async fn handle(&mut self, msg: End, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.ended.is_some() {
            return Err(SessionError::Gone);
        }
        let now = self.inner.clock.now_ms();
        let mut result = self.catch_up(now).await;
        if result.is_ok() && self.ended.is_none() {
            result = self.finish(msg.reason, now, now).await;
        }
        self.after(ctx, result.is_err());
        match (result, self.ended.clone()) {
            (Err(e), _) => Err(SessionError::Store(e)),
            // Ended by the catch-up (balance or heartbeat) before this request: report
            // that end; the caller sees the session as gone.
            (Ok(()), Some(v)) if v.reason == msg.reason => Ok(v),
            (Ok(()), _) => Err(SessionError::Gone),
        }
    }
}

/// The user's balance changed (a recharge or an adjustment) outside the session.
#[derive(Debug)]
pub struct BalanceChanged(pub i64);

impl Message<BalanceChanged> for SessionActor {
    type Reply = ();

    async fn handle(&mut self, m: BalanceChanged, _ctx: &mut Context<Self, Self::Reply>) {
        if self.ended.is_some() {
            return;
        }
        self.balance = m.0;
        if self.units_left(self.balance) > self.inner.cfg.low_balance_units {
            self.warned_low = false;
        }
        // The kiosk sees the new balance at once (paid_until moves only when a unit is
        // reserved).
        self.tell_device(Some(self.billing_event()));
    }
}

/// Test hook: makes the handler panic (to show a panicked actor is restarted).
#[cfg(any(test, feature = "test-hooks"))]
impl Message<crate::device::Crash> for SessionActor {
    type Reply = ();

    async fn handle(&mut self, _: crate::device::Crash, _ctx: &mut Context<Self, Self::Reply>) {
        // A half-done change, as a real bug would leave it.
        self.meter.reserved = 0;
        self.balance = 0;
        panic!("injected panic in a session handler");
    }
}

/// Loads a running session's pricing from storage (after a restart or a panic): the
/// user's group, the packages held and how its reserved units were paid. A failure leaves
/// the session flat for now (logged): billing goes on rather than stopping.
async fn load_pricing(
    inner: &Inner,
    rec: &SessionRecord,
) -> (Option<i64>, Vec<HeldPackage>, Vec<UnitCharge>) {
    let now = inner.clock.now_ms();
    let r = async {
        let group = inner.store.user_group(rec.user_id).await?;
        let held = if rec.billing_mode == BillingMode::Postpaid {
            Vec::new()
        } else {
            inner.store.held_packages(rec.user_id, now).await?
        };
        let units = inner.store.session_units(rec.id).await?;
        Ok::<_, StoreError>((group, held, units))
    }
    .await;
    r.unwrap_or_else(|e| {
        tracing::warn!(session = rec.id, error = %e, "loading a session's pricing failed");
        (None, Vec::new(), Vec::new())
    })
}
