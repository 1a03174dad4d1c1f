//! The admission webhook's fast path: answers in milliseconds from caches. One exception: a PVC
//! update that newly requests an action reads its namespace's PVCs and workloads once (bounded;
//! without an answer the request is admitted and the controller checks it), because an action
//! acts on the whole application group.

pub mod decide;
pub mod patch;
pub mod review;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;

use crate::metrics::Metrics;
use crate::model::group::GroupFacts;
use crate::plan::policy::{PolicyLookup, Scope};
use decide::AdmissionDefaults;

pub struct AdmissionState {
    pub defaults: AdmissionDefaults,
    pub metrics: Arc<Metrics>,
    /// Cluster-wide policies for new PVCs; `None`: no DRPolicy CRD on this cluster.
    pub policies: Option<PolicyHook>,
    /// Reads a namespace's groups for a newly requested action; `None`: not checked here.
    pub groups: Option<Arc<dyn GroupReader>>,
}

/// A namespace's PVCs and workloads, read when an action is requested.
pub trait GroupReader: Send + Sync {
    fn read<'a>(&'a self, namespace: &'a str) -> futures::future::BoxFuture<'a, Result<GroupFacts, String>>;
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
