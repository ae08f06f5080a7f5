//! Logging and metrics: one Prometheus recorder per process, the catalog's descriptions,
//! and the HTTP middleware that counts requests by route and status.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use dashmap::DashMap;
use kioskd_actors::catalog as c;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn metrics() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(c::HTTP_DURATION.to_string()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(c::BILLING_TICK_LAG.to_string()),
                        &[0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(c::WS_PUSH_LATENCY.to_string()),
                        &[
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(c::WS_FAN_OUT.to_string()),
                        &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                    )
                })
                .expect("static bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding kioskd): then
            // this handle renders an empty registry, which is still valid output.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            prime();
            let h = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    h.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

/// Registers the counters whose label values are a fixed set at zero, so that a board
/// panel or an alert over them shows 0 (not "no data") before the first event.
fn prime() {
    for r in kioskd_actors::EndReason::ALL {
        metrics::counter!(c::SESSIONS_ENDED, "reason" => r.as_str()).increment(0);
    }
    for outcome in ["reserved", "accrued", "insufficient", "error"] {
        metrics::counter!(c::BILLING_TICKS, "outcome" => outcome).increment(0);
    }
    for op in [
        "record_heartbeats",
        "reserve_unit",
        "end_session",
        "start_session",
        "ingest_punches",
        "ack_commands",
    ] {
        metrics::counter!(c::STORE_ERRORS, "op" => op).increment(0);
    }
    metrics::counter!(c::WS_SLOW_CONSUMERS).increment(0);
    metrics::counter!(c::SAMPLER_ERRORS).increment(0);
    for outcome in ["replayed", "snapshot"] {
        metrics::counter!(c::WS_RESUMES, "outcome" => outcome).increment(0);
    }
    for outcome in [
        "credited",
        "duplicate",
        "mismatch",
        "unknown_order",
        "refused",
        "other_event",
        "error",
    ] {
        metrics::counter!(c::PAYMENT_NOTIFICATIONS, "outcome" => outcome).increment(0);
    }
    for outcome in ["unpaid", "free"] {
        metrics::counter!(c::ORDERS_CREATED, "outcome" => outcome).increment(0);
    }
    metrics::counter!(c::ORDERS_PAID_FEN).increment(0);
    for outcome in ["sent", "retry", "failed"] {
        metrics::counter!(c::OUTBOX_SENDS, "outcome" => outcome).increment(0);
    }
    for dialect in ["a", "b"] {
        metrics::counter!(c::LEGACY_POLLS, "dialect" => dialect).increment(0);
    }
}

/// Registers the broker's series at zero once a broker is configured.
pub fn prime_broker() {
    metrics::counter!(c::BROKER_PUBLISHED).increment(0);
    metrics::counter!(c::CLUSTER_FORWARDED).increment(0);
    for op in ["publish", "nonce", "ping", "subscribe", "forward", "lease"] {
        metrics::counter!(c::BROKER_ERRORS, "op" => op).increment(0);
    }
    metrics::gauge!(c::BROKER_CONNECTED).set(1.0);
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(c::SESSIONS_ACTIVE, "Sessions running now.");
    describe_counter!(c::SESSIONS_STARTED, "Sessions started.");
    describe_counter!(c::SESSIONS_ENDED, "Sessions ended, by reason.");
    describe_gauge!(c::DEVICES, "Devices with a live actor, by status.");
    describe_counter!(c::BILLING_TICKS, "Billing unit reservations, by outcome.");
    describe_histogram!(
        c::BILLING_TICK_LAG,
        Unit::Seconds,
        "Delay from a unit boundary to its committed debit."
    );
    describe_counter!(c::REVENUE_FEN, "Fen earned by ended sessions.");
    describe_counter!(c::REFUNDED_FEN, "Fen refunded at session ends.");
    describe_counter!(c::BALANCE_LOW, "Low-balance warnings.");
    describe_counter!(c::RECHARGED_FEN, "Fen credited by recharges.");
    describe_counter!(
        c::ORDERS_CREATED,
        "Postpaid orders created at session ends, by outcome (unpaid, free)."
    );
    describe_counter!(c::ORDERS_PAID_FEN, "Fen paid for postpaid orders.");
    describe_counter!(
        c::PRICING_RELOADS,
        "Pricing catalog reloads on this node, by outcome (ok, error)."
    );
    describe_counter!(
        c::PACKAGES_SOLD,
        "Packages users got, by source (balance, wechat, operator)."
    );
    describe_counter!(
        c::REST_REQUESTS,
        "Dialect B replies, by route and outcome (ok, refused, bad_request, error)."
    );
    describe_counter!(c::HTTP_REQUESTS, "HTTP requests, by route and status.");
    describe_histogram!(
        c::HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration, by route."
    );
    describe_counter!(c::HEARTBEATS_FLUSHED, "Heartbeat rows written.");
    describe_counter!(c::STORE_ERRORS, "Storage errors, by operation.");
    describe_gauge!(c::PAYMENTS_SANDBOX, "1 when payments run in sandbox mode.");
    describe_gauge!(c::WS_CONNECTIONS, "Open WebSocket connections, by kind.");
    describe_counter!(c::WS_PUSHED, "Frames pushed to WebSocket clients, by kind.");
    describe_counter!(
        c::WS_RESUMES,
        "Kiosk reconnects, by outcome (replayed, snapshot)."
    );
    describe_counter!(
        c::WS_SLOW_CONSUMERS,
        "Connections closed for not keeping up."
    );
    describe_counter!(c::WS_REFUSED, "WebSocket upgrades refused, by reason.");
    describe_counter!(c::COMMANDS_QUEUED, "Operator commands queued for kiosks.");
    describe_counter!(c::ATT_PUNCHES, "Attendance punches stored, by source.");
    describe_counter!(
        c::ATT_DUPLICATES,
        "Attendance punches received again and not stored, by source."
    );
    describe_counter!(
        c::ATT_QUARANTINED,
        "Attendance lines quarantined, by source."
    );
    describe_counter!(
        c::ATT_COMMANDS,
        "Terminal command deliveries and results, by outcome."
    );
    describe_histogram!(
        c::ATT_COMMAND_LATENCY,
        Unit::Seconds,
        "Terminal command queue-to-result (native) or queue-to-delivery (bridge) time."
    );
    describe_gauge!(
        c::ATT_TERMINALS_SEEN,
        "Attendance terminals heard in the last 10 minutes."
    );
    describe_histogram!(
        c::WS_PUSH_LATENCY,
        Unit::Seconds,
        "Live push latency from the actor to the socket, by kind."
    );
    describe_histogram!(
        c::WS_FAN_OUT,
        Unit::Seconds,
        "From a broadcast's fan-out to its copies all taken (or its patience over), by outcome."
    );
    describe_gauge!(c::SESSIONS_BY_MODE, "Running sessions by billing mode.");
    describe_gauge!(
        c::SESSIONS_OVERDUE,
        "Running sessions past their paid_until or heartbeat deadline by more than the grace."
    );
    describe_gauge!(c::DEVICES_REGISTERED, "Devices registered.");
    describe_gauge!(
        c::DEVICES_ONLINE,
        "Devices heard within the heartbeat timeout, by transport."
    );
    describe_gauge!(c::ACTORS, "Live actors on this node, by kind.");
    describe_gauge!(
        c::ACTOR_MAILBOX_DEPTH,
        "Messages waiting in actor mailboxes, by kind."
    );
    describe_gauge!(c::ACTOR_MAILBOX_MAX, "Deepest actor mailbox, by kind.");
    describe_counter!(c::LEGACY_POLLS, "Legacy polling requests, by dialect.");
    describe_gauge!(c::COMMANDS_PENDING, "Kiosk commands not yet acknowledged.");
    describe_gauge!(
        c::COMMANDS_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest unacknowledged kiosk command."
    );
    describe_gauge!(
        c::ATT_COMMANDS_PENDING,
        "Attendance terminal commands waiting for delivery or a result."
    );
    describe_gauge!(
        c::ATT_COMMANDS_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest waiting attendance terminal command."
    );
    describe_gauge!(
        c::ATT_TERMINALS_REGISTERED,
        "Attendance terminals registered."
    );
    describe_gauge!(c::BROKER_CONNECTED, "1 while the Redis broker answers.");
    describe_counter!(c::BROKER_PUBLISHED, "Events published to Redis.");
    describe_counter!(c::BROKER_ERRORS, "Redis broker failures, by operation.");
    describe_counter!(
        c::CLUSTER_FORWARDED,
        "Requests forwarded to the node that owns their device."
    );
    describe_counter!(
        c::SAMPLER_ERRORS,
        "Metric sampler runs that could not read storage."
    );
}

/// Metric handles of one route, registered on its first request: the hot path then
/// costs a map read instead of building label sets per request.
struct RouteMetrics {
    duration: metrics::Histogram,
    by_status: DashMap<u16, metrics::Counter>,
}

fn route_metrics(route: &str) -> dashmap::mapref::one::Ref<'static, String, RouteMetrics> {
    static ROUTES: OnceLock<DashMap<String, RouteMetrics>> = OnceLock::new();
    let routes = ROUTES.get_or_init(DashMap::new);
    if let Some(r) = routes.get(route) {
        return r;
    }
    routes
        .entry(route.to_string())
        .or_insert_with(|| RouteMetrics {
            duration: metrics::histogram!(c::HTTP_DURATION, "route" => route.to_string()),
            by_status: DashMap::new(),
        })
        .downgrade()
}

/// The dialect of a legacy polling route.
fn legacy_poll(route: &str) -> Option<&'static str> {
    match route {
        "/windows/check" | "/windows/keepalive" => Some("a"),
        "/rest/clientStatus" | "/rest/status_client" | "/rest/orderStatus" => Some("b"),
        _ => None,
    }
}

/// Counts every request by its route template (bounded) and status.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    if let Some(dialect) = legacy_poll(route) {
        metrics::counter!(c::LEGACY_POLLS, "dialect" => dialect).increment(1);
    }
    let status = resp.status().as_u16();
    let m = route_metrics(route);
    m.duration.record(start.elapsed().as_secs_f64());
    if let Some(counter) = m.by_status.get(&status) {
        counter.increment(1);
    } else {
        let counter = metrics::counter!(c::HTTP_REQUESTS, "route" => route.to_string(), "status" => status.to_string());
        counter.increment(1);
        m.by_status.insert(status, counter);
    }
    resp
}

/// Starts logging to stderr with the given filter (RUST_LOG wins when set).
pub fn init_logging(filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
