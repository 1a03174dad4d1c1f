//! The admission webhook's fast path: no remote calls, answers in milliseconds.

pub mod decide;
pub mod patch;
pub mod review;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;

use crate::metrics::Metrics;
use crate::plan::policy::{PolicyLookup, Scope};
use decide::AdmissionDefaults;

pub struct AdmissionState {
    pub defaults: AdmissionDefaults,
    pub metrics: Arc<Metrics>,
    /// Cluster-wide policies for new PVCs; `None`: no DRPolicy CRD on this cluster.
    pub policies: Option<PolicyHook>,
}

/// The policies as the webhook sees them: a cache, never a remote call.
pub struct PolicyHook {
    pub lookup: Arc<dyn PolicyLookup>,
    pub scope: Scope,
}

pub fn router(state: Arc<AdmissionState>) -> Router {
    Router::new()
        .route("/mutate-pvc", post(review::mutate_pvc))
        .with_state(state)
}
