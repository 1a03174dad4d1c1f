//! AdmissionReview in and out: a body that is not a review is a 400 with a message; a review of
//! anything but a PVC CREATE or UPDATE is allowed untouched; a PVC is decided (see `decide`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation};

use std::collections::BTreeMap;

use super::decide::{Decision, Operation, decide, refuse_for_group};
use super::patch::patch_for;
use super::{AdmissionState, PolicyHook};
use crate::model::group::GroupFacts;
use crate::model::keys;
use crate::plan::policy::evaluate;

pub async fn mutate_pvc(State(state): State<Arc<AdmissionState>>, body: Bytes) -> Response {
    let started = Instant::now();
    let facts = match (&state.groups, requests_an_action(&body)) {
        (Some(reader), Some(namespace)) => reader.read(&namespace).await.ok(),
        _ => None,
    };
    let (response, result) = match review_with(&state, &body, facts.as_ref()) {
        Ok(pair) => pair,
        Err(message) => {
            state.metrics.admission("invalid", started.elapsed().as_secs_f64());
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    state.metrics.admission(result, started.elapsed().as_secs_f64());
    axum::Json(response.into_review()).into_response()
}

/// The namespace of a PVC review whose object asks for an action its old object did not: the
/// only reviews that read the namespace's groups. A quick look; `review` does the real parsing.
fn requests_an_action(body: &[u8]) -> Option<String> {
    let review: serde_json::Value = serde_json::from_slice(body).ok()?;
    let request = &review["request"];
    let action = |object: &serde_json::Value| {
        object["metadata"]["annotations"][keys::ACTION]
            .as_str()
            .map(str::to_string)
    };
    let asked = action(&request["object"])?;
    let is_pvc = request["kind"]["kind"] == "PersistentVolumeClaim" && request["kind"]["group"] == "";
    (is_pvc && action(&request["oldObject"]).as_deref() != Some(asked.as_str()))
        .then(|| request["namespace"].as_str().map(str::to_string))
        .flatten()
}

/// The response and its result label, or why the body is not an AdmissionReview. Public for
/// the fuzz target, which feeds it arbitrary bytes.
pub fn review(state: &AdmissionState, body: &[u8]) -> Result<(AdmissionResponse, &'static str), String> {
    review_with(state, body, None)
}

/// `review`, with the namespace's groups when an action is newly requested.
pub fn review_with(
    state: &AdmissionState,
    body: &[u8],
    groups: Option<&GroupFacts>,
) -> Result<(AdmissionResponse, &'static str), String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("not an admission.k8s.io/v1 AdmissionReview: {e}"))?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|e| format!("the AdmissionReview has no request: {e}"))?;
    let response = AdmissionResponse::from(&request);
    let is_pvc = request.kind.group.is_empty() && request.kind.kind == "PersistentVolumeClaim";
    let operation = match request.operation {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        _ => return Ok((response, "ignored")),
    };
    if !is_pvc {
        return Ok((response, "ignored"));
    }
    let Some(object) = request.object.as_ref() else {
        return Ok((response, "ignored"));
    };
    let object = serde_json::to_value(object).map_err(|e| format!("cannot read the object: {e}"))?;
    // A body the API server would refuse as a PVC is not ours to judge.
    let Ok(mut pvc) = serde_json::from_value::<PersistentVolumeClaim>(object.clone()) else {
        return Ok((response, "ignored"));
    };
    if pvc.metadata.namespace.is_none() {
        pvc.metadata.namespace = request.namespace.clone();
    }
    let old = request
        .old_object
        .as_ref()
        .and_then(|o| serde_json::to_value(o).ok())
        .and_then(|v| serde_json::from_value::<PersistentVolumeClaim>(v).ok());
    let policy = match (operation, &state.policies) {
        (Operation::Create, Some(hook)) => policy_annotations(hook, &pvc),
        _ => None,
    };
    let decision = match decide(operation, &pvc, old.as_ref(), &state.defaults, policy.as_ref()) {
        Decision::Allow(mutation) => match groups.and_then(|facts| refuse_for_group(&pvc, old.as_ref(), facts)) {
            Some(reason) => Decision::Deny(reason),
            None => Decision::Allow(mutation),
        },
        deny => deny,
    };
    match decision {
        Decision::Deny(reason) => Ok((response.deny(reason), "denied")),
        Decision::Allow(mutation) if mutation.is_empty() => Ok((response, "allowed")),
        Decision::Allow(mutation) => {
            let patch = patch_for(&object, &mutation);
            if patch.0.is_empty() {
                return Ok((response, "allowed"));
            }
            match response.clone().with_patch(patch) {
                Ok(patched) => Ok((patched, "patched")),
                Err(e) => Ok((
                    response.deny(format!("volsync-dr could not encode its patch: {e}")),
                    "denied",
                )),
            }
        }
    }
}

/// What a matching policy adds to a new PVC (nothing while the policies or the namespace are
/// not known yet: the sweep protects it moments later).
fn policy_annotations(hook: &PolicyHook, pvc: &PersistentVolumeClaim) -> Option<BTreeMap<String, String>> {
    let set = hook.lookup.policies()?;
    let labels = hook.lookup.namespace_labels(pvc.metadata.namespace.as_deref()?)?;
    evaluate(&set, pvc, &labels, &hook.scope).map(|(_, change)| change.set)
}
