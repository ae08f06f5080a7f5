//! The metric catalog: every metric name kioskd exports, declared once.
//! Names follow `kioskd_<subsystem>_<name>`, `_total` for counters, `_seconds` for
//! durations; labels are bounded (reason, status, outcome, route).

/// Gauge: sessions running now.
pub const SESSIONS_ACTIVE: &str = "kioskd_sessions_active";
/// Counter: sessions started.
pub const SESSIONS_STARTED: &str = "kioskd_sessions_started_total";
/// Counter: sessions ended, by `reason`.
pub const SESSIONS_ENDED: &str = "kioskd_sessions_ended_total";
/// Gauge: devices with a live actor, by `status` (free, busy, lock, maintain).
pub const DEVICES: &str = "kioskd_devices_by_status";
/// Counter: billing ticks, by `outcome` (reserved, insufficient, error; accrued for
/// postpaid units, which debit nothing).
pub const BILLING_TICKS: &str = "kioskd_billing_ticks_total";
/// Histogram: seconds from a unit's boundary to its debit being committed.
pub const BILLING_TICK_LAG: &str = "kioskd_billing_tick_lag_seconds";
/// Counter: fen earned by ended sessions (cost after refunds).
pub const REVENUE_FEN: &str = "kioskd_billing_revenue_fen_total";
/// Counter: fen refunded at session ends.
pub const REFUNDED_FEN: &str = "kioskd_billing_refunded_fen_total";
/// Counter: low-balance warnings sent.
pub const BALANCE_LOW: &str = "kioskd_billing_balance_low_total";
/// Counter: fen credited by recharges.
pub const RECHARGED_FEN: &str = "kioskd_payments_recharged_fen_total";
/// Counter: postpaid orders created at session ends, by `outcome` (unpaid, free).
pub const ORDERS_CREATED: &str = "kioskd_payments_orders_created_total";
/// Counter: pricing catalog reloads on this node, by `outcome` (ok, error): after an
/// operator's change here, a notice from another node, or the periodic reload.
pub const PRICING_RELOADS: &str = "kioskd_pricing_reloads_total";
/// Counter: packages users got, by `source` (balance, wechat, operator).
pub const PACKAGES_SOLD: &str = "kioskd_pricing_packages_sold_total";
/// Counter: fen paid for postpaid orders.
pub const ORDERS_PAID_FEN: &str = "kioskd_payments_orders_paid_fen_total";
/// Counter: dialect B (/rest/*) replies, by `route` and `outcome` (ok: an answer;
/// refused: unknown client or order; bad_request; error).
pub const REST_REQUESTS: &str = "kioskd_http_rest_requests_total";
/// Counter: HTTP requests, by `route` and `status`.
pub const HTTP_REQUESTS: &str = "kioskd_http_requests_total";
/// Histogram: HTTP request duration in seconds, by `route`.
pub const HTTP_DURATION: &str = "kioskd_http_request_duration_seconds";
/// Counter: heartbeat rows flushed to storage.
pub const HEARTBEATS_FLUSHED: &str = "kioskd_store_heartbeats_flushed_total";
/// Counter: storage errors seen by actors, by `op`.
pub const STORE_ERRORS: &str = "kioskd_store_errors_total";
/// Gauge: 1 when payments run in sandbox mode (credits without payment).
pub const PAYMENTS_SANDBOX: &str = "kioskd_payments_sandbox_mode";
/// Gauge: open WebSocket connections, by `kind` (kiosk, user, ops, attendance).
pub const WS_CONNECTIONS: &str = "kioskd_ws_connections";
/// Counter: frames pushed to WebSocket clients, by `kind`.
pub const WS_PUSHED: &str = "kioskd_ws_messages_pushed_total";
/// Counter: kiosk reconnects, by `outcome` (replayed, snapshot).
pub const WS_RESUMES: &str = "kioskd_ws_resumes_total";
/// Counter: connections closed because they could not keep up.
pub const WS_SLOW_CONSUMERS: &str = "kioskd_ws_slow_consumer_disconnects_total";
/// Counter: WebSocket upgrades refused, by `reason`.
pub const WS_REFUSED: &str = "kioskd_ws_refused_total";
/// Counter: operator commands queued for kiosks.
pub const COMMANDS_QUEUED: &str = "kioskd_commands_queued_total";
/// Counter: attendance punches stored (new), by `source` (bridge-new, bridge-sync, iclock).
pub const ATT_PUNCHES: &str = "kioskd_attendance_punches_total";
/// Counter: attendance punches received again and not stored, by `source`.
pub const ATT_DUPLICATES: &str = "kioskd_attendance_punch_duplicates_total";
/// Counter: attendance lines quarantined as unreadable, by `source`.
pub const ATT_QUARANTINED: &str = "kioskd_attendance_quarantined_total";
/// Counter: terminal command deliveries and results, by `outcome` (sent, acked, failed).
pub const ATT_COMMANDS: &str = "kioskd_attendance_commands_total";
/// Histogram: seconds from queueing a terminal command to its result (native, ws) or its
/// delivery (bridge: the legacy poll never answers), by `channel`.
pub const ATT_COMMAND_LATENCY: &str = "kioskd_attendance_command_latency_seconds";
/// Gauge: attendance terminals heard in the last 10 minutes.
pub const ATT_TERMINALS_SEEN: &str = "kioskd_attendance_terminals_seen";
/// Histogram: seconds from an actor producing a live push to its frame being written to
/// the socket, by `kind` (kiosk, user, ops).
pub const WS_PUSH_LATENCY: &str = "kioskd_ws_push_latency_seconds";
/// Histogram: seconds from a broadcast's fan-out to its end, by `outcome` (taken: every
/// copy queued for a connected kiosk has left its queue; patience: one was still queued
/// after the fan-out's patience of 1 s, a slow connection). Kiosk connections read
/// nothing while their broadcast fans out.
pub const WS_FAN_OUT: &str = "kioskd_ws_broadcast_fan_out_seconds";
/// Gauge: running sessions by `billing_mode` (prepaid, postpaid), read from storage.
pub const SESSIONS_BY_MODE: &str = "kioskd_sessions_active_by_mode";
/// Gauge: running sessions past a deadline by more than the grace, by `deadline`
/// (paid_until: a prepaid session not covered by a reserved unit; heartbeat: a session
/// whose kiosk has been silent past the timeout). Should be 0: a stuck meter.
pub const SESSIONS_OVERDUE: &str = "kioskd_sessions_overdue";
/// Gauge: devices registered.
pub const DEVICES_REGISTERED: &str = "kioskd_devices_registered";
/// Gauge: devices heard within the heartbeat timeout, by `transport` (ws: holding a
/// kiosk WebSocket on this node; http: the rest, polling).
pub const DEVICES_ONLINE: &str = "kioskd_devices_online";
/// Gauge: live actors on this node, by `kind` (device, session, terminal).
pub const ACTORS: &str = "kioskd_actors_live";
/// Counter: actors restarted from storage after a panic or the death of a linked actor,
/// by `kind` (device, session).
pub const ACTOR_RESTARTS: &str = "kioskd_actors_restarts_total";
/// Counter: device actors stopped after the configured idle time without use
/// (passivation, `[actors]`).
pub const DEVICES_PASSIVATED: &str = "kioskd_actors_devices_passivated_total";
/// Gauge: messages waiting in actor mailboxes on this node, by `kind` (sum, sampled).
pub const ACTOR_MAILBOX_DEPTH: &str = "kioskd_actors_mailbox_depth";
/// Gauge: deepest single actor mailbox on this node, by `kind` (sampled).
pub const ACTOR_MAILBOX_MAX: &str = "kioskd_actors_mailbox_max_depth";
/// Counter: legacy polling requests, by `dialect` (a: /windows/check and keepalive;
/// b: /rest/clientStatus, status_client, orderStatus).
pub const LEGACY_POLLS: &str = "kioskd_http_legacy_polls_total";
/// Gauge: kiosk commands waiting for the kiosk's acknowledgement.
pub const COMMANDS_PENDING: &str = "kioskd_commands_pending";
/// Gauge: age in seconds of the oldest unacknowledged kiosk command (0 when none).
pub const COMMANDS_OLDEST_AGE: &str = "kioskd_commands_oldest_pending_seconds";
/// Gauge: attendance terminal commands queued or sent without a result.
pub const ATT_COMMANDS_PENDING: &str = "kioskd_attendance_commands_pending";
/// Gauge: age in seconds of the oldest of those (0 when none).
pub const ATT_COMMANDS_OLDEST_AGE: &str = "kioskd_attendance_commands_oldest_pending_seconds";
/// Gauge: attendance terminals registered.
pub const ATT_TERMINALS_REGISTERED: &str = "kioskd_attendance_terminals_registered";
/// Gauge: 1 while the Redis broker is configured and its last operation succeeded.
pub const BROKER_CONNECTED: &str = "kioskd_broker_connected";
/// Counter: events published to the Redis broker.
pub const BROKER_PUBLISHED: &str = "kioskd_broker_published_total";
/// Counter: requests forwarded to the node that owns their device (several nodes).
pub const CLUSTER_FORWARDED: &str = "kioskd_cluster_forwarded_total";
/// Counter: Redis broker failures, by `op` (publish, nonce, ping, subscribe, forward,
/// lease).
pub const BROKER_ERRORS: &str = "kioskd_broker_errors_total";
/// Counter: metric sampler runs that failed to read storage.
pub const SAMPLER_ERRORS: &str = "kioskd_store_sampler_errors_total";
/// Counter: calls to upstreams (open platform, official account, WeChat Pay), by `op`
/// and `outcome` (ok, transport, token_rejected, code_40005, platform, bad_reply, ...).
pub const UPSTREAM_CALLS: &str = "kioskd_upstream_calls_total";
/// Counter: WeChat Pay notifications, by `outcome` (credited, duplicate, mismatch,
/// unknown_order, refused, other_event, error).
pub const PAYMENT_NOTIFICATIONS: &str = "kioskd_payments_notifications_total";
/// Counter: unpaid orders queried by the reconciler, by `outcome`.
pub const PAYMENTS_RECONCILED: &str = "kioskd_payments_reconciled_total";
/// Gauge: outbox sends not yet accepted by the open platform.
pub const OUTBOX_DEPTH: &str = "kioskd_outbox_pending";
/// Counter: outbox send attempts, by `outcome` (sent, retry, failed).
pub const OUTBOX_SENDS: &str = "kioskd_outbox_sends_total";
/// Gauge: open HTTP connections (WebSockets included).
pub const CONNECTIONS_OPEN: &str = "kioskd_http_connections_open";
/// Counter: connections closed at accept, by `reason` (global: server.max_connections;
/// per_address: server.max_connections_per_address).
pub const CONNECTIONS_REFUSED: &str = "kioskd_http_connections_refused_total";
/// Counter: connections closed by the server's guards, by `reason` (write_stall: the
/// client stopped reading; download_timeout: a /files download ran past its limit).
pub const CONNECTIONS_CLOSED: &str = "kioskd_http_connections_closed_total";
/// Counter: requests refused by a rate limit, by `reason` (the bucket: oauth,
/// ops_auth, lookup, maintain_login, captcha, ops_login, downloads).
pub const RATE_LIMITED: &str = "kioskd_http_rate_limited_total";
/// Counter: request bodies refused before or while reading, by `reason` (too_large,
/// unauthorized, unknown_device, too_many_lines).
pub const BODIES_REFUSED: &str = "kioskd_http_bodies_refused_total";
/// Counter: WebSockets closed for sending too many messages, by `kind`.
pub const WS_RATE_LIMITED: &str = "kioskd_ws_rate_limited_total";
