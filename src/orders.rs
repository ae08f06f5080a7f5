//! Postpaid orders as the payment side sees them (SPEC §3, §7): the one function every
//! way of paying an order goes through, and the billed minutes dialect B shows.
//!
//! `settle_order` is the entry point for payments: sandbox mode calls it at once from
//! `POST /wechat/order/pay`; a verified WeChat Pay notification for an order calls it
//! with the notification's `transaction_id` and amount. It is idempotent per order and
//! per transaction, and safe under concurrency (the store serialises on the order row).

use kioskd_actors::catalog;
use kioskd_actors::coordinator::CoordinatorConfig;

use crate::services::Services;
pub use crate::store::{ExpenseRow, OrderRow, OrderSettle};
use kioskd_actors::ports::StoreError;

/// Pays order `order_id` with a payment of `amount_fen` identified by `transaction_id`
/// from `provider` (`sandbox`, `wechatpay`). `Paid` the first time; `AlreadyPaid` for a
/// repeat of the same transaction (or a free order); nothing changes otherwise.
pub async fn settle_order(
    s: &Services,
    order_id: &str,
    provider: &str,
    transaction_id: &str,
    amount_fen: i64,
) -> Result<OrderSettle, StoreError> {
    let now = s.coord.clock().now_ms();
    let r =
        s.db.settle_order(order_id, provider, transaction_id, amount_fen, now)
            .await?;
    match r {
        OrderSettle::Paid { user_id } => {
            metrics::counter!(catalog::ORDERS_PAID_FEN).increment(amount_fen.max(0) as u64);
            // The kiosk left on "pay on your phone" restarts.
            match s.db.order(order_id).await {
                Ok(Some(o)) => s.coord.order_paid(&o.device_code, order_id),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(order = order_id, error = %e, "paid order not found again")
                }
            }
            tracing::info!(
                order = order_id,
                user = user_id,
                amount_fen,
                provider,
                "order paid"
            );
        }
        OrderSettle::AlreadyPaid { .. } => {}
        OrderSettle::AlreadyPaidOtherwise | OrderSettle::AmountMismatch => {
            tracing::warn!(order = order_id, provider, outcome = ?r, "order payment not applied");
        }
        OrderSettle::UnknownOrder => {
            tracing::warn!(order = order_id, provider, "payment for an unknown order");
        }
    }
    Ok(r)
}

/// Whole minutes a session of `billed_ms` is charged for: 0 within the free start, else
/// the minutes begun, so that `cost = minutes × price` always holds.
pub fn billed_minutes(cfg: &CoordinatorConfig, billed_ms: i64) -> i64 {
    if billed_ms < cfg.free_ms {
        0
    } else {
        (billed_ms.max(0) + cfg.unit_ms - 1) / cfg.unit_ms
    }
}

/// A URL-safe order id as kioskd makes them (`o` + 32 hex digits); anything else is
/// refused before it reaches the store.
pub fn valid_order_id(id: &str) -> bool {
    (2..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Page `page` (from 1) of `size` of user `user_id`'s postpaid orders, unpaid first:
/// the total and the rows.
pub async fn of_user(
    s: &Services,
    user_id: i64,
    page: i64,
    size: i64,
) -> Result<crate::store::Page<OrderRow>, StoreError> {
    s.db.orders_page(user_id, size, (page.max(1) - 1) * size)
        .await
}

/// A page of user `user_id`'s ended sessions (what they spent): the total and the rows.
pub async fn expenses(
    s: &Services,
    user_id: i64,
    q: &crate::store::PageQuery,
) -> Result<crate::store::Page<ExpenseRow>, StoreError> {
    s.db.expense_page(user_id, q).await
}

/// Order `id` (any user's: dialect B's payment screen asks by id), if it exists.
pub async fn get(s: &Services, id: &str) -> Result<Option<OrderRow>, StoreError> {
    s.db.order(id).await
}
