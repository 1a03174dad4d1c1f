//! volsync-dr's finalizer and protected label on a PVC: stamped by the watcher when the webhook
//! missed them, released when the PVC stops being protected here. Both are JSON patches guarded
//! by a test of the finalizers as read, so a concurrent change makes them fail (and the
//! reconcile retry) instead of overwriting. The operations are typed: building one cannot fail.

use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch as JsonPatch, PatchOperation, ReplaceOperation, TestOperation};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::model::{keys, marks};

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn test(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: pointer(tokens),
        value,
    })
}

/// Finalizer and label, as the webhook would have stamped them (`marks::stamp`, the webhook's
/// own mutation), guarded by a test of the finalizers as read.
pub(super) fn stamp_patch(pvc: &PersistentVolumeClaim) -> JsonPatch {
    let mut read = json!({"metadata": {}});
    if let Some(finalizers) = &pvc.metadata.finalizers {
        read["metadata"]["finalizers"] = json!(finalizers);
    }
    if let Some(labels) = &pvc.metadata.labels {
        read["metadata"]["labels"] = json!(labels);
    }
    let mut stamped = read.clone();
    marks::stamp(&mut stamped["metadata"]);
    let changes = json_patch::diff(&read, &stamped);
    if changes.0.is_empty() {
        return changes;
    }
    let guard = test(&["metadata", "finalizers"], read["metadata"]["finalizers"].clone());
    JsonPatch(std::iter::once(guard).chain(changes.0).collect())
}

/// Our finalizer removed, every other one kept.
fn release_patch(pvc: &PersistentVolumeClaim) -> JsonPatch {
    let finalizers = pvc.finalizers();
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != keys::FINALIZER).collect();
    JsonPatch(vec![
        test(&["metadata", "finalizers"], json!(finalizers)),
        PatchOperation::Replace(ReplaceOperation {
            path: pointer(&["metadata", "finalizers"]),
            value: json!(rest),
        }),
    ])
}

/// Add finalizer and label to the PVC (see `stamp_patch`).
pub(super) async fn stamp(
    pvcs: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim, kube::Error> {
    send(pvcs, pvc, stamp_patch(pvc)).await
}

/// Remove our finalizer from the PVC.
pub(super) async fn release_finalizer(
    pvcs: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim, kube::Error> {
    send(pvcs, pvc, release_patch(pvc)).await
}

async fn send(
    pvcs: &Api<PersistentVolumeClaim>,
    pvc: &PersistentVolumeClaim,
    patch: JsonPatch,
) -> Result<PersistentVolumeClaim, kube::Error> {
    pvcs.patch(&pvc.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(finalizers: &[&str], labels: bool) -> PersistentVolumeClaim {
        let mut p = PersistentVolumeClaim::default();
        p.metadata.finalizers = (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect());
        p.metadata.labels = labels.then(Default::default);
        p
    }

    #[test]
    fn stamping_guards_the_finalizers_it_read_and_escapes_the_label_key() {
        let cases: &[(&[&str], bool, Value)] = &[
            (
                &[],
                false,
                json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                       {"op": "add", "path": "/metadata/finalizers", "value": [keys::FINALIZER]},
                       {"op": "add", "path": "/metadata/labels", "value": {keys::PROTECTED_LABEL: "true"}}]),
            ),
            (
                &["other"],
                true,
                json!([{"op": "test", "path": "/metadata/finalizers", "value": ["other"]},
                       {"op": "add", "path": "/metadata/finalizers/1", "value": keys::FINALIZER},
                       {"op": "add", "path": "/metadata/labels/volsync-dr.io~1protected", "value": "true"}]),
            ),
            (
                &[keys::FINALIZER],
                true,
                json!([{"op": "test", "path": "/metadata/finalizers", "value": [keys::FINALIZER]},
                       {"op": "add", "path": "/metadata/labels/volsync-dr.io~1protected", "value": "true"}]),
            ),
        ];
        for (finalizers, labels, want) in cases {
            let got = serde_json::to_value(stamp_patch(&pvc(finalizers, *labels))).expect("json");
            assert_eq!(&got, want, "finalizers {finalizers:?}, labels {labels}");
        }
    }

    #[test]
    fn releasing_keeps_every_other_finalizer() {
        let got = serde_json::to_value(release_patch(&pvc(&["a", keys::FINALIZER, "b"], true))).expect("json");
        assert_eq!(
            got,
            json!([{"op": "test", "path": "/metadata/finalizers", "value": ["a", keys::FINALIZER, "b"]},
                   {"op": "replace", "path": "/metadata/finalizers", "value": ["a", "b"]}])
        );
    }
}
