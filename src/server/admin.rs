//! Plain-HTTP admin port: `/healthz` (the process is alive; never depends on the peer),
//! `/readyz` (the PVC caches are synced and the webhook's TLS is loaded) and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

#[derive(Clone)]
struct Readiness {
    synced: Arc<AtomicUsize>,
    needed: usize,
    metrics: Arc<crate::metrics::Metrics>,
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve until the process ends. Ready once `needed` controllers have synced their caches.
pub async fn serve(
    listener: tokio::net::TcpListener,
    synced: Arc<AtomicUsize>,
    needed: usize,
    metrics: Arc<crate::metrics::Metrics>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(r): State<Readiness>| async move {
                if r.synced.load(Ordering::SeqCst) >= r.needed {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(r): State<Readiness>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    r.metrics.render(),
                )
            }),
        )
        .with_state(Readiness {
            synced,
            needed,
            metrics,
        });
    axum::serve(listener, app).await
}
