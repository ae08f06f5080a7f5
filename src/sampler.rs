//! The metric sampler: gauges that are read rather than counted as things happen —
//! sessions past their deadlines, sessions by billing mode, devices registered and online
//! (by transport), kiosk and terminal command queues, attendance terminals registered,
//! actors and their mailboxes, and whether the Redis broker answers. Storage is the
//! source for the session and queue gauges, so a stuck actor shows up there.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kioskd_actors::catalog as c;

use crate::services::Services;

/// Samples every `metrics.sample_interval_ms`, until dropped (the application owns the
/// task and aborts it at shutdown).
pub async fn run(s: std::sync::Arc<Services>) {
    let every = Duration::from_millis(s.cfg.metrics.sample_interval_ms.max(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sample(&s).await;
    }
}

fn mode_label(m: &str) -> &'static str {
    match m {
        "postpaid" => "postpaid",
        "prepaid" => "prepaid",
        _ => "other",
    }
}

/// Takes one reading of everything.
pub async fn sample(s: &Services) {
    let cfg = s.coord.config();
    let now = s.coord.clock().now_ms();
    match s
        .db
        .readings(
            now,
            cfg.unit_ms,
            cfg.heartbeat_timeout_ms,
            s.cfg.metrics.overdue_grace_seconds as i64 * 1000,
        )
        .await
    {
        Ok(r) => {
            let mut by_mode = [("prepaid", 0i64), ("postpaid", 0i64), ("other", 0i64)];
            for m in &r.active_by_mode {
                let l = mode_label(&m.billing_mode);
                if let Some(e) = by_mode.iter_mut().find(|(k, _)| *k == l) {
                    e.1 += m.sessions;
                }
            }
            for (m, n) in by_mode {
                if m != "other" || n > 0 {
                    metrics::gauge!(c::SESSIONS_BY_MODE, "billing_mode" => m).set(n as f64);
                }
            }
            metrics::gauge!(c::SESSIONS_OVERDUE, "deadline" => "paid_until")
                .set(r.overdue_paid as f64);
            metrics::gauge!(c::SESSIONS_OVERDUE, "deadline" => "heartbeat")
                .set(r.overdue_heartbeat as f64);
            metrics::gauge!(c::DEVICES_REGISTERED).set(r.devices_registered as f64);
            let ws = s.kiosk_sockets.load(Ordering::Relaxed) as i64;
            metrics::gauge!(c::DEVICES_ONLINE, "transport" => "ws").set(ws as f64);
            metrics::gauge!(c::DEVICES_ONLINE, "transport" => "http")
                .set((r.devices_online - ws).max(0) as f64);
            metrics::gauge!(c::COMMANDS_PENDING).set(r.kiosk_commands_pending as f64);
            metrics::gauge!(c::COMMANDS_OLDEST_AGE).set(r.kiosk_commands_oldest_ms as f64 / 1000.0);
            metrics::gauge!(c::ATT_COMMANDS_PENDING).set(r.terminal_commands_pending as f64);
            metrics::gauge!(c::ATT_COMMANDS_OLDEST_AGE)
                .set(r.terminal_commands_oldest_ms as f64 / 1000.0);
            metrics::gauge!(c::ATT_TERMINALS_REGISTERED).set(r.terminals_registered as f64);
        }
        Err(e) => {
            metrics::counter!(c::SAMPLER_ERRORS).increment(1);
            tracing::warn!(error = %e, "metric sampler could not read storage");
        }
    }
    let a = s.coord.actor_stats();
    let t = s.terminals.actor_stats();
    for (kind, m) in [
        ("device", a.devices),
        ("session", a.sessions),
        ("terminal", t),
    ] {
        metrics::gauge!(c::ACTORS, "kind" => kind).set(m.actors as f64);
        metrics::gauge!(c::ACTOR_MAILBOX_DEPTH, "kind" => kind).set(m.queued as f64);
        metrics::gauge!(c::ACTOR_MAILBOX_MAX, "kind" => kind).set(m.max_queued as f64);
    }
    if let Some(b) = &s.broker {
        let up = b.ping().await.is_ok();
        if !up {
            metrics::counter!(c::BROKER_ERRORS, "op" => "ping").increment(1);
        }
        metrics::gauge!(c::BROKER_CONNECTED).set(if up { 1.0 } else { 0.0 });
    }
}
