//! The outbox worker: sends what `outbox` recorded (prize notices, 爱流量 callbacks) to
//! the open platform. A row is claimed for a while before it is sent (so two workers
//! never send it at once), marked `sent` once the platform accepted it (and never sent
//! again), retried with exponential backoff on transport errors and `40005` (which also
//! makes the token keeper refresh the token), and marked `failed` on a definite refusal
//! or after `outbox.max_attempts`: operators see those at `GET /ops/outbox`.
//!
//! Delivery is at least once: a crash between the platform's acceptance and the `sent`
//! mark re-sends that one row when its claim runs out.

use std::sync::Mutex;
use std::time::Duration;

use kioskd_actors::catalog;

use super::UpstreamError;
use super::open189::{FlowOrder, PrizeNotice, WeekBind, op};
use super::token::TokenKind;
use crate::services::Services;
use crate::store::OutboxRow;

/// Outbox kinds.
pub mod kind {
    /// `sendPrizeNotice`.
    pub const PRIZE_NOTICE: &str = "prize_notice";
    /// `weekBind/create`.
    pub const WEEK_BIND: &str = "week_bind";
    /// `flowOrders/create`.
    pub const FLOW_ORDER: &str = "flow_order";
}

/// How long a claimed row stays claimed (longer than any one send).
fn claim_ms(s: &Services) -> i64 {
    s.cfg.open189.timeout_ms as i64 * 3 + 5_000
}

/// The delay before attempt `attempts + 1`.
pub fn backoff_ms(base: u64, max: u64, attempts: i64) -> i64 {
    let exp = (attempts - 1).clamp(0, 30) as u32;
    base.saturating_mul(1u64 << exp).min(max) as i64
}

/// Starts the worker; it stops when `shutdown` flips (after the send in progress).
pub fn spawn(
    s: std::sync::Arc<Services>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let poll = Duration::from_millis(s.cfg.outbox.poll_ms);
    tokio::spawn(async move {
        loop {
            if let Err(e) = drain(&s).await {
                tracing::warn!(error = %e, "outbox pass failed");
            }
            if let Ok(d) = s.db.outbox_depth().await {
                metrics::gauge!(catalog::OUTBOX_DEPTH).set(d as f64);
            }
            tokio::select! {
                _ = s.upstream.outbox_wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Sends every due row.
pub async fn drain(s: &Services) -> Result<(), String> {
    loop {
        let now = s.coord.clock().now_ms();
        let Some(row) =
            s.db.outbox_claim(now, claim_ms(s))
                .await
                .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        send(s, row).await?;
    }
}

async fn send(s: &Services, row: OutboxRow) -> Result<(), String> {
    let used = Mutex::new(None::<String>);
    let used = &used;
    let remember = move |t: &str| {
        if let Ok(mut g) = used.lock() {
            *g = Some(t.to_string());
        }
    };
    let r: Result<String, UpstreamError> = match row.kind.as_str() {
        kind::PRIZE_NOTICE => match serde_json::from_str::<PrizeNotice>(&row.payload) {
            Ok(n) => {
                s.upstream
                    .open189_call(op::PRIZE, |c, t| {
                        let x = &n;
                        async move {
                            remember(&t);
                            c.prize_notice(&t, x).await
                        }
                    })
                    .await
            }
            Err(e) => Err(UpstreamError::BadReply(format!("stored payload: {e}"))),
        },
        kind::WEEK_BIND => match serde_json::from_str::<WeekBind>(&row.payload) {
            Ok(b) => {
                s.upstream
                    .open189_call(op::WEEK_BIND, |c, t| {
                        let x = &b;
                        async move {
                            remember(&t);
                            c.week_bind(&t, x).await
                        }
                    })
                    .await
            }
            Err(e) => Err(UpstreamError::BadReply(format!("stored payload: {e}"))),
        },
        kind::FLOW_ORDER => match serde_json::from_str::<FlowOrder>(&row.payload) {
            Ok(o) => {
                s.upstream
                    .open189_call(op::FLOW_ORDER, |c, t| {
                        let x = &o;
                        async move {
                            remember(&t);
                            c.flow_order(&t, x).await
                        }
                    })
                    .await
            }
            Err(e) => Err(UpstreamError::BadReply(format!("stored payload: {e}"))),
        },
        other => Err(UpstreamError::BadReply(format!(
            "unknown outbox kind {other}"
        ))),
    };
    let now = s.coord.clock().now_ms();
    let ob = &s.cfg.outbox;
    match r {
        Ok(result) => {
            s.db.outbox_sent(row.id, &result, now)
                .await
                .map_err(|e| e.to_string())?;
            metrics::counter!(catalog::OUTBOX_SENDS, "outcome" => "sent").increment(1);
        }
        Err(e) => {
            if matches!(e, UpstreamError::Code40005(_)) {
                // The platform's 40005: refresh the token before the retry.
                let t = used.lock().ok().and_then(|g| g.clone());
                if let Some(t) = t {
                    s.upstream.tokens.rejected(TokenKind::Open189, &t).await;
                }
            }
            let next = (e.retryable() && row.attempts < ob.max_attempts)
                .then(|| now + backoff_ms(ob.retry_base_ms, ob.retry_max_ms, row.attempts));
            let outcome = if next.is_some() { "retry" } else { "failed" };
            tracing::warn!(id = row.id, kind = %row.kind, error = %e, outcome, "outbox send failed");
            s.db.outbox_failed(row.id, &e.to_string(), next)
                .await
                .map_err(|e| e.to_string())?;
            metrics::counter!(catalog::OUTBOX_SENDS, "outcome" => outcome).increment(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_ms(100, 1000, 1), 100);
        assert_eq!(backoff_ms(100, 1000, 2), 200);
        assert_eq!(backoff_ms(100, 1000, 4), 800);
        assert_eq!(backoff_ms(100, 1000, 5), 1000);
        assert_eq!(backoff_ms(100, 1000, 500), 1000);
    }
}
