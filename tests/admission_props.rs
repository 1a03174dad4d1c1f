//! Property: for any AdmissionReview of a PVC (annotations, labels and finalizers drawn from
//! valid, invalid and arbitrary values), the webhook answers without error, any patch it
//! returns applies cleanly to the request's object, and admitting the patched object again
//! asks for nothing more (the mutation is idempotent).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use volsync_dr::admission::AdmissionState;
use volsync_dr::admission::decide::AdmissionDefaults;
use volsync_dr::admission::review::review;
use volsync_dr::metrics::Metrics;
use volsync_dr::model::volsync::ServiceType;

const KEYS: &[&str] = &[
    "volsync-dr.io/protect",
    "volsync-dr.io/schedule",
    "volsync-dr.io/copy-method",
    "volsync-dr.io/service-type",
    "volsync-dr.io/action",
    "volsync-dr.io/last-action",
    "volsync-dr.io/action-phase",
    "volsync-dr.io/role",
    "volsync-dr.io/peer",
    "volsync-dr.io/unknown",
    "example.com/other",
];

const VALUES: &[&str] = &[
    "true",
    "false",
    "*/10 * * * *",
    "@hourly",
    "0 */5 * * * *",
    "Snapshot",
    "Clone",
    "Copy",
    "NodePort",
    "Ingress",
    "migrate",
    "failover:1",
    "failback",
    "sync-now:x",
    "reboot",
    "Running",
    "Succeeded",
    "primary",
    "secondary",
    "cluster-b",
    "",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![3 => proptest::sample::select(VALUES).prop_map(str::to_string), 1 => ".{0,12}"]
}

fn annotations() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    proptest::option::of(proptest::collection::btree_map(
        proptest::sample::select(KEYS).prop_map(str::to_string),
        value(),
        0..6,
    ))
}

fn pvc() -> impl Strategy<Value = Value> {
    (
        annotations(),
        proptest::option::of(proptest::collection::btree_map(
            prop_oneof![Just("volsync-dr.io/protected".to_string()), Just("app".to_string())],
            value(),
            0..2,
        )),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![
                Just("volsync-dr.io/protection".to_string()),
                Just("kubernetes.io/pvc-protection".to_string())
            ],
            0..2,
        )),
    )
        .prop_map(|(annotations, labels, finalizers)| {
            let mut meta = json!({"name": "data", "namespace": "apps"});
            if let Some(a) = annotations {
                meta["annotations"] = json!(a);
            }
            if let Some(l) = labels {
                meta["labels"] = json!(l);
            }
            if let Some(f) = finalizers {
                meta["finalizers"] = json!(f);
            }
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        })
}

fn review_of(operation: &str, object: &Value, old: Option<&Value>) -> Vec<u8> {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "PersistentVolumeClaim"},
        "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"},
        "name": "data", "namespace": "apps", "operation": operation, "userInfo": {},
        "object": object, "oldObject": old, "dryRun": false}})
    .to_string()
    .into_bytes()
}

fn state() -> AdmissionState {
    AdmissionState {
        defaults: AdmissionDefaults {
            service_type: ServiceType::ClusterIP,
        },
        metrics: Arc::new(Metrics::new()),
        policies: None,
        groups: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_patch_applies_and_is_idempotent(object in pvc(), old in proptest::option::of(pvc()), create in any::<bool>()) {
        let state = state();
        let (operation, old) = if create { ("CREATE", None) } else { ("UPDATE", old) };
        let (response, _) = review(&state, &review_of(operation, &object, old.as_ref())).expect("a well-formed review is answered");
        if let Some(patch) = &response.patch {
            prop_assert!(response.allowed, "a denial carries no patch");
            let ops: json_patch::Patch = serde_json::from_slice(patch).expect("the patch is JSON patch");
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &ops).expect("the patch applies to the request's object");
            prop_assert_eq!(&patched["spec"], &object["spec"]);
            prop_assert_eq!(&patched["metadata"]["annotations"]["volsync-dr.io/protect"], &"true");
            let (again, _) = review(&state, &review_of("UPDATE", &patched, Some(&patched))).expect("answered");
            prop_assert!(again.allowed);
            prop_assert!(again.patch.is_none(), "admitting the patched object again changes nothing");
        }
    }
}
