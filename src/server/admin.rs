//! Plain-HTTP admin port: `/healthz` (the process is alive; never depends on the peer),
//! `/readyz` (the webhook's TLS is loaded and, on the leader, the PVC caches are synced) and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// What `/readyz` answers from: a replica that leads is ready once its PVC caches are synced;
/// one that does not lead serves the webhook and is ready at once.
#[derive(Clone)]
pub struct Readiness {
    synced: Arc<AtomicUsize>,
    needed: usize,
    leading: Arc<AtomicBool>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Readiness {
    pub fn new(
        synced: Arc<AtomicUsize>,
        needed: usize,
        leading: Arc<AtomicBool>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Readiness {
            synced,
            needed,
            leading,
            metrics,
        }
    }

    fn ready(&self) -> bool {
        !self.leading.load(Ordering::SeqCst) || self.synced.load(Ordering::SeqCst) >= self.needed
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, readiness: Readiness) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(r): State<Readiness>| async move {
                if r.ready() {
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
        .with_state(readiness);
    axum::serve(listener, app).await
}
