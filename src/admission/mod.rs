//! The admission webhook's fast path: no remote calls, answers in milliseconds.

pub mod decide;
pub mod patch;
pub mod review;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;

use crate::metrics::Metrics;
use decide::AdmissionDefaults;

pub struct AdmissionState {
    pub defaults: AdmissionDefaults,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Arc<AdmissionState>) -> Router {
    Router::new()
        .route("/mutate-pvc", post(review::mutate_pvc))
        .with_state(state)
}
