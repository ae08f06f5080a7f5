//! Paid orders: one settlement path for every way a WeChat Pay transaction becomes
//! known (a verified notification, or the reconciler's order query), and the reconciler
//! itself. Settlement checks the transaction against our order and credits once per
//! `transaction_id` (the store's settle-once transaction); what kind of order an
//! `out_trade_no` names decides what "settle" means.
//!
//! Order kinds: recharges (`recharges`, `out_trade_no` starting with `R`) credit the
//! user's balance; postpaid orders (`O` + the order id without its leading `o`) pay the
//! order through `orders::settle_order`.

use std::time::Duration;

use kioskd_actors::catalog;

use crate::services::Services;
use crate::store::Settle;
use crate::upstream::wxpay::Transaction;
use crate::upstream::{UpstreamError, record, wxpay};

/// What kind of order an `out_trade_no` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    /// A balance recharge (`R...`).
    Recharge,
    /// A postpaid session order (`O...`).
    Postpaid,
}

impl OrderKind {
    /// From the order number's prefix.
    pub fn of(out_trade_no: &str) -> Option<Self> {
        match out_trade_no.as_bytes().first() {
            Some(b'R') => Some(OrderKind::Recharge),
            Some(b'O') => Some(OrderKind::Postpaid),
            _ => None,
        }
    }
}

/// The outcome of settling a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Credited now.
    Credited,
    /// Credited before (a duplicate): nothing changed.
    Duplicate,
    /// Does not match our order (mchid, appid, amount, currency, state): nothing changed.
    Mismatch(String),
    /// No such order: nothing changed.
    Unknown,
}

impl Verdict {
    /// The metric `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Verdict::Credited => "credited",
            Verdict::Duplicate => "duplicate",
            Verdict::Mismatch(_) => "mismatch",
            Verdict::Unknown => "unknown_order",
        }
    }
}

/// Checks a successful transaction against our order and settles it once.
pub async fn settle_transaction(s: &Services, t: &Transaction) -> Result<Verdict, String> {
    let cfg = &s.cfg.wechatpay;
    if t.mchid != cfg.mchid {
        return Ok(Verdict::Mismatch("mchid is not ours".into()));
    }
    if t.appid != cfg.appid {
        return Ok(Verdict::Mismatch("appid is not ours".into()));
    }
    if t.trade_state != "SUCCESS" {
        return Ok(Verdict::Mismatch(format!("trade_state {}", t.trade_state)));
    }
    if t.amount.currency != "CNY" {
        return Ok(Verdict::Mismatch("currency is not CNY".into()));
    }
    if t.transaction_id.is_empty() || t.transaction_id.len() > 64 {
        return Ok(Verdict::Mismatch("bad transaction_id".into()));
    }
    match OrderKind::of(&t.out_trade_no) {
        Some(OrderKind::Recharge) => {}
        Some(OrderKind::Postpaid) => return settle_postpaid(s, t).await,
        None => return Ok(Verdict::Unknown),
    }
    let Some(order) =
        s.db.recharge_order(&t.out_trade_no)
            .await
            .map_err(|e| e.to_string())?
    else {
        return Ok(Verdict::Unknown);
    };
    if order.provider != "wechatpay" {
        return Ok(Verdict::Mismatch("not a WeChat Pay order".into()));
    }
    if order.amount != t.amount.total {
        return Ok(Verdict::Mismatch(format!(
            "amount {} is not the order's {}",
            t.amount.total, order.amount
        )));
    }
    let now = s.coord.clock().now_ms();
    let v = match s
        .db
        .settle_recharge(&t.out_trade_no, &t.transaction_id, t.amount.total, now)
        .await
        .map_err(|e| e.to_string())?
    {
        Settle::Credited { user_id, balance } => {
            metrics::counter!(catalog::RECHARGED_FEN).increment(t.amount.total as u64);
            s.coord.balance_changed(user_id, balance).await;
            Verdict::Credited
        }
        Settle::AlreadyCredited { .. } => Verdict::Duplicate,
        Settle::AlreadyPaidOtherwise => {
            tracing::error!(
                out_trade_no = %t.out_trade_no,
                "order already paid by another transaction: needs a refund by hand"
            );
            Verdict::Mismatch("order paid by another transaction".into())
        }
        Settle::UnknownOrder => Verdict::Unknown,
        Settle::AmountMismatch => Verdict::Mismatch("amount".into()),
    };
    if v == Verdict::Credited
        && let Some(p) = t.amount.payer_total
        && let Err(e) = s.db.set_payer_total(&t.out_trade_no, p).await
    {
        tracing::warn!(error = %e, "could not store payer_total");
    }
    Ok(v)
}

/// The WeChat Pay order number of a postpaid order (`o` + 30 characters → `O` + 30).
pub fn postpaid_trade_no(order_id: &str) -> String {
    format!("O{}", order_id.strip_prefix('o').unwrap_or(order_id))
}

/// A verified transaction for a postpaid order: pays the order once (the amount must be
/// the order's), through the same function as sandbox payments.
async fn settle_postpaid(s: &Services, t: &Transaction) -> Result<Verdict, String> {
    let order_id = format!("o{}", &t.out_trade_no[1..]);
    if !crate::orders::valid_order_id(&order_id) {
        return Ok(Verdict::Unknown);
    }
    use crate::store::OrderSettle;
    match crate::orders::settle_order(s, &order_id, "wechatpay", &t.transaction_id, t.amount.total)
        .await
        .map_err(|e| e.to_string())?
    {
        OrderSettle::Paid { .. } => Ok(Verdict::Credited),
        OrderSettle::AlreadyPaid { .. } => Ok(Verdict::Duplicate),
        OrderSettle::AlreadyPaidOtherwise => {
            tracing::error!(
                out_trade_no = %t.out_trade_no,
                "postpaid order already paid by another transaction: needs a refund by hand"
            );
            Ok(Verdict::Mismatch(
                "order paid by another transaction".into(),
            ))
        }
        OrderSettle::UnknownOrder => Ok(Verdict::Unknown),
        OrderSettle::AmountMismatch => Ok(Verdict::Mismatch("amount".into())),
    }
}

/// Settles WeChat Pay orders that never got a notification: every
/// `reconcile_interval_seconds`, each open order older than `reconcile_after_seconds`
/// is queried; paid ones are settled like a notification, closed or expired ones are
/// given up. Stops when `shutdown` flips (after the pass in progress). None when WeChat
/// Pay is not configured.
pub fn spawn_reconciler(
    s: std::sync::Arc<Services>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    s.upstream.pay.as_ref()?;
    let every = Duration::from_secs(s.cfg.wechatpay.reconcile_interval_seconds);
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = reconcile_once(&s).await {
                tracing::warn!(error = %e, "reconciliation pass failed");
            }
        }
    }))
}

/// One reconciliation pass; returns how many orders were looked at.
pub async fn reconcile_once(s: &Services) -> Result<usize, String> {
    let Some(pay) = &s.upstream.pay else {
        return Ok(0);
    };
    let cfg = &s.cfg.wechatpay;
    let now = s.coord.clock().now_ms();
    let after = cfg.reconcile_after_seconds * 1000;
    let orders =
        s.db.unpaid_wechat_orders(now - after, now - after, 100)
            .await
            .map_err(|e| e.to_string())?;
    let n = orders.len();
    for (no, ctime) in orders {
        let r = pay.query(&no).await;
        record(wxpay::op::QUERY, &r);
        let expired = now - ctime > cfg.order_expire_seconds * 1000;
        let outcome = match r {
            Ok(Some(t)) if t.trade_state == "SUCCESS" => {
                let v = settle_transaction(s, &t).await?;
                if let Verdict::Mismatch(m) = &v {
                    tracing::error!(out_trade_no = %no, reason = %m, "queried payment does not match its order");
                }
                v.outcome()
            }
            Ok(Some(t)) if t.trade_state == "CLOSED" || t.trade_state == "PAYERROR" => {
                s.db.mark_closed(&no, now)
                    .await
                    .map_err(|e| e.to_string())?;
                "closed"
            }
            Ok(None) if expired => {
                s.db.mark_closed(&no, now)
                    .await
                    .map_err(|e| e.to_string())?;
                "closed"
            }
            Ok(Some(t)) if expired && t.trade_state == "NOTPAY" => {
                let c = pay.close(&no).await;
                record(wxpay::op::CLOSE, &c);
                if c.is_ok() {
                    // Query once more: the user may have paid just before the close.
                    if let Ok(Some(t)) = pay.query(&no).await
                        && t.trade_state == "SUCCESS"
                    {
                        settle_transaction(s, &t).await?;
                        "credited"
                    } else {
                        s.db.mark_closed(&no, now)
                            .await
                            .map_err(|e| e.to_string())?;
                        "closed"
                    }
                } else {
                    "error"
                }
            }
            Ok(_) => "unpaid",
            Err(UpstreamError::Transport(e)) => {
                tracing::warn!(error = %e, "order query failed");
                "error"
            }
            Err(e) => {
                tracing::warn!(error = %e, "order query refused");
                "error"
            }
        };
        s.db.mark_checked(&no, now)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!(catalog::PAYMENTS_RECONCILED, "outcome" => outcome).increment(1);
    }
    Ok(n)
}
