//! Liveness, readiness and the Prometheus exposition.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::services::Unready;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(Unready::Database(e)) => {
            tracing::warn!(error = %e, "not ready: database");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(Unready::Redis(e)) => {
            tracing::warn!(error = %e, "not ready: redis");
            (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable").into_response()
        }
    }
}

/// `/metrics` alone, for `metrics.listen`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { render(&s) }),
        )
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    if !s.cfg.metrics.listen.is_empty() {
        // Served on its own listener; the public one does not show it.
        return (
            StatusCode::NOT_FOUND,
            "metrics are served on metrics.listen",
        )
            .into_response();
    }
    render(&s)
}

fn render(s: &AppState) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
