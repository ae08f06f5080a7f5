//! What operators send to the upstreams through the outbox (`/ops/notices/prize`,
//! `/ops/callbacks/flow-order`) and how they watch and retry it (`/ops/outbox`): the
//! input rules, recording a send (idempotent with a key) and waking the worker.

use super::open189::{FlowOrder, PrizeNotice};
use super::outbox::kind;
use crate::identity::valid_openid;
use crate::service_error::ServiceError;
use crate::services::Services;
use crate::store::OutboxRow;

fn text_ok(v: &str, max: usize, required: bool) -> bool {
    (!required || !v.trim().is_empty())
        && v.chars().count() <= max
        && !v.chars().any(char::is_control)
}

fn key_ok(k: &Option<String>) -> bool {
    k.as_deref()
        .is_none_or(|k| !k.is_empty() && k.len() <= 128 && !k.chars().any(char::is_control))
}

/// A send recorded: its outbox id, and false when the key was seen before (nothing new
/// was recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The outbox row.
    pub id: i64,
    /// A new row (not a duplicate).
    pub fresh: bool,
}

async fn record(
    s: &Services,
    kind: &str,
    key: Option<String>,
    payload: String,
) -> Result<Recorded, ServiceError> {
    let key = key.map(|k| format!("{kind}:{k}"));
    let now = s.coord.clock().now_ms();
    let added = s.db.outbox_add(kind, key.as_deref(), &payload, now).await?;
    s.upstream.outbox_wake.notify_one();
    Ok(Recorded {
        id: added.id,
        fresh: added.fresh,
    })
}

/// Seed 004's prize notice, through the outbox.
pub async fn prize(
    s: &Services,
    n: PrizeNotice,
    idempotency_key: Option<String>,
) -> Result<Recorded, ServiceError> {
    if !valid_openid(&n.openid) {
        return Err(ServiceError::invalid(
            "openid must be 1-64 of [A-Za-z0-9_-]",
        ));
    }
    if !text_ok(&n.first, 200, true)
        || !text_ok(&n.activity, 100, true)
        || !text_ok(&n.prize, 100, true)
        || !text_ok(&n.remark, 200, false)
    {
        return Err(ServiceError::invalid(
            "first, activity and prize are required (at most 200/100/100 characters), remark at most 200",
        ));
    }
    if !(n.url.is_empty()
        || ((n.url.starts_with("http://") || n.url.starts_with("https://"))
            && text_ok(&n.url, 512, false)))
    {
        return Err(ServiceError::invalid("url must be an http(s) URL"));
    }
    if !key_ok(&idempotency_key) {
        return Err(ServiceError::invalid(
            "idempotency_key must be 1-128 characters",
        ));
    }
    let payload = serde_json::to_string(&n).unwrap_or_default();
    record(s, kind::PRIZE_NOTICE, idempotency_key, payload).await
}

/// Are 爱流量 order callbacks on (`open189.report_flow_orders`)?
pub fn flow_orders_on(s: &Services) -> Result<(), ServiceError> {
    if s.cfg.open189.report_flow_orders {
        Ok(())
    } else {
        Err(ServiceError::conflict(
            "flow-order callbacks are off (open189.report_flow_orders)",
        ))
    }
}

/// The 爱流量 order callback, through the outbox.
pub async fn flow_order(
    s: &Services,
    o: FlowOrder,
    idempotency_key: Option<String>,
) -> Result<Recorded, ServiceError> {
    flow_orders_on(s)?;
    if !valid_openid(&o.openid)
        || !text_ok(&o.deviceno, 32, true)
        || !text_ok(&o.traffic_package_name, 100, true)
        || !text_ok(&o.transaction_date, 32, false)
        || !key_ok(&idempotency_key)
    {
        return Err(ServiceError::invalid(
            "openid, deviceno and traffic_package_name are required",
        ));
    }
    let payload = serde_json::to_string(&o).unwrap_or_default();
    record(s, kind::FLOW_ORDER, idempotency_key, payload).await
}

/// Outbox rows (at most 500, newest first; without `status` everything not yet sent)
/// and the depth (pending and sending).
pub async fn list(
    s: &Services,
    status: Option<&str>,
) -> Result<(i64, Vec<OutboxRow>), ServiceError> {
    if status.is_some_and(|x| !["pending", "sending", "sent", "failed"].contains(&x)) {
        return Err(ServiceError::invalid(
            "status must be pending, sending, sent or failed",
        ));
    }
    let rows = s.db.outbox_list(status, 500).await?;
    let depth = s.db.outbox_depth().await?;
    Ok((depth, rows))
}

/// A failed send is tried again (a conflict unless it failed).
pub async fn retry(s: &Services, id: i64) -> Result<(), ServiceError> {
    let now = s.coord.clock().now_ms();
    if s.db.outbox_retry(id, now).await? {
        s.upstream.outbox_wake.notify_one();
        Ok(())
    } else {
        Err(ServiceError::conflict("no failed outbox row with that id"))
    }
}
