//! Paid orders: one settlement path for every way a WeChat Pay transaction becomes
//! known (a verified notification, or the reconciler's order query), and the reconciler
//! itself. Settlement checks the transaction against our order and credits once per
//! `transaction_id` (the store's settle-once transaction); what kind of order an
//! `out_trade_no` names decides what "settle" means.
//!
//! Order kinds: recharges (`recharges`, `out_trade_no` starting with `R`) credit the
//! user's balance; postpaid orders (`O` + the order id without its leading `o`) pay the
//! order through `orders::settle_order`; package orders (`package_orders`, `P...`)
//! grant the package bought (`Db::settle_package_order`).

use std::time::Duration;

use kioskd_actors::catalog;

use crate::config::PaymentsMode;
use crate::services::Services;
use crate::store::{OrderSettle, PackageSettle, Settle, UserRow};
pub use crate::store::{PageQuery, RechargeRow};
use crate::upstream::wxpay::Transaction;
use crate::upstream::{UpstreamError, record, wxpay};
use kioskd_actors::ports::StoreError;

/// What kind of order an `out_trade_no` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    /// A balance recharge (`R...`).
    Recharge,
    /// A postpaid session order (`O...`).
    Postpaid,
    /// A package bought by WeChat Pay (`P...`).
    Package,
}

impl OrderKind {
    /// From the order number's prefix.
    pub fn of(out_trade_no: &str) -> Option<Self> {
        match out_trade_no.as_bytes().first() {
            Some(b'R') => Some(OrderKind::Recharge),
            Some(b'O') => Some(OrderKind::Postpaid),
            Some(b'P') => Some(OrderKind::Package),
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

/// Why a transaction could not be settled: nothing was credited, and WeChat Pay (or the
/// reconciler's next pass) will ask again.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// Checks a successful transaction against our order and settles it once.
pub async fn settle_transaction(s: &Services, t: &Transaction) -> Result<Verdict, SettleError> {
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
        Some(OrderKind::Package) => return settle_package(s, t).await,
        None => return Ok(Verdict::Unknown),
    }
    let Some(order) = s.db.recharge_order(&t.out_trade_no).await? else {
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
        .await?
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
async fn settle_postpaid(s: &Services, t: &Transaction) -> Result<Verdict, SettleError> {
    let order_id = format!("o{}", &t.out_trade_no[1..]);
    if !crate::orders::valid_order_id(&order_id) {
        return Ok(Verdict::Unknown);
    }
    use crate::store::OrderSettle;
    match crate::orders::settle_order(s, &order_id, "wechatpay", &t.transaction_id, t.amount.total)
        .await?
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

/// A verified transaction for a package order: grants the package once (the amount
/// must be the order's), in the transaction that marks the order paid.
async fn settle_package(s: &Services, t: &Transaction) -> Result<Verdict, SettleError> {
    let Some(order) = s.db.package_order(&t.out_trade_no).await? else {
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
    let v = package_verdict(
        &t.out_trade_no,
        s.db.settle_package_order(&t.out_trade_no, &t.transaction_id, t.amount.total, now)
            .await?,
    );
    if v == Verdict::Credited
        && let Some(p) = t.amount.payer_total
        && let Err(e) = s.db.set_payer_total(&t.out_trade_no, p).await
    {
        tracing::warn!(error = %e, "could not store payer_total");
    }
    Ok(v)
}

fn package_verdict(out_trade_no: &str, r: PackageSettle) -> Verdict {
    match r {
        // The balance does not move; the package is held from the next session's start.
        PackageSettle::Granted { .. } => {
            metrics::counter!(catalog::PACKAGES_SOLD, "source" => "wechat").increment(1);
            Verdict::Credited
        }
        PackageSettle::AlreadyGranted => Verdict::Duplicate,
        PackageSettle::AlreadyPaidOtherwise => {
            tracing::error!(
                out_trade_no = %out_trade_no,
                "package order already paid by another transaction: needs a refund by hand"
            );
            Verdict::Mismatch("order paid by another transaction".into())
        }
        PackageSettle::UnknownOrder => Verdict::Unknown,
        PackageSettle::AmountMismatch => Verdict::Mismatch("amount".into()),
        PackageSettle::NoPackage => {
            tracing::error!(out_trade_no = %out_trade_no, "paid package order for a deleted package: needs a refund by hand");
            Verdict::Mismatch("package gone".into())
        }
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
pub async fn reconcile_once(s: &Services) -> Result<usize, SettleError> {
    let Some(pay) = &s.upstream.pay else {
        return Ok(0);
    };
    let cfg = &s.cfg.wechatpay;
    let now = s.coord.clock().now_ms();
    let after = cfg.reconcile_after_seconds * 1000;
    let orders =
        s.db.unpaid_wechat_orders(now - after, now - after, 100)
            .await?;
    let n = orders.len();
    for crate::store::UnpaidOrder {
        out_trade_no: no,
        created_at: ctime,
    } in orders
    {
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
                s.db.mark_closed(&no, now).await?;
                "closed"
            }
            Ok(None) if expired => {
                s.db.mark_closed(&no, now).await?;
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
                        s.db.mark_closed(&no, now).await?;
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
        s.db.mark_checked(&no, now).await?;
        metrics::counter!(catalog::PAYMENTS_RECONCILED, "outcome" => outcome).increment(1);
    }
    Ok(n)
}

/// What a phone's recharge or order payment asks of the phone next.
#[derive(Debug)]
pub enum Payment {
    /// Settled already (sandbox): nothing to do.
    Done,
    /// WeChat Pay: the parameters the H5 page passes to `getBrandWCPayRequest`.
    Pay(wxpay::PayParams),
}

/// Why a phone's payment was not started.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The amount is not whole fen from 1 to `max` (a recharge).
    #[error("amount out of range (1 to {max})")]
    BadAmount {
        /// The largest recharge, fen.
        max: i64,
    },
    /// The order is unknown, or another user's.
    #[error("no such order")]
    NoSuchOrder,
    /// No such package on sale.
    #[error("package not on sale")]
    NotOnSale,
    /// WeChat Pay needs the user's payment openid, which a fresh sign-in gets.
    #[error("no payment openid")]
    NoPayOpenid,
    /// WeChat Pay refused or is unreachable (logged where it happened).
    #[error("wechat pay order failed")]
    Upstream,
    /// Storage failed: nothing was credited.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Settlement or configuration failed: nothing was credited.
    #[error("{0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> PayError {
    PayError::Internal(e.to_string())
}

/// A recharge of `amount` fen for user `u` (`GET /wechat/recharge/<amount>`). Sandbox:
/// the payment "arrives" at once, through the same settlement a verified WeChat Pay
/// notification uses. WeChat Pay: the order is stored first, then created at WeChat Pay
/// (JSAPI); nothing is credited here, only a verified notification or the reconciler's
/// query credits.
pub async fn recharge(s: &Services, u: &UserRow, amount: i64) -> Result<Payment, PayError> {
    let max = s.cfg.payments.max_recharge_fen;
    if amount <= 0 || amount > max {
        return Err(PayError::BadAmount { max });
    }
    if s.cfg.payments.mode == PaymentsMode::Wechatpay {
        return wechatpay_recharge(s, u, amount).await.map(Payment::Pay);
    }
    let now = s.coord.clock().now_ms();
    let out_trade_no = format!("R{}", kioskd_actors::ids::new_token());
    s.db.create_recharge(u.id, amount, "sandbox", &out_trade_no, now)
        .await
        .map_err(internal)?;
    match s
        .db
        .settle_recharge(
            &out_trade_no,
            &format!("sandbox-{out_trade_no}"),
            amount,
            now,
        )
        .await?
    {
        Settle::Credited { user_id, balance } => {
            metrics::counter!(catalog::RECHARGED_FEN).increment(amount as u64);
            s.coord.balance_changed(user_id, balance).await;
            Ok(Payment::Done)
        }
        other => Err(PayError::Internal(format!("sandbox settlement: {other:?}"))),
    }
}

async fn wechatpay_recharge(
    s: &Services,
    u: &UserRow,
    amount: i64,
) -> Result<wxpay::PayParams, PayError> {
    let payer = payer_openid(s, u).await?;
    let now = s.coord.clock().now_ms();
    // 32 characters at most (WeChat Pay's limit).
    let out_trade_no: String = format!("R{}", kioskd_actors::ids::new_token())
        .chars()
        .take(32)
        .collect();
    s.db.create_recharge(u.id, amount, "wechatpay", &out_trade_no, now)
        .await
        .map_err(internal)?;
    let (prepay, params) = jsapi_order(s, &out_trade_no, amount, &payer).await?;
    s.db.set_prepay_id(&out_trade_no, &prepay, now).await?;
    Ok(params)
}

/// Pays postpaid order `order_id` of user `u` (`POST /wechat/order/pay`). Sandbox
/// settles it at once through `orders::settle_order`, the function a verified WeChat
/// Pay notification uses; WeChat Pay creates a JSAPI order (kept so the reconciler can
/// settle it by query if no notification comes). Paying a paid order again is `Done`
/// and changes nothing; someone else's order is as unknown as a missing one.
pub async fn pay_order(s: &Services, u: &UserRow, order_id: &str) -> Result<Payment, PayError> {
    if !crate::orders::valid_order_id(order_id) {
        return Err(PayError::NoSuchOrder);
    }
    let o = match s.db.order(order_id).await? {
        Some(o) if o.user_id == u.id => o,
        _ => return Err(PayError::NoSuchOrder),
    };
    if o.paid {
        return Ok(Payment::Done);
    }
    if s.cfg.payments.mode != PaymentsMode::Sandbox {
        // WeChat Pay: only a verified notification (or the order query) pays it.
        let payer = payer_openid(s, u).await?;
        let out_trade_no = postpaid_trade_no(&o.id);
        let (prepay, params) = jsapi_order(s, &out_trade_no, o.amount, &payer).await?;
        let now = s.coord.clock().now_ms();
        s.db.add_order_payment(&out_trade_no, &o.id, o.amount, &prepay, now)
            .await?;
        return Ok(Payment::Pay(params));
    }
    match crate::orders::settle_order(s, &o.id, "sandbox", &format!("sandbox-{}", o.id), o.amount)
        .await?
    {
        OrderSettle::Paid { .. } | OrderSettle::AlreadyPaid { .. } => Ok(Payment::Done),
        other => Err(PayError::Internal(format!(
            "sandbox order settlement: {other:?}"
        ))),
    }
}

/// The openid WeChat Pay knows the user by (the platform's, or kioskd's own official
/// account's from the silent sign-in).
async fn payer_openid(s: &Services, u: &UserRow) -> Result<String, PayError> {
    let payer = if s.cfg.wechatpay.platform_appid_is_merchant {
        Some(u.openid.clone())
    } else {
        s.db.pay_openid(u.id).await?
    };
    payer.ok_or(PayError::NoPayOpenid)
}

/// Creates a JSAPI order at WeChat Pay: its prepay id and the parameters for the H5
/// page.
async fn jsapi_order(
    s: &Services,
    out_trade_no: &str,
    amount: i64,
    payer: &str,
) -> Result<(String, wxpay::PayParams), PayError> {
    let Some(pay) = &s.upstream.pay else {
        return Err(PayError::Internal(
            "wechatpay mode without a WeChat Pay client".into(),
        ));
    };
    let r = pay
        .jsapi_order(out_trade_no, amount, &s.cfg.wechatpay.description, payer)
        .await;
    record(wxpay::op::ORDER, &r);
    match r {
        Ok(prepay) => {
            let params = pay.pay_params(&prepay, out_trade_no);
            Ok((prepay, params))
        }
        Err(e) => {
            tracing::warn!(error = %e, "WeChat Pay order failed");
            Err(PayError::Upstream)
        }
    }
}

/// Buys package `package_id` for user `u` by WeChat Pay (`POST /wechat/app/packages/buy`
/// with `pay: "wechat"`), exactly as a recharge: the `package_orders` row (`P...`, the
/// package's price now) is stored first, then the JSAPI order is created; only a
/// verified notification or the reconciler's query grants the package. Sandbox: the
/// payment "arrives" at once through the same settlement.
pub async fn pay_package(s: &Services, u: &UserRow, package_id: i64) -> Result<Payment, PayError> {
    let wechat = s.cfg.payments.mode == PaymentsMode::Wechatpay;
    let payer = if wechat {
        Some(payer_openid(s, u).await?)
    } else {
        None
    };
    let now = s.coord.clock().now_ms();
    // 32 characters at most (WeChat Pay's limit).
    let out_trade_no: String = format!("P{}", kioskd_actors::ids::new_token())
        .chars()
        .take(32)
        .collect();
    let provider = if wechat { "wechatpay" } else { "sandbox" };
    let amount =
        s.db.create_package_order(u.id, package_id, provider, &out_trade_no, now)
            .await
            .map_err(internal)?
            .ok_or(PayError::NotOnSale)?;
    if let Some(payer) = payer {
        let (prepay, params) = jsapi_order(s, &out_trade_no, amount, &payer).await?;
        s.db.set_package_prepay_id(&out_trade_no, &prepay, now)
            .await?;
        return Ok(Payment::Pay(params));
    }
    let r =
        s.db.settle_package_order(
            &out_trade_no,
            &format!("sandbox-{out_trade_no}"),
            amount,
            now,
        )
        .await?;
    match package_verdict(&out_trade_no, r) {
        Verdict::Credited => Ok(Payment::Done),
        other => Err(PayError::Internal(format!(
            "sandbox package settlement: {other:?}"
        ))),
    }
}

/// The package order `out_trade_no` of user `user_id`: its amount (fen) and status; none
/// for an unknown one or another user's.
pub async fn package_order_of(
    s: &Services,
    user_id: i64,
    out_trade_no: &str,
) -> Result<Option<(i64, RechargeStatus)>, StoreError> {
    if !valid_trade_no(out_trade_no) {
        return Ok(None);
    }
    Ok(match s.db.package_order(out_trade_no).await? {
        Some(o) if o.user_id == user_id => {
            let status = if o.status == "paid" {
                RechargeStatus::Paid
            } else if o.closed_at.is_some() {
                RechargeStatus::Closed
            } else {
                RechargeStatus::Pending
            };
            Some((o.amount, status))
        }
        _ => None,
    })
}

fn valid_trade_no(no: &str) -> bool {
    !no.is_empty() && no.len() <= 64 && no.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Where a recharge stands, as the phone app polls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RechargeStatus {
    /// Waiting for the payment.
    Pending,
    /// Credited.
    Paid,
    /// Given up unpaid.
    Closed,
}

impl RechargeStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RechargeStatus::Pending => "pending",
            RechargeStatus::Paid => "paid",
            RechargeStatus::Closed => "closed",
        }
    }
}

/// The recharge `out_trade_no` of user `user_id`: its amount (fen) and status; none for
/// an unknown one or another user's.
pub async fn recharge_of(
    s: &Services,
    user_id: i64,
    out_trade_no: &str,
) -> Result<Option<(i64, RechargeStatus)>, StoreError> {
    if !valid_trade_no(out_trade_no) {
        return Ok(None);
    }
    Ok(match s.db.recharge_order(out_trade_no).await? {
        Some(o) if o.user_id == user_id => {
            let status = if o.status == "paid" {
                RechargeStatus::Paid
            } else if o.closed_at.is_some() {
                RechargeStatus::Closed
            } else {
                RechargeStatus::Pending
            };
            Some((o.amount, status))
        }
        _ => None,
    })
}

/// A page of user `user_id`'s recharges.
pub async fn recharges(
    s: &Services,
    user_id: i64,
    q: &PageQuery,
) -> Result<crate::store::Page<RechargeRow>, StoreError> {
    s.db.recharge_page(user_id, q).await
}
