//! Plain-HTTP admin port: `/healthz` (the process is alive; never depends on the peer),
//! `/readyz` (the webhook's TLS is loaded, this cluster's API server answers and, on the leader,
//! the PVC caches are synced) and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// What `/readyz` answers from: this cluster's API server answers (the last probe), and a
/// replica that leads has its PVC caches synced (one that does not lead serves the webhook).
#[derive(Clone)]
pub struct Readiness {
    pub synced: Arc<AtomicUsize>,
    pub needed: usize,
    pub leading: Arc<AtomicBool>,
    pub local_answers: Arc<AtomicBool>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Readiness {
    /// `Err` says what is not ready.
    fn check(&self) -> Result<(), &'static str> {
        if !self.local_answers.load(Ordering::SeqCst) {
            return Err("this cluster's API server does not answer");
        }
        if self.leading.load(Ordering::SeqCst) && self.synced.load(Ordering::SeqCst) < self.needed {
            return Err("caches not synced");
        }
        Ok(())
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
                match r.check() {
                    Ok(()) => (StatusCode::OK, "ok"),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
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
