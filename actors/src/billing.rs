//! The billing rules of SPEC §3 as pure functions and a pure state machine.
//!
//! A prepaid session reserves (debits) each unit when it begins, so the balance never goes
//! below zero and the kiosk always knows how far it is paid. At the end the session costs
//! nothing within the free start and `ceil(billed / unit) * price` otherwise; whatever was
//! reserved beyond that is refunded. `Meter` decides *what* must happen at a given instant
//! (reserve the next unit, or end the session); the session actor carries it out against
//! the store. Ledger ids are a function of the session and the unit index, so replaying a
//! step can never debit twice.
//!
//! A postpaid session (SPEC §3, dialect B) runs the same clock with nothing reserved: a
//! unit "begins" (the kiosk sees the cost grow) without touching the balance, the balance
//! never runs out, and the end costs `cost(billed)` with nothing to refund; the store turns
//! that cost into an order the user pays afterwards.

use serde::{Deserialize, Serialize};

/// Prices and time units. All times in milliseconds, money in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    /// Length of one billing unit ("minute"): 60,000 in production.
    pub unit_ms: i64,
    /// The free start: a session billed for less than this costs nothing.
    pub free_ms: i64,
    /// Fen per unit (`charge_mode`).
    pub price: i64,
}

/// Why a session ended (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The kiosk logged out (`/windows/logout`).
    UserLogout,
    /// The phone ended it (`/windows/offline`).
    PhoneOffline,
    /// The balance could not cover the next unit.
    BalanceExhausted,
    /// The kiosk was silent longer than the heartbeat timeout.
    HeartbeatTimeout,
    /// An operator ended it (lock command).
    Operator,
    /// The device was put into maintenance.
    Maintenance,
}

impl EndReason {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::UserLogout => "user_logout",
            EndReason::PhoneOffline => "phone_offline",
            EndReason::BalanceExhausted => "balance_exhausted",
            EndReason::HeartbeatTimeout => "heartbeat_timeout",
            EndReason::Operator => "operator",
            EndReason::Maintenance => "maintenance",
        }
    }

    /// Every reason, for metrics and tests.
    pub const ALL: [EndReason; 6] = [
        EndReason::UserLogout,
        EndReason::PhoneOffline,
        EndReason::BalanceExhausted,
        EndReason::HeartbeatTimeout,
        EndReason::Operator,
        EndReason::Maintenance,
    ];
}

impl std::str::FromStr for EndReason {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        EndReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(())
    }
}

/// What a session costs when billed for `billed_ms`.
pub fn cost(t: &Tariff, billed_ms: i64) -> i64 {
    if billed_ms < t.free_ms {
        0
    } else {
        units_started(t, billed_ms) * t.price
    }
}

/// How many units have begun within `elapsed_ms` (`ceil(elapsed / unit)`).
pub fn units_started(t: &Tariff, elapsed_ms: i64) -> i64 {
    let e = elapsed_ms.max(0);
    (e + t.unit_ms - 1) / t.unit_ms
}

/// Reported for free devices (price 0), where the balance never runs out: a number a
/// JavaScript client still holds exactly.
pub const UNLIMITED_UNITS: i64 = 1_000_000;

/// Whole units the balance still covers (at most `UNLIMITED_UNITS`).
pub fn units_left(t: &Tariff, balance: i64) -> i64 {
    if t.price <= 0 {
        UNLIMITED_UNITS
    } else {
        (balance.max(0) / t.price).min(UNLIMITED_UNITS)
    }
}

/// The final account of a session: what it cost and what is refunded of its reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Time billed, in milliseconds.
    pub billed_ms: i64,
    /// What the session costs, in fen.
    pub cost: i64,
    /// Reserved fen given back.
    pub refund: i64,
}

/// Settles a session that reserved `reserved` units and is billed for `billed_ms`.
/// The bill never exceeds what was reserved: `Meter` reserves every unit before it is used.
pub fn settle(t: &Tariff, reserved: i64, billed_ms: i64) -> Settlement {
    let billed_ms = billed_ms.clamp(0, reserved * t.unit_ms);
    let cost = cost(t, billed_ms);
    Settlement {
        billed_ms,
        cost,
        refund: reserved * t.price - cost,
    }
}

/// The next thing a prepaid session must do at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Debit unit number `unit` (1-based), due at `due_at`.
    Reserve { unit: i64, due_at: i64 },
    /// End the session at `at`, billing up to `billed_to`.
    End {
        reason: EndReason,
        at: i64,
        billed_to: i64,
    },
}

/// The billing clock of one prepaid session: a pure state machine over unix-ms instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    /// Prices and units.
    pub tariff: Tariff,
    /// Heartbeat timeout in milliseconds.
    pub heartbeat_timeout_ms: i64,
    /// When the session started.
    pub started_at: i64,
    /// Units debited so far (unit 1 is reserved at the start).
    pub reserved: i64,
    /// The last time the kiosk was heard from.
    pub last_heard: i64,
    /// Postpaid: units begin without a debit and the end bills the cost as an order.
    pub postpaid: bool,
}

impl Meter {
    /// When unit `reserved + 1` begins.
    pub fn next_boundary(&self) -> i64 {
        self.started_at + self.reserved * self.tariff.unit_ms
    }

    /// The instant up to which the session is paid.
    pub fn paid_until(&self) -> i64 {
        self.next_boundary()
    }

    /// When the heartbeat timeout fires if nothing is heard before.
    pub fn deadline(&self) -> i64 {
        self.last_heard + self.heartbeat_timeout_ms
    }

    /// The next instant at which `step` will have something to do.
    pub fn next_wake(&self) -> i64 {
        self.next_boundary().min(self.deadline())
    }

    /// Records a sign of life; never moves backwards.
    pub fn heard(&mut self, at: i64) {
        self.last_heard = self.last_heard.max(at);
    }

    /// What is due at `now`, in time order: a heartbeat deadline at or before the next
    /// boundary wins over the reservation at that boundary.
    pub fn step(&self, now: i64) -> Option<Step> {
        let boundary = self.next_boundary();
        let deadline = self.deadline();
        if deadline <= now && deadline <= boundary {
            return Some(Step::End {
                reason: EndReason::HeartbeatTimeout,
                at: deadline,
                billed_to: self.last_heard,
            });
        }
        if boundary <= now {
            return Some(Step::Reserve {
                unit: self.reserved + 1,
                due_at: boundary,
            });
        }
        None
    }

    /// The reservation of `unit` succeeded.
    pub fn reserved(&mut self, unit: i64) {
        self.reserved = self.reserved.max(unit);
    }

    /// The step to take when the balance cannot cover unit `reserved + 1`.
    pub fn exhausted(&self) -> Step {
        let at = self.next_boundary();
        Step::End {
            reason: EndReason::BalanceExhausted,
            at,
            billed_to: at,
        }
    }

    /// Settles an end at `billed_to` (the end time, or the last heartbeat). Postpaid:
    /// nothing was reserved, the whole cost is due and nothing is refunded.
    pub fn settle(&self, billed_to: i64) -> Settlement {
        if self.postpaid {
            let billed_ms = (billed_to - self.started_at).max(0);
            return Settlement {
                billed_ms,
                cost: cost(&self.tariff, billed_ms),
                refund: 0,
            };
        }
        settle(&self.tariff, self.reserved, billed_to - self.started_at)
    }

    /// What the session would cost if it ended at `now`.
    pub fn cost_at(&self, now: i64) -> i64 {
        self.settle(now).cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    fn tariff() -> Tariff {
        Tariff {
            unit_ms: MIN,
            free_ms: 30_000,
            price: 5,
        }
    }

    fn meter(started: i64) -> Meter {
        Meter {
            tariff: tariff(),
            heartbeat_timeout_ms: 300_000,
            started_at: started,
            reserved: 1,
            last_heard: started,
            postpaid: false,
        }
    }

    /// Runs a meter against a wallet up to `until`, with the kiosk heard at `heard`
    /// instants, ending at `end` if given. Returns (cost, balance, reason).
    fn simulate(
        balance: i64,
        heard: &[i64],
        end: Option<i64>,
        until: i64,
    ) -> (i64, i64, Option<EndReason>) {
        let t = tariff();
        let mut bal = balance - t.price;
        let mut m = meter(0);
        let mut events: Vec<i64> = heard.to_vec();
        events.sort();
        let mut hi = 0;
        let mut now = 0;
        while now <= until {
            // As the actor does: due steps first, then the event that arrived now.
            while let Some(step) = m.step(now) {
                match step {
                    Step::Reserve { unit, .. } => {
                        if bal >= t.price {
                            bal -= t.price;
                            m.reserved(unit);
                        } else {
                            let Step::End {
                                reason, billed_to, ..
                            } = m.exhausted()
                            else {
                                unreachable!()
                            };
                            let s = m.settle(billed_to);
                            return (s.cost, bal + s.refund, Some(reason));
                        }
                    }
                    Step::End {
                        reason, billed_to, ..
                    } => {
                        let s = m.settle(billed_to);
                        return (s.cost, bal + s.refund, Some(reason));
                    }
                }
            }
            while hi < events.len() && events[hi] <= now {
                m.heard(events[hi]);
                hi += 1;
            }
            if let Some(e) = end
                && e == now
            {
                let s = m.settle(now);
                return (s.cost, bal + s.refund, Some(EndReason::UserLogout));
            }
            now += 1_000;
        }
        (m.reserved * t.price, bal, None)
    }

    #[test]
    fn spec_balance_12_exhausts_at_minute_three() {
        let heard: Vec<i64> = (0..=200).map(|s| s * 1_000).collect();
        let (cost, bal, reason) = simulate(12, &heard, None, 200_000);
        assert_eq!(
            (cost, bal, reason),
            (10, 2, Some(EndReason::BalanceExhausted))
        );
    }

    #[test]
    fn spec_leave_within_free_start_costs_nothing() {
        assert_eq!(
            simulate(100, &[0], Some(20_000), 30_000),
            (0, 100, Some(EndReason::UserLogout))
        );
    }

    #[test]
    fn spec_leave_at_150_costs_three_minutes() {
        let heard: Vec<i64> = (0..=150).map(|s| s * 1_000).collect();
        assert_eq!(
            simulate(100, &heard, Some(150_000), 200_000),
            (15, 85, Some(EndReason::UserLogout))
        );
    }

    #[test]
    fn spec_heartbeat_timeout_bills_to_last_heartbeat() {
        let heard: Vec<i64> = (0..=130).map(|s| s * 1_000).collect();
        let (cost, bal, reason) = simulate(100, &heard, None, 1_000_000);
        assert_eq!(
            (cost, bal, reason),
            (15, 85, Some(EndReason::HeartbeatTimeout))
        );
    }

    #[test]
    fn heartbeat_deadline_at_a_boundary_ends_before_reserving() {
        let mut m = meter(0);
        m.reserved = 7;
        m.last_heard = 120_000; // deadline 420_000 == boundary of unit 8
        assert_eq!(
            m.step(420_000),
            Some(Step::End {
                reason: EndReason::HeartbeatTimeout,
                at: 420_000,
                billed_to: 120_000
            })
        );
    }

    #[test]
    fn costs_follow_the_formula() {
        let t = tariff();
        assert_eq!(cost(&t, 29_999), 0);
        assert_eq!(cost(&t, 30_000), 5);
        assert_eq!(cost(&t, 60_000), 5);
        assert_eq!(cost(&t, 60_001), 10);
        assert_eq!(units_left(&t, 12), 2);
    }

    /// SPEC §3's postpaid vector: 1.32 yuan a minute, `offline` at t=185 s: 4 minutes,
    /// 528 fen, nothing refunded.
    #[test]
    fn spec_postpaid_offline_at_185_costs_four_minutes() {
        let mut m = meter(0);
        m.tariff.price = 132;
        m.postpaid = true;
        assert_eq!(
            m.settle(185_000),
            Settlement {
                billed_ms: 185_000,
                cost: 528,
                refund: 0
            }
        );
        assert_eq!(m.settle(29_999).cost, 0);
        // Units not yet "begun" on the meter do not cap the bill (nothing was reserved).
        m.reserved = 1;
        assert_eq!(m.settle(3_600_000).cost, 60 * 132);
    }

    proptest! {
        /// Postpaid: the cost is `ceil(billed / unit) * price` after the free start, for
        /// any length, and never refunds.
        #[test]
        fn postpaid_cost_follows_the_formula(price in 0i64..100_000, secs in 0i64..400_000) {
            let mut m = meter(0);
            m.tariff.price = price;
            m.postpaid = true;
            let s = m.settle(secs * 1_000);
            let expect = if secs < 30 { 0 } else { ((secs + 59) / 60) * price };
            prop_assert_eq!(s.cost, expect);
            prop_assert_eq!(s.refund, 0);
        }

        /// Any sequence of heartbeats and an optional end: the cost is 0 within the free
        /// start, else ceil(billed / unit) * price, billed never past the last heartbeat
        /// (heartbeat timeout) nor past what was reserved; the wallet never goes negative
        /// and balance + cost is what the user started with.
        #[test]
        fn billing_rules_hold(
            balance in 0i64..200,
            heard in proptest::collection::vec(0i64..900, 0..30),
            end in proptest::option::of(0i64..900),
        ) {
            let t = tariff();
            prop_assume!(balance >= t.price);
            let heard_ms: Vec<i64> = heard.iter().map(|s| s * 1_000).collect();
            let end_ms = end.map(|s| s * 1_000);
            let (cost, bal, reason) = simulate(balance, &heard_ms, end_ms, 2_000_000);
            prop_assert!(bal >= 0);
            prop_assert_eq!(bal + cost, balance);
            let reason = reason.expect("every session ends within the horizon");
            // The last heartbeat that arrived before the session timed out.
            let mut sorted = heard_ms.clone();
            sorted.sort();
            let mut last_heard = 0;
            for h in sorted {
                if h < last_heard + 300_000 && end_ms.is_none_or(|e| h <= e) {
                    last_heard = last_heard.max(h);
                }
            }
            match reason {
                EndReason::UserLogout => {
                    let e = end_ms.unwrap();
                    prop_assert_eq!(cost, if e < t.free_ms { 0 } else { ((e + t.unit_ms - 1) / t.unit_ms) * t.price });
                }
                EndReason::HeartbeatTimeout => {
                    let expect = if last_heard < t.free_ms { 0 } else { ((last_heard + t.unit_ms - 1) / t.unit_ms) * t.price };
                    prop_assert_eq!(cost, expect);
                }
                EndReason::BalanceExhausted => {
                    prop_assert_eq!(cost % t.price, 0);
                    prop_assert!(bal < t.price);
                }
                _ => prop_assert!(false, "unexpected reason"),
            }
        }
    }
}
